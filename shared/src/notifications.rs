//! The notification queue's message: what producers (auth e-mails, SOS, reminders) send
//! and the notify function delivers through the messenger port.
//!
//! Recipients and bodies are PHI or secrets (emergency contacts' numbers, alert texts,
//! single-use tokens), so producers seal them with the envelope before they leave the
//! process: on the queue a message carries only its id, its channel and `sealed`. The
//! notify function opens it just before sending. Payloads have their own data keys
//! (`docare-notification` purpose), so the notify function cannot open PHI fields and
//! a producer's PHI rights do not open queued messages.

use crate::crypto::{Binding, CryptoError};
use crate::encoding::{b64url, unb64url};
use crate::ports::messenger::Channel;
use crate::ports::queue::OutgoingMessage;
use crate::{ApiError, AppContext};
use serde::{Deserialize, Serialize};

/// The binding of a sealed message: bound to its id, so a sealed payload copied into
/// another message does not open.
const SEALED_TABLE: &str = "queue:notifications";

/// One message to one recipient (JSON on the queue).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// Idempotency key chosen by the producer (e.g. `sos:<event id>:<contact id>`).
    pub id: String,
    pub channel: Channel,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: String,
    /// `to`, `subject` and `body`, sealed (base64url); the clear fields are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    to: String,
    subject: Option<String>,
    body: String,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("sealed", &self.sealed.is_some())
            .finish_non_exhaustive()
    }
}

fn binding(id: &str) -> Binding<'_> {
    Binding {
        table: SEALED_TABLE,
        pk: id,
        sk: "notification",
        attribute: "payload",
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
            sealed: None,
        }
    }

    pub fn sms(id: String, to: &str, body: String) -> Self {
        Self {
            id,
            channel: Channel::Sms,
            to: to.to_string(),
            subject: None,
            body,
            sealed: None,
        }
    }

    /// The message with recipient and content sealed.
    pub async fn seal(self, app: &AppContext) -> Result<Self, ApiError> {
        let payload = Payload {
            to: self.to,
            subject: self.subject,
            body: self.body,
        };
        let json = serde_json::to_vec(&payload).map_err(ApiError::internal)?;
        let sealed = app
            .notification_crypto
            .encrypt(&binding(&self.id), &json)
            .await?;
        Ok(Self {
            id: self.id,
            channel: self.channel,
            to: String::new(),
            subject: None,
            body: String::new(),
            sealed: Some(b64url(&sealed)),
        })
    }

    /// The message with its sealed part opened (a message without one is returned as is).
    pub async fn open(self, app: &AppContext) -> Result<Self, CryptoError> {
        let Some(sealed) = &self.sealed else {
            return Ok(self);
        };
        let bytes = unb64url(sealed).ok_or(CryptoError::Integrity)?;
        let json = app
            .notification_crypto
            .decrypt(&binding(&self.id), &bytes)
            .await?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| CryptoError::Integrity)?;
        Ok(Self {
            id: self.id,
            channel: self.channel,
            to: payload.to,
            subject: payload.subject,
            body: payload.body,
            sealed: None,
        })
    }
}

/// Tells an account's owner by e-mail that a setting of how it signs in changed (TOTP
/// on or off, the phone that receives sign-in codes): if it was not them, they know at
/// once. `what` says which, in one sentence; nothing else about the account is sent.
pub async fn security_change(app: &AppContext, to: &str, what: &str) -> Result<(), ApiError> {
    let body =
        format!("{what}\n\nIf this was not you, reset your password at once and contact support.");
    let id = format!("security:{}", app.new_id());
    let subject = "A security setting of your DoCare account changed";
    enqueue(app, Notification::email(id, to, subject, body)).await
}

/// Seals and queues a notification for delivery; 503 when KMS or the queue is down.
pub async fn enqueue(app: &AppContext, notification: Notification) -> Result<(), ApiError> {
    enqueue_all(app, vec![notification]).await
}

/// Seals and queues several notifications (sent in batches of ten).
pub async fn enqueue_all(
    app: &AppContext,
    notifications: Vec<Notification>,
) -> Result<(), ApiError> {
    let mut messages = Vec::with_capacity(notifications.len());
    for notification in notifications {
        let sealed = notification.seal(app).await?;
        let body = serde_json::to_string(&sealed).map_err(ApiError::internal)?;
        messages.push(OutgoingMessage::new(body));
    }
    app.queue
        .send_batch(&app.config.queues.notifications, messages)
        .await
        .map_err(|err| ApiError::unavailable("queue", err))
}
