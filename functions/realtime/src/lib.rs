//! The WebSocket API: connection bookkeeping and the `ping` action.
//!
//! Connections are stored with a TTL (API Gateway closes a connection after two hours
//! at most), so a missed `$disconnect` cannot leave records behind. Pushes to a
//! connection that is gone remove its record.
//!
//! Authentication of `$connect` and the messaging, presence and typing actions arrive
//! with the identity and messaging work; until then a connection can only `ping`.

use serde::Serialize;
use shared::ports::db::{item, Key, Value};
use shared::ports::push::PushOutcome;
use shared::ws::{WsReply, WsRequest, WsResult, WsRouter, CONNECT, DEFAULT, DISCONNECT};
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

/// The key of a connection record.
pub fn connection_key(connection_id: &str) -> Key {
    Key::new(format!("CONN#{connection_id}"), "CONN")
}

fn require_connection(req: &WsRequest) -> Result<(), ApiError> {
    if req.connection_id.is_empty() || req.connection_id.len() > 128 {
        return Err(ApiError::validation("missing connection id"));
    }
    Ok(())
}

async fn connect(app: App, req: WsRequest) -> WsResult {
    require_connection(&req)?;
    let now = app.clock.now().timestamp();
    let key = connection_key(&req.connection_id);
    let record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("connected_at", Value::N(now)),
        ("expires_at", Value::N(now + CONNECTION_TTL_SECS)),
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
