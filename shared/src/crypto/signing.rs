//! ECDSA P-256 with SHA-256 (JWS `ES256`) around the key port's `sign` and
//! `public_key`: the conversions between KMS's encodings (DER signatures, DER
//! SubjectPublicKeyInfo) and JOSE's (raw `r || s`, JWK coordinates), and local
//! verification, all with the RustCrypto `p256`/`ecdsa` crates, never by hand.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

/// Why a public key or signature could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("not a P-256 SubjectPublicKeyInfo")]
    PublicKey,
    #[error("not a DER ECDSA P-256 signature")]
    Signature,
}

/// A DER `ECDSA-Sig-Value` (what KMS `Sign` returns) as JWS's fixed `r || s`.
pub fn der_to_raw(der: &[u8]) -> Result<[u8; 64], SigningError> {
    let signature = Signature::from_der(der).map_err(|_| SigningError::Signature)?;
    let bytes = signature.to_bytes();
    let mut raw = [0u8; 64];
    raw.copy_from_slice(bytes.as_slice());
    Ok(raw)
}

/// A P-256 public key read from its DER SubjectPublicKeyInfo (KMS `GetPublicKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SigningError> {
        let key = VerifyingKey::from_public_key_der(der).map_err(|_| SigningError::PublicKey)?;
        Ok(Self { key })
    }

    /// Whether `signature` (`r || s`) is this key's ES256 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match Signature::from_slice(signature) {
            Ok(signature) => self.key.verify(message, &signature).is_ok(),
            Err(_) => false,
        }
    }

    /// The affine coordinates, base64url without padding (JWK `x`, `y`).
    pub fn jwk_coordinates(&self) -> (String, String) {
        let point = self.key.to_sec1_point(false);
        let bytes = point.as_bytes();
        // Uncompressed SEC1: 0x04 || X (32 bytes) || Y (32 bytes).
        (
            URL_SAFE_NO_PAD.encode(&bytes[1..33]),
            URL_SAFE_NO_PAD.encode(&bytes[33..65]),
        )
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): a `kid` that names this key
    /// and nothing else (no account id, no key ARN).
    pub fn thumbprint(&self) -> String {
        let (x, y) = self.jwk_coordinates();
        // Required members in lexicographic order, no whitespace (RFC 7638 §3.2).
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).expect("a valid scalar")
    }

    #[test]
    fn a_der_signature_converts_to_raw_and_verifies() {
        let signing = key();
        let signature: Signature = signing.sign(b"header.claims");
        let der = signature.to_der();
        let raw = der_to_raw(der.as_bytes()).expect("der");
        assert_eq!(raw.as_slice(), signature.to_bytes().as_slice());
        let spki = signing.verifying_key().to_public_key_der().expect("spki");
        let public = PublicKey::from_spki_der(spki.as_bytes()).expect("public key");
        assert!(public.verifies(b"header.claims", &raw));
        assert!(!public.verifies(b"header.claimz", &raw));
        assert!(!public.verifies(b"header.claims", &raw[..63]));
        assert!(der_to_raw(&raw).is_err(), "raw is not DER");
    }
}
