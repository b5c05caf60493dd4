//! The OpenAPI document: generated from the route tables, committed as
//! `docs/openapi.json`, served by the health function. Every route has a complete doc,
//! and the committed file is the one the tables generate today.

use docare_e2e::TestStack;
use docare_local::mounts::http_functions;
use docare_local::openapi::{committed_path, document_text, REGENERATE};
use serde_json::Value;
use shared::http::openapi::{undocumented, Access};
use std::collections::BTreeSet;

#[test]
fn every_mounted_route_has_a_complete_doc() {
    let mounts = http_functions();
    let routers: Vec<&shared::http::Router> = mounts.iter().map(|m| &m.router).collect();
    let missing = undocumented(&routers);
    assert!(
        missing.is_empty(),
        "routes without a summary and a response in their .doc(RouteDoc::…): {missing:?}"
    );
    for mount in &mounts {
        for (method, pattern, doc) in mount.router.documented() {
            let doc = doc.expect("documented");
            let statuses = doc.statuses();
            assert!(
                statuses.iter().any(|s| (200..300).contains(s)),
                "{method} {pattern} documents no success answer"
            );
            if doc.access != Access::Public {
                assert!(
                    statuses.contains(&401) && statuses.contains(&429),
                    "{method} {pattern} needs a token: document 401 and 429"
                );
            }
            if doc.access == Access::AdminMfa {
                assert!(statuses.contains(&403), "{method} {pattern}: document 403");
            }
        }
    }
}

#[test]
fn the_committed_document_is_generated_from_the_route_tables() {
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == document_text(),
        "docs/openapi.json is stale relative to the route tables; regenerate it with\n    {REGENERATE}"
    );
    // The health function embeds the file it was built with.
    assert!(
        docare_health::OPENAPI_JSON == committed,
        "the health function was built with another docs/openapi.json; rebuild after\n    {REGENERATE}"
    );
}

#[test]
fn the_document_has_one_operation_per_route_with_its_path_parameters() {
    let doc: Value = serde_json::from_str(&document_text()).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let mut served = BTreeSet::new();
    for mount in http_functions() {
        for (method, pattern) in mount.router.table() {
            let op = &doc["paths"][pattern][method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {pattern} has no operation");
            let in_path: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let in_pattern: BTreeSet<&str> = pattern
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(in_path, in_pattern, "{method} {pattern}");
            for (status, response) in op["responses"].as_object().expect("responses") {
                if status.starts_with('4') || status.starts_with('5') && status != "503" {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {pattern} {status}"
                    );
                }
            }
            served.insert((method.to_string(), pattern));
        }
    }
    let operations: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.len()))
        .sum();
    assert_eq!(operations, served.len(), "one operation per route, no more");
    // Every `$ref` names a schema of the document.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let name = reference
            .split('"')
            .next()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .expect("a components/schemas reference");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
}

#[tokio::test]
async fn the_document_is_served_publicly() {
    let stack = TestStack::start().await;
    let response = stack
        .http
        .get(stack.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "served as JSON"
    );
    let served: Value = response.json().await.expect("json");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(committed_path()).expect("docs/openapi.json"),
    )
    .expect("json");
    assert_eq!(served, committed);
}
