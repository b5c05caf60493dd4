//! Password change (signed in) and reset (by a mailed single-use token). Both end every
//! session of the account.

use crate::{integrity, mail};
use serde::Deserialize;
use shared::audit::{Action, CommitError, Outcome};
use shared::auth::accounts::{self, Status};
use shared::auth::input;
use shared::auth::one_time::{self, Purpose};
use shared::auth::passwords::{self, Verified};
use shared::auth::{account_event, audit_event, authenticate, rate_limit, record};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::{ApiError, App};
use zeroize::Zeroizing;

/// How long a reset token is valid.
pub const RESET_TTL_SECS: i64 = 30 * 60;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeBody {
    #[schemars(with = "String")]
    current_password: Zeroizing<String>,
    #[schemars(with = "String", length(min = 8, max = 128))]
    new_password: Zeroizing<String>,
}

/// `POST password/change`: needs the current password; every session ends (log in again).
pub async fn change(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: ChangeBody = req.json()?;
    passwords::validate(&body.new_password)?;
    rate_limit::hit(
        &app,
        rate_limit::SENSITIVE,
        &format!("user:{}", principal.user_id),
    )
    .await?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let email = integrity::email(&app, &req, &account).await?;
    let name = integrity::open(&app, &req, &account, "full_name")
        .await?
        .unwrap_or_default();
    passwords::validate_new(&body.new_password, account.role, &[&email, &name])?;
    let verified = passwords::verify_account(
        &account.id,
        body.current_password.to_string(),
        account.password_hash.clone(),
    )
    .await;
    if verified == Verified::No {
        record(
            &app,
            &req,
            &principal,
            Action::PasswordChange,
            ("account", &principal.user_id),
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::InvalidCredentials);
    }
    let hash = passwords::hash_blocking(body.new_password.to_string()).await?;
    // The new password and the end of every session commit with the event.
    let change = accounts::AccountChange::new()
        .password_hash(hash)
        .end_sessions(app.clock.now().timestamp_millis())
        .end_pending();
    let event = audit_event(&req, &principal, Action::PasswordChange, Outcome::Success)
        .resource("account", &principal.user_id);
    accounts::change_audited(&app, &account, change, event).await?;
    Ok(ApiResponse::no_content())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequestBody {
    #[schemars(email)]
    email: String,
}

/// `POST password/reset-request`: 202 whether or not the address has an account.
pub async fn reset_request(app: App, req: ApiRequest) -> HandlerResult {
    let body: ResetRequestBody = req.json()?;
    let email = input::email(&body.email)?;
    rate_limit::hit(&app, rate_limit::SENSITIVE, &rate_limit::ip_subject(&req)).await?;
    if let Some(account) = accounts::find_by_email(&app, email).await? {
        if account.status != Status::Disabled {
            // The token belongs to the account's pending epoch: the next reset or
            // password change ends it.
            let issued = accounts::reset_token(&app, &account, RESET_TTL_SECS);
            let event = account_event(
                &req,
                Action::PasswordResetRequest,
                Some(&account.id),
                Some(account.role),
                Outcome::Success,
            );
            app.audit.commit(event, vec![issued.write]).await?;
            mail::password_reset(&app, email, &issued.token).await?;
        }
    }
    ApiResponse::accepted(&ResetRequested {
        status: "accepted",
        message: "if the address has an account, a reset token was sent to it",
    })
}

/// The answer to every reset request, whether or not the e-mail had an account.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ResetRequested {
    message: &'static str,
    /// Always `accepted`.
    status: &'static str,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetBody {
    token: String,
    #[schemars(with = "String", length(min = 8, max = 128))]
    new_password: Zeroizing<String>,
}

/// `POST password/reset`: single-use token; sets the password, ends every session, every
/// other pending reset token and MFA challenge, and clears a lockout (so the owner of
/// an account locked by someone else's guesses gets in). One unit of work with its
/// event. Each attempt is reserved against the per-IP failure budget first.
pub async fn reset(app: App, req: ApiRequest) -> HandlerResult {
    let body: ResetBody = req.json()?;
    let token = input::token("token", &body.token)?;
    passwords::validate(&body.new_password)?;
    let by_ip = rate_limit::reserve(&app, rate_limit::AUTH, &rate_limit::ip_subject(&req)).await?;
    let invalid = || ApiError::validation("token: is invalid, expired or already used");
    let Some(pending) = one_time::pending(&app, Purpose::PasswordReset, token).await? else {
        return Err(invalid());
    };
    let Some(account) = accounts::get(&app, &pending.user_id)
        .await?
        .filter(|a| a.status != Status::Disabled)
    else {
        return Err(invalid());
    };
    // Issued before the last reset or password change: ended.
    if pending.number("epoch").unwrap_or(0) != account.pending_epoch {
        return Err(invalid());
    }
    let email = integrity::email(&app, &req, &account).await?;
    let name = integrity::open(&app, &req, &account, "full_name")
        .await?
        .unwrap_or_default();
    passwords::validate_new(&body.new_password, account.role, &[&email, &name])?;
    rate_limit::release(&app, by_ip).await;
    let hash = passwords::hash_blocking(body.new_password.to_string()).await?;
    let change = accounts::AccountChange::new()
        .password_hash(hash)
        .clear_lockout()
        .end_sessions(app.clock.now().timestamp_millis())
        .end_pending();
    let ended = change.ended();
    let write = accounts::reset_op(&app, &account, change)?;
    let event = account_event(
        &req,
        Action::PasswordReset,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    );
    match app
        .audit
        .commit(
            event,
            vec![pending.spend(&app, Purpose::PasswordReset), write],
        )
        .await
    {
        Ok(()) => {
            // This instance stops accepting the ended sessions at once (others within
            // the revocation cache's bound).
            shared::auth::revocation::ended(&app, &account.id, &ended).await;
            // Someone else's guesses spent the address's login budget (and locked the
            // account, cleared above): the owner logs in with the new password at once.
            // Best effort: the reset is kept either way.
            if let Ok(index) = accounts::email_index(&app, &email).await {
                rate_limit::forgive(&app, rate_limit::AUTH, &format!("email:{index}")).await;
            }
            let subject = crate::mfa::account_subject(&account.id);
            rate_limit::forgive(&app, rate_limit::AUTH, &subject).await;
            Ok(ApiResponse::no_content())
        }
        // Spent meanwhile, or another reset won the race.
        Err(CommitError::Change { .. }) => Err(invalid()),
        Err(err) => Err(err.into()),
    }
}
