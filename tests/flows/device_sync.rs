//! Google Health ingest through the devices router and the sync worker on a throw-away
//! app (manual clock, 2026-11-23 09:00 UTC) with the offline fake of Google
//! (`shared::adapters::local::FakeGoogleHealth`): a patient connects through the fake's
//! OAuth; the webhook answers Google's verification 201 and refuses a delivery without
//! the subscriber's secret (401, nothing queued); a signed delivery queues a sync, and
//! the worker stores the announced data points as observations (read back through
//! `GET /api/v1/observations`), pages through the fake's list, records `last_sync_at`,
//! and notifies a provider's threshold once; the same delivery again stores nothing
//! twice; a delivery naming an unknown Google user is answered alike and queues nothing.

use super::devices::{setup, H};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use docare_devices::ingest::PATH;
use http::Method;
use serde_json::{json, Value};
use shared::adapters::local::{GoogleDelivery, FAKE_PAGE_SIZE};
use shared::auth::care;
use shared::domain::Timestamp;
use shared::ports::db::{Query, SortKey};
use shared::ports::health_api::{DataPoint, DataType};
use shared::testing::{dispatch, drain_notifications, request};
use std::time::Duration;

const GOOGLE_USER: &str = "hu-pat-1";
/// Heart rates the fake holds: one a minute from 04:00 to 08:59 (more than a page of
/// the fake's).
const POINTS: i64 = 300;

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn minute(n: i64) -> Timestamp {
    Timestamp::new(
        chrono::DateTime::from_timestamp(at("2026-11-23T04:00:00Z").epoch_secs() + n * 60, 0)
            .unwrap(),
    )
}

impl H {
    /// Connects the patient as the Google user `user` through the fake's consent.
    async fn connect_as(&self, user: &str) {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v1/devices/connect/google_health",
                &self.pt,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let authorize = body["authorization_url"].as_str().unwrap();
        let callback = self.t.google.consent_as(authorize, user).await.unwrap();
        let url = url::Url::parse(&callback).unwrap();
        let mut req = request(Method::GET, url.path(), None, None);
        for (name, value) in url.query_pairs() {
            req.query.insert(name.into_owned(), value.into_owned());
        }
        let (status, body) = dispatch(&self.router, &self.t.app, req).await;
        assert_eq!(status, 200, "{body}");
    }

    /// POSTs to the webhook as Google does: the body, and the `Authorization` header.
    async fn hook(&self, authorization: Option<&str>, body: &str) -> (u16, Value) {
        let mut req = request(Method::POST, PATH, None, None);
        if let Some(value) = authorization {
            req.headers.insert("authorization", value.parse().unwrap());
        }
        req.body = body.as_bytes().to_vec().into();
        dispatch(&self.router, &self.t.app, req).await
    }

    async fn deliver(&self, delivery: &GoogleDelivery) -> (u16, Value) {
        self.hook(Some(&delivery.authorization), &delivery.body)
            .await
    }

    async fn delivery(&self, user: &str, forged: bool) -> GoogleDelivery {
        self.t
            .google
            .delivery(
                user,
                DataType::HeartRate,
                at("2026-11-23T04:00:00Z"),
                at("2026-11-23T05:00:00Z"),
                forged,
            )
            .await
            .unwrap()
    }

    /// Runs the sync worker on every queued message (as the event source mapping does):
    /// how many messages it processed. Every one must succeed.
    async fn run_worker(&self) -> usize {
        let app = &self.t.app;
        let queue = app.config.queues.device_sync.clone().unwrap();
        let mut processed = 0;
        loop {
            let batch = app
                .queue
                .receive(&queue, 10, Duration::from_secs(30))
                .await
                .unwrap();
            if batch.is_empty() {
                return processed;
            }
            let mut event = SqsEvent::default();
            for message in &batch {
                let mut record = SqsMessage::default();
                record.message_id = Some(message.message_id.clone());
                record.body = Some(message.body.clone());
                event.records.push(record);
            }
            let response = docare_devices::sync::handle(app.clone(), event).await;
            assert!(response.batch_item_failures.is_empty(), "a sync failed");
            for message in &batch {
                app.queue
                    .delete(&queue, &message.receipt_handle)
                    .await
                    .unwrap();
            }
            processed += batch.len();
        }
    }

    /// Observation items of the patient's heart rates (one `Query` of the partition).
    async fn stored(&self) -> usize {
        let app = &self.t.app;
        let mut count = 0;
        let mut query = Query::partition(format!("OBS#{}#8867-4", self.patient))
            .sort_key(SortKey::BeginsWith("2026".into()));
        loop {
            let page = app
                .db
                .query(&app.config.table, query.clone())
                .await
                .unwrap();
            count += page.items.len();
            match page.next {
                Some(next) => query.start = Some(next),
                None => return count,
            }
        }
    }
}

#[tokio::test]
async fn a_signed_delivery_syncs_the_data_points_once_and_a_forged_one_is_refused() {
    let h = setup().await;
    care::start(&h.t.app, &h.provider, &h.patient, "admin", None)
        .await
        .unwrap();
    let (status, body) = h
        .send(
            Method::PUT,
            "/api/v1/observations/thresholds",
            &h.vt,
            Some(json!({"patient_id": h.patient, "code": "8867-4", "above": 120.0})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    h.connect_as(GOOGLE_USER).await;
    // A minute of 130 among the heart rates: one crossing.
    h.t.google.add_points(
        GOOGLE_USER,
        (0..POINTS).map(|n| DataPoint {
            data_type: DataType::HeartRate,
            at: minute(n),
            value: if n == 42 {
                130.0
            } else {
                70.0 + (n % 10) as f64
            },
        }),
    );
    assert!(POINTS as usize > FAKE_PAGE_SIZE, "the sync pages");

    // Google's verification: with the secret 201, without it refused.
    let signed = h.delivery(GOOGLE_USER, false).await;
    let verification = r#"{"type":"verification"}"#;
    let (status, body) = h.hook(Some(&signed.authorization), verification).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = h.hook(None, verification).await;
    assert_eq!(status, 401);

    // A forged delivery: refused, nothing queued or stored.
    let forged = h.delivery(GOOGLE_USER, true).await;
    assert_ne!(forged.authorization, signed.authorization);
    let (status, body) = h.deliver(&forged).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = h.hook(None, &signed.body).await;
    assert_eq!(status, 401);
    assert_eq!(h.run_worker().await, 0, "nothing queued");

    // The signed delivery: one sync; the worker stores the hour announced, paging.
    let (status, body) = h.deliver(&signed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"received": true}));
    assert_eq!(h.run_worker().await, 1);
    assert_eq!(h.stored().await, 61, "04:00 to 05:00, both ends");
    let lists = h.t.google.lists();

    // Read back through the API as FHIR observations of the source.
    let (status, body) = h
        .send(
            Method::GET,
            "/api/v1/observations?code=8867-4&from=2026-11-23T04:00:00Z&to=2026-11-23T04:02:00Z",
            &h.pt,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["valueQuantity"]["value"], 70.0);
    assert_eq!(items[0]["device"]["display"], "google_health");
    assert_eq!(
        items[0]["identifier"][0]["value"],
        "heart-rate:2026-11-23T04:00:00Z"
    );

    // The same delivery again, and a wider one: each observation once.
    let (status, _) = h.deliver(&signed).await;
    assert_eq!(status, 200);
    assert_eq!(h.run_worker().await, 1);
    assert_eq!(h.stored().await, 61, "nothing stored twice");
    assert!(h.t.google.lists() > lists);
    let wide =
        h.t.google
            .delivery(
                GOOGLE_USER,
                DataType::HeartRate,
                minute(0),
                minute(POINTS),
                false,
            )
            .await
            .unwrap();
    assert_eq!(h.deliver(&wide).await.0, 200);
    assert_eq!(h.run_worker().await, 1);
    assert_eq!(h.stored().await, POINTS as usize);
    let (status, body) = h
        .send(
            Method::GET,
            "/api/v1/observations?code=8867-4&from=2026-11-23T04:00:00Z&to=2026-11-23T12:00:00Z&resolution=1d",
            &h.pt,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["count"], POINTS);
    assert_eq!(body["items"][0]["max"], 130.0);

    // The provider heard of the crossing once, however often it was synced.
    let notices = drain_notifications(&h.t.app)
        .await
        .into_iter()
        .filter(|(_, n)| n.id.starts_with("threshold:"))
        .count();
    assert_eq!(notices, 1);

    // The connection's last sync is recorded.
    let (status, body) = h.send(Method::GET, "/api/v1/devices", &h.pt, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["last_sync_at"], "2026-11-23T09:00:00Z");
}

#[tokio::test]
async fn an_unknown_user_or_an_unsynced_type_queues_nothing_and_a_bad_body_is_refused() {
    let h = setup().await;
    h.connect_as(GOOGLE_USER).await;
    let signed = h.delivery("hu-someone-else", false).await;
    let (status, body) = h.deliver(&signed).await;
    assert_eq!(
        (status, body),
        (200, json!({"received": true})),
        "the same answer"
    );
    let steps = signed.body.replace("heart-rate", "steps");
    assert_eq!(h.hook(Some(&signed.authorization), &steps).await.0, 200);
    assert_eq!(h.run_worker().await, 0);
    for bad in ["[]", "{}", "not json", r#"[{"data":{}}]"#] {
        let (status, body) = h.hook(Some(&signed.authorization), bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let too_big = "x".repeat(docare_devices::ingest::MAX_BODY + 1);
    assert_eq!(h.hook(Some(&signed.authorization), &too_big).await.0, 413);
    assert_eq!(h.run_worker().await, 0);

    // After a disconnect the user is unknown again.
    let (status, _) = h
        .send(Method::DELETE, "/api/v1/devices/google_health", &h.pt, None)
        .await;
    assert_eq!(status, 204);
    let mine = h.delivery(GOOGLE_USER, false).await;
    assert_eq!(h.deliver(&mine).await.0, 200);
    assert_eq!(h.run_worker().await, 0);
}
