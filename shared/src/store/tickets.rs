//! WebSocket tickets: `WSTICKET#<SHA-256 of the ticket>` / `TICKET`, a 30-second,
//! single-use credential for the `$connect` handshake of a browser (which cannot set an
//! `Authorization` header on a WebSocket and would otherwise put a long-lived access
//! token into a URL). The client gets 256 random bits; the table keeps only their hash,
//! so neither a key, a log line nor a table read shows a usable ticket. Redeeming is one
//! conditional delete that holds only for a live (unexpired) item: of any number of
//! concurrent redemptions exactly one gets the item back, and an expired ticket is
//! refused even before DynamoDB's TTL sweep removes it.

use crate::auth::{secrets, Principal, Role};
use crate::domain::Timestamp;
use crate::ports::db::{item, Condition, Value, WriteOp};
use crate::store::keys;
use crate::{ApiError, AppContext};

/// How long a ticket may be redeemed after it was issued.
pub const TICKET_TTL_SECS: i64 = 30;

/// An issued ticket: the secret for the client (once) and the write that stores its hash.
pub struct Issued {
    pub ticket: String,
    pub expires_at: Timestamp,
    pub op: WriteOp,
}

/// A new ticket for the principal's session; the caller commits [`Issued::op`] (with
/// its audit event).
pub fn issue(app: &AppContext, principal: &Principal) -> Issued {
    let ticket = secrets::token();
    let now = app.clock.now().timestamp();
    let expires = now + TICKET_TTL_SECS;
    let key = keys::ws_ticket(&secrets::hash(&ticket));
    let record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("user_id", Value::S(principal.user_id.clone())),
        ("role", Value::S(principal.role.as_str().into())),
        ("session_id", Value::S(principal.session_id.clone())),
        ("mfa", Value::Bool(principal.mfa)),
        ("mailed_code", Value::Bool(principal.mailed_code)),
        ("expires_at", Value::N(expires)),
    ]);
    let expires_at = chrono::DateTime::from_timestamp(expires, 0)
        .map(Timestamp::new)
        .unwrap_or_else(|| app.now());
    Issued {
        ticket,
        expires_at,
        op: WriteOp::Put {
            table: app.config.table.clone(),
            item: record,
            condition: Some(Condition::NotExists),
        },
    }
}

/// Redeems a ticket once: the principal it was issued to, or `None` when it is
/// malformed, unknown, expired or already used. The caller still checks that the
/// session is live.
pub async fn redeem(app: &AppContext, ticket: &str) -> Result<Option<Principal>, ApiError> {
    let Some(old) = super::single_use::take(app, ticket, keys::ws_ticket).await? else {
        return Ok(None);
    };
    let text = |name: &str| old.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(user_id), Some(role), Some(session_id)) = (
        text("user_id"),
        text("role").as_deref().and_then(Role::parse),
        text("session_id"),
    ) else {
        return Ok(None);
    };
    Ok(Some(Principal {
        user_id,
        role,
        session_id,
        mfa: matches!(old.get("mfa"), Some(Value::Bool(true))),
        mailed_code: matches!(old.get("mailed_code"), Some(Value::Bool(true))),
    }))
}
