//! Administrators' account management. Every route needs the admin role and a session
//! opened with MFA; every action is audited. Created accounts have no password: a
//! single-use token to set one is mailed to the address (which also proves it).

use crate::audit;
use serde::Deserialize;
use shared::audit::{Action, Outcome};
use shared::auth::accounts::{self, CreateError, NewAccount, Status};
use shared::auth::one_time::{self, Purpose};
use shared::auth::{audit_event, input, Principal, Role};
use shared::http::pagination::{Page, PageRequest};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::notifications::{enqueue, Notification};
use shared::{guard, ApiError, App, AppContext};

/// How long the set-password token of a new account is valid.
pub const INVITE_TTL_SECS: i64 = 72 * 60 * 60;
/// Stored in place of a password hash until the owner sets one: verifies nothing.
const NO_PASSWORD: &str = "!unset";

/// The admin guard of these routes (`shared::guard`): a malformed `{id}` is a 404, and
/// a refusal is recorded on the target account, or on the account list.
async fn admin(app: &AppContext, req: &ApiRequest) -> Result<Principal, ApiError> {
    let principal = guard::signed_in(app, req).await?;
    let target = if req.params.contains_key("id") {
        (
            "account",
            guard::path_id(app, req, &principal, "id", "account").await?,
        )
    } else {
        ("account_list", "all")
    };
    guard::require_admin(app, req, &principal, target).await?;
    Ok(principal)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewStaffAccount")]
pub(crate) struct CreateBody {
    #[schemars(email, length(max = 254))]
    email: String,
    #[schemars(length(min = 1, max = 200))]
    full_name: String,
    role: Role,
}

/// `POST /api/v1/users`: an admin creates a provider or admin (or patient) account.
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = admin(&app, &req).await?;
    let body: CreateBody = req.json()?;
    let email = input::email(&body.email)?;
    let full_name = input::full_name(&body.full_name)?;
    let account = match accounts::create(
        &app,
        NewAccount {
            email,
            full_name,
            password_hash: NO_PASSWORD.into(),
            role: body.role,
            status: Status::Active,
        },
    )
    .await
    {
        Ok(account) => account,
        Err(CreateError::EmailTaken) => {
            return Err(ApiError::conflict(
                "an account with this e-mail already exists",
            ))
        }
        Err(CreateError::Api(err)) => return Err(err),
    };
    let token = one_time::issue(&app, Purpose::PasswordReset, &account.id, INVITE_TTL_SECS).await?;
    let body = format!(
        "An administrator created a DoCare account for you.\n\nSet your password with this token \
         (POST /api/v1/auth/password/reset): {token}\n\nIt expires in 72 hours."
    );
    enqueue(
        &app,
        Notification::email(
            format!("invite:{}", account.id),
            email,
            "Your DoCare account",
            body,
        ),
    )
    .await?;
    audit(
        &app,
        &req,
        &principal,
        Action::Create,
        ("account", &account.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::created(&account.view(&app).await?)
}

/// `GET /api/v1/users`: every account, oldest first, paginated.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = admin(&app, &req).await?;
    let page = PageRequest::from_request(&req)?;
    let (found, next) = accounts::list(&app, &page).await?;
    let mut items = Vec::with_capacity(found.len());
    for account in found {
        items.push(account.view(&app).await?);
    }
    audit(
        &app,
        &req,
        &principal,
        Action::View,
        ("account_list", "all"),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&Page::new(items, next))
}

async fn target(app: &AppContext, req: &ApiRequest) -> Result<accounts::Account, ApiError> {
    let id = req.param("id")?;
    accounts::get(app, id).await?.ok_or(ApiError::NotFound)
}

/// `GET /api/v1/users/{id}`.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = admin(&app, &req).await?;
    let account = target(&app, &req).await?;
    let view = account.view(&app).await?;
    audit(
        &app,
        &req,
        &principal,
        Action::View,
        ("account", &account.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&view)
}

async fn set_status(app: App, req: ApiRequest, status: Status) -> HandlerResult {
    let principal = admin(&app, &req).await?;
    let account = target(&app, &req).await?;
    if account.id == principal.user_id {
        return Err(ApiError::unprocessable(
            "administrators cannot change their own status",
        ));
    }
    let mut change = accounts::AccountChange::new().status(status);
    if status == Status::Disabled {
        // A disabled account's refresh tokens die with it.
        change = change.end_sessions(app.clock.now().timestamp_millis());
    }
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource("account", &account.id);
    let account = accounts::change_audited(&app, &account, change, event).await?;
    ApiResponse::ok(&account.view(&app).await?)
}

/// `POST /api/v1/users/{id}/disable`.
pub async fn disable(app: App, req: ApiRequest) -> HandlerResult {
    set_status(app, req, Status::Disabled).await
}

/// `POST /api/v1/users/{id}/enable`.
pub async fn enable(app: App, req: ApiRequest) -> HandlerResult {
    set_status(app, req, Status::Active).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    role: Role,
}

/// `PUT /api/v1/users/{id}/role`: takes effect at the next token refresh at the latest
/// (sessions are ended so it takes effect at once for refresh tokens).
pub async fn set_role(app: App, req: ApiRequest) -> HandlerResult {
    let principal = admin(&app, &req).await?;
    let body: RoleBody = req.json()?;
    let account = target(&app, &req).await?;
    if account.id == principal.user_id {
        return Err(ApiError::unprocessable(
            "administrators cannot change their own role",
        ));
    }
    let change = accounts::AccountChange::new()
        .role(body.role)
        .end_sessions(app.clock.now().timestamp_millis());
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource("account", &account.id);
    let account = accounts::change_audited(&app, &account, change, event).await?;
    ApiResponse::ok(&account.view(&app).await?)
}
