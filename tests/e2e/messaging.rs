//! Messaging end to end over the local stack with clients no one here wrote: Python's
//! `websockets` for the WebSocket API and `urllib` for REST (`tests/python/chat_flow.py`):
//! two people chat, see typing and presence and each other's receipts; a client that
//! disconnects, misses messages and reconnects gets every one exactly once through
//! `sync`; a third user receives nothing and reads nothing. Then the race of one client
//! message id on fifty AWS instances against the emulator.

use docare_e2e::TestStack;
use docare_local::accounts;
use http::Method;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use shared::testing::aws::{sdk_config, stage, Stage};
use shared::testing::{dispatch, repo_root, request, session};
use shared::App;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn two_people_chat_over_websockets_and_a_reconnecting_client_misses_nothing() {
    let Ok(python) = std::env::var("DOCARE_TEST_PYTHON") else {
        panic!("DOCARE_TEST_PYTHON is not set: run the tests with scripts/test (the venv has websockets)");
    };
    let t = TestStack::start().await;
    let app = t.app().clone();
    let patient = accounts::create(
        &app,
        "chat.pat@example.com",
        "Chat Patient",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    let provider = accounts::create(
        &app,
        "chat.doc@example.com",
        "Dr Chat",
        Role::Provider,
        true,
    )
    .await
    .unwrap();
    let stranger = accounts::create(
        &app,
        "chat.other@example.com",
        "Other Patient",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    care::start(&app, &provider.id, &patient.id, "admin", None)
        .await
        .unwrap();
    let pt = session(&app, &patient.id, Role::Patient, &["pwd"])
        .await
        .access;
    let dt = session(&app, &provider.id, Role::Provider, &["pwd", "mfa"])
        .await
        .access;
    let st = session(&app, &stranger.id, Role::Patient, &["pwd"])
        .await
        .access;
    let created: Value = t
        .http
        .post(t.url("/api/v1/conversations"))
        .bearer_auth(&pt)
        .json(&json!({"participant_ids": [provider.id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = created["id"].as_str().expect("a conversation").to_string();
    let args = [
        t.stack.ws_url(),
        t.stack.http_url(),
        conversation.clone(),
        patient.id.clone(),
        provider.id.clone(),
        pt.clone(),
        dt.clone(),
        st,
    ];
    let script = repo_root().join("tests/python/chat_flow.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    assert!(
        output.status.success(),
        "chat_flow.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // What the store holds: five messages (the resend is not one), numbered 1 to 5.
    let page: Value = t
        .http
        .get(t.url(&format!("/api/v1/conversations/{conversation}/messages")))
        .bearer_auth(&dt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seqs: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [5, 4, 3, 2, 1], "{page}");
}

const RACERS: usize = 48;

/// The messaging tables on the emulator, a patient and a provider in care, a
/// conversation, and a token per racer (each of a real session).
async fn set_up(app: &App) -> (String, Vec<String>) {
    let patient = accounts::create(
        app,
        "race.pat@example.com",
        "Race Patient",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    let provider = accounts::create(app, "race.doc@example.com", "Dr Race", Role::Provider, true)
        .await
        .unwrap();
    care::start(app, &provider.id, &patient.id, "admin", None)
        .await
        .unwrap();
    let first = session(app, &patient.id, Role::Patient, &["pwd"])
        .await
        .access;
    let req = request(
        Method::POST,
        "/api/v1/conversations",
        Some(&first),
        Some(json!({"participant_ids": [provider.id]})),
    );
    let (status, created) = dispatch(&docare_messages::router(), app, req).await;
    assert_eq!(status, 201, "{created}");
    let mut tokens = Vec::new();
    for _ in 0..RACERS {
        tokens.push(first.clone());
    }
    (created["id"].as_str().unwrap().to_string(), tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_eight_sends_of_one_client_message_id_on_forty_eight_aws_instances_store_one() {
    if shared::testing::aws::endpoint().is_none() {
        return;
    }
    let emulator = super::appointments::SerialMoto::start().await;
    let endpoint = emulator.url.clone();
    let sdk = sdk_config(&endpoint);
    let Stage { table, config, .. } = stage(&sdk, &endpoint, "chat", &[]).await;
    let first = shared::adapters::aws::build_app(config.clone(), &sdk);
    let (conversation, tokens) = set_up(&first).await;
    // One app per racer: its own SDK clients, caches and audit writer, like a Lambda instance.
    let apps: Vec<App> = (0..RACERS)
        .map(|_| shared::adapters::aws::build_app(config.clone(), &sdk))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let mut tasks = Vec::new();
    for (app, token) in apps.into_iter().zip(tokens) {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let req = request(
            Method::POST,
            &path,
            Some(&token),
            Some(json!({"client_message_id": "one-id", "body": "Exactly once"})),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let answer = dispatch(&docare_messages::router(), &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most >= RACERS / 2,
        "the sends overlapped: at most {most} in flight"
    );
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "one first answer: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 201)),
        "{statuses:?}"
    );
    let ids: std::collections::BTreeSet<&str> =
        answers.iter().filter_map(|a| a.1["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "every answer names the one message");
    // The table holds one message (raw, through the SDK).
    let scan = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("scan (test only)");
    let messages = scan
        .items()
        .iter()
        .filter(|i| {
            i.get("sk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|sk| sk.starts_with("MSG#"))
        })
        .count();
    assert_eq!(messages, 1);
}
