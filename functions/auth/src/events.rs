//! The auth function's audit events and rate-limit subjects. Events name the account
//! (its opaque id) and never the e-mail, the password or any token.

use shared::audit::{Action, Actor, AuditEvent};
use shared::auth::Role;
use shared::http::ApiRequest;
use shared::{ApiError, AppContext};

pub use shared::audit::Outcome;

/// Records an auth event about an account (or an unknown one); fails closed (503).
pub async fn record(
    app: &AppContext,
    req: &ApiRequest,
    action: Action,
    user_id: Option<&str>,
    role: Option<Role>,
    outcome: Outcome,
) -> Result<(), ApiError> {
    let actor = Actor {
        user_id: user_id.map(str::to_string),
        role: role.map(|r| r.as_str().to_string()),
        session_id: None,
    };
    let mut event = AuditEvent::from_request(req, action, outcome).actor(actor);
    if let Some(id) = user_id {
        event = event.resource("account", id);
    }
    app.audit.record(event).await.map_err(ApiError::from)
}

/// The rate-limit subject of the caller's address.
pub fn ip_subject(req: &ApiRequest) -> String {
    format!(
        "{}{}",
        shared::auth::rate_limit::IP_SUBJECT_PREFIX,
        req.source_ip.as_deref().unwrap_or("unknown")
    )
}
