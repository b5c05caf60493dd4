//! TOTP (RFC 6238) as authenticator apps expect it: SHA-1, 6 digits, 30-second steps,
//! one step of drift either way, a 160-bit secret. The code generation is the `totp-rs`
//! crate's; this module adds replay protection: callers store the last accepted step and
//! a code is only accepted for a later step.

use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};
use zeroize::Zeroizing;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: usize = 6;
pub const SECRET_LEN: usize = 20;
pub const ISSUER: &str = "DoCare";

/// A fresh 160-bit secret.
pub fn new_secret() -> Zeroizing<Vec<u8>> {
    let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
    OsRng.fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8], account: &str) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS as u64,
        secret.to_vec(),
        Some(ISSUER.to_string()),
        account.replace(':', ""),
    )
    .ok()
}

/// The secret as base32 (what users type into an app).
pub fn base32(secret: &[u8]) -> String {
    match Secret::Raw(secret.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => String::new(),
    }
}

/// The raw secret of a base32 text.
pub fn decode_base32(text: &str) -> Option<Vec<u8>> {
    Secret::Encoded(text.to_string()).to_bytes().ok()
}

/// The `otpauth://totp/…` URI for QR codes.
pub fn otpauth_uri(secret: &[u8], account: &str) -> Option<String> {
    totp(secret, account).map(|t| t.get_url())
}

/// The time step the code is valid for (current ±1), if any, and only when it is later
/// than `last_step`: a code is never accepted twice.
pub fn accepted_step(
    secret: &[u8],
    code: &str,
    now_secs: i64,
    last_step: Option<i64>,
) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) || now_secs < 0 {
        return None;
    }
    let generator = totp(secret, "")?;
    let current = now_secs / STEP_SECS;
    let mut accepted = None;
    for step in [current - 1, current, current + 1] {
        if step < 0 || last_step.is_some_and(|last| step <= last) {
            continue;
        }
        let expected = generator.generate((step * STEP_SECS) as u64);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            accepted = Some(step);
        }
    }
    accepted
}

/// The code for a moment (tests and the demo tooling only).
pub fn code_at(secret: &[u8], now_secs: i64) -> String {
    totp(secret, "")
        .map(|t| t.generate(now_secs.max(0) as u64))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B, SHA-1 secret, T = 59 -> 94287082 (8 digits); 6 digits: 287082.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59), "287082");
        assert_eq!(accepted_step(secret, "287082", 59, None), Some(1));
    }

    #[test]
    fn drift_of_one_step_is_accepted_and_replay_is_not() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let previous = code_at(&secret, now - 30);
        let step = accepted_step(&secret, &previous, now, None).unwrap();
        assert_eq!(step, now / 30 - 1);
        assert_eq!(accepted_step(&secret, &previous, now, Some(step)), None);
        assert_eq!(
            accepted_step(&secret, &code_at(&secret, now - 90), now, None),
            None
        );
        assert_eq!(accepted_step(&secret, "12345", now, None), None);
        assert_eq!(accepted_step(&secret, "abcdef", now, None), None);
    }

    #[test]
    fn uri_names_the_issuer_and_algorithm() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "pat@example.com").unwrap();
        assert!(uri.starts_with("otpauth://totp/DoCare:"));
        assert!(uri.contains(&format!("secret={}", base32(&secret))));
        assert_eq!(base32(&secret).len(), 32);
    }
}
