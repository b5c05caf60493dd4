//! Single-use, expiring tokens (e-mail verification, password reset): the client gets
//! the random token, the table keeps its hash; redeeming deletes the item under an
//! existence condition, so two concurrent redemptions cannot both succeed.

use super::secrets;
use crate::ports::db::{item, Condition, Item, Key, Value, WriteOp};
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

/// A token about to be issued: the secret to send, its hash (what the table keys it
/// by), and the write that stores it, for a unit of work.
#[derive(Clone)]
pub struct Issued {
    pub token: String,
    pub hash: String,
    pub write: WriteOp,
}

/// Prepares a token for the user carrying `extra` attributes (bound credentials, the
/// account's pending epoch); nothing is written until `write` is committed.
pub fn prepare(
    app: &AppContext,
    purpose: Purpose,
    user_id: &str,
    ttl_secs: i64,
    extra: Vec<(&str, Value)>,
) -> Issued {
    let token = secrets::token();
    let hash = secrets::hash(&token);
    let key = key(&hash);
    let mut record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("purpose", Value::S(purpose.as_str().into())),
        ("user_id", Value::S(user_id.into())),
        (
            "expires_at",
            Value::N(app.clock.now().timestamp() + ttl_secs),
        ),
    ]);
    for (name, value) in extra {
        record.insert(name.to_string(), value);
    }
    Issued {
        token,
        hash,
        write: WriteOp::Put {
            table: app.config.table.clone(),
            item: record,
            condition: Some(Condition::NotExists),
        },
    }
}

/// Creates a token for the user; returns the secret to send.
pub async fn issue(
    app: &AppContext,
    purpose: Purpose,
    user_id: &str,
    ttl_secs: i64,
) -> Result<String, ApiError> {
    let issued = prepare(app, purpose, user_id, ttl_secs, Vec::new());
    if let WriteOp::Put {
        table,
        item,
        condition,
    } = issued.write
    {
        app.db.put(&table, item, condition).await?;
    }
    Ok(issued.token)
}

/// A pending token as stored (not spent by reading it).
pub struct Pending {
    pub user_id: String,
    pub hash: String,
    pub item: Item,
}

impl Pending {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.item.get(name).and_then(Value::as_str)
    }

    pub fn number(&self, name: &str) -> Option<i64> {
        self.item.get(name).and_then(Value::as_i64)
    }

    /// The write that spends it, for a unit of work: fails (as the change's condition)
    /// when another request spent it first.
    pub fn spend(&self, app: &AppContext, purpose: Purpose) -> WriteOp {
        WriteOp::Delete {
            table: app.config.table.clone(),
            key: key(&self.hash),
            condition: Some(condition(purpose)),
        }
    }
}

fn condition(purpose: Purpose) -> Condition {
    Condition::And(vec![
        Condition::Exists,
        Condition::Equals("purpose".into(), Value::S(purpose.as_str().into())),
    ])
}

/// The token if it is pending for this purpose (one read; spend it with
/// [`Pending::spend`] in the change it allows).
pub async fn pending(
    app: &AppContext,
    purpose: Purpose,
    token: &str,
) -> Result<Option<Pending>, ApiError> {
    let hash = secrets::hash(token);
    let Some(record) = app.db.get(&app.config.table, &key(&hash)).await? else {
        return Ok(None);
    };
    if record.get("purpose").and_then(Value::as_str) != Some(purpose.as_str()) {
        return Ok(None);
    }
    let Some(user_id) = record.get("user_id").and_then(Value::as_str) else {
        return Ok(None);
    };
    Ok(Some(Pending {
        user_id: user_id.to_string(),
        hash,
        item: record,
    }))
}
