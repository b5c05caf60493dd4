//! The one guard a handler starts with (DESIGN §6: deny by default): who is calling
//! ([`signed_in`]), whether they may use staff-only routes ([`admin`]), whether they may
//! act on a patient ([`patient`]), and which record a path names ([`path_id`]).
//!
//! Every refusal of a signed-in caller is recorded the same way, as `ACCESS_DENIED` with
//! outcome `denied` on the resource the request aimed at: attempts are what a
//! compliance review looks for. (A request without a valid token is a 401 and is not
//! recorded: anyone could flood the trail with them.)

use crate::audit::{Action, Outcome};
use crate::auth::policy::{self, Basis};
use crate::auth::{record, Principal, Role};
use crate::http::ApiRequest;
use crate::{ApiError, AppContext};

pub use crate::auth::authenticate as signed_in;

/// What a refusal is recorded on when the target is not one record: a list, or a kind
/// of record that is being created.
pub const ANY: &str = "*";

/// The id of a record named in the path (`{name}`), for a signed-in caller: a ULID,
/// or a 404 — a malformed id names nothing that exists, so it is answered like an id
/// that does not exist (never a 400 that would tell the two apart). The refusal is
/// recorded on `(kind, "invalid")`: free text in an id slot is what probing looks like.
pub async fn path_id<'a>(
    app: &AppContext,
    req: &'a ApiRequest,
    principal: &Principal,
    name: &str,
    kind: &str,
) -> Result<&'a str, ApiError> {
    let id = req.param(name)?;
    if is_id(id) {
        Ok(id)
    } else {
        Err(refuse(app, req, principal, (kind, INVALID), ApiError::NotFound).await)
    }
}

/// What the trail records instead of client text that is not an id.
pub const INVALID: &str = "invalid";

/// A well-formed record id (the one rule: [`crate::domain::Id::parse`]).
pub fn is_id(value: &str) -> bool {
    crate::domain::Id::parse(value).is_some()
}

/// Records that a signed-in caller was refused on `resource` (ids only: pass client
/// text through [`path_id`] or [`recorded_id`] first), and returns the refusal to answer
/// (or the audit failure, which is a 503: unrecorded means unavailable).
pub async fn refuse(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    resource: (&str, &str),
    refusal: ApiError,
) -> ApiError {
    match record(
        app,
        req,
        principal,
        Action::AccessDenied,
        resource,
        Outcome::Denied,
    )
    .await
    {
        Ok(()) => refusal,
        Err(err) => err,
    }
}

/// `value` if it is an id, else [`INVALID`]: what the trail may hold of client text.
pub fn recorded_id(value: &str) -> &str {
    if is_id(value) {
        value
    } else {
        INVALID
    }
}

/// 403 (recorded on `target`) unless the principal is an administrator whose session
/// was opened with MFA.
pub async fn require_admin(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    target: (&str, &str),
) -> Result<(), ApiError> {
    let allowed = policy::require_role(principal, &[Role::Admin])
        .and_then(|()| policy::require_mfa_for_staff(principal));
    match allowed {
        Ok(()) => Ok(()),
        Err(refusal) => Err(refuse(app, req, principal, target, refusal).await),
    }
}

/// 403 (recorded on `target`) unless the principal's session meets its role's MFA rule
/// (providers and administrators need an MFA session: `policy::require_mfa_for_staff`),
/// for routes open to several roles that read PHI (a provider's list of patients).
pub async fn require_staff_mfa(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    target: (&str, &str),
) -> Result<(), ApiError> {
    match policy::require_mfa_for_staff(principal) {
        Ok(()) => Ok(()),
        Err(refusal) => Err(refuse(app, req, principal, target, refusal).await),
    }
}

/// Who the caller is to a record between one patient and one provider (an appointment,
/// a payment, a video call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Patient,
    Provider,
    Admin,
}

/// Whether administrators are a party to such records: they see payments (refunds,
/// disputes), not video calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admins {
    Allowed,
    Refused,
}

/// The caller's party to a record between `patient_id` and `provider_id`: its patient,
/// its provider, or an administrator where `admins` allows. Anyone else gets a 404 (they
/// may not know the record exists), staff without an MFA session a 403; each refusal is
/// recorded on `target`.
pub async fn party(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    target: (&str, &str),
    (patient_id, provider_id): (&str, &str),
    admins: Admins,
) -> Result<Party, ApiError> {
    let party = match principal.role {
        Role::Patient if principal.user_id == patient_id => Party::Patient,
        Role::Provider if principal.user_id == provider_id => Party::Provider,
        Role::Admin if admins == Admins::Allowed => Party::Admin,
        _ => return Err(refuse(app, req, principal, target, ApiError::NotFound).await),
    };
    require_staff_mfa(app, req, principal, target).await?;
    Ok(party)
}

/// The appointment named in the path (`{id}`) and the caller's [`party`] to it, for the
/// routes of what hangs off an appointment (its payments, its video calls). A malformed
/// or unknown id is a 404, recorded like any refusal.
pub async fn appointment_in_path(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    admins: Admins,
) -> Result<(crate::store::appointments::Stored, Party), ApiError> {
    const APPOINTMENT: &str = "appointment";
    let id = path_id(app, req, principal, "id", APPOINTMENT).await?;
    let target = (APPOINTMENT, id);
    let Some(appointment) = crate::store::appointments::get(app, id).await? else {
        return Err(refuse(app, req, principal, target, ApiError::NotFound).await);
    };
    let parties = (
        appointment.patient_id.as_str(),
        appointment.provider_id.as_str(),
    );
    let party = party(app, req, principal, target, parties, admins).await?;
    Ok((appointment, party))
}

/// [`signed_in`] and [`require_admin`], for routes that name no record in their path.
pub async fn admin(
    app: &AppContext,
    req: &ApiRequest,
    target: (&str, &str),
) -> Result<Principal, ApiError> {
    let principal = signed_in(app, req).await?;
    require_admin(app, req, &principal, target).await?;
    Ok(principal)
}

/// Whether the principal may act on this patient's data, and why: the patient
/// themself, a provider with an active care relationship (and an MFA session), or an
/// administrator with an MFA session stating a reason (break-glass). Refusals — 404 to
/// those who may not know the patient exists, 403 without MFA, 400 without a reason —
/// are recorded on `(resource, patient_id)`.
pub async fn patient(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    patient_id: &str,
    resource: &str,
) -> Result<Basis, ApiError> {
    match policy::patient_data(app, principal, req, patient_id).await {
        Ok(basis) => Ok(basis),
        Err(refusal @ (ApiError::NotFound | ApiError::Forbidden | ApiError::Validation(_))) => {
            Err(refuse(app, req, principal, (resource, patient_id), refusal).await)
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ulids_are_ids() {
        assert!(is_id("01JD5Z6Q8W3M0V7K2R9T4Y6B1C"));
        for bad in [
            "",
            "not-an-id",
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1",
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1CX",
            "0192f0c4-7d1a-7b3e-9c2d-1a2b3c4d5e6f",
            "../../etc/passwd",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn client_text_never_reaches_the_trail() {
        assert_eq!(recorded_id("234-56-7891"), INVALID);
        assert_eq!(
            recorded_id("01JD5Z6Q8W3M0V7K2R9T4Y6B1C"),
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1C"
        );
    }
}
