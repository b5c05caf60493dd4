//! The encrypted profile: `GET`/`PUT /api/v1/users/me/profile` for the owner, and
//! `GET /api/v1/users/{id}/profile` for a provider with a care relationship or an admin
//! stating a reason (break-glass). Every read is audited before the data is returned; if
//! the audit event cannot be written, nothing is returned (503).
//!
//! Storage (`shared::store::profiles`): each of `date_of_birth`, `ssn`, `phone`,
//! `address` is sealed on its own (the full name lives, sealed, on the account).

use crate::audit;
use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome, Reason};
use shared::auth::accounts;
use shared::auth::passwords::{self, Verified};
use shared::auth::policy::Basis;
use shared::auth::{audit_event, authenticate, input, rate_limit, Principal};
use shared::crypto::CryptoError;
use shared::domain::profile::{address, date_of_birth, mask_ssn, ssn, ssn_for_viewer};
use shared::domain::zone::Zone;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::store::profiles::{self, Profile};
use shared::{guard, ApiError, App, AppContext};
use zeroize::Zeroizing;

pub use shared::domain::profile::Address;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileBody {
    full_name: String,
    date_of_birth: Option<String>,
    ssn: Option<String>,
    phone: Option<String>,
    address: Option<Address>,
    /// IANA time zone for schedules and reminders; UTC when left out.
    #[serde(default)]
    time_zone: Option<Zone>,
    /// The account's current password: required when `phone` (the number that receives
    /// sign-in codes by SMS) is set, changed or removed; the owner is told by mail.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    current_password: Option<Zeroizing<String>>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "Profile")]
pub(crate) struct ProfileView {
    user_id: String,
    full_name: String,
    date_of_birth: Option<String>,
    /// `***-**-1234` unless the owner asked for `?reveal=ssn`.
    ssn: Option<String>,
    phone: Option<String>,
    address: Option<Address>,
    /// IANA time zone of schedules and reminders (`UTC` when never set).
    time_zone: Zone,
    updated_at: Option<String>,
}

/// `PUT /api/v1/users/me/profile`: replaces the profile (absent fields are removed).
pub async fn put_own(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: ProfileBody = req.json()?;
    let full_name = input::full_name(&body.full_name)?;
    let today = app.clock.now().date_naive();
    let valid_address = body.address.map(address).transpose()?;
    let profile = Profile {
        full_name: full_name.to_string(),
        date_of_birth: body
            .date_of_birth
            .as_deref()
            .map(|v| date_of_birth(v, today))
            .transpose()?,
        ssn: body.ssn.as_deref().map(ssn).transpose()?,
        phone: body
            .phone
            .as_deref()
            .map(|v| input::phone("phone", v).map(|p| p.to_string()))
            .transpose()?,
        address: valid_address
            .as_ref()
            .map(|v| serde_json::to_string(v).map_err(ApiError::internal))
            .transpose()?,
        time_zone: body.time_zone,
        updated_at: Some(app.now().to_string()),
    };
    // The phone receives sign-in codes: changing it needs the password, first.
    let phone_changed = phone_changes(&app, &req, &principal, profile.phone.as_deref()).await?;
    let owner = match phone_changed {
        true => Some(confirm_password(&app, &req, &principal, body.current_password).await?),
        false => None,
    };
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource("profile", &principal.user_id);
    profiles::replace(&app, &principal.user_id, &profile, event).await?;
    if let Some(email) = owner {
        let what = match profile.phone {
            Some(_) => "The phone number that receives your DoCare sign-in codes was changed.",
            None => "The phone number that received your DoCare sign-in codes was removed.",
        };
        shared::notifications::security_change(&app, &email, what).await?;
    }
    // The answer is what was just written: no read back, no decryption.
    ApiResponse::ok(&ProfileView {
        user_id: principal.user_id.clone(),
        full_name: profile.full_name,
        date_of_birth: profile.date_of_birth,
        ssn: profile.ssn.map(|s| mask_ssn(&s)),
        phone: profile.phone,
        address: valid_address,
        time_zone: profile.time_zone.unwrap_or(Zone::UTC),
        updated_at: profile.updated_at,
    })
}

/// Whether `new` differs from the phone the profile holds now (sign-in codes go there).
/// A stored number that fails its integrity check is recorded (`INTEGRITY_FAILURE`) and
/// counts as a change: only the password can replace it.
async fn phone_changes(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    new: Option<&str>,
) -> Result<bool, ApiError> {
    match profiles::phone(app, &principal.user_id).await {
        Ok(stored) => Ok(stored.as_deref() != new),
        Err(CryptoError::Integrity | CryptoError::Format(_)) => {
            tracing::error!("a stored phone failed its integrity check");
            audit(
                app,
                req,
                principal,
                Action::IntegrityFailure,
                ("profile", &principal.user_id),
                Outcome::Failed,
            )
            .await?;
            Ok(true)
        }
        Err(err) => Err(err.into()),
    }
}

/// Checks the caller's current password (reserved first against the account's failure
/// budget, as for TOTP changes: 5 per 15 minutes, then 429) and answers the account's
/// e-mail address, for the notice. A wrong password is recorded and answers 401.
async fn confirm_password(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    password: Option<Zeroizing<String>>,
) -> Result<String, ApiError> {
    let password = password.ok_or_else(|| {
        ApiError::validation(
            "current_password: required to change the phone that receives sign-in codes",
        )
    })?;
    let account = accounts::get(app, &principal.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let subject = format!("user:{}", account.id);
    let reserved = rate_limit::reserve(app, rate_limit::AUTH, &subject).await?;
    let verified = passwords::verify_account(
        &account.id,
        password.to_string(),
        account.password_hash.clone(),
    )
    .await;
    if verified == Verified::No {
        audit(
            app,
            req,
            principal,
            Action::Update,
            ("profile", &principal.user_id),
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::InvalidCredentials);
    }
    rate_limit::release(app, reserved).await;
    let opened = shared::phi::open(app, &account.item, "email").await;
    match opened {
        Ok(email) => Ok(email.unwrap_or_default()),
        Err(err @ (CryptoError::Integrity | CryptoError::Format(_))) => {
            audit(
                app,
                req,
                principal,
                Action::IntegrityFailure,
                ("account", &account.id),
                Outcome::Failed,
            )
            .await?;
            Err(ApiError::internal(err))
        }
        Err(err) => Err(err.into()),
    }
}

/// `GET /api/v1/users/me/profile[?reveal=ssn]`.
/// The one value of `?reveal=`.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // the documented parameter; the handler compares the text
pub(crate) enum Reveal {
    #[schemars(rename = "ssn")]
    Ssn,
}

pub async fn get_own(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let reveal = match req.query_param("reveal") {
        None => false,
        Some("ssn") => true,
        Some(_) => {
            return Err(ApiError::validation(
                "query parameter `reveal` may only be `ssn`",
            ))
        }
    };
    if reveal {
        rate_limit::hit(
            &app,
            rate_limit::SENSITIVE,
            &format!("user:{}", principal.user_id),
        )
        .await?;
    }
    let view = read(&app, &req, &principal, &principal.user_id, reveal).await?;
    let action = if reveal { Action::Reveal } else { Action::View };
    audit(
        &app,
        &req,
        &principal,
        action,
        ("profile", &principal.user_id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&view)
}

/// `GET /api/v1/users/{id}/profile`: care team, or an admin with `X-Access-Reason`.
pub async fn get_patient(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let patient_id = guard::path_id(&app, &req, &principal, "id", "profile")
        .await?
        .to_string();
    // Refusals, a missing break-glass reason included, are audited by the guard.
    let basis = guard::patient(&app, &req, &principal, &patient_id, "profile").await?;
    let view = read(&app, &req, &principal, &patient_id, false).await?;
    let event = match basis {
        Basis::BreakGlass { reason } => {
            audit_event(&req, &principal, Action::BreakGlass, Outcome::Success)
                .reason(Reason::new(&reason)?)
        }
        Basis::Owner | Basis::CareRelationship => {
            audit_event(&req, &principal, Action::View, Outcome::Success)
        }
    };
    app.audit
        .record(event.resource("profile", &patient_id))
        .await?;
    ApiResponse::ok(&view)
}

/// Decrypts a profile (2 reads: account and profile). A value that fails its integrity
/// check is audited and fails the request: never a wrong answer.
async fn read(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    user_id: &str,
    reveal: bool,
) -> Result<ProfileView, ApiError> {
    let profile = profiles::read(app, req, principal, user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let address = profile
        .address
        .map(|json| serde_json::from_str::<Address>(&json).map_err(ApiError::internal))
        .transpose()?;
    let owner = principal.user_id == user_id;
    Ok(ProfileView {
        user_id: user_id.to_string(),
        full_name: profile.full_name,
        date_of_birth: profile.date_of_birth,
        ssn: profile.ssn.map(|s| ssn_for_viewer(s, owner, reveal)),
        phone: profile.phone,
        address,
        time_zone: profile.time_zone.unwrap_or(Zone::UTC),
        updated_at: profile.updated_at,
    })
}
