//! The queue port: SQS's delivery semantics (delay, visibility, receive counts,
//! dead-letter queue) on both adapters.

use crate::support;
use chrono::Utc;
use shared::adapters::aws::Sqs;
use shared::adapters::local::{LocalQueue, LocalStore, QueueSpec};
use shared::clock::{Clock, ManualClock};
use shared::ports::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Receives before a message moves to the dead-letter queue, in both fixtures.
const MAX_RECEIVES: u32 = 2;
const LONG: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_secs(1);

pub struct QueueFixture {
    queue: Arc<dyn Queue>,
    main: String,
    dlq: String,
    missing: String,
    /// Local time is moved by hand; the emulator's only by waiting.
    clock: Option<Arc<ManualClock>>,
    _dir: Option<tempfile::TempDir>,
}

impl QueueFixture {
    async fn wait(&self, duration: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(chrono::Duration::from_std(duration).expect("duration")),
            None => tokio::time::sleep(duration).await,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.as_ref().map_or_else(
            || Utc::now().timestamp_millis(),
            |c| c.now().timestamp_millis(),
        )
    }

    async fn receive(&self, queue: &str, visibility: Duration) -> Vec<ReceivedMessage> {
        self.queue
            .receive(queue, 10, visibility)
            .await
            .expect("receive")
    }

    /// Receives until the queue answers empty.
    async fn drain(&self, queue: &str) -> Vec<ReceivedMessage> {
        let mut all = Vec::new();
        for _ in 0..20 {
            let batch = self.receive(queue, LONG).await;
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        all
    }
}

async fn local_fixture() -> QueueFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let store = LocalStore::open(&dir.path().join("store.redb"), clock.clone()).expect("store");
    let queue = LocalQueue::open(&store);
    queue.declare("jobs-dlq", QueueSpec::default());
    queue.declare(
        "jobs",
        QueueSpec {
            dead_letter: Some("jobs-dlq".into()),
            max_receives: MAX_RECEIVES,
        },
    );
    QueueFixture {
        queue: Arc::new(queue),
        main: "jobs".into(),
        dlq: "jobs-dlq".into(),
        missing: "no-such-queue".into(),
        clock: Some(clock),
        _dir: Some(dir),
    }
}

async fn aws_fixture() -> Option<QueueFixture> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let endpoint = support::aws_endpoint()?;
    let client = aws_sdk_sqs::Client::new(&support::sdk_config(&endpoint));
    let name = support::unique("jobs");
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create dlq");
    let dlq_url = dlq.queue_url().expect("dlq url").to_string();
    let attributes = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq arn");
    let dlq_arn = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("arn")
        .clone();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": MAX_RECEIVES.to_string(),
    });
    let main = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .expect("create queue");
    Some(QueueFixture {
        queue: Arc::new(Sqs::new(client)),
        main: main.queue_url().expect("url").to_string(),
        dlq: dlq_url,
        missing: format!("{endpoint}/123456789012/{}", support::unique("missing")),
        clock: None,
        _dir: None,
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        send_receive_delete,
        delay_hides_the_message,
        visibility_timeout_returns_the_message,
        batch_of_25,
        batch_reports_invalid_entries,
        poison_message_lands_in_the_dlq,
        invalid_message_is_refused,
        unknown_queue_is_not_found,
        check_reaches_the_queue,
    ];
    local_only: [];
}

async fn send_receive_delete(fx: &QueueFixture) {
    let before = fx.now_ms();
    let id = fx
        .queue
        .send(
            &fx.main,
            OutgoingMessage::new(r#"{"job":"scan","id":"d1"}"#),
        )
        .await
        .expect("send");
    assert!(!id.is_empty());
    let received = fx.receive(&fx.main, LONG).await;
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.message_id, id);
    assert_eq!(message.body, r#"{"job":"scan","id":"d1"}"#);
    assert_eq!(message.receive_count, 1);
    assert!(
        (message.sent_at_ms - before).abs() < 60_000,
        "sent_at_ms is epoch milliseconds: {}",
        message.sent_at_ms
    );
    assert!(
        fx.receive(&fx.main, LONG).await.is_empty(),
        "hidden while in flight"
    );
    fx.queue
        .delete(&fx.main, &message.receipt_handle)
        .await
        .expect("delete");
    fx.wait(Duration::from_millis(100)).await;
    assert!(fx.drain(&fx.main).await.is_empty(), "deleted for good");
}

async fn delay_hides_the_message(fx: &QueueFixture) {
    fx.queue
        .send(
            &fx.main,
            OutgoingMessage::new("later").delayed(Duration::from_secs(2)),
        )
        .await
        .expect("send");
    assert!(
        fx.receive(&fx.main, LONG).await.is_empty(),
        "invisible during its delay"
    );
    fx.wait(Duration::from_millis(2500)).await;
    let received = fx.receive(&fx.main, LONG).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, "later");
}

async fn visibility_timeout_returns_the_message(fx: &QueueFixture) {
    fx.queue
        .send(&fx.main, OutgoingMessage::new("retry me"))
        .await
        .expect("send");
    let first = fx.receive(&fx.main, SHORT).await;
    assert_eq!(first.len(), 1);
    fx.wait(Duration::from_millis(1500)).await;
    let second = fx.receive(&fx.main, LONG).await;
    assert_eq!(
        second.len(),
        1,
        "visible again once its visibility timeout passed"
    );
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2);
    fx.queue
        .delete(&fx.main, &second[0].receipt_handle)
        .await
        .expect("delete");
    fx.wait(Duration::from_millis(100)).await;
    assert!(fx.drain(&fx.main).await.is_empty());
}

async fn batch_of_25(fx: &QueueFixture) {
    let messages: Vec<OutgoingMessage> = (0..25)
        .map(|i| OutgoingMessage::new(format!("m{i}")))
        .collect();
    fx.queue
        .send_batch(&fx.main, messages)
        .await
        .expect("send batch");
    let bodies: BTreeSet<String> = fx
        .drain(&fx.main)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    let expected: BTreeSet<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
}

async fn batch_reports_invalid_entries(fx: &QueueFixture) {
    let mut messages: Vec<OutgoingMessage> = (0..15)
        .map(|i| OutgoingMessage::new(format!("m{i}")))
        .collect();
    messages[3] = OutgoingMessage::new("");
    messages[12] = OutgoingMessage::new("x").delayed(Duration::from_secs(901));
    let err = fx
        .queue
        .send_batch(&fx.main, messages)
        .await
        .expect_err("two invalid entries");
    match err {
        QueueError::PartialBatch { failed } => assert_eq!(failed, [3, 12]),
        other => panic!("expected PartialBatch, got {other:?}"),
    }
    let received = fx.drain(&fx.main).await;
    assert_eq!(received.len(), 13, "the valid entries were sent");
}

async fn poison_message_lands_in_the_dlq(fx: &QueueFixture) {
    let id = fx
        .queue
        .send(&fx.main, OutgoingMessage::new("poison"))
        .await
        .expect("send");
    for attempt in 1..=MAX_RECEIVES {
        let received = fx.receive(&fx.main, SHORT).await;
        assert_eq!(received.len(), 1, "attempt {attempt}");
        assert_eq!(received[0].receive_count, attempt);
        fx.wait(Duration::from_millis(1500)).await;
    }
    assert!(
        fx.receive(&fx.main, LONG).await.is_empty(),
        "received more than the limit: moved instead of delivered"
    );
    let dead = fx.receive(&fx.dlq, LONG).await;
    assert_eq!(
        dead.len(),
        1,
        "the poison message is in the dead-letter queue"
    );
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].message_id, id, "with its id");
}

async fn invalid_message_is_refused(fx: &QueueFixture) {
    let invalid = |r: Result<String, QueueError>| matches!(r, Err(QueueError::Invalid(_)));
    assert!(
        invalid(fx.queue.send(&fx.main, OutgoingMessage::new("")).await),
        "empty body"
    );
    let huge = "x".repeat(256 * 1024 + 1);
    assert!(
        invalid(fx.queue.send(&fx.main, OutgoingMessage::new(huge)).await),
        "body too large"
    );
    let late = OutgoingMessage::new("x").delayed(Duration::from_secs(901));
    assert!(
        invalid(fx.queue.send(&fx.main, late).await),
        "delay over 15 minutes"
    );
    for max in [0, 11] {
        let r = fx.queue.receive(&fx.main, max, LONG).await;
        assert!(matches!(r, Err(QueueError::Invalid(_))), "receive {max}");
    }
    assert!(fx.drain(&fx.main).await.is_empty(), "nothing was sent");
}

async fn unknown_queue_is_not_found(fx: &QueueFixture) {
    let err = fx
        .queue
        .send(&fx.missing, OutgoingMessage::new("x"))
        .await
        .expect_err("no such queue");
    assert!(matches!(err, QueueError::QueueNotFound), "{err:?}");
    let err = fx.queue.check(&fx.missing).await.expect_err("check");
    assert!(matches!(err, QueueError::QueueNotFound), "{err:?}");
}

async fn check_reaches_the_queue(fx: &QueueFixture) {
    fx.queue.check(&fx.main).await.expect("check");
}
