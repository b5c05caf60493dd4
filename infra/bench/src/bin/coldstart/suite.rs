//! `coldstart --suite`: every function binary of the workspace, side by side with the
//! empty function, in one run:
//!   1. init: process start → ready, with `AWS_ENDPOINT_URL` at the emulator itself, so
//!      any AWS call made before the function is ready is counted (it must be none);
//!   2. with `--moto URL`, the first response to a real event that reads DynamoDB and
//!      KMS (an authenticated request, a queue batch, a scheduled run) on a stage the
//!      suite creates on that emulator (tables, keys, a queue, a patient and a session,
//!      by `shared::testing::aws::stage`), so work moved from init to the first
//!      request shows there.
//!
//! Each phase interleaves the binaries run by run, so they share the machine's noise.
//!
//! ```text
//! coldstart --suite --bin-dir target/release --baseline target/release/bench-empty \
//!   --runs 20 [--moto http://127.0.0.1:5000] [--only health,auth]
//! ```

use super::{measure_with, stats, Sample};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The event a function answers on its first response in phase 2.
enum Real {
    /// An API Gateway (payload 2.0) request: method, path, whether it carries the
    /// patient's access token.
    Http(&'static str, &'static str, bool),
    /// An event file of `events/`.
    File(&'static str),
    /// An inline event.
    Inline(&'static str),
}

/// Every function binary (`template.yaml`'s functions) and its real event.
const FUNCTIONS: &[(&str, Real)] = &[
    ("health", Real::Http("GET", "/health", false)),
    ("auth", Real::File("events/auth/login-unknown-account.json")),
    ("users", Real::Http("GET", "/api/v1/users/me/profile", true)),
    (
        "emergency",
        Real::Http("GET", "/api/v1/emergency/contacts", true),
    ),
    (
        "appointments",
        Real::Http("GET", "/api/v1/appointments", true),
    ),
    (
        "billing",
        Real::Http("GET", "/api/v1/billing/transactions", true),
    ),
    (
        "video",
        Real::Http(
            "GET",
            "/api/v1/video-calls/01KAZZZZZZZZZZZZZZZZZZZZZZ",
            true,
        ),
    ),
    (
        "medications",
        Real::Http("GET", "/api/v1/medications", true),
    ),
    (
        "notes",
        Real::Http(
            "GET",
            "/api/v1/secure-notes/01KAZZZZZZZZZZZZZZZZZZZZZZ/versions",
            true,
        ),
    ),
    ("documents", Real::Http("GET", "/api/v1/documents", true)),
    ("devices", Real::Http("GET", "/api/v1/devices", true)),
    (
        "device-sync",
        Real::File("events/device-sync/sqs-batch.json"),
    ),
    ("messages", Real::Http("GET", "/api/v1/conversations", true)),
    (
        "audit",
        Real::Http("GET", "/api/v1/users/me/access-log", true),
    ),
    (
        "stripe-webhook",
        Real::File("events/stripe-webhook/forged-signature.json"),
    ),
    (
        "twilio-webhook",
        Real::File("events/twilio-webhook/forged-signature.json"),
    ),
    (
        "realtime",
        Real::File("events/realtime/connect-with-ticket.json"),
    ),
    ("notify", Real::File("events/notify/sqs-batch.json")),
    (
        "reminders",
        Real::File("events/reminders/every-minute.json"),
    ),
    ("remind", Real::File("events/remind/sqs-batch.json")),
    ("scanner", Real::File("events/scanner/sqs-batch.json")),
    (
        "audit-anchor",
        Real::File("events/reminders/every-minute.json"),
    ),
    ("audit-watch", Real::Inline(r#"{"Records": []}"#)),
];

struct Args {
    bin_dir: PathBuf,
    baseline: PathBuf,
    runs: usize,
    moto: Option<String>,
    only: Option<Vec<String>>,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut bin_dir, mut baseline, mut runs, mut moto, mut only) = (None, None, 20, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--suite" => {}
            "--bin-dir" => bin_dir = args.next().map(PathBuf::from),
            "--baseline" => baseline = args.next().map(PathBuf::from),
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--moto" => moto = args.next(),
            "--only" => {
                only = args
                    .next()
                    .map(|l| l.split(',').map(str::to_string).collect())
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        bin_dir: bin_dir.context("--bin-dir DIR")?,
        baseline: baseline.context("--baseline BINARY")?,
        runs: runs.max(1),
        moto,
        only,
    })
}

/// The variables of a stage whose resources do not exist (phase 1: nothing is called).
fn placeholder_env() -> Vec<(String, String)> {
    [
        ("DOCARE_ENV", "dev"),
        ("DOCARE_TABLE", "docare-dev"),
        ("DOCARE_AUDIT_TABLE", "docare-dev-audit"),
        ("DOCARE_QUARANTINE_BUCKET", "q"),
        ("DOCARE_DOCUMENTS_BUCKET", "d"),
        ("DOCARE_AUDIT_ARCHIVE_BUCKET", "a"),
        ("DOCARE_KMS_KEY_ID", "alias/docare-dev"),
        ("DOCARE_SIGNING_KEY_ID", "alias/docare-dev-signing"),
        ("DOCARE_AUDIT_ANCHOR_KEY_ID", "alias/docare-dev-anchor"),
        (
            "DOCARE_SCANS_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/s",
        ),
        (
            "DOCARE_REMINDERS_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/r",
        ),
        (
            "DOCARE_NOTIFICATIONS_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/n",
        ),
        (
            "DOCARE_WS_ENDPOINT",
            "https://abc.execute-api.us-east-1.amazonaws.com/dev",
        ),
        ("DOCARE_MAIL_FROM", "no-reply@docare.example"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The variables of a stage's configuration, as the template sets them.
fn stage_env(config: &shared::config::Config, moto: &str) -> Vec<(String, String)> {
    let c = config;
    [
        ("DOCARE_ENV", "dev".to_string()),
        ("DOCARE_TABLE", c.table.clone()),
        ("DOCARE_AUDIT_TABLE", c.audit_table.clone()),
        ("DOCARE_QUARANTINE_BUCKET", c.quarantine_bucket.clone()),
        ("DOCARE_DOCUMENTS_BUCKET", c.documents_bucket.clone()),
        (
            "DOCARE_AUDIT_ARCHIVE_BUCKET",
            c.audit_archive_bucket.clone(),
        ),
        ("DOCARE_KMS_KEY_ID", c.kms_key_id.clone()),
        ("DOCARE_SIGNING_KEY_ID", c.signing_key_id.clone()),
        ("DOCARE_AUDIT_ANCHOR_KEY_ID", c.audit_anchor_key_id.clone()),
        ("DOCARE_SCANS_QUEUE_URL", c.queues.scans.clone()),
        ("DOCARE_REMINDERS_QUEUE_URL", c.queues.reminders.clone()),
        (
            "DOCARE_NOTIFICATIONS_QUEUE_URL",
            c.queues.notifications.clone(),
        ),
        ("DOCARE_WS_ENDPOINT", c.ws_endpoint.clone()),
        ("DOCARE_MAIL_FROM", c.mail_from.clone()),
        // The twilio webhook checks signatures against this URL (unset: `503`).
        ("DOCARE_PUBLIC_API_URL", PUBLIC_API_URL.to_string()),
        ("AWS_ENDPOINT_URL", moto.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// An HTTP API request (payload 2.0) on the shape of `events/health/get-health.json`.
fn http_event(root: &Path, method: &str, path: &str, token: Option<&str>) -> Result<String> {
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("events/health/get-health.json"),
    )?)?;
    event["routeKey"] = json!("$default");
    event["rawPath"] = json!(path);
    event["requestContext"]["routeKey"] = json!("$default");
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    if let Some(token) = token {
        event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    }
    Ok(event.to_string())
}

/// Creates the stage on the emulator, the webhooks' secrets, and a patient with a
/// session for each of `patients` functions: the variables every function reads and
/// one access token per function. One patient per function, because every
/// authenticated request counts against its account's budget (100 per 15 minutes,
/// `auth::rate_limit::GENERAL`): shared by all functions, runs past the budget would
/// time the limiter's `429`, not the read.
async fn moto_stage(moto: &str, patients: usize) -> Result<(Vec<(String, String)>, Vec<String>)> {
    use shared::testing::aws::{sdk_config, stage};
    let sdk = sdk_config(moto);
    // The buckets too (`stage` leaves them out), so health's checks all answer.
    let buckets = ["quarantine", "documents", "archive"].map(shared::testing::aws::unique);
    let s3 = shared::adapters::aws::s3_client(&sdk);
    for bucket in &buckets {
        s3.create_bucket().bucket(bucket).send().await?;
    }
    let [quarantine, documents, archive] = &buckets;
    let overrides = [
        ("DOCARE_QUARANTINE_BUCKET", quarantine.as_str()),
        ("DOCARE_DOCUMENTS_BUCKET", documents.as_str()),
        ("DOCARE_AUDIT_ARCHIVE_BUCKET", archive.as_str()),
    ];
    let stage = stage(&sdk, moto, "coldstart", &overrides).await;
    let app = shared::adapters::aws::build_app(stage.config.clone(), &sdk);
    // The webhooks check signatures with these: without them a forged delivery is a
    // `503` (secret unavailable) instead of the refusal a real deployment answers.
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let stage_name = stage.config.stage.as_str();
    for (name, value) in [
        (
            shared::payments::webhook_secret_name(stage_name),
            "whsec_coldstart",
        ),
        (
            shared::video::auth_token_name(stage_name),
            "coldstart-token",
        ),
    ] {
        // An emulator that ran the suite before holds them already: set them again.
        let created = secrets
            .create_secret()
            .name(&name)
            .secret_string(value)
            .send()
            .await;
        if let Err(err) = created {
            if !err
                .as_service_error()
                .is_some_and(|e| e.is_resource_exists_exception())
            {
                return Err(err.into());
            }
            secrets
                .put_secret_value()
                .secret_id(&name)
                .secret_string(value)
                .send()
                .await?;
        }
    }
    let role = shared::auth::Role::Patient;
    let mut tokens = Vec::new();
    for i in 0..patients {
        let email = format!("coldstart{i}@example.com");
        let user = shared::testing::account(&app, &email, "Cold Start", role).await;
        tokens.push(
            shared::testing::session(&app, &user, role, &["pwd"])
                .await
                .access,
        );
    }
    Ok((stage_env(&stage.config, moto), tokens))
}

/// The public API URL phase 2's functions are configured with.
const PUBLIC_API_URL: &str = "https://abc123.execute-api.eu-west-1.amazonaws.com";

/// `event` as run `run` sends it: an API request comes from its own source address
/// (`198.18.x.y`, a benchmarking range) and names its own e-mail address when its body
/// has one (`run7.nobody@example.com`), so the per-IP and per-address budgets (5 failed
/// sign-ins per 15 minutes) are not spent by the runs before it. Other events are sent
/// as they are.
fn for_run(event: &str, run: usize) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(event) else {
        return event.to_string();
    };
    let address = format!("198.18.{}.{}", (run / 250) % 250, run % 250 + 1);
    let Some(http) = value.pointer_mut("/requestContext/http") else {
        return event.to_string();
    };
    http["sourceIp"] = json!(address);
    let body = value["body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok());
    if let Some(mut body) = body {
        if let Some(email) = body["email"].as_str() {
            body["email"] = json!(format!("run{run}.{email}"));
            value["body"] = json!(body.to_string());
        }
    }
    if let Some(headers) = value.get_mut("headers").and_then(Value::as_object_mut) {
        if headers.contains_key("x-forwarded-for") {
            headers.insert("x-forwarded-for".into(), json!(address));
        }
    }
    value.to_string()
}

/// Runs every binary `runs` times, interleaved; returns the samples per binary.
fn interleaved(
    binaries: &[(String, PathBuf, String)],
    env: &[(String, String)],
    runs: usize,
    error_ends: bool,
) -> Result<Vec<Vec<Sample>>> {
    let mut samples: Vec<Vec<Sample>> = binaries.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        for (i, (name, binary, event)) in binaries.iter().enumerate() {
            let binary = binary.to_string_lossy();
            let event = for_run(event, run);
            let sample =
                measure_with(&binary, &event, env, error_ends).with_context(|| name.to_string())?;
            samples[i].push(sample);
        }
    }
    Ok(samples)
}

fn median_p90(samples: &[Sample], pick: fn(&Sample) -> std::time::Duration) -> (f64, f64) {
    let (_, median, p90) = stats(samples.iter().map(pick).collect());
    (median, p90)
}

pub fn run() -> Result<()> {
    let args = parse_args()?;
    let root = std::env::current_dir()?;
    let selected: Vec<&(&str, Real)> = FUNCTIONS
        .iter()
        .filter(|(name, _)| {
            args.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == name))
        })
        .collect();
    let mut names = vec!["bench-empty".to_string()];
    names.extend(selected.iter().map(|(n, _)| n.to_string()));
    let path_of = |name: &str| {
        if name == "bench-empty" {
            args.baseline.clone()
        } else {
            args.bin_dir.join(name)
        }
    };
    let sizes: Vec<u64> = names
        .iter()
        .map(|n| std::fs::metadata(path_of(n)).map(|m| m.len()))
        .collect::<std::io::Result<_>>()?;

    // Phase 1: init, AWS_ENDPOINT_URL at the emulator (counts calls before ready).
    let unknown_route = std::fs::read_to_string(root.join("events/health/unknown-route.json"))?;
    let phase1: Vec<(String, PathBuf, String)> = names
        .iter()
        .map(|n| (n.clone(), path_of(n), unknown_route.clone()))
        .collect();
    eprintln!(
        "phase 1: init, {} binaries x {} runs",
        phase1.len(),
        args.runs
    );
    let init = interleaved(&phase1, &placeholder_env(), args.runs, true)?;

    // Phase 2: the first response to a real event, on the moto emulator.
    let mut first: Option<(Vec<Vec<Sample>>, Vec<String>)> = None;
    if let Some(moto) = &args.moto {
        let runtime = tokio::runtime::Runtime::new()?;
        let (env, tokens) = runtime.block_on(moto_stage(moto, names.len()))?;
        let mut phase2 = Vec::new();
        let mut described = Vec::new();
        for (name, token) in names.iter().zip(&tokens) {
            let (event, description) = match FUNCTIONS.iter().find(|(n, _)| n == name) {
                None => (
                    http_event(&root, "GET", "/health", None)?,
                    "(echo)".to_string(),
                ),
                Some((_, Real::Http(method, path, auth))) => (
                    http_event(&root, method, path, auth.then_some(token.as_str()))?,
                    format!("`{method} {path}`{}", if *auth { " (token)" } else { "" }),
                ),
                Some((_, Real::File(file))) => (
                    std::fs::read_to_string(root.join(file))?,
                    format!("`{file}`"),
                ),
                Some((_, Real::Inline(event))) => (event.to_string(), format!("`{event}`")),
            };
            phase2.push((name.clone(), path_of(name), event));
            described.push(description);
        }
        eprintln!(
            "phase 2: first response on {moto}, {} binaries x {} runs",
            phase2.len(),
            args.runs
        );
        first = Some((interleaved(&phase2, &env, args.runs, true)?, described));
    }

    // One table.
    let base_init = median_p90(&init[0], |s| s.init).0;
    let base_size = sizes[0] as f64;
    let base_first = first
        .as_ref()
        .map(|(f, _)| median_p90(&f[0], |s| s.first).0);
    println!(
        "{} runs each, interleaved; ratios are medians over bench-empty's in the same run",
        args.runs
    );
    print!("| function | size (MiB) | size ratio | init median (p90) ms | init ratio | AWS calls at init |");
    if first.is_some() {
        print!(" first response median (p90) ms | first response ratio | event | answer |");
    }
    println!();
    print!("|---|---|---|---|---|---|");
    if first.is_some() {
        print!("---|---|---|---|");
    }
    println!();
    let mut worst: (f64, String) = (0.0, String::new());
    for (i, name) in names.iter().enumerate() {
        let (median, p90) = median_p90(&init[i], |s| s.init);
        let calls: usize = init[i].iter().map(|s| s.calls_at_init).sum();
        let ratio = median / base_init;
        if i > 0 && ratio > worst.0 {
            worst = (ratio, name.clone());
        }
        print!(
            "| `{name}` | {:.1} | {:.1}x | {median:.2} ({p90:.2}) | {ratio:.2}x | {calls} |",
            sizes[i] as f64 / 1048576.0,
            sizes[i] as f64 / base_size,
        );
        if let (Some((samples, described)), Some(base_first)) = (&first, base_first) {
            let (median, p90) = median_p90(&samples[i], |s| s.first);
            let mut answers: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &samples[i] {
                *answers.entry(s.answer.as_str()).or_default() += 1;
            }
            let answers: Vec<String> = answers
                .iter()
                .map(|(a, n)| {
                    if *n == samples[i].len() {
                        a.to_string()
                    } else {
                        format!("{a} ×{n}")
                    }
                })
                .collect();
            print!(
                " {median:.2} ({p90:.2}) | {:.1}x | {} | {} |",
                median / base_first,
                described[i],
                answers.join(", ")
            );
        }
        println!();
    }
    println!("highest init ratio: {:.2}x ({})", worst.0, worst.1);
    Ok(())
}
