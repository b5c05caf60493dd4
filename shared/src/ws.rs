//! The route table of a WebSocket function: API Gateway picks the route from the
//! message's `action` field (`$request.body.action`), with `$connect`, `$disconnect`
//! and `$default` as the fixed routes. Lambda and the local gateway both call
//! [`WsRouter::dispatch`] with the same event type.

use crate::http::ApiResponse;
use crate::{ApiError, App};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

pub const CONNECT: &str = "$connect";
pub const DISCONNECT: &str = "$disconnect";
pub const DEFAULT: &str = "$default";

/// One WebSocket event as a handler sees it.
#[derive(Debug, Clone)]
pub struct WsRequest {
    pub route_key: String,
    pub connection_id: String,
    pub body: Option<String>,
    pub query: HashMap<String, String>,
    pub request_id: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The `$connect` handshake's headers (API Gateway sends them on `$connect` only).
    pub headers: http::HeaderMap,
}

impl WsRequest {
    pub fn from_event(event: &ApiGatewayWebsocketProxyRequest) -> Self {
        let ctx = &event.request_context;
        WsRequest {
            route_key: ctx.route_key.clone().unwrap_or_else(|| DEFAULT.to_string()),
            connection_id: ctx.connection_id.clone().unwrap_or_default(),
            body: event.body.clone(),
            query: event
                .query_string_parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            request_id: ctx
                .request_id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| ulid::Ulid::new().to_string()),
            source_ip: ctx.identity.source_ip.clone(),
            user_agent: event
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            headers: event.headers.clone(),
        }
    }
}

/// The one envelope of every server-to-client frame: `{"type", "data"?, "request_id"?}`
/// (`request_id` when the frame answers a client's frame).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerEvent<T: serde::Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

impl<T: serde::Serialize> ServerEvent<T> {
    /// A pushed event with its data.
    pub fn new(kind: &'static str, data: T) -> Self {
        Self {
            kind,
            request_id: None,
            data: Some(data),
        }
    }

    /// The answer to the client frame with this request id.
    pub fn reply(kind: &'static str, request_id: &str, data: Option<T>) -> Self {
        Self {
            kind,
            request_id: Some(request_id.to_string()),
            data,
        }
    }

    /// The frame's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(self).map_err(ApiError::internal)
    }
}

/// Pushes a server event to every open connection of a user; connections that are
/// gone are forgotten. Returns how many received it.
pub async fn push_to_user<T: serde::Serialize>(
    app: &crate::AppContext,
    user_id: &str,
    event: &ServerEvent<T>,
) -> Result<usize, crate::ApiError> {
    use crate::ports::push::PushOutcome;
    use crate::store::connections;
    let payload = event.to_bytes()?;
    let mut delivered = 0;
    for id in connections::of_user(app, user_id).await? {
        match app.push.post(&id, &payload).await? {
            PushOutcome::Delivered => delivered += 1,
            PushOutcome::Gone => connections::forget(app, &id).await?,
        }
    }
    Ok(delivered)
}

/// A handler's answer: the status decides whether `$connect` is accepted; a body is
/// returned to the caller when the route has a route response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsReply {
    pub status: u16,
    pub body: Option<String>,
}

impl WsReply {
    pub fn ok() -> Self {
        Self {
            status: 200,
            body: None,
        }
    }
}

pub type WsResult = Result<WsReply, ApiError>;
type BoxHandler = Arc<dyn Fn(App, WsRequest) -> BoxFuture<'static, WsResult> + Send + Sync>;

#[derive(Clone, Default)]
pub struct WsRouter {
    routes: Arc<HashMap<&'static str, BoxHandler>>,
}

impl WsRouter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route<F, Fut>(mut self, route_key: &'static str, handler: F) -> Self
    where
        F: Fn(App, WsRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WsResult> + Send + 'static,
    {
        let added = Arc::get_mut(&mut self.routes).map(|routes| {
            routes.insert(
                route_key,
                Arc::new(move |app, req| Box::pin(handler(app, req))),
            )
        });
        assert!(
            matches!(added, Some(None)),
            "route {route_key} added twice or after sharing"
        );
        self
    }

    /// Route keys in a stable order.
    pub fn table(&self) -> Vec<&'static str> {
        let mut keys: Vec<_> = self.routes.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Picks the route key a message selects: its `action`, when that route exists.
    pub fn select_route(&self, body: &str) -> &'static str {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("action")?.as_str().map(str::to_string))
            .and_then(|action| self.routes.get_key_value(action.as_str()).map(|(k, _)| *k))
            .filter(|key| !key.starts_with('$'))
            .unwrap_or(DEFAULT)
    }

    pub async fn dispatch(
        &self,
        app: &App,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let req = WsRequest::from_event(&event);
        let started = std::time::Instant::now();
        let request_id = req.request_id.clone();
        let route_key = req.route_key.clone();
        let handler = self
            .routes
            .get(route_key.as_str())
            .or_else(|| self.routes.get(DEFAULT))
            .cloned();
        let outcome = match handler {
            Some(handler) => handler(app.clone(), req).await,
            None => Err(ApiError::NotFound),
        };
        let reply = match outcome {
            Ok(reply) => reply,
            Err(err) => {
                let response = ApiResponse::error(&err, &request_id);
                WsReply {
                    status: response.status.as_u16(),
                    body: String::from_utf8(response.body.to_vec()).ok(),
                }
            }
        };
        tracing::info!(
            request_id,
            route = %route_key,
            status = reply.status,
            duration_ms = started.elapsed().as_millis() as u64,
            "websocket event"
        );
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = i64::from(reply.status);
        response.body = reply.body.map(Body::Text);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_select_routes_and_everything_else_is_default() {
        let router = WsRouter::new()
            .route(CONNECT, |_, _| async { Ok(WsReply::ok()) })
            .route("ping", |_, _| async { Ok(WsReply::ok()) });
        assert_eq!(router.select_route(r#"{"action":"ping"}"#), "ping");
        assert_eq!(router.select_route(r#"{"action":"nope"}"#), DEFAULT);
        assert_eq!(router.select_route(r#"{"action":"$connect"}"#), DEFAULT);
        assert_eq!(router.select_route("not json"), DEFAULT);
        assert_eq!(router.table(), vec!["$connect", "ping"]);
    }
}
