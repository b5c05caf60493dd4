//! The route tables, the local stack's mounts and `template.yaml` stay in step: every
//! route a function serves is wired in the template, and nothing else is.

use serde_yaml::Value;
use shared::testing::repo_root;
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
    // `audit-anchor` -> `AuditAnchorFunction`.
    let pascal: String = function
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{pascal}Function")
}

/// `device-sync` (a local queue) -> `DeviceSyncQueue`.
fn queue_resource(local: &str) -> String {
    let function = resource_name(local);
    format!("{}Queue", function.trim_end_matches("Function"))
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
        let expected = queue_resource(&consumer.queue);
        assert!(
            queue.contains(&expected),
            "{name}: consumes {expected}, template says {queue}"
        );
    }
}

/// The argument of a short-form intrinsic (`!Ref X`, `!GetAtt X.Arn`).
fn tagged<'a>(value: &'a Value, tag: &str) -> Option<&'a str> {
    match value {
        Value::Tagged(t) if t.tag == tag => t.value.as_str(),
        _ => None,
    }
}

/// The IAM statements a role grants: its inline policies and its managed policies
/// defined in the template.
fn role_statements<'a>(resources: &'a serde_yaml::Mapping, role: &'a Value) -> Vec<&'a Value> {
    let mut documents: Vec<&Value> = role["Properties"]["Policies"]
        .as_sequence()
        .map(|policies| policies.iter().map(|p| &p["PolicyDocument"]).collect())
        .unwrap_or_default();
    for arn in role["Properties"]["ManagedPolicyArns"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let name = arn["Ref"]
            .as_str()
            .or_else(|| tagged(arn, "!Ref").or_else(|| tagged(arn, "Ref")))
            .expect("managed policies are this template's");
        documents.push(&resources[name]["Properties"]["PolicyDocument"]);
    }
    documents
        .into_iter()
        .flat_map(|d| d["Statement"].as_sequence().into_iter().flatten())
        .collect()
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(one) => vec![one.clone()],
        Value::Sequence(many) => many
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn names_audit_table(statement: &Value) -> bool {
    serde_yaml::to_string(&statement["Resource"])
        .unwrap_or_default()
        .contains("AuditTable")
}

/// DESIGN §6: the audit store is append-only for the functions.
#[test]
fn functions_may_only_append_to_the_audit_table() {
    let template = template();
    let resources = resources(&template);
    let writes_or_wildcards = |action: &str| {
        action.contains('*')
            || !(action.starts_with("dynamodb:Get")
                || action.starts_with("dynamodb:Query")
                || action.starts_with("dynamodb:Describe")
                || action == "dynamodb:ListStreams"
                || action == "dynamodb:PutItem")
    };
    for (name, resource) in resources {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let role = tagged(&resource["Properties"]["Role"], "!GetAtt")
            .and_then(|arn| arn.strip_suffix(".Arn"))
            .unwrap_or_else(|| panic!("{name:?} has its own role"));
        for statement in role_statements(resources, &resources[role]) {
            if statement["Effect"] == "Allow" && names_audit_table(statement) {
                let bad: Vec<String> = actions(statement)
                    .into_iter()
                    .filter(|a| writes_or_wildcards(a))
                    .collect();
                assert!(bad.is_empty(), "{name:?} may {bad:?} on the audit table");
            }
        }
    }
    // A PutItem on the audit table is scoped to one partition family: the functions'
    // events (`CHAIN#*`, the writer policy) or the anchors (`ANCHOR`, audit-anchor only).
    for (name, resource) in resources {
        let function_role = resource["Type"] == "AWS::IAM::Role"
            && name.as_str().is_some_and(|n| n.ends_with("FunctionRole"));
        if !function_role && resource["Type"] != "AWS::IAM::ManagedPolicy" {
            continue;
        }
        let statements: Vec<&Value> = if resource["Type"] == "AWS::IAM::Role" {
            role_statements(resources, resource)
        } else {
            resource["Properties"]["PolicyDocument"]["Statement"]
                .as_sequence()
                .map(|s| s.iter().collect())
                .unwrap_or_default()
        };
        for statement in statements {
            if names_audit_table(statement)
                && actions(statement).iter().any(|a| a == "dynamodb:PutItem")
            {
                let condition = serde_yaml::to_string(&statement["Condition"]).unwrap_or_default();
                let scope = if condition.contains("CHAIN#*") {
                    "events"
                } else if condition.contains("ANCHOR") && !condition.contains("CHAIN") {
                    "anchors"
                } else {
                    panic!("{name:?} may PutItem anywhere in the audit table: {condition}")
                };
                if scope == "anchors" {
                    assert_eq!(
                        name.as_str(),
                        Some("AuditAnchorFunctionRole"),
                        "only audit-anchor appends anchors"
                    );
                }
            }
        }
    }
    // kms:Sign: the token key for auth only, the anchor key for audit-anchor only.
    let text = serde_yaml::to_string(&template).unwrap_or_default();
    assert_eq!(text.matches("kms:Sign").count(), 2, "two Sign statements");
    for (role, key) in [
        ("AuthFunctionRole", "SigningKey.Arn"),
        ("AuditAnchorFunctionRole", "AuditAnchorKey.Arn"),
    ] {
        let signs: Vec<&Value> = role_statements(resources, &resources[role])
            .into_iter()
            .filter(|s| actions(s).iter().any(|a| a == "kms:Sign"))
            .collect();
        assert_eq!(signs.len(), 1, "{role} signs");
        assert_eq!(
            tagged(&signs[0]["Resource"], "!GetAtt"),
            Some(key),
            "{role}"
        );
    }
    // The writer policy: PutItem on the audit table; in the domain table only the chain
    // heads and new data-key records.
    let writer = &resources["AuditWriterPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    for statement in writer.as_sequence().expect("statements") {
        if names_audit_table(statement) {
            assert_eq!(actions(statement), ["dynamodb:PutItem"]);
            assert_eq!(
                tagged(&statement["Resource"], "!GetAtt"),
                Some("AuditTable.Arn"),
                "the table itself, not its indexes"
            );
        }
        if serde_yaml::to_string(&statement["Resource"])
            .unwrap_or_default()
            .contains("DocareTable")
        {
            // Chain heads, and the new data-key records that sealing reasons may create.
            let keys = &statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
            let keys: Vec<&str> = keys
                .as_sequence()
                .expect("scoped by partition key")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            match keys.as_slice() {
                ["AUDITHEAD#*"] => {}
                ["DATAKEY#*"] => assert_eq!(actions(statement), ["dynamodb:PutItem"]),
                other => panic!("the writer may touch only heads and new data keys: {other:?}"),
            }
        }
    }
}

#[test]
fn the_audit_table_is_retained_recoverable_and_indexed() {
    let template = template();
    let table = &resources(&template)["AuditTable"];
    assert_eq!(table["DeletionPolicy"], "Retain");
    let props = &table["Properties"];
    assert_eq!(props["DeletionProtectionEnabled"], true);
    assert_eq!(
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(
        props["TimeToLiveSpecification"]["AttributeName"],
        "expires_at"
    );
    assert_eq!(props["SSESpecification"]["SSEType"], "KMS");
    let indexes: BTreeSet<&str> = props["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("indexes")
        .iter()
        .filter_map(|i| i["IndexName"].as_str())
        .collect();
    let expected: BTreeSet<&str> = shared::ports::db::Index::ALL
        .iter()
        .map(|i| i.name())
        .collect();
    assert_eq!(indexes, expected, "every index the audit reader queries");
}

#[test]
fn schedules_match_the_template() {
    let template = template();
    let resources = resources(&template);
    for schedule in docare_local::mounts::schedules() {
        let name = resource_name(schedule.rule);
        let events = resources[name.as_str()]["Properties"]["Events"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{name} has events"));
        let rules: Vec<&Value> = events
            .values()
            .filter(|e| e["Type"] == "Schedule")
            .collect();
        assert_eq!(rules.len(), 1, "{name}: one schedule");
        let rate = rules[0]["Properties"]["Schedule"]
            .as_str()
            .unwrap_or_default();
        let secs = schedule.every.as_secs();
        let expected = if secs == 60 {
            "rate(1 minute)".to_string()
        } else {
            format!("rate({} minutes)", secs / 60)
        };
        assert_eq!(rate, expected, "{name}: the local runner fires as often");
    }
}

/// The HTTP API's `CorsConfiguration` is the policy the local stack's gateway applies
/// (`shared::http::cors`), with the origins of the same parameter the WebSocket checks.
#[test]
fn the_http_apis_cors_is_the_local_gateways_policy() {
    use shared::http::cors;
    let template = template();
    let api = &resources(&template)["HttpApi"]["Properties"];
    let config = &api["CorsConfiguration"];
    let strings = |key: &str| -> Vec<String> {
        config[key]
            .as_sequence()
            .unwrap_or_else(|| panic!("CorsConfiguration.{key} is a list"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(strings("AllowMethods"), cors::API.methods);
    assert_eq!(strings("AllowHeaders"), cors::API.headers);
    assert_eq!(strings("ExposeHeaders"), cors::API.expose);
    assert_eq!(
        config["MaxAge"].as_u64(),
        Some(u64::from(cors::API.max_age_secs))
    );
    assert_eq!(config["AllowCredentials"].as_bool(), Some(false));
    // AllowOrigins: !Split [',', !Ref AllowedOrigins]
    let split = match &config["AllowOrigins"] {
        Value::Tagged(t) if t.tag == "!Split" => t.value.as_sequence().expect("!Split list"),
        other => panic!("AllowOrigins must split the AllowedOrigins parameter: {other:?}"),
    };
    assert_eq!(split[0].as_str(), Some(","));
    assert_eq!(tagged(&split[1], "!Ref"), Some("AllowedOrigins"));
    assert_eq!(
        template["Parameters"]["AllowedOrigins"]["Default"].as_str(),
        Some(shared::config::AllowedOrigins::DEFAULT)
    );
    // The quarantine bucket's rule: the same origins, a PUT with its signed type.
    let rules = resources(&template)["QuarantineBucket"]["Properties"]["CorsConfiguration"]
        ["CorsRules"]
        .as_sequence()
        .expect("QuarantineBucket.CorsConfiguration.CorsRules");
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    let list = |key: &str| -> Vec<String> {
        rule[key]
            .as_sequence()
            .unwrap_or_else(|| panic!("CorsRules[0].{key} is a list"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(list("AllowedMethods"), cors::UPLOADS.methods);
    assert_eq!(list("AllowedHeaders"), cors::UPLOADS.headers);
    assert!(rule["ExposedHeaders"].is_null());
    assert_eq!(
        rule["MaxAge"].as_u64(),
        Some(u64::from(cors::UPLOADS.max_age_secs))
    );
    assert_eq!(rule["AllowedOrigins"], config["AllowOrigins"]);
}

/// The metrics the code emits (embedded metric format, `shared::telemetry::metrics`) and
/// the dead-letter queues each have an alarm that watches exactly them.
/// Operations (README "Operations"): every dead-letter queue, every function's
/// throttles, both APIs' errors and every metric the code emits has an alarm, and every
/// alarm tells the alarm topic.
#[test]
fn every_queue_function_api_and_metric_has_an_alarm_that_tells_someone() {
    let template = template();
    let resources = resources(&template);
    let alarms: Vec<(&str, &Value)> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(name, r)| (name.as_str().unwrap_or_default(), &r["Properties"]))
        .collect();
    for (name, props) in &alarms {
        let actions = props["AlarmActions"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        assert!(
            actions
                .iter()
                .any(|a| tagged(a, "!Ref") == Some("AlarmTopic")),
            "{name} tells no one"
        );
    }
    let topic = &resources["AlarmTopic"];
    assert_eq!(topic["Type"], "AWS::SNS::Topic");
    assert_eq!(
        tagged(&topic["Properties"]["KmsMasterKeyId"], "!Ref"),
        Some("DocareKey")
    );
    // The one dimension an alarm watches, and its metric.
    let watching =
        |namespace: &str, metric: &str, dimension: &str, value: &dyn Fn(&Value) -> bool| {
            alarms.iter().any(|(_, props)| {
                props["Namespace"] == namespace
                    && props["MetricName"] == metric
                    && props["Dimensions"][0]["Name"] == dimension
                    && value(&props["Dimensions"][0]["Value"])
                    && props["ComparisonOperator"] == "GreaterThanThreshold"
            })
        };
    for (name, resource) in resources {
        let name = name.as_str().unwrap_or_default();
        match resource["Type"].as_str() {
            Some("AWS::SQS::Queue") if name.ends_with("DeadLetterQueue") => {
                let attribute = format!("{name}.QueueName");
                assert!(
                    watching(
                        "AWS/SQS",
                        "ApproximateNumberOfMessagesVisible",
                        "QueueName",
                        &|v| { tagged(v, "!GetAtt") == Some(attribute.as_str()) }
                    ),
                    "{name} has no depth alarm"
                );
            }
            Some("AWS::Serverless::Function") => assert!(
                watching("AWS/Lambda", "Throttles", "FunctionName", &|v| {
                    tagged(v, "!Ref") == Some(name)
                }),
                "{name} has no throttles alarm"
            ),
            _ => {}
        }
    }
    for (namespace, metric) in shared::telemetry::metrics::ALL {
        assert!(
            watching(namespace, metric, "Stage", &|v| tagged(v, "!Ref")
                == Some("Stage")),
            "{namespace}/{metric} has no alarm"
        );
    }
    assert!(
        watching("AWS/ApiGateway", "ExecutionError", "ApiId", &|v| {
            tagged(v, "!Ref") == Some("WebSocketApi")
        }),
        "the WebSocket API"
    );
    // The HTTP API's 5xx rate: 5xx over requests, both of the HTTP API.
    let (_, rate) = alarms
        .iter()
        .find(|(name, _)| *name == "HttpApiServerErrorsAlarm")
        .expect("the HTTP API's 5xx alarm");
    let metrics = rate["Metrics"].as_sequence().expect("metric math");
    let stat = |id: &str| {
        let m = metrics.iter().find(|m| m["Id"] == id).expect(id);
        let metric = &m["MetricStat"]["Metric"];
        assert_eq!(
            tagged(&metric["Dimensions"][0]["Value"], "!Ref"),
            Some("HttpApi")
        );
        metric["MetricName"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        (stat("errors").as_str(), stat("requests").as_str()),
        ("5xx", "Count")
    );
    let expression = metrics
        .iter()
        .find(|m| m["ReturnData"] == Value::Bool(true))
        .and_then(|m| m["Expression"].as_str())
        .expect("the rate");
    assert!(
        expression.contains("100 * errors / requests"),
        "{expression}"
    );
}

/// The dashboard's body is JSON once CloudFormation substitutes it, names only
/// resources, parameters and pseudo parameters of the template, and shows every metric
/// that has an alarm.
#[test]
fn the_dashboard_is_valid_and_shows_what_the_alarms_watch() {
    let template = template();
    let resources = resources(&template);
    let dashboard = &resources["Dashboard"];
    assert_eq!(dashboard["Type"], "AWS::CloudWatch::Dashboard");
    let body = tagged(&dashboard["Properties"]["DashboardBody"], "!Sub").expect("!Sub body");
    let parameters = template["Parameters"].as_mapping().expect("Parameters");
    let mut substituted = String::new();
    let mut rest = body;
    while let Some(at) = rest.find("${") {
        substituted.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("closed ${") + at;
        let name = &rest[at + 2..end];
        assert!(
            name.starts_with("AWS::")
                || resources.contains_key(name)
                || parameters.contains_key(name),
            "the dashboard names ${{{name}}}, which the template does not define"
        );
        substituted.push('x');
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let body: serde_json::Value = serde_json::from_str(&substituted).expect("JSON");
    let widgets = body["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 10);
    let text = substituted;
    for (_, metric) in shared::telemetry::metrics::ALL {
        assert!(
            text.contains(&format!("\"{metric}\"")),
            "{metric} is not on the dashboard"
        );
    }
    for metric in [
        "\"Throttles\"",
        "\"Errors\"",
        "ApproximateNumberOfMessagesVisible",
        "\"5xx\"",
        "ExecutionError",
    ] {
        assert!(text.contains(metric), "{metric} is not on the dashboard");
    }
}

/// The audit archive (docs/audit.md): Object Lock in compliance mode for the events'
/// retention, written only by audit-watch (create-only keys), deleted by no one.
#[test]
fn the_audit_archive_is_locked_and_only_audit_watch_writes_it() {
    let template = template();
    let resources = resources(&template);
    let bucket = &resources["AuditArchiveBucket"];
    assert_eq!(bucket["Type"], "AWS::S3::Bucket");
    assert_eq!(bucket["DeletionPolicy"], "Retain");
    let props = &bucket["Properties"];
    assert_eq!(props["ObjectLockEnabled"], Value::Bool(true));
    let lock = &props["ObjectLockConfiguration"];
    assert_eq!(lock["ObjectLockEnabled"], "Enabled");
    assert_eq!(lock["Rule"]["DefaultRetention"]["Mode"], "COMPLIANCE");
    assert_eq!(
        lock["Rule"]["DefaultRetention"]["Days"].as_i64(),
        Some(shared::audit::RETENTION_DAYS)
    );
    assert_eq!(props["VersioningConfiguration"]["Status"], "Enabled");
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            props["PublicAccessBlockConfiguration"][flag],
            Value::Bool(true),
            "{flag}"
        );
    }
    let sse = &props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        ["ServerSideEncryptionByDefault"];
    assert_eq!(sse["SSEAlgorithm"], "aws:kms");
    assert_eq!(
        tagged(&sse["KMSMasterKeyID"], "!GetAtt"),
        Some("DocareKey.Arn")
    );

    let policy =
        &resources["AuditArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let statements = policy.as_sequence().expect("statements");
    let denies = |action: &str| {
        statements
            .iter()
            .filter(|s| s["Effect"] == "Deny" && s["Principal"] == "*")
            .find(|s| actions(s).iter().any(|a| a == action || a == "s3:*"))
            .cloned()
    };
    let tls = denies("s3:GetObject").expect("TLS only");
    assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    for action in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
    ] {
        let deny = statements
            .iter()
            .find(|s| s["Effect"] == "Deny" && actions(s).iter().any(|a| a == action))
            .unwrap_or_else(|| panic!("{action} is denied"));
        assert!(deny["Condition"].is_null(), "{action}: denied to everyone");
    }
    let writes = statements
        .iter()
        .find(|s| s["Effect"] == "Deny" && actions(s).iter().any(|a| a == "s3:PutObject"))
        .expect("writes denied");
    assert_eq!(
        tagged(
            &writes["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
            "!GetAtt"
        ),
        Some("AuditWatchFunctionRole.Arn"),
        "every writer but audit-watch is denied"
    );
    // No role but audit-watch's may put objects there.
    for (name, resource) in resources {
        let function_role = resource["Type"] == "AWS::IAM::Role"
            && name.as_str().is_some_and(|n| n.ends_with("FunctionRole"));
        if !function_role && resource["Type"] != "AWS::IAM::ManagedPolicy" {
            continue;
        }
        let statements: Vec<&Value> = if resource["Type"] == "AWS::IAM::Role" {
            role_statements(resources, resource)
        } else {
            resource["Properties"]["PolicyDocument"]["Statement"]
                .as_sequence()
                .map(|s| s.iter().collect())
                .unwrap_or_default()
        };
        for statement in statements {
            let on_archive = serde_yaml::to_string(&statement["Resource"])
                .unwrap_or_default()
                .contains("AuditArchiveBucket");
            let writes = actions(statement)
                .iter()
                .any(|a| a.contains('*') || a.starts_with("s3:Put") || a.starts_with("s3:Delete"));
            if statement["Effect"] == "Allow" && on_archive && writes {
                assert_eq!(
                    name.as_str(),
                    Some("AuditWatchFunctionRole"),
                    "only audit-watch writes the archive"
                );
                assert_eq!(actions(statement), ["s3:PutObject"]);
            }
        }
    }
}

/// `ScansQueue` -> the function consuming it, with its timeout (or the `Globals` one).
fn timeout_of(resources: &serde_yaml::Mapping, globals: &Value, function: &str) -> u64 {
    resources[resource_name(function).as_str()]["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| globals["Function"]["Timeout"].as_u64())
        .unwrap_or(3)
}

#[test]
fn a_queue_outlasts_its_consumer_six_times() {
    // AWS: a queue's visibility timeout at least six times its consumer's timeout, or
    // a message still being processed is delivered again.
    let template = template();
    let resources = resources(&template);
    let (parts, _dir) = shared::testing::local_app(std::sync::Arc::new(shared::clock::SystemClock));
    for consumer in docare_local::mounts::consumers(&parts.app) {
        let queue = queue_resource(&consumer.queue);
        let visibility = resources[queue.as_str()]["Properties"]["VisibilityTimeout"]
            .as_u64()
            .unwrap_or(30);
        let timeout = timeout_of(resources, &template["Globals"], consumer.function);
        assert!(
            visibility >= 6 * timeout,
            "{queue}: visibility {visibility} s, {} times out after {timeout} s",
            consumer.function
        );
    }
    // The local stack answers as API Gateway does when a REST function times out: at
    // the template's timeout, which no REST function overrides.
    for mount in docare_local::mounts::http_functions() {
        assert_eq!(
            Some(timeout_of(resources, &template["Globals"], mount.function)),
            Some(docare_local::mounts::FUNCTION_TIMEOUT.as_secs()),
            "{}",
            mount.function
        );
    }
}

#[test]
fn bucket_notifications_match_the_template() {
    let template = template();
    let resources = resources(&template);
    let (parts, _dir) = shared::testing::local_app(std::sync::Arc::new(shared::clock::SystemClock));
    let mut in_template = BTreeSet::new();
    for (name, resource) in resources {
        if resource["Type"] != "AWS::S3::Bucket" {
            continue;
        }
        let configs = resource["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for config in configs {
            assert_eq!(config["Event"], "s3:ObjectCreated:*", "{name:?}");
            let queue = serde_yaml::to_string(&config["Queue"]).unwrap_or_default();
            in_template.insert((
                name.as_str().unwrap_or_default().to_string(),
                queue.trim().to_string(),
            ));
        }
    }
    let local: BTreeSet<(String, String)> = docare_local::mounts::bucket_notifications(&parts.app)
        .into_iter()
        .map(|(bucket, queue)| {
            let short = bucket.trim_start_matches("docare-");
            (
                format!("{}{}Bucket", short[..1].to_ascii_uppercase(), &short[1..]),
                format!(
                    "!GetAtt {}{}Queue.Arn",
                    queue[..1].to_ascii_uppercase(),
                    &queue[1..]
                ),
            )
        })
        .collect();
    assert_eq!(in_template, local, "bucket → queue notifications");
}

/// The concurrency the README and docs/template.md tell a deployer to have is what the
/// functions reserve (plus the 100 Lambda keeps unreserved).
#[test]
fn the_documented_concurrency_quota_is_the_templates() {
    let template = template();
    let reserved: i64 = resources(&template)
        .values()
        .filter(|r| r["Type"] == "AWS::Serverless::Function")
        .map(|r| {
            r["Properties"]["ReservedConcurrentExecutions"]
                .as_i64()
                .expect("every function reserves its concurrency")
        })
        .sum();
    let quota = reserved + 100;
    for (doc, claims) in [
        (
            "README.md",
            [
                format!("The functions reserve {reserved} concurrent executions"),
                format!("must be at least {quota}"),
            ],
        ),
        (
            "docs/template.md",
            [
                format!("{reserved} in all"),
                format!("a concurrency quota of at least {quota}"),
            ],
        ),
    ] {
        let text = std::fs::read_to_string(repo_root().join(doc)).expect(doc);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for claim in claims {
            assert!(text.contains(&claim), "{doc} does not say: {claim}");
        }
    }
}
