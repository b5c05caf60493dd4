//! WebSocket connections: `CONN#<connection id>` / `CONN`, listed per user through gsi1
//! (`CONNS#<user id>`, sorted by connection time), expired by TTL after API Gateway's
//! two-hour connection limit. Each connection knows the session whose token opened it,
//! so ending a session closes its connections ([`close`]).

use crate::auth::Role;
use crate::ports::db::{item, Index, Query, Value};
use crate::store::keys;
use crate::{ApiError, AppContext};

pub use crate::domain::connection::CONNECTION_TTL_SECS;

/// How many of a user's connections a push reaches (a user has a few devices).
pub const MAX_PER_USER: u32 = 100;

/// Stores an authenticated connection of session `session_id`.
pub async fn open(
    app: &AppContext,
    connection_id: &str,
    user_id: &str,
    role: Role,
    session_id: &str,
) -> Result<(), ApiError> {
    let now = app.clock.now().timestamp();
    let key = keys::connection(connection_id);
    let record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("connection_id", Value::S(connection_id.into())),
        ("user_id", Value::S(user_id.into())),
        ("role", Value::S(role.as_str().into())),
        ("session_id", Value::S(session_id.into())),
        ("connected_at", Value::N(now)),
        ("expires_at", Value::N(now + CONNECTION_TTL_SECS)),
        ("gsi1pk", Value::S(keys::connections_of(user_id))),
        ("gsi1sk", Value::S(format!("{now}#{connection_id}"))),
    ]);
    app.db.put(&app.config.table, record, None).await?;
    Ok(())
}

/// Forgets a connection (closed, or found gone by a push).
pub async fn forget(app: &AppContext, connection_id: &str) -> Result<(), ApiError> {
    app.db
        .delete(&app.config.table, &keys::connection(connection_id), None)
        .await?;
    Ok(())
}

/// The ids of a user's open connections (one query on gsi1).
pub async fn of_user(app: &AppContext, user_id: &str) -> Result<Vec<String>, ApiError> {
    Ok(listed(app, user_id)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// A user's connections with the session each belongs to (`None`: stored before
/// connections knew their session).
async fn listed(
    app: &AppContext,
    user_id: &str,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let page = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::connections_of(user_id))
                .on(Index::Gsi1)
                .limit(MAX_PER_USER),
        )
        .await?;
    Ok(page
        .items
        .iter()
        .filter_map(|item| {
            let id = item.get("connection_id").and_then(Value::as_str)?;
            let session = item.get("session_id").and_then(Value::as_str);
            Some((id.to_string(), session.map(str::to_string)))
        })
        .collect())
}

/// Closes (through the push port's disconnect) and forgets the user's connections of
/// session `session`, or all of them (`None`); a connection without a known session is
/// closed either way. Returns how many were closed. Every connection is tried; the
/// first failure is returned after.
pub async fn close(
    app: &AppContext,
    user_id: &str,
    session: Option<&str>,
) -> Result<usize, ApiError> {
    let mut closed = 0;
    let mut failed = None;
    for (id, of_session) in listed(app, user_id).await? {
        let matches = match (session, of_session.as_deref()) {
            (Some(wanted), Some(actual)) => wanted == actual,
            _ => true,
        };
        if !matches {
            continue;
        }
        match app.push.disconnect(&id).await {
            Ok(_) => {
                forget(app, &id).await?;
                closed += 1;
            }
            Err(err) => failed = failed.or(Some(ApiError::from(err))),
        }
    }
    match failed {
        Some(err) => Err(err),
        None => Ok(closed),
    }
}

/// Who opened a connection: user, role and session (`None`: not stored, or expired).
pub async fn owner(
    app: &AppContext,
    connection_id: &str,
) -> Result<Option<(String, Role, String)>, ApiError> {
    let item = app
        .db
        .get(&app.config.table, &keys::connection(connection_id))
        .await?;
    Ok(item.and_then(|item| {
        let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_string);
        Some((
            text("user_id")?,
            Role::parse(&text("role")?)?,
            text("session_id").unwrap_or_default(),
        ))
    }))
}
