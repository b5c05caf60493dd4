//! Sealed values the auth function opens on the way in (the account's e-mail for its
//! mails and its name for the password check, the TOTP secret, the profile's phone for
//! SMS codes). A value that fails its integrity check (moved or altered) is recorded as
//! `INTEGRITY_FAILURE` on the account and fails the request (500): never a code sent to
//! a planted address or number, never a wrong answer.

use shared::audit::{Action, Outcome};
use shared::auth::accounts::Account;
use shared::auth::record_account;
use shared::crypto::CryptoError;
use shared::http::ApiRequest;
use shared::{ApiError, AppContext};

/// What `opened` (a sealed value of `account`, or of an item that belongs to it) is,
/// with an integrity failure recorded first.
pub(crate) async fn checked<T>(
    app: &AppContext,
    req: &ApiRequest,
    account: &Account,
    what: &'static str,
    opened: Result<T, CryptoError>,
) -> Result<T, ApiError> {
    match opened {
        Ok(value) => Ok(value),
        Err(err @ (CryptoError::Integrity | CryptoError::Format(_))) => {
            tracing::error!(what, "a sealed value failed its integrity check");
            record_account(
                app,
                req,
                Action::IntegrityFailure,
                Some(&account.id),
                Some(account.role),
                Outcome::Failed,
            )
            .await?;
            Err(ApiError::internal(err))
        }
        Err(err) => Err(err.into()),
    }
}

/// A sealed attribute of the account, opened ([`checked`]).
pub(crate) async fn open(
    app: &AppContext,
    req: &ApiRequest,
    account: &Account,
    attribute: &'static str,
) -> Result<Option<String>, ApiError> {
    let opened = shared::phi::open(app, &account.item, attribute).await;
    checked(app, req, account, attribute, opened).await
}

/// The account's e-mail address, opened ([`checked`]).
pub(crate) async fn email(
    app: &AppContext,
    req: &ApiRequest,
    account: &Account,
) -> Result<String, ApiError> {
    Ok(open(app, req, account, "email").await?.unwrap_or_default())
}
