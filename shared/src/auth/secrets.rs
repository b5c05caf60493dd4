//! Random secrets handed to clients (tokens, codes) and how they are stored: only as a
//! SHA-256 hash. The secrets carry 128+ bits (or are attempt-limited), so a fast hash
//! is enough and lookups stay one `GetItem`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// A 256-bit random token, base64url (43 characters).
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored in place of a token or code.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A numeric one-time code (e-mail/SMS second factor).
pub fn numeric_code(digits: u32) -> String {
    let bound = 10u32.pow(digits);
    format!(
        "{:0width$}",
        OsRng.gen_range(0..bound),
        width = digits as usize
    )
}

/// A recovery code: 80 random bits as `xxxx-xxxx-xxxx-xxxx` (base32, no padding).
pub fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let chars: Vec<char> = (0..16)
        .map(|_| ALPHABET[OsRng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Recovery codes are compared case- and separator-insensitively.
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_unique_and_hash_stably() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn codes_have_their_shape() {
        let code = numeric_code(6);
        assert_eq!(code.len(), 6);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        let recovery = recovery_code();
        assert_eq!(recovery.len(), 19);
        assert_eq!(normalize_recovery_code(&recovery.to_lowercase()).len(), 16);
    }
}
