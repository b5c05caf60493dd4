//! Sessions and refresh tokens. A session (`SESSION#<user>` / `SESSION#<sid>`) is one
//! login; its refresh tokens (`REFRESH#<sha256>`, stored only as hashes) form one
//! family. Each refresh token is used once: rotating marks it used and writes the next
//! in one unit of work ([`rotation`]) that also checks the session and the account are
//! still as read. Each refresh token carries the chain's last use (`last_used`, when it
//! was issued), so a refresh after the role's idle window fails.

use crate::auth::secrets;
use crate::domain::session::refresh_usable_until;
use crate::ports::db::{item, Condition, Item, Update, Value, WriteOp};
use crate::store::keys;
use crate::{ApiError, AppContext};

fn refresh_item(
    token: &str,
    user_id: &str,
    session_id: &str,
    now: i64,
    session_ends: i64,
    idle_secs: i64,
) -> Item {
    let key = keys::refresh_token(&secrets::hash(token));
    item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("user_id", Value::S(user_id.into())),
        ("session_id", Value::S(session_id.into())),
        ("used", Value::Bool(false)),
        ("last_used", Value::N(now)),
        (
            "idle_until",
            Value::N(refresh_usable_until(now, session_ends, idle_secs)),
        ),
        ("expires_at", Value::N(session_ends)),
    ])
}

/// Opens a session of an account with this role (its lifetime: `Config::
/// session_lifetime`) with its first refresh token, in one transaction; returns the
/// session id (a ULID: when it began) and the token (shown once, stored as a hash).
pub async fn open(
    app: &AppContext,
    user_id: &str,
    role: crate::auth::Role,
    amr: &[&str],
) -> Result<(String, String), ApiError> {
    let opening = open_ops(app, user_id, role, amr);
    app.db.transact_write(opening.ops).await?;
    Ok((opening.session_id, opening.refresh_token))
}

/// A session about to be opened: its id, its first refresh token (to hand out once
/// committed) and the writes that open it.
#[derive(Debug)]
pub struct Opening {
    pub session_id: String,
    pub refresh_token: String,
    /// The session and its first refresh token, both conditional on being new.
    pub ops: Vec<WriteOp>,
}

/// The writes that open a session of an account with this role (as [`open`]), for a
/// unit of work with the step's event and writes.
pub fn open_ops(app: &AppContext, user_id: &str, role: crate::auth::Role, amr: &[&str]) -> Opening {
    let session_id = app.new_id();
    let lifetime = app.config.session_lifetime(role);
    let now = app.clock.now();
    let ends = now.timestamp() + lifetime.absolute_secs;
    let key = keys::session(user_id, &session_id);
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
            item: refresh_item(
                &refresh_token,
                user_id,
                &session_id,
                now.timestamp(),
                ends,
                lifetime.idle_secs,
            ),
            condition: Some(Condition::NotExists),
        },
    ];
    Opening {
        session_id,
        refresh_token,
        ops,
    }
}

/// A presented refresh token, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub user_id: String,
    pub session_id: String,
    /// Already used: presenting it again is a replay.
    pub used: bool,
    /// When the chain was last used (this token issued), epoch seconds.
    pub last_used: i64,
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
        last_used: record.get("last_used").and_then(Value::as_i64).unwrap_or(0),
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

/// The writes of one rotation, for a unit of work with its `TOKEN_REFRESH` event: spend
/// `presented` (op 0: it must be unused), check the session is live (op 1), and store
/// `next` (op 2). The caller adds the account check (`accounts::still_usable`).
pub fn rotation(
    app: &AppContext,
    presented: &str,
    next: &str,
    user_id: &str,
    session_id: &str,
    ends: i64,
    idle_secs: i64,
) -> Vec<WriteOp> {
    let table = app.config.table.clone();
    let now = app.clock.now().timestamp();
    vec![
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
            item: refresh_item(next, user_id, session_id, now, ends, idle_secs),
            condition: Some(Condition::NotExists),
        },
    ]
}

/// The write that marks a session revoked (its whole refresh family), for a unit of
/// work; the session must exist.
pub fn revoke_op(app: &AppContext, user_id: &str, session_id: &str) -> WriteOp {
    WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::session(user_id, session_id),
        update: Update::new().set("revoked", true),
        condition: Some(Condition::Exists),
    }
}

/// Ends one session with its audit event in one unit of work: the session item is
/// marked revoked and the account lists it as ended (compare-and-set, retried when
/// another change to the account's sessions came first). Without the event nothing is
/// kept. Afterwards the session's WebSocket connections are closed.
pub async fn end(
    app: &AppContext,
    user_id: &str,
    session_id: &str,
    event: crate::audit::AuditEvent,
) -> Result<(), ApiError> {
    use crate::audit::CommitError;
    use crate::auth::accounts;
    use crate::auth::revocation::Ended;
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let Some(account) = accounts::get(app, user_id).await? else {
            // No account, nothing to end: the event is still recorded.
            app.audit.record(event).await?;
            return Ok(());
        };
        let stored = session(app, user_id, session_id).await?;
        let lifetime = app.config.session_lifetime(account.role);
        let ends = match &stored {
            Some(s) if s.ends > 0 => s.ends,
            _ => {
                crate::domain::session::session_began_ms(session_id).unwrap_or(0) / 1000
                    + lifetime.absolute_secs
            }
        };
        let now_ms = app.clock.now().timestamp_millis();
        let change = accounts::AccountChange::new().end_session(&account, session_id, ends, now_ms);
        let all = change.ended();
        let mut ops = Vec::new();
        if stored.is_some() {
            ops.push(revoke_op(app, user_id, session_id));
        }
        let condition = Condition::And(vec![
            Condition::Exists,
            accounts::unchanged_sessions(&account),
        ]);
        ops.push(accounts::change_op(app, &account, change, condition)?.0);
        match app.audit.commit(event.clone(), ops).await {
            Ok(()) => {
                let ended = match all {
                    Ended::All => Ended::All,
                    _ => Ended::Session(session_id.to_string()),
                };
                crate::auth::revocation::ended(app, user_id, &ended).await;
                return Ok(());
            }
            // The account's sessions changed (or the session vanished) meanwhile.
            Err(CommitError::Change { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::conflict(
        "the session was changed by other requests; retry",
    ))
}
