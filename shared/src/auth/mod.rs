//! Identity for every function (DESIGN §6): who the caller is ([`Principal`], from the
//! one extractor [`authenticate`]), what they may do ([`policy`]), and the building
//! blocks the auth function uses (passwords, tokens, TOTP, rate limits, accounts).

pub mod accounts;
pub mod care;
pub mod checks;
pub mod input;
pub mod one_time;
pub mod passwords;
pub mod policy;
pub mod rate_limit;
pub mod revocation;
pub mod secrets;
pub mod tokens;
pub mod totp;

use crate::http::ApiRequest;
use crate::{ApiError, AppContext};
use serde::{Deserialize, Serialize};

/// The three roles of DESIGN §6. Deny by default: a role grants nothing by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Provider,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Provider => "provider",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "patient" => Some(Role::Patient),
            "provider" => Some(Role::Provider),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The authentication methods a session's `amr` names (RFC 8176 values; docs/identity.md).
pub mod amr {
    /// A password.
    pub const PASSWORD: &str = "pwd";
    /// A one-time password the user holds: a TOTP code or a recovery code.
    pub const OTP: &str = "otp";
    /// A strong second factor was used (TOTP or a recovery code, NIST SP 800-63B
    /// authenticators): what "an MFA session" means everywhere.
    pub const MFA: &str = "mfa";
    /// Multiple-channel authentication: a code sent to the account's e-mail address or
    /// phone and typed back. A weaker factor: never `mfa`.
    pub const MULTI_CHANNEL: &str = "mca";
    /// The code was sent by SMS (with `mca`).
    pub const SMS: &str = "sms";

    /// A password session.
    pub const PASSWORD_ONLY: &[&str] = &[PASSWORD];
    /// Password and TOTP or a recovery code.
    pub const STRONG: &[&str] = &[PASSWORD, OTP, MFA];
    /// Password and a code sent by e-mail.
    pub const MAILED: &[&str] = &[PASSWORD, MULTI_CHANNEL];
    /// Password and a code sent by SMS.
    pub const TEXTED: &[&str] = &[PASSWORD, MULTI_CHANNEL, SMS];
}

/// The authenticated caller, as proven by a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    pub session_id: String,
    /// True when the session was opened with a strong second factor, TOTP or a
    /// recovery code (`amr` has `mfa`): what every MFA check requires.
    pub mfa: bool,
    /// True when the second step was a code sent by e-mail or SMS instead of the
    /// account's TOTP (`amr` has `mca`): the mailbox or phone alone. Such a session is
    /// not an MFA session, and it reads no PHI (the account has TOTP: only TOTP or a
    /// recovery code counts for it).
    pub mailed_code: bool,
}

/// The one extractor: a `Bearer` access token, verified (signature, algorithm, every
/// claim), whose session is still live (account active, role unchanged, session not
/// ended: [`revocation`], one cached read), or 401. It also counts the caller against
/// the general rate limit.
pub async fn authenticate(app: &AppContext, req: &ApiRequest) -> Result<Principal, ApiError> {
    authenticate_header(app, req.header("authorization")).await
}

/// [`authenticate`] for an `Authorization` header value (also the WebSocket `$connect`).
pub async fn authenticate_header(
    app: &AppContext,
    header: Option<&str>,
) -> Result<Principal, ApiError> {
    authenticate_counted(app, header, rate_limit::GENERAL).await
}

/// [`authenticate`] counting the caller against `limit` instead of the general one
/// (chat: a conversation would exhaust 100 requests per 15 minutes; see
/// [`rate_limit::CHAT`]).
pub async fn authenticate_within(
    app: &AppContext,
    req: &ApiRequest,
    limit: rate_limit::Limit,
) -> Result<Principal, ApiError> {
    authenticate_counted(app, req.header("authorization"), limit).await
}

async fn authenticate_counted(
    app: &AppContext,
    header: Option<&str>,
    limit: rate_limit::Limit,
) -> Result<Principal, ApiError> {
    let token = header
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthenticated)?;
    let claims = app.tokens.verify(app, token).await?;
    let principal = claims.principal()?;
    if !app.sessions.is_live(app, &principal).await? {
        return Err(ApiError::Unauthenticated);
    }
    rate_limit::hit(app, limit, &format!("user:{}", principal.user_id)).await?;
    Ok(principal)
}

/// The token of an `Authorization: Bearer …` header value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Records what a principal did to a resource; an error means it was not recorded, and
/// the request fails (503) rather than go on unaudited.
pub async fn record(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    action: crate::audit::Action,
    resource: (&str, &str),
    outcome: crate::audit::Outcome,
) -> Result<(), ApiError> {
    let event = audit_event(req, principal, action, outcome).resource(resource.0, resource.1);
    Ok(app.audit.record(event).await?)
}

/// Records an event about an account whose holder is not signed in (yet): sign-up,
/// login, MFA challenges, password resets, refresh. The actor is the account (or
/// unknown), without a session; the resource is the account. Fails closed (503).
pub async fn record_account(
    app: &AppContext,
    req: &ApiRequest,
    action: crate::audit::Action,
    user_id: Option<&str>,
    role: Option<Role>,
    outcome: crate::audit::Outcome,
) -> Result<(), ApiError> {
    let event = account_event(req, action, user_id, role, outcome);
    Ok(app.audit.record(event).await?)
}

/// The event [`record_account`] records, for a unit of work (`app.audit.commit`).
pub fn account_event(
    req: &ApiRequest,
    action: crate::audit::Action,
    user_id: Option<&str>,
    role: Option<Role>,
    outcome: crate::audit::Outcome,
) -> crate::audit::AuditEvent {
    let actor = crate::audit::Actor {
        user_id: user_id.map(str::to_string),
        role: role.map(|r| r.as_str().to_string()),
        session_id: None,
    };
    let mut event = crate::audit::AuditEvent::from_request(req, action, outcome).actor(actor);
    if let Some(id) = user_id {
        event = event.resource("account", id);
    }
    event
}

/// The audit event of something this principal did (actor = user, role, session).
pub fn audit_event(
    req: &ApiRequest,
    principal: &Principal,
    action: crate::audit::Action,
    outcome: crate::audit::Outcome,
) -> crate::audit::AuditEvent {
    let actor = crate::audit::Actor::user(&principal.user_id, principal.role.as_str())
        .with_session(&principal.session_id);
    crate::audit::AuditEvent::from_request(req, action, outcome).actor(actor)
}
