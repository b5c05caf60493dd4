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

/// One object an S3 event notification names (key URL-decoded, as S3 stores it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`, …
    pub event_name: String,
    pub bucket: String,
    pub key: String,
    /// The exact version the event is about (versioned buckets), so a later PUT to the
    /// same key cannot swap the bytes being processed.
    pub version_id: Option<String>,
    pub size: Option<u64>,
}

#[derive(serde::Deserialize)]
struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
    /// `s3:TestEvent`, sent once when the notification is configured.
    #[serde(rename = "Event", default)]
    event: Option<String>,
}

#[derive(serde::Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3Entity,
}

#[derive(serde::Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3ObjectEntity,
}

#[derive(serde::Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(serde::Deserialize)]
struct S3ObjectEntity {
    key: String,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// The objects an SQS message body from an S3 event notification names; none for
/// `s3:TestEvent` (acknowledged, not an error). Anything else is a permanent failure:
/// it would never parse, so it should reach the dead-letter queue, visible.
pub fn s3_objects(body: &str) -> Result<Vec<S3Object>, WorkError> {
    let notification: S3Notification = serde_json::from_str(body)
        .map_err(|_| WorkError::Permanent("not an S3 event notification".into()))?;
    if notification.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if notification.records.is_empty() {
        return Err(WorkError::Permanent(
            "an S3 notification without records".into(),
        ));
    }
    notification
        .records
        .into_iter()
        .map(|record| {
            // S3 URL-encodes keys in events, with `+` for spaces.
            let plus_decoded = record.s3.object.key.replace('+', " ");
            let key = percent_encoding::percent_decode_str(&plus_decoded)
                .decode_utf8()
                .map_err(|_| WorkError::Permanent("an S3 key that is not UTF-8".into()))?
                .into_owned();
            Ok(S3Object {
                event_name: record.event_name,
                bucket: record.s3.bucket.name,
                key,
                version_id: record.s3.object.version_id,
                size: record.s3.object.size,
            })
        })
        .collect()
}

/// [`process_batch`] for a queue fed by S3 event notifications (S3 → SQS → function):
/// each object of a message is processed in turn; a message fails when one of its
/// objects does, and is retried whole (processing must be idempotent per object).
pub async fn process_s3_batch<F, Fut>(event: SqsEvent, process: F) -> SqsBatchResponse
where
    F: Fn(S3Object) -> Fut,
    Fut: Future<Output = Result<(), WorkError>>,
{
    let process = &process;
    process_batch(event, |record| async move {
        for object in s3_objects(record.body.as_deref().unwrap_or_default())? {
            process(object).await?;
        }
        Ok(())
    })
    .await
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

    const S3_PUT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2026-12-01T21:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"scan","bucket":{"name":"docare-quarantine","arn":"arn:aws:s3:::docare-quarantine"},"object":{"key":"uploads/01JD5Z6Q8W3M0V7K2R9T4Y6B1C/lab+results%C3%A9.pdf","size":1024,"eTag":"abc","versionId":"3HL4kqtJlcpXroDTDmjVBH40Nrjfkd","sequencer":"0A1B"}}}]}"#;
    const S3_TEST: &str = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-01T21:00:00.000Z","Bucket":"docare-quarantine","RequestId":"R","HostId":"H"}"#;

    #[test]
    fn s3_notifications_name_the_exact_object_version() {
        let objects = s3_objects(S3_PUT).expect("parsed");
        assert_eq!(
            objects,
            [S3Object {
                event_name: "ObjectCreated:Put".into(),
                bucket: "docare-quarantine".into(),
                key: "uploads/01JD5Z6Q8W3M0V7K2R9T4Y6B1C/lab resultsé.pdf".into(),
                version_id: Some("3HL4kqtJlcpXroDTDmjVBH40Nrjfkd".into()),
                size: Some(1024),
            }]
        );
        assert_eq!(s3_objects(S3_TEST).expect("test event"), []);
        for bad in ["", "{}", "[1]", r#"{"Records":[{"eventName":"x"}]}"#] {
            assert!(
                matches!(s3_objects(bad), Err(WorkError::Permanent(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn an_s3_batch_acknowledges_test_events_and_fails_only_bad_messages() {
        let mut event = SqsEvent::default();
        for (id, body) in [("put", S3_PUT), ("test", S3_TEST), ("junk", "junk")] {
            let mut record = SqsMessage::default();
            record.message_id = Some(id.into());
            record.body = Some(body.into());
            event.records.push(record);
        }
        let seen = std::sync::Mutex::new(Vec::new());
        let response = process_s3_batch(event, |object| {
            seen.lock().unwrap().push(object.key);
            async { Ok(()) }
        })
        .await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["junk"]);
        assert_eq!(seen.lock().unwrap().len(), 1);
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
