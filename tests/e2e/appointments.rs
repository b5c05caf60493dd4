//! The double-booking race end to end: 50 bookings of one slot fired at once over real
//! HTTP at the local stack, and through 50 separate apps on the AWS adapters (as 50
//! Lambda instances) against the AWS emulator. Exactly one wins; the others get 409.
//!
//! The AWS half runs against its own moto, started through `tests/python/serial_moto.py`
//! (one request at a time): the shared `moto_server` is threaded and does not isolate
//! concurrent `TransactWriteItems` (it crashes, and can restore a table snapshot over
//! another transaction's writes), where DynamoDB's transactions are serializable.

use docare_e2e::TestStack;
use http::Method;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::testing::aws::{sdk_config, stage, Stage};
use shared::testing::{account, dispatch, request, token};
use shared::App;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const RACERS: usize = 50;

fn every_day() -> Value {
    let weekly: Vec<Value> = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| json!({"day": d, "start": "00:00", "end": "23:45"}))
    .collect();
    json!({"time_zone": "Europe/Berlin", "slot_minutes": 45, "buffer_minutes": 15, "weekly": weekly})
}

/// A provider with availability, `RACERS` patients, and a free slot a few hours ahead.
async fn set_up(app: &App) -> (String, Vec<String>, String) {
    let router = docare_appointments::router();
    let provider = account(app, "race-dr@example.com", "Dr Race", Role::Provider).await;
    let provider_token = token(app, &provider, Role::Provider, "d", &["pwd"]).await;
    let (status, body) = dispatch(
        &router,
        app,
        request(
            Method::PUT,
            "/api/v1/providers/me/availability",
            Some(&provider_token),
            Some(every_day()),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut tokens = Vec::new();
    for i in 0..RACERS {
        let id = account(
            app,
            &format!("racer{i}@example.com"),
            "Racer",
            Role::Patient,
        )
        .await;
        tokens.push(token(app, &id, Role::Patient, &format!("r{i}"), &["pwd"]).await);
    }
    let (status, slots) = dispatch(
        &router,
        app,
        request(
            Method::GET,
            &format!("/api/v1/providers/{provider}/slots"),
            Some(&tokens[0]),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "{slots}");
    let start = slots["items"][4]["start"].as_str().unwrap().to_string();
    (provider, tokens, start)
}

fn tally(statuses: &[u16]) -> (usize, usize) {
    (
        statuses.iter().filter(|s| **s == 201).count(),
        statuses.iter().filter(|s| **s == 409).count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_bookings_of_one_slot_over_http_at_the_local_stack_leave_exactly_one() {
    let stack = TestStack::start().await;
    let (provider, tokens, start) = set_up(stack.app()).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let url = stack.url("/api/v1/appointments");
    let mut tasks = Vec::new();
    for token in tokens {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let (http, url) = (stack.http.clone(), url.clone());
        let body = json!({"provider_id": provider, "start": start, "consultation_type": "video"});
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("the stack answers");
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == 409 {
                assert_eq!(body["error"]["code"], "conflict", "{body}");
            }
            status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most >= 25,
        "the requests overlapped: at most {most} in flight"
    );
    assert_eq!(tally(&statuses), (1, RACERS - 1), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_bookings_of_one_slot_on_fifty_aws_instances_leave_exactly_one() {
    if shared::testing::aws::endpoint().is_none() {
        return;
    }
    let emulator = SerialMoto::start().await;
    let endpoint = emulator.url.clone();
    let sdk = sdk_config(&endpoint);
    let Stage { table, config, .. } = stage(&sdk, &endpoint, "appt", &[]).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let first = shared::adapters::aws::build_app(config.clone(), &sdk);
    let (provider, tokens, start) = set_up(&first).await;
    // One app per racer: its own SDK clients, caches and audit writer, like a Lambda instance.
    let apps: Vec<App> = (0..RACERS)
        .map(|_| shared::adapters::aws::build_app(config.clone(), &sdk))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (app, token) in apps.into_iter().zip(tokens) {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let body = json!({"provider_id": provider, "start": start, "consultation_type": "video"});
        tasks.push(tokio::spawn(async move {
            let req = request(
                Method::POST,
                "/api/v1/appointments",
                Some(&token),
                Some(body),
            );
            barrier.wait().await;
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let (status, body) = dispatch(&docare_appointments::router(), &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            assert!(matches!(status, 201 | 409), "{status} {body}");
            status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most >= 25,
        "the bookings overlapped: at most {most} in flight"
    );
    assert_eq!(tally(&statuses), (1, RACERS - 1), "{statuses:?}");
    // The table holds one appointment and the slot's three claimed units.
    let scan = dynamodb
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("scan (test only)");
    let pks: Vec<String> = scan
        .items()
        .iter()
        .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert_eq!(pks.iter().filter(|p| p.starts_with("APPT#")).count(), 1);
    assert_eq!(pks.iter().filter(|p| p.starts_with("CLAIM#")).count(), 3);
}

/// A moto that serves one request at a time (see the module documentation), stopped
/// when dropped. Every race test against the emulator uses it: the threaded moto server
/// corrupts transactions that run at the same time.
pub(crate) struct SerialMoto {
    child: std::process::Child,
    pub(crate) url: String,
}

impl SerialMoto {
    pub(crate) async fn start() -> Self {
        let python = std::env::var("DOCARE_TEST_PYTHON")
            .expect("DOCARE_TEST_PYTHON (scripts/test sets it; the venv has moto)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(python)
            .arg(shared::testing::repo_root().join("tests/python/serial_moto.py"))
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serial moto starts");
        let url = format!("http://127.0.0.1:{port}");
        let emulator = SerialMoto { child, url };
        for _ in 0..100 {
            if reqwest::get(format!("{}/moto-api/", emulator.url))
                .await
                .is_ok()
            {
                return emulator;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("serial moto did not start on port {port}");
    }
}

impl Drop for SerialMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
