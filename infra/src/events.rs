//! Builders of the event JSON API Gateway, SQS and EventBridge send to Lambda.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use base64::Engine;
use chrono::Utc;
use http::HeaderMap;
use serde_json::{json, Map, Value};
use shared::ports::queue::ReceivedMessage;
use std::collections::HashMap;

/// The account id the local stack pretends to run in.
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "local";

/// Content types API Gateway passes as text; anything else is base64.
fn is_textual(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct == "application/json"
        || ct.ends_with("+json")
        || ct == "application/xml"
        || ct == "application/x-www-form-urlencoded"
}

fn request_time() -> (String, i64) {
    let now = Utc::now();
    (
        now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
        now.timestamp_millis(),
    )
}

/// Header map as API Gateway sends it: lower-case names, repeated values comma-joined,
/// cookies moved to their own list.
fn flat_headers(headers: &HeaderMap) -> (Map<String, Value>, Vec<String>) {
    let mut flat: Map<String, Value> = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        if name == http::header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        let entry = flat
            .entry(name.as_str().to_string())
            .or_insert_with(|| Value::String(String::new()));
        if let Value::String(existing) = entry {
            if !existing.is_empty() {
                existing.push(',');
            }
            existing.push_str(value);
        }
    }
    (flat, cookies)
}

/// One HTTP request as an API Gateway HTTP API (payload format 2.0) event.
#[allow(clippy::too_many_arguments)]
pub fn http_api_event(
    method: &str,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    source_ip: &str,
    domain: &str,
    route: Option<(&str, &HashMap<String, String>)>,
) -> Value {
    let (flat, cookies) = flat_headers(headers);
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let text = is_textual(content_type)
        .then(|| std::str::from_utf8(body).ok())
        .flatten();
    let (time, epoch) = request_time();
    let route_key = match route {
        Some((pattern, _)) => format!("{method} {pattern}"),
        None => "$default".to_string(),
    };
    let mut query: Map<String, Value> = Map::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        let entry = query
            .entry(k.into_owned())
            .or_insert_with(|| Value::String(String::new()));
        if let Value::String(existing) = entry {
            if !existing.is_empty() {
                existing.push(',');
            }
            existing.push_str(&v);
        }
    }
    let user_agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": flat,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or(domain),
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": time,
            "timeEpoch": epoch,
        },
        "isBase64Encoded": text.is_none() && !body.is_empty(),
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if let Some((_, params)) = route {
        if !params.is_empty() {
            event["pathParameters"] = json!(params);
        }
    }
    if !body.is_empty() {
        event["body"] = match text {
            Some(text) => Value::String(text.to_string()),
            None => Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
        };
    }
    event
}

/// What kind of WebSocket event to build.
pub enum WsEventKind<'a> {
    Connect {
        headers: &'a HeaderMap,
        query: &'a HashMap<String, String>,
    },
    Message {
        route_key: &'a str,
        body: &'a str,
    },
    Disconnect {
        status_code: u16,
        reason: &'a str,
    },
}

/// One WebSocket event as API Gateway's WebSocket API sends it.
pub fn websocket_event(
    kind: WsEventKind<'_>,
    connection_id: &str,
    connected_at_ms: i64,
    source_ip: &str,
    domain: &str,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let (time, epoch) = request_time();
    let (route_key, event_type) = match &kind {
        WsEventKind::Connect { .. } => ("$connect", "CONNECT"),
        WsEventKind::Message { route_key, .. } => (*route_key, "MESSAGE"),
        WsEventKind::Disconnect { .. } => ("$disconnect", "DISCONNECT"),
    };
    let mut context = json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": ulid::Ulid::new().to_string(),
        "requestTime": time,
        "messageDirection": "IN",
        "stage": "local",
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": epoch,
        "identity": { "sourceIp": source_ip },
        "requestId": ulid::Ulid::new().to_string(),
        "domainName": domain,
        "connectionId": connection_id,
        "apiId": "local",
    });
    let mut event = json!({ "isBase64Encoded": false });
    match kind {
        WsEventKind::Connect { headers, query } => {
            let (flat, _) = flat_headers(headers);
            if let Some(ua) = flat.get("user-agent") {
                context["identity"]["userAgent"] = ua.clone();
            }
            event["headers"] = Value::Object(flat);
            if !query.is_empty() {
                event["queryStringParameters"] = json!(query);
            }
        }
        WsEventKind::Message { body, .. } => {
            context["messageId"] = json!(ulid::Ulid::new().to_string());
            event["body"] = json!(body);
        }
        WsEventKind::Disconnect {
            status_code,
            reason,
        } => {
            context["disconnectStatusCode"] = json!(status_code);
            context["disconnectReason"] = json!(reason);
        }
    }
    event["requestContext"] = context;
    serde_json::from_value(event)
}

/// A batch of received messages as the SQS event source mapping delivers it.
pub fn sqs_event(queue: &str, messages: &[ReceivedMessage]) -> Result<SqsEvent, serde_json::Error> {
    let now = Utc::now().timestamp_millis();
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_at_ms.to_string(),
                    "ApproximateFirstReceiveTimestamp": now.to_string(),
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"),
                "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records }))
}

/// The S3 event notification of one object created (`ObjectCreated:Put`), as S3 sends
/// it to a queue (the body of the SQS message; the key URL-encoded with `+` for spaces).
pub fn s3_object_created(
    bucket: &str,
    key: &str,
    size: u64,
    version_id: &str,
    configuration_id: &str,
) -> Value {
    let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes())
        .collect::<String>()
        .replace("%2F", "/");
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": REGION,
            "eventTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventName": "ObjectCreated:Put",
            "userIdentity": { "principalId": "local" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": {
                "x-amz-request-id": ulid::Ulid::new().to_string(),
                "x-amz-id-2": ulid::Ulid::new().to_string(),
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": configuration_id,
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": { "principalId": "local" },
                    "arn": format!("arn:aws:s3:::{bucket}"),
                },
                "object": {
                    "key": encoded,
                    "size": size,
                    "versionId": version_id,
                    "sequencer": format!("{:016X}", Utc::now().timestamp_nanos_opt().unwrap_or_default()),
                },
            },
        }],
    })
}

/// The event an EventBridge schedule rule sends.
pub fn scheduled_event(rule: &str) -> Result<EventBridgeEvent, serde_json::Error> {
    serde_json::from_value(json!({
        "version": "0",
        "id": ulid::Ulid::new().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}")],
        "detail": {},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_events_parse_exactly_as_lambda_parses_them() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("header"));
        headers.append("x-multi", "a".parse().expect("header"));
        headers.append("x-multi", "b".parse().expect("header"));
        headers.insert("cookie", "a=1; b=2".parse().expect("header"));
        let params = HashMap::from([("id".to_string(), "42".to_string())]);
        let event = http_api_event(
            "POST",
            "/api/v1/things/42",
            "limit=5&x=a%20b",
            &headers,
            br#"{"k":1}"#,
            "127.0.0.1",
            "127.0.0.1:5000",
            Some(("/api/v1/things/{id}", &params)),
        );
        assert_eq!(event["headers"]["x-multi"], "a,b");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        let request = lambda_http::request::from_str(&event.to_string()).expect("lambda parses it");
        let req = shared::http::ApiRequest::from_lambda(request);
        assert_eq!(req.path, "/api/v1/things/42");
        assert_eq!(req.query["x"], "a b");
        assert_eq!(&req.body[..], br#"{"k":1}"#);
        assert_eq!(req.source_ip.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn binary_bodies_are_base64_and_round_trip() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/pdf".parse().expect("header"));
        let body = [0u8, 159, 146, 150];
        let event = http_api_event("PUT", "/x", "", &headers, &body, "127.0.0.1", "h", None);
        assert_eq!(event["isBase64Encoded"], true);
        let request = lambda_http::request::from_str(&event.to_string()).expect("parses");
        assert_eq!(
            &shared::http::ApiRequest::from_lambda(request).body[..],
            &body
        );
    }

    #[test]
    fn s3_events_parse_as_the_worker_parses_them() {
        let event = s3_object_created("docare-quarantine", "uploads/01J a+b", 42, "v1", "scan");
        let objects = shared::worker::s3_objects(&event.to_string()).expect("parses");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].bucket, "docare-quarantine");
        assert_eq!(objects[0].key, "uploads/01J a+b");
        assert_eq!(objects[0].version_id.as_deref(), Some("v1"));
        assert_eq!(objects[0].size, Some(42));
        assert_eq!(objects[0].event_name, "ObjectCreated:Put");
    }

    #[test]
    fn websocket_sqs_and_schedule_events_parse() {
        let headers = HeaderMap::new();
        let query = HashMap::from([("token".to_string(), "t".to_string())]);
        let connect = websocket_event(
            WsEventKind::Connect {
                headers: &headers,
                query: &query,
            },
            "c1",
            0,
            "127.0.0.1",
            "h",
        )
        .expect("connect");
        assert_eq!(
            connect.request_context.route_key.as_deref(),
            Some("$connect")
        );
        assert_eq!(connect.query_string_parameters.first("token"), Some("t"));
        let message = ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: "{}".into(),
            receive_count: 2,
            sent_at_ms: 1,
        };
        let sqs = sqs_event("notifications", &[message]).expect("sqs");
        assert_eq!(sqs.records[0].attributes["ApproximateReceiveCount"], "2");
        assert!(scheduled_event("tick").is_ok());
    }
}
