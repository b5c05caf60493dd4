//! Login, sessions and refresh-token rotation.
//!
//! A session (`SESSION#<id>` / `SESSION#<sid>`) is one login; its refresh tokens form one
//! family. Each refresh token (`REFRESH#<hash>`) is used once: refreshing marks it used
//! and issues the next in one unit of work with its `TOKEN_REFRESH` event that also
//! checks the session is not revoked and the account is still active, of the same
//! role and without an "end every session" since it was read, so a refresh racing a
//! logout-all or a disable issues nothing. A refresh after the role's idle window
//! (staff 30 minutes) or after the session's end (staff 12 hours) fails.
//! Presenting a used token means it was stolen or replayed: the session is revoked (the
//! whole family dies) together with a `TOKEN_REUSE` security event. Logout and
//! logout-all commit with their events too.

use crate::{integrity, mail, mfa};
use serde::{Deserialize, Serialize};
use shared::audit::{Action, AuditEvent, CommitError, Outcome, WriteOp};
use shared::auth::accounts::{self, Account, LoginAttempt, Status};
use shared::auth::input;
use shared::auth::passwords::{self, Verified};
use shared::auth::{account_event, amr, audit_event, authenticate, rate_limit, record_account};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::store::sessions;
use shared::{ApiError, App, AppContext};
use zeroize::Zeroizing;

pub use shared::domain::session::{REFRESH_ABSOLUTE_SECS, REFRESH_IDLE_SECS};

/// What a successful login or refresh returns.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub token_type: &'static str,
}

/// A login whose account has a second factor: finish with `mfa/challenge`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct MfaRequired {
    /// Always `true`.
    mfa_required: bool,
    mfa_token: String,
}

/// What a correct login answers: a session, or the second-factor step.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema of the two answers; each is built directly
pub(crate) enum LoginAnswer {
    Session(TokenPair),
    MfaRequired(MfaRequired),
}

/// Opens a session committed with its audit event and `more` writes of the same step
/// (one unit of work): without the event there is no session. A condition of `more`
/// that fails answers 401 (the step was spent or the account changed meanwhile).
pub async fn open_session_audited(
    app: &AppContext,
    account: &Account,
    amr: &[&str],
    event: AuditEvent,
    more: Vec<WriteOp>,
) -> Result<TokenPair, ApiError> {
    let opening = sessions::open_ops(app, &account.id, account.role, amr);
    // Signed before the commit: a signing failure (KMS) keeps the step unspent.
    let (access_token, expires_in) = app
        .tokens
        .issue(app, &account.id, account.role, &opening.session_id, amr)
        .await?;
    let mut ops = opening.ops;
    ops.extend(more);
    match app.audit.commit(event, ops).await {
        Ok(()) => {}
        Err(CommitError::Change { .. }) => return Err(ApiError::InvalidCredentials),
        Err(err) => return Err(err.into()),
    }
    Ok(TokenPair {
        access_token,
        refresh_token: opening.refresh_token,
        expires_in,
        token_type: "Bearer",
    })
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    #[schemars(email)]
    email: String,
    #[schemars(with = "String")]
    password: Zeroizing<String>,
}

/// `POST login`: tokens, or `{mfa_required, mfa_token}` when the account has MFA on.
///
/// Each attempt is reserved before the password is checked, per source IP and per
/// address (rate limits: 429) and on the account (lockout): parallel guesses cannot
/// all pass a read of a counter. A failure keeps its reservations; a success gives
/// them back. A counter that cannot be written refuses the attempt (503).
pub async fn login(app: App, req: ApiRequest) -> HandlerResult {
    let body: LoginBody = req.json()?;
    let email = input::email(&body.email).map_err(|_| ApiError::InvalidCredentials)?;
    let by_ip = rate_limit::reserve(&app, rate_limit::AUTH, &rate_limit::ip_subject(&req)).await?;
    let index = accounts::email_index(&app, email).await?;
    let by_address = rate_limit::reserve(&app, rate_limit::AUTH, &format!("email:{index}")).await?;

    let account = accounts::find_by_email(&app, email).await?;
    let usable = account.as_ref().filter(|a| a.status != Status::Disabled);
    let attempt = match usable {
        Some(account) => accounts::reserve_login(&app, account).await?,
        None => LoginAttempt::Locked,
    };
    // Same hashing work whether or not the account exists or may log in; only a
    // reserved attempt checks the account's own hash.
    let verified = match (usable, attempt) {
        (Some(account), LoginAttempt::Reserved(_)) => {
            passwords::verify_account(
                &account.id,
                body.password.to_string(),
                account.password_hash.clone(),
            )
            .await
        }
        _ => {
            passwords::verify_blocking(
                body.password.to_string(),
                passwords::decoy_hash().to_string(),
            )
            .await;
            Verified::No
        }
    };

    let (account, rehash) = match (usable, verified) {
        (Some(account), Verified::Yes { rehash }) => (account.clone(), rehash),
        _ => {
            let (user, role) = match &account {
                Some(a) => (Some(a.id.as_str()), Some(a.role)),
                None => (None, None),
            };
            if let (Some(found), LoginAttempt::Reserved(n)) = (usable, attempt) {
                if accounts::login_failed(&app, &found.id, n).await? {
                    record_account(
                        &app,
                        &req,
                        Action::AccountLocked,
                        user,
                        role,
                        Outcome::Denied,
                    )
                    .await?;
                    mail::account_locked(&app, &integrity::email(&app, &req, found).await?).await?;
                }
            }
            record_account(&app, &req, Action::LoginFailed, user, role, Outcome::Denied).await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    // A right password: the failure counters forget this attempt.
    rate_limit::release(&app, by_ip).await;
    rate_limit::release(&app, by_address).await;
    if account.status == Status::Unverified {
        // The right password clears the lockout counter; refused all the same, and the
        // change is kept only with its event.
        let event = account_event(
            &req,
            Action::LoginFailed,
            Some(&account.id),
            Some(account.role),
            Outcome::Denied,
        );
        let clear = accounts::AccountChange::new().clear_lockout();
        let (write, _) = accounts::change_op(&app, &account, clear, account.still_unverified())?;
        commit_login_step(&app, event, vec![write]).await?;
        return Err(ApiError::unprocessable(
            "verify your e-mail address before logging in",
        ));
    }
    let mut change = accounts::AccountChange::new().clear_lockout();
    if rehash {
        let upgraded = passwords::hash_blocking(body.password.to_string()).await?;
        change = change.password_hash(upgraded);
    }
    if account.mfa_enabled {
        // The cleared counters (and upgraded hash), the challenge and the event: one unit.
        let event = account_event(
            &req,
            Action::MfaRequired,
            Some(&account.id),
            Some(account.role),
            Outcome::Success,
        );
        let (write, _) = accounts::change_op(&app, &account, change, account.active_unchanged())?;
        let (mfa_token, challenge) = mfa::start_challenge(&app, &account);
        commit_login_step(&app, event, vec![write, challenge]).await?;
        return ApiResponse::ok(&MfaRequired {
            mfa_required: true,
            mfa_token,
        });
    }
    // The session, the cleared counters (and upgraded hash) and the event: one unit.
    let event = account_event(
        &req,
        Action::Login,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    );
    let (write, _) = accounts::change_op(&app, &account, change, account.active_unchanged())?;
    let pair = open_session_audited(&app, &account, amr::PASSWORD_ONLY, event, vec![write]).await?;
    ApiResponse::ok(&pair)
}

/// Commits a login step's account change with its event; the account changed meanwhile
/// (disabled, reset) answers 401 with nothing written.
async fn commit_login_step(
    app: &AppContext,
    event: AuditEvent,
    ops: Vec<WriteOp>,
) -> Result<(), ApiError> {
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(()),
        Err(CommitError::Change { .. }) => Err(ApiError::InvalidCredentials),
        Err(err) => Err(err.into()),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

/// `POST refresh`: rotates the refresh token and issues a new access token.
pub async fn refresh(app: App, req: ApiRequest) -> HandlerResult {
    let body: RefreshBody = req.json()?;
    let presented = input::token("refresh_token", &body.refresh_token)?;
    let Some(record) = sessions::refresh_token(&app, presented).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let (user_id, session_id) = (record.user_id.clone(), record.session_id.clone());
    if record.used {
        return reuse_detected(&app, &req, &user_id, &session_id).await;
    }
    let Some(account) = accounts::get(&app, &user_id).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let Some(session) = sessions::session(&app, &user_id, &session_id).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let now = app.clock.now().timestamp();
    let lifetime = app.config.session_lifetime(account.role);
    let idle = shared::domain::session::refresh_allowed(
        record.last_used,
        now,
        session.ends,
        lifetime.idle_secs,
    );
    if account.status != Status::Active
        || session.revoked
        || session.created_ms <= account.sessions_valid_after
        || !idle
    {
        return Err(ApiError::InvalidCredentials);
    }
    let amr: Vec<&str> = session.amr.split(' ').collect();
    // Signed before the commit: a signing failure keeps the presented token usable.
    let (access_token, expires_in) = app
        .tokens
        .issue(&app, &account.id, account.role, &session_id, &amr)
        .await?;
    let next = shared::auth::secrets::token();
    let mut ops = sessions::rotation(
        &app,
        presented,
        &next,
        &user_id,
        &session_id,
        session.ends,
        lifetime.idle_secs,
    );
    ops.push(accounts::still_usable(&app, &account));
    let event = account_event(
        &req,
        Action::TokenRefresh,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    );
    match app.audit.commit(event, ops).await {
        Ok(()) => {}
        // Someone used the same token a moment ago: same as a replay.
        Err(CommitError::Change { op: 0 }) => {
            return reuse_detected(&app, &req, &user_id, &session_id).await
        }
        // The session ended, or the account was disabled, changed role or ended its
        // sessions since it was read: nothing is issued.
        Err(CommitError::Change { .. }) => return Err(ApiError::InvalidCredentials),
        Err(err) => return Err(err.into()),
    }
    ApiResponse::ok(&TokenPair {
        access_token,
        refresh_token: next,
        expires_in,
        token_type: "Bearer",
    })
}

async fn reuse_detected(
    app: &AppContext,
    req: &ApiRequest,
    user_id: &str,
    session_id: &str,
) -> HandlerResult {
    let event = account_event(
        req,
        Action::TokenReuse,
        Some(user_id),
        None,
        Outcome::Denied,
    );
    // The session's end commits with the event: without it, nothing changes (503).
    sessions::end(app, user_id, session_id, event).await?;
    tracing::warn!(
        security = "refresh_token_reuse",
        "a used refresh token was presented; session revoked"
    );
    Err(ApiError::InvalidCredentials)
}

/// `POST logout`: ends the caller's session (its access and refresh tokens stop
/// working, its WebSocket connections are closed), committed with the event.
pub async fn logout(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let event = audit_event(&req, &principal, Action::Logout, Outcome::Success)
        .resource("account", &principal.user_id);
    sessions::end(&app, &principal.user_id, &principal.session_id, event).await?;
    Ok(ApiResponse::no_content())
}

/// `POST logout-all`: ends every session of the caller's account, committed with the
/// event.
pub async fn logout_all(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let change = accounts::AccountChange::new().end_sessions(app.clock.now().timestamp_millis());
    let event = audit_event(&req, &principal, Action::Logout, Outcome::Success)
        .resource("account", &principal.user_id);
    accounts::change_audited(&app, &account, change, event).await?;
    Ok(ApiResponse::no_content())
}
