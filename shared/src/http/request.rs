//! The request a handler sees: parsed once from the API Gateway event by the router.

use crate::ApiError;
use bytes::Bytes;
use http::{HeaderMap, Method};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// Default bound on JSON bodies; handlers that accept more say so explicitly.
pub const DEFAULT_JSON_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// Path without the stage prefix, as matched against the route table.
    pub path: String,
    /// `{name}` segments of the matched route.
    pub params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// API Gateway's request id (generated when absent), echoed in errors and logs.
    pub request_id: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ApiRequest {
    /// Converts a Lambda HTTP request; route params are filled in by the router.
    pub fn from_lambda(req: lambda_http::Request) -> Self {
        let (request_id, source_ip, stage) = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => (
                ctx.request_id.clone(),
                ctx.http.source_ip.clone(),
                ctx.stage.clone(),
            ),
            _ => (None, None, None),
        };
        let request_id = request_id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| ulid::Ulid::new().to_string());
        let path = req.raw_http_path().to_string();
        let path = if path.is_empty() {
            req.uri().path().to_string()
        } else {
            path
        };
        // A named stage (not `$default`) prefixes the raw path: routes never include it.
        let path = match stage.filter(|s| s != "$default") {
            Some(stage) => match path.strip_prefix(&format!("/{stage}")) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    if rest.is_empty() {
                        "/".to_string()
                    } else {
                        rest.to_string()
                    }
                }
                _ => path,
            },
            None => path,
        };
        let query = req
            .query_string_parameters_ref()
            .map(|q| {
                q.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let (parts, body) = req.into_parts();
        let user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match body {
            lambda_http::Body::Empty => Bytes::new(),
            lambda_http::Body::Text(text) => Bytes::from(text),
            lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
            _ => Bytes::new(),
        };
        ApiRequest {
            method: parts.method,
            path,
            params: HashMap::new(),
            query,
            headers: parts.headers,
            body,
            request_id,
            source_ip,
            user_agent,
        }
    }

    /// A request built directly, for unit tests of handlers.
    pub fn new(method: Method, path: &str) -> Self {
        ApiRequest {
            method,
            path: path.to_string(),
            params: HashMap::new(),
            query: HashMap::new(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            request_id: ulid::Ulid::new().to_string(),
            source_ip: None,
            user_agent: None,
        }
    }

    /// Parses the JSON body with the default size limit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.json_limited(DEFAULT_JSON_LIMIT)
    }

    /// Parses the JSON body. Errors name the offending field path, never a value
    /// (serde's own messages quote the input, which may be PHI).
    pub fn json_limited<T: DeserializeOwned>(&self, limit: usize) -> Result<T, ApiError> {
        if self.body.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if let Some(content_type) = self.headers.get(http::header::CONTENT_TYPE) {
            let essence = content_type
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
        if self.body.is_empty() {
            return Err(ApiError::validation("a JSON request body is required"));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&self.body);
        let value: T = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|err| json_error_message(err.path().to_string(), err.inner()))?;
        deserializer.end().map_err(|_| {
            ApiError::validation("the request body has trailing characters after the JSON value")
        })?;
        Ok(value)
    }

    /// A `{name}` path parameter of the matched route.
    pub fn param(&self, name: &str) -> Result<&str, ApiError> {
        self.params
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::internal(MissingParam(name.to_string())))
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A query parameter parsed as `T`; a present but unparsable value is a 400.
    pub fn query_as<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.query_param(name) {
            None => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|_| {
                ApiError::validation(format!("query parameter `{name}` is not valid"))
            }),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The client's `Idempotency-Key` (every route that takes one): 1 to 64 of
    /// `A-Z a-z 0-9 - _ . :`, or a 400.
    pub fn idempotency_key(&self) -> Result<Option<String>, ApiError> {
        let Some(key) = self.header(IDEMPOTENCY_HEADER) else {
            return Ok(None);
        };
        let ok = (1..=64).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return Err(ApiError::validation(
                "Idempotency-Key: 1 to 64 letters, digits or - _ . :",
            ));
        }
        Ok(Some(key.to_string()))
    }
}

/// The header a client names a retry with.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[derive(Debug, thiserror::Error)]
#[error("route has no path parameter named {0}")]
struct MissingParam(String);

fn json_error_message(path: String, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let at = if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" at `{path}`")
    };
    ApiError::validation(match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            "the request body is not valid JSON".to_string()
        }
        Category::Data => {
            // serde says "missing field `x`" / "unknown field `x`" without values; keep
            // those names, drop anything else it quotes.
            let text = err.to_string();
            if let Some(field) = quoted_field(&text, "missing field `") {
                format!("missing field `{field}`{at}")
            } else if let Some(field) = quoted_field(&text, "unknown field `") {
                format!("unknown field `{field}`{at}")
            } else {
                format!("invalid value{at}")
            }
        }
    })
}

fn quoted_field<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    Some(&rest[..rest.find('`')?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Profile {
        name: String,
        age: u32,
    }

    fn with_body(body: &str) -> ApiRequest {
        let mut req = ApiRequest::new(Method::POST, "/x");
        req.body = Bytes::from(body.to_string());
        req
    }

    #[test]
    fn json_errors_name_fields_but_never_echo_values() {
        let err = with_body(r#"{"name":"123-45-6789","age":"123-45-6789"}"#)
            .json::<Profile>()
            .expect_err("bad type");
        let message = err.to_string();
        assert!(
            message.contains("age") && !message.contains("6789"),
            "{message}"
        );
        assert_eq!(err.status(), 400);

        let missing = with_body(r#"{"name":"x"}"#)
            .json::<Profile>()
            .expect_err("missing");
        assert!(missing.to_string().contains("missing field `age`"));

        let unknown = with_body(r#"{"name":"x","age":1,"ssn":"1"}"#)
            .json::<Profile>()
            .expect_err("unknown");
        assert!(unknown.to_string().contains("unknown field `ssn`"));

        let syntax = with_body(r#"{"name": "123-45-6789"#)
            .json::<Profile>()
            .expect_err("eof");
        assert!(!syntax.to_string().contains("6789"));
    }

    #[test]
    fn body_limits_and_content_type_are_enforced() {
        let big = "x".repeat(DEFAULT_JSON_LIMIT + 1);
        let err = with_body(&big).json::<Profile>().expect_err("too big");
        assert_eq!(err.status(), 413);

        let mut req = with_body(r#"{"name":"x","age":1}"#);
        req.headers.insert(
            http::header::CONTENT_TYPE,
            "text/plain".parse().expect("header"),
        );
        assert_eq!(req.json::<Profile>().expect_err("415").status(), 415);
        req.headers.insert(
            http::header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("header"),
        );
        assert!(req.json::<Profile>().is_ok());

        assert_eq!(
            with_body("").json::<Profile>().expect_err("empty").status(),
            400
        );
    }

    #[test]
    fn query_params_parse_or_give_400() {
        let mut req = ApiRequest::new(Method::GET, "/x");
        req.query.insert("limit".into(), "ten".into());
        assert_eq!(req.query_as::<u32>("limit").expect_err("400").status(), 400);
        assert_eq!(req.query_as::<u32>("other").expect("absent"), None);
    }
}
