//! `docare-rewrap` end to end, as an operator runs it: values encrypted under key A
//! (per-instance data keys and a PHI branch key),
//! a re-wrap to key B, every value still decrypts, every key record names key B, and a
//! second run re-wraps nothing. Once on a local data folder, once on the AWS adapters
//! against the emulator (`DOCARE_TEST_AWS_ENDPOINT`, started by `scripts/test`).

use serde_json::Value as Json;
use shared::adapters::aws::{DynamoDb, Kms};
use shared::adapters::local;
use shared::clock::{Clock, SystemClock};
use shared::crypto::blind_index::{index_key_record, BlindIndex, IndexName};
use shared::crypto::envelope::{Purpose, DATA_KEYS_INDEX_PK};
use shared::crypto::keyring::BRANCH_KEYS_INDEX_PK;
use shared::crypto::{Binding, CachePolicy, Envelope};
use shared::ports::db::{Index, Query, Value};
use shared::ports::{Database, KeyService};
use shared::testing::{aws, local_app_in};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_docare-rewrap");
const VALUES: usize = 7;
/// PHI values, sealed under the month's branch key (one record however many).
const PHI_VALUES: usize = 3;

struct Run {
    status: i32,
    summary: Json,
    stderr: String,
}

fn rewrap(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let summary = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON summary on stdout ({e}): {stdout}\n{stderr}"));
    Run {
        status: output.status.code().unwrap_or(-1),
        summary,
        stderr,
    }
}

fn at(pk: &str) -> Binding<'_> {
    Binding {
        table: "docare",
        pk,
        sk: "PROFILE",
        attribute: "ssn",
    }
}

/// The envelopes of a fresh process (no cached keys, every decrypt reads the key
/// records): one with per-instance data keys (a purpose without branch keys, two
/// values per data key) and the PHI one (branch keys).
struct Envelopes {
    data: Envelope,
    phi: Envelope,
}

fn envelope(
    keys: Arc<dyn KeyService>,
    db: Arc<dyn Database>,
    table: &str,
    key: &str,
    stage: &str,
) -> Envelopes {
    let make = |purpose| {
        Envelope::new(
            keys.clone(),
            db.clone(),
            Arc::new(SystemClock),
            table,
            key,
            stage,
            CachePolicy {
                max_uses: 2,
                ..CachePolicy::default()
            },
        )
        .with_purpose(purpose)
    };
    Envelopes {
        data: make(Purpose::Notification),
        phi: make(Purpose::Phi),
    }
}

impl Envelopes {
    /// PHI values are the ones at `PHI#<n>`.
    fn for_pk(&self, pk: &str) -> &Envelope {
        if pk.starts_with("PHI#") {
            &self.phi
        } else {
            &self.data
        }
    }
}

/// Encrypts `VALUES` values (two per data key) and `PHI_VALUES` PHI values (one branch
/// key), and computes the e-mail index.
async fn write_values(env: &Envelopes, index: &BlindIndex) -> (Vec<(String, Vec<u8>)>, String) {
    let mut sealed = Vec::new();
    let pks = (0..VALUES)
        .map(|i| format!("USER#{i}"))
        .chain((0..PHI_VALUES).map(|i| format!("PHI#{i}")));
    for (i, pk) in pks.enumerate() {
        let ciphertext = env
            .for_pk(&pk)
            .encrypt(&at(&pk), format!("ssn-{i}").as_bytes())
            .await
            .expect("encrypt");
        sealed.push((pk, ciphertext));
    }
    let email = index
        .compute(IndexName::Email, "pat@example.com")
        .await
        .expect("index");
    (sealed, email)
}

async fn check_values(
    env: &Envelopes,
    index: &BlindIndex,
    sealed: &[(String, Vec<u8>)],
    email: &str,
) {
    for (i, (pk, ciphertext)) in sealed.iter().enumerate() {
        let plain = env
            .for_pk(pk)
            .decrypt(&at(pk), ciphertext)
            .await
            .expect("decrypt");
        assert_eq!(plain.as_slice(), format!("ssn-{i}").as_bytes());
    }
    let again = index
        .compute(IndexName::Email, "pat@example.com")
        .await
        .expect("index");
    assert_eq!(again, email, "same index key, same index values");
}

/// The `kms_key_id` of every key record: data keys and branch keys (via gsi1) and the
/// index key.
async fn key_ids(db: &dyn Database, table: &str) -> Vec<String> {
    let mut records = Vec::new();
    for partition in [DATA_KEYS_INDEX_PK, BRANCH_KEYS_INDEX_PK] {
        let page = db
            .query(
                table,
                Query::partition(partition).on(Index::Gsi1).limit(1000),
            )
            .await
            .expect("query");
        records.extend(page.items);
    }
    assert_eq!(records.len() as u64, RECORDS - 1, "every key record listed");
    records.push(
        db.get(table, &index_key_record(IndexName::Email))
            .await
            .expect("get")
            .expect("index key record"),
    );
    records
        .iter()
        .map(|r| {
            r.get("kms_key_id")
                .and_then(Value::as_str)
                .expect("kms_key_id")
                .to_string()
        })
        .collect()
}

fn number(summary: &Json, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field}: {summary}"))
}

/// Data keys: ceil(VALUES / 2); plus the branch key and the index key.
const RECORDS: u64 = VALUES.div_ceil(2) as u64 + 2;

fn assert_first_run(run: &Run) {
    assert_eq!(run.status, 0, "{}\n{}", run.summary, run.stderr);
    assert_eq!(number(&run.summary, "total"), RECORDS, "{}", run.summary);
    assert_eq!(number(&run.summary, "rewrapped"), RECORDS);
    assert_eq!(number(&run.summary, "skipped"), 0);
    assert_eq!(number(&run.summary, "kms_re_encrypt_calls"), RECORDS);
    assert_eq!(run.summary["complete"], Json::Bool(true));
    assert!(
        run.stderr.contains(&format!(
            "rewrapped {RECORDS} / skipped 0 / total {RECORDS}"
        )),
        "{}",
        run.stderr
    );
}

fn assert_second_run(run: &Run) {
    assert_eq!(run.status, 0, "{}\n{}", run.summary, run.stderr);
    assert_eq!(number(&run.summary, "rewrapped"), 0, "{}", run.summary);
    assert_eq!(number(&run.summary, "skipped"), RECORDS);
    assert_eq!(number(&run.summary, "kms_re_encrypt_calls"), 0);
}

fn assert_no_key_material(run: &Run, dir: Option<&Path>) {
    let text = format!("{}{}", run.summary, run.stderr);
    assert!(
        !text.contains("material") && !text.contains("plaintext"),
        "{text}"
    );
    if let Some(dir) = dir {
        let ring = std::fs::read_to_string(dir.join("keyring.json")).expect("ring");
        let ring: Json = serde_json::from_str(&ring).expect("json");
        for key in ring["keys"].as_object().expect("keys").values() {
            let material = key["material"].as_str().expect("material");
            assert!(!text.contains(material), "no master key in the output");
        }
    }
}

#[tokio::test]
async fn rewraps_a_local_data_folder_from_key_a_to_key_b() {
    let dir = tempfile::tempdir().expect("dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let open = || local_app_in(dir.path(), clock.clone());
    let (sealed, email) = {
        let parts = open();
        let db: Arc<dyn Database> = Arc::new(parts.store.clone());
        let key_a = local::LOCAL_KEY_ID;
        let env = envelope(parts.keyring.clone(), db.clone(), "docare", key_a, "local");
        let index = BlindIndex::new(parts.keyring.clone(), db.clone(), "docare", key_a, "local");
        let written = write_values(&env, &index).await;
        assert!(key_ids(db.as_ref(), "docare")
            .await
            .iter()
            .all(|k| k == key_a));
        written
    }; // the store is closed here: the command opens the folder itself

    let data = dir.path().to_str().expect("utf8 path");
    let dry = rewrap(
        &[
            "--data-dir",
            data,
            "--target-key",
            "local/docare-b",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(number(&dry.summary, "rewrapped"), RECORDS);
    assert_eq!(number(&dry.summary, "kms_re_encrypt_calls"), 0);
    assert!(dry.stderr.contains("would rewrap"), "{}", dry.stderr);

    let first = rewrap(&["--data-dir", data, "--target-key", "local/docare-b"], &[]);
    assert_first_run(&first);
    assert_no_key_material(&first, Some(dir.path()));
    let cursor = first.summary["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    assert!(first.stderr.contains(&cursor));

    {
        let parts = open();
        let db: Arc<dyn Database> = Arc::new(parts.store.clone());
        assert!(key_ids(db.as_ref(), "docare")
            .await
            .iter()
            .all(|k| k == "local/docare-b"));
        // New keys are still made under the configured key (A); old ones read through B.
        let env = envelope(
            parts.keyring.clone(),
            db.clone(),
            "docare",
            local::LOCAL_KEY_ID,
            "local",
        );
        let index = BlindIndex::new(
            parts.keyring.clone(),
            db.clone(),
            "docare",
            local::LOCAL_KEY_ID,
            "local",
        );
        check_values(&env, &index, &sealed, &email).await;
    }

    assert_second_run(&rewrap(
        &["--data-dir", data, "--target-key", "local/docare-b"],
        &[],
    ));
    let resumed = rewrap(
        &[
            "--data-dir",
            data,
            "--target-key",
            "local/docare-b",
            "--resume-from",
            &cursor,
        ],
        &[],
    );
    assert_eq!(
        number(&resumed.summary, "total"),
        2,
        "only the index key and the branch key (visited on every run): {}",
        resumed.summary
    );

    // Rotating back to A works the same way, and a typo'd folder is refused.
    let back = rewrap(
        &["--data-dir", data, "--target-key", local::LOCAL_KEY_ID],
        &[],
    );
    assert_eq!(number(&back.summary, "rewrapped"), RECORDS);
    let missing = dir.path().join("nope");
    let output = Command::new(BIN)
        .args([
            "--data-dir",
            missing.to_str().expect("utf8"),
            "--target-key",
            "k",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a local data folder"));
    assert!(!missing.exists(), "nothing created");

    // A stop part-way is reported with the error and the cursor to resume from.
    let stopped = rewrap(
        &[
            "--data-dir",
            data,
            "--target-key",
            "local/docare-b",
            "--resume-from",
            "not-a-ulid",
        ],
        &[],
    );
    assert_eq!(stopped.status, 1);
    assert_eq!(stopped.summary["complete"], Json::Bool(false));
    assert!(
        stopped.summary["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cursor"),
        "{}",
        stopped.summary
    );
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    let output = Command::new(BIN)
        .args(["--target-key", "k"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[tokio::test]
async fn rewraps_dynamodb_records_with_kms_re_encrypt() {
    let Some(endpoint) = aws::endpoint() else {
        return;
    };
    let sdk = aws::sdk_config(&endpoint);
    let table = aws::unique("docare-rewrap");
    // The domain table's indexes (gsi3 is the audit table's).
    aws::create_table(
        &aws_sdk_dynamodb::Client::new(&sdk),
        &table,
        &[Index::Gsi1, Index::Gsi2],
    )
    .await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let mut arns = Vec::new();
    for _ in 0..2 {
        let key = kms.create_key().send().await.expect("create key");
        arns.push(
            key.key_metadata()
                .and_then(|m| m.arn())
                .expect("arn")
                .to_string(),
        );
    }
    let alias_b = format!("alias/{table}-b");
    kms.create_alias()
        .alias_name(&alias_b)
        .target_key_id(&arns[1])
        .send()
        .await
        .expect("alias");

    let db: Arc<dyn Database> = Arc::new(DynamoDb::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        Arc::new(SystemClock),
    ));
    let keys: Arc<dyn KeyService> = Arc::new(Kms::new(kms.clone()));
    let env = envelope(keys.clone(), db.clone(), &table, &arns[0], "dev");
    let index = BlindIndex::new(keys.clone(), db.clone(), &table, &arns[0], "dev");
    let (sealed, email) = write_values(&env, &index).await;
    assert!(key_ids(db.as_ref(), &table)
        .await
        .iter()
        .all(|k| *k == arns[0]));

    // The operator names the new key by its alias; records store the ARN KMS reports.
    let aws_env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("DOCARE_TABLE", table.as_str()),
        ("DOCARE_ENV", "dev"),
        ("DOCARE_KMS_KEY_ID", alias_b.as_str()),
    ];
    let first = rewrap(&["--aws", "--page-size", "2"], &aws_env);
    assert_first_run(&first);
    assert_no_key_material(&first, None);
    assert_eq!(
        first.summary["target_key_id"],
        Json::String(arns[1].clone())
    );
    assert!(key_ids(db.as_ref(), &table)
        .await
        .iter()
        .all(|k| *k == arns[1]));

    let env = envelope(keys.clone(), db.clone(), &table, &arns[0], "dev");
    let index = BlindIndex::new(keys, db.clone(), &table, &arns[0], "dev");
    check_values(&env, &index, &sealed, &email).await;

    assert_second_run(&rewrap(&["--aws"], &aws_env));
    let wrong_stage = rewrap(
        &["--aws", "--stage", "prod", "--target-key", &arns[0]],
        &aws_env,
    );
    assert_eq!(wrong_stage.status, 1, "{}", wrong_stage.summary);
    assert_eq!(wrong_stage.summary["complete"], Json::Bool(true));
    assert_eq!(number(&wrong_stage.summary, "failed"), RECORDS);
    assert!(key_ids(db.as_ref(), &table)
        .await
        .iter()
        .all(|k| *k == arns[1]));
}
