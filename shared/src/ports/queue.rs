//! The queue port (SQS). Producers send; on AWS, Lambda's event source mapping receives
//! and deletes; locally the stack's poller does the same through `receive`/`delete`.

use async_trait::async_trait;
use std::time::Duration;

/// SQS's longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's largest message.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// SQS's largest batch.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub delay: Option<Duration>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            delay: None,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if self.body.is_empty() || self.body.len() > MAX_BODY_BYTES {
            return Err(QueueError::Invalid(
                "message bodies are 1 B to 256 KiB".into(),
            ));
        }
        if self.delay.is_some_and(|d| d > MAX_DELAY) {
            return Err(QueueError::Invalid("delays are at most 15 minutes".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
    pub sent_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("queue not found")]
    QueueNotFound,
    /// Some entries of a batch were refused (by index); the others were sent.
    #[error("{} of the batch failed", failed.len())]
    PartialBatch { failed: Vec<usize> },
    #[error("queue unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<QueueError> for crate::ApiError {
    fn from(err: QueueError) -> Self {
        match err {
            QueueError::Invalid(_) | QueueError::QueueNotFound => crate::ApiError::internal(err),
            _ => crate::ApiError::unavailable("queue", err),
        }
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message; returns its id.
    async fn send(&self, queue: &str, message: OutgoingMessage) -> Result<String, QueueError>;
    /// Sends any number of messages in batches of ten.
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError>;
    /// Receives up to `max` visible messages and hides them for `visibility`. A message
    /// received more often than the queue's limit moves to its dead-letter queue instead.
    async fn receive(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;
    /// Deletes a received message (it was processed).
    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError>;
    /// Cheap reachability check, for `/health`.
    async fn check(&self, queue: &str) -> Result<(), QueueError>;
}
