//! PHI fields of stored items: each text field is sealed by the envelope on its own,
//! bound to the table, the item's key and the attribute name, so a value copied to
//! another record or field fails to open (DESIGN §6).

use crate::audit::{Action, Outcome};
use crate::auth::{record, Principal};
use crate::crypto::{Binding, CryptoError};
use crate::http::ApiRequest;
use crate::ports::db::{Item, Key, Value};
use crate::{ApiError, AppContext};

fn binding<'a>(table: &'a str, key: &'a Key, attribute: &'a str) -> Binding<'a> {
    Binding {
        table,
        pk: &key.pk,
        sk: &key.sk,
        attribute,
    }
}

/// Seals a text value for `attribute` of the item at `key` in the domain table.
pub async fn seal(
    app: &AppContext,
    key: &Key,
    attribute: &str,
    plain: &str,
) -> Result<Value, ApiError> {
    let sealed = app
        .crypto
        .encrypt(
            &binding(&app.config.table, key, attribute),
            plain.as_bytes(),
        )
        .await?;
    Ok(Value::B(sealed))
}

/// [`seal`] for a function whose role may seal PHI but not open it (the document
/// scanner): under the instance's own data key (format v1,
/// [`crate::crypto::Envelope::encrypt_sealing_only`]), so sealing needs no `Decrypt`.
pub async fn seal_without_opening(
    app: &AppContext,
    key: &Key,
    attribute: &str,
    plain: &str,
) -> Result<Value, ApiError> {
    let sealed = app
        .crypto
        .encrypt_sealing_only(
            &binding(&app.config.table, key, attribute),
            plain.as_bytes(),
        )
        .await?;
    Ok(Value::B(sealed))
}

/// Opens a sealed text attribute of an item read from the domain table; `None` when the
/// attribute is absent. An [`CryptoError::Integrity`] means the value was moved or
/// altered: callers audit it (`INTEGRITY_FAILURE`) and fail the request.
pub async fn open(
    app: &AppContext,
    item: &Item,
    attribute: &str,
) -> Result<Option<String>, CryptoError> {
    let Some(sealed) = item.get(attribute).and_then(Value::as_bytes) else {
        return Ok(None);
    };
    let key = Key::of(item).ok_or(CryptoError::Integrity)?;
    let plain = app
        .crypto
        .decrypt(&binding(&app.config.table, &key, attribute), sealed)
        .await?;
    String::from_utf8(plain.to_vec())
        .map(Some)
        .map_err(|_| CryptoError::Integrity)
}

/// Opens sealed attributes of an item for a principal's request, in order. A value that
/// fails its integrity check (moved or altered) is audited as `INTEGRITY_FAILURE` on
/// `resource` and fails the request: never a wrong answer, never the value.
pub async fn open_audited(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    item: &Item,
    attributes: &[&str],
    resource: (&str, &str),
) -> Result<Vec<Option<String>>, ApiError> {
    // A session whose second step was a mailed code (a TOTP account) opens no PHI,
    // whichever route asks (policy::require_mfa_for_staff); the refusal is recorded.
    if principal.mailed_code {
        record(
            app,
            req,
            principal,
            Action::AccessDenied,
            resource,
            Outcome::Denied,
        )
        .await?;
        return Err(ApiError::Forbidden);
    }
    open_or_report(app, req, principal, item, attributes, resource)
        .await?
        .ok_or_else(|| ApiError::internal(CryptoError::Integrity))
}

/// [`open_audited`] for paths that go on without the item (an SOS skips a contact whose
/// number does not open, rather than fail the alert): `None` once the integrity failure
/// is recorded. An error means it could not be recorded (or KMS is down).
pub async fn open_or_report(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    item: &Item,
    attributes: &[&str],
    resource: (&str, &str),
) -> Result<Option<Vec<Option<String>>>, ApiError> {
    let mut opened = Vec::with_capacity(attributes.len());
    for attribute in attributes {
        match open(app, item, attribute).await {
            Ok(value) => opened.push(value),
            Err(CryptoError::Integrity | CryptoError::Format(_)) => {
                tracing::error!(attribute, "a PHI value failed its integrity check");
                record(
                    app,
                    req,
                    principal,
                    Action::IntegrityFailure,
                    resource,
                    Outcome::Failed,
                )
                .await?;
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Some(opened))
}
