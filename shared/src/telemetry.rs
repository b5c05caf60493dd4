//! Tracing, set up once per process. JSON lines on Lambda (CloudWatch parses them),
//! readable lines locally. What gets logged is chosen at each call site: ids, sizes,
//! statuses and durations, never PHI, tokens or secrets.

use std::sync::Once;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

static INIT: Once = Once::new();

/// Installs the global subscriber; later calls do nothing.
pub fn init(format: LogFormat, filter: &str) {
    INIT.call_once(|| {
        let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false);
        let result = match format {
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .without_time()
                .try_init(),
            LogFormat::Pretty => builder.compact().try_init(),
        };
        // A subscriber already installed (by a test harness) is fine.
        drop(result);
    });
}
