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

/// Runs `tests/python/websocket_transport.py` with the arguments; panics with its output
/// when it fails.
async fn python_client(args: Vec<String>) {
    let Ok(python) = std::env::var("DOCARE_TEST_PYTHON") else {
        panic!("DOCARE_TEST_PYTHON is not set: run the tests with scripts/test (it installs websockets)");
    };
    let script = shared::testing::repo_root().join("tests/python/websocket_transport.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .expect("joined")
    .expect("python runs");
    assert!(
        output.status.success(),
        "websocket_transport.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Through the `websockets` library: a browser's ticket connects once, a replay, a bad
/// ticket or no credential is 401, a disallowed Origin is 403 (the ticket unspent), a
/// native client's header works, malformed and unknown frames get error frames on a
/// connection that stays up, and API Gateway's size limits hold (a 120 KiB message in
/// 30 KiB frames passes; a 33 KiB frame or a 129 KiB message closes with 1009).
#[tokio::test]
async fn a_third_party_client_meets_tickets_origins_error_frames_and_size_limits() {
    let t = TestStack::start().await;
    let app = t.app();
    let user = accounts::create(app, "ws-py@example.com", "Py", Role::Patient, false)
        .await
        .expect("account");
    let s = shared::testing::session(app, &user.id, Role::Patient, &["pwd"]).await;
    python_client(vec![
        "limits".into(),
        t.stack.http_url(),
        t.stack.ws_url(),
        s.access.clone(),
    ])
    .await;
    assert!(
        eventually(|| connection_ids(&t).is_empty()).await,
        "every close, the 1009 ones included, reached $disconnect"
    );
    assert_eq!(t.stack.parts.gateway.open_connections(), 0);
    t.stack.stop().await;
}

/// Idle and lifetime closes (1001) with short limits standing in for 10 minutes and 2
/// hours; both reach `$disconnect`.
#[tokio::test]
async fn a_third_party_client_is_closed_when_idle_and_at_the_connection_lifetime() {
    use docare_local::ws_gateway::WsLimits;
    let t = TestStack::start_with_ws_limits(WsLimits {
        idle: std::time::Duration::from_millis(1500),
        max_age: std::time::Duration::from_secs(4),
        ..WsLimits::API_GATEWAY
    })
    .await;
    let app = t.app();
    let user = accounts::create(app, "ws-idle@example.com", "Idle", Role::Patient, false)
        .await
        .expect("account");
    let s = shared::testing::session(app, &user.id, Role::Patient, &["pwd"]).await;
    python_client(vec![
        "idle".into(),
        t.stack.ws_url(),
        s.access.clone(),
        "1.5".into(),
        "4".into(),
    ])
    .await;
    assert!(eventually(|| connection_ids(&t).is_empty()).await);
    t.stack.stop().await;
}

/// The AWS push adapter against the local gateway's Management API: a push to an open
/// connection is delivered over HTTP; a push to a gone one is answered 410, its record is
/// deleted, and it is tried once (the emulator never answers 410, so this is the test of
/// that path).
#[tokio::test]
async fn a_push_to_a_gone_connection_answers_410_deletes_the_record_and_is_not_retried() {
    let t = TestStack::start().await;
    let (mut socket, user) = connect(&t).await;
    assert!(eventually(|| connection_ids(&t).len() == 1).await);
    let open = connection_ids(&t).pop().expect("id");
    // A record whose socket is long gone ($disconnect is best effort on API Gateway).
    let gone = ulid::Ulid::new().to_string();
    let session = t.app().new_id();
    shared::store::connections::open(t.app(), &gone, &user, Role::Patient, &session)
        .await
        .expect("record");
    assert_eq!(connection_ids(&t).len(), 2);

    let sdk = shared::testing::aws::sdk_config("http://127.0.0.1:1");
    let management =
        shared::adapters::aws::management_api(&sdk, &t.stack.ws_url().replace("ws://", "http://"));
    let raw = t.app().push.post(&gone, b"{}").await.expect("local push");
    assert_eq!(raw, shared::ports::push::PushOutcome::Gone);
    let app = shared::testing::with_ports(t.app(), |ports| {
        ports.push = std::sync::Arc::new(management);
    });
    let before = t.stack.parts.gateway.posts();
    let event = shared::ws::ServerEvent::new("notification", serde_json::json!({"kind": "test"}));
    let delivered = shared::ws::push_to_user(&app, &user, &event)
        .await
        .expect("push");
    assert_eq!(delivered, 1);
    assert_eq!(
        next_json(&mut socket).await,
        serde_json::json!({"type": "notification", "data": {"kind": "test"}})
    );
    assert_eq!(
        connection_ids(&t),
        vec![open.clone()],
        "the gone record is deleted"
    );
    assert_eq!(
        t.stack.parts.gateway.posts() - before,
        2,
        "one post each: the 410 is not retried"
    );
    // Over HTTP as the SDK sees it: 410 GoneException.
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/@connections/{gone}",
            t.stack.ws_url().replace("ws://", "http://")
        ))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 410);
    assert_eq!(
        answer.headers()["x-amzn-errortype"].to_str().unwrap(),
        "GoneException"
    );
    t.stack.stop().await;
}
