//! The realtime function's messaging actions through its router, with a push port that
//! keeps every frame per connection: who receives what, and that the store is written
//! before anything is pushed.

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use serde_json::{json, Value};
use shared::auth::Role;
use shared::ports::push::{Push, PushError, PushOutcome};
use shared::store::connections;
use shared::testing::{session, with_ports};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Frames(Mutex<BTreeMap<String, Vec<Value>>>);

#[async_trait]
impl Push for Frames {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<PushOutcome, PushError> {
        let frame: Value = serde_json::from_slice(data).unwrap();
        self.0
            .lock()
            .unwrap()
            .entry(connection_id.to_string())
            .or_default()
            .push(frame);
        Ok(PushOutcome::Delivered)
    }
    async fn disconnect(&self, _: &str) -> Result<PushOutcome, PushError> {
        Ok(PushOutcome::Delivered)
    }
}

impl Frames {
    /// The frames a connection got since the last look.
    fn take(&self, connection_id: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .remove(connection_id)
            .unwrap_or_default()
    }
}

fn frame(connection_id: &str, body: Value) -> ApiGatewayWebsocketProxyRequest {
    let mut event = ApiGatewayWebsocketProxyRequest::default();
    event.request_context.route_key = body["action"].as_str().map(str::to_string);
    event.request_context.connection_id = Some(connection_id.into());
    event.body = Some(body.to_string());
    event
}

#[tokio::test]
async fn sends_receipts_typing_and_presence_reach_the_participants_only() {
    let h = super::messages::setup().await;
    let conversation = h.conversation().await;
    let frames = Arc::new(Frames::default());
    let app = with_ports(&h.t.app, |p| p.push = frames.clone());
    let stranger = shared::testing::account(&app, "s@example.com", "Stranger", Role::Patient).await;
    let pt = session(&app, &h.patient, Role::Patient, &["pwd"]).await;
    let dt = session(&app, &h.provider, Role::Provider, &["pwd", "mfa"]).await;
    let dt_no_mfa = session(&app, &h.provider, Role::Provider, &["pwd"]).await;
    let st = session(&app, &stranger, Role::Patient, &["pwd"]).await;
    for (id, user, role, s) in [
        ("c-pat", &h.patient, Role::Patient, &pt.id),
        ("c-doc", &h.provider, Role::Provider, &dt.id),
        ("c-doc-pwd", &h.provider, Role::Provider, &dt_no_mfa.id),
        ("c-str", &stranger, Role::Patient, &st.id),
    ] {
        connections::open(&app, id, user, role, s).await.unwrap();
    }
    let router = docare_realtime::router();
    let send = |connection: &'static str, body: Value| {
        let (router, app) = (router.clone(), app.clone());
        async move {
            router
                .dispatch(&app, frame(connection, body))
                .await
                .status_code
        }
    };

    let message = json!({"action": "message:send", "conversation_id": conversation,
        "client_message_id": "w-1", "body": "Over the socket"});
    assert_eq!(send("c-pat", message.clone()).await, 200);
    let mine = frames.take("c-pat");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["type"], "message:delivered");
    assert_eq!(mine[0]["data"]["seq"], 1);
    let message_id = mine[0]["data"]["message_id"].clone();
    for doc in ["c-doc", "c-doc-pwd"] {
        let got = frames.take(doc);
        assert_eq!(
            got.len(),
            1,
            "every connection of the other participant: {got:?}"
        );
        assert_eq!(got[0]["type"], "message:received");
        assert_eq!(got[0]["data"]["body"], "Over the socket");
        assert_eq!(got[0]["data"]["id"], message_id);
    }
    // Stored first: the REST read sees it.
    let (_, page) = h
        .send(
            http::Method::GET,
            &format!("/api/v1/conversations/{conversation}/messages"),
            &h.pt,
            None,
        )
        .await;
    assert_eq!(page["items"][0]["id"], message_id);
    // A resend: acknowledged again with the same message, pushed to nobody.
    assert_eq!(send("c-pat", message).await, 200);
    assert_eq!(frames.take("c-pat")[0]["data"]["message_id"], message_id);
    assert!(frames.take("c-doc").is_empty());

    // Receipts and typing.
    let read = json!({"action": "message:read", "conversation_id": conversation, "up_to": 1});
    assert_eq!(send("c-doc", read).await, 200);
    assert_eq!(frames.take("c-doc")[0]["type"], "message:read");
    let receipt = frames.take("c-pat");
    assert_eq!(receipt[0]["data"]["user_id"], h.provider.as_str());
    let typing = json!({"action": "typing:start", "conversation_id": conversation});
    assert_eq!(send("c-pat", typing).await, 200);
    assert!(frames.take("c-pat").is_empty(), "not echoed");
    assert_eq!(frames.take("c-doc")[0]["data"]["state"], "start");
    frames.take("c-doc-pwd");

    // Presence: the other participant is told; the caller learns theirs.
    let presence = json!({"action": "presence:update", "state": "online"});
    assert_eq!(send("c-doc", presence).await, 200);
    assert_eq!(frames.take("c-pat")[0]["data"]["state"], "online");
    let back = frames.take("c-doc");
    assert_eq!(back[0]["data"]["user_id"], h.patient.as_str());
    assert_eq!(back[0]["data"]["state"], "offline");
    frames.take("c-doc-pwd");

    // Refusals are error frames; the stranger gets nothing but its own errors.
    let stranger_send = json!({"action": "message:send", "conversation_id": conversation,
        "client_message_id": "x", "body": "hi"});
    assert_eq!(send("c-str", stranger_send).await, 404);
    assert_eq!(
        send(
            "c-doc-pwd",
            json!({"action": "typing:start", "conversation_id": conversation})
        )
        .await,
        403
    );
    assert_eq!(
        send(
            "c-pat",
            json!({"action": "message:send", "conversation_id": conversation})
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "unknown",
            json!({"action": "typing:stop", "conversation_id": conversation})
        )
        .await,
        401
    );
    let errors = frames.take("c-str");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (
            errors[0]["type"].as_str(),
            errors[0]["data"]["status"].as_u64()
        ),
        (Some("error"), Some(404))
    );
    assert!(frames.take("c-doc").is_empty());
    assert_eq!(frames.take("c-pat")[0]["data"]["status"], 400);

    // A message sent over REST is pushed the same way, to the others only.
    let req = shared::testing::request(
        http::Method::POST,
        &format!("/api/v1/conversations/{conversation}/messages"),
        Some(&dt.access),
        Some(json!({"client_message_id": "rest-1", "body": "Over REST"})),
    );
    let (status, sent) = shared::testing::dispatch(&docare_messages::router(), &app, req).await;
    assert_eq!(status, 201, "{sent}");
    let got = frames.take("c-pat");
    assert_eq!(
        (got.len(), got[0]["type"].as_str()),
        (1, Some("message:received"))
    );
    assert_eq!(got[0]["data"]["body"], "Over REST");
    assert!(frames.take("c-doc").is_empty() && frames.take("c-str").is_empty());
}
