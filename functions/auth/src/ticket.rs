//! `POST /api/v1/realtime/ticket`: a 30-second, single-use ticket that opens one
//! WebSocket connection of the caller's session (`wss://…?ticket=…`). Browsers cannot
//! set an `Authorization` header on a WebSocket handshake, and an access token in a URL
//! would outlive the URL's trips through logs and histories; a ticket is worth one
//! connection within 30 seconds. The realtime function redeems it at `$connect`
//! (`shared::store::tickets`), and checks there that the session is still live.
//! Issuing is audited (`REALTIME_TICKET`); the ticket itself is never recorded.

use http::Method;
use serde::Serialize;
use shared::audit::{Action, Outcome};
use shared::auth::{audit_event, authenticate};
use shared::http::{ApiRequest, ApiResponse, HandlerResult, RouteDoc};
use shared::store::tickets;
use shared::App;

pub const PATH: &str = "/api/v1/realtime/ticket";
pub const METHOD: Method = Method::POST;

/// A WebSocket ticket.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Ticket {
    /// Pass as `?ticket=` on the WebSocket URL; works once, until `expires_at`.
    pub ticket: String,
    /// RFC 3339 UTC, 30 seconds after issue.
    pub expires_at: String,
}

pub fn doc() -> RouteDoc {
    RouteDoc::new("A single-use WebSocket ticket (30 seconds) for this session")
        .describe("Connect with `?ticket=<ticket>` on the WebSocket URL (browsers, which cannot send an `Authorization` header on a WebSocket handshake). It opens one connection within 30 seconds; a replayed or expired ticket is refused with 401.")
        .bearer()
        .response::<Ticket>(201)
        .errors(&[401, 429, 503])
}

pub async fn issue(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let issued = tickets::issue(&app, &principal);
    let event = audit_event(&req, &principal, Action::RealtimeTicket, Outcome::Success)
        .resource("account", &principal.user_id);
    app.audit.commit(event, vec![issued.op]).await?;
    ApiResponse::created(&Ticket {
        ticket: issued.ticket,
        expires_at: issued.expires_at.to_string(),
    })
}
