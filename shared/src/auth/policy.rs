//! "May this principal do this to that resource?" — one place, deny by default.
//!
//! Patient data (profile, contacts, records) is readable by the patient, by a provider
//! with an active care relationship (and MFA on the session), and by an admin only
//! through the break-glass path: MFA plus a stated reason, which the caller audits.
//! A caller who may not see a patient gets 404, so ids cannot be probed.

use super::{care, Principal, Role};
use crate::http::ApiRequest;
use crate::{ApiError, AppContext};

/// Header carrying an administrator's reason for reading PHI (not a URL: reasons are
/// free text and stay out of access logs).
pub const ACCESS_REASON_HEADER: &str = "x-access-reason";
pub const MIN_REASON_LEN: usize = 10;
pub const MAX_REASON_LEN: usize = 500;

/// Why access to a patient's data was granted (recorded in the audit event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    Owner,
    CareRelationship,
    /// Admin access with a reason (store it sealed, never in the clear).
    BreakGlass {
        reason: String,
    },
}

/// 403 unless the principal has one of the roles.
pub fn require_role(principal: &Principal, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&principal.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// Providers and admins must have used a strong second factor (TOTP or a recovery
/// code: [`Principal::mfa`]) before reading PHI; a code sent by e-mail or SMS is not
/// one. A patient whose account has TOTP but who signed in with a sent code
/// ([`Principal::mailed_code`]) reads no PHI either: for a TOTP account the mailbox
/// alone is not enough. Other patients need no second factor.
pub fn require_mfa_for_staff(principal: &Principal) -> Result<(), ApiError> {
    match principal.role {
        Role::Patient if !principal.mailed_code => Ok(()),
        Role::Provider | Role::Admin if principal.mfa => Ok(()),
        _ => Err(ApiError::Forbidden),
    }
}

/// May the principal read the patient's data? Providers: one read of the relationship.
pub async fn patient_data(
    app: &AppContext,
    principal: &Principal,
    req: &ApiRequest,
    patient_id: &str,
) -> Result<Basis, ApiError> {
    match principal.role {
        Role::Patient if principal.user_id == patient_id => {
            require_mfa_for_staff(principal)?;
            Ok(Basis::Owner)
        }
        Role::Patient => Err(ApiError::NotFound),
        Role::Provider => {
            if !care::is_active(app, &principal.user_id, patient_id).await? {
                return Err(ApiError::NotFound);
            }
            require_mfa_for_staff(principal)?;
            Ok(Basis::CareRelationship)
        }
        Role::Admin => {
            require_mfa_for_staff(principal)?;
            Ok(Basis::BreakGlass {
                reason: access_reason(req)?,
            })
        }
    }
}

/// The administrator's stated reason, validated (length only: it is free text).
pub fn access_reason(req: &ApiRequest) -> Result<String, ApiError> {
    let reason = req
        .header(ACCESS_REASON_HEADER)
        .map(str::trim)
        .unwrap_or_default();
    let len = reason.chars().count();
    if !(MIN_REASON_LEN..=MAX_REASON_LEN).contains(&len) {
        return Err(ApiError::validation(format!(
            "{ACCESS_REASON_HEADER}: an administrator must state a reason of {MIN_REASON_LEN} to {MAX_REASON_LEN} characters to read patient data"
        )));
    }
    Ok(reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, mfa: bool) -> Principal {
        Principal {
            user_id: "U1".into(),
            role,
            session_id: "S".into(),
            mfa,
            mailed_code: false,
        }
    }

    #[test]
    fn a_mailed_code_is_not_mfa_for_anyone() {
        for role in [Role::Provider, Role::Admin, Role::Patient] {
            let mailed = Principal {
                mailed_code: true,
                ..principal(role, false)
            };
            assert!(require_mfa_for_staff(&mailed).is_err(), "{role:?}");
        }
        assert!(require_mfa_for_staff(&principal(Role::Patient, false)).is_ok());
    }

    #[test]
    fn roles_and_mfa_deny_by_default() {
        assert!(require_role(&principal(Role::Patient, false), &[Role::Admin]).is_err());
        assert!(require_role(&principal(Role::Admin, false), &[Role::Admin]).is_ok());
        assert!(require_mfa_for_staff(&principal(Role::Patient, false)).is_ok());
        assert!(require_mfa_for_staff(&principal(Role::Provider, false)).is_err());
        assert!(require_mfa_for_staff(&principal(Role::Admin, true)).is_ok());
    }
}
