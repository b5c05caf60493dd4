//! `/health` names the dependency that is down (and nothing else) with a 503.

use docare_e2e::TestStack;
use http::Method;
use serde_json::Value;
use shared::clock::SystemClock;
use shared::http::ApiRequest;
use shared::testing::{local_app, with_ports, OUTAGE};
use std::sync::Arc;

async fn report(app: &shared::App) -> (u16, Value) {
    let response = docare_health::router()
        .dispatch(app, ApiRequest::new(Method::GET, "/health"))
        .await;
    let body = serde_json::from_slice(&response.body).expect("json");
    (response.status.as_u16(), body)
}

#[tokio::test]
async fn each_failed_dependency_is_named_with_a_503() {
    let (parts, _dir) = local_app(Arc::new(SystemClock));
    type Break = Box<dyn Fn(&mut shared::Ports)>;
    let cases: [(&str, Break); 4] = [
        ("database", Box::new(|a| a.db = Arc::new(OUTAGE))),
        ("blobs", Box::new(|a| a.blobs = Arc::new(OUTAGE))),
        ("keys", Box::new(|a| a.keys = Arc::new(OUTAGE))),
        ("queues", Box::new(|a| a.queue = Arc::new(OUTAGE))),
    ];
    for (failed, edit) in cases {
        let app = with_ports(&parts.app, edit);
        let (status, body) = report(&app).await;
        assert_eq!(status, 503, "{failed}");
        assert_eq!(body["status"], "unavailable");
        for (name, state) in body["checks"].as_object().expect("checks") {
            let expected = if name == failed { "unavailable" } else { "ok" };
            assert_eq!(state, expected, "{failed}: {name}");
        }
        let text = body.to_string();
        assert!(
            !text.contains("simulated outage") && !text.contains("docare"),
            "no internals: {text}"
        );
    }
}

#[tokio::test]
async fn a_stopped_local_store_is_reported_over_http() {
    let t = TestStack::start().await;
    // Remove the bucket folders: the blob check must fail, the rest stay ok.
    std::fs::remove_dir_all(t.data.path().join("blobs")).expect("remove");
    let body: Value = t
        .http
        .get(t.url("/health"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["checks"]["blobs"], "unavailable");
    assert_eq!(body["checks"]["database"], "ok");
    t.stack.stop().await;
}
