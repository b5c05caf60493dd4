//! Key rotation: re-wraps every stored data key, branch key and index key under another
//! KMS key with KMS `ReEncrypt`, so the plaintext keys never leave KMS and no data
//! ciphertext is read or rewritten (a ciphertext names only its data or branch key, see
//! [`super::format`]).
//!
//! Records are found by name (`INDEXKEY#<index>`, one per [`IndexName`]), through the
//! `BRANCHKEYS` partition of `gsi1` (branch keys: one per purpose and month, so a few
//! dozen a year — the cheap part of a rotation, see [`super::keyring`]) and through the
//! `DATAKEYS` partition (per-instance data keys, in ULID order; the resume cursor walks
//! these). A record already
//! wrapped by the target key is skipped, so a run can be repeated or resumed at any
//! point; each write is conditional on the record still holding the wrapped key and key
//! id that were read, so a concurrent writer is never overwritten.
//!
//! Decryption is unaffected by a re-wrap: KMS (and the local key ring) find the wrapping
//! key from the wrapped blob itself, and the encryption context (stage and record id) is
//! kept as it was. New data keys keep being generated under the configured key.

use super::blind_index::{index_key_context, index_key_record, IndexName};
use super::envelope::{data_key_context, record_purpose, DATA_KEYS_INDEX_PK};
use super::keyring::{branch_key_context, parse_branch_key_record, BRANCH_KEYS_INDEX_PK};
use crate::clock::Clock;
use crate::ports::db::{Condition, Database, DbError, Index, Item, Key, Query, Update, Value};
use crate::ports::keys::{EncryptionContext, KeyError, KeyService};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::sync::Arc;

/// How many times a record whose conditional write lost a race is read again.
const MAX_ATTEMPTS: usize = 3;
/// At most this many failed record ids are listed in a report (all are counted).
const MAX_LISTED_FAILURES: usize = 100;

/// What one run did so far. Holds record ids and key ids only, never key material.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RewrapReport {
    /// The target key as the key service names it (an ARN on AWS).
    pub target_key_id: String,
    /// Key records examined.
    pub total: u64,
    /// Records re-wrapped under the target key (with `dry_run`: that would be).
    pub rewrapped: u64,
    /// Records already wrapped by the target key.
    pub skipped: u64,
    /// Records whose wrapped key the key service refused (wrong stage, tampered record).
    pub failed: u64,
    /// The first failed record keys (`pk`), for investigation.
    pub failed_records: Vec<String>,
    /// The last data key (ULID) of the last finished page: `--resume-from` starts after it.
    pub cursor: Option<String>,
    /// Nothing was written (`--dry-run`).
    pub dry_run: bool,
    /// Every record was visited.
    pub complete: bool,
}

/// Why a run stopped. Its report says how far it got and where to resume.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the resume cursor is not a data key id (ULID)")]
    InvalidCursor,
    #[error("the target key cannot be used")]
    Target(#[source] KeyError),
    #[error("key service unavailable")]
    Keys(#[source] KeyError),
    #[error("key store unavailable")]
    Store(#[source] DbError),
    #[error("record {0} kept changing while it was re-wrapped")]
    Contended(String),
}

/// A stopped run: the error and the progress made before it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RewrapFailure {
    pub report: RewrapReport,
    #[source]
    pub error: RotationError,
}

/// Options of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapOptions {
    /// KMS key (id, ARN or alias) to wrap every key under.
    pub target_key_id: String,
    /// Start after this data key (a [`RewrapReport::cursor`]).
    pub resume_from: Option<String>,
    /// Data-key records read per page.
    pub page_size: u32,
    /// `ReEncrypt` calls in flight at once (KMS request quotas are per second).
    pub concurrency: usize,
    /// Count what would be re-wrapped, write nothing.
    pub dry_run: bool,
}

impl RewrapOptions {
    pub fn new(target_key_id: &str) -> Self {
        Self {
            target_key_id: target_key_id.to_string(),
            resume_from: None,
            page_size: 100,
            concurrency: 8,
            dry_run: false,
        }
    }
}

enum Outcome {
    Rewrapped,
    Skipped,
    Failed(String),
}

/// Re-wraps the key records of one table.
pub struct Rewrapper {
    keys: Arc<dyn KeyService>,
    db: Arc<dyn Database>,
    clock: Arc<dyn Clock>,
    table: String,
    stage: String,
}

/// The start key of a `gsi1` query that resumes after data key `cursor`.
fn start_after(cursor: &str) -> Result<Item, RotationError> {
    let id = ulid::Ulid::from_string(cursor).map_err(|_| RotationError::InvalidCursor)?;
    let key = super::envelope::data_key_record(&id.to_bytes());
    Ok(crate::ports::db::item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        (Index::Gsi1.pk_attr(), Value::S(DATA_KEYS_INDEX_PK.into())),
        (Index::Gsi1.sk_attr(), Value::S(id.to_string())),
    ]))
}

/// The encryption context of a data-key record, from its `pk` (`DATAKEY#<ulid>`) and
/// its `purpose` (a record without one has the legacy purpose). The context is kept as
/// it was: a re-wrap changes the wrapping key, never what the key may be used for.
fn data_key_record_context(stage: &str, key: &Key, record: &Item) -> Option<EncryptionContext> {
    let ulid = key.pk.strip_prefix(crate::store::keys::DATAKEY)?;
    let id = ulid::Ulid::from_string(ulid).ok()?;
    Some(data_key_context(
        record_purpose(record),
        stage,
        &id.to_bytes(),
    ))
}

impl Rewrapper {
    pub fn new(
        keys: Arc<dyn KeyService>,
        db: Arc<dyn Database>,
        clock: Arc<dyn Clock>,
        table: &str,
        stage: &str,
    ) -> Self {
        Self {
            keys,
            db,
            clock,
            table: table.to_string(),
            stage: stage.to_string(),
        }
    }

    /// Re-wraps every index key, then every data key from the cursor on; calls
    /// `progress` after the index keys and after each page of data keys.
    pub async fn run(
        &self,
        options: &RewrapOptions,
        progress: &mut (dyn FnMut(&RewrapReport) + Send),
    ) -> Result<RewrapReport, RewrapFailure> {
        let mut report = RewrapReport {
            cursor: options.resume_from.clone(),
            dry_run: options.dry_run,
            ..RewrapReport::default()
        };
        match self.visit_all(options, &mut report, progress).await {
            Ok(()) => {
                report.complete = true;
                Ok(report)
            }
            Err(error) => Err(RewrapFailure { report, error }),
        }
    }

    async fn visit_all(
        &self,
        options: &RewrapOptions,
        report: &mut RewrapReport,
        progress: &mut (dyn FnMut(&RewrapReport) + Send),
    ) -> Result<(), RotationError> {
        let mut start = options
            .resume_from
            .as_deref()
            .map(start_after)
            .transpose()?;
        // Compare stored key ids with the name KMS reports (an ARN), not with whatever
        // name (alias, key id) the operator typed, so finished records are recognised.
        let target = self
            .keys
            .resolve_key_id(&options.target_key_id)
            .await
            .map_err(RotationError::Target)?;
        report.target_key_id = target.clone();

        for name in IndexName::ALL {
            let key = index_key_record(name);
            let Some(record) = self
                .db
                .get(&self.table, &key)
                .await
                .map_err(RotationError::Store)?
            else {
                continue;
            };
            let context = index_key_context(&self.stage, name);
            let outcome = self
                .rewrap(key, record, &context, &target, options.dry_run)
                .await?;
            tally(report, outcome);
        }
        self.visit_branch_keys(options, report, &target).await?;
        progress(report);

        loop {
            let query = Query::partition(DATA_KEYS_INDEX_PK)
                .on(Index::Gsi1)
                .limit(options.page_size)
                .start(start.take());
            let page = self
                .db
                .query(&self.table, query)
                .await
                .map_err(RotationError::Store)?;
            let last = page.items.last().and_then(|item| {
                item.get(Index::Gsi1.sk_attr())
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            let outcomes: Vec<Outcome> = futures::stream::iter(page.items)
                .map(|record| self.rewrap_data_key(record, &target, options.dry_run))
                .buffered(options.concurrency.max(1))
                .try_collect()
                .await?;
            for outcome in outcomes {
                tally(report, outcome);
            }
            if last.is_some() {
                report.cursor = last;
            }
            progress(report);
            match page.next {
                Some(next) => start = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Every branch key, all pages (few records: one per purpose and month). Each run
    /// visits them all; those already wrapped by the target are skipped.
    async fn visit_branch_keys(
        &self,
        options: &RewrapOptions,
        report: &mut RewrapReport,
        target: &str,
    ) -> Result<(), RotationError> {
        let mut start = None;
        loop {
            let query = Query::partition(BRANCH_KEYS_INDEX_PK)
                .on(Index::Gsi1)
                .limit(options.page_size)
                .start(start.take());
            let page = self
                .db
                .query(&self.table, query)
                .await
                .map_err(RotationError::Store)?;
            let outcomes: Vec<Outcome> = futures::stream::iter(page.items)
                .map(|record| self.rewrap_branch_key(record, target, options.dry_run))
                .buffered(options.concurrency.max(1))
                .try_collect()
                .await?;
            for outcome in outcomes {
                tally(report, outcome);
            }
            match page.next {
                Some(next) => start = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn rewrap_branch_key(
        &self,
        record: Item,
        target: &str,
        dry_run: bool,
    ) -> Result<Outcome, RotationError> {
        let Some(key) = Key::of(&record) else {
            return Ok(Outcome::Failed("(a record without a key)".into()));
        };
        // The context comes from the record's key (purpose and id), as the envelope
        // builds it: a re-wrap never changes what the key is for.
        let Some(context) = parse_branch_key_record(&key.pk)
            .map(|(purpose, id)| branch_key_context(purpose, &self.stage, &id))
        else {
            return Ok(Outcome::Failed(key.pk));
        };
        self.rewrap(key, record, &context, target, dry_run).await
    }

    async fn rewrap_data_key(
        &self,
        record: Item,
        target: &str,
        dry_run: bool,
    ) -> Result<Outcome, RotationError> {
        let Some(key) = Key::of(&record) else {
            return Ok(Outcome::Failed("(a record without a key)".into()));
        };
        let Some(context) = data_key_record_context(&self.stage, &key, &record) else {
            return Ok(Outcome::Failed(key.pk));
        };
        self.rewrap(key, record, &context, target, dry_run).await
    }

    /// Re-wraps one record unless the target key already wraps it. A lost race (the
    /// conditional write failed) re-reads the record and decides again.
    async fn rewrap(
        &self,
        key: Key,
        mut record: Item,
        context: &EncryptionContext,
        target: &str,
        dry_run: bool,
    ) -> Result<Outcome, RotationError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = record
                .get("kms_key_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            if current.as_deref() == Some(target) {
                return Ok(Outcome::Skipped);
            }
            let Some(wrapped) = record.get("wrapped").and_then(Value::as_bytes) else {
                return Ok(Outcome::Failed(key.pk));
            };
            if dry_run {
                return Ok(Outcome::Rewrapped);
            }
            let rewrapped = match self
                .keys
                .re_encrypt(wrapped, context, target, context)
                .await
            {
                Ok(rewrapped) => rewrapped,
                Err(KeyError::InvalidCiphertext) => return Ok(Outcome::Failed(key.pk)),
                Err(err @ (KeyError::KeyNotFound | KeyError::KeyUnusable)) => {
                    return Err(RotationError::Target(err))
                }
                Err(err) => return Err(RotationError::Keys(err)),
            };
            let unchanged = Condition::And(vec![
                Condition::Equals("wrapped".into(), Value::B(wrapped.to_vec())),
                match current {
                    Some(id) => Condition::Equals("kms_key_id".into(), Value::S(id)),
                    None => Condition::AttributeNotExists("kms_key_id".into()),
                },
            ]);
            let update = Update::new()
                .set("wrapped", Value::B(rewrapped.ciphertext))
                .set("kms_key_id", Value::S(rewrapped.key_id))
                .set("rewrapped_at", Value::N(self.clock.now().timestamp()));
            match self
                .db
                .update(&self.table, &key, update, Some(unchanged))
                .await
            {
                Ok(_) => return Ok(Outcome::Rewrapped),
                Err(DbError::ConditionFailed { .. }) => {
                    match self
                        .db
                        .get(&self.table, &key)
                        .await
                        .map_err(RotationError::Store)?
                    {
                        Some(fresh) => record = fresh,
                        // Deleted meanwhile: nothing left to re-wrap.
                        None => return Ok(Outcome::Skipped),
                    }
                }
                Err(err) => return Err(RotationError::Store(err)),
            }
        }
        Err(RotationError::Contended(key.pk))
    }
}

fn tally(report: &mut RewrapReport, outcome: Outcome) {
    report.total += 1;
    match outcome {
        Outcome::Rewrapped => report.rewrapped += 1,
        Outcome::Skipped => report.skipped += 1,
        Outcome::Failed(record) => {
            report.failed += 1;
            if report.failed_records.len() < MAX_LISTED_FAILURES {
                report.failed_records.push(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::{LocalKeyring, LocalStore};
    use crate::clock::SystemClock;
    use crate::crypto::blind_index::{BlindIndex, IndexName};
    use crate::crypto::{Binding, CachePolicy, Envelope, MeteredKeys};
    use std::sync::atomic::Ordering;

    struct Fixture {
        keys: Arc<MeteredKeys>,
        ring: Arc<LocalKeyring>,
        db: Arc<dyn Database>,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("dir");
        let db: Arc<dyn Database> = Arc::new(
            LocalStore::open(&dir.path().join("s.redb"), Arc::new(SystemClock)).expect("store"),
        );
        let ring = Arc::new(LocalKeyring::open(&dir.path().join("k.json")).expect("ring"));
        ring.create_key("key-a").expect("a");
        ring.create_key("key-b").expect("b");
        Fixture {
            keys: Arc::new(MeteredKeys::new(ring.clone())),
            ring,
            db,
            _dir: dir,
        }
    }

    /// A writer with per-instance data keys (format v1: a purpose without branch keys),
    /// so `max_uses` decides how many data-key records there are.
    fn envelope(f: &Fixture, key: &str, max_uses: u64) -> Envelope {
        Envelope::new(
            f.keys.clone(),
            f.db.clone(),
            Arc::new(SystemClock),
            "t",
            key,
            "test",
            CachePolicy {
                max_uses,
                ..CachePolicy::default()
            },
        )
        .with_purpose(crate::crypto::envelope::Purpose::Notification)
    }

    fn rewrapper(f: &Fixture, stage: &str) -> Rewrapper {
        Rewrapper::new(
            f.keys.clone(),
            f.db.clone(),
            Arc::new(SystemClock),
            "t",
            stage,
        )
    }

    fn at(pk: &str) -> Binding<'_> {
        Binding {
            table: "t",
            pk,
            sk: "PROFILE",
            attribute: "ssn",
        }
    }

    async fn run(r: &Rewrapper, options: &RewrapOptions) -> RewrapReport {
        r.run(options, &mut |_| {}).await.expect("run")
    }

    #[tokio::test]
    async fn rewraps_every_key_once_in_pages_and_values_still_decrypt() {
        let f = fixture();
        let writer = envelope(&f, "key-a", 2);
        let mut sealed = Vec::new();
        for i in 0..9 {
            let pk = format!("USER#{i}");
            let c = writer.encrypt(&at(&pk), b"secret").await.expect("enc");
            sealed.push((pk, c));
        }
        let index = BlindIndex::new(f.keys.clone(), f.db.clone(), "t", "key-a", "test");
        let before = index
            .compute(IndexName::Email, "pat@example.com")
            .await
            .expect("index");

        let mut pages = 0;
        let options = RewrapOptions {
            page_size: 2,
            ..RewrapOptions::new("key-b")
        };
        let report = rewrapper(&f, "test")
            .run(&options, &mut |_| pages += 1)
            .await
            .expect("run");
        // 9 values at 2 uses per key: 5 data keys, plus the e-mail index key.
        assert_eq!((report.total, report.rewrapped, report.skipped), (6, 6, 0));
        assert!(report.complete && report.failed == 0);
        assert_eq!(pages, 1 + 3, "index keys, then pages of two");
        assert_eq!(f.keys.calls().re_encrypt.load(Ordering::Relaxed), 6);

        // Fresh instances (no cached keys) read everything back through key B.
        let reader = envelope(&f, "key-b", 2);
        for (pk, c) in &sealed {
            let plain = reader.decrypt(&at(pk), c).await.expect("dec");
            assert_eq!(plain.as_slice(), b"secret");
        }
        let index = BlindIndex::new(f.keys.clone(), f.db.clone(), "t", "key-b", "test");
        let after = index
            .compute(IndexName::Email, "pat@example.com")
            .await
            .expect("index");
        assert_eq!(before, after, "the index key itself did not change");

        let again = run(&rewrapper(&f, "test"), &RewrapOptions::new("key-b")).await;
        assert_eq!((again.total, again.rewrapped, again.skipped), (6, 0, 6));
        assert_eq!(f.keys.calls().re_encrypt.load(Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn rewrapping_keeps_each_keys_purpose_legacy_records_included() {
        use crate::crypto::envelope::Purpose;
        let f = fixture();
        // PHI is sealed under the month's branch key, audit reasons under a data key.
        let phi = envelope(&f, "key-a", 100).with_purpose(Purpose::Phi);
        let audit = envelope(&f, "key-a", 100).with_purpose(Purpose::Audit);
        let phi_value = phi.encrypt(&at("USER#p"), b"phi").await.expect("phi");
        let audit_value = audit
            .encrypt(&at("USER#a"), b"reason")
            .await
            .expect("audit");
        let legacy = crate::crypto::envelope::tests::legacy_value(
            f.keys.as_ref(),
            f.db.as_ref(),
            "key-a",
            "USER#old",
        )
        .await;
        let report = run(&rewrapper(&f, "test"), &RewrapOptions::new("key-b")).await;
        assert_eq!((report.total, report.rewrapped, report.failed), (3, 3, 0));
        // Fresh instances read each value back through key B, under its own purpose.
        let phi = envelope(&f, "key-b", 100).with_purpose(Purpose::Phi);
        let audit = envelope(&f, "key-b", 100).with_purpose(Purpose::Audit);
        assert_eq!(
            phi.decrypt(&at("USER#p"), &phi_value)
                .await
                .expect("phi")
                .as_slice(),
            b"phi"
        );
        assert_eq!(
            audit
                .decrypt(&at("USER#a"), &audit_value)
                .await
                .expect("audit")
                .as_slice(),
            b"reason"
        );
        assert_eq!(
            phi.decrypt(&at("USER#old"), &legacy)
                .await
                .expect("legacy")
                .as_slice(),
            b"old value"
        );
        assert!(matches!(
            phi.decrypt(&at("USER#a"), &audit_value).await,
            Err(crate::crypto::CryptoError::Integrity)
        ));
    }

    /// Branch keys: one record per purpose and month however many instances wrote, so
    /// re-wrapping a month of PHI is one `ReEncrypt`, not one per instance and 5 minutes.
    #[tokio::test]
    async fn branch_keys_are_rewrapped_once_per_month_and_v2_values_still_open() {
        use crate::crypto::envelope::Purpose;
        let f = fixture();
        let clock = Arc::new(crate::clock::ManualClock::new(
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 20, 9, 0, 0)
                .single()
                .expect("instant"),
        ));
        let phi = |key: &str| {
            Envelope::new(
                f.keys.clone(),
                f.db.clone(),
                clock.clone(),
                "t",
                key,
                "test",
                CachePolicy::default(),
            )
            .with_purpose(Purpose::Phi)
        };
        // Twenty instances over three weeks (November into December): two months.
        let mut sealed = Vec::new();
        for i in 0..20 {
            let pk = format!("USER#{i}");
            let value = phi("key-a").encrypt(&at(&pk), b"dob").await.expect("enc");
            sealed.push((pk, value));
            clock.advance(chrono::Duration::hours(25));
        }
        let report = run(&rewrapper(&f, "test"), &RewrapOptions::new("key-b")).await;
        assert_eq!((report.total, report.rewrapped, report.failed), (2, 2, 0));
        assert_eq!(f.keys.calls().re_encrypt.load(Ordering::Relaxed), 2);
        let reader = phi("key-b");
        for (pk, value) in &sealed {
            let plain = reader.decrypt(&at(pk), value).await.expect("dec");
            assert_eq!(plain.as_slice(), b"dob");
        }
        // The records name key B now (the old key can go).
        let records =
            f.db.query("t", Query::partition(BRANCH_KEYS_INDEX_PK).on(Index::Gsi1))
                .await
                .expect("branch keys");
        let wrapping: Vec<_> = records
            .items
            .iter()
            .map(|r| r.get("kms_key_id").and_then(Value::as_str))
            .collect();
        assert_eq!(wrapping, [Some("key-b"), Some("key-b")]);
        let again = run(&rewrapper(&f, "test"), &RewrapOptions::new("key-b")).await;
        assert_eq!((again.total, again.skipped), (2, 2));
        // A wrong stage cannot unwrap a branch key either: reported, not rewritten.
        let wrong = run(&rewrapper(&f, "prod"), &RewrapOptions::new("key-a")).await;
        assert_eq!((wrong.failed, wrong.rewrapped), (2, 0));
        assert!(wrong.failed_records[0].starts_with("DATAKEY#branch."));
    }

    #[tokio::test]
    async fn resumes_after_the_cursor_and_dry_runs_write_nothing() {
        let f = fixture();
        let writer = envelope(&f, "key-a", 1);
        for i in 0..4 {
            let pk = format!("USER#{i}");
            writer.encrypt(&at(&pk), b"x").await.expect("enc");
        }
        let dry = run(
            &rewrapper(&f, "test"),
            &RewrapOptions {
                dry_run: true,
                ..RewrapOptions::new("key-b")
            },
        )
        .await;
        assert_eq!((dry.total, dry.rewrapped), (4, 4));
        assert_eq!(f.keys.calls().re_encrypt.load(Ordering::Relaxed), 0);

        let first = run(
            &rewrapper(&f, "test"),
            &RewrapOptions {
                page_size: 1,
                ..RewrapOptions::new("key-b")
            },
        )
        .await;
        let all: Vec<String> = {
            let page =
                f.db.query(
                    "t",
                    Query::partition(DATA_KEYS_INDEX_PK)
                        .on(Index::Gsi1)
                        .limit(10),
                )
                .await
                .expect("query");
            page.items
                .iter()
                .filter_map(|i| i.get("gsi1sk").and_then(Value::as_str).map(str::to_string))
                .collect()
        };
        assert_eq!(first.cursor.as_deref(), all.last().map(String::as_str));
        let resumed = run(
            &rewrapper(&f, "test"),
            &RewrapOptions {
                resume_from: Some(all[1].clone()),
                ..RewrapOptions::new("key-a")
            },
        )
        .await;
        assert_eq!(resumed.total, 2, "only the data keys after the cursor");
        assert_eq!(resumed.rewrapped, 2);
        let err = rewrapper(&f, "test")
            .run(
                &RewrapOptions {
                    resume_from: Some("not-a-ulid".into()),
                    ..RewrapOptions::new("key-a")
                },
                &mut |_| {},
            )
            .await
            .expect_err("bad cursor");
        assert!(matches!(err.error, RotationError::InvalidCursor));
    }

    #[tokio::test]
    async fn a_wrong_stage_fails_records_and_changes_nothing() {
        let f = fixture();
        envelope(&f, "key-a", 10)
            .encrypt(&at("USER#1"), b"x")
            .await
            .expect("enc");
        let report = run(&rewrapper(&f, "prod"), &RewrapOptions::new("key-b")).await;
        assert_eq!((report.total, report.failed, report.rewrapped), (1, 1, 0));
        assert!(report.failed_records[0].starts_with("DATAKEY#"));
        let again = run(&rewrapper(&f, "test"), &RewrapOptions::new("key-b")).await;
        assert_eq!(again.rewrapped, 1, "the record was left as it was");
    }

    #[tokio::test]
    async fn an_unknown_target_stops_before_any_write() {
        let f = fixture();
        envelope(&f, "key-a", 10)
            .encrypt(&at("USER#1"), b"x")
            .await
            .expect("enc");
        let err = rewrapper(&f, "test")
            .run(&RewrapOptions::new("key-missing"), &mut |_| {})
            .await
            .expect_err("unknown target");
        assert!(matches!(
            err.error,
            RotationError::Target(KeyError::KeyNotFound)
        ));
        assert_eq!(err.report.total, 0);
        assert!(f.ring.resolve_key_id("key-a").await.is_ok());
    }

    #[tokio::test]
    async fn a_record_changed_by_someone_else_is_not_overwritten() {
        let f = fixture();
        envelope(&f, "key-a", 10)
            .encrypt(&at("USER#1"), b"x")
            .await
            .expect("enc");
        let page =
            f.db.query(
                "t",
                Query::partition(DATA_KEYS_INDEX_PK)
                    .on(Index::Gsi1)
                    .limit(10),
            )
            .await
            .expect("query");
        let stale = page.items[0].clone();
        let key = Key::of(&stale).expect("key");
        // Someone else re-wraps it first (to key B), after we read it.
        let r = rewrapper(&f, "test");
        assert!(matches!(
            r.rewrap_data_key(stale.clone(), "key-b", false).await,
            Ok(Outcome::Rewrapped)
        ));
        let winner = f.db.get("t", &key).await.expect("get").expect("record");
        // Our stale copy (still naming key A) must not overwrite theirs.
        assert!(matches!(
            r.rewrap_data_key(stale, "key-b", false).await,
            Ok(Outcome::Skipped)
        ));
        let now = f.db.get("t", &key).await.expect("get").expect("record");
        assert_eq!(now.get("wrapped"), winner.get("wrapped"));
    }
}
