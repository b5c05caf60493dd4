//! Whether an access token's session is still live, checked by [`super::authenticate`]
//! on every request through a per-instance cache, and what happens once sessions end.
//!
//! The one read is the account item (`USER#<id>` / `ACCOUNT`): it holds the status, the
//! role, `sessions_valid_after` (every session that began at or before it is dead) and
//! `revoked_sessions` (sessions ended one by one), so one `GetItem` answers for every
//! session of the account. An instance keeps that answer for at most
//! [`CHECK_CACHE_MS`](crate::domain::session::CHECK_CACHE_MS) (5 s) by the app clock;
//! the instance that ends a session forgets its copy at once ([`ended`]), the others
//! notice within the bound. The rules are `domain::session::session_live`.

use super::{Principal, Role};
use crate::domain::session::{session_live, Revocation, CHECK_CACHE_MS};
use crate::ports::db::{Item, Value};
use crate::store::keys;
use crate::{ApiError, AppContext};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Accounts an instance remembers at most (then the oldest copies are dropped).
pub const MAX_CACHED_ACCOUNTS: usize = 10_000;

/// Which sessions of an account a change ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ended {
    #[default]
    Nothing,
    /// One session (logout, a replayed refresh token).
    Session(String),
    /// Every session (logout-all, password change or reset, disable, role change).
    All,
}

/// The revocation state an account item holds.
pub fn revocation_of(item: &Item) -> Revocation {
    let revoked = match item.get("revoked_sessions") {
        Some(Value::M(map)) => map
            .iter()
            .filter_map(|(id, end)| end.as_i64().map(|end| (id.clone(), end)))
            .collect(),
        _ => BTreeMap::new(),
    };
    let role = item
        .get("role")
        .and_then(Value::as_str)
        .and_then(Role::parse);
    Revocation {
        active: role.is_some() && item.get("status").and_then(Value::as_str) == Some("active"),
        role: role.unwrap_or(Role::Patient),
        valid_after_ms: item
            .get("sessions_valid_after")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        revoked,
    }
}

/// A gone account: nothing of it is live.
fn gone() -> Revocation {
    Revocation {
        active: false,
        role: Role::Patient,
        valid_after_ms: i64::MAX,
        revoked: BTreeMap::new(),
    }
}

/// The per-instance cache of accounts' revocation state.
#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, (Revocation, i64)>>,
}

impl SessionCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the principal's session is live: from the cache when its copy is younger
    /// than [`CHECK_CACHE_MS`], otherwise from one read of the account.
    pub async fn is_live(&self, app: &AppContext, principal: &Principal) -> Result<bool, ApiError> {
        let now = app.clock.now().timestamp_millis();
        if let Some(state) = self.cached(&principal.user_id, now) {
            return Ok(session_live(&state, principal.role, &principal.session_id));
        }
        let state = match app
            .db
            .get(&app.config.table, &keys::account(&principal.user_id))
            .await?
        {
            Some(item) => revocation_of(&item),
            None => gone(),
        };
        let live = session_live(&state, principal.role, &principal.session_id);
        self.keep(&principal.user_id, state, now);
        Ok(live)
    }

    fn cached(&self, user_id: &str, now: i64) -> Option<Revocation> {
        let entries = self.lock();
        let (state, at) = entries.get(user_id)?;
        (now >= *at && now - *at < CHECK_CACHE_MS).then(|| state.clone())
    }

    fn keep(&self, user_id: &str, state: Revocation, now: i64) {
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED_ACCOUNTS {
            entries.retain(|_, (_, at)| now >= *at && now - *at < CHECK_CACHE_MS);
            if entries.len() >= MAX_CACHED_ACCOUNTS {
                entries.clear();
            }
        }
        entries.insert(user_id.to_string(), (state, now));
    }

    /// Forgets an account's copy (this instance changed it).
    pub fn forget(&self, user_id: &str) {
        self.lock().remove(user_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Revocation, i64)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// After a committed change to an account: this instance forgets its cached copy, and
/// when sessions ended, their WebSocket connections are closed through the push port.
/// Closing is best effort once the change is kept: a connection that cannot be closed
/// now (push service down) is logged and closes at API Gateway's two-hour limit at the
/// latest; the session's REST access and refresh are cut regardless.
pub async fn ended(app: &AppContext, user_id: &str, ended: &Ended) {
    app.sessions.forget(user_id);
    let session = match ended {
        Ended::Nothing => return,
        Ended::Session(id) => Some(id.as_str()),
        Ended::All => None,
    };
    if let Err(err) = crate::store::connections::close(app, user_id, session).await {
        tracing::warn!(
            error = %err,
            "sessions ended but their WebSocket connections could not all be closed"
        );
    }
}
