//! `GET /health`: the version and a check of each dependency, 200 when all answer and
//! 503 naming the failed one (its name only: no error text, no resource names).
//!
//! The function also serves the HTTP API's `$default` route, so a request that matches
//! no route anywhere gets our JSON 404 rather than API Gateway's own body.
//!
//! Checks run concurrently with a deadline and the result is cached briefly per
//! instance: `/health` is public, and each check is a billed AWS request.

/// The outside services the `health` binary links (`shared::adapters::links`): `/health`
/// checks the buckets and the queues.
pub const LINKS: shared::adapters::links::Links =
    shared::adapters::links::BLOBS | shared::adapters::links::QUEUE;

use futures::future::join_all;
use http::{Method, StatusCode};
use serde::Serialize;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, RouteDoc, Router};
use shared::App;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one dependency may take to answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a result is reused by the same instance.
pub const CACHE_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct HealthReport {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub version: &'static str,
    /// Dependency name -> `ok` / `unavailable`.
    pub checks: BTreeMap<&'static str, &'static str>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.status == "ok"
    }
}

#[derive(Default)]
struct Cache(Mutex<Option<(Instant, HealthReport)>>);

/// The OpenAPI 3.1 document of every REST route, generated from the route tables at
/// build time (`cargo run -p docare-local --bin docare-openapi -- --write`; a test fails
/// when it is stale): one Lambda cannot link every function's router.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

pub fn router() -> Router {
    let cache = Arc::new(Cache::default());
    Router::new()
        .route(Method::GET, "/health", move |app, req| {
            let cache = cache.clone();
            async move { health(app, req, &cache).await }
        })
        .doc(
            RouteDoc::new("Version and dependency checks")
                .describe("503 names the failed dependency only. Cached 10 s per instance.")
                .response::<HealthReport>(200)
                .response::<HealthReport>(503),
        )
        .route(Method::GET, "/api/v1/openapi.json", |_app, _req| async {
            Ok(openapi_document())
        })
        .doc(
            RouteDoc::new("This API's OpenAPI 3.1 document")
                .response::<serde_json::Map<String, serde_json::Value>>(200),
        )
}

fn openapi_document() -> ApiResponse {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    ApiResponse {
        status: StatusCode::OK,
        headers,
        body: OPENAPI_JSON.as_bytes().into(),
    }
}

async fn health(app: App, _req: ApiRequest, cache: &Cache) -> HandlerResult {
    let cached = cache
        .0
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
        .filter(|(at, _)| at.elapsed() < CACHE_FOR)
        .map(|(_, report)| report);
    let report = match cached {
        Some(report) => report,
        None => {
            let report = check_all(&app).await;
            if let Ok(mut slot) = cache.0.lock() {
                *slot = Some((Instant::now(), report.clone()));
            }
            report
        }
    };
    let status = if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    ApiResponse::json(status, &report)
}

type Check<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Runs every dependency check at once, each under [`CHECK_TIMEOUT`].
pub async fn check_all(app: &App) -> HealthReport {
    let config = &app.config;
    let checks: Vec<(&'static str, Check<'_>)> = vec![
        (
            "database",
            Box::pin(async { shared::store::database_reachable(app, &config.table).await }),
        ),
        (
            "blobs",
            Box::pin(async {
                app.blobs.check(&config.quarantine_bucket).await.is_ok()
                    && app.blobs.check(&config.documents_bucket).await.is_ok()
            }),
        ),
        (
            "keys",
            Box::pin(async { app.keys.check(&config.kms_key_id).await.is_ok() }),
        ),
        (
            "queues",
            Box::pin(async {
                let queues = [
                    &config.queues.scans,
                    &config.queues.reminders,
                    &config.queues.notifications,
                ];
                join_all(queues.map(|q| app.queue.check(q)))
                    .await
                    .iter()
                    .all(Result::is_ok)
            }),
        ),
    ];
    let names: Vec<&'static str> = checks.iter().map(|(name, _)| *name).collect();
    let results = join_all(checks.into_iter().map(|(_, check)| async move {
        tokio::time::timeout(CHECK_TIMEOUT, check)
            .await
            .unwrap_or(false)
    }))
    .await;
    let mut report = HealthReport {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        checks: BTreeMap::new(),
    };
    for (name, ok) in names.into_iter().zip(results) {
        if !ok {
            report.status = "unavailable";
            tracing::warn!(dependency = name, "health check failed");
        }
        report
            .checks
            .insert(name, if ok { "ok" } else { "unavailable" });
    }
    report
}
