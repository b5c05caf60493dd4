//! `POST signup` and `POST verify-email`.

use crate::mail;
use serde::{Deserialize, Serialize};
use shared::audit::{Action, AuditEvent, CommitError, Outcome};
use shared::auth::accounts::{self, NewAccount, Status};
use shared::auth::input;
use shared::auth::one_time::{self, Purpose};
use shared::auth::{account_event, passwords, rate_limit, Role};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::{ApiError, App};
use zeroize::Zeroizing;

/// How long an e-mail verification token is valid.
pub const VERIFY_TTL_SECS: i64 = 24 * 60 * 60;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignupBody {
    #[schemars(email, length(max = 254))]
    email: String,
    #[schemars(with = "String", length(min = 8, max = 128))]
    password: Zeroizing<String>,
    #[schemars(length(min = 1, max = 200))]
    full_name: String,
}

/// Patients sign themselves up. The answer is the same whether or not the address
/// already has an account; the owner of the address learns which by mail.
///
/// The password (and name) are bound to the verification token: verifying activates
/// the account with the credentials of the sign-up whose token was used, and a repeat
/// sign-up of an unverified address makes every earlier token useless. Someone who
/// signs up first with another person's address gains nothing.
pub async fn signup(app: App, req: ApiRequest) -> HandlerResult {
    let body: SignupBody = req.json()?;
    let email = input::email(&body.email)?;
    let full_name = input::full_name(&body.full_name)?;
    passwords::validate_new(&body.password, Role::Patient, &[email, full_name])?;
    rate_limit::hit(&app, rate_limit::SENSITIVE, &rate_limit::ip_subject(&req)).await?;
    let password_hash = passwords::hash_blocking(body.password.to_string()).await?;
    let existing = accounts::find_by_email(&app, email).await?;
    match existing {
        None => {
            let new = NewAccount {
                email,
                full_name,
                password_hash,
                role: Role::Patient,
                status: Status::Unverified,
            };
            let (account, issued, ops) = accounts::new_signup(&app, new, VERIFY_TTL_SECS).await?;
            let event = audit_account(&req, &account.id, account.role, Action::Signup);
            match app.audit.commit(event, ops).await {
                Ok(()) => mail::verification(&app, email, &issued.token).await?,
                // Taken meanwhile by a racing sign-up: answered alike, told by mail.
                Err(CommitError::Change { .. }) => mail::already_registered(&app, email).await?,
                Err(err) => return Err(err.into()),
            }
        }
        // A repeat sign-up of an unverified address: a fresh token with THIS sign-up's
        // credentials, and the earlier tokens stop working, committed with its event.
        Some(existing) if existing.status == Status::Unverified => {
            let (issued, ops) = accounts::repeat_signup(
                &app,
                &existing.id,
                &password_hash,
                full_name,
                VERIFY_TTL_SECS,
            )
            .await?;
            let event = audit_account(&req, &existing.id, existing.role, Action::Signup);
            match app.audit.commit(event, ops).await {
                Ok(()) => mail::verification(&app, email, &issued.token).await?,
                // Verified meanwhile: answered alike, told by mail.
                Err(CommitError::Change { .. }) => mail::already_registered(&app, email).await?,
                Err(err) => return Err(err.into()),
            }
        }
        Some(_) => mail::already_registered(&app, email).await?,
    }
    ApiResponse::created(&SignupAccepted {
        status: "verification_sent",
        message: "check your e-mail for a verification token",
    })
}

fn audit_account(req: &ApiRequest, id: &str, role: Role, action: Action) -> AuditEvent {
    account_event(req, action, Some(id), Some(role), Outcome::Success)
}

/// The answer to every sign-up, whether or not the e-mail had an account.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct SignupAccepted {
    message: &'static str,
    /// Always `verification_sent`.
    status: &'static str,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    token: String,
}

/// Confirms the address with the mailed token (single use); activates the account with
/// the credentials bound to that token, committed with its event.
pub async fn verify_email(app: App, req: ApiRequest) -> HandlerResult {
    let body: TokenBody = req.json()?;
    let token = input::token("token", &body.token)?;
    let invalid = || ApiError::validation("token: is invalid, expired or already used");
    let Some(pending) = one_time::pending(&app, Purpose::VerifyEmail, token).await? else {
        return Err(invalid());
    };
    let Some(password_hash) = pending.text("password_hash").map(str::to_string) else {
        return Err(invalid());
    };
    let Some(account) = accounts::get(&app, &pending.user_id).await? else {
        return Err(invalid());
    };
    let ops = vec![
        pending.spend(&app, Purpose::VerifyEmail),
        accounts::activate_signup(
            &app,
            &account.id,
            &pending.hash,
            &password_hash,
            pending.item.get("full_name").cloned(),
        ),
    ];
    let event = audit_account(&req, &account.id, account.role, Action::EmailVerify);
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(ApiResponse::no_content()),
        // Spent meanwhile, superseded by a later sign-up, or already verified.
        Err(CommitError::Change { .. }) => Err(invalid()),
        Err(err) => Err(err.into()),
    }
}
