//! Sessions and refresh tokens. A session (`SESSION#<user>` / `SESSION#<sid>`) is one
//! login; its refresh tokens (`REFRESH#<sha256>`, stored only as hashes) form one
//! family. Each refresh token is used once: rotating marks it used and writes the next
//! in one transaction that also checks the session is live.

use crate::auth::secrets;
use crate::domain::session::refresh_usable_until;
use crate::ports::db::{item, Condition, DbError, Item, Update, Value, WriteOp};
use crate::store::keys;
use crate::{ApiError, AppContext};

fn refresh_item(token: &str, user_id: &str, session_id: &str, now: i64, session_ends: i64) -> Item {
    let key = keys::refresh_token(&secrets::hash(token));
    item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("user_id", Value::S(user_id.into())),
        ("session_id", Value::S(session_id.into())),
        ("used", Value::Bool(false)),
        (
            "idle_until",
            Value::N(refresh_usable_until(now, session_ends)),
        ),
        ("expires_at", Value::N(session_ends)),
    ])
}

/// Opens a session ending at `ends` (epoch seconds) with its first refresh token, in
/// one transaction; returns the token (shown once, stored as a hash).
pub async fn open(
    app: &AppContext,
    user_id: &str,
    session_id: &str,
    amr: &[&str],
    ends: i64,
) -> Result<String, ApiError> {
    let (refresh_token, ops) = open_ops(app, user_id, session_id, amr, ends);
    app.db.transact_write(ops).await?;
    Ok(refresh_token)
}

/// The writes that open a session (the session and its first refresh token, both
/// conditional on being new), for a unit of work; and the refresh token to hand out.
pub fn open_ops(
    app: &AppContext,
    user_id: &str,
    session_id: &str,
    amr: &[&str],
    ends: i64,
) -> (String, Vec<WriteOp>) {
    let now = app.clock.now();
    let key = keys::session(user_id, session_id);
    let session = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("created_ms", Value::N(now.timestamp_millis())),
        ("amr", Value::S(amr.join(" "))),
        ("expires_at", Value::N(ends)),
    ]);
    let refresh_token = secrets::token();
    let table = app.config.table.clone();
    let ops = vec![
        WriteOp::Put {
            table: table.clone(),
            item: session,
            condition: Some(Condition::NotExists),
        },
        WriteOp::Put {
            table,
            item: refresh_item(&refresh_token, user_id, session_id, now.timestamp(), ends),
            condition: Some(Condition::NotExists),
        },
    ];
    (refresh_token, ops)
}

/// A presented refresh token, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub user_id: String,
    pub session_id: String,
    /// Already used: presenting it again is a replay.
    pub used: bool,
    pub idle_until: i64,
}

/// The refresh token with this value, if it exists (one read).
pub async fn refresh_token(
    app: &AppContext,
    token: &str,
) -> Result<Option<RefreshToken>, ApiError> {
    let key = keys::refresh_token(&secrets::hash(token));
    let Some(record) = app.db.get(&app.config.table, &key).await? else {
        return Ok(None);
    };
    let text = |name: &str| {
        record
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(Some(RefreshToken {
        user_id: text("user_id"),
        session_id: text("session_id"),
        used: record.get("used").and_then(Value::as_bool) != Some(false),
        idle_until: record
            .get("idle_until")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    }))
}

/// A session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub created_ms: i64,
    pub revoked: bool,
    /// Space-separated authentication methods (`pwd`, `pwd mfa otp`).
    pub amr: String,
    /// Epoch seconds.
    pub ends: i64,
}

/// The session, if it exists (one read).
pub async fn session(
    app: &AppContext,
    user_id: &str,
    session_id: &str,
) -> Result<Option<Session>, ApiError> {
    let item = app
        .db
        .get(&app.config.table, &keys::session(user_id, session_id))
        .await?;
    Ok(item.map(|item| Session {
        created_ms: item.get("created_ms").and_then(Value::as_i64).unwrap_or(0),
        revoked: item.contains_key("revoked"),
        amr: item
            .get("amr")
            .and_then(Value::as_str)
            .unwrap_or("pwd")
            .to_string(),
        ends: item.get("expires_at").and_then(Value::as_i64).unwrap_or(0),
    }))
}

/// What rotating a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The next token of the family (the presented one is spent).
    Rotated(String),
    /// Someone spent the presented token a moment ago: treat as a replay.
    AlreadyUsed,
    /// The session ended meanwhile.
    SessionEnded,
}

/// Spends `presented` and issues the next token in one transaction, only while the
/// session is live.
pub async fn rotate(
    app: &AppContext,
    presented: &str,
    user_id: &str,
    session_id: &str,
    ends: i64,
) -> Result<Rotation, ApiError> {
    let table = app.config.table.clone();
    let now = app.clock.now().timestamp();
    let next = secrets::token();
    let rotated = app
        .db
        .transact_write(vec![
            WriteOp::Update {
                table: table.clone(),
                key: keys::refresh_token(&secrets::hash(presented)),
                update: Update::new().set("used", true),
                condition: Some(Condition::Equals("used".into(), Value::Bool(false))),
            },
            WriteOp::Check {
                table: table.clone(),
                key: keys::session(user_id, session_id),
                condition: Condition::And(vec![
                    Condition::Exists,
                    Condition::AttributeNotExists("revoked".into()),
                ]),
            },
            WriteOp::Put {
                table,
                item: refresh_item(&next, user_id, session_id, now, ends),
                condition: Some(Condition::NotExists),
            },
        ])
        .await;
    match rotated {
        Ok(()) => Ok(Rotation::Rotated(next)),
        Err(DbError::ConditionFailed { op: Some(0) }) => Ok(Rotation::AlreadyUsed),
        Err(err) if err.is_condition_failed() => Ok(Rotation::SessionEnded),
        Err(err) => Err(err.into()),
    }
}

/// Revokes a session (its whole refresh family); a session already gone is fine.
pub async fn revoke(app: &AppContext, user_id: &str, session_id: &str) -> Result<(), ApiError> {
    let revoked = app
        .db
        .update(
            &app.config.table,
            &keys::session(user_id, session_id),
            Update::new().set("revoked", true),
            Some(Condition::Exists),
        )
        .await;
    match revoked {
        Ok(_) => Ok(()),
        Err(err) if err.is_condition_failed() => Ok(()),
        Err(err) => Err(err.into()),
    }
}
