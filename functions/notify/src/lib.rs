//! The notification worker: opens each queued (sealed) e-mail or SMS and sends it
//! through the messenger port.
//!
//! SQS delivers at least once, so a message is sent once per idempotency key: a marker
//! item (kept one day) records what was sent, and a redelivered message is skipped.
//! A crash between sending and writing the marker can still repeat a message, which is
//! the right side to fail on for notifications. Malformed messages fail permanently and
//! reach the dead-letter queue after the queue's receive limit; an unreachable provider
//! fails transiently and is retried.

/// The outside services the `notify` binary links (`shared::adapters::links`): e-mail (SES)
/// and SMS (SNS); SQS delivers its batches.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::MESSENGER;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use shared::crypto::CryptoError;
use shared::ports::messenger::{MessengerError, OutboundMessage};
use shared::store::notifications;
use shared::worker::{process_batch, WorkError};
use shared::App;

pub use shared::store::notifications::SENT_MARKER_TTL_SECS;

pub use shared::notifications::Notification;

pub async fn handle(app: App, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record| {
        let app = app.clone();
        async move { process(&app, record).await }
    })
    .await
}

fn transient(err: impl std::error::Error + Send + Sync + 'static) -> WorkError {
    WorkError::Transient(Box::new(err))
}

async fn process(app: &App, record: SqsMessage) -> Result<(), WorkError> {
    let body = record.body.unwrap_or_default();
    let notification: Notification = serde_json::from_str(&body)
        .map_err(|_| WorkError::Permanent("not a notification message".into()))?;
    if notification.id.is_empty() || notification.id.len() > 200 {
        return Err(WorkError::Permanent(
            "notification id must be 1..=200 bytes".into(),
        ));
    }
    let id = notification.id.clone();
    if notifications::was_sent(app, &id).await.map_err(transient)? {
        tracing::info!("already sent; skipping");
        return Ok(());
    }
    // Sealed by the producer; opened only here, just before sending.
    let notification = notification.open(app).await.map_err(|err| match err {
        CryptoError::KeysUnavailable(_) | CryptoError::StoreUnavailable(_) => {
            WorkError::Transient(Box::new(err))
        }
        CryptoError::Integrity | CryptoError::Format(_) => {
            WorkError::Permanent("the sealed notification does not open".into())
        }
    })?;
    let message = OutboundMessage {
        channel: notification.channel,
        to: notification.to,
        subject: notification.subject,
        body: notification.body,
    };
    match app.messenger.send(&message).await {
        Ok(_) => {}
        Err(MessengerError::Unavailable(source)) => return Err(WorkError::Transient(source)),
        Err(_) => return Err(WorkError::Permanent("the message was refused".into())),
    }
    notifications::mark_sent(app, &id).await.map_err(transient)
}
