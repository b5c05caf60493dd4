//! The devices function through its router on a throw-away app with a manual clock
//! (2026-11-23 09:00 UTC): HealthKit-style batches stored once however often they are
//! pushed, FHIR-shaped reads, a week of one-minute heart rates downsampled to hours in
//! a bounded number of DynamoDB round trips, and a threshold crossed by 40 parallel
//! batches notifying the provider once per episode.

use http::Method;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use shared::ports::recording;
use shared::testing::{account, dispatch, drain_notifications, request, token, TestApp};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A patient and a provider on a fresh app, and the devices router (`device_sync.rs`
/// uses it too).
pub(super) struct H {
    pub(super) t: TestApp,
    pub(super) router: shared::http::Router,
    pub(super) patient: String,
    pub(super) pt: String,
    pub(super) provider: String,
    /// The provider's MFA session.
    pub(super) vt: String,
}

pub(super) async fn setup() -> H {
    let t = TestApp::new();
    let patient = account(&t.app, "pat@example.com", "Pat Patient", Role::Patient).await;
    let provider = account(&t.app, "doc@example.com", "Dr Carer", Role::Provider).await;
    let pt = token(&t.app, &patient, Role::Patient, "s1", &["pwd"]).await;
    let vt = token(
        &t.app,
        &provider,
        Role::Provider,
        "s2",
        &["pwd", "otp", "mfa"],
    )
    .await;
    H {
        t,
        router: docare_devices::router(),
        patient,
        pt,
        provider,
        vt,
    }
}

impl H {
    /// Sends a request (a `?a=b&c=d` query in `path` becomes the query parameters:
    /// `shared::testing::request`).
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        dispatch(
            &self.router,
            &self.t.app,
            request(method, path, Some(token), body),
        )
        .await
    }

    async fn push(&self, samples: Vec<Value>) -> (u16, Value) {
        self.send(
            Method::POST,
            "/api/v1/observations/batch",
            &self.pt,
            Some(json!({ "samples": samples })),
        )
        .await
    }
}

fn sample(id: &str, code: &str, value: f64, unit: &str, at: &str) -> Value {
    json!({"id": id, "code": code, "value": value, "unit": unit, "effective": at, "source": "apple_health"})
}

fn hr(minute: i64, value: f64) -> Value {
    let at = chrono::DateTime::from_timestamp(start_of_week() + minute * 60, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"id": format!("hk-{minute}"), "code": "8867-4", "value": value, "unit": "/min",
        "effective": at, "source": "apple_health"})
}

fn start_of_week() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2026-11-16T00:00:00Z")
        .unwrap()
        .timestamp()
}

#[tokio::test]
async fn a_healthkit_batch_pushed_twice_is_stored_once_and_reads_back_as_fhir() {
    let h = setup().await;
    let batch = vec![
        sample("5D1E-A", "8867-4", 72.0, "/min", "2026-11-23T08:00:00Z"),
        sample("5D1E-B", "8867-4", 75.0, "/min", "2026-11-23T08:01:00Z"),
        sample("5D1E-C", "29463-7", 81.4, "kg", "2026-11-23T07:30:00Z"),
        json!({"id": "SLEEP-1", "code": "93832-4", "value": 7.5, "unit": "h", "source": "apple_health",
            "effective": {"start": "2026-11-22T23:00:00Z", "end": "2026-11-23T06:30:00Z"}}),
    ];
    for _ in 0..2 {
        let (status, body) = h.push(batch.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 4);
    }
    // One duplicate inside a batch does not fail it either.
    let (status, body) = h.push(vec![batch[0].clone(), batch[0].clone()]).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = h
        .send(
            Method::GET,
            "/api/v1/observations?code=8867-4&from=2026-11-23T00:00:00Z&to=2026-11-23T09:00:00Z",
            &h.pt,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "each sample once: {body}");
    let first = &items[0];
    assert_eq!(first["resourceType"], "Observation");
    assert_eq!(first["status"], "final");
    assert_eq!(first["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(first["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(first["valueQuantity"]["value"], 72.0);
    assert_eq!(
        first["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(first["valueQuantity"]["code"], "/min");
    assert_eq!(first["effectiveDateTime"], "2026-11-23T08:00:00Z");
    assert_eq!(
        first["subject"]["reference"],
        format!("Patient/{}", h.patient)
    );
    assert_eq!(first["device"]["display"], "apple_health");
    assert_eq!(first["identifier"][0]["value"], "5D1E-A");
    assert_eq!(items[1]["valueQuantity"]["value"], 75.0);

    let (status, body) = h
        .send(
            Method::GET,
            "/api/v1/observations?code=93832-4&from=2026-11-22T00:00:00Z&to=2026-11-23T09:00:00Z",
            &h.pt,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["items"][0]["effectivePeriod"]["end"],
        "2026-11-23T06:30:00Z"
    );

    // The value is sealed at rest: the stored item holds no plain value.
    let key = shared::store::keys::observation(
        &h.patient,
        "29463-7",
        "2026-11-23T07:30:00Z",
        &shared::store::observations::digest("apple_health", "5D1E-C"),
    );
    let item =
        h.t.app
            .db
            .get(&h.t.app.config.table, &key)
            .await
            .unwrap()
            .expect("stored");
    assert!(matches!(
        item.get("value"),
        Some(shared::ports::db::Value::B(_))
    ));
    assert!(!format!("{item:?}").contains("81.4"));
}

#[tokio::test]
async fn bad_batches_change_nothing_and_strangers_see_nothing() {
    let h = setup().await;
    let good = sample("ok-1", "8867-4", 72.0, "/min", "2026-11-23T08:00:00Z");
    let bad_unit = sample("bad-1", "8867-4", 72.0, "bpm", "2026-11-23T08:00:00Z");
    let (status, body) = h.push(vec![good.clone(), bad_unit]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("samples[1].unit"));
    let too_many: Vec<Value> = (0..1001).map(|i| hr(i, 70.0)).collect();
    assert_eq!(h.push(too_many).await.0, 400);
    // At most 5 minutes ahead of the server's clock (09:00).
    let future = sample("f-1", "8867-4", 72.0, "/min", "2026-11-23T09:06:00Z");
    assert_eq!(h.push(vec![future]).await.0, 400);
    // A body over 512 KiB is refused before it is parsed.
    let padded = json!({"samples": [], "pad": "x".repeat(513 * 1024)});
    let (status, _) = h
        .send(
            Method::POST,
            "/api/v1/observations/batch",
            &h.pt,
            Some(padded),
        )
        .await;
    assert_eq!(status, 413);
    let (status, body) = h
        .send(
            Method::GET,
            "/api/v1/observations?code=8867-4&from=2026-11-23T00:00:00Z&to=2026-11-23T09:00:00Z",
            &h.pt,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 0, "nothing stored");
    let skewed = sample("f-2", "8867-4", 72.0, "/min", "2026-11-23T09:04:00Z");
    assert_eq!(
        h.push(vec![skewed]).await.0,
        200,
        "a phone's clock a little ahead"
    );

    // A provider does not push; a provider outside the care team reads nothing.
    let (status, _) = h
        .send(
            Method::POST,
            "/api/v1/observations/batch",
            &h.vt,
            Some(json!({"samples": [good]})),
        )
        .await;
    assert_eq!(status, 403);
    let path = format!(
        "/api/v1/observations?patient_id={}&code=8867-4&from=2026-11-23T00:00:00Z&to=2026-11-23T09:00:00Z",
        h.patient
    );
    assert_eq!(h.send(Method::GET, &path, &h.vt, None).await.0, 404);
    // A session whose second step was a mailed code reads no PHI, its own included.
    let mailed = token(&h.t.app, &h.patient, Role::Patient, "s5", &["pwd", "mca"]).await;
    let own = "/api/v1/observations?code=8867-4&from=2026-11-23T00:00:00Z&to=2026-11-23T09:00:00Z";
    assert_eq!(h.send(Method::GET, own, &mailed, None).await.0, 403);
    let other = account(&h.t.app, "oth@example.com", "Other", Role::Patient).await;
    let ot = token(&h.t.app, &other, Role::Patient, "s3", &["pwd"]).await;
    assert_eq!(h.send(Method::GET, &path, &ot, None).await.0, 404);
    let threshold = json!({"patient_id": h.patient, "code": "40443-4", "above": 120.0});
    let (status, _) = h
        .send(
            Method::PUT,
            "/api/v1/observations/thresholds",
            &h.vt,
            Some(threshold),
        )
        .await;
    assert_eq!(status, 404, "no care relationship");
    // Bad queries.
    for query in [
        "code=1-1&from=2026-11-23T00:00:00Z&to=2026-11-23T09:00:00Z",
        "code=8867-4&from=2026-10-01T00:00:00Z&to=2026-11-23T09:00:00Z",
        "code=8867-4&from=2026-11-23T00:00:00Z&to=2026-11-23T09:00:00Z&resolution=7s",
        "code=8867-4&to=2026-11-23T09:00:00Z",
        // 22 days of minutes: more than 10,000 buckets.
        "code=8867-4&from=2026-11-01T00:00:00Z&to=2026-11-23T00:00:00Z&resolution=1m",
    ] {
        let path = format!("/api/v1/observations?{query}");
        assert_eq!(
            h.send(Method::GET, &path, &h.pt, None).await.0,
            400,
            "{query}"
        );
    }
}

#[tokio::test]
async fn a_week_of_minutes_reads_back_hourly_in_a_bounded_number_of_round_trips() {
    let h = setup().await;
    // 7 × 24 × 60 = 10,080 one-minute heart rates, pushed in batches of 1,000.
    let all: Vec<Value> = (0..10_080).map(|m| hr(m, 60.0 + (m % 60) as f64)).collect();
    for chunk in all.chunks(1000) {
        let (status, body) = h.push(chunk.to_vec()).await;
        assert_eq!(status, 200, "{body}");
    }
    let path = "/api/v1/observations?code=8867-4&from=2026-11-16T00:00:00Z&to=2026-11-23T00:00:00Z&resolution=1h";
    let req = request(Method::GET, path, Some(&h.pt), None);
    let (response, accesses) = h.router.dispatch_recorded(&h.t.app, req).await;
    let status = response.status.as_u16();
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 168, "one bucket per hour of the week");
    assert!(items.iter().all(|b| b["count"] == 60));
    assert_eq!(items[0]["start"], "2026-11-16T00:00:00Z");
    assert_eq!(
        (
            items[0]["min"].as_f64(),
            items[0]["max"].as_f64(),
            items[0]["avg"].as_f64()
        ),
        (Some(60.0), Some(119.0), Some(89.5))
    );
    let counts = recording::counts(&accesses);
    let queries = accesses
        .iter()
        .filter(|a| a.action == "dynamodb:Query" && a.scope == "OBS#")
        .count();
    println!(
        "10,080 one-minute samples -> 168 hourly buckets: {queries} observation queries, {} DynamoDB round trips in all, {} KMS calls",
        counts.dynamodb, counts.kms
    );
    assert_eq!(queries, 11, "ceil(10,080 / 1,000) pages");
    assert!(counts.dynamodb <= 16, "bounded: {counts:?}");
}

#[tokio::test]
async fn forty_parallel_batches_crossing_a_threshold_notify_the_provider_once_per_episode() {
    let h = setup().await;
    care::start(&h.t.app, &h.provider, &h.patient, "admin", None)
        .await
        .unwrap();
    let threshold = json!({"patient_id": h.patient, "code": "40443-4", "above": 120.0, "clear_after_minutes": 30});
    let (status, body) = h
        .send(
            Method::PUT,
            "/api/v1/observations/thresholds",
            &h.vt,
            Some(threshold),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unit"], "/min");
    drain_notifications(&h.t.app).await;

    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (router, app, pt) = (h.router.clone(), h.t.app.clone(), h.pt.clone());
        let (in_flight, peak, barrier) = (in_flight.clone(), peak.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let at = format!("2026-11-23T08:{:02}:00Z", i);
            let body = json!({"samples": [{"id": format!("rhr-{i}"), "code": "40443-4", "value": 130.0 + i as f64,
                "unit": "/min", "effective": at, "source": "apple_health"}]});
            barrier.wait().await;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let answer = dispatch(
                &router,
                &app,
                request(Method::POST, "/api/v1/observations/batch", Some(&pt), Some(body)),
            )
            .await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert!(peak.load(Ordering::SeqCst) > 1, "the batches overlapped");
    let sent: Vec<_> = drain_notifications(&h.t.app)
        .await
        .into_iter()
        .filter(|(_, n)| n.id.starts_with("threshold:"))
        .collect();
    assert_eq!(sent.len(), 1, "one notification for one episode");
    // Sealed on the queue: no value, no address in the clear.
    assert!(sent[0].1.sealed.is_some() && sent[0].1.to.is_empty() && sent[0].1.body.is_empty());

    // Back in range, but not yet for the hold: the episode stays open, no new notice.
    let (status, _) = h
        .push(vec![sample(
            "rhr-in-1",
            "40443-4",
            70.0,
            "/min",
            "2026-11-23T08:45:00Z",
        )])
        .await;
    assert_eq!(status, 200);
    let (status, _) = h
        .push(vec![sample(
            "rhr-out-2",
            "40443-4",
            125.0,
            "/min",
            "2026-11-23T08:46:00Z",
        )])
        .await;
    assert_eq!(status, 200);
    assert!(
        drain_notifications(&h.t.app).await.is_empty(),
        "the same episode"
    );
    // In range for 30 minutes after the last crossing: the episode closes...
    let (status, _) = h
        .push(vec![sample(
            "rhr-in-2",
            "40443-4",
            70.0,
            "/min",
            "2026-11-23T08:59:00Z",
        )])
        .await;
    assert_eq!(status, 200);
    h.t.clock.advance(chrono::Duration::minutes(30));
    let pt = token(&h.t.app, &h.patient, Role::Patient, "s4", &["pwd"]).await;
    let push = |id: &str, value: f64, at: &str| {
        request(
            Method::POST,
            "/api/v1/observations/batch",
            Some(&pt),
            Some(json!({"samples": [sample(id, "40443-4", value, "/min", at)]})),
        )
    };
    let (status, _) = dispatch(
        &h.router,
        &h.t.app,
        push("rhr-in-3", 72.0, "2026-11-23T09:16:00Z"),
    )
    .await;
    assert_eq!(status, 200);
    // ...and the next crossing is a new episode, notified again.
    let (status, _) = dispatch(
        &h.router,
        &h.t.app,
        push("rhr-out-3", 140.0, "2026-11-23T09:20:00Z"),
    )
    .await;
    assert_eq!(status, 200);
    let sent = drain_notifications(&h.t.app).await;
    assert_eq!(
        sent.iter()
            .filter(|(_, n)| n.id.starts_with("threshold:"))
            .count(),
        1,
        "a second episode"
    );
}

#[tokio::test]
async fn a_crossing_whose_notice_cannot_be_queued_fails_and_its_retry_notifies_once() {
    let h = setup().await;
    care::start(&h.t.app, &h.provider, &h.patient, "admin", None)
        .await
        .unwrap();
    let threshold = json!({"patient_id": h.patient, "code": "40443-4", "above": 120.0});
    let (status, _) = h
        .send(
            Method::PUT,
            "/api/v1/observations/thresholds",
            &h.vt,
            Some(threshold),
        )
        .await;
    assert_eq!(status, 200);
    drain_notifications(&h.t.app).await;
    let batch =
        json!({"samples": [sample("rhr-q-1", "40443-4", 150.0, "/min", "2026-11-23T08:30:00Z")]});
    let down =
        shared::testing::with_ports(&h.t.app, |p| p.queue = Arc::new(shared::testing::OUTAGE));
    let push = || {
        request(
            Method::POST,
            "/api/v1/observations/batch",
            Some(&h.pt),
            Some(batch.clone()),
        )
    };
    let (status, body) = dispatch(&h.router, &down, push()).await;
    assert_eq!(status, 503, "{body}");
    // The episode was forgotten: the client's retry opens it again and notifies.
    let (status, body) = dispatch(&h.router, &h.t.app, push()).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = dispatch(&h.router, &h.t.app, push()).await;
    assert_eq!(status, 200);
    let sent = drain_notifications(&h.t.app).await;
    assert_eq!(
        sent.iter()
            .filter(|(_, n)| n.id.starts_with("threshold:"))
            .count(),
        1
    );
}
