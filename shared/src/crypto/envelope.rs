//! The envelope encryption service: one current data key per process, reused within
//! bounds (age and uses) so KMS is called once per many writes; a cache of unwrapped
//! keys for reads, bounded in size and in age (so a KMS key disabled or revoked stops
//! decrypting in warm instances within [`CachePolicy::max_decrypt_age`]); single-flight
//! on misses so a burst of requests makes one KMS call, not one each. Ages are read
//! from the app's clock. Cached keys are `Zeroizing` (wiped when evicted or dropped).
//!
//! Each data key has a record in the table (`DATAKEY#<id>`) holding its KMS-wrapped
//! form and the KMS key that wrapped it. Ciphertexts carry only the data key id, so they
//! stay small, and key rotation re-wraps these records without touching any ciphertext.
//!
//! [`Purpose::Phi`] fields are sealed under branch keys instead (format v2,
//! [`super::keyring`]): one KMS-wrapped key per purpose and month shared by every
//! instance, cached here like an unwrapped data key (same age and size bounds), so cold
//! reads of values written by many instances cost one KMS call per month, not one per
//! instance and 5 minutes. v1 values keep opening through their data-key records.

use super::format::{self, Binding, FormatError, DATA_KEY_ID_LEN, VERSION, VERSION_BRANCH};
use super::keyring::{branch_key_id, BranchKeys};
use crate::clock::Clock;
use crate::ports::db::{item, Condition, Database, DbError, Key, Value};
use crate::ports::keys::{EncryptionContext, KeyError, KeyService};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

/// Bounds of the data-key caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// A data key (format v1, per instance) encrypts for at most this long…
    pub max_age: Duration,
    /// …and at most this many values (branch keys have no use bound: each value has
    /// its own HKDF-derived key).
    pub max_uses: u64,
    /// Unwrapped keys kept for decryption (data keys and branch keys together)…
    pub max_decrypt_keys: usize,
    /// …each for at most this long after KMS unwrapped it; then KMS is asked again, so
    /// a disabled key or a revoked grant takes effect in warm instances too. A branch
    /// key seals values for as long as it stays cached, so this bounds sealing too.
    pub max_decrypt_age: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            max_uses: 10_000,
            max_decrypt_keys: 1_000,
            max_decrypt_age: Duration::from_secs(300),
        }
    }
}

/// Why a value could not be encrypted or decrypted. No variant carries plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Tampered, moved or foreign ciphertext: a security event, never a wrong answer.
    #[error("ciphertext failed its integrity check")]
    Integrity,
    #[error("malformed ciphertext: {0}")]
    Format(FormatError),
    #[error("key service unavailable")]
    KeysUnavailable(#[source] KeyError),
    #[error("key store unavailable")]
    StoreUnavailable(#[source] DbError),
}

impl From<CryptoError> for crate::ApiError {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::KeysUnavailable(_) => crate::ApiError::unavailable("keys", err),
            CryptoError::StoreUnavailable(_) => crate::ApiError::unavailable("database", err),
            CryptoError::Integrity | CryptoError::Format(_) => crate::ApiError::internal(err),
        }
    }
}

impl From<super::frames::FrameError> for CryptoError {
    fn from(err: super::frames::FrameError) -> Self {
        match err {
            super::frames::FrameError::Integrity => CryptoError::Integrity,
            super::frames::FrameError::Malformed => CryptoError::Format(FormatError::Malformed),
            super::frames::FrameError::UnknownVersion(v) => {
                CryptoError::Format(FormatError::UnknownVersion(v))
            }
        }
    }
}

fn from_format(err: FormatError) -> CryptoError {
    match err {
        FormatError::Integrity => CryptoError::Integrity,
        other => CryptoError::Format(other),
    }
}

/// Unwraps the 256-bit key a key record (data key or index key) holds in `wrapped`.
pub(crate) async fn unwrap_record(
    keys: &dyn KeyService,
    record: &crate::ports::db::Item,
    context: &EncryptionContext,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let wrapped = record
        .get("wrapped")
        .and_then(Value::as_bytes)
        .ok_or(CryptoError::Integrity)?;
    let unwrapped = keys.decrypt(wrapped, context).await.map_err(from_keys)?;
    let key: [u8; 32] = unwrapped
        .plaintext
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Integrity)?;
    Ok(Zeroizing::new(key))
}

pub(crate) fn from_keys(err: KeyError) -> CryptoError {
    match err {
        KeyError::InvalidCiphertext => CryptoError::Integrity,
        other => CryptoError::KeysUnavailable(other),
    }
}

/// A cached key: the format version whose key it is, and its id.
type CacheKey = (u8, [u8; DATA_KEY_ID_LEN]);

struct CurrentKey {
    id: [u8; DATA_KEY_ID_LEN],
    key: Zeroizing<[u8; 32]>,
    born: DateTime<Utc>,
    uses: u64,
}

struct CachedKey {
    key: Zeroizing<[u8; 32]>,
    /// When KMS last unwrapped (or generated) it: the age bound counts from here.
    born: DateTime<Utc>,
    last_used: DateTime<Utc>,
}

/// Whether `born` is less than `max` before `now` (a clock set back counts as fresh).
fn younger_than(born: DateTime<Utc>, now: DateTime<Utc>, max: Duration) -> bool {
    match (now - born).to_std() {
        Ok(age) => age < max,
        Err(_) => true,
    }
}

/// Record key of a data key.
pub fn data_key_record(id: &[u8; DATA_KEY_ID_LEN]) -> Key {
    crate::store::keys::data_key(&ulid::Ulid::from_bytes(*id).to_string())
}

/// Partition of the index listing every data key (for re-wrapping).
pub const DATA_KEYS_INDEX_PK: &str = "DATAKEYS";

/// What a data key encrypts. Each use has its own data keys, wrapped under its own
/// KMS encryption-context `purpose`, so a function's role is granted only the purposes
/// it uses (`kms:EncryptionContext:purpose` in `template.yaml`): a function that may
/// open PHI cannot unwrap the keys of audit fields or queued messages, and the other
/// way round. Blind-index keys have their own purpose too
/// ([`super::blind_index::INDEX_KEY_PURPOSE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// PHI and personal fields of domain-table items (profiles, contacts, SOS alerts,
    /// accounts' e-mail and name, TOTP secrets).
    Phi,
    /// The reason and user agent sealed into an audit event.
    Audit,
    /// The sealed recipient and content of a queued e-mail or SMS.
    Notification,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Purpose::Phi, Purpose::Audit, Purpose::Notification];

    /// The `purpose` of the KMS encryption context (and of the data-key record).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Phi => "docare-phi",
            Purpose::Audit => "docare-audit",
            Purpose::Notification => "docare-notification",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// Whether fields of this purpose are sealed under branch keys (format v2). Only
    /// PHI: a branch key is shared by every instance for a month, so sealing with it
    /// means unwrapping it (KMS `Decrypt`), which would let the seal-only roles of the
    /// audit and notification purposes open what other instances sealed. Those keep a
    /// new data key per instance (`GenerateDataKey` only), and so do PHI documents
    /// ([`Envelope::data_key`]) and the scanner's sealed fields
    /// ([`Envelope::encrypt_sealing_only`]): the scanner seals without opening.
    pub fn uses_branch_keys(self) -> bool {
        matches!(self, Purpose::Phi)
    }
}

/// The one purpose of every data key written before purposes were separated. Records
/// without a `purpose` attribute were wrapped under it; they still open in the code
/// (local data folders keep working), but no role in `template.yaml` is granted it.
pub const LEGACY_PURPOSE: &str = "docare-data-key";

/// The attribute of a data-key record naming its purpose (absent: [`LEGACY_PURPOSE`]).
pub const PURPOSE_ATTR: &str = "purpose";

/// The encryption context of a data key: ids only (it is visible in CloudTrail).
pub fn data_key_context(
    purpose: &str,
    stage: &str,
    id: &[u8; DATA_KEY_ID_LEN],
) -> EncryptionContext {
    EncryptionContext::new([
        ("purpose", purpose),
        ("stage", stage),
        ("data_key_id", &ulid::Ulid::from_bytes(*id).to_string()),
    ])
}

/// The purpose a data-key record was wrapped under (its `purpose`, else the legacy one).
pub fn record_purpose(record: &crate::ports::db::Item) -> &str {
    record
        .get(PURPOSE_ATTR)
        .and_then(Value::as_str)
        .unwrap_or(LEGACY_PURPOSE)
}

/// The envelope of one [`Purpose`]: its data keys are generated, stored and unwrapped
/// under that purpose only, and it refuses to open a value sealed for another one.
pub struct Envelope {
    purpose: Purpose,
    keys: Arc<dyn KeyService>,
    db: Arc<dyn Database>,
    clock: Arc<dyn Clock>,
    table: String,
    kms_key_id: String,
    stage: String,
    policy: CachePolicy,
    current: tokio::sync::Mutex<Option<CurrentKey>>,
    /// Unwrapped keys by (format version, id): data keys (v1) and branch keys (v2).
    unwrapped: Mutex<HashMap<CacheKey, CachedKey>>,
    unwrap_flight: tokio::sync::Mutex<()>,
}

impl Envelope {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        keys: Arc<dyn KeyService>,
        db: Arc<dyn Database>,
        clock: Arc<dyn Clock>,
        table: &str,
        kms_key_id: &str,
        stage: &str,
        policy: CachePolicy,
    ) -> Self {
        Self {
            purpose: Purpose::Phi,
            keys,
            db,
            clock,
            table: table.to_string(),
            kms_key_id: kms_key_id.to_string(),
            stage: stage.to_string(),
            policy,
            current: tokio::sync::Mutex::new(None),
            unwrapped: Mutex::new(HashMap::new()),
            unwrap_flight: tokio::sync::Mutex::new(()),
        }
    }

    /// The same envelope for another purpose (an envelope starts as [`Purpose::Phi`]).
    pub fn with_purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = purpose;
        self
    }

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Encrypts a value for one place (table, item key, attribute): under the month's
    /// branch key (v2) where the purpose [uses branch keys](Purpose::uses_branch_keys),
    /// else under the instance's data key (v1).
    pub async fn encrypt(
        &self,
        binding: &Binding<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if self.purpose.uses_branch_keys() {
            let id = branch_key_id(self.clock.now());
            let key = self.branch_key(&id, true).await?;
            return format::seal_branch(&id, &key, binding, plaintext).map_err(from_format);
        }
        let (id, key) = self.key_for_encryption().await?;
        format::seal(&id, &key, binding, plaintext).map_err(from_format)
    }

    /// Encrypts a value under the instance's data key (format v1) whatever the purpose:
    /// for a role that may seal values of this purpose but not open them (the document
    /// scanner seals a document's hash and opens nothing). Needs `GenerateDataKey`
    /// only, where a branch key would need `Decrypt`, which would open everything else
    /// sealed under it that month. Every reader opens both formats.
    pub async fn encrypt_sealing_only(
        &self,
        binding: &Binding<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let (id, key) = self.key_for_encryption().await?;
        format::seal(&id, &key, binding, plaintext).map_err(from_format)
    }

    /// Decrypts a value read from `binding` (either format version); a value from
    /// anywhere else fails.
    pub async fn decrypt(
        &self,
        binding: &Binding<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let envelope = format::parse(ciphertext).map_err(from_format)?;
        let key = match envelope.version {
            VERSION_BRANCH => self.branch_key(&envelope.data_key_id, false).await?,
            _ => self.key_for_decryption(&envelope.data_key_id).await?,
        };
        format::open(&envelope, &key, binding).map_err(from_format)
    }

    /// The current data key and its id, for a format that encrypts with it directly
    /// (framed documents, [`super::frames`]): one use of the key, like one value.
    pub async fn data_key(
        &self,
    ) -> Result<([u8; DATA_KEY_ID_LEN], Zeroizing<[u8; 32]>), CryptoError> {
        self.key_for_encryption().await
    }

    /// The data key `id` names, unwrapped (cached) like for [`Envelope::decrypt`]; a
    /// record of another purpose is refused before any KMS call.
    pub async fn data_key_by_id(
        &self,
        id: &[u8; DATA_KEY_ID_LEN],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        self.key_for_decryption(id).await
    }

    /// Drops every cached key (zeroized); the next call goes to KMS again.
    pub async fn forget_keys(&self) {
        *self.current.lock().await = None;
        self.lock_unwrapped().clear();
    }

    fn lock_unwrapped(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, CachedKey>> {
        self.unwrapped.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn key_for_encryption(
        &self,
    ) -> Result<([u8; DATA_KEY_ID_LEN], Zeroizing<[u8; 32]>), CryptoError> {
        // Holding the lock across the KMS call is the single flight: concurrent writers
        // wait for the one new key instead of each asking KMS.
        let mut current = self.current.lock().await;
        let now = self.clock.now();
        let fresh = current.as_ref().is_some_and(|k| {
            younger_than(k.born, now, self.policy.max_age) && k.uses < self.policy.max_uses
        });
        if !fresh {
            *current = Some(self.new_data_key().await?);
        }
        let key = current.as_mut().ok_or(CryptoError::Integrity)?;
        key.uses += 1;
        Ok((key.id, key.key.clone()))
    }

    async fn new_data_key(&self) -> Result<CurrentKey, CryptoError> {
        let id = ulid::Ulid::new().to_bytes();
        let purpose = self.purpose.as_str();
        let context = data_key_context(purpose, &self.stage, &id);
        let generated = self
            .keys
            .generate_data_key(&self.kms_key_id, &context)
            .await
            .map_err(from_keys)?;
        let key: [u8; 32] = generated
            .plaintext
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Integrity)?;
        let record_key = data_key_record(&id);
        let ulid = ulid::Ulid::from_bytes(id).to_string();
        let record = item([
            ("pk", Value::S(record_key.pk)),
            ("sk", Value::S(record_key.sk)),
            ("wrapped", Value::B(generated.ciphertext)),
            ("kms_key_id", Value::S(generated.key_id)),
            (PURPOSE_ATTR, Value::S(purpose.into())),
            ("created_at", Value::N(self.clock.now().timestamp())),
            ("gsi1pk", Value::S(DATA_KEYS_INDEX_PK.into())),
            ("gsi1sk", Value::S(ulid)),
        ]);
        // The record is durable before the key encrypts anything.
        self.db
            .put(&self.table, record, Some(Condition::NotExists))
            .await
            .map_err(CryptoError::StoreUnavailable)?;
        let key = Zeroizing::new(key);
        self.remember((VERSION, id), key.clone());
        Ok(CurrentKey {
            id,
            key,
            born: self.clock.now(),
            uses: 0,
        })
    }

    fn cached(&self, id: &CacheKey) -> Option<Zeroizing<[u8; 32]>> {
        let now = self.clock.now();
        let mut cache = self.lock_unwrapped();
        let entry = cache.get(id)?;
        if !younger_than(entry.born, now, self.policy.max_decrypt_age) {
            // Too old: dropped (zeroized); the caller asks KMS again.
            cache.remove(id);
            return None;
        }
        let entry = cache.get_mut(id)?;
        entry.last_used = now;
        Some(entry.key.clone())
    }

    fn remember(&self, id: CacheKey, key: Zeroizing<[u8; 32]>) {
        let now = self.clock.now();
        let mut cache = self.lock_unwrapped();
        if cache.len() >= self.policy.max_decrypt_keys && !cache.contains_key(&id) {
            // Evict the least recently used key; its bytes are zeroized on drop.
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, v)| v.last_used)
                .map(|(k, _)| *k)
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            id,
            CachedKey {
                key,
                born: now,
                last_used: now,
            },
        );
    }

    async fn key_for_decryption(
        &self,
        id: &[u8; DATA_KEY_ID_LEN],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if let Some(key) = self.cached(&(VERSION, *id)) {
            return Ok(key);
        }
        let _flight = self.unwrap_flight.lock().await;
        if let Some(key) = self.cached(&(VERSION, *id)) {
            return Ok(key);
        }
        let record = self
            .db
            .get(&self.table, &data_key_record(id))
            .await
            .map_err(CryptoError::StoreUnavailable)?
            .ok_or(CryptoError::Integrity)?;
        // A value sealed for another purpose is not this envelope's to open (KMS would
        // refuse the unwrap too where the role lacks that purpose). Legacy records (one
        // purpose for everything) open under any envelope.
        let purpose = record_purpose(&record);
        if purpose != self.purpose.as_str() && purpose != LEGACY_PURPOSE {
            return Err(CryptoError::Integrity);
        }
        let key = unwrap_record(
            self.keys.as_ref(),
            &record,
            &data_key_context(purpose, &self.stage, id),
        )
        .await?;
        self.remember((VERSION, *id), key.clone());
        Ok(key)
    }

    /// Branch key `id` of this envelope's purpose, from the cache or unwrapped (one KMS
    /// call, single-flight like data keys); `create` (sealing) makes the month's key
    /// when no instance has yet. A purpose without branch keys refuses before any call.
    async fn branch_key(
        &self,
        id: &[u8; DATA_KEY_ID_LEN],
        create: bool,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if !self.purpose.uses_branch_keys() {
            return Err(CryptoError::Integrity);
        }
        let slot = (VERSION_BRANCH, *id);
        if let Some(key) = self.cached(&slot) {
            return Ok(key);
        }
        let _flight = self.unwrap_flight.lock().await;
        if let Some(key) = self.cached(&slot) {
            return Ok(key);
        }
        let store = BranchKeys {
            keys: self.keys.as_ref(),
            db: self.db.as_ref(),
            table: &self.table,
            kms_key_id: &self.kms_key_id,
            stage: &self.stage,
            purpose: self.purpose.as_str(),
        };
        // Boxed: the cold path's future (reads, KMS, a conditional put) stays off the
        // stack of every sealing or opening caller; it runs once per key and cache bound.
        let key = if create {
            Box::pin(store.open_or_create(id, self.clock.now())).await?
        } else {
            Box::pin(store.open(id)).await?
        };
        self.remember(slot, key.clone());
        Ok(key)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::adapters::local::{LocalKeyring, LocalStore};
    use crate::clock::SystemClock;
    use crate::crypto::metered::MeteredKeys;
    use std::sync::atomic::Ordering;

    struct Fixture {
        envelope: Arc<Envelope>,
        calls: Arc<crate::crypto::KmsCalls>,
        _dir: tempfile::TempDir,
    }

    fn fixture(policy: CachePolicy) -> Fixture {
        fixture_for(policy, Purpose::Phi)
    }

    fn fixture_for(policy: CachePolicy, purpose: Purpose) -> Fixture {
        let dir = tempfile::tempdir().expect("dir");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = LocalStore::open(&dir.path().join("s.redb"), clock.clone()).expect("store");
        let ring = LocalKeyring::open(&dir.path().join("k.json")).expect("ring");
        ring.create_key("k1").expect("key");
        let metered = MeteredKeys::new(Arc::new(ring));
        let calls = metered.calls();
        let envelope = Envelope::new(
            Arc::new(metered),
            Arc::new(store),
            clock,
            "t",
            "k1",
            "test",
            policy,
        )
        .with_purpose(purpose);
        Fixture {
            envelope: Arc::new(envelope),
            calls,
            _dir: dir,
        }
    }

    fn at<'a>(pk: &'a str, attribute: &'a str) -> Binding<'a> {
        Binding {
            table: "t",
            pk,
            sk: "PROFILE",
            attribute,
        }
    }

    #[tokio::test]
    async fn a_thousand_writes_cost_one_generate_data_key() {
        let f = fixture(CachePolicy::default());
        for i in 0..1000 {
            let pk = format!("USER#{i}");
            f.envelope
                .encrypt(&at(&pk, "ssn"), b"123-45-6789")
                .await
                .expect("encrypt");
        }
        assert_eq!(f.calls.generate_data_key.load(Ordering::Relaxed), 1);
        assert_eq!(f.calls.total(), 1);
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_kms_call() {
        let f = fixture(CachePolicy::default());
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let envelope = f.envelope.clone();
                tokio::spawn(async move {
                    let pk = format!("USER#{i}");
                    envelope.encrypt(&at(&pk, "dob"), b"1980-01-01").await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("joined").expect("encrypted");
        }
        assert_eq!(f.calls.total(), 1);
    }

    #[tokio::test]
    async fn keys_rotate_after_max_uses_and_old_values_still_decrypt() {
        // Per-instance data keys (format v1): a purpose without branch keys.
        let f = fixture_for(
            CachePolicy {
                max_uses: 10,
                ..CachePolicy::default()
            },
            Purpose::Notification,
        );
        let mut sealed = Vec::new();
        for i in 0..25 {
            let pk = format!("USER#{i}");
            sealed.push((
                pk.clone(),
                f.envelope
                    .encrypt(&at(&pk, "ssn"), format!("v{i}").as_bytes())
                    .await
                    .expect("encrypt"),
            ));
        }
        assert_eq!(f.calls.generate_data_key.load(Ordering::Relaxed), 3);
        f.envelope.forget_keys().await;
        for (i, (pk, ciphertext)) in sealed.iter().enumerate() {
            let plain = f
                .envelope
                .decrypt(&at(pk, "ssn"), ciphertext)
                .await
                .expect("decrypt");
            assert_eq!(plain.as_slice(), format!("v{i}").as_bytes());
        }
        assert_eq!(
            f.calls.decrypt.load(Ordering::Relaxed),
            3,
            "one unwrap per data key"
        );
    }

    /// A key service whose key can be disabled, as KMS answers for a disabled key.
    struct Disableable {
        inner: Arc<dyn KeyService>,
        disabled: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl KeyService for Disableable {
        async fn generate_data_key(
            &self,
            key_id: &str,
            context: &EncryptionContext,
        ) -> Result<crate::ports::keys::DataKey, KeyError> {
            if self.disabled.load(Ordering::SeqCst) {
                return Err(KeyError::KeyUnusable);
            }
            self.inner.generate_data_key(key_id, context).await
        }
        async fn decrypt(
            &self,
            ciphertext: &[u8],
            context: &EncryptionContext,
        ) -> Result<crate::ports::keys::Unwrapped, KeyError> {
            if self.disabled.load(Ordering::SeqCst) {
                return Err(KeyError::KeyUnusable);
            }
            self.inner.decrypt(ciphertext, context).await
        }
        async fn re_encrypt(
            &self,
            _: &[u8],
            _: &EncryptionContext,
            _: &str,
            _: &EncryptionContext,
        ) -> Result<crate::ports::keys::Rewrapped, KeyError> {
            Err(KeyError::KeyUnusable)
        }
        async fn sign(&self, _: &str, _: &[u8]) -> Result<[u8; 64], KeyError> {
            Err(KeyError::KeyUnusable)
        }
        async fn public_key(&self, _: &str) -> Result<Vec<u8>, KeyError> {
            Err(KeyError::KeyUnusable)
        }
        async fn resolve_key_id(&self, key_id: &str) -> Result<String, KeyError> {
            self.inner.resolve_key_id(key_id).await
        }
        async fn check(&self, key_id: &str) -> Result<(), KeyError> {
            self.inner.check(key_id).await
        }
    }

    #[tokio::test]
    async fn a_disabled_key_stops_decrypting_in_a_warm_instance_within_the_age_bound() {
        let dir = tempfile::tempdir().expect("dir");
        let start = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 23, 9, 0, 0)
            .single()
            .expect("instant");
        let clock = Arc::new(crate::clock::ManualClock::new(start));
        let store = LocalStore::open(&dir.path().join("s.redb"), clock.clone()).expect("store");
        let ring = LocalKeyring::open(&dir.path().join("k.json")).expect("ring");
        ring.create_key("k1").expect("key");
        let keys = Arc::new(Disableable {
            inner: Arc::new(ring),
            disabled: std::sync::atomic::AtomicBool::new(false),
        });
        let metered = MeteredKeys::new(keys.clone());
        let calls = metered.calls();
        let envelope = Envelope::new(
            Arc::new(metered),
            Arc::new(store),
            clock.clone(),
            "t",
            "k1",
            "test",
            CachePolicy::default(),
        );
        let sealed = envelope
            .encrypt(&at("USER#a", "ssn"), b"123-45-6789")
            .await
            .expect("encrypt");
        envelope.forget_keys().await;
        envelope
            .decrypt(&at("USER#a", "ssn"), &sealed)
            .await
            .expect("first read unwraps the key");
        assert_eq!(calls.decrypt.load(Ordering::Relaxed), 1);

        // The key is disabled in KMS; a warm instance still holds the unwrapped key.
        keys.disabled.store(true, Ordering::SeqCst);
        clock.advance(chrono::Duration::seconds(299));
        envelope
            .decrypt(&at("USER#a", "ssn"), &sealed)
            .await
            .expect("within the age bound the cached key still serves");
        assert_eq!(
            calls.decrypt.load(Ordering::Relaxed),
            1,
            "served from cache"
        );

        clock.advance(chrono::Duration::seconds(2));
        match envelope.decrypt(&at("USER#a", "ssn"), &sealed).await {
            Err(CryptoError::KeysUnavailable(KeyError::KeyUnusable)) => {}
            other => panic!(
                "past the age bound KMS must be asked again and refuse, got {:?}",
                other.map(|_| "plaintext")
            ),
        }
        assert_eq!(
            calls.decrypt.load(Ordering::Relaxed),
            2,
            "KMS was asked again"
        );
        // Writing needs a new data key past its age too, which KMS refuses as well.
        clock.advance(chrono::Duration::seconds(300));
        assert!(envelope
            .encrypt(&at("USER#b", "ssn"), b"987-65-4321")
            .await
            .is_err());
    }

    #[test]
    fn cipher_states_are_wiped_on_drop() {
        // With the `zeroize` features the AES round keys are wiped on drop; this fails to
        // compile if the feature is lost in a dependency update.
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroized_on_drop::<aes::Aes256>();
    }

    #[tokio::test]
    async fn values_swapped_between_users_or_attributes_fail_integrity() {
        let f = fixture(CachePolicy::default());
        let alice = f
            .envelope
            .encrypt(&at("USER#alice", "ssn"), b"111-11-1111")
            .await
            .expect("encrypt");
        for wrong in [at("USER#bob", "ssn"), at("USER#alice", "phone")] {
            match f.envelope.decrypt(&wrong, &alice).await {
                Err(CryptoError::Integrity) => {}
                other => panic!(
                    "expected an integrity error, got {:?}",
                    other.map(|_| "plaintext")
                ),
            }
        }
    }

    /// A value sealed the way every data key was before purposes were separated: a
    /// record without `purpose`, wrapped under the legacy context.
    pub(crate) async fn legacy_value(
        keys: &dyn KeyService,
        db: &dyn Database,
        key_id: &str,
        pk: &str,
    ) -> Vec<u8> {
        let id = ulid::Ulid::new().to_bytes();
        let generated = keys
            .generate_data_key(key_id, &data_key_context(LEGACY_PURPOSE, "test", &id))
            .await
            .expect("data key");
        let record_key = data_key_record(&id);
        db.put(
            "t",
            item([
                ("pk", Value::S(record_key.pk)),
                ("sk", Value::S(record_key.sk)),
                ("wrapped", Value::B(generated.ciphertext)),
                ("kms_key_id", Value::S(generated.key_id)),
                ("gsi1pk", Value::S(DATA_KEYS_INDEX_PK.into())),
                ("gsi1sk", Value::S(ulid::Ulid::from_bytes(id).to_string())),
            ]),
            None,
        )
        .await
        .expect("record");
        let key: [u8; 32] = generated.plaintext.as_slice().try_into().expect("32 bytes");
        format::seal(&id, &key, &at(pk, "ssn"), b"old value").expect("seal")
    }

    #[tokio::test]
    async fn each_purpose_has_its_own_data_keys_and_opens_only_its_own_values() {
        let dir = tempfile::tempdir().expect("dir");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db: Arc<dyn Database> =
            Arc::new(LocalStore::open(&dir.path().join("s.redb"), clock.clone()).expect("store"));
        let ring = LocalKeyring::open(&dir.path().join("k.json")).expect("ring");
        ring.create_key("k1").expect("key");
        let keys: Arc<dyn KeyService> =
            Arc::new(crate::ports::recording::RecordedKeys(Arc::new(ring)));
        let envelope = |purpose| {
            Envelope::new(
                keys.clone(),
                db.clone(),
                clock.clone(),
                "t",
                "k1",
                "test",
                CachePolicy::default(),
            )
            .with_purpose(purpose)
        };
        let (phi, audit, notification) = (
            envelope(Purpose::Phi),
            envelope(Purpose::Audit),
            envelope(Purpose::Notification),
        );
        let ((phi_value, audit_value, note_value), accesses) =
            crate::ports::recording::record(async {
                (
                    phi.encrypt(&at("USER#a", "ssn"), b"phi")
                        .await
                        .expect("phi"),
                    audit
                        .encrypt(&at("USER#a", "ssn"), b"reason")
                        .await
                        .expect("audit"),
                    notification
                        .encrypt(&at("USER#a", "ssn"), b"mail")
                        .await
                        .expect("notification"),
                )
            })
            .await;
        let purposes: Vec<&str> = accesses
            .iter()
            .filter(|a| a.action == "kms:GenerateDataKey")
            .map(|a| a.scope.as_str())
            .collect();
        assert_eq!(
            purposes,
            ["docare-phi", "docare-audit", "docare-notification"]
        );
        // The same place, three data keys: each envelope opens only its own values,
        // even with a cold cache (a fresh instance), and refuses before calling KMS.
        for (opener, own, others) in [
            (Purpose::Phi, &phi_value, [&audit_value, &note_value]),
            (Purpose::Audit, &audit_value, [&phi_value, &note_value]),
            (
                Purpose::Notification,
                &note_value,
                [&phi_value, &audit_value],
            ),
        ] {
            let cold = envelope(opener);
            assert!(
                cold.decrypt(&at("USER#a", "ssn"), own).await.is_ok(),
                "{opener:?}"
            );
            for other in others {
                let (result, accesses) =
                    crate::ports::recording::record(cold.decrypt(&at("USER#a", "ssn"), other))
                        .await;
                assert!(matches!(result, Err(CryptoError::Integrity)), "{opener:?}");
                assert!(
                    !accesses.iter().any(|a| a.service() == "kms"),
                    "refused before any KMS call"
                );
            }
        }
        // The record says which purpose its key serves: data keys for audit reasons and
        // queued messages, the month's branch key for PHI.
        let listed = |partition: &'static str| {
            let db = db.clone();
            async move {
                let records = db
                    .query(
                        "t",
                        crate::ports::db::Query::partition(partition)
                            .on(crate::ports::db::Index::Gsi1),
                    )
                    .await
                    .expect("records");
                let mut stored: Vec<String> = records
                    .items
                    .iter()
                    .map(|r| record_purpose(r).to_string())
                    .collect();
                stored.sort();
                stored
            }
        };
        assert_eq!(
            listed(DATA_KEYS_INDEX_PK).await,
            ["docare-audit", "docare-notification"]
        );
        assert_eq!(
            listed(crate::crypto::keyring::BRANCH_KEYS_INDEX_PK).await,
            ["docare-phi"]
        );
        // A value written before purposes existed still opens (local data folders keep
        // working); its record has no purpose and its key the legacy context.
        let old = legacy_value(keys.as_ref(), db.as_ref(), "k1", "USER#old").await;
        let plain = envelope(Purpose::Phi)
            .decrypt(&at("USER#old", "ssn"), &old)
            .await
            .expect("legacy value");
        assert_eq!(plain.as_slice(), b"old value");
    }

    /// The instances of a simulated month: `writers` cold instances, one after the
    /// other, each sealing its share of `values` PHI fields (one per item) as time
    /// passes from `start` over `days`; then a fresh instance reads them all.
    pub(crate) struct Month {
        pub keys: Arc<dyn KeyService>,
        pub db: Arc<dyn Database>,
        pub clock: Arc<crate::clock::ManualClock>,
        pub sealed: Vec<(String, Vec<u8>)>,
        _dir: tempfile::TempDir,
    }

    pub(crate) async fn month_of_writes(
        purpose: Purpose,
        values: usize,
        writers: usize,
        days: i64,
    ) -> Month {
        let dir = tempfile::tempdir().expect("dir");
        // Mid-month, so the month of writes spans two calendar months.
        let start = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 16, 9, 0, 0)
            .single()
            .expect("instant");
        let clock = Arc::new(crate::clock::ManualClock::new(start));
        let db: Arc<dyn Database> =
            Arc::new(LocalStore::open(&dir.path().join("s.redb"), clock.clone()).expect("store"));
        let ring = LocalKeyring::open(&dir.path().join("k.json")).expect("ring");
        ring.create_key("k1").expect("key");
        let keys: Arc<dyn KeyService> = Arc::new(ring);
        let step = chrono::Duration::seconds(days * 86_400 / values.max(1) as i64);
        let per_writer = values.div_ceil(writers.max(1));
        let mut sealed = Vec::with_capacity(values);
        for chunk in (0..values).collect::<Vec<_>>().chunks(per_writer) {
            let writer = Envelope::new(
                keys.clone(),
                db.clone(),
                clock.clone(),
                "t",
                "k1",
                "test",
                CachePolicy::default(),
            )
            .with_purpose(purpose);
            for i in chunk {
                let pk = format!("USER#{i}");
                let value = writer
                    .encrypt(&at(&pk, "dob"), format!("v{i}").as_bytes())
                    .await
                    .expect("encrypt");
                sealed.push((pk, value));
                clock.advance(step);
            }
        }
        Month {
            keys,
            db,
            clock,
            sealed,
            _dir: dir,
        }
    }

    impl Month {
        /// A fresh instance reads every value back; its KMS calls.
        pub(crate) async fn cold_read(&self, purpose: Purpose) -> Arc<crate::crypto::KmsCalls> {
            let metered = MeteredKeys::new(self.keys.clone());
            let calls = metered.calls();
            let reader = Envelope::new(
                Arc::new(metered),
                self.db.clone(),
                self.clock.clone(),
                "t",
                "k1",
                "test",
                CachePolicy::default(),
            )
            .with_purpose(purpose);
            for (i, (pk, value)) in self.sealed.iter().enumerate() {
                let plain = reader
                    .decrypt(&at(pk, "dob"), value)
                    .await
                    .expect("decrypt");
                assert_eq!(plain.as_slice(), format!("v{i}").as_bytes());
            }
            calls
        }
    }

    /// The goal of the branch keys: 100 PHI items written over a month by 100 cold
    /// instances (one every 7 hours or so) open in a fresh instance with at most 2 KMS
    /// calls, one per calendar month they span; per-instance data keys (v1, still what
    /// the seal-only purposes use) cost one per writing instance.
    #[tokio::test]
    async fn a_cold_instance_reads_a_month_of_phi_from_many_instances_with_two_kms_calls() {
        let month = month_of_writes(Purpose::Phi, 100, 100, 30).await;
        assert!(month
            .sealed
            .iter()
            .all(|(_, v)| v.first() == Some(&format::VERSION_BRANCH)));
        let calls = month.cold_read(Purpose::Phi).await;
        assert_eq!(
            calls.decrypt.load(Ordering::Relaxed),
            2,
            "November and December"
        );
        assert_eq!(calls.total(), 2);

        let before = month_of_writes(Purpose::Notification, 100, 100, 30).await;
        let calls = before.cold_read(Purpose::Notification).await;
        assert_eq!(calls.total(), 100, "one data key per writing instance");
    }

    #[tokio::test]
    async fn a_month_of_writes_by_many_instances_makes_one_branch_key() {
        let month = month_of_writes(Purpose::Phi, 40, 40, 10).await;
        let records = month
            .db
            .query(
                "t",
                crate::ports::db::Query::partition(crate::crypto::keyring::BRANCH_KEYS_INDEX_PK)
                    .on(crate::ports::db::Index::Gsi1),
            )
            .await
            .expect("records");
        // 16 November + 10 days: one month, one key, however many instances.
        assert_eq!(records.items.len(), 1);
        assert_eq!(
            records.items[0].get("period").and_then(Value::as_str),
            Some("2026-11")
        );
    }

    #[tokio::test]
    async fn phi_values_sealed_under_data_keys_still_open() {
        // What PHI writes looked like before branch keys: v1 under a `docare-phi` data
        // key (made here through `data_key`, which documents still use).
        let f = fixture(CachePolicy::default());
        let (id, key) = f.envelope.data_key().await.expect("data key");
        let old = format::seal(&id, &key, &at("USER#old", "ssn"), b"111-11-1111").expect("seal");
        let new = f
            .envelope
            .encrypt(&at("USER#new", "ssn"), b"222-22-2222")
            .await
            .expect("encrypt");
        assert_eq!(old.first(), Some(&format::VERSION));
        assert_eq!(new.first(), Some(&format::VERSION_BRANCH));
        // A fresh instance opens both: the old one through its data-key record.
        f.envelope.forget_keys().await;
        let before = f.calls.decrypt.load(Ordering::Relaxed);
        for (pk, value, plain) in [
            ("USER#old", &old, b"111-11-1111"),
            ("USER#new", &new, b"222-22-2222"),
        ] {
            let opened = f
                .envelope
                .decrypt(&at(pk, "ssn"), value)
                .await
                .expect("decrypt");
            assert_eq!(opened.as_slice(), plain);
        }
        assert_eq!(
            f.calls.decrypt.load(Ordering::Relaxed) - before,
            2,
            "the data key and the branch key"
        );
    }

    #[tokio::test]
    async fn tampered_or_swapped_branch_values_fail_integrity() {
        let f = fixture(CachePolicy::default());
        let alice = f
            .envelope
            .encrypt(&at("USER#alice", "ssn"), b"111-11-1111")
            .await
            .expect("encrypt");
        let bob = f
            .envelope
            .encrypt(&at("USER#bob", "ssn"), b"222-22-2222")
            .await
            .expect("encrypt");
        // Same branch key, same attribute: Bob's value copied into Alice's item fails.
        let mut tampered = alice.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let mut renamed = alice.clone();
        // A branch key id that names no stored key (its random part is not zero).
        renamed[7] ^= 1;
        for (place, value) in [
            (at("USER#alice", "ssn"), &bob),
            (at("USER#alice", "phone"), &alice),
            (at("USER#alice", "ssn"), &tampered),
            (at("USER#alice", "ssn"), &renamed),
        ] {
            match f.envelope.decrypt(&place, value).await {
                Err(CryptoError::Integrity) => {}
                other => panic!(
                    "expected an integrity error, got {:?}",
                    other.map(|_| "plaintext")
                ),
            }
        }
        assert_eq!(
            f.envelope
                .decrypt(&at("USER#alice", "ssn"), &alice)
                .await
                .expect("the original")
                .as_slice(),
            b"111-11-1111"
        );
    }

    /// A database whose first two reads both wait for each other, so two cold
    /// instances both find no branch key and both try to create it.
    struct MeetAtFirstReads {
        db: Arc<dyn Database>,
        reads: std::sync::atomic::AtomicUsize,
        barrier: tokio::sync::Barrier,
    }

    #[async_trait::async_trait]
    impl Database for MeetAtFirstReads {
        async fn get(&self, t: &str, k: &Key) -> Result<Option<crate::ports::db::Item>, DbError> {
            let found = self.db.get(t, k).await;
            if self.reads.fetch_add(1, Ordering::SeqCst) < 2 {
                self.barrier.wait().await;
            }
            found
        }
        async fn put(
            &self,
            t: &str,
            i: crate::ports::db::Item,
            c: Option<Condition>,
        ) -> Result<(), DbError> {
            self.db.put(t, i, c).await
        }
        async fn update(
            &self,
            t: &str,
            k: &Key,
            u: crate::ports::db::Update,
            c: Option<Condition>,
        ) -> Result<crate::ports::db::Item, DbError> {
            self.db.update(t, k, u, c).await
        }
        async fn delete(
            &self,
            t: &str,
            k: &Key,
            c: Option<Condition>,
        ) -> Result<Option<crate::ports::db::Item>, DbError> {
            self.db.delete(t, k, c).await
        }
        async fn query(
            &self,
            t: &str,
            q: crate::ports::db::Query,
        ) -> Result<crate::ports::db::QueryPage, DbError> {
            self.db.query(t, q).await
        }
        async fn transact_write(&self, ops: Vec<crate::ports::db::WriteOp>) -> Result<(), DbError> {
            self.db.transact_write(ops).await
        }
        async fn check(&self, t: &str) -> Result<(), DbError> {
            self.db.check(t).await
        }
    }

    #[tokio::test]
    async fn two_cold_instances_creating_the_months_key_at_once_end_with_one_key() {
        let dir = tempfile::tempdir().expect("dir");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store: Arc<dyn Database> =
            Arc::new(LocalStore::open(&dir.path().join("s.redb"), clock.clone()).expect("store"));
        let ring = LocalKeyring::open(&dir.path().join("k.json")).expect("ring");
        ring.create_key("k1").expect("key");
        let metered = MeteredKeys::new(Arc::new(ring));
        let calls = metered.calls();
        let keys: Arc<dyn KeyService> = Arc::new(metered);
        let racing: Arc<dyn Database> = Arc::new(MeetAtFirstReads {
            db: store.clone(),
            reads: Default::default(),
            barrier: tokio::sync::Barrier::new(2),
        });
        let instance = |db: Arc<dyn Database>| {
            Envelope::new(
                keys.clone(),
                db,
                clock.clone(),
                "t",
                "k1",
                "test",
                CachePolicy::default(),
            )
        };
        let (a, b) = (instance(racing.clone()), instance(racing));
        let (at_a, at_b) = (at("USER#a", "ssn"), at("USER#b", "ssn"));
        let (sealed_a, sealed_b) =
            tokio::join!(a.encrypt(&at_a, b"from a"), b.encrypt(&at_b, b"from b"));
        let (sealed_a, sealed_b) = (sealed_a.expect("a"), sealed_b.expect("b"));
        // Both generated a key; the loser's put failed, it read and unwrapped the
        // winner's: three KMS calls, one stored key.
        assert_eq!(calls.generate_data_key.load(Ordering::Relaxed), 2);
        assert_eq!(calls.decrypt.load(Ordering::Relaxed), 1);
        let records = store
            .query(
                "t",
                crate::ports::db::Query::partition(crate::crypto::keyring::BRANCH_KEYS_INDEX_PK)
                    .on(crate::ports::db::Index::Gsi1),
            )
            .await
            .expect("records");
        assert_eq!(records.items.len(), 1);
        // Both sealed under the stored key: a third instance opens both with one unwrap.
        let c = instance(store);
        for (pk, value, plain) in [
            ("USER#a", &sealed_a, b"from a"),
            ("USER#b", &sealed_b, b"from b"),
        ] {
            let opened = c.decrypt(&at(pk, "ssn"), value).await.expect("decrypt");
            assert_eq!(opened.as_slice(), plain);
        }
        assert_eq!(calls.decrypt.load(Ordering::Relaxed), 2);
    }
}
