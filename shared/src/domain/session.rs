//! Session rules: short access tokens, rotating refresh tokens, lifetimes per role, and
//! whether a session is still live given its account's revocation state.
//!
//! A session is one login. Its id is a ULID generated when it opens, so the id itself
//! tells when the session began (millisecond precision); ending every session of an
//! account ("logout-all", a password change or reset, disabling, a role change) records
//! one instant, `sessions_valid_after`, and every session that began at or before it is
//! dead. Ending one session (logout, a replayed refresh token) adds its id to the
//! account's short list of revoked sessions until the session would have ended anyway.

use crate::auth::Role;
use std::collections::BTreeMap;

/// An access token's life (DESIGN §6: 15 minutes).
pub const ACCESS_TOKEN_SECS: i64 = 15 * 60;

/// How long a session may last and how long it may sit unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// A refresh after this long without one fails (idle logoff).
    pub idle_secs: i64,
    /// The session ends this long after login, however often it is refreshed.
    pub absolute_secs: i64,
}

/// Staff (providers, administrators): 30 minutes idle, 12 hours absolute (OWASP ASVS
/// L2 3.3.2, HIPAA automatic logoff).
pub const STAFF: Lifetime = Lifetime {
    idle_secs: 30 * 60,
    absolute_secs: 12 * 60 * 60,
};

/// Patients, unless configured otherwise (`shared::config`): 24 hours idle, 7 days.
pub const PATIENT_DEFAULT: Lifetime = Lifetime {
    idle_secs: 24 * 60 * 60,
    absolute_secs: 7 * 24 * 60 * 60,
};

/// The bounds a patient lifetime must respect: at least one access token's life idle
/// (a client refreshes every 15 minutes), idle within absolute, at most 30 days.
pub const PATIENT_MIN_IDLE_SECS: i64 = ACCESS_TOKEN_SECS;
pub const PATIENT_MAX_ABSOLUTE_SECS: i64 = 30 * 24 * 60 * 60;

/// The default patient session's absolute lifetime (kept for callers of the old names).
pub const REFRESH_ABSOLUTE_SECS: i64 = PATIENT_DEFAULT.absolute_secs;
/// The default patient session's idle expiry.
pub const REFRESH_IDLE_SECS: i64 = PATIENT_DEFAULT.idle_secs;

impl Lifetime {
    /// A patient lifetime, or why it is refused.
    pub fn patient(idle_secs: i64, absolute_secs: i64) -> Result<Self, &'static str> {
        if idle_secs < PATIENT_MIN_IDLE_SECS {
            return Err("idle time must be at least 15 minutes");
        }
        if absolute_secs < idle_secs {
            return Err("absolute lifetime must not be shorter than the idle time");
        }
        if absolute_secs > PATIENT_MAX_ABSOLUTE_SECS {
            return Err("absolute lifetime must be at most 30 days");
        }
        Ok(Self {
            idle_secs,
            absolute_secs,
        })
    }
}

/// The lifetime of a session of this role: staff are fixed, patients as configured.
pub fn lifetime(role: Role, patients: Lifetime) -> Lifetime {
    match role {
        Role::Provider | Role::Admin => STAFF,
        Role::Patient => patients,
    }
}

/// Until when a refresh token issued at `now` in a session ending at `session_ends`
/// may be used: idle expiry, never beyond the session's end.
pub fn refresh_usable_until(now: i64, session_ends: i64, idle_secs: i64) -> i64 {
    (now + idle_secs).min(session_ends)
}

/// Whether a refresh at `now` is within the idle window that started when the chain
/// was last used (`last_used`) and within the session's end.
pub fn refresh_allowed(last_used: i64, now: i64, session_ends: i64, idle_secs: i64) -> bool {
    now < refresh_usable_until(last_used, session_ends, idle_secs)
}

/// How long an instance may answer from its cached copy of an account's revocation
/// state: a session ended on another instance stops working there within this bound.
pub const CHECK_CACHE_MS: i64 = 5_000;

/// At most this many individually ended sessions are listed on an account; one more
/// ends every session of the account instead (the list cannot grow without bound).
pub const MAX_REVOKED_SESSIONS: usize = 100;

/// What an account says about its sessions (a copy of a few of its attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub active: bool,
    pub role: Role,
    /// Sessions that began at or before this instant (epoch ms) are dead.
    pub valid_after_ms: i64,
    /// Individually ended sessions: id → when the session would have ended (epoch s).
    pub revoked: BTreeMap<String, i64>,
}

/// When the session with this id began (epoch ms), from its ULID; `None` for an id we
/// did not generate.
pub fn session_began_ms(session_id: &str) -> Option<i64> {
    super::Id::parse(session_id).map(|id| id.created_at().timestamp_millis())
}

/// Whether a token of `role` in session `session_id` may still be used, given the
/// account's revocation state: the account is active, its role is the token's, the
/// session began after the last "end every session", and it was not ended by itself.
pub fn session_live(state: &Revocation, role: Role, session_id: &str) -> bool {
    let Some(began) = session_began_ms(session_id) else {
        return false;
    };
    state.active
        && state.role == role
        && began > state.valid_after_ms
        && !state.revoked.contains_key(session_id)
}

/// The revoked-session list after ending `session_id` (ending at `ends`) at `now`:
/// entries of sessions that have ended anyway are dropped. `None` when the list would
/// exceed [`MAX_REVOKED_SESSIONS`]: then every session of the account is ended.
pub fn with_revoked(
    revoked: &BTreeMap<String, i64>,
    session_id: &str,
    ends: i64,
    now: i64,
) -> Option<BTreeMap<String, i64>> {
    let mut next: BTreeMap<String, i64> = revoked
        .iter()
        .filter(|(_, end)| **end > now)
        .map(|(id, end)| (id.clone(), *end))
        .collect();
    next.insert(session_id.to_string(), ends.max(now + 1));
    (next.len() <= MAX_REVOKED_SESSIONS).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Id;
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_refresh_token_never_outlives_its_session() {
        assert_eq!(
            refresh_usable_until(0, REFRESH_ABSOLUTE_SECS, REFRESH_IDLE_SECS),
            REFRESH_IDLE_SECS
        );
        assert_eq!(refresh_usable_until(1_000, 2_000, REFRESH_IDLE_SECS), 2_000);
    }

    #[test]
    fn staff_sessions_idle_out_after_thirty_minutes_and_end_after_twelve_hours() {
        for role in [Role::Provider, Role::Admin] {
            let life = lifetime(role, PATIENT_DEFAULT);
            assert_eq!((life.idle_secs, life.absolute_secs), (1_800, 43_200));
        }
        let ends = 43_200;
        assert!(refresh_allowed(0, 1_799, ends, STAFF.idle_secs));
        assert!(!refresh_allowed(0, 1_800, ends, STAFF.idle_secs));
        // Used every 20 minutes, still refused at the absolute end.
        assert!(refresh_allowed(42_000, 43_199, ends, STAFF.idle_secs));
        assert!(!refresh_allowed(42_000, 43_200, ends, STAFF.idle_secs));
    }

    #[test]
    fn patients_get_the_configured_lifetime_within_bounds() {
        assert_eq!(lifetime(Role::Patient, PATIENT_DEFAULT), PATIENT_DEFAULT);
        let custom = Lifetime::patient(3_600, 86_400).unwrap();
        assert_eq!(lifetime(Role::Patient, custom), custom);
        assert!(Lifetime::patient(60, 86_400).is_err(), "idle below 15 min");
        assert!(
            Lifetime::patient(7_200, 3_600).is_err(),
            "idle beyond absolute"
        );
        assert!(
            Lifetime::patient(3_600, 31 * 86_400).is_err(),
            "beyond 30 days"
        );
    }

    fn id_at(ms: i64) -> String {
        Id::generate(Utc.timestamp_millis_opt(ms).unwrap()).to_string()
    }

    fn state() -> Revocation {
        Revocation {
            active: true,
            role: Role::Patient,
            valid_after_ms: 10_000,
            revoked: BTreeMap::new(),
        }
    }

    #[test]
    fn a_session_is_live_only_while_nothing_ended_it() {
        let sid = id_at(20_000);
        assert!(session_live(&state(), Role::Patient, &sid));
        assert_eq!(session_began_ms(&sid), Some(20_000));
        // Logout-all (or password change, disable, role change) after it began.
        let ended = Revocation {
            valid_after_ms: 20_000,
            ..state()
        };
        assert!(!session_live(&ended, Role::Patient, &sid));
        assert!(session_live(&ended, Role::Patient, &id_at(20_001)));
        // Disabled, role changed, this session ended by itself.
        let disabled = Revocation {
            active: false,
            ..state()
        };
        assert!(!session_live(&disabled, Role::Patient, &sid));
        assert!(!session_live(&state(), Role::Provider, &sid));
        let mut one = state();
        one.revoked.insert(sid.clone(), 99);
        assert!(!session_live(&one, Role::Patient, &sid));
        assert!(session_live(&one, Role::Patient, &id_at(20_002)));
        // An id we did not generate never passes.
        assert!(!session_live(&state(), Role::Patient, "not-a-ulid"));
    }

    #[test]
    fn the_revoked_list_forgets_ended_sessions_and_is_bounded() {
        let mut list = BTreeMap::new();
        list.insert("old".to_string(), 50);
        list.insert("live".to_string(), 500);
        let next = with_revoked(&list, "new", 900, 100).unwrap();
        assert_eq!(next.keys().collect::<Vec<_>>(), ["live", "new"]);
        let full: BTreeMap<String, i64> = (0..MAX_REVOKED_SESSIONS)
            .map(|i| (format!("s{i}"), 1_000))
            .collect();
        assert!(with_revoked(&full, "one-more", 1_000, 100).is_none());
    }
}
