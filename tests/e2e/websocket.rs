//! The local WebSocket API: connect, actions by `action`, pushes, and disconnect, over a
//! real socket.

use docare_e2e::TestStack;
use docare_local::accounts;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use shared::auth::Role;
use shared::ports::db::Value as DbValue;
use shared::testing::eventually;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("json");
        }
    }
}

/// Connects as a fresh patient (the handshake carries the access token).
async fn connect(t: &TestStack) -> (Socket, String) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let email = format!(
        "ws-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let account = accounts::create(t.app(), &email, "Web Socket", Role::Patient, false)
        .await
        .expect("account");
    let (token, _) = t
        .app()
        .tokens
        .issue(
            t.app(),
            &account.id,
            Role::Patient,
            &t.app().new_id(),
            &["pwd"],
        )
        .await
        .expect("token");
    let mut request = t.stack.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    assert_eq!(response.status(), 101);
    (socket, account.id)
}

#[tokio::test]
pub(crate) async fn a_handshake_without_a_valid_token_is_refused() {
    let t = TestStack::start().await;
    assert!(tokio_tungstenite::connect_async(t.stack.ws_url())
        .await
        .is_err());
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = t.stack.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        "Bearer not.a.token".parse().expect("header"),
    );
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    assert!(connection_ids(&t).is_empty());
}

#[tokio::test]
async fn pushes_reach_every_connection_of_a_user() {
    let t = TestStack::start().await;
    let (mut socket, user) = connect(&t).await;
    assert!(eventually(|| connection_ids(&t).len() == 1).await);
    let event = shared::ws::ServerEvent::new("notification", serde_json::json!({"kind": "test"}));
    let delivered = shared::ws::push_to_user(t.app(), &user, &event)
        .await
        .expect("push");
    assert_eq!(delivered, 1);
    assert_eq!(
        next_json(&mut socket).await,
        serde_json::json!({"type": "notification", "data": {"kind": "test"}})
    );
    assert_eq!(
        shared::ws::push_to_user(t.app(), "someone-else", &event)
            .await
            .expect("push"),
        0
    );
}

fn connection_ids(t: &TestStack) -> Vec<String> {
    t.stack
        .parts
        .store
        .raw_items(&t.app().config.table)
        .expect("items")
        .into_iter()
        .filter_map(|item| match item.get("pk") {
            Some(DbValue::S(pk)) => pk.strip_prefix("CONN#").map(str::to_string),
            _ => None,
        })
        .collect()
}

#[tokio::test]
pub(crate) async fn ping_pong_push_and_disconnect() {
    let t = TestStack::start().await;
    let (mut socket, _user) = connect(&t).await;
    assert!(
        eventually(|| connection_ids(&t).len() == 1).await,
        "connection stored"
    );

    socket
        .send(Message::Text(r#"{"action":"ping"}"#.into()))
        .await
        .expect("send");
    let pong = next_json(&mut socket).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["request_id"].is_string());

    socket
        .send(Message::Text(r#"{"action":"dance"}"#.into()))
        .await
        .expect("send");
    let error = next_json(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["data"]["code"], "unknown_action");

    // A server-side push through the port reaches the socket.
    let id = connection_ids(&t).pop().expect("id");
    let outcome = t
        .app()
        .push
        .post(&id, br#"{"type":"notification"}"#)
        .await
        .expect("push");
    assert_eq!(outcome, shared::ports::push::PushOutcome::Delivered);
    assert_eq!(next_json(&mut socket).await["type"], "notification");

    socket.close(None).await.expect("close");
    assert!(
        eventually(|| connection_ids(&t).is_empty()).await,
        "$disconnect removed the record"
    );
    let gone = t.app().push.post(&id, b"{}").await.expect("push");
    assert_eq!(gone, shared::ports::push::PushOutcome::Gone);
    t.stack.stop().await;
}

#[tokio::test]
pub(crate) async fn the_server_can_close_a_connection() {
    let t = TestStack::start().await;
    let (mut socket, _user) = connect(&t).await;
    assert!(eventually(|| connection_ids(&t).len() == 1).await);
    let id = connection_ids(&t).pop().expect("id");
    t.app().push.disconnect(&id).await.expect("disconnect");
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(frame)) = socket.next().await {
            if matches!(frame, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await
    .expect("closed in time");
    assert!(closed);
    assert!(eventually(|| connection_ids(&t).is_empty()).await);
    t.stack.stop().await;
}

/// Connects with an access token; the socket.
async fn connect_with(t: &TestStack, token: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = t.stack.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    assert_eq!(response.status(), 101);
    socket
}

/// Whether the server closes the socket within five seconds.
async fn closed_by_server(socket: &mut Socket) -> bool {
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Ending a session over HTTP closes that session's WebSocket connections (through the
/// push port's disconnect), not the other sessions'; disabling the account closes all.
#[tokio::test]
async fn ending_a_session_closes_its_websocket_connections() {
    let t = TestStack::start().await;
    let app = t.app();
    let user = accounts::create(app, "ws-ends@example.com", "Ws", Role::Patient, false)
        .await
        .expect("account");
    let admin = accounts::create(app, "ws-admin@example.com", "Admin", Role::Admin, false)
        .await
        .expect("admin");
    let admin_token =
        shared::testing::token(app, &admin.id, Role::Admin, "a", &["pwd", "mfa", "otp"]).await;
    let phone = shared::testing::session(app, &user.id, Role::Patient, &["pwd"]).await;
    let laptop = shared::testing::session(app, &user.id, Role::Patient, &["pwd"]).await;
    let mut phone_socket = connect_with(&t, &phone.access).await;
    let mut laptop_socket = connect_with(&t, &laptop.access).await;
    assert!(eventually(|| connection_ids(&t).len() == 2).await);

    let http = reqwest::Client::new();
    let logout = http
        .post(t.url("/api/v1/auth/logout"))
        .bearer_auth(&phone.access)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    assert!(
        closed_by_server(&mut phone_socket).await,
        "the phone's socket closed"
    );
    assert!(eventually(|| connection_ids(&t).len() == 1).await);
    let event = shared::ws::ServerEvent::new("notification", serde_json::json!({"kind": "test"}));
    assert_eq!(
        shared::ws::push_to_user(app, &user.id, &event)
            .await
            .expect("push"),
        1,
        "the laptop's connection is still open"
    );
    assert_eq!(next_json(&mut laptop_socket).await["type"], "notification");
    // A revoked session cannot open a new connection either (the realtime function is
    // another instance: its cached copy of the account lives at most 5 s).
    tokio::time::sleep(std::time::Duration::from_millis(
        shared::domain::session::CHECK_CACHE_MS as u64,
    ))
    .await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut again = t.stack.ws_url().into_client_request().expect("request");
    again.headers_mut().insert(
        "authorization",
        format!("Bearer {}", phone.access).parse().expect("header"),
    );
    assert!(tokio_tungstenite::connect_async(again).await.is_err());

    let disable = http
        .post(t.url(&format!("/api/v1/users/{}/disable", user.id)))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("disable");
    assert_eq!(disable.status(), 200);
    assert!(
        closed_by_server(&mut laptop_socket).await,
        "the laptop's socket closed"
    );
    assert!(eventually(|| connection_ids(&t).is_empty()).await);
    t.stack.stop().await;
}
