//! The second factor: TOTP enrolment (secret sealed in the account, ten single-use
//! recovery codes stored hashed), and the login challenge that accepts a TOTP code, a
//! recovery code or a code sent by e-mail.
//!
//! The challenge (`MFA#<hash>`) is what a password login hands out when MFA is on: it is
//! single-use, lives five minutes and allows [`MAX_CHALLENGE_ATTEMPTS`] wrong codes.

use crate::events::{self, Outcome};
use crate::mail;
use crate::sessions::open_session;
use serde::Deserialize;
use shared::audit::Action;
use shared::auth::accounts::{self, seal, Account, Status};
use shared::auth::input;
use shared::auth::{authenticate, rate_limit, secrets, totp};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::db::{item, Condition, Key, Update, Value, WriteOp};
use shared::store::keys;
use shared::{ApiError, App, AppContext};

pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
pub const MAX_CHALLENGE_ATTEMPTS: i64 = 5;
pub const RECOVERY_CODES: usize = 10;
const CODE_DIGITS: u32 = 6;

fn challenge_key(token: &str) -> Key {
    keys::mfa_challenge(&secrets::hash(token))
}

fn recovery_key(user_id: &str, code: &str) -> Key {
    keys::recovery_code(
        user_id,
        &secrets::hash(&secrets::normalize_recovery_code(code)),
    )
}

/// Starts a login challenge for an account whose password was right.
pub async fn start_challenge(app: &AppContext, account: &Account) -> Result<String, ApiError> {
    let token = secrets::token();
    let key = challenge_key(&token);
    let record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("user_id", Value::S(account.id.clone())),
        ("attempts", Value::N(0)),
        (
            "expires_at",
            Value::N(app.clock.now().timestamp() + CHALLENGE_TTL_SECS),
        ),
    ]);
    app.db
        .put(&app.config.table, record, Some(Condition::NotExists))
        .await?;
    Ok(token)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeBody {
    mfa_token: String,
    code: String,
}

/// `POST mfa/challenge`: a TOTP, recovery or e-mailed code completes the login.
pub async fn challenge(app: App, req: ApiRequest) -> HandlerResult {
    let body: ChallengeBody = req.json()?;
    let token = input::token("mfa_token", &body.mfa_token)?;
    let code = input::token("code", &body.code)?;
    let ip = events::ip_subject(&req);
    rate_limit::check(&app, rate_limit::AUTH, &ip).await?;
    let table = &app.config.table;
    let key = challenge_key(token);
    let Some(record) = app.db.get(table, &key).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let attempts = record.get("attempts").and_then(Value::as_i64).unwrap_or(0);
    let user_id = record
        .get("user_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if attempts >= MAX_CHALLENGE_ATTEMPTS {
        app.db.delete(table, &key, None).await?;
        return Err(ApiError::InvalidCredentials);
    }
    let account = accounts::get(&app, &user_id)
        .await?
        .filter(|a| a.status == Status::Active && a.mfa_enabled)
        .ok_or(ApiError::InvalidCredentials)?;
    let now = app.clock.now().timestamp();

    let mut accepted = totp_code(&app, &account, code, now).await?;
    if !accepted {
        accepted = record
            .get("otp_hash")
            .and_then(Value::as_str)
            // Comparing digests, not codes: timing reveals nothing about the code.
            .is_some_and(|hash| hash == secrets::hash(code))
            && record
                .get("otp_expires")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > now;
    }
    if !accepted {
        accepted = recovery_code(&app, &account, code).await?;
    }
    if !accepted {
        app.db
            .update(
                table,
                &key,
                Update::new().add("attempts", 1),
                Some(Condition::Exists),
            )
            .await
            .ok();
        rate_limit::hit(&app, rate_limit::AUTH, &ip).await.ok();
        events::record(
            &app,
            &req,
            Action::MfaFailed,
            Some(&account.id),
            Some(account.role),
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::InvalidCredentials);
    }
    // Single use: only the request that deletes the challenge gets a session.
    match app.db.delete(table, &key, Some(Condition::Exists)).await {
        Ok(_) => {}
        Err(err) if err.is_condition_failed() => return Err(ApiError::InvalidCredentials),
        Err(err) => return Err(err.into()),
    }
    let pair = open_session(&app, &account, &["pwd", "mfa", "otp"]).await?;
    events::record(
        &app,
        &req,
        Action::MfaChallenge,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
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

/// A TOTP code for a later step than the last accepted one, claimed atomically.
async fn totp_code(
    app: &AppContext,
    account: &Account,
    code: &str,
    now: i64,
) -> Result<bool, ApiError> {
    let Some(secret) = account.open(app, "totp_secret").await? else {
        return Ok(false);
    };
    let secret = zeroize::Zeroizing::new(secret);
    let Some(secret_bytes) = decode_secret(&secret) else {
        return Ok(false);
    };
    let Some(step) = totp::accepted_step(&secret_bytes, code, now, account.totp_last_step) else {
        return Ok(false);
    };
    accounts::claim_totp_step(app, &account.id, step).await
}

/// Recovery codes of the current set are deleted on use (single use, atomic).
async fn recovery_code(app: &AppContext, account: &Account, code: &str) -> Result<bool, ApiError> {
    if secrets::normalize_recovery_code(code).len() != 16 {
        return Ok(false);
    }
    let Some(set) = account.item.get("recovery_set").and_then(Value::as_str) else {
        return Ok(false);
    };
    let used = app
        .db
        .delete(
            &app.config.table,
            &recovery_key(&account.id, code),
            Some(Condition::Equals("set_id".into(), Value::S(set.into()))),
        )
        .await;
    match used {
        Ok(_) => Ok(true),
        Err(err) if err.is_condition_failed() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The TOTP secret is sealed as its base32 text.
fn decode_secret(base32: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    totp::decode_base32(base32).map(zeroize::Zeroizing::new)
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum CodeChannel {
    #[default]
    Email,
    Sms,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendCodeBody {
    mfa_token: String,
    #[serde(default)]
    channel: CodeChannel,
}

/// `POST mfa/send-code`: sends a 6-digit code, usable once in the pending challenge, by
/// e-mail or by SMS to the phone of the profile (the second method for users without
/// their authenticator).
pub async fn send_code(app: App, req: ApiRequest) -> HandlerResult {
    let body: SendCodeBody = req.json()?;
    let token = input::token("mfa_token", &body.mfa_token)?;
    let table = &app.config.table;
    let key = challenge_key(token);
    let Some(record) = app.db.get(table, &key).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let user_id = record
        .get("user_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    rate_limit::hit(&app, rate_limit::SENSITIVE, &format!("user:{user_id}")).await?;
    let account = accounts::get(&app, &user_id)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let phone = match body.channel {
        CodeChannel::Email => None,
        CodeChannel::Sms => {
            let phone = shared::store::profiles::phone(&app, &user_id).await?;
            Some(phone.ok_or_else(|| {
                ApiError::unprocessable("no phone number in the profile; use the e-mail channel")
            })?)
        }
    };
    let code = secrets::numeric_code(CODE_DIGITS);
    let now = app.clock.now().timestamp();
    app.db
        .update(
            table,
            &key,
            Update::new()
                .set("otp_hash", secrets::hash(&code))
                .set("otp_expires", now + CHALLENGE_TTL_SECS),
            Some(Condition::Exists),
        )
        .await?;
    match phone {
        Some(phone) => mail::login_code_sms(&app, &phone, &code).await?,
        None => mail::login_code(&app, &account.email(&app).await?, &code).await?,
    }
    events::record(
        &app,
        &req,
        Action::MfaCodeSent,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    ApiResponse::accepted(&CodeSent { status: "sent" })
}

/// `POST mfa/totp/enroll`: a new secret, pending until confirmed with a code.
pub async fn enroll(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if account.mfa_enabled {
        return Err(ApiError::conflict(
            "TOTP is already enabled; disable it first",
        ));
    }
    let secret = totp::new_secret();
    let encoded = zeroize::Zeroizing::new(totp::base32(&secret));
    let uri = totp::otpauth_uri(&secret, &account.email(&app).await?)
        .ok_or_else(|| ApiError::internal("cannot build the otpauth URI"))?;
    let pending = seal(&app, &account.id, "totp_pending", &encoded).await?;
    accounts::change(
        &app,
        &account.id,
        accounts::AccountChange::new().sealed("totp_pending", pending),
    )
    .await?;
    events::record(
        &app,
        &req,
        Action::MfaEnroll,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&TotpEnrollment {
        secret: encoded.as_str(),
        otpauth_uri: uri,
    })
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

/// `POST mfa/totp/confirm`: turns MFA on and returns ten recovery codes (shown once).
pub async fn confirm(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: CodeBody = req.json()?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let pending = account
        .open(&app, "totp_pending")
        .await?
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| ApiError::conflict("start with mfa/totp/enroll"))?;
    let secret = decode_secret(&pending).ok_or_else(|| ApiError::internal("bad pending secret"))?;
    let now = app.clock.now().timestamp();
    let step = totp::accepted_step(&secret, &body.code, now, None)
        .ok_or_else(|| ApiError::validation("code: does not match the authenticator"))?;
    let set_id = app.new_id();
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| secrets::recovery_code())
        .collect();
    let table = app.config.table.clone();
    let mut ops = vec![WriteOp::Update {
        table: table.clone(),
        key: accounts::key(&account.id),
        update: Update::new()
            .set(
                "totp_secret",
                seal(&app, &account.id, "totp_secret", &pending).await?,
            )
            .remove("totp_pending")
            .set("mfa_enabled", true)
            .set("totp_last_step", step)
            .set("recovery_set", set_id.clone()),
        condition: Some(Condition::AttributeExists("totp_pending".into())),
    }];
    for code in &codes {
        let key = recovery_key(&account.id, code);
        ops.push(WriteOp::Put {
            table: table.clone(),
            item: item([
                ("pk", Value::S(key.pk)),
                ("sk", Value::S(key.sk)),
                ("set_id", Value::S(set_id.clone())),
            ]),
            condition: None,
        });
    }
    app.db.transact_write(ops).await?;
    events::record(
        &app,
        &req,
        Action::MfaConfirm,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&RecoveryCodes {
        recovery_codes: codes,
    })
}

/// `POST mfa/totp/disable`: needs a fresh TOTP code; old recovery codes die with it.
pub async fn disable(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    rate_limit::hit(
        &app,
        rate_limit::SENSITIVE,
        &format!("user:{}", principal.user_id),
    )
    .await?;
    let body: CodeBody = req.json()?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if !account.mfa_enabled {
        return Err(ApiError::conflict("TOTP is not enabled"));
    }
    let now = app.clock.now().timestamp();
    if !totp_code(&app, &account, &body.code, now).await? {
        events::record(
            &app,
            &req,
            Action::MfaFailed,
            Some(&account.id),
            Some(account.role),
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::validation(
            "code: does not match the authenticator",
        ));
    }
    accounts::change(
        &app,
        &account.id,
        accounts::AccountChange::new().disable_totp(),
    )
    .await?;
    events::record(
        &app,
        &req,
        Action::MfaDisable,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    Ok(ApiResponse::no_content())
}

/// `mfa/send-code` answers.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CodeSent {
    /// Always `sent`.
    status: &'static str,
}

/// A pending TOTP secret, to add to an authenticator app.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TotpEnrollment<'a> {
    otpauth_uri: String,
    /// Base32.
    secret: &'a str,
}

/// Ten single-use recovery codes, shown once.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct RecoveryCodes {
    recovery_codes: Vec<String>,
}
