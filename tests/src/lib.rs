//! The end-to-end tests' one helper of their own: a real local stack on random ports with
//! a fresh data folder per test. Everything else (throw-away apps, requests, the AWS
//! emulator, `eventually`, `repo_root`) is `shared::testing`; this part stays here
//! because `shared` cannot depend on `docare-local`.

use docare_local::Stack;
use shared::config::LocalSettings;
use std::path::Path;

/// A local stack for one test; its data folder is deleted when it is dropped.
pub struct TestStack {
    pub stack: Stack,
    pub http: reqwest::Client,
    pub data: tempfile::TempDir,
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A stack on the given clock (a `ManualClock` moves time for the schedule and the
    /// worker as well as the handlers).
    pub async fn start_with_clock(clock: std::sync::Arc<dyn shared::clock::Clock>) -> Self {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let stack = Stack::start_with_clock(&settings_for(data.path()), clock)
            .await
            .unwrap_or_else(|e| panic!("local stack: {e:#}"));
        TestStack {
            stack,
            http: reqwest::Client::new(),
            data,
        }
    }

    /// A stack whose WebSocket gateway keeps the given limits instead of API Gateway's.
    pub async fn start_with_ws_limits(limits: docare_local::ws_gateway::WsLimits) -> Self {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let stack = Stack::start_with(
            &settings_for(data.path()),
            std::sync::Arc::new(shared::clock::SystemClock),
            limits,
        )
        .await
        .unwrap_or_else(|e| panic!("local stack: {e:#}"));
        TestStack {
            stack,
            http: reqwest::Client::new(),
            data,
        }
    }

    /// A stack started as `docare-local --dev-limits` would be.
    pub async fn start_with_dev_limits() -> Self {
        Self::start_with(true).await
    }

    /// A stack with settings of the test's choosing (random ports and a fresh folder
    /// unless the closure changes them).
    pub async fn start_adjusted(adjust: impl FnOnce(&mut LocalSettings)) -> Self {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut settings = settings_for(data.path());
        adjust(&mut settings);
        TestStack {
            stack: start_with_settings(settings).await,
            http: reqwest::Client::new(),
            data,
        }
    }

    async fn start_with(dev_limits: bool) -> Self {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let stack = start_with_settings(LocalSettings {
            dev_limits,
            ..settings_for(data.path())
        })
        .await;
        TestStack {
            stack,
            http: reqwest::Client::new(),
            data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.http_url())
    }

    pub fn app(&self) -> &shared::App {
        &self.stack.parts.app
    }
}

/// Starts a stack on random ports in the given data folder.
pub async fn start_in(data_dir: &Path) -> Stack {
    start_with_settings(settings_for(data_dir)).await
}

/// Random ports, the given folder, production limits.
fn settings_for(data_dir: &Path) -> LocalSettings {
    LocalSettings {
        http_port: 0,
        ws_port: 0,
        data_dir: data_dir.to_path_buf(),
        log_filter: "warn".into(),
        dev_limits: false,
        allowed_origins: shared::config::AllowedOrigins::default(),
        access_token_secs: shared::domain::session::ACCESS_TOKEN_SECS,
    }
}

async fn start_with_settings(settings: LocalSettings) -> Stack {
    Stack::start(&settings)
        .await
        .unwrap_or_else(|e| panic!("local stack: {e:#}"))
}

/// The time zone test providers publish their every-day availability (00:00–23:45
/// local) in when a test needs a slot that starts soon (a video call's tokens are issued
/// from 15 minutes before the start): UTC, but in the last hour of the UTC day, when the
/// next free slot would be tomorrow's first, Tokyo (UTC+9, no daylight saving), whose
/// day is then in its morning. (A tour that ran at 23:40 UTC found no slot within the
/// join window.)
pub fn availability_zone() -> &'static str {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if now % 86_400 >= 23 * 3_600 {
        "Asia/Tokyo"
    } else {
        "UTC"
    }
}

/// Publishes an every-day availability (00:00–23:45 in [`availability_zone`], 30-minute
/// slots, video) for a
/// provider and books the first free slot for a patient, through the appointments
/// router; returns the appointment id.
pub async fn book_any_slot(
    app: &shared::App,
    provider_id: &str,
    provider_token: &str,
    patient_token: &str,
) -> String {
    use http::Method;
    use shared::testing::{dispatch, request};
    let router = docare_appointments::router();
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let weekly: Vec<serde_json::Value> = days
        .iter()
        .map(|d| serde_json::json!({"day": d, "start": "00:00", "end": "23:45"}))
        .collect();
    let body = serde_json::json!({"time_zone": availability_zone(), "slot_minutes": 30,
        "weekly": weekly, "specialty": "General practice",
        "consultation_types": ["video", "in_person"]});
    let (status, answer) = dispatch(
        &router,
        app,
        request(
            Method::PUT,
            "/api/v1/providers/me/availability",
            Some(provider_token),
            Some(body),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, slots) = dispatch(
        &router,
        app,
        request(
            Method::GET,
            &format!("/api/v1/providers/{provider_id}/slots"),
            Some(patient_token),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "{slots}");
    // Not the very next slot: it may be in the past by the time the booking arrives.
    let start = slots["items"][2]["start"]
        .as_str()
        .unwrap_or_else(|| panic!("{slots}"))
        .to_string();
    let (status, booked) = dispatch(
        &router,
        app,
        request(
            Method::POST,
            "/api/v1/appointments",
            Some(patient_token),
            Some(
                serde_json::json!({"provider_id": provider_id, "start": start,
                "consultation_type": "video", "reason": "persistent cough"}),
            ),
        ),
    )
    .await;
    assert_eq!(status, 201, "{booked}");
    booked["id"].as_str().unwrap_or_default().to_string()
}

/// Fires one identical request per app at once, each app standing for its own Lambda
/// instance (its own caches and audit writer), through `router`: all wait at a barrier,
/// then dispatch. Returns the answers and the most requests that were in flight
/// together (what a race test asserts to show that they overlapped).
pub async fn race_identical(
    router: shared::http::Router,
    apps: Vec<shared::App>,
    method: http::Method,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (Vec<(u16, serde_json::Value)>, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let barrier = Arc::new(tokio::sync::Barrier::new(apps.len()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for app in apps {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let router = router.clone();
        let req = shared::testing::request(method.clone(), path, Some(token), Some(body.clone()));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let answer = shared::testing::dispatch(&router, &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap_or_else(|e| panic!("racer: {e}")));
    }
    (answers, most.load(Ordering::SeqCst))
}

/// Sets the provider's video price (50.00 USD) and makes the patient's payment of the
/// appointment (not confirmed); returns the payment's id.
pub async fn pay_for(
    app: &shared::App,
    provider_token: &str,
    patient_token: &str,
    appointment_id: &str,
) -> String {
    use http::Method;
    use shared::testing::{dispatch, request};
    let router = docare_billing::router();
    let (status, answer) = dispatch(
        &router,
        app,
        request(
            Method::PUT,
            "/api/v1/providers/me/prices",
            Some(provider_token),
            Some(serde_json::json!({"consultation_type": "video", "amount": 5000, "currency": "usd"})),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, paid) = dispatch(
        &router,
        app,
        request(
            Method::POST,
            "/api/v1/payments",
            Some(patient_token),
            Some(serde_json::json!({"appointment_id": appointment_id})),
        ),
    )
    .await;
    assert_eq!(status, 201, "{paid}");
    paid["id"].as_str().unwrap_or_default().to_string()
}

/// A small but real PDF of `size` bytes (at least 64): a header, filler pages of text
/// naming `marker`, an end-of-file line.
pub fn pdf(size: usize, marker: &str) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut page = 0usize;
    while out.len() + 64 < size {
        page += 1;
        out.extend_from_slice(
            format!("% page {page}: {marker} hemoglobin 13.{} g/dL\n", page % 10).as_bytes(),
        );
    }
    out.resize(size.saturating_sub(6), b' ');
    out.extend_from_slice(b"%%EOF\n");
    out
}

/// Starts an upload through the documents router as `token`'s owner: the ticket.
pub async fn start_upload(
    app: &shared::App,
    token: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    use http::Method;
    use shared::testing::{dispatch, request};
    let (status, ticket) = dispatch(
        &docare_documents::router(),
        app,
        request(Method::POST, "/api/v1/documents", Some(token), Some(body)),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    ticket
}

/// What S3 does with a presigned upload and what the scans queue's consumer does with
/// its event, in process: the bytes are stored in the quarantine bucket (as the upload
/// URL of `ticket` would) and the scanner worker runs on the object (as `scanner`).
pub async fn upload_and_scan(app: &shared::App, ticket: &serde_json::Value, bytes: &[u8]) {
    let id = ticket["id"].as_str().unwrap_or_default();
    let key = shared::store::documents::upload_key(id);
    let content_type = ticket["upload_headers"]["content-type"]
        .as_str()
        .unwrap_or("application/octet-stream");
    let quarantine = &app.config.quarantine_bucket;
    app.blobs
        .put(
            quarantine,
            &key,
            bytes.to_vec().into(),
            content_type,
            Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("upload: {e}"));
    let version_id = app
        .blobs
        .head(quarantine, &key)
        .await
        .unwrap_or_else(|e| panic!("head: {e}"))
        .and_then(|meta| meta.version_id);
    let object = shared::worker::S3Object {
        event_name: "ObjectCreated:Put".into(),
        bucket: quarantine.clone(),
        key,
        version_id,
        size: Some(bytes.len() as u64),
    };
    // Boxed: the worker's future is large, and a test's own future lives on its stack.
    shared::ports::recording::as_function(
        "scanner",
        Box::pin(docare_documents::scanner::scan(app.clone(), object)),
    )
    .await
    .unwrap_or_else(|e| panic!("scan: {e}"));
}
