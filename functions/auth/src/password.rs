//! Password change (signed in) and reset (by a mailed single-use token). Both end every
//! session of the account.

use crate::mail;
use crate::sessions::revoke_all;
use serde::Deserialize;
use shared::audit::Action;
use shared::audit::Outcome;
use shared::auth::accounts::{self, Status};
use shared::auth::input;
use shared::auth::one_time::{self, Purpose};
use shared::auth::passwords::{self, Verified};
use shared::auth::{audit_event, authenticate, rate_limit, record, record_account};
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
    let verified = passwords::verify_blocking(
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
        .end_sessions(app.clock.now().timestamp_millis());
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
            let token =
                one_time::issue(&app, Purpose::PasswordReset, &account.id, RESET_TTL_SECS).await?;
            mail::password_reset(&app, email, &token).await?;
            record_account(
                &app,
                &req,
                Action::PasswordResetRequest,
                Some(&account.id),
                Some(account.role),
                Outcome::Success,
            )
            .await?;
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

/// `POST password/reset`: single-use token; sets the password, ends every session and
/// clears a lockout.
pub async fn reset(app: App, req: ApiRequest) -> HandlerResult {
    let body: ResetBody = req.json()?;
    let token = input::token("token", &body.token)?;
    passwords::validate(&body.new_password)?;
    let ip = rate_limit::ip_subject(&req);
    rate_limit::check(&app, rate_limit::AUTH, &ip).await?;
    let Some(user_id) = one_time::redeem(&app, Purpose::PasswordReset, token).await? else {
        rate_limit::hit(&app, rate_limit::AUTH, &ip).await.ok();
        return Err(ApiError::validation(
            "token: is invalid, expired or already used",
        ));
    };
    let hash = passwords::hash_blocking(body.new_password.to_string()).await?;
    let account = accounts::change(
        &app,
        &user_id,
        accounts::AccountChange::new()
            .password_hash(hash)
            .clear_lockout(),
    )
    .await?;
    revoke_all(&app, &user_id).await?;
    record_account(
        &app,
        &req,
        Action::PasswordReset,
        Some(&account.id),
        Some(account.role),
        Outcome::Success,
    )
    .await?;
    Ok(ApiResponse::no_content())
}
