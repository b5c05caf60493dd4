//! Stripe plumbing shared by the billing and stripe-webhook functions and the fake:
//! the names of the Stripe secrets, the idempotency keys sent to Stripe, and webhook
//! signatures (`Stripe-Signature: t=…,v1=…`) made and verified as Stripe does.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far a signature's timestamp may be from now (Stripe's libraries' default).
pub const TOLERANCE_SECS: i64 = 300;
/// The header Stripe signs its deliveries with.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// The secret-store name of the stage's Stripe secret API key.
pub fn api_key_secret(stage: &str) -> String {
    format!("docare/{stage}/stripe/api_key")
}

/// The secret-store name of the stage's webhook endpoint secret (`whsec_…`).
pub fn webhook_secret_name(stage: &str) -> String {
    format!("docare/{stage}/stripe/webhook_secret")
}

/// The `Idempotency-Key` sent to Stripe: Stripe's keys are account-wide, so the
/// client's key is bound to the user and the route (a client key reused by another user
/// or on another route is another Stripe key). Hex of SHA-256, 64 characters.
pub fn stripe_idempotency_key(user_id: &str, route: &str, client_key: &str) -> String {
    let digest = Sha256::digest(format!("{user_id}\n{route}\n{client_key}").as_bytes());
    hex::encode(digest)
}

/// Why a delivery's signature was refused (each is a 400 that changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `Stripe-Signature` header value Stripe would send for `body` at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

/// Verifies a `Stripe-Signature` header over the raw body: one `t`, one or more `v1`
/// (any other scheme such as `v0` is ignored), the HMAC-SHA256 of `"{t}.{body}"` under
/// `secret` compared in constant time with each `v1`, and `t` within
/// [`TOLERANCE_SECS`] of `now_secs`. Returns the timestamp.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &str,
    now_secs: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed);
                }
                let t: i64 = value.parse().map_err(|_| SignatureError::Malformed)?;
                timestamp = Some(t);
            }
            "v1" => {
                // A v1 that is not 64 hex digits can never match; it is skipped.
                if let Ok(bytes) = hex::decode(value) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, body);
    // Every candidate is compared (no early exit on a match).
    let mut matched = subtle::Choice::from(0);
    for candidate in &signatures {
        if candidate.len() == expected.len() {
            matched |= candidate.as_slice().ct_eq(&expected);
        }
    }
    if bool::from(matched) {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A new `whsec_…` secret (the fake's, written to the local data folder).
pub fn new_webhook_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    #[test]
    fn a_signature_verifies_within_the_tolerance_only() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 1_700_000_000 + 300),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 1_700_000_000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 1_700_000_000 - 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn any_change_to_body_secret_or_timestamp_is_refused() {
        let now = 1_700_000_000;
        let header = sign(SECRET, now, BODY);
        let mut tampered = BODY.to_vec();
        tampered[5] ^= 1;
        assert_eq!(
            verify(Some(&header), &tampered, SECRET, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, "whsec_other", now),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace(&format!("t={now}"), &format!("t={}", now + 1));
        assert_eq!(
            verify(Some(&moved), BODY, SECRET, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn several_v1_are_allowed_and_other_schemes_ignored() {
        let now = 1_700_000_000;
        let good = sign(SECRET, now, BODY);
        let v1 = good.split_once(",v1=").map(|(_, v)| v.to_string()).unwrap();
        let header = format!("t={now},v1={},v0={v1},v1={v1}", "ab".repeat(32));
        assert_eq!(verify(Some(&header), BODY, SECRET, now), Ok(now));
        // A v0 alone (the test-mode scheme) is not a v1.
        let only_v0 = format!("t={now},v0={v1}");
        assert_eq!(
            verify(Some(&only_v0), BODY, SECRET, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let now = 1_700_000_000;
        assert_eq!(
            verify(None, BODY, SECRET, now),
            Err(SignatureError::Missing)
        );
        for header in ["", "v1=abc", "t=abc,v1=00", "t=1,t=2,v1=00", "garbage"] {
            assert!(verify(Some(header), BODY, SECRET, now).is_err(), "{header}");
        }
    }

    #[test]
    fn stripe_keys_bind_the_user_and_the_route() {
        let a = stripe_idempotency_key("u1", "POST /api/v1/payments", "k");
        assert_eq!(a.len(), 64);
        assert_eq!(
            a,
            stripe_idempotency_key("u1", "POST /api/v1/payments", "k")
        );
        assert_ne!(
            a,
            stripe_idempotency_key("u2", "POST /api/v1/payments", "k")
        );
        assert_ne!(a, stripe_idempotency_key("u1", "POST /api/v1/refunds", "k"));
    }
}
