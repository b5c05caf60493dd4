//! Blind indexes: equality lookups on encrypted values (e-mail) without storing the
//! plaintext. The index value is HMAC-SHA-256 over the normalized value, under a
//! per-index key that is itself a KMS-wrapped data key stored in the table, so a copy of
//! the table alone cannot be brute-forced offline.
//!
//! Only high-entropy identifiers are indexed. Never index low-entropy PHI (a date of
//! birth, an SSN) on its own: its whole value space is small enough to enumerate.

use super::envelope::{from_keys, unwrap_record, CryptoError};
use crate::ports::db::{item, Condition, Database, DbError, Key, Value};
use crate::ports::keys::{EncryptionContext, KeyService};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The indexes that exist; each has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexName {
    Email,
    /// Documents' content: the keyed HMAC of an upload's SHA-256, so an owner's
    /// duplicate uploads are found without a clear hash in the table (which would tell
    /// anyone reading it whether a given file is stored: a content oracle).
    DocumentContent,
}

impl IndexName {
    /// Every index, so key rotation can visit every index-key record.
    pub const ALL: [IndexName; 2] = [IndexName::Email, IndexName::DocumentContent];

    pub fn as_str(self) -> &'static str {
        match self {
            IndexName::Email => "email",
            IndexName::DocumentContent => "document_content",
        }
    }
}

/// Normalizes an e-mail address for lookups: trimmed, lower-case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Record key of an index's HMAC key (`INDEXKEY#<index>`).
pub fn index_key_record(name: IndexName) -> Key {
    crate::store::keys::index_key(name.as_str())
}

/// The KMS encryption-context purpose of blind-index keys (data keys have their own,
/// [`super::envelope::Purpose`]).
pub const INDEX_KEY_PURPOSE: &str = "docare-index-key";

/// The encryption context an index key is wrapped under: ids only, as for data keys.
pub fn index_key_context(stage: &str, name: IndexName) -> EncryptionContext {
    EncryptionContext::new([
        ("purpose", INDEX_KEY_PURPOSE),
        ("stage", stage),
        ("index", name.as_str()),
    ])
}

pub struct BlindIndex {
    keys: Arc<dyn KeyService>,
    db: Arc<dyn Database>,
    table: String,
    kms_key_id: String,
    stage: String,
    cache: tokio::sync::Mutex<HashMap<IndexName, Zeroizing<[u8; 32]>>>,
}

impl BlindIndex {
    pub fn new(
        keys: Arc<dyn KeyService>,
        db: Arc<dyn Database>,
        table: &str,
        kms_key_id: &str,
        stage: &str,
    ) -> Self {
        Self {
            keys,
            db,
            table: table.to_string(),
            kms_key_id: kms_key_id.to_string(),
            stage: stage.to_string(),
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The index value (hex) of an already normalized value.
    pub async fn compute(&self, name: IndexName, normalized: &str) -> Result<String, CryptoError> {
        let key = self.key(name).await?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key.as_ref()).map_err(|_| CryptoError::Integrity)?;
        mac.update(name.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    async fn key(&self, name: IndexName) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let mut cache = self.cache.lock().await;
        if let Some(key) = cache.get(&name) {
            return Ok(key.clone());
        }
        let key = match self.load(name).await? {
            Some(key) => key,
            None => self.create(name).await?,
        };
        cache.insert(name, key.clone());
        Ok(key)
    }

    async fn load(&self, name: IndexName) -> Result<Option<Zeroizing<[u8; 32]>>, CryptoError> {
        let Some(record) = self
            .db
            .get(&self.table, &index_key_record(name))
            .await
            .map_err(CryptoError::StoreUnavailable)?
        else {
            return Ok(None);
        };
        unwrap_record(
            self.keys.as_ref(),
            &record,
            &index_key_context(&self.stage, name),
        )
        .await
        .map(Some)
    }

    /// Creates the index key once; a concurrent creator wins and its key is used.
    async fn create(&self, name: IndexName) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let generated = self
            .keys
            .generate_data_key(&self.kms_key_id, &index_key_context(&self.stage, name))
            .await
            .map_err(from_keys)?;
        let record_key = index_key_record(name);
        let record = item([
            ("pk", Value::S(record_key.pk)),
            ("sk", Value::S(record_key.sk)),
            ("wrapped", Value::B(generated.ciphertext)),
            ("kms_key_id", Value::S(generated.key_id)),
        ]);
        match self
            .db
            .put(&self.table, record, Some(Condition::NotExists))
            .await
        {
            Ok(()) => {
                let key: [u8; 32] = generated
                    .plaintext
                    .as_slice()
                    .try_into()
                    .map_err(|_| CryptoError::Integrity)?;
                Ok(Zeroizing::new(key))
            }
            Err(DbError::ConditionFailed { .. }) => {
                self.load(name).await?.ok_or(CryptoError::Integrity)
            }
            Err(err) => Err(CryptoError::StoreUnavailable(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::{LocalKeyring, LocalStore};
    use crate::clock::SystemClock;

    #[tokio::test]
    async fn the_index_is_stable_keyed_and_shared_by_instances() {
        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn Database> = Arc::new(
            LocalStore::open(&dir.path().join("s.redb"), Arc::new(SystemClock)).expect("store"),
        );
        let ring = LocalKeyring::open(&dir.path().join("k.json")).expect("ring");
        ring.create_key("k").expect("key");
        let ring: Arc<dyn KeyService> = Arc::new(ring);
        let one = BlindIndex::new(ring.clone(), store.clone(), "t", "k", "test");
        let two = BlindIndex::new(ring, store, "t", "k", "test");
        let email = normalize_email("  Pat@Example.COM ");
        assert_eq!(email, "pat@example.com");
        let a = one.compute(IndexName::Email, &email).await.expect("index");
        let b = two.compute(IndexName::Email, &email).await.expect("index");
        assert_eq!(a, b, "a second instance finds the same key");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("pat"));
        let c = one
            .compute(IndexName::Email, "other@example.com")
            .await
            .expect("index");
        assert_ne!(a, c);
        // Not a bare hash: without the key the value cannot be recomputed.
        use sha2::Digest;
        assert_ne!(a, hex::encode(sha2::Sha256::digest(email.as_bytes())));
    }
}
