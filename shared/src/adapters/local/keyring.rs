//! The local key service: master keys in `<data>/keyring.json` (mode 0600, created on
//! first run) wrap data keys with AES-256-GCM, binding the encryption context as
//! associated data, so a context mismatch fails exactly as it does with KMS. Signing
//! keys (`ECC_NIST_P256`, like KMS asymmetric keys) live in the same file: they sign
//! and give out their public half, and their private half never leaves this module.

use super::files::write_private;
use crate::ports::keys::{
    DataKey, EncryptionContext, KeyError, KeyService, Rewrapped, Unwrapped, MAX_SIGN_MESSAGE,
};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"LKM1";
const NONCE_LEN: usize = 12;

#[derive(Serialize, Deserialize, Default)]
struct RingFile {
    keys: BTreeMap<String, StoredKey>,
}

/// What a key is for, as KMS's key spec says it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Spec {
    /// AES-256, `ENCRYPT_DECRYPT` (a ring written before signing keys has only these).
    #[default]
    SymmetricDefault,
    /// ECDSA P-256, `SIGN_VERIFY`: `material` is the private scalar.
    EccNistP256,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    #[serde(with = "crate::encoding::base64_bytes")]
    material: Vec<u8>,
    created_at: String,
    #[serde(default)]
    spec: Spec,
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.material);
    }
}

/// One master key in memory; `created_at` is kept so rewriting the file for a new key
/// (rotation adds one) leaves the others' creation times as they were.
struct RingKey {
    material: Zeroizing<Vec<u8>>,
    created_at: String,
    spec: Spec,
}

/// Local stand-in for KMS. It holds any number of master keys, each named by a key id
/// like a KMS key, so key rotation (re-wrapping data keys under a second key) can be
/// run and tested without AWS; a wrapped key names the master key that wrapped it.
pub struct LocalKeyring {
    path: PathBuf,
    keys: RwLock<BTreeMap<String, RingKey>>,
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> KeyError {
    KeyError::Unavailable(Box::new(err))
}

impl LocalKeyring {
    /// Opens the key ring file, creating an empty one on first run.
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let ring: RingFile = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(unavailable)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let ring = RingFile::default();
                write_private(
                    path,
                    &serde_json::to_vec_pretty(&ring).map_err(unavailable)?,
                )
                .map_err(unavailable)?;
                ring
            }
            Err(err) => return Err(unavailable(err)),
        };
        let keys = ring
            .keys
            .iter()
            .map(|(id, key)| {
                (
                    id.clone(),
                    RingKey {
                        material: Zeroizing::new(key.material.clone()),
                        created_at: key.created_at.clone(),
                        spec: key.spec,
                    },
                )
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            keys: RwLock::new(keys),
        })
    }

    /// Adds a master key (a no-op when it exists) and persists the ring.
    pub fn create_key(&self, key_id: &str) -> Result<(), KeyError> {
        self.add(key_id, Spec::SymmetricDefault)
    }

    /// Adds an `ECC_NIST_P256` signing key (a no-op when it exists) and persists the ring.
    pub fn create_signing_key(&self, key_id: &str) -> Result<(), KeyError> {
        self.add(key_id, Spec::EccNistP256)
    }

    fn add(&self, key_id: &str, spec: Spec) -> Result<(), KeyError> {
        let mut keys = self.keys.write().map_err(|_| KeyError::KeyUnusable)?;
        if let Some(existing) = keys.get(key_id) {
            return if existing.spec == spec {
                Ok(())
            } else {
                Err(KeyError::KeyUnusable)
            };
        }
        let material = loop {
            let mut material = Zeroizing::new(vec![0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut material);
            // A P-256 scalar must be below the group order (all but ~2^-32 of draws).
            if spec == Spec::SymmetricDefault || SigningKey::from_slice(&material).is_ok() {
                break material;
            }
        };
        keys.insert(
            key_id.to_string(),
            RingKey {
                material,
                created_at: chrono::Utc::now().to_rfc3339(),
                spec,
            },
        );
        let ring = RingFile {
            keys: keys
                .iter()
                .map(|(id, key)| {
                    (
                        id.clone(),
                        StoredKey {
                            material: key.material.to_vec(),
                            created_at: key.created_at.clone(),
                            spec: key.spec,
                        },
                    )
                })
                .collect(),
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&ring).map_err(unavailable)?);
        write_private(&self.path, &json).map_err(unavailable)
    }

    fn cipher(&self, key_id: &str) -> Result<Aes256Gcm, KeyError> {
        let keys = self.keys.read().map_err(|_| KeyError::KeyUnusable)?;
        let key = keys.get(key_id).ok_or(KeyError::KeyNotFound)?;
        if key.spec != Spec::SymmetricDefault {
            return Err(KeyError::KeyUnusable);
        }
        Aes256Gcm::new_from_slice(&key.material).map_err(|_| KeyError::KeyUnusable)
    }

    /// The signing key `key_id`, only inside this module (wiped on drop by `p256`).
    fn signer(&self, key_id: &str) -> Result<SigningKey, KeyError> {
        let keys = self.keys.read().map_err(|_| KeyError::KeyUnusable)?;
        let key = keys.get(key_id).ok_or(KeyError::KeyNotFound)?;
        if key.spec != Spec::EccNistP256 {
            return Err(KeyError::KeyUnusable);
        }
        SigningKey::from_slice(&key.material).map_err(|_| KeyError::KeyUnusable)
    }

    fn exists(&self, key_id: &str) -> Result<(), KeyError> {
        let keys = self.keys.read().map_err(|_| KeyError::KeyUnusable)?;
        keys.get(key_id).map(|_| ()).ok_or(KeyError::KeyNotFound)
    }

    fn aad(key_id: &str, context: &EncryptionContext) -> Vec<u8> {
        let mut aad = MAGIC.to_vec();
        aad.extend_from_slice(&(key_id.len() as u32).to_be_bytes());
        aad.extend_from_slice(key_id.as_bytes());
        aad.extend_from_slice(&context.canonical_bytes());
        aad
    }

    fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KeyError> {
        let cipher = self.cipher(key_id)?;
        let id_len = u8::try_from(key_id.len()).map_err(|_| KeyError::KeyNotFound)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &Self::aad(key_id, context),
                },
            )
            .map_err(|_| KeyError::KeyUnusable)?;
        let mut out = MAGIC.to_vec();
        out.push(id_len);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap_key(&self, blob: &[u8], context: &EncryptionContext) -> Result<Unwrapped, KeyError> {
        let rest = blob
            .strip_prefix(MAGIC)
            .ok_or(KeyError::InvalidCiphertext)?;
        let (&id_len, rest) = rest.split_first().ok_or(KeyError::InvalidCiphertext)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + 16 {
            return Err(KeyError::InvalidCiphertext);
        }
        let (id, rest) = rest.split_at(id_len);
        let key_id = std::str::from_utf8(id).map_err(|_| KeyError::InvalidCiphertext)?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let cipher = match self.cipher(key_id) {
            Ok(cipher) => cipher,
            Err(KeyError::KeyNotFound) => return Err(KeyError::InvalidCiphertext),
            Err(err) => return Err(err),
        };
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &Self::aad(key_id, context),
                },
            )
            .map_err(|_| KeyError::InvalidCiphertext)?;
        Ok(Unwrapped {
            key_id: key_id.to_string(),
            plaintext: Zeroizing::new(plaintext),
        })
    }
}

#[async_trait]
impl KeyService for LocalKeyring {
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        let mut plaintext = Zeroizing::new(vec![0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut plaintext);
        let ciphertext = self.wrap(key_id, &plaintext, context)?;
        Ok(DataKey {
            key_id: key_id.to_string(),
            plaintext,
            ciphertext,
        })
    }

    async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Unwrapped, KeyError> {
        self.unwrap_key(ciphertext, context)
    }

    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<Rewrapped, KeyError> {
        let unwrapped = self.unwrap_key(ciphertext, context)?;
        let ciphertext = self.wrap(
            destination_key_id,
            &unwrapped.plaintext,
            destination_context,
        )?;
        Ok(Rewrapped {
            key_id: destination_key_id.to_string(),
            ciphertext,
        })
    }

    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<[u8; 64], KeyError> {
        if message.len() > MAX_SIGN_MESSAGE {
            return Err(KeyError::MessageTooLong);
        }
        let signature: Signature = self.signer(key_id)?.sign(message);
        let mut raw = [0u8; 64];
        raw.copy_from_slice(signature.to_bytes().as_slice());
        Ok(raw)
    }

    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>, KeyError> {
        let der = self
            .signer(key_id)?
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| KeyError::KeyUnusable)?;
        Ok(der.as_bytes().to_vec())
    }

    async fn resolve_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        self.exists(key_id).map(|_| key_id.to_string())
    }

    async fn check(&self, key_id: &str) -> Result<(), KeyError> {
        self.exists(key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_file_is_private_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.json");
        let ring = LocalKeyring::open(&path).expect("open");
        ring.create_key("local/a").expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ctx = EncryptionContext::new([("purpose", "test")]);
        let wrapped = ring
            .wrap("local/a", b"0123456789abcdef0123456789abcdef", &ctx)
            .expect("wrap");
        let reopened = LocalKeyring::open(&path).expect("reopen");
        let unwrapped = reopened.unwrap_key(&wrapped, &ctx).expect("unwrap");
        assert_eq!(
            unwrapped.plaintext.as_slice(),
            b"0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn adding_a_key_keeps_the_others_and_their_creation_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.json");
        let ring = LocalKeyring::open(&path).expect("open");
        ring.create_key("local/a").expect("create a");
        let created = |name: &str| -> String {
            let file: RingFile =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
            file.keys
                .get(name)
                .map(|k| k.created_at.clone())
                .expect("key in file")
        };
        let a_born = created("local/a");
        std::thread::sleep(std::time::Duration::from_millis(5));
        ring.create_key("local/b").expect("create b");
        ring.create_key("local/a").expect("existing: no-op");
        assert_eq!(created("local/a"), a_born, "a's creation time is kept");
        assert_ne!(created("local/b"), a_born);
        let reopened = LocalKeyring::open(&path).expect("reopen");
        assert!(reopened.cipher("local/a").is_ok() && reopened.cipher("local/b").is_ok());
    }
}
