//! Queue consumers: delivery to the outbox, idempotency, retries, and the dead-letter
//! queue; schedules fire with EventBridge's event.

use docare_e2e::TestStack;
use docare_local::workers::{Consumer, Schedule};
use serde_json::{json, Value};
use shared::clock::SystemClock;
use shared::ports::queue::OutgoingMessage;
use shared::testing::eventually;
use shared::testing::{local_app, with_ports, OUTAGE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn outbox_files(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn notification(id: &str) -> OutgoingMessage {
    OutgoingMessage::new(
        json!({"id": id, "channel": "email", "to": "pat@example.com", "subject": "Hello", "body": "Code 123456"})
            .to_string(),
    )
}

#[tokio::test]
pub(crate) async fn a_queued_notification_reaches_the_outbox_through_the_running_stack() {
    let t = TestStack::start().await;
    let queue = &t.app().config.queues.notifications;
    t.app()
        .queue
        .send(queue, notification("n-1"))
        .await
        .expect("send");
    let outbox = t.stack.parts.outbox_dir.clone();
    assert!(
        eventually(|| outbox_files(&outbox).len() == 1).await,
        "delivered"
    );
    let message = &outbox_files(&outbox)[0];
    assert_eq!(message["to"], "pat@example.com");
    assert_eq!(message["channel"], "email");
    assert_eq!(message["subject"], "Hello");
    assert_eq!(message["body"], "Code 123456");
    assert!(message["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(
        eventually(|| t.stack.parts.queue.depth(queue).unwrap_or(1) == 0).await,
        "deleted after success"
    );
    t.stack.stop().await;
}

fn notify_consumer(app: &shared::App) -> Consumer {
    docare_local::mounts::consumers(app)
        .into_iter()
        .find(|c| c.function == "notify")
        .expect("notify consumer")
}

#[tokio::test]
async fn the_same_notification_is_sent_once() {
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let queue = parts.app.config.queues.notifications.clone();
    let consumer = notify_consumer(&parts.app);
    parts
        .app
        .queue
        .send(&queue, notification("dup"))
        .await
        .expect("send");
    parts
        .app
        .queue
        .send(&queue, notification("dup"))
        .await
        .expect("send");
    while consumer
        .poll_once(&parts.app, &parts.queue, Duration::ZERO)
        .await
        > 0
    {}
    assert_eq!(outbox_files(&parts.outbox_dir).len(), 1);
    assert_eq!(parts.queue.depth(&queue).expect("depth"), 0);
}

#[tokio::test]
async fn a_provider_outage_loses_nothing_and_recovers() {
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let queue = parts.app.config.queues.notifications.clone();
    let consumer = notify_consumer(&parts.app);
    parts
        .app
        .queue
        .send(&queue, notification("later"))
        .await
        .expect("send");

    let down = with_ports(&parts.app, |a| a.messenger = Arc::new(OUTAGE));
    assert_eq!(
        consumer
            .poll_once(&down, &parts.queue, Duration::ZERO)
            .await,
        1
    );
    assert_eq!(
        parts.queue.depth(&queue).expect("depth"),
        1,
        "kept for a retry"
    );
    assert!(outbox_files(&parts.outbox_dir).is_empty());

    assert_eq!(
        consumer
            .poll_once(&parts.app, &parts.queue, Duration::ZERO)
            .await,
        1
    );
    assert_eq!(parts.queue.depth(&queue).expect("depth"), 0);
    assert_eq!(outbox_files(&parts.outbox_dir).len(), 1);
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dead_letter_queue_not_dropped() {
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let queue = parts.app.config.queues.notifications.clone();
    let dlq = format!("{queue}-dlq");
    let consumer = notify_consumer(&parts.app);
    parts
        .app
        .queue
        .send(&queue, OutgoingMessage::new("not json"))
        .await
        .expect("send");
    let mut attempts = 0;
    while consumer
        .poll_once(&parts.app, &parts.queue, Duration::ZERO)
        .await
        > 0
    {
        attempts += 1;
        assert!(attempts <= 10, "stops after the receive limit");
    }
    assert_eq!(attempts, shared::adapters::local::MAX_RECEIVES as usize);
    assert_eq!(parts.queue.depth(&queue).expect("depth"), 0);
    let dead = parts
        .app
        .queue
        .receive(&dlq, 10, Duration::from_secs(30))
        .await
        .expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "not json");
}

#[tokio::test]
async fn schedules_fire_with_an_eventbridge_event() {
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = fired.clone();
    let schedule = Schedule::new("tick", Duration::from_millis(30), move |_app, event| {
        let counter = counter.clone();
        async move {
            assert_eq!(event.detail_type, "Scheduled Event");
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let (stop, watcher) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(schedule.run(parts.app.clone(), watcher));
    assert!(eventually(|| fired.load(Ordering::SeqCst) >= 2).await);
    stop.send(true).expect("stop");
    task.await.expect("stopped");
}

#[tokio::test]
async fn a_reminder_that_keeps_failing_ends_in_the_reminders_dead_letter_queue() {
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let queue = parts.app.config.queues.reminders.clone();
    let dlq = format!("{queue}-dlq");
    let consumer = docare_local::mounts::consumers(&parts.app)
        .into_iter()
        .find(|c| c.function == "remind")
        .expect("the reminder worker consumes the reminders queue");
    assert_eq!(consumer.queue, queue);
    parts
        .app
        .queue
        .send(&queue, OutgoingMessage::new(r#"{"id":"x"}"#))
        .await
        .expect("send");
    let mut attempts = 0;
    while consumer
        .poll_once(&parts.app, &parts.queue, Duration::ZERO)
        .await
        > 0
    {
        attempts += 1;
        assert!(attempts <= 10, "stops after the receive limit");
    }
    assert_eq!(attempts, shared::adapters::local::MAX_RECEIVES as usize);
    let dead = parts
        .app
        .queue
        .receive(&dlq, 10, Duration::from_secs(30))
        .await
        .expect("dlq");
    assert_eq!(dead.len(), 1, "visible in the DLQ, not dropped");
}
