//! `docare-rewrap`: key rotation for operators. Re-wraps every data key, branch key and
//! index key of the table under a new KMS key (KMS `ReEncrypt`; see
//! [`shared::crypto::rotation`]) — on the local stack's data folder or on AWS.
//!
//! Progress goes to stderr (`rewrapped N / skipped M / total T`), the summary as one JSON
//! object to stdout, so a script can keep the cursor and resume after an interruption.
//! Neither ever holds key material: record ids, key ids and counts only.

use shared::adapters::{aws, local};
use shared::clock::{Clock, SystemClock};
use shared::config::{ConfigError, Stage, ENV_KMS_KEY_ID, ENV_STAGE, ENV_TABLE};
use shared::crypto::rotation::{RewrapOptions, RewrapReport, Rewrapper};
use shared::crypto::MeteredKeys;
use shared::ports::{Database, KeyService};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const USAGE: &str = "\
usage: docare-rewrap (--data-dir PATH | --aws) --target-key KEY [options]

Re-wraps every index key, branch key (one per purpose and month) and data key
under KEY with KMS ReEncrypt. No data ciphertext is read or changed. Records already wrapped by KEY are skipped, so a run
can be repeated; --resume-from starts after the cursor a previous run printed.

  --data-dir PATH      the local stack's data folder (stop the stack first); KEY is
                       added to its key ring if missing
  --aws                DynamoDB and KMS from the AWS environment (region, credentials,
                       AWS_ENDPOINT_URL)
  --target-key KEY     KMS key id, ARN or alias (default: $DOCARE_KMS_KEY_ID)
  --table NAME         table (default: $DOCARE_TABLE; locally `docare`)
  --stage NAME         stage the keys were made for (default: $DOCARE_ENV; locally `local`)
  --resume-from ULID   start after this data key (the `cursor` of a previous run)
  --page-size N        records per page, 1-1000 (default 100)
  --concurrency N      ReEncrypt calls in flight, 1-64 (default 8)
  --dry-run            count what would be re-wrapped, write nothing

Exit status: 0 done, 1 stopped or some records failed (see the summary), 2 usage.";

/// Where the key records live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local(PathBuf),
    Aws,
}

/// The command's settings: flags first, then environment variables, then defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapSettings {
    pub target: Target,
    pub table: String,
    pub stage: String,
    pub options: RewrapOptions,
}

impl RewrapSettings {
    /// Parses the flags; `lookup` reads environment variables (injected for tests).
    pub fn parse(
        args: &[String],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut data_dir = None;
        let mut use_aws = false;
        let mut dry_run = false;
        let mut flags: Vec<(&'static str, String)> = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            let name: &'static str = match flag {
                "--aws" | "--dry-run" if inline.is_none() => {
                    if flag == "--aws" {
                        use_aws = true;
                    } else {
                        dry_run = true;
                    }
                    continue;
                }
                "--data-dir" => "--data-dir",
                "--target-key" => "--target-key",
                "--table" => "--table",
                "--stage" => "--stage",
                "--resume-from" => "--resume-from",
                "--page-size" => "--page-size",
                "--concurrency" => "--concurrency",
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "argument",
                        reason: format!("{flag} is not a known flag (see --help)"),
                    })
                }
            };
            let value = inline
                .or_else(|| iter.next().cloned())
                .ok_or(ConfigError::Missing(name))?;
            if name == "--data-dir" {
                data_dir = Some(PathBuf::from(value));
            } else {
                flags.push((name, value));
            }
        }
        let flag = |name: &str| {
            flags
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        let target = match (data_dir, use_aws) {
            (Some(dir), false) => Target::Local(dir),
            (None, true) => Target::Aws,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "--data-dir",
                    reason: "or --aws: give exactly one".into(),
                })
            }
        };
        let local = matches!(target, Target::Local(_));
        let (table, stage) = if local {
            let config = local::local_config("ws://127.0.0.1:1", "warn");
            (
                flag("--table").unwrap_or(config.table),
                flag("--stage").unwrap_or_else(|| config.stage.as_str().into()),
            )
        } else {
            (
                flag("--table")
                    .or_else(|| env(ENV_TABLE))
                    .ok_or(ConfigError::Missing(ENV_TABLE))?,
                flag("--stage")
                    .or_else(|| env(ENV_STAGE))
                    .ok_or(ConfigError::Missing(ENV_STAGE))?,
            )
        };
        if Stage::parse(&stage).is_none() {
            return Err(ConfigError::Invalid {
                name: "--stage",
                reason: "must be one of local, dev, staging, prod, bench".into(),
            });
        }
        let target_key = flag("--target-key")
            .or_else(|| env(ENV_KMS_KEY_ID))
            .ok_or(ConfigError::Missing("--target-key"))?;
        let number = |name: &'static str, default: u32, max: u32| match flag(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(ConfigError::Invalid {
                    name,
                    reason: format!("must be a number from 1 to {max}"),
                }),
        };
        let mut options = RewrapOptions::new(&target_key);
        options.page_size = number("--page-size", 100, shared::ports::db::MAX_QUERY_LIMIT)?;
        options.concurrency = number("--concurrency", 8, 64)? as usize;
        options.resume_from = flag("--resume-from");
        options.dry_run = dry_run;
        Ok(Self {
            target,
            table,
            stage,
            options,
        })
    }
}

/// The JSON summary printed on stdout.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub report: RewrapReport,
    pub table: String,
    pub stage: String,
    /// ReEncrypt calls made (KMS bills them; the quota is per second).
    pub kms_re_encrypt_calls: u64,
    /// Why the run stopped early; resume with `--resume-from <cursor>`.
    pub error: Option<String>,
}

/// Why the stores could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0} is not a local data folder (no store.redb)")]
    NotADataFolder(PathBuf),
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error("cannot add {key} to the local key ring")]
    LocalKey {
        key: String,
        #[source]
        source: shared::ports::keys::KeyError,
    },
}

/// Opens the table and the key service the settings name.
pub async fn open(
    settings: &RewrapSettings,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn Database>, Arc<dyn KeyService>), OpenError> {
    match &settings.target {
        Target::Local(dir) => {
            // Refuse to create a fresh, empty data folder from a mistyped path.
            if !dir.join("store.redb").is_file() {
                return Err(OpenError::NotADataFolder(dir.clone()));
            }
            let config = local::local_config("ws://127.0.0.1:1", "warn");
            let parts = local::open(dir, config, "http://127.0.0.1:1", clock)?;
            // The local key ring stands in for `aws kms create-key`: naming a new key
            // creates it, so rotation can be rehearsed locally.
            parts
                .keyring
                .create_key(&settings.options.target_key_id)
                .map_err(|source| OpenError::LocalKey {
                    key: settings.options.target_key_id.clone(),
                    source,
                })?;
            Ok((Arc::new(parts.store), parts.keyring))
        }
        Target::Aws => {
            let sdk = aws::sdk_config().await;
            Ok((
                Arc::new(aws::DynamoDb::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    clock,
                )),
                Arc::new(aws::Kms::new(aws_sdk_kms::Client::new(&sdk))),
            ))
        }
    }
}

/// An error and its causes on one line (`shared::error::cause_chain` has the causes
/// only). Our errors and the SDK's carry ids and codes, never key material.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let causes = shared::error::cause_chain(err);
    if causes.is_empty() {
        err.to_string()
    } else {
        format!("{err}: {causes}")
    }
}

/// One progress line (stderr).
pub fn progress_line(report: &RewrapReport) -> String {
    let mut line = format!(
        "{} {} / skipped {} / total {}",
        if report.dry_run {
            "would rewrap"
        } else {
            "rewrapped"
        },
        report.rewrapped,
        report.skipped,
        report.total
    );
    if report.failed > 0 {
        line.push_str(&format!(" / failed {}", report.failed));
    }
    if let Some(cursor) = &report.cursor {
        line.push_str(&format!(" (cursor {cursor})"));
    }
    line
}

/// Runs the command; returns the summary and the exit status.
pub async fn run(settings: &RewrapSettings) -> Result<(Summary, i32), OpenError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (db, keys) = open(settings, clock.clone()).await?;
    let metered = Arc::new(MeteredKeys::new(keys));
    let calls = metered.calls();
    let rewrapper = Rewrapper::new(metered, db, clock, &settings.table, &settings.stage);
    let mut progress = |report: &RewrapReport| eprintln!("{}", progress_line(report));
    let (report, error) = match rewrapper.run(&settings.options, &mut progress).await {
        Ok(report) => (report, None),
        Err(failure) => (failure.report, Some(describe(&failure.error))),
    };
    let status = if error.is_none() && report.failed == 0 {
        0
    } else {
        1
    };
    Ok((
        Summary {
            report,
            table: settings.table.clone(),
            stage: settings.stage.clone(),
            kms_re_encrypt_calls: calls.re_encrypt.load(Ordering::Relaxed),
            error,
        },
        status,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<RewrapSettings, ConfigError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        RewrapSettings::parse(&args, |name| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn local_defaults_and_aws_from_the_environment() {
        let local = parse(&["--data-dir", "d", "--target-key=k2", "--dry-run"], &[]).expect("ok");
        assert_eq!(local.target, Target::Local("d".into()));
        assert_eq!(
            (local.table.as_str(), local.stage.as_str()),
            ("docare", "local")
        );
        assert_eq!(local.options.target_key_id, "k2");
        assert!(local.options.dry_run);
        let env = [
            (ENV_TABLE, "docare-prod"),
            (ENV_STAGE, "prod"),
            (ENV_KMS_KEY_ID, "alias/docare-2"),
        ];
        let remote = parse(&["--aws", "--page-size", "50"], &env).expect("ok");
        assert_eq!(remote.target, Target::Aws);
        assert_eq!(remote.table, "docare-prod");
        assert_eq!(remote.options.target_key_id, "alias/docare-2");
        assert_eq!(remote.options.page_size, 50);
        let flagged = parse(&["--aws", "--table", "t", "--stage", "dev"], &env).expect("ok");
        assert_eq!(
            (flagged.table.as_str(), flagged.stage.as_str()),
            ("t", "dev")
        );
    }

    #[test]
    fn bad_usage_names_the_setting() {
        let cases: [(&[&str], &str); 7] = [
            (&["--target-key", "k"], "--data-dir"),
            (
                &["--aws", "--data-dir", "d", "--target-key", "k"],
                "--data-dir",
            ),
            (&["--data-dir", "d"], "--target-key"),
            (
                &["--data-dir", "d", "--target-key", "k", "--page-size", "0"],
                "--page-size",
            ),
            (
                &["--data-dir", "d", "--target-key", "k", "--stage", "qa"],
                "--stage",
            ),
            (&["--aws", "--target-key", "k"], ENV_TABLE),
            (&["--data-dir", "d", "--colour"], "--colour"),
        ];
        for (args, name) in cases {
            let err = parse(args, &[]).expect_err(name).to_string();
            assert!(err.contains(name), "{args:?}: {err}");
        }
    }
}
