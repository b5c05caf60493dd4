//! The second factor: TOTP enrolment (secret sealed in the account, ten single-use
//! recovery codes stored hashed), and the login challenge that accepts a TOTP code, a
//! recovery code or a code sent by e-mail.
//!
//! The challenge (`MFA#<hash>`) is what a password login hands out when MFA is on: it is
//! single-use, lives five minutes and allows [`MAX_CHALLENGE_ATTEMPTS`] wrong codes.

use crate::sessions::open_session_audited;
use crate::{integrity, mail};
use serde::Deserialize;
use shared::audit::{Action, CommitError, Outcome, WriteOp};
use shared::auth::accounts::{self, seal, Account, Status};
use shared::auth::checks::{self, Check};
use shared::auth::input;
use shared::auth::passwords::{self, Verified};
use shared::auth::{
    account_event, amr, audit_event, authenticate, rate_limit, record, record_account, secrets,
    totp,
};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::store::mfa;
use shared::{ApiError, App, AppContext};
use zeroize::Zeroizing;

pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
pub const MAX_CHALLENGE_ATTEMPTS: i64 = 5;
pub const RECOVERY_CODES: usize = 10;
const CODE_DIGITS: u32 = 6;

/// Starts a login challenge for an account whose password was right: the write, for
/// the login's unit of work with its `MFA_REQUIRED` event, and the token.
pub fn start_challenge(app: &AppContext, account: &Account) -> (String, WriteOp) {
    mfa::start_op(app, &account.id, account.pending_epoch, CHALLENGE_TTL_SECS)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeBody {
    mfa_token: String,
    code: String,
}

/// Which code finished a challenge, and so what the session's `amr` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    /// TOTP or a recovery code: an MFA session.
    Strong,
    /// A code sent by e-mail: not MFA.
    Mailed,
    /// A code sent by SMS: not MFA.
    Texted,
}

impl Factor {
    fn amr(self) -> &'static [&'static str] {
        match self {
            Factor::Strong => amr::STRONG,
            Factor::Mailed => amr::MAILED,
            Factor::Texted => amr::TEXTED,
        }
    }
}

/// `POST mfa/challenge`: a TOTP or recovery code completes the login as an MFA session
/// (`amr` `pwd otp mfa`); a code sent by e-mail or SMS completes it as a weaker one
/// (`pwd mca`, `pwd mca sms`) that no MFA check accepts.
///
/// Every attempt is reserved before any code is checked: per source IP, per account
/// (across its challenges) and on the challenge ([`MAX_CHALLENGE_ATTEMPTS`]); failures
/// keep their reservations. A counter that cannot be written refuses the attempt.
pub async fn challenge(app: App, req: ApiRequest) -> HandlerResult {
    let body: ChallengeBody = req.json()?;
    let token = input::token("mfa_token", &body.mfa_token)?;
    let code = input::token("code", &body.code)?;
    let by_ip = rate_limit::reserve(&app, rate_limit::AUTH, &rate_limit::ip_subject(&req)).await?;
    let Some(pending) = mfa::challenge(&app, token).await? else {
        return Err(ApiError::InvalidCredentials);
    };
    let user_id = pending.user_id.clone();
    let by_account =
        rate_limit::reserve(&app, rate_limit::AUTH, &account_subject(&user_id)).await?;
    let account = accounts::get(&app, &user_id)
        .await?
        .filter(|a| a.status == Status::Active && a.mfa_enabled);
    // Ended by a password reset or change since it started, or over its attempts.
    let live = account
        .as_ref()
        .is_some_and(|a| a.pending_epoch == pending.epoch);
    if !live || !mfa::reserve_attempt(&app, token, MAX_CHALLENGE_ATTEMPTS).await? {
        mfa::spend(&app, token).await?;
        return Err(ApiError::InvalidCredentials);
    }
    let Some(account) = account else {
        return Err(ApiError::InvalidCredentials);
    };
    let now = app.clock.now().timestamp();

    checks::note(Check::Code, &account.id);
    let mut factor = None;
    if totp_code(&app, &req, &account, code, now).await? {
        factor = Some(Factor::Strong);
    }
    if factor.is_none() && pending.sent_code_matches(code, now) {
        factor = Some(match pending.sent_channel.as_deref() {
            Some("sms") => Factor::Texted,
            _ => Factor::Mailed,
        });
    }
    if factor.is_none() && recovery_code(&app, &account, code).await? {
        factor = Some(Factor::Strong);
    }
    let Some(factor) = factor else {
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
    };
    record_account(
        &app,
        &req,
        Action::MfaChallenge,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    // Single use and still live: the session commits with the challenge's end, a
    // check that the account is active with no reset since it was read, and the
    // event. Only the request whose delete succeeds gets a session.
    let event = account_event(
        &req,
        Action::Login,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    );
    let more = vec![mfa::spend_op(&app, token), account.still_active(&app)];
    let pair = open_session_audited(&app, &account, factor.amr(), event, more).await?;
    rate_limit::release(&app, by_ip).await;
    rate_limit::release(&app, by_account).await;
    ApiResponse::ok(&pair)
}

/// The per-account subject of failed password and code checks of signed-in or
/// half-signed-in callers (MFA challenges, TOTP changes).
pub(crate) fn account_subject(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// Opens a sealed secret of the account; a value that fails its integrity check is
/// recorded (`INTEGRITY_FAILURE` on the account) and fails the request.
async fn open_secret(
    app: &AppContext,
    req: &ApiRequest,
    account: &Account,
    attribute: &'static str,
) -> Result<Option<Zeroizing<String>>, ApiError> {
    Ok(integrity::open(app, req, account, attribute)
        .await?
        .map(Zeroizing::new))
}

/// A TOTP code for a later step than the last accepted one, claimed atomically.
async fn totp_code(
    app: &AppContext,
    req: &ApiRequest,
    account: &Account,
    code: &str,
    now: i64,
) -> Result<bool, ApiError> {
    let Some(secret) = open_secret(app, req, account, "totp_secret").await? else {
        return Ok(false);
    };
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
            let phone = shared::store::profiles::phone(&app, &user_id).await;
            let phone = integrity::checked(&app, &req, &account, "phone", phone).await?;
            Some(phone.ok_or_else(|| {
                ApiError::unprocessable("no phone number in the profile; use the e-mail channel")
            })?)
        }
    };
    let code = secrets::numeric_code(CODE_DIGITS);
    let now = app.clock.now().timestamp();
    let channel = match phone {
        Some(_) => "sms",
        None => "email",
    };
    mfa::set_sent_code(&app, token, &code, channel, now + CHALLENGE_TTL_SECS).await?;
    match phone {
        Some(phone) => mail::login_code_sms(&app, &phone, &code).await?,
        None => {
            mail::login_code(&app, &integrity::email(&app, &req, &account).await?, &code).await?
        }
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollBody {
    /// The account's current password: a stolen access token alone cannot enrol an
    /// authenticator.
    #[schemars(with = "String")]
    password: Zeroizing<String>,
}

/// `POST mfa/totp/enroll`: a new secret, pending until confirmed with a code; needs
/// the current password (reserved against the per-account failure budget first).
pub async fn enroll(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: EnrollBody = req.json()?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if account.mfa_enabled {
        return Err(ApiError::conflict(
            "TOTP is already enabled; disable it first",
        ));
    }
    let reserved =
        rate_limit::reserve(&app, rate_limit::AUTH, &account_subject(&account.id)).await?;
    let verified = passwords::verify_account(
        &account.id,
        body.password.to_string(),
        account.password_hash.clone(),
    )
    .await;
    if verified == Verified::No {
        record(
            &app,
            &req,
            &principal,
            Action::MfaEnroll,
            ("account", &principal.user_id),
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::InvalidCredentials);
    }
    rate_limit::release(&app, reserved).await;
    let secret = totp::new_secret();
    let encoded = Zeroizing::new(totp::base32(&secret));
    let uri = totp::otpauth_uri(&secret, &integrity::email(&app, &req, &account).await?)
        .ok_or_else(|| ApiError::internal("cannot build the otpauth URI"))?;
    let pending = seal(&app, &account.id, "totp_pending", &encoded).await?;
    let event = audit_event(&req, &principal, Action::MfaEnroll, Outcome::Success)
        .resource("account", &principal.user_id);
    accounts::change_audited(
        &app,
        &account,
        accounts::AccountChange::new().sealed("totp_pending", pending),
        event,
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

/// `POST mfa/totp/confirm`: turns MFA on and returns ten recovery codes (shown once);
/// the change commits with its event and the owner is told by mail.
pub async fn confirm(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: CodeBody = req.json()?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let pending = open_secret(&app, &req, &account, "totp_pending")
        .await?
        .ok_or_else(|| ApiError::conflict("start with mfa/totp/enroll"))?;
    let secret = decode_secret(&pending).ok_or_else(|| ApiError::internal("bad pending secret"))?;
    let now = app.clock.now().timestamp();
    let reserved =
        rate_limit::reserve(&app, rate_limit::AUTH, &account_subject(&account.id)).await?;
    checks::note(Check::Code, &account.id);
    let step = totp::accepted_step(&secret, &body.code, now, None)
        .ok_or_else(|| ApiError::validation("code: does not match the authenticator"))?;
    rate_limit::release(&app, reserved).await;
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| secrets::recovery_code())
        .collect();
    let ops = mfa::confirm_totp_ops(&app, &account.id, &pending, step, &codes).await?;
    let event = audit_event(&req, &principal, Action::MfaConfirm, Outcome::Success)
        .resource("account", &principal.user_id);
    match app.audit.commit(event, ops).await {
        Ok(()) => {}
        Err(CommitError::Change { .. }) => {
            return Err(ApiError::conflict("start with mfa/totp/enroll"))
        }
        Err(err) => return Err(err.into()),
    }
    mail::security_change(
        &app,
        &integrity::email(&app, &req, &account).await?,
        "An authenticator app was added to your DoCare account (TOTP is on).",
    )
    .await?;
    ApiResponse::ok(&RecoveryCodes {
        recovery_codes: codes,
    })
}

/// `POST mfa/totp/disable`: needs a fresh TOTP code (reserved against the per-account
/// failure budget first); old recovery codes die with it; the owner is told by mail.
pub async fn disable(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: CodeBody = req.json()?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if !account.mfa_enabled {
        return Err(ApiError::conflict("TOTP is not enabled"));
    }
    let reserved =
        rate_limit::reserve(&app, rate_limit::AUTH, &account_subject(&account.id)).await?;
    let now = app.clock.now().timestamp();
    checks::note(Check::Code, &account.id);
    if !totp_code(&app, &req, &account, &body.code, now).await? {
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
    rate_limit::release(&app, reserved).await;
    let event = audit_event(&req, &principal, Action::MfaDisable, Outcome::Success)
        .resource("account", &principal.user_id);
    accounts::change_audited(
        &app,
        &account,
        accounts::AccountChange::new().disable_totp(),
        event,
    )
    .await?;
    mail::security_change(
        &app,
        &integrity::email(&app, &req, &account).await?,
        "TOTP was turned off for your DoCare account: sign-ins need only your password now.",
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
