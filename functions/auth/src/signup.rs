//! `POST signup` and `POST verify-email`.

use crate::mail;
use serde::{Deserialize, Serialize};
use shared::audit::Action;
use shared::audit::Outcome;
use shared::auth::accounts::{self, CreateError, NewAccount, Status};
use shared::auth::input;
use shared::auth::one_time::{self, Purpose};
use shared::auth::{passwords, rate_limit, record_account, Role};
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
pub async fn signup(app: App, req: ApiRequest) -> HandlerResult {
    let body: SignupBody = req.json()?;
    let email = input::email(&body.email)?;
    let full_name = input::full_name(&body.full_name)?;
    passwords::validate(&body.password)?;
    rate_limit::hit(&app, rate_limit::SENSITIVE, &rate_limit::ip_subject(&req)).await?;
    let password_hash = passwords::hash_blocking(body.password.to_string()).await?;
    let created = accounts::create(
        &app,
        NewAccount {
            email,
            full_name,
            password_hash,
            role: Role::Patient,
            status: Status::Unverified,
        },
    )
    .await;
    match created {
        Ok(account) => {
            let token =
                one_time::issue(&app, Purpose::VerifyEmail, &account.id, VERIFY_TTL_SECS).await?;
            mail::verification(&app, email, &token).await?;
            record_account(
                &app,
                &req,
                Action::Signup,
                Some(&account.id),
                Some(account.role),
                Outcome::Success,
            )
            .await?;
        }
        Err(CreateError::EmailTaken) => {
            // A retried sign-up whose mail was lost gets a fresh token; anyone else is
            // told by mail that the address is registered.
            match accounts::find_by_email(&app, email).await? {
                Some(existing) if existing.status == Status::Unverified => {
                    let token =
                        one_time::issue(&app, Purpose::VerifyEmail, &existing.id, VERIFY_TTL_SECS)
                            .await?;
                    mail::verification(&app, email, &token).await?;
                }
                _ => mail::already_registered(&app, email).await?,
            }
        }
        Err(CreateError::Api(err)) => return Err(err),
    }
    ApiResponse::created(&SignupAccepted {
        status: "verification_sent",
        message: "check your e-mail for a verification token",
    })
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

/// Confirms the address with the mailed token (single use); activates the account.
pub async fn verify_email(app: App, req: ApiRequest) -> HandlerResult {
    let body: TokenBody = req.json()?;
    let token = input::token("token", &body.token)?;
    let Some(user_id) = one_time::redeem(&app, Purpose::VerifyEmail, token).await? else {
        return Err(ApiError::validation(
            "token: is invalid, expired or already used",
        ));
    };
    // Already verified (or disabled meanwhile): the token is spent either way.
    if let Some(account) = accounts::activate(&app, &user_id).await? {
        record_account(
            &app,
            &req,
            Action::EmailVerify,
            Some(&account.id),
            Some(account.role),
            Outcome::Success,
        )
        .await?;
    }
    Ok(ApiResponse::no_content())
}
