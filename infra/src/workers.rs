//! In-process stand-ins for the SQS event source mapping and EventBridge schedules.
//!
//! A consumer receives up to ten messages, hands them to the function as an `SqsEvent`,
//! deletes those not reported as failed, and leaves the failed ones to reappear after
//! the visibility timeout; past the receive limit the queue moves them to its
//! dead-letter queue. Nothing is deleted that the function did not process.

use crate::events::{scheduled_event, sqs_event};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::BoxFuture;
use shared::ports::recording::as_function;
use shared::ports::Queue;
use shared::{ApiError, App};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Visibility timeout the local mapping uses (the template sets 6x the function timeout).
pub const VISIBILITY: Duration = Duration::from_secs(30);
/// Pause between polls of an empty queue.
pub const IDLE_POLL: Duration = Duration::from_millis(200);

type SqsHandler = Arc<dyn Fn(App, SqsEvent) -> BoxFuture<'static, SqsBatchResponse> + Send + Sync>;
type ScheduleHandler =
    Arc<dyn Fn(App, EventBridgeEvent) -> BoxFuture<'static, Result<(), ApiError>> + Send + Sync>;

/// A queue → function mapping.
#[derive(Clone)]
pub struct Consumer {
    pub function: &'static str,
    pub queue: String,
    handler: SqsHandler,
}

impl Consumer {
    pub fn new<F, Fut>(function: &'static str, queue: String, handler: F) -> Self
    where
        F: Fn(App, SqsEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = SqsBatchResponse> + Send + 'static,
    {
        Self {
            function,
            queue,
            handler: Arc::new(move |app, event| Box::pin(handler(app, event))),
        }
    }

    /// Receives and processes one batch; returns how many messages it received.
    pub async fn poll_once(&self, app: &App, queue: &dyn Queue, visibility: Duration) -> usize {
        let messages = match queue.receive(&self.queue, 10, visibility).await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(function = self.function, error = %err, "receive failed");
                return 0;
            }
        };
        if messages.is_empty() {
            return 0;
        }
        let event = match sqs_event(&self.queue, &messages) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!(function = self.function, error = %err, "could not build the SQS event");
                return messages.len();
            }
        };
        let response = as_function(self.function, (self.handler)(app.clone(), event)).await;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for message in &messages {
            if failed.contains(message.message_id.as_str()) {
                continue;
            }
            if let Err(err) = queue.delete(&self.queue, &message.receipt_handle).await {
                tracing::warn!(function = self.function, error = %err, "delete failed; the message will be redelivered");
            }
        }
        messages.len()
    }

    /// Polls until shutdown.
    pub async fn run(self, app: App, queue: Arc<dyn Queue>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let received = self.poll_once(&app, queue.as_ref(), VISIBILITY).await;
            if received == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// A rule that invokes a function at a fixed rate.
#[derive(Clone)]
pub struct Schedule {
    /// The function the rule invokes (its name in `template.yaml`, lowercase); set with
    /// [`Schedule::of`]. The IAM tour (`tests/e2e/iam.rs`) refuses a schedule without one.
    pub function: Option<&'static str>,
    pub rule: &'static str,
    pub every: Duration,
    handler: ScheduleHandler,
}

impl Schedule {
    pub fn new<F, Fut>(rule: &'static str, every: Duration, handler: F) -> Self
    where
        F: Fn(App, EventBridgeEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        Self {
            function: None,
            rule,
            every,
            handler: Arc::new(move |app, event| Box::pin(handler(app, event))),
        }
    }

    /// The function this rule invokes.
    pub fn of(mut self, function: &'static str) -> Self {
        self.function = Some(function);
        self
    }

    /// Fires once.
    pub async fn fire(&self, app: &App) {
        match scheduled_event(self.rule) {
            Ok(event) => {
                let run = (self.handler)(app.clone(), event);
                let result = match self.function {
                    Some(function) => as_function(function, run).await,
                    None => run.await,
                };
                if let Err(err) = result {
                    tracing::warn!(rule = self.rule, code = err.code(), "scheduled run failed");
                }
            }
            Err(err) => {
                tracing::error!(rule = self.rule, error = %err, "could not build the event")
            }
        }
    }

    /// Fires every `every` until shutdown (the first run after one period, like a rate rule).
    pub async fn run(self, app: App, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => self.fire(&app).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}
