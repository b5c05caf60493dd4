//! Rate limits shared by every Lambda instance: a fixed-window counter per (limit,
//! subject, window) in the database, incremented atomically and expired by TTL. API
//! Gateway throttling in `template.yaml` is the outer layer; these are per account / IP.

use crate::ports::db::{increment, item, Condition, Key, Update, Value, TTL};
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

/// One attempt reserved against a limit's window: made BEFORE the credential is
/// checked, so parallel attempts cannot all pass a read of the counter. A failed
/// attempt keeps its reservation; a successful one gives it back with [`release`].
#[derive(Debug, Clone)]
#[must_use = "a successful attempt releases its reservation"]
pub struct Reservation {
    key: Key,
}

/// Reserves one attempt of `subject` against `limit` (for limits that count failures:
/// passwords, codes, reset tokens): one conditional write (`ADD count 1` only while
/// `count < budget`), never a read then a write. 429 with `Retry-After` when the
/// window's budget is spent (in flight or failed); 503 when the counter cannot be
/// written: an attempt that cannot be counted is not made.
pub async fn reserve(
    app: &AppContext,
    limit: Limit,
    subject: &str,
) -> Result<Reservation, ApiError> {
    let now = app.clock.now().timestamp();
    let (start, end) = window(limit, now);
    let key = counter(limit, subject, start);
    let budget = limit.budget(app, subject);
    let spent = || ApiError::RateLimited {
        retry_after_secs: (end - now).max(1) as u64,
    };
    let table = &app.config.table;
    let add = || {
        app.db.update(
            table,
            &key,
            Update::new().add("count", 1).set(TTL, end),
            Some(Condition::LessThan("count".into(), budget)),
        )
    };
    match add().await {
        Ok(_) => return Ok(Reservation { key }),
        Err(err) if err.is_condition_failed() => {}
        Err(err) => return Err(err.into()),
    }
    // The condition also fails on a missing counter: the window's first attempt
    // creates it (conditionally: a racing first attempt makes the other add again).
    if budget < 1 {
        return Err(spent());
    }
    let first = item([
        ("pk", Value::S(key.pk.clone())),
        ("sk", Value::S(key.sk.clone())),
        ("count", Value::N(1)),
        (TTL, Value::N(end)),
    ]);
    match app.db.put(table, first, Some(Condition::NotExists)).await {
        Ok(()) => return Ok(Reservation { key }),
        Err(err) if err.is_condition_failed() => {}
        Err(err) => return Err(err.into()),
    }
    match add().await {
        Ok(_) => Ok(Reservation { key }),
        Err(err) if err.is_condition_failed() => Err(spent()),
        Err(err) => Err(err.into()),
    }
}

/// Gives back a successful attempt's reservation (a success is not a failure to
/// count). Best effort: if the write fails the window only stays stricter.
pub async fn release(app: &AppContext, reservation: Reservation) {
    let released = app
        .db
        .update(
            &app.config.table,
            &reservation.key,
            Update::new().add("count", -1),
            Some(Condition::AttributeExists("count".into())),
        )
        .await;
    if let Err(err) = released {
        if !err.is_condition_failed() {
            tracing::warn!(error = %err, "a rate-limit reservation could not be released");
        }
    }
}

/// Forgets the failures `subject` spent in the current window of `limit` (a password
/// reset forgives the guesses that locked its owner out, so the owner can log in at
/// once). Best effort, like [`release`]: if the write fails the window stays stricter.
pub async fn forgive(app: &AppContext, limit: Limit, subject: &str) {
    let (start, _) = window(limit, app.clock.now().timestamp());
    let forgiven = app
        .db
        .update(
            &app.config.table,
            &counter(limit, subject, start),
            Update::new().set("count", 0i64),
            Some(Condition::AttributeExists("count".into())),
        )
        .await;
    if let Err(err) = forgiven {
        if !err.is_condition_failed() {
            tracing::warn!(error = %err, "a rate-limit window could not be forgiven");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestApp;

    #[tokio::test]
    async fn reservations_stop_at_the_budget_and_come_back_when_released() {
        let t = TestApp::new();
        let mut held = Vec::new();
        for _ in 0..AUTH.max {
            held.push(
                reserve(&t.app, AUTH, "user:R")
                    .await
                    .expect("within budget"),
            );
        }
        assert!(matches!(
            reserve(&t.app, AUTH, "user:R").await,
            Err(ApiError::RateLimited { .. })
        ));
        release(&t.app, held.pop().expect("one")).await;
        let again = reserve(&t.app, AUTH, "user:R").await.expect("released");
        drop(again);
        assert!(reserve(&t.app, AUTH, "user:R").await.is_err());
        assert!(reserve(&t.app, AUTH, "user:other").await.is_ok());
    }

    #[tokio::test]
    async fn a_counter_that_cannot_be_written_refuses_the_attempt() {
        let t = TestApp::new();
        let down = crate::testing::with_ports(&t.app, |p| {
            p.db = std::sync::Arc::new(crate::testing::OUTAGE)
        });
        assert!(matches!(
            reserve(&down, AUTH, "ip:203.0.113.1").await,
            Err(ApiError::Unavailable { .. })
        ));
    }
}
