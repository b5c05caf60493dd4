//! Login, sessions and refresh-token rotation.
//!
//! A session (`USER#<id>` / `SESSION#<sid>`) is one login; its refresh tokens form one
//! family. Each refresh token (`REFRESH#<hash>`) is used once: refreshing marks it used
//! and issues the next in one transaction that also checks the session is not revoked.
//! Presenting a used token means it was stolen or replayed: the session is revoked (the
//! whole family dies) and a `TOKEN_REUSE` security event is written.

use crate::events::{self, Outcome};
use crate::{mail, mfa};
use serde::{Deserialize, Serialize};
use shared::audit::Action;
use shared::auth::accounts::{self, Account, Status};
use shared::auth::input;
use shared::auth::passwords::{self, Verified};
use shared::auth::{authenticate, rate_limit, secrets};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::db::{item, Condition, Key, Update, Value, WriteOp};
use shared::store::keys;
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

fn session_key(user_id: &str, session_id: &str) -> Key {
    keys::session(user_id, session_id)
}

fn refresh_key(token: &str) -> Key {
    keys::refresh_token(&secrets::hash(token))
}

fn refresh_item(
    token: &str,
    user_id: &str,
    session_id: &str,
    now: i64,
    session_ends: i64,
) -> shared::ports::db::Item {
    let key = refresh_key(token);
    item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("user_id", Value::S(user_id.into())),
        ("session_id", Value::S(session_id.into())),
        ("used", Value::Bool(false)),
        (
            "idle_until",
            Value::N(shared::domain::session::refresh_usable_until(
                now,
                session_ends,
            )),
        ),
        ("expires_at", Value::N(session_ends)),
    ])
}

/// Opens a session for an authenticated account and returns its first token pair.
pub async fn open_session(
    app: &AppContext,
    account: &Account,
    amr: &[&str],
) -> Result<TokenPair, ApiError> {
    let now = app.clock.now();
    let now_secs = now.timestamp();
    let session_id = app.new_id();
    let ends = now_secs + REFRESH_ABSOLUTE_SECS;
    let key = session_key(&account.id, &session_id);
    let session = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("created_ms", Value::N(now.timestamp_millis())),
        ("amr", Value::S(amr.join(" "))),
        ("expires_at", Value::N(ends)),
    ]);
    let refresh_token = secrets::token();
    let table = app.config.table.clone();
    app.db
        .transact_write(vec![
            WriteOp::Put {
                table: table.clone(),
                item: session,
                condition: Some(Condition::NotExists),
            },
            WriteOp::Put {
                table,
                item: refresh_item(&refresh_token, &account.id, &session_id, now_secs, ends),
                condition: Some(Condition::NotExists),
            },
        ])
        .await?;
    let (access_token, expires_in) = app
        .tokens
        .issue(app, &account.id, account.role, &session_id, amr)
        .await?;
    Ok(TokenPair {
        access_token,
        refresh_token,
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
pub async fn login(app: App, req: ApiRequest) -> HandlerResult {
    let body: LoginBody = req.json()?;
    let email = input::email(&body.email).map_err(|_| ApiError::InvalidCredentials)?;
    let ip = events::ip_subject(&req);
    rate_limit::check(&app, rate_limit::AUTH, &ip).await?;
    let index = accounts::email_index(&app, email).await?;
    let email_subject = format!("email:{index}");
    rate_limit::check(&app, rate_limit::AUTH, &email_subject).await?;

    let account = accounts::find_by_email(&app, email).await?;
    let now = app.clock.now().timestamp();
    let usable = account
        .as_ref()
        .filter(|a| !a.locked(now) && a.status != Status::Disabled);
    // Same hashing work whether or not the account exists or may log in.
    let stored = usable
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| passwords::decoy_hash().to_string());
    let verified = passwords::verify_blocking(body.password.to_string(), stored).await;

    let (account, rehash) = match (usable, verified) {
        (Some(account), Verified::Yes { rehash }) => (account.clone(), rehash),
        _ => {
            rate_limit::hit(&app, rate_limit::AUTH, &ip).await.ok();
            rate_limit::hit(&app, rate_limit::AUTH, &email_subject)
                .await
                .ok();
            let (user, role) = match &account {
                Some(a) => (Some(a.id.as_str()), Some(a.role)),
                None => (None, None),
            };
            if let Some(found) = usable {
                if accounts::record_failure(&app, &found.id).await? {
                    events::record(
                        &app,
                        &req,
                        Action::AccountLocked,
                        user,
                        role,
                        Outcome::Denied,
                    )
                    .await?;
                    mail::account_locked(&app, &found.email(&app).await?).await?;
                }
            }
            events::record(&app, &req, Action::LoginFailed, user, role, Outcome::Denied).await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    if account.status == Status::Unverified {
        return Err(ApiError::unprocessable(
            "verify your e-mail address before logging in",
        ));
    }
    if rehash {
        let upgraded = passwords::hash_blocking(body.password.to_string()).await?;
        accounts::change(
            &app,
            &account.id,
            accounts::AccountChange::new().password_hash(upgraded),
        )
        .await?;
    }
    accounts::record_success(&app, &account).await?;
    if account.mfa_enabled {
        let mfa_token = mfa::start_challenge(&app, &account).await?;
        return ApiResponse::ok(&MfaRequired {
            mfa_required: true,
            mfa_token,
        });
    }
    let pair = open_session(&app, &account, &["pwd"]).await?;
    events::record(
        &app,
        &req,
        Action::Login,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&pair)
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
    let table = &app.config.table;
    let old_key = refresh_key(presented);
    let Some(record) = app.db.get(table, &old_key).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let text = |name: &str| {
        record
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (user_id, session_id) = (text("user_id"), text("session_id"));
    let now = app.clock.now().timestamp();
    if record.get("used").and_then(Value::as_bool) != Some(false) {
        return reuse_detected(&app, &req, &user_id, &session_id).await;
    }
    if record
        .get("idle_until")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        <= now
    {
        return Err(ApiError::InvalidCredentials);
    }
    let Some(account) = accounts::get(&app, &user_id).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let session = session_key(&user_id, &session_id);
    let Some(session_item) = app.db.get(table, &session).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let created_ms = session_item
        .get("created_ms")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if account.status != Status::Active
        || session_item.contains_key("revoked")
        || created_ms <= account.sessions_valid_after
    {
        return Err(ApiError::InvalidCredentials);
    }
    let amr_text = session_item
        .get("amr")
        .and_then(Value::as_str)
        .unwrap_or("pwd")
        .to_string();
    let amr: Vec<&str> = amr_text.split(' ').collect();
    let ends = session_item
        .get("expires_at")
        .and_then(Value::as_i64)
        .unwrap_or(now);
    let next = secrets::token();
    let rotated = app
        .db
        .transact_write(vec![
            WriteOp::Update {
                table: table.clone(),
                key: old_key,
                update: Update::new().set("used", true),
                condition: Some(Condition::Equals("used".into(), Value::Bool(false))),
            },
            WriteOp::Check {
                table: table.clone(),
                key: session,
                condition: Condition::And(vec![
                    Condition::Exists,
                    Condition::AttributeNotExists("revoked".into()),
                ]),
            },
            WriteOp::Put {
                table: table.clone(),
                item: refresh_item(&next, &user_id, &session_id, now, ends),
                condition: Some(Condition::NotExists),
            },
        ])
        .await;
    match rotated {
        Ok(()) => {}
        // Someone used the same token a moment ago: same as a replay.
        Err(shared::ports::db::DbError::ConditionFailed { op: Some(0) }) => {
            return reuse_detected(&app, &req, &user_id, &session_id).await;
        }
        Err(err) if err.is_condition_failed() => return Err(ApiError::InvalidCredentials),
        Err(err) => return Err(err.into()),
    }
    let (access_token, expires_in) = app
        .tokens
        .issue(&app, &account.id, account.role, &session_id, &amr)
        .await?;
    events::record(
        &app,
        &req,
        Action::TokenRefresh,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
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
    revoke(app, user_id, session_id).await?;
    events::record(
        app,
        req,
        Action::TokenReuse,
        Some(user_id),
        None,
        Outcome::Denied,
    )
    .await?;
    tracing::warn!(
        security = "refresh_token_reuse",
        "a used refresh token was presented; session revoked"
    );
    Err(ApiError::InvalidCredentials)
}

async fn revoke(app: &AppContext, user_id: &str, session_id: &str) -> Result<(), ApiError> {
    let revoked = app
        .db
        .update(
            &app.config.table,
            &session_key(user_id, session_id),
            Update::new().set("revoked", true),
            Some(Condition::Exists),
        )
        .await;
    match revoked {
        Ok(_) => Ok(()),
        Err(err) if err.is_condition_failed() => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// `POST logout`: ends the caller's session (its refresh tokens stop working).
pub async fn logout(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    revoke(&app, &principal.user_id, &principal.session_id).await?;
    events::record(
        &app,
        &req,
        Action::Logout,
        Some(&principal.user_id),
        Some(principal.role),
        Outcome::Success,
    )
    .await?;
    Ok(ApiResponse::no_content())
}

/// Ends every session of the account opened until now.
pub async fn revoke_all(app: &AppContext, user_id: &str) -> Result<(), ApiError> {
    accounts::change(
        app,
        user_id,
        accounts::AccountChange::new().end_sessions(app.clock.now().timestamp_millis()),
    )
    .await?;
    Ok(())
}

/// `POST logout-all`: ends every session of the caller's account.
pub async fn logout_all(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    revoke_all(&app, &principal.user_id).await?;
    events::record(
        &app,
        &req,
        Action::Logout,
        Some(&principal.user_id),
        Some(principal.role),
        Outcome::Success,
    )
    .await?;
    Ok(ApiResponse::no_content())
}
