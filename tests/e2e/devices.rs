//! Wearables over the running local stack: a HealthKit-style batch pushed twice over
//! HTTP is stored once, a day of minutes reads back hourly, and a threshold crossed by
//! parallel batches reaches the provider once: one `notification` frame on their open
//! WebSocket and one e-mail in the outbox (delivered by the notify worker).

use docare_e2e::TestStack;
use docare_local::accounts;
use futures::StreamExt;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn minute(day_start: i64, i: i64, value: f64) -> Value {
    let at = chrono::DateTime::from_timestamp(day_start + i * 60, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"id": format!("E2E-{i}"), "code": "8867-4", "value": value, "unit": "/min",
        "effective": at, "source": "apple_health"})
}

#[tokio::test]
pub(crate) async fn batches_over_http_are_stored_once_read_hourly_and_a_crossing_notifies_once() {
    let t = TestStack::start().await;
    let app = t.app().clone();
    let patient = accounts::create(&app, "wear@example.com", "Wes Wearer", Role::Patient, false)
        .await
        .unwrap();
    let provider = accounts::create(
        &app,
        "wear-dr@example.com",
        "Dr Watch",
        Role::Provider,
        true,
    )
    .await
    .unwrap();
    care::start(&app, &provider.id, &patient.id, "admin", None)
        .await
        .unwrap();
    let token = |id: String, role| {
        let app = app.clone();
        async move {
            app.tokens
                .issue(&app, &id, role, &app.new_id(), &["pwd", "otp", "mfa"])
                .await
                .unwrap()
                .0
        }
    };
    let pt = token(patient.id.clone(), Role::Patient).await;
    let vt = token(provider.id.clone(), Role::Provider).await;

    // Yesterday, one sample a minute (1,440), pushed in two batches, then both again.
    let today = chrono::Utc::now().timestamp().div_euclid(86_400) * 86_400;
    let day_start = today - 86_400;
    let samples: Vec<Value> = (0..1440)
        .map(|i| minute(day_start, i, 60.0 + (i % 60) as f64))
        .collect();
    for _ in 0..2 {
        for chunk in samples.chunks(720) {
            let answer = t
                .http
                .post(t.url("/api/v1/observations/batch"))
                .bearer_auth(&pt)
                .json(&json!({ "samples": chunk }))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
        }
    }
    let from = chrono::DateTime::from_timestamp(day_start, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = chrono::DateTime::from_timestamp(today, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let series: Value = t
        .http
        .get(t.url(&format!(
            "/api/v1/observations?patient_id={}&code=8867-4&from={from}&to={to}&resolution=1h",
            patient.id
        )))
        .bearer_auth(&vt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let buckets = series["items"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 24, "{series}");
    assert!(
        buckets.iter().all(|b| b["count"] == 60),
        "each sample once: {series}"
    );

    // The provider's threshold, and their open WebSocket.
    let threshold = t
        .http
        .put(t.url("/api/v1/observations/thresholds"))
        .bearer_auth(&vt)
        .json(&json!({"patient_id": patient.id, "code": "40443-4", "above": 120.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(threshold.status(), 200);
    let mut request = t.stack.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {vt}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("provider connects");

    // Twelve batches crossing at once over HTTP.
    let now = chrono::Utc::now().timestamp();
    let pushes =
        (0..12).map(|i| {
            let at = chrono::DateTime::from_timestamp(now - 600 + i * 30, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            t.http
            .post(t.url("/api/v1/observations/batch"))
            .bearer_auth(&pt)
            .json(&json!({"samples": [{"id": format!("RHR-{i}"), "code": "40443-4", "value": 150.0,
                "unit": "/min", "effective": at, "source": "apple_health"}]}))
            .send()
        });
    for answer in futures::future::join_all(pushes).await {
        assert_eq!(answer.unwrap().status(), 200);
    }

    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("a push in time")
        .unwrap()
        .unwrap();
    let Message::Text(text) = frame else {
        panic!("text frame")
    };
    let event: Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(event["type"], "notification");
    assert_eq!(event["data"]["kind"], "observation_threshold");
    assert_eq!(event["data"]["code"], "40443-4");
    assert!(!text.contains("150"), "the push carries no value");
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), socket.next())
            .await
            .is_err(),
        "one notification frame"
    );

    let outbox = t.stack.parts.outbox_dir.clone();
    let mails = || -> Vec<Value> {
        std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .filter(|m: &Value| m["to"] == "wear-dr@example.com")
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        shared::testing::eventually(|| !mails().is_empty()).await,
        "the provider is e-mailed"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sent = mails();
    assert_eq!(sent.len(), 1, "once per episode: {sent:?}");
    assert!(!sent[0]["body"].as_str().unwrap_or("").contains("150"));
}

/// A Google Health connection over the running local stack, as a browser makes it: the
/// connect route's authorization URL is the fake's consent page, which redirects (302) to
/// the callback route; the callback connects once (a replay is a 400); the fake's signed
/// deliveries reach the webhook over HTTP and the stack's sync worker stores the data
/// points once (a forged delivery is refused); deleting revokes.
#[tokio::test]
pub(crate) async fn a_google_health_connection_through_the_fakes_consent_page() {
    let t = TestStack::start().await;
    let app = t.app().clone();
    let patient = accounts::create(&app, "link@example.com", "Lin Link", Role::Patient, false)
        .await
        .unwrap();
    let (pt, _) = app
        .tokens
        .issue(&app, &patient.id, Role::Patient, &app.new_id(), &["pwd"])
        .await
        .unwrap();
    let started: Value = t
        .http
        .post(t.url("/api/v1/devices/connect/google_health"))
        .bearer_auth(&pt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let authorize = started["authorization_url"].as_str().unwrap();
    assert!(
        authorize.starts_with(&t.url("/_fake/google-health/authorize?")),
        "{authorize}"
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent = browser.get(authorize).send().await.unwrap();
    assert_eq!(consent.status(), 302);
    let callback = consent.headers()["location"].to_str().unwrap().to_string();
    assert!(
        callback.starts_with(&t.url("/api/v1/devices/google_health/callback?")),
        "{callback}"
    );
    let connected = browser.get(&callback).send().await.unwrap();
    assert_eq!(connected.status(), 200);
    let body: Value = connected.json().await.unwrap();
    assert_eq!(body["state"], "connected");
    let replay = browser.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400, "the state works once");
    // A consent request that is not a PKCE S256 request of our client: 400.
    let plain = authorize.replace("code_challenge_method=S256", "code_challenge_method=plain");
    assert_eq!(browser.get(&plain).send().await.unwrap().status(), 400);

    let listed: Value = t
        .http
        .get(t.url("/api/v1/devices"))
        .bearer_auth(&pt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // Google's side: the patient's heart rates of the last hour, then its deliveries to
    // the local webhook route (the fake POSTs them over HTTP). A forged one is refused;
    // a signed one is synced by the device-sync worker running in the stack, and sent
    // again stores nothing twice.
    let google = &t.stack.parts.google;
    let now = app.now();
    let at = |minutes_ago: i64| {
        shared::domain::Timestamp::new(now.as_datetime() - chrono::Duration::minutes(minutes_ago))
    };
    google.add_points(
        shared::adapters::local::FAKE_HEALTH_USER,
        (1..=30).map(|m| shared::ports::health_api::DataPoint {
            data_type: shared::ports::health_api::DataType::HeartRate,
            at: at(m),
            value: 60.0 + m as f64,
        }),
    );
    let delivery = |forged: bool| {
        google.delivery(
            shared::adapters::local::FAKE_HEALTH_USER,
            shared::ports::health_api::DataType::HeartRate,
            at(60),
            now,
            forged,
        )
    };
    let forged = delivery(true).await.unwrap();
    assert_eq!(google.deliver(&forged).await.unwrap(), 401);
    let signed = delivery(false).await.unwrap();
    let verification = shared::adapters::local::GoogleDelivery {
        authorization: signed.authorization.clone(),
        body: r#"{"type":"verification"}"#.into(),
    };
    assert_eq!(google.deliver(&verification).await.unwrap(), 201);
    let series_url = t.url(&format!(
        "/api/v1/observations?code=8867-4&from={}&to={}&resolution=1d",
        at(24 * 60),
        at(-1)
    ));
    let count = || {
        let (http, url, pt) = (t.http.clone(), series_url.clone(), pt.clone());
        async move {
            let body: Value = http
                .get(url)
                .bearer_auth(&pt)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["count"].as_i64().unwrap())
                .sum::<i64>()
        }
    };
    for round in 0..2 {
        assert_eq!(google.deliver(&signed).await.unwrap(), 200);
        let mut stored = 0;
        for _ in 0..300 {
            stored = count().await;
            let synced = google.lists() > round;
            if stored == 30 && synced {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(stored, 30, "round {round}: each data point stored once");
    }
    let listed: Value = t
        .http
        .get(t.url("/api/v1/devices"))
        .bearer_auth(&pt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed["items"][0]["last_sync_at"].is_string(), "{listed}");

    let deleted = t
        .http
        .delete(t.url("/api/v1/devices/google_health"))
        .bearer_auth(&pt)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}
