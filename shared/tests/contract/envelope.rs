//! The envelope over the ports (DynamoDB and KMS, or their local stand-ins): branch
//! keys (format v2) stored and created race-free through the database port, values of
//! both formats opening, the KMS calls of a cold read of a month, and `docare-rewrap`'s
//! re-wrap of branch keys.

use crate::support;
use chrono::{TimeZone, Utc};
use shared::adapters::aws::{DynamoDb, Kms};
use shared::adapters::local::{LocalKeyring, LocalStore};
use shared::clock::{Clock, ManualClock};
use shared::crypto::envelope::Purpose;
use shared::crypto::keyring::BRANCH_KEYS_INDEX_PK;
use shared::crypto::rotation::{RewrapOptions, Rewrapper};
use shared::crypto::{format, Binding, CachePolicy, CryptoError, Envelope, MeteredKeys};
use shared::ports::db::{Index, Query, Value};
use shared::ports::{Database, KeyService};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct EnvelopeFixture {
    keys: Arc<dyn KeyService>,
    db: Arc<dyn Database>,
    clock: Arc<ManualClock>,
    table: String,
    /// Two KMS keys, named as the key service reports them.
    key_a: String,
    key_b: String,
    _dir: Option<tempfile::TempDir>,
}

fn clock() -> Arc<ManualClock> {
    // Mid-month: a month of writes from here spans two calendar months.
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 16, 9, 0, 0)
            .single()
            .expect("instant"),
    ))
}

async fn local_fixture() -> EnvelopeFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = clock();
    let db = LocalStore::open(&dir.path().join("store.redb"), clock.clone()).expect("store");
    let ring = LocalKeyring::open(&dir.path().join("keyring.json")).expect("keyring");
    ring.create_key("local/a").expect("key a");
    ring.create_key("local/b").expect("key b");
    EnvelopeFixture {
        keys: Arc::new(ring),
        db: Arc::new(db),
        clock,
        table: "docare".into(),
        key_a: "local/a".into(),
        key_b: "local/b".into(),
        _dir: Some(dir),
    }
}

async fn aws_fixture() -> Option<EnvelopeFixture> {
    let sdk = support::aws()?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = support::unique("docare-envelope");
    support::create_table(&dynamo, &table, &[Index::Gsi1, Index::Gsi2]).await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let mut arns = Vec::new();
    for _ in 0..2 {
        let key = kms
            .create_key()
            .description("docare envelope contract test")
            .send()
            .await
            .expect("create key");
        arns.push(
            key.key_metadata()
                .and_then(|m| m.arn())
                .expect("arn")
                .to_string(),
        );
    }
    let clock = clock();
    Some(EnvelopeFixture {
        keys: Arc::new(Kms::new(kms)),
        db: Arc::new(DynamoDb::new(dynamo, clock.clone())),
        clock,
        table,
        key_b: arns.pop().expect("key b"),
        key_a: arns.pop().expect("key a"),
        _dir: None,
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        a_cold_instance_reads_a_month_of_phi_with_two_kms_calls,
        racing_instances_share_one_branch_key,
        old_format_values_still_open,
        tampered_and_swapped_values_fail,
        branch_keys_are_rewrapped_and_still_open,
    ];
    local_only: [];
}

impl EnvelopeFixture {
    /// A fresh instance (empty caches) of `purpose`, counting its KMS calls.
    fn instance(&self, purpose: Purpose) -> (Envelope, Arc<shared::crypto::KmsCalls>) {
        let metered = MeteredKeys::new(self.keys.clone());
        let calls = metered.calls();
        let clock: Arc<dyn Clock> = self.clock.clone();
        let envelope = Envelope::new(
            Arc::new(metered),
            self.db.clone(),
            clock,
            &self.table,
            &self.key_a,
            "test",
            CachePolicy::default(),
        )
        .with_purpose(purpose);
        (envelope, calls)
    }

    fn at<'a>(&'a self, pk: &'a str) -> Binding<'a> {
        Binding {
            table: &self.table,
            pk,
            sk: "PROFILE",
            attribute: "ssn",
        }
    }

    async fn branch_records(&self) -> Vec<shared::ports::db::Item> {
        self.db
            .query(
                &self.table,
                Query::partition(BRANCH_KEYS_INDEX_PK).on(Index::Gsi1),
            )
            .await
            .expect("branch keys")
            .items
    }
}

/// 100 PHI items written over 30 days by 100 cold instances: a fresh instance opens
/// them all with one KMS call per calendar month (two here).
async fn a_cold_instance_reads_a_month_of_phi_with_two_kms_calls(fx: &EnvelopeFixture) {
    let mut sealed = Vec::new();
    for i in 0..100 {
        let pk = format!("USER#{i}");
        let (writer, _) = fx.instance(Purpose::Phi);
        let value = writer
            .encrypt(&fx.at(&pk), format!("v{i}").as_bytes())
            .await
            .expect("encrypt");
        assert_eq!(value.first(), Some(&format::VERSION_BRANCH));
        sealed.push((pk, value));
        fx.clock
            .advance(chrono::Duration::seconds(30 * 86_400 / 100));
    }
    let (reader, calls) = fx.instance(Purpose::Phi);
    for (i, (pk, value)) in sealed.iter().enumerate() {
        let plain = reader.decrypt(&fx.at(pk), value).await.expect("decrypt");
        assert_eq!(plain.as_slice(), format!("v{i}").as_bytes());
    }
    assert_eq!(calls.decrypt.load(Ordering::Relaxed), 2);
    assert_eq!(calls.total(), 2);
    assert_eq!(fx.branch_records().await.len(), 2, "one per month");
}

/// Cold instances sealing at once: one branch key stored, every value opens with it.
async fn racing_instances_share_one_branch_key(fx: &EnvelopeFixture) {
    let instances: Vec<_> = (0..8).map(|_| fx.instance(Purpose::Phi).0).collect();
    let pks: Vec<String> = (0..8).map(|i| format!("USER#race{i}")).collect();
    let sealed = futures::future::join_all(
        instances
            .iter()
            .zip(&pks)
            .map(|(instance, pk)| async move { instance.encrypt(&fx.at(pk), b"raced").await }),
    )
    .await;
    assert_eq!(fx.branch_records().await.len(), 1);
    let (reader, calls) = fx.instance(Purpose::Phi);
    for (pk, value) in pks.iter().zip(sealed) {
        let value = value.expect("sealed");
        let plain = reader.decrypt(&fx.at(pk), &value).await.expect("decrypt");
        assert_eq!(plain.as_slice(), b"raced");
    }
    assert_eq!(calls.total(), 1, "one key for all of them");
}

/// A PHI value sealed the v1 way (a per-instance `docare-phi` data key, as before branch
/// keys) opens beside a v2 one.
async fn old_format_values_still_open(fx: &EnvelopeFixture) {
    let (writer, _) = fx.instance(Purpose::Phi);
    let (id, key) = writer.data_key().await.expect("data key");
    let old = format::seal(&id, &key, &fx.at("USER#old"), b"old").expect("seal");
    let new = writer
        .encrypt(&fx.at("USER#new"), b"new")
        .await
        .expect("encrypt");
    let (reader, calls) = fx.instance(Purpose::Phi);
    for (pk, value, plain) in [("USER#old", &old, b"old"), ("USER#new", &new, b"new")] {
        let opened = reader.decrypt(&fx.at(pk), value).await.expect("decrypt");
        assert_eq!(opened.as_slice(), plain);
    }
    assert_eq!(calls.decrypt.load(Ordering::Relaxed), 2);
}

async fn tampered_and_swapped_values_fail(fx: &EnvelopeFixture) {
    let (writer, _) = fx.instance(Purpose::Phi);
    let alice = writer
        .encrypt(&fx.at("USER#alice"), b"alice")
        .await
        .expect("encrypt");
    let bob = writer
        .encrypt(&fx.at("USER#bob"), b"bob")
        .await
        .expect("encrypt");
    let mut tampered = alice.clone();
    tampered[50] ^= 0x20;
    let (reader, _) = fx.instance(Purpose::Phi);
    for (pk, value) in [("USER#alice", &bob), ("USER#alice", &tampered)] {
        assert!(matches!(
            reader.decrypt(&fx.at(pk), value).await,
            Err(CryptoError::Integrity)
        ));
    }
    // A purpose without branch keys refuses a v2 value before any KMS call.
    let (audit, calls) = fx.instance(Purpose::Audit);
    assert!(matches!(
        audit.decrypt(&fx.at("USER#alice"), &alice).await,
        Err(CryptoError::Integrity)
    ));
    assert_eq!(calls.total(), 0);
}

/// `docare-rewrap`'s rotation on branch keys: one `ReEncrypt` per branch key; values
/// open afterwards and the record names the new key.
async fn branch_keys_are_rewrapped_and_still_open(fx: &EnvelopeFixture) {
    let (writer, _) = fx.instance(Purpose::Phi);
    let value = writer
        .encrypt(&fx.at("USER#r"), b"rotated")
        .await
        .expect("encrypt");
    let metered = Arc::new(MeteredKeys::new(fx.keys.clone()));
    let clock: Arc<dyn Clock> = fx.clock.clone();
    let report = Rewrapper::new(metered.clone(), fx.db.clone(), clock, &fx.table, "test")
        .run(&RewrapOptions::new(&fx.key_b), &mut |_| {})
        .await
        .expect("rewrap");
    assert_eq!((report.total, report.rewrapped, report.failed), (1, 1, 0));
    assert_eq!(metered.calls().re_encrypt.load(Ordering::Relaxed), 1);
    let records = fx.branch_records().await;
    assert_eq!(
        records[0].get("kms_key_id").and_then(Value::as_str),
        Some(fx.key_b.as_str())
    );
    let (reader, _) = fx.instance(Purpose::Phi);
    let plain = reader
        .decrypt(&fx.at("USER#r"), &value)
        .await
        .expect("decrypt");
    assert_eq!(plain.as_slice(), b"rotated");
}
