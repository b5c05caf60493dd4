//! `docare-audit-verify` as an operator runs it: events written through the audit
//! writer, then the binary over the local stack's data folder (`--data-dir`) and over
//! DynamoDB (`--aws`, against the emulator `scripts/test` starts); intact is exit 0 with
//! a summary, and a deleted, edited or truncated event is exit 1 naming it.

use shared::adapters::aws::DynamoDb;
use shared::adapters::local::{LocalKeyring, LocalStore};
use shared::audit::{
    chain_pk, seq_sk, Action, Actor, Anchorer, AuditEvent, AuditReader, AuditWriter, Outcome,
    Reason, ANCHOR_PK, CHAIN_SHARDS,
};
use shared::clock::{Clock, SystemClock};
use shared::crypto::{CachePolicy, Envelope};
use shared::ports::db::{Database, Index, Item, Key, Value};
use shared::ports::KeyService;
use shared::testing::{aws, local_app_in, local_test_config};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_docare-audit-verify");

/// Where the chains live and how the binary reaches them.
struct Target {
    open: Box<dyn Fn() -> Arc<dyn Database>>,
    table: String,
    audit_table: String,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// The anchor key (the key ring's or a KMS key) and where it is.
    keys: Arc<dyn KeyService>,
    anchor_key: String,
}

impl Target {
    fn verify(&self) -> (i32, String) {
        let output = Command::new(BIN)
            .args(&self.args)
            .env_remove("AWS_PROFILE")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text.trim().to_string())
    }

    async fn item(&self, shard: u32, seq: u64) -> Item {
        (self.open)()
            .get(&self.audit_table, &Key::new(chain_pk(shard), seq_sk(seq)))
            .await
            .expect("get")
            .expect("event exists")
    }

    async fn put(&self, item: Item) {
        (self.open)()
            .put(&self.audit_table, item, None)
            .await
            .expect("put");
    }

    async fn delete(&self, shard: u32, seq: u64) {
        (self.open)()
            .delete(
                &self.audit_table,
                &Key::new(chain_pk(shard), seq_sk(seq)),
                None,
            )
            .await
            .expect("delete");
    }
}

fn event_id(item: &Item) -> String {
    item["event_id"].as_str().expect("event id").to_string()
}

/// Writes 4 events on shard 1 and 3 on shard 2 through two writers, then tampers and
/// restores, running the binary after each step.
async fn exercise(target: Target) {
    {
        let db = (target.open)();
        let keys_dir = tempfile::tempdir().expect("dir");
        let ring = LocalKeyring::open(&keys_dir.path().join("keyring.json")).expect("ring");
        ring.create_key("k").expect("key");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let envelope = Arc::new(Envelope::new(
            Arc::new(ring),
            db.clone(),
            clock.clone(),
            &target.table,
            "k",
            "test",
            CachePolicy::default(),
        ));
        let mut config = local_test_config();
        config.table = target.table.clone();
        config.audit_table = target.audit_table.clone();
        let writer = |shard| {
            AuditWriter::new(db.clone(), envelope.clone(), clock.clone(), &config)
                .starting_on_shard(shard)
        };
        let (one, two) = (writer(1), writer(2));
        for i in 0..4 {
            let event = AuditEvent::new(Action::View, Outcome::Success)
                .actor(Actor::user(format!("u{i}"), "provider"))
                .resource("note", "n1");
            one.record(event).await.expect("record");
        }
        for _ in 0..3 {
            let event = AuditEvent::new(Action::BreakGlass, Outcome::Success)
                .actor(Actor::user("u9", "provider"))
                .resource("patient", "p1")
                .reason(Reason::new("emergency").expect("reason"));
            two.record(event).await.expect("record");
        }
    }
    // Unanchored events younger than the grace period pass; then the heads are anchored.
    let unanchored = target.verify();
    assert_eq!(
        unanchored,
        (
            0,
            "verified 7 events in 2 chains against 0 anchors".to_string()
        )
    );
    {
        // Dropped before the binary runs (it needs the local store unlocked).
        let db = (target.open)();
        let anchorer = Anchorer {
            db: db.clone(),
            keys: target.keys.clone(),
            reader: AuditReader::with_tables(db, &target.table, &target.audit_table),
            audit_table: target.audit_table.clone(),
            anchor_key_id: target.anchor_key.clone(),
            shards: CHAIN_SHARDS,
        };
        let run = anchorer.run(SystemClock.now()).await.expect("anchor");
        assert_eq!(run.anchor, Some(0));
    }
    let intact = target.verify();
    assert_eq!(
        intact,
        (
            0,
            "verified 7 events in 2 chains against 1 anchors".to_string()
        )
    );

    // The anchor forged (its heads changed, the signature kept).
    let anchor_key = Key::new(ANCHOR_PK, seq_sk(0));
    let signed = (target.open)()
        .get(&target.audit_table, &anchor_key)
        .await
        .expect("get")
        .expect("anchor");
    let mut forged = signed.clone();
    forged.insert("heads".into(), Value::S("[]".into()));
    target.put(forged).await;
    let (code, text) = target.verify();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("anchor 0 is not valid (signature)"), "{text}");
    target.put(signed).await;
    assert_eq!(target.verify(), intact, "restored");

    // A middle event deleted.
    let middle = target.item(1, 2).await;
    target.delete(1, 2).await;
    let (code, text) = target.verify();
    assert_eq!(code, 1, "{text}");
    let at = format!("shard 1 seq 2 event {}", event_id(&middle));
    assert!(text.contains(&at) && text.contains("missing"), "{text}");
    target.put(middle).await;
    assert_eq!(target.verify(), intact, "restored");

    // One attribute edited.
    let original = target.item(2, 1).await;
    let mut edited = original.clone();
    edited.insert("outcome".into(), Value::S("denied".into()));
    target.put(edited).await;
    let (code, text) = target.verify();
    assert_eq!(code, 1, "{text}");
    let at = format!("shard 2 seq 1 event {}", event_id(&original));
    assert!(text.contains(&at) && text.contains("altered"), "{text}");
    target.put(original).await;
    assert_eq!(target.verify(), intact, "restored");

    // The last event deleted.
    let last = target.item(1, 3).await;
    target.delete(1, 3).await;
    let (code, text) = target.verify();
    assert_eq!(code, 1, "{text}");
    let at = format!("shard 1 seq 3 event {}", event_id(&last));
    assert!(
        text.contains(&at) && text.contains("tail deleted"),
        "{text}"
    );
}

#[tokio::test]
async fn verifies_the_local_data_folder_and_names_each_break() {
    let data = tempfile::tempdir().expect("dir");
    let config = local_test_config();
    // A data folder as the local stack creates it.
    drop(local_app_in(data.path(), Arc::new(SystemClock)));
    let store_path: PathBuf = data.path().join("store.redb");
    let ring = LocalKeyring::open(&data.path().join("keyring.json")).expect("ring");
    exercise(Target {
        // Opened per step and dropped after it: the binary needs the file unlocked.
        open: Box::new(move || {
            Arc::new(LocalStore::open(&store_path, Arc::new(SystemClock)).expect("store"))
        }),
        table: config.table,
        audit_table: config.audit_table,
        args: vec!["--data-dir".into(), data.path().display().to_string()],
        env: Vec::new(),
        keys: Arc::new(ring),
        anchor_key: config.audit_anchor_key_id,
    })
    .await;
}

#[test]
fn a_missing_folder_is_not_an_empty_trail() {
    let data = tempfile::tempdir().expect("dir");
    let output = Command::new(BIN)
        .args(["--data-dir"])
        .arg(data.path().join("nope"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3));
    let output = Command::new(BIN).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn verifies_dynamodb_tables_and_names_each_break() {
    let Some(endpoint) = aws::endpoint() else {
        return;
    };
    let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config(&endpoint));
    let suffix = ulid::Ulid::new().to_string().to_lowercase();
    let (table, audit_table) = (format!("docare-{suffix}"), format!("docare-audit-{suffix}"));
    aws::create_table(&client, &table, &[Index::Gsi1, Index::Gsi2]).await;
    aws::create_table(&client, &audit_table, &Index::ALL).await;
    let db: Arc<dyn Database> = Arc::new(DynamoDb::new(client, Arc::new(SystemClock)));
    let kms = aws_sdk_kms::Client::new(&aws::sdk_config(&endpoint));
    let anchor_key = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .expect("anchor key")
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string();
    exercise(Target {
        open: Box::new(move || db.clone()),
        args: vec![
            "--aws".into(),
            "--table".into(),
            table.clone(),
            "--audit-table".into(),
            audit_table.clone(),
            "--anchor-key".into(),
            anchor_key.clone(),
        ],
        table,
        audit_table,
        env: aws::child_env(&endpoint),
        keys: Arc::new(shared::adapters::aws::Kms::new(kms)),
        anchor_key,
    })
    .await;
}
