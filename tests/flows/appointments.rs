//! Appointments through the appointments router on a throw-away local app (manual
//! clock at Monday 2026-11-23 09:00 UTC): racing bookings, overlapping lengths,
//! idempotency, reschedule and cancel moving the claims, the status machine and its
//! cut-offs, the care relationship on confirmation, availability changes, DST slots and
//! the unit of work.

use http::Method;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::testing::{account, dispatch, request, token, with_ports, AuditTableDown, TestApp};
use shared::App;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const TUESDAY_10: &str = "2026-11-24T10:00:00Z";

fn weekdays(start: &str, end: &str) -> Vec<Value> {
    ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .map(|d| json!({"day": d, "start": start, "end": end}))
        .collect()
}

struct World {
    t: TestApp,
    router: shared::http::Router,
    provider: String,
    provider_token: String,
    patient: String,
    patient_token: String,
}

async fn world() -> World {
    let t = TestApp::new();
    let provider = account(&t.app, "dr@example.com", "Dr Gray", Role::Provider).await;
    let provider_token = token(
        &t.app,
        &provider,
        Role::Provider,
        "dr",
        &["pwd", "mfa", "otp"],
    )
    .await;
    let patient = account(&t.app, "pat@example.com", "Pat", Role::Patient).await;
    let patient_token = token(&t.app, &patient, Role::Patient, "pat", &["pwd"]).await;
    let w = World {
        t,
        router: docare_appointments::router(),
        provider,
        provider_token,
        patient,
        patient_token,
    };
    let (status, body) = w
        .call(
            &w.provider_token,
            Method::PUT,
            "/api/v1/providers/me/availability",
            Some(
                json!({"time_zone": "UTC", "slot_minutes": 30, "weekly": weekdays("09:00", "17:00"),
                "specialty": "Cardiology", "consultation_types": ["video", "in_person"]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    w
}

impl World {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_on(&self.router, &self.t.app, token, method, path, body).await
    }

    async fn patch(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(token, Method::PATCH, path, Some(body)).await
    }

    async fn book(&self, token: &str, start: &str) -> (u16, Value) {
        self.call(
            token,
            Method::POST,
            "/api/v1/appointments",
            Some(
                json!({"provider_id": self.provider, "start": start, "consultation_type": "video"}),
            ),
        )
        .await
    }

    async fn slots(&self, from: &str, to: &str) -> Vec<String> {
        let path = format!("/api/v1/providers/{}/slots", self.provider);
        let mut req = request(Method::GET, &path, Some(&self.patient_token), None);
        req.query.insert("from".into(), from.into());
        req.query.insert("to".into(), to.into());
        let (status, body) = dispatch(&self.router, &self.t.app, req).await;
        assert_eq!(status, 200, "{body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["start"].as_str().unwrap().to_string())
            .collect()
    }

    /// Moves the clock and issues fresh tokens (access tokens live 15 minutes).
    async fn advance(&mut self, minutes: i64) {
        self.t.clock.advance(chrono::Duration::minutes(minutes));
        self.patient_token =
            token(&self.t.app, &self.patient, Role::Patient, "pat", &["pwd"]).await;
        self.provider_token = token(
            &self.t.app,
            &self.provider,
            Role::Provider,
            "dr",
            &["pwd", "mfa", "otp"],
        )
        .await;
    }

    async fn patients(&self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..n {
            let id = account(
                &self.t.app,
                &format!("p{i}@example.com"),
                "P",
                Role::Patient,
            )
            .await;
            out.push(token(&self.t.app, &id, Role::Patient, &format!("s{i}"), &["pwd"]).await);
        }
        out
    }
}

async fn call_on(
    router: &shared::http::Router,
    app: &App,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let path_only = path.split('?').next().unwrap_or(path);
    let req = request(method, path_only, Some(token), body);
    dispatch(router, app, req).await
}

/// Fires `tokens.len()` bookings of `start` at once, each through its own app instance
/// (its own audit writer, as separate Lambda instances), and returns the statuses and
/// the most bookings that were in flight together.
pub async fn race(
    apps: Vec<App>,
    tokens: Vec<String>,
    provider: &str,
    start: &str,
) -> (Vec<u16>, usize) {
    let n = tokens.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (app, token) in apps.into_iter().zip(tokens) {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let body = json!({"provider_id": provider, "start": start, "consultation_type": "video"});
        tasks.push(tokio::spawn(async move {
            let router = docare_appointments::router();
            let req = request(
                Method::POST,
                "/api/v1/appointments",
                Some(&token),
                Some(body),
            );
            barrier.wait().await;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let (status, _) = dispatch(&router, &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    (statuses, most.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_bookings_of_one_slot_on_fifty_instances_leave_exactly_one() {
    let w = world().await;
    let tokens = w.patients(50).await;
    let apps: Vec<App> = (0..50).map(|_| with_ports(&w.t.app, |_| {})).collect();
    let (statuses, most) = race(apps, tokens, &w.provider, TUESDAY_10).await;
    assert!(
        most >= 25,
        "the bookings overlapped in time: at most {most} in flight"
    );
    let won = statuses.iter().filter(|s| **s == 201).count();
    let lost = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((won, lost), (1, 49), "{statuses:?}");
    let (_, listed) = w
        .call(&w.provider_token, Method::GET, "/api/v1/appointments", None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let free = w
        .slots("2026-11-24T09:00:00Z", "2026-11-24T12:00:00Z")
        .await;
    assert!(!free.contains(&TUESDAY_10.to_string()), "{free:?}");
    assert!(free.contains(&"2026-11-24T10:30:00Z".to_string()));
}

#[tokio::test]
async fn overlapping_appointments_of_different_lengths_are_refused() {
    let w = world().await;
    // A 30-minute appointment at 10:30.
    let (status, _) = w.book(&w.patient_token, "2026-11-24T10:30:00Z").await;
    assert_eq!(status, 201);
    // The provider moves to 60-minute slots: 10:00-11:00 overlaps it.
    let (status, body) = w
        .call(
            &w.provider_token,
            Method::PUT,
            "/api/v1/providers/me/availability",
            Some(json!({"time_zone": "UTC", "slot_minutes": 60, "weekly": weekdays("09:00", "17:00")})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The booked appointment stays, and the answer says it is outside the new slots.
    assert_eq!(body["booked_outside_availability"], 1, "{body}");
    let other = &w.patients(1).await[0];
    let (status, body) = w.book(other, TUESDAY_10).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    // Neither 10:00 nor the slot that would overlap is offered; 11:00 is, and books.
    let free = w
        .slots("2026-11-24T09:00:00Z", "2026-11-24T13:00:00Z")
        .await;
    assert_eq!(
        free,
        [
            "2026-11-24T09:00:00Z",
            "2026-11-24T11:00:00Z",
            "2026-11-24T12:00:00Z"
        ]
    );
    assert_eq!(w.book(other, "2026-11-24T11:00:00Z").await.0, 201);
    let (_, mine) = w
        .call(&w.patient_token, Method::GET, "/api/v1/appointments", None)
        .await;
    assert_eq!(
        mine["items"][0]["start"], "2026-11-24T10:30:00Z",
        "still booked"
    );
}

#[tokio::test]
async fn only_offered_future_slots_book() {
    let w = world().await;
    for (start, why) in [
        ("2026-11-23T08:30:00Z", "past"),
        ("2026-11-24T10:10:00Z", "off the grid"),
        ("2026-11-24T18:00:00Z", "outside hours"),
        ("2026-11-28T10:00:00Z", "Saturday"),
    ] {
        let (status, body) = w.book(&w.patient_token, start).await;
        assert_eq!(status, 422, "{why}: {body}");
    }
    let (status, body) = w
        .call(
            &w.patient_token,
            Method::POST,
            "/api/v1/appointments",
            Some(json!({"provider_id": w.provider, "start": "tomorrow", "consultation_type": "video"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, listed) = w
        .call(&w.patient_token, Method::GET, "/api/v1/appointments", None)
        .await;
    assert_eq!(listed["items"], json!([]), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_booking_answers_the_first_answer_and_a_reused_key_is_refused() {
    let w = world().await;
    let booking = |key: &str, start: &str, reason: &str| {
        let mut req = request(
            Method::POST,
            "/api/v1/appointments",
            Some(&w.patient_token),
            Some(
                json!({"provider_id": w.provider, "start": start, "consultation_type": "video", "reason": reason}),
            ),
        );
        req.headers.insert("idempotency-key", key.parse().unwrap());
        req
    };
    // Ten retries of one booking race; every one answers the same appointment.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = with_ports(&w.t.app, |_| {});
        let req = booking("retry-1", TUESDAY_10, "dizzy spells");
        tasks.push(tokio::spawn(async move {
            dispatch(&docare_appointments::router(), &app, req).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["reason"], "dizzy spells");
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    // The same key with another body is a 422, however it differs.
    for req in [
        booking("retry-1", "2026-11-24T11:00:00Z", "dizzy spells"),
        booking("retry-1", TUESDAY_10, "something else"),
    ] {
        let (status, body) = dispatch(&w.router, &w.t.app, req).await;
        assert_eq!(status, 422, "{body}");
    }
    let (_, listed) = w
        .call(&w.patient_token, Method::GET, "/api/v1/appointments", None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    // A bad key is a 400.
    let (status, _) = dispatch(
        &w.router,
        &w.t.app,
        booking("spaces are bad", TUESDAY_10, "x"),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn reschedule_moves_the_claim_and_cancel_releases_it() {
    let w = world().await;
    let (_, booked) = w.book(&w.patient_token, TUESDAY_10).await;
    let path = format!("/api/v1/appointments/{}", booked["id"].as_str().unwrap());
    let (status, confirmed) = w
        .call(
            &w.provider_token,
            Method::PATCH,
            &path,
            Some(json!({"status": "confirmed"})),
        )
        .await;
    assert_eq!(
        (status, confirmed["status"].as_str()),
        (200, Some("confirmed"))
    );
    let (status, moved) = w
        .call(
            &w.patient_token,
            Method::PATCH,
            &path,
            Some(json!({"start": "2026-11-24T14:00:00Z"})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["start"], "2026-11-24T14:00:00Z");
    assert_eq!(moved["end"], "2026-11-24T14:30:00Z");
    assert_eq!(moved["status"], "requested", "a patient's move asks again");
    let others = w.patients(2).await;
    assert_eq!(w.book(&others[0], "2026-11-24T14:00:00Z").await.0, 409);
    assert_eq!(
        w.book(&others[0], TUESDAY_10).await.0,
        201,
        "the old time is free"
    );
    // Moving onto taken time is a 409 and changes nothing.
    let (status, _) = w
        .call(
            &w.patient_token,
            Method::PATCH,
            &path,
            Some(json!({"start": TUESDAY_10})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, cancelled) = w
        .call(
            &w.patient_token,
            Method::PATCH,
            &path,
            Some(json!({"status": "cancelled"})),
        )
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(
        w.book(&others[1], "2026-11-24T14:00:00Z").await.0,
        201,
        "released"
    );
    // A cancelled appointment moves no more.
    let (status, _) = w
        .call(
            &w.patient_token,
            Method::PATCH,
            &path,
            Some(json!({"status": "confirmed"})),
        )
        .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_status_machine_and_its_cut_offs() {
    let mut w = world().await;
    let (_, booked) = w.book(&w.patient_token, TUESDAY_10).await;
    let path = format!("/api/v1/appointments/{}", booked["id"].as_str().unwrap());
    // The patient cannot confirm (403), nothing skips a step (422).
    assert_eq!(
        w.patch(&w.patient_token, &path, json!({"status": "confirmed"}))
            .await
            .0,
        403
    );
    assert_eq!(
        w.patch(&w.provider_token, &path, json!({"status": "completed"}))
            .await
            .0,
        422
    );
    assert_eq!(
        w.patch(&w.provider_token, &path, json!({"status": "bogus"}))
            .await
            .0,
        400
    );
    assert_eq!(
        w.patch(&w.provider_token, &path, json!({"status": "confirmed"}))
            .await
            .0,
        200
    );
    // Notes are the provider's, the reason the patient's.
    assert_eq!(
        w.patch(&w.patient_token, &path, json!({"notes": "x"}))
            .await
            .0,
        403
    );
    let (status, body) = w
        .patch(&w.provider_token, &path, json!({"notes": "bring ECG"}))
        .await;
    assert_eq!((status, body["notes"].as_str()), (200, Some("bring ECG")));
    // 90 minutes before the start: too late for the patient to cancel or move.
    w.advance(23 * 60 + 30).await;
    assert_eq!(
        w.patch(&w.patient_token, &path, json!({"status": "cancelled"}))
            .await
            .0,
        422
    );
    assert_eq!(
        w.patch(
            &w.patient_token,
            &path,
            json!({"start": "2026-11-24T15:00:00Z"})
        )
        .await
        .0,
        422
    );
    // Check-in opens an hour before; no-show only after the start.
    assert_eq!(
        w.patch(&w.patient_token, &path, json!({"status": "checked_in"}))
            .await
            .0,
        422
    );
    w.advance(45).await;
    assert_eq!(
        w.patch(&w.provider_token, &path, json!({"status": "no_show"}))
            .await
            .0,
        422
    );
    assert_eq!(
        w.patch(&w.patient_token, &path, json!({"status": "checked_in"}))
            .await
            .0,
        200
    );
    assert_eq!(
        w.patch(&w.provider_token, &path, json!({"status": "in_progress"}))
            .await
            .0,
        200
    );
    let (status, done) = w
        .patch(&w.provider_token, &path, json!({"status": "completed"}))
        .await;
    assert_eq!((status, done["status"].as_str()), (200, Some("completed")));
    assert_eq!(done["notes"], "bring ECG");
    // Another patient sees nothing of it.
    let other = &w.patients(1).await[0];
    assert_eq!(w.call(other, Method::GET, &path, None).await.0, 404);
    assert_eq!(
        w.patch(other, &path, json!({"status": "cancelled"}))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn confirming_starts_the_care_relationship_but_never_revives_one_the_patient_ended() {
    use shared::auth::care;
    let w = world().await;
    let users = docare_users::router();
    let (_, booked) = w.book(&w.patient_token, TUESDAY_10).await;
    let path = format!("/api/v1/appointments/{}", booked["id"].as_str().unwrap());
    assert!(!care::is_active(&w.t.app, &w.provider, &w.patient)
        .await
        .unwrap());
    assert_eq!(
        w.call(
            &w.provider_token,
            Method::PATCH,
            &path,
            Some(json!({"status": "confirmed"}))
        )
        .await
        .0,
        200
    );
    let (rel, _) = care::between(&w.t.app, &w.provider, &w.patient)
        .await
        .unwrap()
        .unwrap();
    assert!(rel.active);
    assert_eq!(rel.source, "appointment");
    // Now the provider may book for the patient.
    let for_patient = json!({"provider_id": w.provider, "patient_id": w.patient,
        "start": "2026-11-24T11:00:00Z", "consultation_type": "in_person", "reason": "follow-up"});
    let (status, body) = w
        .call(
            &w.provider_token,
            Method::POST,
            "/api/v1/appointments",
            Some(for_patient),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("confirmed")),
        "{body}"
    );
    // The patient ends the relationship; a new booking confirmed does not revive it.
    let (status, _) = dispatch(
        &users,
        &w.t.app,
        request(
            Method::DELETE,
            &format!("/api/v1/care-relationships/{}", rel.id),
            Some(&w.patient_token),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (_, again) = w.book(&w.patient_token, "2026-11-24T12:00:00Z").await;
    let again = format!("/api/v1/appointments/{}", again["id"].as_str().unwrap());
    assert_eq!(
        w.call(
            &w.provider_token,
            Method::PATCH,
            &again,
            Some(json!({"status": "confirmed"}))
        )
        .await
        .0,
        200
    );
    assert!(!care::is_active(&w.t.app, &w.provider, &w.patient)
        .await
        .unwrap());
    // And without a relationship the provider cannot book for the patient.
    let (status, _) = w
        .call(
            &w.provider_token,
            Method::POST,
            "/api/v1/appointments",
            Some(json!({"provider_id": w.provider, "patient_id": w.patient,
                "start": "2026-11-24T13:00:00Z", "consultation_type": "video"})),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn slots_keep_local_time_across_dst_in_new_york_and_berlin() {
    let t = TestApp::new();
    let router = docare_appointments::router();
    let patient = account(&t.app, "pat@example.com", "Pat", Role::Patient).await;
    let patient_token = token(&t.app, &patient, Role::Patient, "p", &["pwd"]).await;
    for (zone, from, to, want) in [
        // New York springs forward on Sunday 2027-03-14: 09:00 is 14:00Z, then 13:00Z.
        (
            "America/New_York",
            "2027-03-12T00:00:00Z",
            "2027-03-16T00:00:00Z",
            ["2027-03-12T14:00:00Z", "2027-03-15T13:00:00Z"],
        ),
        // Berlin falls back on Sunday 2027-10-31: 09:00 is 07:00Z, then 08:00Z.
        (
            "Europe/Berlin",
            "2027-10-29T00:00:00Z",
            "2027-11-02T00:00:00Z",
            ["2027-10-29T07:00:00Z", "2027-11-01T08:00:00Z"],
        ),
    ] {
        let provider = account(
            &t.app,
            &format!("dr-{}@example.com", zone.len()),
            "Dr",
            Role::Provider,
        )
        .await;
        let provider_token = token(&t.app, &provider, Role::Provider, "d", &["pwd"]).await;
        let weekly = vec![
            json!({"day": "friday", "start": "09:00", "end": "09:30"}),
            json!({"day": "monday", "start": "09:00", "end": "09:30"}),
        ];
        let (status, body) = call_on(
            &router,
            &t.app,
            &provider_token,
            Method::PUT,
            "/api/v1/providers/me/availability",
            Some(json!({"time_zone": zone, "slot_minutes": 30, "weekly": weekly})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let mut req = request(
            Method::GET,
            &format!("/api/v1/providers/{provider}/slots"),
            Some(&patient_token),
            None,
        );
        req.query.insert("from".into(), from.into());
        req.query.insert("to".into(), to.into());
        let (status, body) = dispatch(&router, &t.app, req).await;
        assert_eq!(status, 200, "{body}");
        let starts: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["start"].as_str().unwrap())
            .collect();
        assert_eq!(starts, want, "{zone}");
        assert_eq!(body["time_zone"], zone);
    }
    // A range over 31 days is refused.
    let mut req = request(
        Method::GET,
        &format!("/api/v1/providers/{patient}/slots"),
        Some(&patient_token),
        None,
    );
    req.query
        .insert("from".into(), "2027-01-01T00:00:00Z".into());
    req.query.insert("to".into(), "2027-02-05T00:00:00Z".into());
    assert_eq!(dispatch(&router, &t.app, req).await.0, 400);
}

#[tokio::test]
async fn a_booking_whose_audit_event_cannot_be_recorded_is_not_kept() {
    let w = world().await;
    let down = with_ports(&w.t.app, |p| p.db = AuditTableDown::of(&w.t.app));
    let (status, _) = call_on(
        &w.router,
        &down,
        &w.patient_token,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"provider_id": w.provider, "start": TUESDAY_10, "consultation_type": "video"})),
    )
    .await;
    assert_eq!(status, 503);
    // The time is still free, and books.
    assert!(w
        .slots("2026-11-24T09:00:00Z", "2026-11-24T12:00:00Z")
        .await
        .contains(&TUESDAY_10.to_string()));
    assert_eq!(w.book(&w.patient_token, TUESDAY_10).await.0, 201);
}

#[tokio::test]
async fn the_directory_lists_providers_with_their_next_open_slot() {
    let w = world().await;
    w.book(&w.patient_token, "2026-11-23T09:30:00Z").await;
    let (status, body) = w
        .call(&w.patient_token, Method::GET, "/api/v1/providers", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let entry = &body["items"][0];
    assert_eq!(entry["id"], w.provider.as_str());
    assert_eq!(entry["name"], "Dr Gray");
    assert_eq!(entry["specialty"], "Cardiology");
    assert_eq!(entry["time_zone"], "UTC");
    assert_eq!(entry["consultation_types"], json!(["video", "in_person"]));
    // 09:00 has begun (now), 09:30 is booked: 10:00 is next.
    assert_eq!(
        entry["next_open_slot"]["start"], "2026-11-23T10:00:00Z",
        "{body}"
    );
    // Patients do not publish availability.
    let (status, _) = w
        .call(
            &w.patient_token,
            Method::PUT,
            "/api/v1/providers/me/availability",
            Some(json!({"time_zone": "UTC", "slot_minutes": 30, "weekly": []})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = w
        .call(
            &w.provider_token,
            Method::PUT,
            "/api/v1/providers/me/availability",
            Some(json!({"time_zone": "EST", "slot_minutes": 30, "weekly": []})),
        )
        .await;
    assert_eq!(status, 400);
}

/// Runs the reminder scheduler until it has caught up with the clock; the reminders it
/// queued.
async fn catch_up(app: &App) -> usize {
    let mut queued = 0;
    loop {
        let run = docare_reminders::run(app).await.expect("scheduler run");
        queued += run.queued;
        if run.behind == 0 {
            return queued;
        }
    }
}

#[tokio::test]
async fn a_scheduler_that_fell_behind_never_reminds_of_a_moved_or_cancelled_time() {
    let mut w = world().await; // Monday 09:00
    let patient = w.patient_token.clone();
    let (status, moved) = w.book(&patient, TUESDAY_10).await;
    assert_eq!(status, 201, "{moved}");
    let (status, cancelled) = w.book(&patient, "2026-11-24T11:00:00Z").await;
    assert_eq!(status, 201, "{cancelled}");
    assert_eq!(
        catch_up(&w.t.app).await,
        0,
        "the cursor starts at Monday 09:00"
    );
    // No scheduler run succeeds for a day: by Tuesday 09:20 both 24-hour reminders and
    // the 10:00 appointment's 1-hour reminder were due, none queued.
    w.advance(24 * 60 + 20).await;
    let provider = w.provider_token.clone();
    let (status, body) = w
        .patch(
            &provider,
            &format!("/api/v1/appointments/{}", moved["id"].as_str().unwrap()),
            json!({"start": "2026-11-24T15:00:00Z"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = w
        .patch(
            &provider,
            &format!("/api/v1/appointments/{}", cancelled["id"].as_str().unwrap()),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        catch_up(&w.t.app).await,
        0,
        "the catch-up reminds of no time that no longer holds"
    );
    // The moved one's 1-hour reminder (14:00) is the only one left.
    w.advance(4 * 60 + 40).await;
    assert_eq!(catch_up(&w.t.app).await, 1);
    let queued =
        w.t.app
            .queue
            .receive(
                &w.t.app.config.queues.reminders,
                10,
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap();
    assert_eq!(queued.len(), 1);
    let message: Value = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(message["subject_id"], moved["id"]);
    assert_eq!(message["due_at"], "2026-11-24T14:00:00Z");
    assert_eq!(message["starts_at"], "2026-11-24T15:00:00Z");
    // Cancelled while its reminder waits on the queue: the worker sends nothing.
    let (status, body) = w
        .patch(
            &w.provider_token.clone(),
            &format!("/api/v1/appointments/{}", moved["id"].as_str().unwrap()),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    let mut record = aws_lambda_events::sqs::SqsMessage::default();
    record.message_id = Some("m1".into());
    record.body = Some(queued[0].body.clone());
    event.records.push(record);
    let response = docare_reminders::deliver(w.t.app.clone(), event).await;
    assert!(response.batch_item_failures.is_empty());
    let sent = std::fs::read_dir(w.t.dir.path().join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(sent, 0, "no e-mail of a cancelled appointment");
    assert!(shared::store::reminders::unresolved(&w.t.app, 10)
        .await
        .unwrap()
        .is_empty());
}
