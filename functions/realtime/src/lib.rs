//! The WebSocket API: connection bookkeeping and the `ping` action.
//!
//! Connections are stored with a TTL (API Gateway closes a connection after two hours
//! at most), so a missed `$disconnect` cannot leave records behind. Pushes to a
//! connection that is gone remove its record.
//!
//! `$connect` needs an access token (`Authorization: Bearer …` on the handshake, checked
//! by the same extractor as the REST API); the connection is stored with its user so
//! the server can push to a user's connections (`shared::ws::push_to_user`), and with
//! its session, so ending the session (logout, logout-all, a replayed refresh token, a
//! password change, disabling the account, a role change) closes the connection
//! through the push port (`shared::store::connections::close`). Messaging,
//! presence and typing arrive with the messaging work; until then a client can `ping`
//! and receive `notification` events.

use serde::Serialize;
use shared::auth::authenticate_header;
use shared::ports::push::PushOutcome;
use shared::store::connections;
use shared::ws::{
    ServerEvent, WsReply, WsRequest, WsResult, WsRouter, CONNECT, DEFAULT, DISCONNECT,
};
use shared::{ApiError, App};

pub use shared::store::connections::CONNECTION_TTL_SECS;

pub fn router() -> WsRouter {
    WsRouter::new()
        .route(CONNECT, connect)
        .route(DISCONNECT, disconnect)
        .route("ping", ping)
        .route(DEFAULT, unknown_action)
}

fn require_connection(req: &WsRequest) -> Result<(), ApiError> {
    if req.connection_id.is_empty() || req.connection_id.len() > 128 {
        return Err(ApiError::validation("missing connection id"));
    }
    Ok(())
}

async fn connect(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    let authorization = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let principal = authenticate_header(&app, authorization).await?;
    connections::open(
        &app,
        &req.connection_id,
        &principal.user_id,
        principal.role,
        &principal.session_id,
    )
    .await?;
    Ok(WsReply::ok())
}

async fn disconnect(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    connections::forget(&app, &req.connection_id).await?;
    Ok(WsReply::ok())
}

/// Sends an event to the caller; forgets the connection if it is gone.
async fn send<T: Serialize>(
    app: &App,
    req: &WsRequest,
    kind: &'static str,
    data: Option<T>,
) -> Result<(), ApiError> {
    let payload = ServerEvent::reply(kind, &req.request_id, data).to_bytes()?;
    if app.push.post(&req.connection_id, &payload).await? == PushOutcome::Gone {
        connections::forget(app, &req.connection_id).await?;
    }
    Ok(())
}

async fn ping(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    send(&app, &req, "pong", None::<()>).await?;
    Ok(WsReply::ok())
}

#[derive(Serialize)]
struct UnknownAction {
    code: &'static str,
    message: &'static str,
}

async fn unknown_action(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    let data = UnknownAction {
        code: "unknown_action",
        message: "messages need an \"action\" this API knows, e.g. {\"action\":\"ping\"}",
    };
    send(&app, &req, "error", Some(data)).await?;
    Ok(WsReply {
        status: 400,
        body: None,
    })
}
