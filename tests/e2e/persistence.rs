//! Data survives a restart of the local stack, and two stacks cannot share a folder.

use docare_e2e::start_in;
use shared::ports::db::{item, Key, Value};
use shared::ports::queue::OutgoingMessage;
use std::time::Duration;

#[tokio::test]
async fn data_and_queued_messages_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = start_in(dir.path()).await;
    let app = stack.parts.app.clone();
    app.db
        .put(
            &app.config.table,
            item([("pk", "T#1".into()), ("sk", "A".into()), ("n", Value::N(7))]),
            None,
        )
        .await
        .expect("put");
    // A dead-letter queue has no consumer, so the message waits there.
    let parked = format!("{}-dlq", app.config.queues.scans);
    app.queue
        .send(&parked, OutgoingMessage::new("scan me"))
        .await
        .expect("send");
    drop(app);
    stack.stop().await;

    let stack = start_in(dir.path()).await;
    let app = stack.parts.app.clone();
    let stored = app
        .db
        .get(&app.config.table, &Key::new("T#1", "A"))
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(stored["n"], Value::N(7));
    let waiting = app
        .queue
        .receive(&parked, 10, Duration::from_secs(1))
        .await
        .expect("receive");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].body, "scan me");
    drop(app);
    stack.stop().await;
}

#[tokio::test]
async fn a_second_stack_on_the_same_folder_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let first = start_in(dir.path()).await;
    let settings = shared::config::LocalSettings {
        http_port: 0,
        ws_port: 0,
        data_dir: dir.path().to_path_buf(),
        log_filter: "warn".into(),
        dev_limits: false,
        allowed_origins: shared::config::AllowedOrigins::default(),
        access_token_secs: shared::domain::session::ACCESS_TOKEN_SECS,
    };
    let err = docare_local::Stack::start(&settings)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("another local stack"),
        "{err:#}"
    );
    first.stop().await;
}
