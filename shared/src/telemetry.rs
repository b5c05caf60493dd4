//! Tracing, set up once per process. JSON lines on Lambda (CloudWatch parses them),
//! readable lines locally. What gets logged is chosen at each call site: ids, sizes,
//! statuses and durations, never PHI, tokens or secrets.

use std::sync::Once;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

static INIT: Once = Once::new();

/// Installs the global subscriber; later calls do nothing.
pub fn init(format: LogFormat, filter: &str) {
    INIT.call_once(|| {
        // `info`, `warn,shared::audit=debug`: a level, and levels per module path.
        let filter = parse_filter(filter);
        let builder = tracing_subscriber::fmt()
            .with_max_level(LevelFilter::TRACE)
            .with_target(false);
        let result = match format {
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .without_time()
                .finish()
                .with(filter)
                .try_init(),
            LogFormat::Pretty => builder.compact().finish().with(filter).try_init(),
        };
        // A subscriber already installed (by a test harness) is fine.
        drop(result);
    });
}

/// `DOCARE_LOG`: a level (`info`), or a default level and levels per module path
/// (`warn,shared::audit=debug`), as `tracing_subscriber`'s `Targets` reads them; an
/// unreadable value logs at `info`. (Not `EnvFilter`: its span and field filters need a
/// regex engine in every binary, for a feature no one uses.)
fn parse_filter(filter: &str) -> Targets {
    filter
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
}

/// Metrics the alarms of `template.yaml` watch, emitted as CloudWatch embedded metric
/// format lines ([`emit_metric`]): one name and namespace each, shared by the code that
/// counts and the test that checks the alarm.
pub mod metrics {
    /// The audit table changed other than by an append (`audit-watch`).
    pub const AUDIT_TAMPER: (&str, &str) = ("DoCare/Audit", "AuditTamper");
    /// A shard no longer extends its last anchor (`audit-anchor`).
    pub const AUDIT_ANCHOR_BROKEN: (&str, &str) = ("DoCare/Audit", "AuditAnchorBroken");
    /// A reminder delivery was claimed and never marked sent (`remind`).
    pub const REMINDER_DELIVERY_UNKNOWN: (&str, &str) =
        ("DoCare/Reminders", "ReminderDeliveryUnknown");
    /// An audit event (with the change it guards) could not be written: the request
    /// failed with a 503 (any function that records events).
    pub const AUDIT_WRITE_FAILED: (&str, &str) = ("DoCare/Audit", "AuditWriteFailed");

    /// Every metric above: each has an alarm in `template.yaml` (a test checks).
    pub const ALL: &[(&str, &str)] = &[
        AUDIT_TAMPER,
        AUDIT_ANCHOR_BROKEN,
        REMINDER_DELIVERY_UNKNOWN,
        AUDIT_WRITE_FAILED,
    ];
}

/// How many of each metric this process emitted (by name): what tests read to see
/// that a failure was counted, since the lines themselves go to stdout.
static EMITTED: std::sync::Mutex<Vec<(&'static str, u64)>> = std::sync::Mutex::new(Vec::new());

/// The count of `metric` this process has emitted so far.
pub fn emitted(metric: (&'static str, &'static str)) -> u64 {
    EMITTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(name, _)| *name == metric.1)
        .map_or(0, |(_, n)| *n)
}

/// One CloudWatch embedded metric format line: `count` of `metric` (namespace, name)
/// with the dimension `Stage`, at `timestamp_ms`. Lambda's log stream turns the line
/// into the metric; the line carries no other field, so nothing sensitive rides along.
pub fn emf_line(
    metric: (&str, &str),
    stage: &str,
    count: usize,
    timestamp_ms: i64,
) -> serde_json::Value {
    let (namespace, name) = metric;
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Stage"]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        "Stage": stage,
    });
    line[name] = serde_json::json!(count);
    line
}

/// Writes [`emf_line`] to stdout as one line (on Lambda: the function's log stream).
pub fn emit_metric(app: &crate::AppContext, metric: (&'static str, &'static str), count: usize) {
    emit(
        metric,
        app.config.stage.as_str(),
        count,
        app.clock.now().timestamp_millis(),
    );
}

/// [`emit_metric`] for code that holds no app (the audit writer).
pub fn emit(metric: (&'static str, &'static str), stage: &str, count: usize, timestamp_ms: i64) {
    let line = emf_line(metric, stage, count, timestamp_ms);
    println!("{line}");
    let mut emitted = EMITTED.lock().unwrap_or_else(|p| p.into_inner());
    match emitted.iter_mut().find(|(name, _)| *name == metric.1) {
        Some((_, n)) => *n += count as u64,
        None => emitted.push((metric.1, count as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_filter_takes_a_level_and_levels_per_module() {
        use tracing::Level;
        let info = parse_filter("info");
        assert!(info.would_enable("shared::audit", &Level::INFO));
        assert!(!info.would_enable("shared::audit", &Level::DEBUG));
        let mixed = parse_filter("warn,shared::audit=debug");
        assert!(mixed.would_enable("shared::audit::writer", &Level::DEBUG));
        assert!(!mixed.would_enable("shared::http", &Level::INFO));
        assert!(mixed.would_enable("shared::http", &Level::WARN));
        let unreadable = parse_filter("shared[span{x=1}]=debug=trace");
        assert!(unreadable.would_enable("shared::http", &Level::INFO));
        assert!(!unreadable.would_enable("shared::http", &Level::DEBUG));
    }

    #[test]
    fn an_emf_line_has_the_shape_cloudwatch_reads() {
        let line = emf_line(
            metrics::REMINDER_DELIVERY_UNKNOWN,
            "prod",
            1,
            1_700_000_000_000,
        );
        let text = line.to_string();
        assert!(!text.contains('\n'), "one line");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let directive = &parsed["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "DoCare/Reminders");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Stage"]]));
        assert_eq!(
            directive["Metrics"],
            serde_json::json!([{"Name": "ReminderDeliveryUnknown", "Unit": "Count"}])
        );
        // Every dimension and metric the directive names is a top-level member.
        assert_eq!(parsed["Stage"], "prod");
        assert_eq!(parsed["ReminderDeliveryUnknown"], 1);
        let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "nothing else rides along: {keys:?}");
    }
}
