//! SQS consumers: each record is processed on its own, in its own span, and failures
//! are reported per message so SQS retries only those (and, past the queue's receive
//! limit, moves them to the dead-letter queue). Nothing is dropped silently.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::future::Future;
use tracing::Instrument;

/// Why one message failed. Both kinds are retried by SQS; a `Permanent` failure is
/// logged as such so an operator knows redriving it will not help.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("transient failure")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Runs `process` on every record and collects the ids of those that failed.
pub async fn process_batch<F, Fut>(event: SqsEvent, process: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), WorkError>>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .cloned()
            .unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %message_id, receive_count = %receive_count);
        let outcome = process(record).instrument(span.clone()).await;
        let _entered = span.enter();
        match outcome {
            Ok(()) => tracing::info!("processed"),
            Err(err) => {
                match &err {
                    WorkError::Transient(_) => {
                        tracing::warn!(cause = %crate::error::cause_chain(&err), "will retry")
                    }
                    WorkError::Permanent(reason) => {
                        tracing::error!(reason = %reason, "cannot be processed; it will reach the dead-letter queue")
                    }
                }
                if message_id.is_empty() {
                    // Without an id SQS cannot retry one message: fail the whole batch.
                    tracing::error!("record without message id");
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ids: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        for id in ids {
            let mut record = SqsMessage::default();
            record.message_id = Some(id.to_string());
            record.body = Some(format!("body-{id}"));
            event.records.push(record);
        }
        event
    }

    #[tokio::test]
    async fn only_failed_records_are_reported() {
        let response = process_batch(event(&["a", "b", "c"]), |record| async move {
            match record.body.as_deref() {
                Some("body-b") => Err(WorkError::Permanent("bad".into())),
                _ => Ok(()),
            }
        })
        .await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["b"]);
    }
}
