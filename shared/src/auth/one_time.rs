//! Single-use, expiring tokens (e-mail verification, password reset): the client gets
//! the random token, the table keeps its hash; redeeming deletes the item under an
//! existence condition, so two concurrent redemptions cannot both succeed.

use super::secrets;
use crate::ports::db::{item, Condition, Key, Value};
use crate::store::keys;
use crate::{ApiError, AppContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

fn key(hash: &str) -> Key {
    keys::one_time_token(hash)
}

/// Creates a token for the user; returns the secret to send.
pub async fn issue(
    app: &AppContext,
    purpose: Purpose,
    user_id: &str,
    ttl_secs: i64,
) -> Result<String, ApiError> {
    let token = secrets::token();
    let key = key(&secrets::hash(&token));
    let record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("purpose", Value::S(purpose.as_str().into())),
        ("user_id", Value::S(user_id.into())),
        (
            "expires_at",
            Value::N(app.clock.now().timestamp() + ttl_secs),
        ),
    ]);
    app.db
        .put(&app.config.table, record, Some(Condition::NotExists))
        .await?;
    Ok(token)
}

/// Redeems a token once; the user id it was issued for, or `None` when it is unknown,
/// expired, already used or issued for another purpose.
pub async fn redeem(
    app: &AppContext,
    purpose: Purpose,
    token: &str,
) -> Result<Option<String>, ApiError> {
    let key = key(&secrets::hash(token));
    let condition = Condition::And(vec![
        Condition::Exists,
        Condition::Equals("purpose".into(), Value::S(purpose.as_str().into())),
    ]);
    match app
        .db
        .delete(&app.config.table, &key, Some(condition))
        .await
    {
        Ok(Some(old)) => Ok(old
            .get("user_id")
            .and_then(Value::as_str)
            .map(str::to_string)),
        Ok(None) => Ok(None),
        Err(err) if err.is_condition_failed() => Ok(None),
        Err(err) => Err(err.into()),
    }
}
