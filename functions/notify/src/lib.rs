//! The notification worker: opens each queued (sealed) e-mail or SMS and sends it
//! through the messenger port.
//!
//! SQS delivers at least once, so a message is sent once per idempotency key: a marker
//! item (kept one day) records what was sent, and a redelivered message is skipped.
//! A crash between sending and writing the marker can still repeat a message, which is
//! the right side to fail on for notifications. Malformed messages fail permanently and
//! reach the dead-letter queue after the queue's receive limit; an unreachable provider
//! fails transiently and is retried.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use shared::crypto::CryptoError;
use shared::ports::db::{item, Condition, DbError, Key, Value};
use shared::ports::messenger::{MessengerError, OutboundMessage};
use shared::worker::{process_batch, WorkError};
use shared::App;

/// How long a sent marker is kept (longer than any SQS redelivery).
pub const SENT_MARKER_TTL_SECS: i64 = 24 * 60 * 60;

pub use shared::notifications::Notification;

pub async fn handle(app: App, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record| {
        let app = app.clone();
        async move { process(&app, record).await }
    })
    .await
}

fn sent_marker(id: &str) -> Key {
    Key::new(format!("NOTIFY#{id}"), "SENT")
}

fn transient(err: DbError) -> WorkError {
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
    let table = &app.config.table;
    let marker = sent_marker(&notification.id);
    if app
        .db
        .get(table, &marker)
        .await
        .map_err(transient)?
        .is_some()
    {
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
    let now = app.clock.now().timestamp();
    let record = item([
        ("pk", Value::S(marker.pk)),
        ("sk", Value::S(marker.sk)),
        ("sent_at", Value::N(now)),
        ("expires_at", Value::N(now + SENT_MARKER_TTL_SECS)),
    ]);
    match app.db.put(table, record, Some(Condition::NotExists)).await {
        // A concurrent delivery of the same message got there first: fine.
        Ok(()) | Err(DbError::ConditionFailed { .. }) => Ok(()),
        Err(err) => Err(transient(err)),
    }
}
