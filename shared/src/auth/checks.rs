//! Counts of the credential checks actually made, per account: argon2/bcrypt
//! verifications of a guess against the account's password hash, and comparisons of a
//! guess with its TOTP secret, recovery codes or sent code. Race tests read them to
//! prove that a limit bounds the guesses evaluated, not only the answers. Counted only
//! in builds with the `testing` feature; elsewhere these are no-ops.

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// A password against the account's stored hash (the decoy hash is not counted).
    Password,
    /// A second-factor code (TOTP, recovery, sent) against the account's secrets.
    Code,
}

#[cfg(feature = "testing")]
mod counts {
    use super::Check;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    type Counts = Mutex<HashMap<(String, Check), u64>>;

    fn counts() -> &'static Counts {
        static COUNTS: OnceLock<Counts> = OnceLock::new();
        COUNTS.get_or_init(Counts::default)
    }

    pub fn note(check: Check, account: &str) {
        if let Ok(mut counts) = counts().lock() {
            *counts.entry((account.to_string(), check)).or_default() += 1;
        }
    }

    pub fn made(check: Check, account: &str) -> u64 {
        counts()
            .lock()
            .ok()
            .and_then(|c| c.get(&(account.to_string(), check)).copied())
            .unwrap_or(0)
    }
}

/// Notes one check of a guess against `account`'s credentials.
pub fn note(check: Check, account: &str) {
    #[cfg(feature = "testing")]
    counts::note(check, account);
    #[cfg(not(feature = "testing"))]
    let _ = (check, account);
}

/// How many checks of this kind were made against `account` (0 without `testing`).
pub fn made(check: Check, account: &str) -> u64 {
    #[cfg(feature = "testing")]
    return counts::made(check, account);
    #[cfg(not(feature = "testing"))]
    {
        let _ = (check, account);
        0
    }
}
