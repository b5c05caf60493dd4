//! Account rules: lockout after repeated wrong passwords.

/// Wrong passwords in a row that lock an account (the first seed's rule).
pub const LOCK_AFTER_FAILURES: i64 = 5;
/// How long a lock lasts.
pub const LOCK_SECS: i64 = 30 * 60;

/// What a wrong password does to an account that had `failures` in a row before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Counted; not locked yet.
    Counted,
    /// Locked until this epoch second; the count starts again.
    Lock { until: i64 },
}

/// The lockout decision for the `failures`th wrong password in a row at `now`.
pub fn after_failure(failures: i64, now: i64) -> AfterFailure {
    if failures >= LOCK_AFTER_FAILURES {
        AfterFailure::Lock {
            until: now + LOCK_SECS,
        }
    } else {
        AfterFailure::Counted
    }
}

/// Whether an account locked until `locked_until` is locked at `now`.
pub fn is_locked(locked_until: i64, now: i64) -> bool {
    locked_until > now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_wrong_password_locks_for_thirty_minutes() {
        for n in 1..LOCK_AFTER_FAILURES {
            assert_eq!(after_failure(n, 1_000), AfterFailure::Counted, "{n}");
        }
        assert_eq!(
            after_failure(LOCK_AFTER_FAILURES, 1_000),
            AfterFailure::Lock {
                until: 1_000 + 1_800
            }
        );
        assert!(is_locked(2_800, 2_799));
        assert!(!is_locked(2_800, 2_800));
    }
}
