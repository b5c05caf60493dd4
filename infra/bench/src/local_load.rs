//! What the local-stack load benchmarks (`chat-load`, `route-latency`) share: a fresh
//! local stack on free loopback ports, access tokens minted for seeded accounts, and
//! percentiles.

use shared::auth::Role;
use std::time::Duration;

/// A local stack on free ports over a temporary data folder (kept while it runs).
pub async fn start_stack() -> anyhow::Result<(docare_local::Stack, tempfile::TempDir)> {
    let data = tempfile::tempdir()?;
    let settings = shared::config::LocalSettings {
        http_port: 0,
        ws_port: 0,
        data_dir: data.path().to_path_buf(),
        log_filter: "error".into(),
        dev_limits: false,
        allowed_origins: shared::config::AllowedOrigins::default(),
        access_token_secs: shared::domain::session::ACCESS_TOKEN_SECS,
    };
    let stack = docare_local::Stack::start(&settings).await?;
    Ok((stack, data))
}

/// An access token of a new session of `user` (what a login would give).
pub async fn token(
    app: &shared::App,
    user: &str,
    role: Role,
    amr: &[&str],
) -> anyhow::Result<String> {
    let (session, _) = shared::store::sessions::open(app, user, role, amr)
        .await
        .map_err(|e| anyhow::anyhow!("session: {e}"))?;
    let (token, _) = app
        .tokens
        .issue(app, user, role, &session, amr)
        .await
        .map_err(|e| anyhow::anyhow!("token: {e}"))?;
    Ok(token)
}

/// The `p`th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
