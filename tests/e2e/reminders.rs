//! Reminders end to end, over HTTP and WebSocket on a manual clock: a medication's dose
//! reminder arrives once, at 08:00 local on both sides of a daylight-saving change (New
//! York and Berlin), by WebSocket, e-mail and SMS; a duplicated SQS delivery sends
//! nothing twice; a scheduler that fell behind catches up, at most 30 minutes per run.

use chrono::{TimeZone, Utc};
use docare_e2e::TestStack;
use docare_local::accounts;
use futures::StreamExt;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::clock::ManualClock;
use shared::ports::queue::OutgoingMessage;
use shared::testing::eventually;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Patient {
    id: String,
}

async fn token(t: &TestStack, user: &str) -> String {
    token_as(t, user, Role::Patient).await
}

/// A token of a live session (its id is a fresh ULID, begun after the account's
/// last "end every session").
async fn token_as(t: &TestStack, user: &str, role: Role) -> String {
    t.app()
        .tokens
        .issue(t.app(), user, role, &t.app().new_id(), &["pwd"])
        .await
        .expect("token")
        .0
}

async fn connect(t: &TestStack, user: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = t.stack.ws_url().into_client_request().expect("request");
    let bearer = format!("Bearer {}", token(t, user).await);
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("header"));
    tokio_tungstenite::connect_async(request)
        .await
        .expect("connect")
        .0
}

/// The next JSON frame within `wait`, if any.
async fn frame(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(text.as_str()).expect("json"))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket closed: {other:?}"),
        }
    }
}

async fn call(
    t: &TestStack,
    method: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = t
        .http
        .request(method, t.url(path))
        .bearer_auth(token(t, user).await);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every message in the outbox.
fn all_mail(t: &TestStack) -> Vec<String> {
    std::fs::read_dir(&t.stack.parts.outbox_dir)
        .expect("outbox")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// The subject of the notice a new phone sends (`shared::notifications::security_change`).
const SECURITY_NOTICE: &str = "A security setting of your DoCare account changed";

/// The reminders in the outbox: every message but the owner's security notices, which
/// the notify worker may deliver (or, at least once, deliver again) at any moment.
fn outbox(t: &TestStack) -> Vec<String> {
    let mut files: Vec<_> = all_mail(t)
        .into_iter()
        .filter(|m| !m.contains(SECURITY_NOTICE))
        .collect();
    files.sort();
    files
}

/// What the new-phone notice says (not a reminder).
const PHONE_NOTICE: &str = "sign-in codes was changed";

async fn patient(t: &TestStack, email: &str, zone: &str) -> Patient {
    let created = accounts::create(t.app(), email, "Ada Reminder", Role::Patient, false)
        .await
        .expect("account");
    let (status, profile) = call(
        t,
        reqwest::Method::PUT,
        "/api/v1/users/me/profile",
        &created.id,
        Some(json!({"full_name": "Ada Reminder", "phone": "+14155550142", "time_zone": zone, "current_password": created.password})),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["time_zone"], zone);
    // A new phone is a security change the owner is told of (not a reminder, so
    // `outbox` leaves it out).
    let notice = PHONE_NOTICE;
    assert!(
        eventually(|| all_mail(t).iter().any(|m| m.contains(notice))).await,
        "the owner is told of the new phone"
    );
    Patient { id: created.id }
}

/// Runs the scheduler until it has caught up with the clock.
async fn schedule(t: &TestStack) -> usize {
    let mut queued = 0;
    loop {
        let run =
            shared::ports::recording::as_function("reminders", docare_reminders::run(t.app()))
                .await
                .expect("scheduler run");
        assert!(run.minutes <= shared::store::reminders::MAX_MINUTES_PER_RUN);
        queued += run.queued;
        if run.behind == 0 {
            return queued;
        }
    }
}

#[tokio::test]
pub(crate) async fn a_dose_reminder_arrives_once_at_eight_local_across_spring_forward_in_new_york()
{
    // 07:50 EST on the day before the change (2027-03-14 02:00 EST -> 03:00 EDT).
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2027, 3, 13, 12, 50, 0).unwrap(),
    ));
    let t = TestStack::start_with_clock(clock.clone()).await;
    let p = patient(&t, "ny@example.com", "America/New_York").await;
    let drug = "Lisinopril";
    let (status, med) = call(
        &t,
        reqwest::Method::POST,
        "/api/v1/medications",
        &p.id,
        Some(
            json!({"name": drug, "dosage": "10 mg", "form": "tablet", "route": "oral",
            "schedule": {"kind": "times_of_day", "times": ["08:00"]}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{med}");
    assert_eq!(med["starts_on"], "2027-03-13", "today in New York");
    assert_eq!(med["next_dose_at"], "2027-03-13T13:00:00Z", "08:00 EST");
    let med_id = med["id"].as_str().unwrap().to_string();

    let mut socket = connect(&t, &p.id).await;
    assert_eq!(
        schedule(&t).await,
        0,
        "the first run starts at its own minute"
    );
    clock.advance(chrono::Duration::seconds(9 * 60 + 59)); // 07:59:59 EST
    assert_eq!(schedule(&t).await, 0, "not yet");
    assert!(frame(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
    clock.advance(chrono::Duration::seconds(1)); // 08:00:00 EST
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("the reminder");
    let reminder_id = format!(
        "dose-{med_id}-{}",
        Utc.with_ymd_and_hms(2027, 3, 13, 13, 0, 0)
            .unwrap()
            .timestamp()
    );
    assert_eq!(event["type"], "notification");
    assert_eq!(event["data"]["kind"], "reminder");
    assert_eq!(event["data"]["reminder_id"], reminder_id.as_str());
    assert_eq!(event["data"]["due_at"], "2027-03-13T13:00:00Z");
    assert!(
        !event.to_string().contains(drug),
        "no drug name on the socket"
    );
    assert!(
        eventually(|| outbox(&t).len() == 2).await,
        "one e-mail and one SMS"
    );
    for message in outbox(&t) {
        assert!(
            message.contains("a medication dose is due at 2027-03-13 08:00 (America/New_York)"),
            "{message}"
        );
        assert!(
            !message.contains(drug) && !message.contains("10 mg"),
            "no PHI beyond docs/phi.md: {message}"
        );
    }

    // SQS delivers at least once: the same message again sends nothing.
    let duplicate = json!({"id": reminder_id, "kind": "dose", "user_id": p.id, "subject_id": med_id,
        "due_at": "2027-03-13T13:00:00Z"});
    t.app()
        .queue
        .send(
            &t.app().config.queues.reminders,
            OutgoingMessage::new(duplicate.to_string()),
        )
        .await
        .expect("send");
    assert!(
        frame(&mut socket, Duration::from_millis(1500))
            .await
            .is_none(),
        "no second push"
    );
    assert_eq!(outbox(&t).len(), 2, "no second e-mail or SMS");
    assert!(shared::store::reminders::unresolved(t.app(), 10)
        .await
        .unwrap()
        .is_empty());

    // The next reminder was rolled forward: 08:00 EDT on the 14th is 12:00Z.
    let (_, med) = call(
        &t,
        reqwest::Method::GET,
        &format!("/api/v1/medications/{med_id}"),
        &p.id,
        None,
    )
    .await;
    assert_eq!(med["next_dose_at"], "2027-03-14T12:00:00Z");
    // A day later (the connection expired meanwhile: connect again). The scheduler is
    // 23 hours behind and catches up 30 minutes per run.
    clock.advance(chrono::Duration::seconds(23 * 3600 - 1)); // 07:59:59 EDT
    let mut socket = connect(&t, &p.id).await;
    assert_eq!(schedule(&t).await, 0);
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("the second reminder");
    assert_eq!(event["data"]["due_at"], "2027-03-14T12:00:00Z");
    assert!(eventually(|| outbox(&t).len() == 4).await);
    assert!(outbox(&t)
        .iter()
        .any(|m| m.contains("2027-03-14 08:00 (America/New_York)")));
    assert!(
        frame(&mut socket, Duration::from_millis(500))
            .await
            .is_none(),
        "once"
    );
    t.stack.stop().await;
}

#[tokio::test]
pub(crate) async fn berlin_doses_on_fall_back_day_and_a_discontinued_medication_stops_reminding() {
    // 2027-10-31: 03:00 CEST -> 02:00 CET; 02:30 happens twice, the earlier one counts.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2027, 10, 30, 23, 0, 0).unwrap(), // 01:00 CEST
    ));
    let t = TestStack::start_with_clock(clock.clone()).await;
    let p = patient(&t, "berlin@example.com", "Europe/Berlin").await;
    let (status, med) = call(
        &t,
        reqwest::Method::POST,
        "/api/v1/medications",
        &p.id,
        Some(
            json!({"name": "Levothyroxine", "dosage": "50 µg", "form": "tablet", "route": "oral",
            "schedule": {"kind": "times_of_day", "times": ["02:30", "08:00"]}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{med}");
    assert_eq!(
        med["next_dose_at"], "2027-10-31T00:30:00Z",
        "02:30 CEST, the earlier one"
    );
    let med_id = med["id"].as_str().unwrap().to_string();
    let mut socket = connect(&t, &p.id).await;
    schedule(&t).await;
    clock.advance(chrono::Duration::minutes(90)); // 00:30Z
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("02:30 CEST");
    assert_eq!(event["data"]["due_at"], "2027-10-31T00:30:00Z");
    clock.advance(chrono::Duration::minutes(60)); // 01:30Z = 02:30 CET: not a second dose
    assert_eq!(schedule(&t).await, 0);
    assert!(frame(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
    let (_, med) = call(
        &t,
        reqwest::Method::GET,
        &format!("/api/v1/medications/{med_id}"),
        &p.id,
        None,
    )
    .await;
    assert_eq!(med["next_dose_at"], "2027-10-31T07:00:00Z", "08:00 CET");
    // The repeated 02:30 is not a dose of the schedule; the first one is, once.
    let doses = format!("/api/v1/medications/{med_id}/doses");
    let (status, _) = call(
        &t,
        reqwest::Method::POST,
        &doses,
        &p.id,
        Some(json!({"scheduled_for": "2027-10-31T01:30:00Z", "status": "taken"})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = call(
        &t,
        reqwest::Method::POST,
        &doses,
        &p.id,
        Some(json!({"scheduled_for": "2027-10-31T00:30:00Z", "status": "taken"})),
    )
    .await;
    assert_eq!(status, 201);
    // Discontinued: the 08:00 reminder is cancelled with it.
    let (status, med) = call(
        &t,
        reqwest::Method::POST,
        &format!("/api/v1/medications/{med_id}/discontinue"),
        &p.id,
        None,
    )
    .await;
    assert_eq!(
        (status, med["status"].as_str()),
        (200, Some("discontinued"))
    );
    clock.advance(chrono::Duration::minutes(6 * 60)); // 07:30Z
    assert_eq!(schedule(&t).await, 0);
    assert!(frame(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
    t.stack.stop().await;
}

/// A provider open on Saturdays and Sundays 09:00–17:00 in `zone`, 30-minute slots;
/// their id and a token.
async fn provider(t: &TestStack, email: &str, zone: &str) -> (String, String) {
    let created = accounts::create(t.app(), email, "Dr Remind", Role::Provider, false)
        .await
        .expect("provider");
    let token = token_as(t, &created.id, Role::Provider).await;
    let weekly: Vec<Value> = ["saturday", "sunday"]
        .iter()
        .map(|d| json!({"day": d, "start": "09:00", "end": "17:00"}))
        .collect();
    let response = t
        .http
        .put(t.url("/api/v1/providers/me/availability"))
        .bearer_auth(&token)
        .json(
            &json!({"time_zone": zone, "slot_minutes": 30, "weekly": weekly,
            "consultation_types": ["video"]}),
        )
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    (created.id, token)
}

/// Books `start` with the patient; the appointment's id.
async fn book(t: &TestStack, patient: &str, provider: &str, start: &str, reason: &str) -> String {
    let (status, booked) = call(
        t,
        reqwest::Method::POST,
        "/api/v1/appointments",
        patient,
        Some(
            json!({"provider_id": provider, "start": start, "consultation_type": "video",
            "reason": reason}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{booked}");
    assert_eq!(booked["start"], start);
    booked["id"].as_str().unwrap().to_string()
}

fn epoch(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("time")
        .timestamp()
}

/// Checks an appointment reminder frame: its id, subject and times.
fn assert_appointment_frame(event: &Value, appointment: &str, lead: &str, due: &str, start: &str) {
    assert_eq!(event["type"], "notification", "{event}");
    assert_eq!(event["data"]["kind"], "reminder");
    assert_eq!(event["data"]["reminder"], "appointment");
    assert_eq!(event["data"]["subject_id"], appointment);
    assert_eq!(
        event["data"]["reminder_id"],
        format!("appt-{appointment}-{lead}-{}", epoch(start)).as_str()
    );
    assert_eq!(event["data"]["due_at"], due, "{event}");
    assert_eq!(event["data"]["starts_at"], start, "{event}");
}

#[tokio::test]
pub(crate) async fn an_appointment_reminds_24_hours_and_1_hour_before_across_spring_forward_in_new_york_and_a_move_follows(
) {
    // Saturday 2027-03-13 08:00 EST. Sunday 10:00 is EDT (02:00 EST -> 03:00 EDT).
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2027, 3, 13, 13, 0, 0).unwrap(),
    ));
    let t = TestStack::start_with_clock(clock.clone()).await;
    let p = patient(&t, "appt.ny@example.com", "America/New_York").await;
    let (doctor, _) = provider(&t, "dr.ny@example.com", "America/New_York").await;
    let reason = "recurring chest pain";
    // Sunday 10:00 EDT = 14:00Z; 24 elapsed hours before is Saturday 14:00Z = 09:00 EST.
    let start = "2027-03-14T14:00:00Z";
    let appointment = book(&t, &p.id, &doctor, start, reason).await;
    assert_eq!(
        schedule(&t).await,
        0,
        "the first run starts at its own minute"
    );
    clock.advance(chrono::Duration::seconds(3600 - 1)); // 08:59:59 EST
                                                        // Connected now: a connection lives two hours at most (API Gateway's limit, and the
                                                        // TTL of its stored record), so one opened at 08:00 would be gone by 10:00.
    let mut socket = connect(&t, &p.id).await;
    assert_eq!(schedule(&t).await, 0, "not yet");
    clock.advance(chrono::Duration::seconds(1)); // 09:00 EST: 24 hours before
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("the 24-hour reminder");
    assert_appointment_frame(&event, &appointment, "24h", "2027-03-13T14:00:00Z", start);
    assert!(
        !event.to_string().contains(reason),
        "no reason on the socket"
    );
    assert!(
        eventually(|| outbox(&t).len() == 2).await,
        "one e-mail and one SMS"
    );
    for message in outbox(&t) {
        assert!(
            message.contains("you have an appointment at 2027-03-14 10:00 (America/New_York)"),
            "the start in the patient's zone, after the change: {message}"
        );
        assert!(!message.contains(reason), "no PHI: {message}");
    }

    // SQS delivers at least once: the same message again sends nothing.
    let duplicate = json!({"id": format!("appt-{appointment}-24h-{}", epoch(start)),
        "kind": "appointment", "user_id": p.id, "subject_id": appointment,
        "due_at": "2027-03-13T14:00:00Z", "starts_at": start});
    t.app()
        .queue
        .send(
            &t.app().config.queues.reminders,
            OutgoingMessage::new(duplicate.to_string()),
        )
        .await
        .expect("send");
    assert!(
        frame(&mut socket, Duration::from_millis(1500))
            .await
            .is_none(),
        "no second push"
    );
    assert_eq!(outbox(&t).len(), 2, "no second e-mail or SMS");

    // The patient moves it by 30 minutes (10:30 EDT): its reminders follow the new
    // start; the new start's 24-hour reminder (Saturday 14:30Z) is still ahead.
    let moved = "2027-03-14T14:30:00Z";
    let (status, body) = call(
        &t,
        reqwest::Method::PATCH,
        &format!("/api/v1/appointments/{appointment}"),
        &p.id,
        Some(json!({"start": moved})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    clock.advance(chrono::Duration::seconds(30 * 60 - 1));
    assert_eq!(schedule(&t).await, 0);
    clock.advance(chrono::Duration::seconds(1)); // 14:30Z
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("the new start's 24-hour reminder");
    assert_appointment_frame(&event, &appointment, "24h", "2027-03-13T14:30:00Z", moved);
    assert!(eventually(|| outbox(&t).len() == 4).await);
    assert!(outbox(&t)
        .iter()
        .any(|m| m.contains("appointment at 2027-03-14 10:30 (America/New_York)")));

    // Sunday 12:59:59Z (08:59:59 EDT; the connection expired meanwhile: connect again).
    clock.advance(chrono::Duration::seconds(22 * 3600 + 30 * 60 - 1));
    let mut socket = connect(&t, &p.id).await;
    assert_eq!(schedule(&t).await, 0, "the catch-up sends nothing");
    clock.advance(chrono::Duration::seconds(1)); // 13:00Z, the old start's 1-hour mark
    assert_eq!(
        schedule(&t).await,
        0,
        "the old start's 1-hour reminder was cancelled with the move"
    );
    assert!(frame(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
    clock.advance(chrono::Duration::seconds(30 * 60)); // 13:30Z = 09:30 EDT
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("the 1-hour reminder");
    assert_appointment_frame(&event, &appointment, "1h", "2027-03-14T13:30:00Z", moved);
    assert!(eventually(|| outbox(&t).len() == 6).await);
    clock.advance(chrono::Duration::seconds(3600)); // past the start
    assert_eq!(schedule(&t).await, 0);
    assert!(
        frame(&mut socket, Duration::from_millis(500))
            .await
            .is_none(),
        "once"
    );
    assert_eq!(outbox(&t).len(), 6, "each reminder sent once");
    assert!(shared::store::reminders::unresolved(t.app(), 10)
        .await
        .unwrap()
        .is_empty());
    t.stack.stop().await;
}

#[tokio::test]
pub(crate) async fn berlin_appointment_reminders_across_fall_back_and_a_cancelled_appointment_sends_none(
) {
    // Saturday 2027-10-30 08:00 CEST. On Sunday 03:00 CEST -> 02:00 CET.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2027, 10, 30, 6, 0, 0).unwrap(),
    ));
    let t = TestStack::start_with_clock(clock.clone()).await;
    let p = patient(&t, "appt.berlin@example.com", "Europe/Berlin").await;
    let (doctor, _) = provider(&t, "dr.berlin@example.com", "Europe/Berlin").await;
    // Sunday 10:00 CET = 09:00Z (to be cancelled) and 11:00 CET = 10:00Z (kept): their
    // 24-hour reminders are 24 elapsed hours before, Saturday 11:00 and 12:00 CEST.
    let cancelled_start = "2027-10-31T09:00:00Z";
    let kept_start = "2027-10-31T10:00:00Z";
    let cancelled = book(&t, &p.id, &doctor, cancelled_start, "a rash").await;
    let kept = book(&t, &p.id, &doctor, kept_start, "a follow-up").await;
    assert_eq!(schedule(&t).await, 0);
    let (status, body) = call(
        &t,
        reqwest::Method::PATCH,
        &format!("/api/v1/appointments/{cancelled}"),
        &p.id,
        Some(json!({"status": "cancelled"})),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );

    clock.advance(chrono::Duration::seconds(3 * 3600 - 1)); // 08:59:59Z
    let mut socket = connect(&t, &p.id).await;
    assert_eq!(schedule(&t).await, 0);
    clock.advance(chrono::Duration::seconds(1)); // 09:00Z: the cancelled one's 24 hours
    assert_eq!(
        schedule(&t).await,
        0,
        "a cancelled appointment reminds of nothing"
    );
    assert!(frame(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
    clock.advance(chrono::Duration::seconds(3600)); // 10:00Z = 12:00 CEST
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("the kept one's 24-hour reminder");
    assert_appointment_frame(&event, &kept, "24h", "2027-10-30T10:00:00Z", kept_start);
    assert!(eventually(|| outbox(&t).len() == 2).await);
    for message in outbox(&t) {
        assert!(
            message.contains("you have an appointment at 2027-10-31 11:00 (Europe/Berlin)"),
            "the start after the change, in the patient's zone: {message}"
        );
    }

    // Sunday 07:59:59Z = 08:59:59 CET (connect again: the old connection expired).
    clock.advance(chrono::Duration::seconds(22 * 3600 - 1));
    let mut socket = connect(&t, &p.id).await;
    assert_eq!(schedule(&t).await, 0);
    clock.advance(chrono::Duration::seconds(1)); // 08:00Z: the cancelled one's 1 hour
    assert_eq!(schedule(&t).await, 0);
    clock.advance(chrono::Duration::seconds(3600)); // 09:00Z = 10:00 CET
    assert_eq!(schedule(&t).await, 1);
    let event = frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("the kept one's 1-hour reminder");
    assert_appointment_frame(&event, &kept, "1h", "2027-10-31T09:00:00Z", kept_start);
    assert!(eventually(|| outbox(&t).len() == 4).await);
    clock.advance(chrono::Duration::seconds(2 * 3600));
    assert_eq!(schedule(&t).await, 0);
    assert!(frame(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
    assert_eq!(
        outbox(&t).len(),
        4,
        "two reminders of the kept one, each once"
    );
    t.stack.stop().await;
}
