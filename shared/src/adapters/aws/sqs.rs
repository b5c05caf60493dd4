//! The queue port on SQS (`queue` is the queue URL). Receiving and deleting are used by
//! operations tools and tests; in production Lambda's event source mapping does both.

use crate::ports::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_BATCH};
use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use std::time::Duration;

pub struct Sqs {
    client: super::LazyClient<aws_sdk_sqs::Client>,
}

impl Sqs {
    pub fn new(client: impl Into<super::LazyClient<aws_sdk_sqs::Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }
}

fn map_err<E, R>(err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist") => {
            QueueError::QueueNotFound
        }
        Some("ReceiptHandleIsInvalid" | "InvalidParameterValue" | "MessageNotInflight") => {
            QueueError::Invalid("the queue refused the request".into())
        }
        _ => QueueError::Unavailable(Box::new(err)),
    }
}

fn delay_seconds(message: &OutgoingMessage) -> Option<i32> {
    message.delay.map(|d| d.as_secs() as i32)
}

#[async_trait]
impl Queue for Sqs {
    async fn send(&self, queue: &str, message: OutgoingMessage) -> Result<String, QueueError> {
        message.validate()?;
        let output = self
            .client
            .send_message()
            .queue_url(queue)
            .message_body(&message.body)
            .set_delay_seconds(delay_seconds(&message))
            .send()
            .await
            .map_err(map_err)?;
        let id = output
            .message_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| QueueError::Unavailable("SQS returned no message id".into()))?;
        tracing::debug!(message_id = %id, bytes = message.body.len(), "queue: message sent");
        Ok(id.to_string())
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError> {
        let mut failed = Vec::new();
        for (chunk_index, chunk) in messages.chunks(MAX_BATCH).enumerate() {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, message) in chunk.iter().enumerate() {
                let index = chunk_index * MAX_BATCH + i;
                if message.validate().is_err() {
                    failed.push(index);
                    continue;
                }
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(&message.body)
                    .set_delay_seconds(delay_seconds(message))
                    .build()
                    .map_err(|_| QueueError::Invalid("incomplete batch entry".into()))?;
                entries.push(entry);
            }
            if entries.is_empty() {
                continue;
            }
            let output = self
                .client
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(map_err)?;
            failed.extend(
                output
                    .failed()
                    .iter()
                    .filter_map(|f| f.id().parse::<usize>().ok()),
            );
        }
        if failed.is_empty() {
            Ok(())
        } else {
            failed.sort_unstable();
            tracing::warn!(failed = failed.len(), "queue: batch entries refused");
            Err(QueueError::PartialBatch { failed })
        }
    }

    async fn receive(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if max == 0 || max as usize > MAX_BATCH {
            return Err(QueueError::Invalid("receive 1 to 10 messages".into()));
        }
        let output = self
            .client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(max as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(map_err)?;
        Ok(output
            .messages()
            .iter()
            .map(|m| {
                let attribute = |name: MessageSystemAttributeName| {
                    m.attributes()
                        .and_then(|a| a.get(&name))
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or_default()
                };
                ReceivedMessage {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        as u32,
                    sent_at_ms: attribute(MessageSystemAttributeName::SentTimestamp),
                }
            })
            .collect())
    }

    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(queue)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn check(&self, queue: &str) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::send_message::SendMessageError;
    use aws_smithy_types::error::ErrorMetadata;

    fn coded(code: &str) -> SdkError<SendMessageError, ()> {
        let meta = ErrorMetadata::builder().code(code).build();
        SdkError::service_error(SendMessageError::generic(meta), ())
    }

    // SQS's JSON protocol reports the legacy query code when it is compatible; both
    // spellings mean the same missing queue.
    #[test]
    fn missing_queue_codes_are_queue_not_found() {
        for code in [
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ] {
            assert!(
                matches!(map_err(coded(code)), QueueError::QueueNotFound),
                "{code}"
            );
        }
        assert!(matches!(
            map_err(coded("ReceiptHandleIsInvalid")),
            QueueError::Invalid(_)
        ));
        assert!(matches!(
            map_err(coded("InternalError")),
            QueueError::Unavailable(_)
        ));
    }
}
