//! The local WebSocket API: `$connect` decides whether the upgrade happens, each text
//! frame goes to the route its `action` selects (else `$default`), and closing sends
//! `$disconnect`. Pushes from handlers reach the socket through the local gateway.
//!
//! It keeps API Gateway's limits ([`WsLimits::API_GATEWAY`]), so a client that works
//! here works there:
//! - a message over 128 KiB, or a frame over 32 KiB, closes the connection with 1009
//!   ("message too big"), as API Gateway does;
//! - a connection is closed with 1001 ("going away") two hours after it opened, and
//!   after ten minutes without a message from the client (clients send
//!   `{"action":"ping"}`; server pushes and protocol-level ping frames do not count);
//! - every close, from either side, reaches `$disconnect` with its status code.
//!
//! It also serves the Management API on the same port (`POST`/`DELETE
//! /@connections/{id}`, with or without a stage prefix), answering 410 `GoneException`
//! for a connection that is not open: the emulator accepts any connection id, so this is
//! where the AWS push adapter meets a real 410.

use crate::events::{websocket_event, WsEventKind};
use crate::mounts::WEBSOCKET_FUNCTION;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use shared::adapters::local::{LocalGateway, Outbound};
use shared::ports::push::{Push, PushError, PushOutcome};
use shared::ports::recording::as_function;
use shared::ws::WsRouter;
use shared::App;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The limits API Gateway puts on a WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// The largest message a client may send (in one or more frames).
    pub max_message_bytes: usize,
    /// The largest single frame a client may send.
    pub max_frame_bytes: usize,
    /// How long a connection may go without a message from the client.
    pub idle: Duration,
    /// How long a connection may stay open at all.
    pub max_age: Duration,
}

impl WsLimits {
    /// API Gateway's WebSocket quotas (not adjustable there).
    pub const API_GATEWAY: WsLimits = WsLimits {
        max_message_bytes: 128 * 1024,
        max_frame_bytes: 32 * 1024,
        idle: Duration::from_secs(10 * 60),
        max_age: Duration::from_secs(2 * 60 * 60),
    };
}

impl Default for WsLimits {
    fn default() -> Self {
        Self::API_GATEWAY
    }
}

/// Close codes the gateway sends (RFC 6455).
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_BIG: u16 = 1009;

pub struct WsGateway {
    pub app: App,
    pub router: WsRouter,
    pub connections: Arc<LocalGateway>,
    pub domain: String,
    pub limits: WsLimits,
}

/// API Gateway's connection ids are opaque strings; ours are too.
fn new_connection_id() -> String {
    ulid::Ulid::new().to_string()
}

/// The WebSocket port's routes: the handshake at `/` and the Management API.
pub fn routes(gateway: Arc<WsGateway>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(upgrade))
        .route(
            "/@connections/{id}",
            post(post_to_connection).delete(delete_connection),
        )
        .route(
            "/{stage}/@connections/{id}",
            post(staged_post).delete(staged_delete),
        )
        .with_state(gateway)
}

pub async fn upgrade(
    State(gateway): State<Arc<WsGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let connection_id = new_connection_id();
    let connected_at = chrono::Utc::now().timestamp_millis();
    let source_ip = peer.ip().to_string();
    let event = match websocket_event(
        WsEventKind::Connect {
            headers: &headers,
            query: &query,
        },
        &connection_id,
        connected_at,
        &source_ip,
        &gateway.domain,
    ) {
        Ok(event) => event,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let response = as_function(
        WEBSOCKET_FUNCTION,
        gateway.router.dispatch(&gateway.app, event),
    )
    .await;
    if !(200..300).contains(&response.status_code) {
        let status = u16::try_from(response.status_code)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::FORBIDDEN);
        return status.into_response();
    }
    let outbound = gateway.connections.connect(&connection_id);
    let limits = gateway.limits;
    ws.max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_upgrade(move |socket| {
            session(
                gateway,
                socket,
                connection_id,
                connected_at,
                source_ip,
                outbound,
            )
        })
}

/// Whether a read failed because the client exceeded the message or frame limit
/// (tungstenite's capacity error, seen through axum's opaque error).
fn exceeds_limit(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Message too long") || text.contains("Space limit exceeded")
}

async fn session(
    gateway: Arc<WsGateway>,
    socket: WebSocket,
    connection_id: String,
    connected_at: i64,
    source_ip: String,
    mut outbound: tokio::sync::mpsc::UnboundedReceiver<Outbound>,
) {
    let (mut sink, mut stream) = socket.split();
    let (mut close_code, mut close_reason) = (1005u16, String::new());
    let opened = tokio::time::Instant::now();
    let lifetime = tokio::time::sleep_until(opened + gateway.limits.max_age);
    tokio::pin!(lifetime);
    let mut idle_until = opened + gateway.limits.idle;
    // Closes from this side with a code and reason (the client may already be gone).
    let mut server_close: Option<(u16, &'static str)> = None;
    loop {
        let idle = tokio::time::sleep_until(idle_until);
        tokio::select! {
            _ = &mut lifetime => {
                server_close = Some((CLOSE_GOING_AWAY, "connection lifetime exceeded"));
                break;
            }
            _ = idle => {
                server_close = Some((CLOSE_GOING_AWAY, "idle timeout"));
                break;
            }
            incoming = stream.next() => match incoming {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    idle_until = tokio::time::Instant::now() + gateway.limits.idle;
                    // A binary frame selects no route (no `action` can be read): `$default`.
                    let body = match &message {
                        Message::Text(text) => text.as_str().to_string(),
                        Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        _ => String::new(),
                    };
                    let route_key = match message {
                        Message::Text(_) => gateway.router.select_route(&body),
                        _ => shared::ws::DEFAULT,
                    };
                    let event = websocket_event(
                        WsEventKind::Message { route_key, body: &body },
                        &connection_id,
                        connected_at,
                        &source_ip,
                        &gateway.domain,
                    );
                    if let Ok(event) = event {
                        as_function(WEBSOCKET_FUNCTION, gateway.router.dispatch(&gateway.app, event)).await;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if let Some(frame) = frame {
                        close_code = frame.code;
                        close_reason = frame.reason.to_string();
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) if exceeds_limit(&err) => {
                    server_close = Some((CLOSE_TOO_BIG, "message too big"));
                    break;
                }
                Some(Err(_)) | None => {
                    close_code = 1006;
                    break;
                }
            },
            pushed = outbound.recv() => match pushed {
                Some(Outbound::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        close_code = 1006;
                        break;
                    }
                }
                Some(Outbound::Close) | None => {
                    server_close = Some((1000, "closed by the server"));
                    break;
                }
            },
        }
    }
    if let Some((code, reason)) = server_close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
        // The closing handshake: read on until the client's close (bounded), since
        // dropping a socket with unread data resets it, and a client still sending (the
        // rest of an oversized message) would see the reset instead of our close frame.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for _ in 0..10_000 {
                match stream.next().await {
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(_) => continue,
                }
            }
        })
        .await;
        close_code = code;
        close_reason = reason.to_string();
    }
    gateway.connections.disconnected(&connection_id);
    let event = websocket_event(
        WsEventKind::Disconnect {
            status_code: close_code,
            reason: &close_reason,
        },
        &connection_id,
        connected_at,
        &source_ip,
        &gateway.domain,
    );
    if let Ok(event) = event {
        as_function(
            WEBSOCKET_FUNCTION,
            gateway.router.dispatch(&gateway.app, event),
        )
        .await;
    }
}

/// An answer of the Management API: its status, and for errors the error type in the
/// header and body the AWS SDK reads.
fn management_answer(outcome: Result<PushOutcome, PushError>, ok: StatusCode) -> Response {
    let error = |status: StatusCode, kind: &'static str| {
        (
            status,
            [
                ("x-amzn-errortype", kind),
                ("content-type", "application/json"),
            ],
            format!(r#"{{"message":"{kind}"}}"#),
        )
            .into_response()
    };
    match outcome {
        Ok(PushOutcome::Delivered) => ok.into_response(),
        Ok(PushOutcome::Gone) => error(StatusCode::GONE, "GoneException"),
        Err(PushError::Invalid(_)) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException")
        }
        Err(PushError::Unavailable(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    }
}

async fn post_to_connection(
    State(gateway): State<Arc<WsGateway>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    management_answer(gateway.connections.post(&id, &body).await, StatusCode::OK)
}

async fn delete_connection(
    State(gateway): State<Arc<WsGateway>>,
    Path(id): Path<String>,
) -> Response {
    management_answer(
        gateway.connections.disconnect(&id).await,
        StatusCode::NO_CONTENT,
    )
}

async fn staged_post(
    state: State<Arc<WsGateway>>,
    Path((_stage, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    post_to_connection(state, Path(id), body).await
}

async fn staged_delete(
    state: State<Arc<WsGateway>>,
    Path((_stage, id)): Path<(String, String)>,
) -> Response {
    delete_connection(state, Path(id)).await
}
