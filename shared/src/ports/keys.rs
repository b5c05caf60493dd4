//! The key port (KMS): data keys for envelope encryption, always bound to an encryption
//! context. The context is logged in CloudTrail, so it names ids and purposes, never PHI.

use async_trait::async_trait;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// KMS encryption context: decrypting with a different context fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(pub BTreeMap<String, String>);

impl EncryptionContext {
    pub fn new<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// An unambiguous byte encoding (length-prefixed, key order), for use as AAD.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            for part in [k, v] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }
}

/// A fresh 256-bit data key: the plaintext (wiped on drop) and its KMS-wrapped form.
pub struct DataKey {
    pub key_id: String,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext: Vec<u8>,
}

/// A data key re-wrapped under another KMS key: the new wrapped form, and the key that
/// now wraps it as KMS names it (an ARN on AWS), to store beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    pub key_id: String,
    pub ciphertext: Vec<u8>,
}

/// An unwrapped data key and the KMS key that had wrapped it.
pub struct Unwrapped {
    pub key_id: String,
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// The largest message [`KeyService::sign`] takes (KMS's limit for `RAW` messages).
pub const MAX_SIGN_MESSAGE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A message to sign longer than [`MAX_SIGN_MESSAGE`]: a caller's bug.
    #[error("message too long to sign")]
    MessageTooLong,
    /// Wrong context, tampered or foreign ciphertext: KMS's InvalidCiphertextException.
    #[error("invalid ciphertext or encryption context")]
    InvalidCiphertext,
    #[error("key not found")]
    KeyNotFound,
    /// The key exists but cannot be used (disabled, pending deletion, access denied).
    #[error("key unusable")]
    KeyUnusable,
    #[error("key service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<KeyError> for crate::ApiError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::InvalidCiphertext | KeyError::MessageTooLong => {
                crate::ApiError::internal(err)
            }
            _ => crate::ApiError::unavailable("keys", err),
        }
    }
}

#[async_trait]
pub trait KeyService: Send + Sync {
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError>;
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Unwrapped, KeyError>;
    /// Re-wraps a data key under another KMS key without exposing it (key rotation):
    /// the plaintext key never leaves the key service, and no data ciphertext changes.
    /// A wrong source context is [`KeyError::InvalidCiphertext`], an unknown destination
    /// [`KeyError::KeyNotFound`].
    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<Rewrapped, KeyError>;
    /// Signs `message` (at most [`MAX_SIGN_MESSAGE`] bytes) with an asymmetric
    /// `ECC_NIST_P256` key, ECDSA with SHA-256 (KMS `Sign`, `ECDSA_SHA_256`, message type
    /// `RAW`), and returns the signature as JWS wants it: `r || s`, 32 bytes each. The
    /// private key never leaves the key service. A symmetric key is
    /// [`KeyError::KeyUnusable`], an unknown one [`KeyError::KeyNotFound`].
    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<[u8; 64], KeyError>;
    /// The public half of an `ECC_NIST_P256` signing key as a DER SubjectPublicKeyInfo
    /// (KMS `GetPublicKey`), for verifying locally and for the JWKS.
    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>, KeyError>;
    /// The id the key service reports for a key given by any of its names (an ARN on
    /// AWS, whether asked by key id, ARN or alias), so that the `kms_key_id` stored with
    /// a wrapped key can be compared with a configured key name.
    async fn resolve_key_id(&self, key_id: &str) -> Result<String, KeyError>;
    /// Cheap check that the key exists and is enabled, for `/health`.
    async fn check(&self, key_id: &str) -> Result<(), KeyError>;
}
