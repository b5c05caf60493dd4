//! The local WebSocket API: `$connect` decides whether the upgrade happens, each text
//! frame goes to the route its `action` selects (else `$default`), and closing sends
//! `$disconnect`. Pushes from handlers reach the socket through the local gateway.

use crate::events::{websocket_event, WsEventKind};
use crate::mounts::WEBSOCKET_FUNCTION;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use shared::adapters::local::{LocalGateway, Outbound};
use shared::ports::push::MAX_FRAME_BYTES;
use shared::ports::recording::as_function;
use shared::ws::WsRouter;
use shared::App;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct WsGateway {
    pub app: App,
    pub router: WsRouter,
    pub connections: Arc<LocalGateway>,
    pub domain: String,
}

/// API Gateway's connection ids are opaque strings; ours are too.
fn new_connection_id() -> String {
    ulid::Ulid::new().to_string()
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
    ws.max_message_size(MAX_FRAME_BYTES)
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
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let route_key = gateway.router.select_route(text.as_str());
                    let event = websocket_event(
                        WsEventKind::Message { route_key, body: text.as_str() },
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
                    let frame = CloseFrame { code: 1000, reason: "closed by the server".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    close_code = 1000;
                    break;
                }
            },
        }
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
