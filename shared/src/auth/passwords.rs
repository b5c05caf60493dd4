//! Password hashing: argon2id at OWASP's parameters (PHC strings, so parameters can rise
//! and old hashes are re-hashed on the next login), and verification of the bcrypt
//! hashes imported from the predecessor system, which are upgraded the same way.

use crate::auth::Role;
use crate::ApiError;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB, 2 iterations, 1 lane.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;
pub const MIN_LENGTH: usize = 8;
/// Providers and administrators read PHI: their passwords are longer.
pub const STAFF_MIN_LENGTH: usize = 12;
/// The lowest zxcvbn score (0-4) a new password may have: 3 is "safely unguessable"
/// (about 10^10 guesses), what the estimator's authors recommend for accounts that
/// matter.
pub const MIN_SCORE: u8 = 3;
/// Bounded so a huge password cannot be used to burn CPU.
pub const MAX_LENGTH: usize = 128;

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).map_err(ApiError::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The length rules, checked on every new password.
pub fn validate(password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Err(ApiError::validation(format!(
            "password: must be at least {MIN_LENGTH} characters"
        )));
    }
    if chars > MAX_LENGTH {
        return Err(ApiError::validation(format!(
            "password: must be at most {MAX_LENGTH} characters"
        )));
    }
    Ok(())
}

/// The rules for a new password of an account with this role: [`validate`]'s length
/// rules, at least [`STAFF_MIN_LENGTH`] characters for staff, and a strength of
/// [`MIN_SCORE`] by the zxcvbn estimator, with the account's own e-mail and name (and
/// the service's name) as words an attacker would try first. The error says why, never
/// what the password was.
pub fn validate_new(password: &str, role: Role, user_inputs: &[&str]) -> Result<(), ApiError> {
    validate(password)?;
    if role != Role::Patient && password.chars().count() < STAFF_MIN_LENGTH {
        return Err(ApiError::validation(format!(
            "password: staff passwords must be at least {STAFF_MIN_LENGTH} characters"
        )));
    }
    let mut inputs: Vec<&str> = vec!["docare", "DoCare"];
    for input in user_inputs {
        inputs.push(input);
        // The parts of an address or a name are guessed one by one, too.
        inputs.extend(
            input
                .split(|c: char| !c.is_alphanumeric())
                .filter(|part| part.len() >= 3),
        );
    }
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    if u8::from(estimate.score()) >= MIN_SCORE {
        return Ok(());
    }
    let mut message =
        String::from("password: too easy to guess; use a longer passphrase of unrelated words");
    if let Some(warning) = estimate.feedback().and_then(|f| f.warning()) {
        message.push_str(&format!(" ({warning})"));
    }
    Err(ApiError::validation(message))
}

/// Hashes a new password (CPU-bound: call through [`hash_blocking`] on request paths).
pub fn hash(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    /// Correct; `rehash` when the stored hash is bcrypt or weaker argon2 parameters.
    Yes {
        rehash: bool,
    },
}

/// Checks a password against an argon2 PHC string or a bcrypt `$2a$`/`$2b$`/`$2y$` hash.
pub fn verify(password: &str, stored: &str) -> Verified {
    if password.chars().count() > MAX_LENGTH {
        return Verified::No;
    }
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verified::Yes { rehash: true },
            _ => Verified::No,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verified::No;
    };
    let Ok(hasher) = argon2() else {
        return Verified::No;
    };
    if hasher
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verified::No;
    }
    Verified::Yes {
        rehash: needs_rehash(&parsed),
    }
}

fn needs_rehash(parsed: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(parsed) else {
        return true;
    };
    parsed.algorithm.as_str() != "argon2id"
        || params.m_cost() < MEMORY_KIB
        || params.t_cost() < ITERATIONS
}

/// A hash of a random password, verified against when the account does not exist so
/// that a login for an unknown e-mail costs as long as one for a known e-mail.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&crate::auth::secrets::token()).unwrap_or_default())
}

/// [`hash`] off the async executor.
pub async fn hash_blocking(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(ApiError::internal)?
}

/// [`verify`] of a guess against `account`'s stored hash, off the async executor, and
/// counted ([`crate::auth::checks`]).
pub async fn verify_account(account: &str, password: String, stored: String) -> Verified {
    crate::auth::checks::note(crate::auth::checks::Check::Password, account);
    verify_blocking(password, stored).await
}

/// [`verify`] off the async executor.
pub async fn verify_blocking(password: String, stored: String) -> Verified {
    tokio::task::spawn_blocking(move || verify(&password, &stored))
        .await
        .unwrap_or(Verified::No)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_with_owasp_parameters() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            verify("correct horse battery", &stored),
            Verified::Yes { rehash: false }
        );
        assert_eq!(verify("correct horse batterY", &stored), Verified::No);
    }

    #[test]
    fn predecessor_bcrypt_hashes_verify_and_ask_for_an_upgrade() {
        // Made by the bcrypt crate at cost 4 to keep the test fast; the prefix and format
        // are those of the predecessor's `$2b$12$` hashes.
        let stored = bcrypt::hash_with_result("legacy-pass", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        assert!(stored.starts_with("$2a$04$"));
        assert_eq!(
            verify("legacy-pass", &stored),
            Verified::Yes { rehash: true }
        );
        assert_eq!(verify("legacy-pasS", &stored), Verified::No);
    }

    #[test]
    fn weaker_argon2_parameters_ask_for_a_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"some password", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert_eq!(
            verify("some password", &weak),
            Verified::Yes { rehash: true }
        );
    }

    #[test]
    fn length_rules_and_garbage_hashes() {
        assert!(validate("short").is_err());
        assert!(validate(&"x".repeat(MAX_LENGTH + 1)).is_err());
        assert!(validate("long enough").is_ok());
        assert_eq!(verify("anything", "not a hash"), Verified::No);
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason_and_without_the_password() {
        for weak in ["password1", "long enough", "qwertyuiop", "12345678aA"] {
            let err = validate_new(weak, Role::Patient, &[]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("too easy to guess"), "{weak}: {text}");
            assert!(!text.contains(weak), "{weak} echoed");
        }
        // The account's own address and name are among the first guesses.
        let inputs = ["maria.gonzalez@example.com", "Maria Gonzalez"];
        let own = "maria.gonzalez@example.com";
        assert!(validate_new(own, Role::Patient, &inputs).is_err());
        assert!(validate_new(own, Role::Patient, &[]).is_ok());
        // So is the service's name.
        assert!(validate_new("docare2024", Role::Patient, &[]).is_err());
        let strong = "violet anchor meadow";
        assert!(validate_new(strong, Role::Patient, &inputs).is_ok());
        // Staff: at least 12 characters, however random.
        let short = "Xq7!vR2#kLp";
        assert!(validate_new(short, Role::Patient, &[]).is_ok());
        let staff = validate_new(short, Role::Provider, &[]).unwrap_err();
        assert!(staff.to_string().contains("at least 12"), "{staff}");
        assert!(validate_new("Xq7!vR2#kLp9", Role::Admin, &[]).is_ok());
        assert_eq!(verify("anything", ""), Verified::No);
    }
}
