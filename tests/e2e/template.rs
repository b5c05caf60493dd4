//! The route tables, the local stack's mounts and `template.yaml` stay in step: every
//! route a function serves is wired in the template, and nothing else is.

use docare_e2e::repo_root;
use serde_yaml::Value;
use std::collections::BTreeSet;

fn template() -> Value {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

fn resources(template: &Value) -> &serde_yaml::Mapping {
    template["Resources"].as_mapping().expect("Resources")
}

/// `health` -> `HealthFunction`.
fn resource_name(function: &str) -> String {
    let mut chars = function.chars();
    let first = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .unwrap_or_default();
    format!("{first}{}Function", chars.as_str())
}

#[test]
fn http_routes_match_the_template() {
    let template = template();
    let resources = resources(&template);
    for mount in docare_local::mounts::http_functions() {
        let name = resource_name(mount.function);
        let function = &resources[name.as_str()];
        assert_eq!(function["Type"], "AWS::Serverless::Function", "{name}");
        let mut in_template = BTreeSet::new();
        if let Some(events) = function["Properties"]["Events"].as_mapping() {
            for event in events.values() {
                if event["Type"] == "HttpApi" {
                    let props = &event["Properties"];
                    let path = props["Path"].as_str().unwrap_or_default().to_string();
                    let method = props["Method"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    in_template.insert((method, path));
                }
            }
        }
        let mut served: BTreeSet<(String, String)> = mount
            .router
            .table()
            .into_iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        if mount.function == docare_local::mounts::DEFAULT_ROUTE_FUNCTION {
            served.insert(("ANY".to_string(), "$default".to_string()));
        }
        assert_eq!(
            in_template, served,
            "{name}: template routes vs router table"
        );
        assert_eq!(
            function["Metadata"]["BuildProperties"]["Binary"].as_str(),
            Some(mount.function),
            "{name}: cargo-lambda builds the function's own binary"
        );
    }
}

#[test]
fn websocket_routes_match_the_template() {
    let template = template();
    let mut in_template = BTreeSet::new();
    for resource in resources(&template).values() {
        if resource["Type"] == "AWS::ApiGatewayV2::Route" {
            if let Some(key) = resource["Properties"]["RouteKey"].as_str() {
                in_template.insert(key.to_string());
            }
        }
    }
    let served: BTreeSet<String> = docare_local::mounts::websocket_function()
        .table()
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(in_template, served);
}

#[test]
fn queue_consumers_match_the_template() {
    let template = template();
    let resources = resources(&template);
    let (parts, _dir) = shared::testing::local_app(std::sync::Arc::new(shared::clock::SystemClock));
    for consumer in docare_local::mounts::consumers(&parts.app) {
        let name = resource_name(consumer.function);
        let events = resources[name.as_str()]["Properties"]["Events"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{name} has events"));
        let sqs: Vec<&Value> = events.values().filter(|e| e["Type"] == "SQS").collect();
        assert_eq!(sqs.len(), 1, "{name}: one SQS event source");
        let props = &sqs[0]["Properties"];
        let types: Vec<&str> = props["FunctionResponseTypes"]
            .as_sequence()
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            types,
            vec!["ReportBatchItemFailures"],
            "{name}: partial batch failures"
        );
        let queue = serde_yaml::to_string(&props["Queue"]).unwrap_or_default();
        let local = &consumer.queue;
        let expected = format!("{}{}Queue", local[..1].to_ascii_uppercase(), &local[1..]);
        assert!(
            queue.contains(&expected),
            "{name}: consumes {expected}, template says {queue}"
        );
    }
}
