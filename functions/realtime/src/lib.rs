//! The WebSocket API: connection bookkeeping and the `ping` action.
//!
//! Connections are stored with a TTL (API Gateway closes a connection after two hours
//! at most), so a missed `$disconnect` cannot leave records behind. Pushes to a
//! connection that is gone remove its record.
//!
//! `$connect` needs an access token (`Authorization: Bearer …` on the handshake, checked
//! by the same extractor as the REST API); the connection is stored with its user so
//! the server can push to a user's connections (`shared::ws::push_to_user`). Messaging,
//! presence and typing arrive with the messaging work; until then a client can `ping`
//! and receive `notification` events.

use serde::Serialize;
use shared::auth::authenticate_header;
use shared::ports::db::{item, Value};
use shared::ports::push::PushOutcome;
use shared::ws::{
    user_connections, WsReply, WsRequest, WsResult, WsRouter, CONNECT, DEFAULT, DISCONNECT,
};
use shared::{ApiError, App};

/// API Gateway's hard limit on a connection's life.
pub const CONNECTION_TTL_SECS: i64 = 2 * 60 * 60;

pub fn router() -> WsRouter {
    WsRouter::new()
        .route(CONNECT, connect)
        .route(DISCONNECT, disconnect)
        .route("ping", ping)
        .route(DEFAULT, unknown_action)
}

pub use shared::ws::connection_key;

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
    let now = app.clock.now().timestamp();
    let key = connection_key(&req.connection_id);
    let record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("connection_id", Value::S(req.connection_id.clone())),
        ("user_id", Value::S(principal.user_id.clone())),
        ("role", Value::S(principal.role.as_str().into())),
        ("connected_at", Value::N(now)),
        ("expires_at", Value::N(now + CONNECTION_TTL_SECS)),
        ("gsi1pk", Value::S(user_connections(&principal.user_id))),
        ("gsi1sk", Value::S(format!("{now}#{}", req.connection_id))),
    ]);
    app.db.put(&app.config.table, record, None).await?;
    Ok(WsReply::ok())
}

async fn disconnect(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    app.db
        .delete(&app.config.table, &connection_key(&req.connection_id), None)
        .await?;
    Ok(WsReply::ok())
}

/// Server-to-client event envelope.
#[derive(Debug, Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

/// Sends an event to the caller; forgets the connection if it is gone.
async fn send<T: Serialize>(
    app: &App,
    req: &WsRequest,
    kind: &str,
    data: Option<T>,
) -> Result<(), ApiError> {
    let payload = serde_json::to_vec(&Event {
        kind,
        request_id: &req.request_id,
        data,
    })
    .map_err(ApiError::internal)?;
    if app.push.post(&req.connection_id, &payload).await? == PushOutcome::Gone {
        app.db
            .delete(&app.config.table, &connection_key(&req.connection_id), None)
            .await?;
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
