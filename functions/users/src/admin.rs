//! Administrators' account management. Every route needs the admin role and a session
//! opened with MFA; every action is audited. Created accounts have no password: a
//! single-use token to set one is mailed to the address (which also proves it).
//!
//! A patient's e-mail and name are PHI: account lists and reads show them only when the
//! request states an `X-Access-Reason` (the break-glass header of the profile route,
//! checked by the same `policy::access_reason`: 10 to 500 characters, else a 400 recorded
//! as `ACCESS_DENIED`). Without one they are left out (`identity_withheld: true`); staff
//! accounts' are always shown. Each patient account shown with them is recorded as
//! `BREAK_GLASS` on `account/<id>` (reason sealed), so it appears in that patient's
//! access log, before the answer leaves. The answers of changes (disable, enable, role)
//! never show a patient's e-mail or name.

use crate::audit;
use serde::Deserialize;
use serde::Serialize;
use shared::audit::{Action, AuditEvent, Outcome, Reason};
use shared::auth::accounts::{self, Account, CreateError, NewAccount, Status};
use shared::auth::one_time::{self, Purpose};
use shared::auth::{audit_event, input, policy, Principal, Role};
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

/// The most accounts a page shows with patients' e-mail and name: each one shown is an
/// audit event, and a page's events and the list's are one transaction (at most 26
/// events and the chain head: within DynamoDB's 100 items per transaction).
pub const PHI_PAGE_LIMIT: u32 = 25;

/// The administrator's stated reason, when the request gives one: `None` without the
/// header; a header outside 10..=500 characters is a 400 recorded as `ACCESS_DENIED` on
/// `target` (as on the break-glass profile route).
async fn access_reason(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    target: (&str, &str),
) -> Result<Option<String>, ApiError> {
    if req.header(policy::ACCESS_REASON_HEADER).is_none() {
        return Ok(None);
    }
    match policy::access_reason(req) {
        Ok(reason) => Ok(Some(reason)),
        Err(refusal) => Err(guard::refuse(app, req, principal, target, refusal).await),
    }
}

/// An account as administrators see it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "AdminAccount")]
pub(crate) struct AdminView {
    id: String,
    /// Staff accounts' always; a patient's only with an `X-Access-Reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// Staff accounts' always; a patient's only with an `X-Access-Reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    full_name: Option<String>,
    role: Role,
    status: Status,
    mfa_enabled: bool,
    created_at: String,
    /// True when a patient's e-mail and name were left out (no access reason given).
    identity_withheld: bool,
}

/// The admin view of `account`; a patient's e-mail and name only with `reason`, and then
/// recorded (`BREAK_GLASS` on `account/<id>`, the reason sealed) before it is returned.
/// Opening is integrity-checked and audited ([`Account::identity`]).
/// The account as an administrator sees it, and the event that must be recorded before
/// it is answered (a patient's e-mail and name shown with a reason: `BREAK_GLASS` on
/// their account). A list records the events of its whole page in one transaction.
async fn admin_view(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    account: &Account,
    reason: Option<&str>,
) -> Result<(AdminView, Option<AuditEvent>), ApiError> {
    let patient = account.role == Role::Patient;
    let (identity, event) = match (patient, reason) {
        (false, _) => (Some(account.identity(app, req, principal).await?), None),
        (true, Some(reason)) => {
            let identity = account.identity(app, req, principal).await?;
            let event = audit_event(req, principal, Action::BreakGlass, Outcome::Success)
                .resource("account", &account.id)
                .reason(Reason::new(reason)?);
            (Some(identity), Some(event))
        }
        (true, None) => (None, None),
    };
    let identity_withheld = identity.is_none();
    let (email, full_name) = identity.unzip();
    let view = AdminView {
        id: account.id.clone(),
        email,
        full_name,
        role: account.role,
        status: account.status,
        mfa_enabled: account.mfa_enabled,
        created_at: account.created_at.clone(),
        identity_withheld,
    };
    Ok((view, event))
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
    ApiResponse::created(&account.view(&app, &req, &principal).await?)
}

/// `GET /api/v1/users[?limit=&cursor=]`: every account, oldest first, paginated. With an
/// `X-Access-Reason`, a page holds at most [`PHI_PAGE_LIMIT`] accounts and each patient
/// on it is recorded before the page is answered; the list itself is recorded as `VIEW`
/// on `account_list/all` (`BREAK_GLASS`, with the reason, when one was given). All of a
/// page's events are one audit transaction (consecutive places in the chain): the page
/// is answered only if every one of them is kept.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = admin(&app, &req).await?;
    let target = ("account_list", "all");
    let reason = access_reason(&app, &req, &principal, target).await?;
    let mut page = PageRequest::from_request(&req)?;
    if reason.is_some() {
        page.limit = page.limit.min(PHI_PAGE_LIMIT);
    }
    let (found, next) = accounts::list(&app, &page).await?;
    let mut items = Vec::with_capacity(found.len());
    let mut events = Vec::new();
    for account in &found {
        let (view, event) = admin_view(&app, &req, &principal, account, reason.as_deref()).await?;
        items.push(view);
        events.extend(event);
    }
    let event = match &reason {
        Some(reason) => audit_event(&req, &principal, Action::BreakGlass, Outcome::Success)
            .reason(Reason::new(reason)?),
        None => audit_event(&req, &principal, Action::View, Outcome::Success),
    };
    events.push(event.resource(target.0, target.1));
    app.audit.commit_all(events, Vec::new()).await?;
    ApiResponse::ok(&Page::new(items, next))
}

async fn target(app: &AppContext, req: &ApiRequest) -> Result<accounts::Account, ApiError> {
    let id = req.param("id")?;
    accounts::get(app, id).await?.ok_or(ApiError::NotFound)
}

/// `GET /api/v1/users/{id}`: recorded as `VIEW` on `account/<id>`, or `BREAK_GLASS` when
/// a patient's e-mail and name were shown.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = admin(&app, &req).await?;
    let id = req.param("id")?.to_string();
    let reason = access_reason(&app, &req, &principal, ("account", &id)).await?;
    let account = target(&app, &req).await?;
    let (view, event) = admin_view(&app, &req, &principal, &account, reason.as_deref()).await?;
    let event = event.unwrap_or_else(|| {
        audit_event(&req, &principal, Action::View, Outcome::Success)
            .resource("account", &account.id)
    });
    app.audit.record(event).await?;
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
    let (view, _) = admin_view(&app, &req, &principal, &account, None).await?;
    ApiResponse::ok(&view)
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
    let (view, _) = admin_view(&app, &req, &principal, &account, None).await?;
    ApiResponse::ok(&view)
}
