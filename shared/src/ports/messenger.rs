//! The mail and SMS port (SES v2 and SNS on AWS; an outbox folder locally).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

/// One message to one recipient. Bodies may hold codes and links: never log them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub channel: Channel,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
}

impl std::fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("channel", &self.channel)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl OutboundMessage {
    pub fn email(
        to: impl Into<String>,
        subject: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        Self {
            channel: Channel::Email,
            to: to.into(),
            subject: Some(subject.into()),
            body: body.into(),
        }
    }

    pub fn sms(to: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            channel: Channel::Sms,
            to: to.into(),
            subject: None,
            body: body.into(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), MessengerError> {
        let to_ok = match self.channel {
            Channel::Email => self.to.contains('@') && !self.to.contains(char::is_whitespace),
            Channel::Sms => {
                self.to.starts_with('+')
                    && (8..=16).contains(&self.to.len())
                    && self.to[1..].bytes().all(|b| b.is_ascii_digit())
            }
        };
        if !to_ok {
            return Err(MessengerError::InvalidRecipient);
        }
        if self.body.is_empty() || self.body.len() > 64 * 1024 {
            return Err(MessengerError::Invalid(
                "message bodies are 1 B to 64 KiB".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MessengerError {
    /// Not an e-mail address / not an E.164 phone number.
    #[error("invalid recipient")]
    InvalidRecipient,
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("messaging unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<MessengerError> for crate::ApiError {
    fn from(err: MessengerError) -> Self {
        match err {
            MessengerError::Unavailable(_) => crate::ApiError::unavailable("messaging", err),
            _ => crate::ApiError::internal(err),
        }
    }
}

#[async_trait]
pub trait Messenger: Send + Sync {
    /// Sends the message; returns the provider's message id.
    async fn send(&self, message: &OutboundMessage) -> Result<String, MessengerError>;
}
