//! The frontend's path in a real browser (`tests/python/browser_flow.py`): headless
//! Chromium runs the README's "From a web page" block from a page on a second loopback
//! origin against this stack, which allows that origin only and issues access tokens
//! that expire in seconds, so the page's refresh-on-401 path runs for real.

use docare_e2e::TestStack;
use docare_local::accounts;
use shared::auth::Role;
use shared::config::AllowedOrigins;
use shared::testing::repo_root;

/// Seconds an access token lives on this stack (the page waits them out).
const ACCESS_TTL_SECS: i64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_frontend_runs_in_chromium_from_an_allowed_origin_and_is_refused_from_another() {
    let Ok(python) = std::env::var("DOCARE_TEST_PYTHON") else {
        panic!("DOCARE_TEST_PYTHON is not set: run the tests with scripts/test (the venv has selenium; the script installs chromium)");
    };
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"));
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let t = TestStack::start_adjusted(|settings| {
        settings.allowed_origins =
            AllowedOrigins::parse(&page_origin).unwrap_or_else(|| panic!("{page_origin}"));
        settings.access_token_secs = ACCESS_TTL_SECS;
    })
    .await;
    let app = t.app().clone();
    let admin = accounts::create(
        &app,
        "browser.admin@example.com",
        "Admin",
        Role::Admin,
        true,
    )
    .await
    .unwrap_or_else(|e| panic!("admin: {e}"));
    let provider = accounts::create(
        &app,
        "browser.doc@example.com",
        "Dr Browser",
        Role::Provider,
        true,
    )
    .await
    .unwrap_or_else(|e| panic!("provider: {e}"));
    // Staff sign in from the script (pyotp) when they act: tokens here live seconds.
    let accounts = serde_json::json!({"admin": admin, "provider": provider}).to_string();
    let screenshot = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"))
        .join("browser")
        .join("final-page.png");
    let args = [
        repo_root().display().to_string(),
        t.stack.http_url(),
        t.stack.ws_url(),
        page_port.to_string(),
        t.stack.parts.outbox_dir.display().to_string(),
        accounts,
        ACCESS_TTL_SECS.to_string(),
        screenshot.display().to_string(),
    ];
    let script = repo_root().join("tests/python/browser_flow.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("join: {e}"))
    .unwrap_or_else(|e| panic!("python runs: {e}"));
    assert!(
        output.status.success(),
        "browser_flow.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(screenshot.is_file(), "the screenshot is saved");
    t.stack.stop().await;
}
