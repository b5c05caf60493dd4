//! SOS over the running local stack: the patient's HTTP request is answered 202, the
//! provider's open WebSocket receives a `notification`, and the notify worker delivers
//! the (sealed on the queue) SMS and e-mails to the outbox.

use docare_e2e::TestStack;
use docare_local::accounts;
use futures::StreamExt;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
pub(crate) async fn an_sos_reaches_contacts_by_outbox_and_the_care_team_by_websocket() {
    let t = TestStack::start().await;
    let app = t.app().clone();
    let patient = accounts::create(
        &app,
        "sos-patient@example.com",
        "Lisa Simpson",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    let provider = accounts::create(
        &app,
        "sos-dr@example.com",
        "Dr Julius",
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
                .issue(&app, &id, role, &app.new_id(), &["pwd", "mfa"])
                .await
                .unwrap()
                .0
        }
    };
    let patient_token = token(patient.id.clone(), Role::Patient).await;
    let provider_token = token(provider.id.clone(), Role::Provider).await;

    let mut request = t.stack.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {provider_token}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("provider connects");

    let contact = t
        .http
        .post(t.url("/api/v1/emergency/contacts"))
        .bearer_auth(&patient_token)
        .json(&json!({"name": "Marge", "relationship": "mother", "phone": "+14155550142", "email": "marge@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(contact.status(), 201);
    let sos = t
        .http
        .post(t.url("/api/v1/emergency/sos"))
        .bearer_auth(&patient_token)
        .json(&json!({"location": {"latitude": 39.78, "longitude": -89.65}, "message": "fell down the stairs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sos.status(), 202);
    let body: Value = sos.json().await.unwrap();
    assert_eq!(body["notified"], 3);

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
    assert_eq!(event["data"]["kind"], "sos");
    assert_eq!(event["data"]["patient_id"], patient.id.as_str());
    assert!(
        !text.contains("stairs"),
        "the push carries ids, not the message"
    );

    let outbox = t.stack.parts.outbox_dir.clone();
    let delivered = || -> Vec<Value> {
        std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = false;
    for _ in 0..50 {
        let mails = delivered();
        let sms = mails.iter().any(|m| {
            m["to"] == "+14155550142"
                && m["body"]
                    .as_str()
                    .unwrap_or("")
                    .contains("fell down the stairs")
        });
        let email = mails.iter().any(|m| m["to"] == "marge@example.com");
        let doctor = mails.iter().any(|m| m["to"] == "sos-dr@example.com");
        if sms && email && doctor {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found, "contacts and care team notified: {:?}", delivered());
}
