//! Rate limits shared by every Lambda instance: a fixed-window counter per (limit,
//! subject, window) in the database, incremented atomically and expired by TTL. API
//! Gateway throttling in `template.yaml` is the outer layer; these are per account / IP.

use crate::ports::db::{increment, Key, Value};
use crate::store::keys;
use crate::{ApiError, AppContext};

/// A budget of `max` events per `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub name: &'static str,
    pub max: i64,
    pub window_secs: i64,
}

/// Every authenticated API request, per account.
pub const GENERAL: Limit = Limit {
    name: "general",
    max: 100,
    window_secs: 15 * 60,
};
/// Failed credential checks (login, MFA, reset), per account and per source IP.
pub const AUTH: Limit = Limit {
    name: "auth",
    max: 5,
    window_secs: 15 * 60,
};
/// Document uploads, per account.
pub const UPLOADS: Limit = Limit {
    name: "uploads",
    max: 20,
    window_secs: 60 * 60,
};
/// Sensitive operations (reveal SSN, password change, sign-up and reset e-mails), per
/// account or IP.
pub const SENSITIVE: Limit = Limit {
    name: "sensitive",
    max: 10,
    window_secs: 60 * 60,
};

/// Chat reads and receipts (the messages function's routes but sending and sync), per
/// account, instead of [`GENERAL`].
pub const CHAT: Limit = Limit {
    name: "chat",
    max: 600,
    window_secs: 15 * 60,
};
/// Messages sent (REST or WebSocket), per account.
pub const CHAT_MESSAGES: Limit = Limit {
    name: "chat_messages",
    max: 60,
    window_secs: 60,
};
/// `sync` calls (what a reconnecting client makes), per account.
pub const CHAT_SYNC: Limit = Limit {
    name: "chat_sync",
    max: 60,
    window_secs: 60,
};

impl Limit {
    /// The budget for this subject: per-IP budgets (`ip:` subjects) scale with the
    /// deployment's [`crate::config::Config::ip_limit_factor`] (1 but on a local stack
    /// started with `--dev-limits`); per-account budgets never do.
    fn budget(self, app: &AppContext, subject: &str) -> i64 {
        if subject.starts_with(IP_SUBJECT_PREFIX) {
            self.max.saturating_mul(app.config.ip_limit_factor.max(1))
        } else {
            self.max
        }
    }
}

/// Subjects that name a source address start with this (`ip:203.0.113.9`).
pub const IP_SUBJECT_PREFIX: &str = "ip:";

/// The rate-limit subject of the caller's address.
pub fn ip_subject(req: &crate::http::ApiRequest) -> String {
    format!(
        "{IP_SUBJECT_PREFIX}{}",
        req.source_ip.as_deref().unwrap_or("unknown")
    )
}

fn window(limit: Limit, now: i64) -> (i64, i64) {
    let start = now - now.rem_euclid(limit.window_secs);
    (start, start + limit.window_secs)
}

fn counter(limit: Limit, subject: &str, start: i64) -> Key {
    keys::rate_window(limit.name, subject, start)
}

/// Counts one event; 429 with `Retry-After` once the window's budget is spent.
pub async fn hit(app: &AppContext, limit: Limit, subject: &str) -> Result<(), ApiError> {
    let now = app.clock.now().timestamp();
    let (start, end) = window(limit, now);
    let count = increment(
        app.db.as_ref(),
        &app.config.table,
        &counter(limit, subject, start),
        "count",
        1,
        Some(end),
    )
    .await?;
    if count > limit.budget(app, subject) {
        return Err(ApiError::RateLimited {
            retry_after_secs: (end - now).max(1) as u64,
        });
    }
    Ok(())
}

/// 429 when the budget is already spent, without counting (for limits that count only
/// failures: check first, [`hit`] on failure).
pub async fn check(app: &AppContext, limit: Limit, subject: &str) -> Result<(), ApiError> {
    let now = app.clock.now().timestamp();
    let (start, end) = window(limit, now);
    let item = app
        .db
        .get(&app.config.table, &counter(limit, subject, start))
        .await?;
    let count = item
        .as_ref()
        .and_then(|i| i.get("count"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if count >= limit.budget(app, subject) {
        return Err(ApiError::RateLimited {
            retry_after_secs: (end - now).max(1) as u64,
        });
    }
    Ok(())
}
