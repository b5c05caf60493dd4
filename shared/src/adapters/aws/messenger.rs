//! The messenger port on SES v2 (e-mail) and SNS (SMS). Recipients and bodies are never
//! logged.

use crate::ports::messenger::{Channel, Messenger, MessengerError, OutboundMessage};
use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sns::types::MessageAttributeValue;

pub struct SesSns {
    ses: super::LazyClient<aws_sdk_sesv2::Client>,
    sns: super::LazyClient<aws_sdk_sns::Client>,
    from: String,
}

impl SesSns {
    pub fn new(
        ses: impl Into<super::LazyClient<aws_sdk_sesv2::Client>>,
        sns: impl Into<super::LazyClient<aws_sdk_sns::Client>>,
        from: String,
    ) -> Self {
        Self {
            ses: ses.into(),
            sns: sns.into(),
            from,
        }
    }
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> MessengerError {
    MessengerError::Unavailable(Box::new(err))
}

fn content(text: &str) -> Result<Content, MessengerError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|_| MessengerError::Invalid("empty content".into()))
}

fn transactional() -> Result<MessageAttributeValue, MessengerError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value("Transactional")
        .build()
        .map_err(|_| MessengerError::Invalid("incomplete SMS attribute".into()))
}

/// The provider's id of a sent message; logged with the channel only, never the
/// recipient or the content.
fn sent(channel: Channel, message_id: Option<&str>) -> Result<String, MessengerError> {
    let id = message_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| MessengerError::Unavailable("the provider returned no message id".into()))?;
    tracing::info!(message_id = %id, ?channel, "message sent");
    Ok(id.to_string())
}

#[async_trait]
impl Messenger for SesSns {
    async fn send(&self, message: &OutboundMessage) -> Result<String, MessengerError> {
        message.validate()?;
        match message.channel {
            Channel::Email => {
                let email = Message::builder()
                    .subject(content(message.subject.as_deref().unwrap_or("DoCare"))?)
                    .body(Body::builder().text(content(&message.body)?).build())
                    .build();
                let output = self
                    .ses
                    .send_email()
                    .from_email_address(&self.from)
                    .destination(Destination::builder().to_addresses(&message.to).build())
                    .content(EmailContent::builder().simple(email).build())
                    .send()
                    .await
                    .map_err(unavailable)?;
                sent(message.channel, output.message_id())
            }
            Channel::Sms => {
                let output = self
                    .sns
                    .publish()
                    .phone_number(&message.to)
                    .message(&message.body)
                    // Codes and alerts: SNS's higher-reliability route, not marketing.
                    .message_attributes("AWS.SNS.SMS.SMSType", transactional()?)
                    .send()
                    .await
                    .map_err(unavailable)?;
                sent(message.channel, output.message_id())
            }
        }
    }
}
