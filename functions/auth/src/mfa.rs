//! The second factor: TOTP enrolment (secret sealed in the account, ten single-use
//! recovery codes stored hashed), and the login challenge that accepts a TOTP code, a
//! recovery code or a code sent by e-mail.
//!
//! The challenge (`MFA#<hash>`) is what a password login hands out when MFA is on: it is
//! single-use, lives five minutes and allows [`MAX_CHALLENGE_ATTEMPTS`] wrong codes.

use crate::mail;
use crate::sessions::open_session;
use serde::Deserialize;
use shared::audit::Action;
use shared::audit::Outcome;
use shared::auth::accounts::{self, seal, Account, Status};
use shared::auth::input;
use shared::auth::{audit_event, authenticate, rate_limit, record, record_account, secrets, totp};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::store::mfa;
use shared::{ApiError, App, AppContext};

pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
pub const MAX_CHALLENGE_ATTEMPTS: i64 = 5;
pub const RECOVERY_CODES: usize = 10;
const CODE_DIGITS: u32 = 6;

/// Starts a login challenge for an account whose password was right.
pub async fn start_challenge(app: &AppContext, account: &Account) -> Result<String, ApiError> {
    mfa::start(app, &account.id, CHALLENGE_TTL_SECS).await
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
    let ip = rate_limit::ip_subject(&req);
    rate_limit::check(&app, rate_limit::AUTH, &ip).await?;
    let Some(pending) = mfa::challenge(&app, token).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let user_id = pending.user_id.clone();
    if pending.attempts >= MAX_CHALLENGE_ATTEMPTS {
        mfa::spend(&app, token).await?;
        return Err(ApiError::InvalidCredentials);
    }
    let account = accounts::get(&app, &user_id)
        .await?
        .filter(|a| a.status == Status::Active && a.mfa_enabled)
        .ok_or(ApiError::InvalidCredentials)?;
    let now = app.clock.now().timestamp();

    let mut accepted = totp_code(&app, &account, code, now).await?;
    if !accepted {
        accepted = pending.sent_code_matches(code, now);
    }
    if !accepted {
        accepted = recovery_code(&app, &account, code).await?;
    }
    if !accepted {
        mfa::count_failure(&app, token).await.ok();
        rate_limit::hit(&app, rate_limit::AUTH, &ip).await.ok();
        record_account(
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
    if !mfa::spend(&app, token).await? {
        return Err(ApiError::InvalidCredentials);
    }
    let pair = open_session(&app, &account, &["pwd", "mfa", "otp"]).await?;
    record_account(
        &app,
        &req,
        Action::MfaChallenge,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    record_account(
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
    mfa::use_recovery_code(app, account, code).await
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
    let Some(pending) = mfa::challenge(&app, token).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let user_id = pending.user_id;
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
    mfa::set_sent_code(&app, token, &code, now + CHALLENGE_TTL_SECS).await?;
    match phone {
        Some(phone) => mail::login_code_sms(&app, &phone, &code).await?,
        None => mail::login_code(&app, &account.email(&app).await?, &code).await?,
    }
    record_account(
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
    record(
        &app,
        &req,
        &principal,
        Action::MfaEnroll,
        ("account", &principal.user_id),
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
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| secrets::recovery_code())
        .collect();
    mfa::confirm_totp(&app, &account.id, &pending, step, &codes).await?;
    record(
        &app,
        &req,
        &principal,
        Action::MfaConfirm,
        ("account", &principal.user_id),
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
        record(
            &app,
            &req,
            &principal,
            Action::MfaFailed,
            ("account", &principal.user_id),
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::validation(
            "code: does not match the authenticator",
        ));
    }
    let event = audit_event(&req, &principal, Action::MfaDisable, Outcome::Success)
        .resource("account", &principal.user_id);
    accounts::change_audited(
        &app,
        &account,
        accounts::AccountChange::new().disable_totp(),
        event,
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
