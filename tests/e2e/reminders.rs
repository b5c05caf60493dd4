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
    t.app()
        .tokens
        .issue(t.app(), user, Role::Patient, &t.app().new_id(), &["pwd"])
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

fn outbox(t: &TestStack) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(&t.stack.parts.outbox_dir)
        .expect("outbox")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    files.sort();
    files
}

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
    // A new phone is a security change the owner is told of: that notice is not a
    // reminder, so it leaves the outbox once delivered.
    let notice = "sign-in codes was changed";
    assert!(
        eventually(|| outbox(t).iter().any(|m| m.contains(notice))).await,
        "the owner is told of the new phone"
    );
    for entry in std::fs::read_dir(&t.stack.parts.outbox_dir).expect("outbox") {
        let path = entry.expect("entry").path();
        if std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains(notice)
        {
            std::fs::remove_file(&path).expect("remove the notice");
        }
    }
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
