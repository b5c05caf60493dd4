//! Where a function's cold-start init goes: each part of the boot in
//! `shared::lambda`, timed in a fresh process per run (first-time costs included: page
//! faults, lazy statics), in two orders:
//!   before = the boot as it was: SDK configuration by the default provider chains
//!            (`aws_config::defaults(..).load()`), the nine SDK clients and the two
//!            HTTPS clients of Stripe and Twilio built at init;
//!   after  = the boot as it is: the SDK configuration from Lambda's variables
//!            (`lambda_sdk_config`) and `build_app` with every client built on first use.
//! The trust roots the first HTTPS request loads (`rustls-native-certs`) are timed
//! last, on their own. Runs alternate between the two orders. The environment is the
//! function's (Lambda's and `DOCARE_*` variables), as `coldstart` passes it.
//!
//! ```text
//! init-parts --runs 20
//! ```

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(mode) = args
        .iter()
        .position(|a| a == "--once")
        .map(|i| args.get(i + 1))
    {
        return once(mode.map(String::as_str).unwrap_or("after"));
    }
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).context("--runs N")?.parse()?,
        None => 20,
    };
    let exe = std::env::current_exe()?;
    let mut parts: BTreeMap<(String, usize, String), Vec<f64>> = BTreeMap::new();
    for _ in 0..runs.max(1) {
        for mode in ["before", "after"] {
            let output = Command::new(&exe).args(["--once", mode]).output()?;
            if !output.status.success() {
                bail!("{mode}: {}", String::from_utf8_lossy(&output.stderr));
            }
            for (i, line) in String::from_utf8_lossy(&output.stdout).lines().enumerate() {
                if let Some((name, micros)) =
                    line.strip_prefix("part\t").and_then(|l| l.split_once('\t'))
                {
                    parts
                        .entry((mode.to_string(), i, name.to_string()))
                        .or_default()
                        .push(micros.parse()?);
                }
            }
        }
    }
    println!("{runs} runs each, median (p90) in ms, fresh process per run");
    println!("| boot | part | median | p90 |\n|---|---|---|---|");
    for ((mode, _, name), mut values) in parts {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize] / 1000.0;
        println!("| {mode} | {name} | {:.3} | {:.3} |", at(0.5), at(0.9));
    }
    Ok(())
}

/// Times `f` and prints it as one part.
fn part<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    println!("part\t{name}\t{}", started.elapsed().as_secs_f64() * 1e6);
    value
}

fn once(mode: &str) -> Result<()> {
    let started = Instant::now();
    let runtime = part("tokio runtime", || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    })?;
    runtime.block_on(async {
        let config = part(
            "configuration (DOCARE_* variables)",
            shared::config::Config::from_env,
        )?;
        part("telemetry (JSON subscriber)", || {
            shared::telemetry::init(shared::telemetry::LogFormat::Json, &config.log_filter)
        });
        if mode == "before" {
            let started = Instant::now();
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            println!(
                "part\tSDK configuration by the default chains\t{}",
                started.elapsed().as_secs_f64() * 1e6
            );
            part("client: DynamoDB", || aws_sdk_dynamodb::Client::new(&sdk));
            part("client: S3", || shared::adapters::aws::s3_client(&sdk));
            part("client: KMS", || aws_sdk_kms::Client::new(&sdk));
            part("client: SQS", || aws_sdk_sqs::Client::new(&sdk));
            part("client: API Gateway Management", || {
                shared::adapters::aws::management_api(&sdk, &config.ws_endpoint)
            });
            part("client: SES v2", || aws_sdk_sesv2::Client::new(&sdk));
            part("client: SNS", || aws_sdk_sns::Client::new(&sdk));
            part("client: Secrets Manager", || {
                aws_sdk_secretsmanager::Client::new(&sdk)
            });
            part("HTTPS client (reqwest): Stripe", || {
                reqwest::Client::builder().build()
            })?;
            part("HTTPS client (reqwest): Twilio", || {
                reqwest::Client::builder().build()
            })?;
            part("app context (build_app, clients lazy)", || {
                shared::adapters::aws::build_app(config.clone(), &sdk)
            });
        } else {
            let sdk = part("SDK configuration from Lambda's variables", || {
                shared::adapters::aws::lambda_sdk_config(|name| std::env::var(name).ok())
            })
            .context("not a Lambda environment (AWS_LAMBDA_FUNCTION_NAME, AWS_REGION, keys)")?;
            part("app context (build_app, clients lazy)", || {
                shared::adapters::aws::build_app(config.clone(), &sdk)
            });
        }
        println!(
            "part\ttotal until ready\t{}",
            started.elapsed().as_secs_f64() * 1e6
        );
        part("TLS trust roots (first HTTPS request)", || {
            rustls_native_certs::load_native_certs().certs.len()
        });
        anyhow::Ok(())
    })
}
