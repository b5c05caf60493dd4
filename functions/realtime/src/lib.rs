//! The WebSocket API: connection bookkeeping, `ping`, and the messaging actions
//! (`message:send`, `message:read`, `typing:start`/`stop`, `presence:update`, in
//! [`messaging`]; `docs/messaging.md`).
//!
//! Connections are stored with a TTL (API Gateway closes a connection after two hours
//! at most), so a missed `$disconnect` cannot leave records behind. Pushes to a
//! connection that is gone remove its record.
//!
//! `$connect` first checks a browser's `Origin` against `Config::allowed_origins` (403,
//! nothing stored; a handshake without `Origin` is a native client's), then needs a
//! credential: a single-use ticket (`?ticket=` from `POST /api/v1/realtime/ticket`,
//! redeemed by one conditional delete; its session must still be live) or an access
//! token (`Authorization: Bearer …` on the handshake, checked by the same extractor as
//! the REST API), else 401. The connection is stored with its user so
//! the server can push to a user's connections (`shared::ws::push_to_user`), and with
//! its session, so ending the session (logout, logout-all, a replayed refresh token, a
//! password change, disabling the account, a role change) closes the connection
//! through the push port (`shared::store::connections::close`). Besides the messaging
//! frames, a client can `ping` (idle connections close after 10 minutes) and receives
//! `notification` events from the other areas.

/// The outside services the `realtime` binary links (`shared::adapters::links`): frames to
/// connected sockets.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::PUSH;

pub mod messaging;

use serde::Serialize;
use shared::auth::{authenticate_header, Principal};
use shared::ports::push::PushOutcome;
use shared::store::{connections, tickets};
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
        .route("message:send", messaging::send)
        .route("message:read", messaging::read)
        .route("typing:start", messaging::typing_start)
        .route("typing:stop", messaging::typing_stop)
        .route("presence:update", messaging::presence)
        .route(DEFAULT, unknown_action)
}

fn require_connection(req: &WsRequest) -> Result<(), ApiError> {
    if req.connection_id.is_empty() || req.connection_id.len() > 128 {
        return Err(ApiError::validation("missing connection id"));
    }
    Ok(())
}

/// The query parameter that carries a ticket.
pub const TICKET_PARAM: &str = "ticket";

/// A browser's handshake from an origin that is not allowed is refused (403); one
/// without `Origin` is a native client's. An `Origin` that is not valid text is refused.
fn check_origin(app: &App, req: &WsRequest) -> Result<(), ApiError> {
    match req.headers.get(http::header::ORIGIN) {
        None => Ok(()),
        Some(origin) => match origin.to_str() {
            Ok(origin) if app.config.allowed_origins.allows(origin) => Ok(()),
            _ => {
                tracing::warn!(
                    security = "origin_refused",
                    "a WebSocket handshake from an origin that is not allowed"
                );
                Err(ApiError::Forbidden)
            }
        },
    }
}

/// The handshake's principal: from its ticket when it has one (never falling back to
/// the header), else from its `Authorization` header.
async fn principal(app: &App, req: &WsRequest) -> Result<Principal, ApiError> {
    if let Some(ticket) = req.query.get(TICKET_PARAM) {
        let principal = tickets::redeem(app, ticket)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        if !app.sessions.is_live(app, &principal).await? {
            return Err(ApiError::Unauthenticated);
        }
        return Ok(principal);
    }
    let authorization = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    authenticate_header(app, authorization).await
}

async fn connect(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    check_origin(&app, &req)?;
    let principal = principal(&app, &req).await?;
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

/// `$default`: a frame that is not a JSON object (`malformed`) or names no action this
/// API knows (`unknown_action`) gets an error frame; the connection stays open.
async fn unknown_action(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    let is_object = req
        .body
        .as_deref()
        .and_then(|body| serde_json::from_str::<serde_json::Value>(body).ok())
        .is_some_and(|value| value.is_object());
    let data = if is_object {
        UnknownAction {
            code: "unknown_action",
            message: "messages need an \"action\" this API knows, e.g. {\"action\":\"ping\"}",
        }
    } else {
        UnknownAction {
            code: "malformed",
            message: "messages are JSON objects with an \"action\", e.g. {\"action\":\"ping\"}",
        }
    };
    send(&app, &req, "error", Some(data)).await?;
    Ok(WsReply {
        status: 400,
        body: None,
    })
}
