//! Video over a real local stack: a client that knows only the README's routes creates a
//! session, gets a token and starts the call over HTTP; the fake Twilio posts its signed
//! status callbacks to the stack's own webhook route (the URL in `DOCARE_PUBLIC_API_URL`,
//! which is the local API's), where they are validated and recorded: a participant's join
//! and leave times appear on the session, and the room's end after the call ends.

use docare_e2e::TestStack;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::testing::{account, token};

#[tokio::test]
async fn the_fake_twilio_delivers_signed_callbacks_to_the_local_webhook_route() {
    let stack = TestStack::start().await;
    let app = stack.app().clone();
    let provider = account(&app, "vid-dr@example.com", "Dr Video", Role::Provider).await;
    let provider_token = token(&app, &provider, Role::Provider, "d", &["pwd", "mfa", "otp"]).await;
    let patient = account(&app, "vid-pt@example.com", "Pat Video", Role::Patient).await;
    let patient_token = token(&app, &patient, Role::Patient, "p", &["pwd"]).await;
    let http = reqwest::Client::new();
    let call = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, stack.url(path))
            .bearer_auth(token.to_string());
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("the stack answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    // 15-minute slots: the first free one starts within the join window.
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
    let (status, body) = call(
        &provider_token,
        reqwest::Method::PUT,
        "/api/v1/providers/me/availability",
        Some(
            json!({"time_zone": docare_e2e::availability_zone(), "slot_minutes": 15, "weekly": weekly,
            "consultation_types": ["video"]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, slots) = call(
        &patient_token,
        reqwest::Method::GET,
        &format!("/api/v1/providers/{provider}/slots"),
        None,
    )
    .await;
    let mut appointment = None;
    for slot in slots["items"].as_array().unwrap().iter().take(2) {
        let (status, body) = call(
            &patient_token,
            reqwest::Method::POST,
            "/api/v1/appointments",
            Some(json!({"provider_id": provider, "start": slot["start"], "consultation_type": "video"})),
        )
        .await;
        if status == 201 {
            appointment = body["id"].as_str().map(str::to_string);
            break;
        }
    }
    let appointment = appointment.expect("a slot within 15 minutes");
    let (status, body) = call(
        &provider_token,
        reqwest::Method::PATCH,
        &format!("/api/v1/appointments/{appointment}"),
        Some(json!({"status": "confirmed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, session) = call(
        &provider_token,
        reqwest::Method::POST,
        "/api/v1/video-calls",
        Some(json!({"appointment_id": appointment})),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let id = session["id"].as_str().unwrap().to_string();
    let (status, started) = call(
        &provider_token,
        reqwest::Method::POST,
        &format!("/api/v1/video-calls/{id}/start"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let (status, issued) = call(
        &patient_token,
        reqwest::Method::POST,
        "/api/v1/video-calls/tokens",
        Some(json!({"session_id": id})),
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["room_name"], started["room_name"]);

    // The patient joins and leaves (as Twilio would report): the fake signs and posts the
    // callbacks to the stack; the session shows the stay.
    let twilio = stack.stack.parts.twilio.clone();
    let created = twilio
        .callbacks()
        .into_iter()
        .find(|c| c.event == "room-created")
        .expect("room-created");
    assert_eq!(created.url, stack.url("/api/v1/webhooks/twilio/video"));
    let room_sid = created
        .params
        .iter()
        .find(|(n, _)| n == "RoomSid")
        .map(|(_, v)| v.clone())
        .unwrap();
    let identity = {
        use base64::Engine;
        let payload = issued["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["grants"]["identity"].as_str().unwrap().to_string()
    };
    twilio.connect(&room_sid, &identity).expect("joined");
    twilio.disconnect(&room_sid, &identity).expect("left");
    let path = format!("/api/v1/video-calls/{id}");
    let mut left = Value::Null;
    for _ in 0..200 {
        let (_, session) = call(&patient_token, reqwest::Method::GET, &path, None).await;
        let stay = session["participants"][0].clone();
        if stay["side"] == "patient" && stay["left_at"].is_string() {
            left = stay;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(left["joined_at"].is_string(), "{left}");

    // A callback whose signature was made for the Host the request came to, not the
    // configured URL, is refused over HTTP too.
    let forged = shared::video::signature("not-the-auth-token", &created.url, &created.params);
    let response = http
        .post(stack.url("/api/v1/webhooks/twilio/video"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", forged)
        .body(created.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);

    let (status, ended) = call(
        &provider_token,
        reqwest::Method::POST,
        &format!("/api/v1/video-calls/{id}/end"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{ended}");
    assert!(twilio.callbacks().iter().any(|c| c.event == "room-ended"));
}
