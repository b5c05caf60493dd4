//! `docare-admin`: one-off account tasks outside the API.
//!
//! ```text
//! docare-admin create --email E --name N [--role admin|provider|patient] [--totp] (--data-dir D | --aws)
//! ```
//!
//! `--aws` builds the AWS adapters from the same `DOCARE_*` environment as the
//! functions (run it with the deployer's credentials); `--data-dir` opens a stopped local
//! stack's folder. The password (and TOTP secret) is printed once, to stdout.

use docare_local::accounts;
use shared::auth::Role;
use shared::clock::SystemClock;
use shared::config::Config;
use std::path::PathBuf;
use std::sync::Arc;

const USAGE: &str = "usage: docare-admin create --email E --name N [--role admin|provider|patient] [--totp] (--data-dir D | --aws)";

fn value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn fail(message: &str) -> ! {
    eprintln!("docare-admin: {message}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("create") {
        fail(USAGE);
    }
    let email = value(&args, "--email").unwrap_or_else(|| fail(USAGE));
    let name = value(&args, "--name").unwrap_or_else(|| fail(USAGE));
    let role = value(&args, "--role")
        .map(|r| Role::parse(&r).unwrap_or_else(|| fail("--role is admin, provider or patient")))
        .unwrap_or(Role::Admin);
    let with_totp = args.iter().any(|a| a == "--totp");
    let app = if args.iter().any(|a| a == "--aws") {
        let config = Config::from_env().unwrap_or_else(|e| fail(&e.to_string()));
        let sdk = shared::adapters::aws::sdk_config().await;
        shared::adapters::aws::build_app(config, &sdk)
    } else {
        let dir = PathBuf::from(value(&args, "--data-dir").unwrap_or_else(|| fail(USAGE)));
        let config = shared::adapters::local::local_config("ws://127.0.0.1:1", "warn");
        shared::adapters::local::open(&dir, config, "http://127.0.0.1:1", Arc::new(SystemClock))
            .unwrap_or_else(|e| fail(&format!("{e} (stop the local stack first)")))
            .app
    };
    match accounts::create(&app, &email, &name, role, with_totp).await {
        Ok(created) => {
            println!("created {} account {}", created.role.as_str(), created.id);
            println!("email:    {}", created.email);
            println!(
                "password: {}   (shown once; change it after the first login)",
                created.password
            );
            if let Some(secret) = created.totp_secret {
                println!("totp:     {secret}   (add to an authenticator app)");
            } else if role != Role::Patient {
                println!("next: log in and enrol TOTP (POST /api/v1/auth/mfa/totp/enroll); staff need MFA to manage users or read PHI");
            }
        }
        Err(err) => {
            eprintln!("docare-admin: {err}");
            std::process::exit(1);
        }
    }
}
