//! The users function: the caller's own account, administrators' account management
//! (create providers and admins, list, disable/enable, change role) and care
//! relationships. Every admin action and every read of someone's account is audited.

/// The outside services the `users` binary links (`shared::adapters::links`): notices are
/// queued; a suspended account's sockets are closed.
pub const LINKS: shared::adapters::links::Links =
    shared::adapters::links::PUSH | shared::adapters::links::QUEUE;

mod admin;
mod care;
mod me;
mod profile;

use http::Method;
use shared::auth::accounts::AccountView;
use shared::auth::care::CareRelationship;
use shared::http::{Page, RouteDoc, Router};

pub use admin::PHI_PAGE_LIMIT;

/// Every handler records through the one shared helper.
pub(crate) use shared::auth::record as audit;

pub fn router() -> Router {
    Router::new()
        .route(Method::GET, "/api/v1/users/me", me::get)
        .doc(
            RouteDoc::new("The caller's account")
                .bearer()
                .response::<AccountView>(200)
                .errors(&[401, 404, 429, 503]),
        )
        .route(Method::PATCH, "/api/v1/users/me", me::patch)
        .doc(
            RouteDoc::new("Change the caller's display name")
                .bearer()
                .body::<me::PatchBody>()
                .response::<AccountView>(200)
                .errors(&[401, 404, 429, 503]),
        )
        .route(Method::GET, "/api/v1/users/me/profile", profile::get_own)
        .doc(
            RouteDoc::new("The caller's profile (SSN masked unless `?reveal=ssn`)")
                .bearer()
                .query::<profile::Reveal>("reveal", "`ssn` to answer the SSN in full (rate limited, audited).")
                .response::<profile::ProfileView>(200)
                .errors(&[400, 401, 404, 429, 503]),
        )
        .route(Method::PUT, "/api/v1/users/me/profile", profile::put_own)
        .doc(
            RouteDoc::new("Replace the caller's profile")
                .bearer()
                .describe("Setting, changing or removing `phone` (it receives sign-in codes by SMS) needs `current_password` (400 without, 401 when wrong; 5 wrong per 15 minutes, then 429) and tells the owner by mail.")
                .body::<profile::ProfileBody>()
                .response::<profile::ProfileView>(200)
                .errors(&[401, 404, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/users/{id}/profile",
            profile::get_patient,
        )
        .doc(
            RouteDoc::new("A patient's profile, for their care team or an administrator")
                .describe("Providers need an active care relationship and an MFA session; administrators an MFA session and an `X-Access-Reason` (break-glass, audited). A patient the caller may not see is a 404.")
                .bearer()
                .header("x-access-reason", "An administrator's reason for reading PHI (10..=500 characters).")
                .response::<profile::ProfileView>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::GET, "/api/v1/users", admin::list)
        .doc(
            RouteDoc::new("List accounts")
                .describe("Patients' e-mail and name only with an `X-Access-Reason` (break-glass: each patient shown is audited and appears in their access log; such a page holds at most 25 accounts); otherwise left out.")
                .admin_mfa()
                .paged()
                .header("x-access-reason", "An administrator's reason for seeing patients' e-mail and name (10..=500 characters).")
                .response::<Page<admin::AdminView>>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
        .route(Method::POST, "/api/v1/users", admin::create)
        .doc(
            RouteDoc::new("Create a provider or administrator account (an invitation is mailed)")
                .admin_mfa()
                .body::<admin::CreateBody>()
                .response::<AccountView>(201)
                .errors(&[401, 403, 409, 429, 503]),
        )
        .route(Method::GET, "/api/v1/users/{id}", admin::get)
        .doc(
            RouteDoc::new("An account")
                .describe("A patient's e-mail and name only with an `X-Access-Reason` (break-glass, audited); otherwise left out.")
                .admin_mfa()
                .header("x-access-reason", "An administrator's reason for seeing a patient's e-mail and name (10..=500 characters).")
                .response::<admin::AdminView>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::POST, "/api/v1/users/{id}/disable", admin::disable)
        .doc(
            RouteDoc::new("Disable an account (ends its sessions)")
                .admin_mfa()
                .response::<admin::AdminView>(200)
                .errors(&[401, 403, 404, 422, 429, 503]),
        )
        .route(Method::POST, "/api/v1/users/{id}/enable", admin::enable)
        .doc(
            RouteDoc::new("Enable a disabled account")
                .admin_mfa()
                .response::<admin::AdminView>(200)
                .errors(&[401, 403, 404, 422, 429, 503]),
        )
        .route(Method::PUT, "/api/v1/users/{id}/role", admin::set_role)
        .doc(
            RouteDoc::new("Change an account's role (ends its sessions)")
                .admin_mfa()
                .body::<admin::RoleBody>()
                .response::<admin::AdminView>(200)
                .errors(&[401, 403, 404, 422, 429, 503]),
        )
        .route(Method::POST, "/api/v1/care-relationships", care::create)
        .doc(
            RouteDoc::new("Start a care relationship between a provider and a patient")
                .admin_mfa()
                .body::<care::CreateBody>()
                .response::<CareRelationship>(201)
                .errors(&[401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/care-relationships", care::list)
        .doc(
            RouteDoc::new("Care relationships: the caller's, or (administrators) one provider's or patient's")
                .describe("Patients see their own; providers their own with an MFA session; administrators (MFA session) give exactly one of `provider_id` and `patient_id`.")
                .bearer()
                .paged()
                .query::<String>("provider_id", "Administrators: a provider's user id.")
                .query::<String>("patient_id", "Administrators: a patient's user id.")
                .response::<Page<CareRelationship>>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
        .route(Method::DELETE, "/api/v1/care-relationships/{id}", care::end)
        .doc(
            RouteDoc::new("End a care relationship (its provider, its patient or an administrator)")
                .bearer()
                .response::<CareRelationship>(200)
                .errors(&[401, 403, 404, 429, 503]),
        )
}
