//! `docare-audit-verify`: checks every audit chain (see `docs/audit.md`) and prints the
//! first break, against the local stack's data folder or the deployed tables.
//!
//! ```text
//! docare-audit-verify --data-dir .docare-local [--archive] [--from T] [--to T]
//! docare-audit-verify --aws [--table NAME] [--audit-table NAME] [--archive-bucket NAME]
//!                     [--from T] [--to T]
//! ```
//!
//! Exit status: 0 intact, 1 a break was found, 2 bad arguments, 3 the store could not
//! be read. It only reads (Query and GetItem, and the anchor key's public half with
//! GetPublicKey): no decryption, no write. The chains are checked against the signed
//! anchors (`shared::audit::anchor`), so a shard rewritten consistently with its head
//! is a break too; with `--archive` (or `--archive-bucket`), every event is also
//! compared with its first copy in the audit archive (`shared::audit::archive`), which
//! catches such a rewrite of events newer than the last anchor (GetObject there).

use shared::adapters::aws::S3Blobs;
use shared::adapters::aws::{self, DynamoDb};
use shared::adapters::local::{self, LocalStore};
use shared::audit::{self, Archive, AuditReader, TimeRange, VerifyOptions, VerifyReport};
use shared::clock::{Clock, SystemClock};
use shared::config::{
    ENV_AUDIT_ANCHOR_KEY_ID, ENV_AUDIT_ARCHIVE_BUCKET, ENV_AUDIT_TABLE, ENV_TABLE,
};
use shared::crypto::signing::PublicKey;
use shared::ports::BlobStore;
use shared::ports::Database;
use shared::ports::KeyService;
use std::path::PathBuf;
use std::sync::Arc;

pub const USAGE: &str = concat!(
    "usage: docare-audit-verify (--data-dir PATH | --aws [--table NAME] [--audit-table NAME]\n",
    "                           [--anchor-key KEY] [--archive-bucket NAME])\n",
    "                           [--archive]\n",
    "                           [--from RFC3339] [--to RFC3339]\n\n",
    "  --data-dir PATH      the local stack's data folder (stop the stack first: its store\n",
    "                       is locked while it runs)\n",
    "  --aws                the deployed tables, with the AWS SDK's usual credentials,\n",
    "                       region and AWS_ENDPOINT_URL\n",
    "  --table NAME         domain table holding the chain heads (default: $DOCARE_TABLE)\n",
    "  --audit-table NAME   audit table (default: $DOCARE_AUDIT_TABLE)\n",
    "  --anchor-key KEY     KMS key that signs the anchors (default: $DOCARE_AUDIT_ANCHOR_KEY_ID)\n",
    "  --archive            also compare every event with its first copy in the audit archive\n",
    "                       (--aws: bucket $DOCARE_AUDIT_ARCHIVE_BUCKET)\n",
    "  --archive-bucket NAME  the audit archive bucket (implies --archive)\n",
    "  --from/--to RFC3339  check only the events of this time range (inclusive)\n\n",
    "exit status: 0 intact, 1 broken, 2 bad arguments, 3 store unreadable",
);

pub const EXIT_INTACT: i32 = 0;
pub const EXIT_BROKEN: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREADABLE: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    DataDir(PathBuf),
    Aws {
        table: String,
        audit_table: String,
        anchor_key: String,
        /// With `--archive`: the audit archive bucket.
        archive_bucket: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub source: Source,
    pub range: TimeRange,
    /// Compare every event with its first archived copy.
    pub archive: bool,
}

/// Parses flags; table names fall back to `lookup` (the environment in `main`).
pub fn parse_args(
    args: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Args, String> {
    let mut data_dir = None;
    let mut use_aws = false;
    let (mut table, mut audit_table, mut anchor_key) = (None, None, None);
    let (mut archive, mut archive_bucket) = (false, None);
    let mut range = TimeRange::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--aws" if inline.is_none() => use_aws = true,
            "--table" => table = Some(value()?),
            "--audit-table" => audit_table = Some(value()?),
            "--anchor-key" => anchor_key = Some(value()?),
            "--archive" if inline.is_none() => archive = true,
            "--archive-bucket" => {
                archive = true;
                archive_bucket = Some(value()?);
            }
            "--from" => range.from = Some(parse_time(flag, &value()?)?),
            "--to" => range.to = Some(parse_time(flag, &value()?)?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let (Some(from), Some(to)) = (range.from, range.to) {
        if from > to {
            return Err("--from is after --to".into());
        }
    }
    let source = match (data_dir, use_aws) {
        (Some(dir), false) => {
            if table.is_some()
                || audit_table.is_some()
                || anchor_key.is_some()
                || archive_bucket.is_some()
            {
                return Err(
                    "--table, --audit-table, --anchor-key and --archive-bucket go with --aws"
                        .into(),
                );
            }
            Source::DataDir(dir)
        }
        (None, true) => Source::Aws {
            table: table
                .or_else(|| lookup(ENV_TABLE))
                .ok_or_else(|| format!("--table (or {ENV_TABLE}) is required with --aws"))?,
            audit_table: audit_table
                .or_else(|| lookup(ENV_AUDIT_TABLE))
                .ok_or_else(|| {
                    format!("--audit-table (or {ENV_AUDIT_TABLE}) is required with --aws")
                })?,
            anchor_key: anchor_key
                .or_else(|| lookup(ENV_AUDIT_ANCHOR_KEY_ID))
                .ok_or_else(|| {
                    format!("--anchor-key (or {ENV_AUDIT_ANCHOR_KEY_ID}) is required with --aws")
                })?,
            archive_bucket: match archive {
                false => None,
                true => Some(
                    archive_bucket
                        .or_else(|| lookup(ENV_AUDIT_ARCHIVE_BUCKET))
                        .ok_or_else(|| {
                            format!(
                                "--archive needs --archive-bucket (or {ENV_AUDIT_ARCHIVE_BUCKET}) with --aws"
                            )
                        })?,
                ),
            },
        },
        _ => return Err("give exactly one of --data-dir and --aws".into()),
    };
    Ok(Args {
        source,
        range,
        archive,
    })
}

fn parse_time(flag: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("{flag} must be an RFC 3339 time such as 2026-01-31T00:00:00Z"))
}

/// What to print and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub message: String,
}

/// The verdict on a report: the first break, or the summary.
pub fn outcome(report: &VerifyReport) -> Outcome {
    match &report.first_break {
        None => Outcome {
            code: EXIT_INTACT,
            message: format!(
                "verified {} events in {} chains against {} anchors",
                report.events, report.chains, report.anchors
            ),
        },
        Some(found) if found.kind.is_anchor_level() => Outcome {
            code: EXIT_BROKEN,
            message: format!("audit anchors BROKEN: {}", found.kind),
        },
        Some(found) => Outcome {
            code: EXIT_BROKEN,
            message: format!(
                "audit chain BROKEN: shard {} seq {} event {}: {} ({} events verified before it)",
                found.shard,
                found.seq,
                found.event_id.as_deref().unwrap_or("-"),
                found.kind,
                report.events
            ),
        },
    }
}

/// Verifies the chains held by `db` against the anchors signed by `anchor_key` and,
/// when given, the audit archive (blob store and bucket).
pub async fn verify_store(
    db: Arc<dyn Database>,
    keys: &dyn KeyService,
    anchor_key: &str,
    table: &str,
    audit_table: &str,
    range: TimeRange,
    archive: Option<(&dyn BlobStore, &str)>,
) -> Outcome {
    let trusted = match keys.public_key(anchor_key).await {
        Ok(der) => match PublicKey::from_spki_der(&der) {
            Ok(key) => vec![key],
            Err(err) => {
                return Outcome {
                    code: EXIT_UNREADABLE,
                    message: format!("the anchor key is not a P-256 key: {err}"),
                }
            }
        },
        Err(err) => {
            return Outcome {
                code: EXIT_UNREADABLE,
                message: format!(
                    "cannot read the anchor key's public half: {}",
                    shared::error::cause_chain(&err)
                ),
            }
        }
    };
    let reader = AuditReader::with_tables(db, table, audit_table);
    let options = VerifyOptions {
        range,
        ..VerifyOptions::default()
    };
    let now = SystemClock.now();
    let verified = match archive {
        Some((blobs, bucket)) => {
            let archive = Archive { blobs, bucket };
            audit::verify_with_archive(&reader, &trusted, archive, now, &options).await
        }
        None => audit::verify_with_anchors(&reader, &trusted, now, &options).await,
    };
    match verified {
        Ok(report) => outcome(&report),
        Err(err) => Outcome {
            code: EXIT_UNREADABLE,
            message: format!(
                "cannot read the audit store: {err}: {}",
                shared::error::cause_chain(&err)
            ),
        },
    }
}

/// Runs the command for parsed arguments.
pub async fn run(args: &Args) -> Outcome {
    match &args.source {
        Source::DataDir(dir) => {
            let path = dir.join("store.redb");
            // Never create a store: a mistyped folder must not verify as "0 events".
            if !path.is_file() {
                return Outcome {
                    code: EXIT_UNREADABLE,
                    message: format!("no local store at {}", path.display()),
                };
            }
            let store = match LocalStore::open(&path, Arc::new(SystemClock)) {
                Ok(store) => store,
                Err(err) => {
                    return Outcome {
                        code: EXIT_UNREADABLE,
                        message: format!(
                            "cannot open {} (is docare-local running?): {}",
                            path.display(),
                            shared::error::cause_chain(&err)
                        ),
                    }
                }
            };
            let config = local::local_config("ws://127.0.0.1:1", "warn");
            let ring_path = dir.join("keyring.json");
            if !ring_path.is_file() {
                return Outcome {
                    code: EXIT_UNREADABLE,
                    message: format!("no key ring at {}", ring_path.display()),
                };
            }
            let ring = match local::LocalKeyring::open(&ring_path) {
                Ok(ring) => ring,
                Err(err) => {
                    return Outcome {
                        code: EXIT_UNREADABLE,
                        message: format!("cannot open {}: {err}", ring_path.display()),
                    }
                }
            };
            let archive = if args.archive {
                let root = dir.join("blobs");
                if !root.join(&config.audit_archive_bucket).is_dir() {
                    return Outcome {
                        code: EXIT_UNREADABLE,
                        message: format!(
                            "no audit archive at {}",
                            root.join(&config.audit_archive_bucket).display()
                        ),
                    };
                }
                // Only read: the presigning key is never used.
                Some(local::LocalBlobs::new(
                    root,
                    "http://127.0.0.1:1".into(),
                    [0; 32],
                    Arc::new(SystemClock),
                ))
            } else {
                None
            };
            verify_store(
                Arc::new(store),
                &ring,
                &config.audit_anchor_key_id,
                &config.table,
                &config.audit_table,
                args.range,
                archive
                    .as_ref()
                    .map(|b| (b as &dyn BlobStore, config.audit_archive_bucket.as_str())),
            )
            .await
        }
        Source::Aws {
            table,
            audit_table,
            anchor_key,
            archive_bucket,
        } => {
            let sdk = aws::sdk_config().await;
            let db = DynamoDb::new(aws_sdk_dynamodb::Client::new(&sdk), Arc::new(SystemClock));
            let kms = aws::Kms::new(aws_sdk_kms::Client::new(&sdk));
            let s3 = S3Blobs::new(aws::s3_client(&sdk));
            verify_store(
                Arc::new(db),
                &kms,
                anchor_key,
                table,
                audit_table,
                args.range,
                archive_bucket
                    .as_deref()
                    .map(|bucket| (&s3 as &dyn BlobStore, bucket)),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_name_what_is_wrong() {
        let none = |_: &str| None;
        let parsed = parse_args(
            &args(&["--data-dir", "d", "--from", "2026-01-01T00:00:00Z"]),
            none,
        )
        .expect("ok");
        assert_eq!(parsed.source, Source::DataDir("d".into()));
        assert!(parsed.range.from.is_some() && parsed.range.to.is_none());
        let env = |name: &str| Some(format!("env-{name}"));
        let parsed = parse_args(&args(&["--aws", "--table=t"]), env).expect("ok");
        assert_eq!(
            parsed.source,
            Source::Aws {
                table: "t".into(),
                audit_table: "env-DOCARE_AUDIT_TABLE".into(),
                anchor_key: "env-DOCARE_AUDIT_ANCHOR_KEY_ID".into(),
                archive_bucket: None,
            }
        );
        assert!(!parsed.archive);
        let parsed = parse_args(&args(&["--aws", "--archive"]), env).expect("ok");
        assert!(parsed.archive);
        assert!(matches!(
            parsed.source,
            Source::Aws { archive_bucket: Some(ref b), .. } if b == "env-DOCARE_AUDIT_ARCHIVE_BUCKET"
        ));
        let parsed = parse_args(&args(&["--aws", "--archive-bucket", "arch"]), env).expect("ok");
        assert!(parsed.archive);
        assert!(matches!(
            parsed.source,
            Source::Aws { archive_bucket: Some(ref b), .. } if b == "arch"
        ));
        let parsed = parse_args(&args(&["--data-dir", "d", "--archive"]), none).expect("ok");
        assert!(parsed.archive);
        for (bad, names) in [
            (&["--aws"][..], "--table"),
            (&[][..], "--data-dir"),
            (&["--data-dir", "d", "--aws"][..], "--aws"),
            (&["--data-dir"][..], "--data-dir"),
            (&["--data-dir", "d", "--from", "yesterday"][..], "--from"),
            (
                &[
                    "--data-dir",
                    "d",
                    "--from",
                    "2026-02-01T00:00:00Z",
                    "--to",
                    "2026-01-01T00:00:00Z",
                ][..],
                "--from",
            ),
            (&["--colour"][..], "--colour"),
            (
                &["--data-dir", "d", "--archive-bucket", "b"][..],
                "--archive-bucket",
            ),
        ] {
            let err = parse_args(&args(bad), none).expect_err("bad");
            assert!(err.contains(names), "{bad:?}: {err}");
        }
    }
}
