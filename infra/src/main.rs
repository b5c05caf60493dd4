//! `docare-local`: the whole backend on a laptop, one command, no AWS account.
//!
//! ```text
//! cargo run -p docare-local -- [--port 5000] [--ws-port 5001] [--data-dir .docare-local]
//!     [--allowed-origins http://localhost:3000,http://localhost:5173] [--dev-limits]
//!     [--access-token-ttl 900]
//! ```

use docare_local::Stack;
use shared::config::LocalSettings;
use shared::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: docare-local [--port N] [--ws-port N] [--data-dir PATH] [--allowed-origins LIST] [--dev-limits] [--access-token-ttl SECS]\n\n\
             --allowed-origins  browser origins allowed to call the API (CORS) and open the\n\
             \x20                  WebSocket, comma-separated (default {})\n\
             --dev-limits       multiply the per-IP rate limits by {} for a single developer\n\
             --access-token-ttl access-token lifetime in seconds, {}..={} (default {}), to try\n\
             \x20                  a client's refresh after expiry\n\n\
             environment: DOCARE_LOCAL_PORT, DOCARE_LOCAL_WS_PORT, DOCARE_LOCAL_DATA_DIR,\n\
             DOCARE_ALLOWED_ORIGINS, DOCARE_LOCAL_DEV_LIMITS=1, DOCARE_LOCAL_ACCESS_TOKEN_TTL, DOCARE_LOG",
            shared::config::AllowedOrigins::DEFAULT,
            LocalSettings::DEV_IP_LIMIT_FACTOR,
            LocalSettings::ACCESS_TOKEN_TTL_RANGE.start(),
            LocalSettings::ACCESS_TOKEN_TTL_RANGE.end(),
            shared::domain::session::ACCESS_TOKEN_SECS,
        );
        return;
    }
    let settings = match LocalSettings::from_args_and_env(&args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    telemetry::init(LogFormat::Pretty, &settings.log_filter);
    // Listen before the URLs are printed: a supervisor (or a test) that reads them
    // and stops the stack at once must get a clean shutdown, not the default
    // action of SIGTERM, which kills the process mid-write.
    let stop = stop_signal();
    let stack = match Stack::start(&settings).await {
        Ok(stack) => stack,
        Err(err) => {
            eprintln!("docare-local: {err:#}");
            std::process::exit(1);
        }
    };
    println!("DoCare local stack");
    println!("  REST API:  {}", stack.http_url());
    println!("  WebSocket: {}", stack.ws_url());
    println!(
        "  origins:   {} (browsers; --allowed-origins)",
        settings.allowed_origins.origins().join(", ")
    );
    println!("  data:      {}", settings.data_dir.display());
    println!("  outbox:    {}", stack.parts.outbox_dir.display());
    match &stack.seeded {
        Some(file) => println!(
            "  accounts:  admin@docare.local, provider@docare.local, patient@docare.local\n             (first start: passwords and TOTP secrets in {})",
            file.display()
        ),
        None => println!(
            "  accounts:  demo passwords in {}",
            settings.data_dir.join(docare_local::accounts::SEED_FILE).display()
        ),
    }
    if settings.dev_limits {
        println!(
            "  limits:    DEVELOPMENT: per-IP rate limits x{} (--dev-limits); never use for a shared stack",
            LocalSettings::DEV_IP_LIMIT_FACTOR
        );
    } else {
        println!("  limits:    production values (a single developer may pass --dev-limits)");
    }
    if settings.access_token_secs != shared::domain::session::ACCESS_TOKEN_SECS {
        println!(
            "  tokens:    access tokens live {} s (--access-token-ttl)",
            settings.access_token_secs
        );
    }
    println!("Press Ctrl-C to stop.");
    stop.await;
    println!("stopping…");
    stack.stop().await;
    println!("stopped; data kept in {}", settings.data_dir.display());
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are registered when this is called,
/// not when the future is first polled.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, interrupt) {
                (Some(mut term), Some(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
