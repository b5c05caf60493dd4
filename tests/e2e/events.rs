//! Every sample event in `events/` is fed to its function and the answer checked. A
//! sample without an expectation here fails the test, so the folder stays honest. Each
//! runs as its function (`as_function`), so the IAM tour (`iam.rs`) checks what it does.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::sqs::SqsEvent;
use docare_local::mounts::WEBSOCKET_FUNCTION;
use serde_json::Value;
use shared::auth::Role;
use shared::clock::SystemClock;
use shared::ports::recording::as_function;
use shared::testing::local_app;
use shared::testing::repo_root;
use std::collections::BTreeMap;
use std::sync::Arc;

fn samples(function: &str) -> BTreeMap<String, String> {
    let dir = repo_root().join("events").join(function);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            (name, std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect()
}

fn assert_covered(function: &str, expected: &[&str]) {
    let found: Vec<String> = samples(function).into_keys().collect();
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        found, expected,
        "events/{function} and this test must list the same samples"
    );
}

#[tokio::test]
pub(crate) async fn health_samples() {
    let expected = [
        ("get-health.json", 200, None),
        ("unknown-route.json", 404, Some("not_found")),
        ("wrong-method.json", 404, Some("not_found")),
    ];
    assert_covered("health", &expected.map(|e| e.0));
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let router = docare_health::router();
    for (name, status, code) in expected {
        let request = lambda_http::request::from_str(&samples("health")[name]).expect("parses");
        let response = as_function("health", router.handle_lambda(&parts.app, request)).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        let body: Value = match response.body() {
            lambda_http::Body::Text(text) => serde_json::from_str(text).expect("json"),
            other => panic!("{name}: unexpected body {other:?}"),
        };
        match code {
            Some(code) => {
                assert_eq!(body["error"]["code"], code, "{name}");
                assert_eq!(
                    body["error"]["request_id"], "JKJaXmPLvHcESHA=",
                    "{name}: API Gateway's id"
                );
            }
            None => assert_eq!(body["status"], "ok", "{name}"),
        }
    }
}

#[tokio::test]
pub(crate) async fn realtime_samples() {
    let expected = [
        ("connect-without-token.json", 401),
        ("connect-with-ticket.json", 401),
        ("connect-disallowed-origin.json", 403),
        ("ping.json", 200),
        ("unknown-action.json", 400),
        ("malformed.json", 400),
        // Messaging frames from a connection that is not stored: an error frame, 401.
        ("message-send-unknown-connection.json", 401),
        ("message-read-unknown-connection.json", 401),
        ("typing-start-unknown-connection.json", 401),
        ("typing-stop-unknown-connection.json", 401),
        ("presence-update-unknown-connection.json", 401),
        ("disconnect.json", 200),
    ];
    assert_covered("realtime", &expected.map(|e| e.0));
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let router = docare_realtime::router();
    // In order: a handshake without a token is refused and stores nothing.
    for (name, status) in expected {
        let event: ApiGatewayWebsocketProxyRequest =
            serde_json::from_str(&samples("realtime")[name]).expect("parses");
        let response = as_function(WEBSOCKET_FUNCTION, router.dispatch(&parts.app, event)).await;
        assert_eq!(response.status_code, status, "{name}");
        if name.starts_with("connect-") {
            let stored = parts
                .store
                .raw_items(&parts.app.config.table)
                .expect("items");
            assert!(stored.is_empty(), "nothing stored for a refused connection");
        }
    }
    assert!(parts
        .store
        .raw_items(&parts.app.config.table)
        .expect("items")
        .is_empty());

    // The ticket sample with a ticket really issued: accepted once, then a replay.
    let user = shared::testing::account(&parts.app, "ev@example.com", "Ev", Role::Patient).await;
    let s = shared::testing::session(&parts.app, &user, Role::Patient, &["pwd"]).await;
    let (status, issued) = shared::testing::dispatch(
        &docare_auth::router(),
        &parts.app,
        shared::testing::request(
            http::Method::POST,
            "/api/v1/realtime/ticket",
            Some(&s.access),
            None,
        ),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let with_ticket = |name: &str| {
        let mut event: serde_json::Value =
            serde_json::from_str(&samples("realtime")[name]).expect("parses");
        let ticket = issued["ticket"].clone();
        event["queryStringParameters"]["ticket"] = ticket.clone();
        event["multiValueQueryStringParameters"]["ticket"] = serde_json::json!([ticket]);
        serde_json::from_value::<ApiGatewayWebsocketProxyRequest>(event).expect("event")
    };
    for (name, status) in [
        ("connect-disallowed-origin.json", 403),
        ("connect-with-ticket.json", 200),
        ("connect-with-ticket.json", 401),
    ] {
        let response = as_function(
            WEBSOCKET_FUNCTION,
            router.dispatch(&parts.app, with_ticket(name)),
        )
        .await;
        assert_eq!(response.status_code, status, "{name} with an issued ticket");
    }
}

#[tokio::test]
pub(crate) async fn notify_samples() {
    assert_covered("notify", &["sqs-batch.json"]);
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let event: SqsEvent =
        serde_json::from_str(&samples("notify")["sqs-batch.json"]).expect("parses");
    let response = as_function("notify", docare_notify::handle(parts.app.clone(), event)).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["3b2a0d1e-0f6c-4c7e-9d1b-000000000003"],
        "only the malformed record"
    );
    let sent = std::fs::read_dir(&parts.outbox_dir)
        .expect("outbox")
        .count();
    assert_eq!(sent, 2, "one e-mail and one SMS");
}

/// Feeds a REST function's samples and checks status and error code.
async fn check_http_samples(
    function: &'static str,
    router: shared::http::Router,
    expected: &[(&str, u16, Option<&str>)],
) {
    assert_covered(function, &expected.iter().map(|e| e.0).collect::<Vec<_>>());
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    for (name, status, code) in expected {
        let request = lambda_http::request::from_str(&samples(function)[*name]).expect("parses");
        let response = as_function(function, router.handle_lambda(&parts.app, request)).await;
        assert_eq!(response.status().as_u16(), *status, "{name}");
        let body: Value = match response.body() {
            lambda_http::Body::Text(text) => serde_json::from_str(text).expect("json"),
            other => panic!("{name}: unexpected body {other:?}"),
        };
        if let Some(code) = code {
            assert_eq!(body["error"]["code"], *code, "{name}");
        }
    }
}

#[tokio::test]
pub(crate) async fn auth_samples() {
    check_http_samples(
        "auth",
        docare_auth::router(),
        &[
            ("jwks.json", 200, None),
            (
                "login-unknown-account.json",
                401,
                Some("invalid_credentials"),
            ),
            ("signup-invalid-email.json", 400, Some("validation_failed")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn users_samples() {
    check_http_samples(
        "users",
        docare_users::router(),
        &[
            ("me-without-token.json", 401, Some("unauthenticated")),
            ("me-forged-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn emergency_samples() {
    check_http_samples(
        "emergency",
        docare_emergency::router(),
        &[
            ("contacts-without-token.json", 401, Some("unauthenticated")),
            ("sos-without-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn audit_samples() {
    check_http_samples(
        "audit",
        docare_audit::router(),
        &[
            ("audit-without-token.json", 401, Some("unauthenticated")),
            ("audit-forged-token.json", 401, Some("unauthenticated")),
            (
                "access-log-without-token.json",
                401,
                Some("unauthenticated"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn appointments_samples() {
    check_http_samples(
        "appointments",
        docare_appointments::router(),
        &[
            (
                "appointments-without-token.json",
                401,
                Some("unauthenticated"),
            ),
            ("providers-without-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn medications_samples() {
    check_http_samples(
        "medications",
        docare_medications::router(),
        &[
            ("list-without-token.json", 401, Some("unauthenticated")),
            ("dose-without-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn devices_samples() {
    check_http_samples(
        "devices",
        docare_devices::router(),
        &[
            ("batch-without-token.json", 401, Some("unauthenticated")),
            ("series-without-token.json", 401, Some("unauthenticated")),
            ("google-health-forged.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn device_sync_samples() {
    assert_covered("device-sync", &["sqs-batch.json"]);
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let event: SqsEvent =
        serde_json::from_str(&samples("device-sync")["sqs-batch.json"]).expect("parses");
    let response = as_function(
        "device-sync",
        docare_devices::sync::handle(parts.app.clone(), event),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["5b0d7e2c-1a3f-4e8b-8c2d-000000000002"],
        "only the malformed record (a patient without a connection is acknowledged)"
    );
}

#[tokio::test]
pub(crate) async fn messages_samples() {
    check_http_samples(
        "messages",
        docare_messages::router(),
        &[
            (
                "conversations-without-token.json",
                401,
                Some("unauthenticated"),
            ),
            ("sync-without-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn billing_samples() {
    check_http_samples(
        "billing",
        docare_billing::router(),
        &[
            ("payments-without-token.json", 401, Some("unauthenticated")),
            (
                "transactions-without-token.json",
                401,
                Some("unauthenticated"),
            ),
        ],
    )
    .await;
}

/// Secure notes without a token: 401 before anything is read.
#[tokio::test]
pub(crate) async fn notes_samples() {
    check_http_samples(
        "notes",
        docare_notes::router(),
        &[
            ("create-without-token.json", 401, Some("unauthenticated")),
            ("access-without-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

/// A delivery with a signature that does not verify, and one without: 400, nothing done.
#[tokio::test]
pub(crate) async fn stripe_webhook_samples() {
    check_http_samples(
        "stripe-webhook",
        docare_stripe_webhook::router(),
        &[
            ("forged-signature.json", 400, Some("validation_failed")),
            ("unsigned.json", 400, Some("validation_failed")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn video_samples() {
    check_http_samples(
        "video",
        docare_video::router(),
        &[
            ("create-without-token.json", 401, Some("unauthenticated")),
            ("token-without-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

/// A callback with a signature that does not validate, and one without: 403, nothing
/// done.
#[tokio::test]
pub(crate) async fn twilio_webhook_samples() {
    check_http_samples(
        "twilio-webhook",
        docare_twilio_webhook::router(),
        &[
            ("forged-signature.json", 403, Some("forbidden")),
            ("unsigned.json", 403, Some("forbidden")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn reminder_scheduler_sample() {
    assert_covered("reminders", &["every-minute.json"]);
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let event: aws_lambda_events::eventbridge::EventBridgeEvent =
        serde_json::from_str(&samples("reminders")["every-minute.json"]).expect("parses");
    as_function(
        "reminders",
        docare_reminders::scheduled(parts.app.clone(), event),
    )
    .await
    .expect("an empty minute runs");
    assert!(
        shared::store::reminders::cursor(&parts.app)
            .await
            .expect("cursor")
            .is_some(),
        "the first run sets the cursor at its minute"
    );
}

#[tokio::test]
pub(crate) async fn remind_samples() {
    assert_covered("remind", &["sqs-batch.json"]);
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let event: SqsEvent =
        serde_json::from_str(&samples("remind")["sqs-batch.json"]).expect("parses");
    let response = as_function(
        "remind",
        docare_reminders::deliver(parts.app.clone(), event),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["7c1e5a2b-0f6c-4c7e-9d1b-000000000003"],
        "only the malformed record (the duplicate of the first is acknowledged)"
    );
}

#[tokio::test]
pub(crate) async fn documents_samples() {
    check_http_samples(
        "documents",
        docare_documents::router(),
        &[
            ("list-without-token.json", 401, Some("unauthenticated")),
            ("content-without-token.json", 401, Some("unauthenticated")),
        ],
    )
    .await;
}

#[tokio::test]
pub(crate) async fn scanner_samples() {
    assert_covered("scanner", &["sqs-batch.json"]);
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    let event: SqsEvent =
        serde_json::from_str(&samples("scanner")["sqs-batch.json"]).expect("parses");
    let response = as_function(
        "scanner",
        docare_documents::scanner::handle(parts.app.clone(), event),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["5e2c1b7a-0f6c-4c7e-9d1b-000000000003"],
        "only the malformed record (an upload of no document is deleted, a test event acknowledged)"
    );
}
