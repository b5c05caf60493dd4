//! The notification queue's message: what producers (auth e-mails, SOS, reminders) send
//! and the notify function delivers through the messenger port.

use crate::ports::messenger::Channel;
use crate::ports::queue::OutgoingMessage;
use crate::{ApiError, AppContext};
use serde::{Deserialize, Serialize};

/// One message to one recipient (JSON on the queue). Bodies may hold codes and links:
/// the queue is encrypted (SSE-KMS) and bodies are never logged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// Idempotency key chosen by the producer (e.g. `sos:<event id>:<contact id>`).
    pub id: String,
    pub channel: Channel,
    pub to: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub body: String,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Notification {
    pub fn email(id: String, to: &str, subject: &str, body: String) -> Self {
        Self {
            id,
            channel: Channel::Email,
            to: to.to_string(),
            subject: Some(subject.to_string()),
            body,
        }
    }
}

/// Queues a notification for delivery; 503 when the queue is down.
pub async fn enqueue(app: &AppContext, notification: &Notification) -> Result<(), ApiError> {
    let body = serde_json::to_string(notification).map_err(ApiError::internal)?;
    app.queue
        .send(&app.config.queues.notifications, OutgoingMessage::new(body))
        .await
        .map_err(|err| ApiError::unavailable("queue", err))?;
    Ok(())
}
