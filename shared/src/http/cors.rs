//! CORS, the way API Gateway's HTTP API applies its `CorsConfiguration` (and S3 the
//! quarantine bucket's, for presigned uploads from a page).
//!
//! On AWS the gateway answers preflights itself and overrides any CORS header a function
//! returns, so the functions add none. The local stack's gateway applies this same
//! policy (`infra/src/http_gateway.rs`), and `template.yaml`'s `CorsConfiguration` is
//! checked against these constants (`tests/e2e/template.rs`), so a page behaves the same
//! on both hosts.
//!
//! Strict, as the first seed asks: only configured origins (no wildcard), no
//! credentials (tokens travel as bearer headers, never cookies), and a request from any
//! other origin gets no CORS header at all, so the browser refuses to hand the answer
//! to the page.

use crate::config::AllowedOrigins;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method};

/// One CORS policy: what a page on an allowed origin may send and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub methods: &'static [&'static str],
    pub headers: &'static [&'static str],
    pub expose: &'static [&'static str],
    pub max_age_secs: u32,
}

/// The HTTP API (`CorsConfiguration` of `HttpApi`): every method of the route tables;
/// the bearer token, JSON bodies, idempotent retries and the reason that audited PHI
/// reads require; `Retry-After` readable after a 429.
pub const API: Policy = Policy {
    methods: &["GET", "POST", "PUT", "PATCH", "DELETE"],
    headers: &[
        "authorization",
        "content-type",
        "idempotency-key",
        "x-access-reason",
    ],
    expose: &["retry-after"],
    max_age_secs: 600,
};

/// The quarantine bucket (`CorsConfiguration` of `QuarantineBucket`): a page PUTs a
/// document to its presigned URL with the signed `Content-Type`, nothing else.
pub const UPLOADS: Policy = Policy {
    methods: &["PUT"],
    headers: &["content-type"],
    expose: &[],
    max_age_secs: 600,
};

/// Whether a request is a CORS preflight: API Gateway answers one itself only when it
/// is an `OPTIONS` with both `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, request: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && request.contains_key(header::ORIGIN)
        && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The headers of the answer to a preflight (status 204). For an origin that is not
/// allowed, or a method the policy does not allow, only `Vary: Origin`: the browser
/// then refuses the actual request.
pub fn preflight_headers(
    policy: &Policy,
    origins: &AllowedOrigins,
    request: &HeaderMap,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = allowed_origin(origins, request) else {
        return headers;
    };
    let method_allowed = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| policy.methods.contains(&m));
    if !method_allowed {
        return headers;
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, list(policy.methods));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list(policy.headers));
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(policy.max_age_secs),
    );
    headers
}

/// Applies the policy to an actual answer, errors included: whatever CORS headers the
/// function sent are dropped (API Gateway ignores them), and an allowed origin gets
/// `Access-Control-Allow-Origin` with the exposed headers.
pub fn apply(
    policy: &Policy,
    origins: &AllowedOrigins,
    request: &HeaderMap,
    response: &mut HeaderMap,
) {
    let cors_headers: Vec<HeaderName> = response
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in cors_headers {
        response.remove(name);
    }
    response.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed_origin(origins, request) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if !policy.expose.is_empty() {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list(policy.expose));
        }
    }
}

/// The request's `Origin`, when it is one of the allowed ones (exact match).
fn allowed_origin(origins: &AllowedOrigins, request: &HeaderMap) -> Option<HeaderValue> {
    let origin = request.get(header::ORIGIN)?;
    origins
        .allows(origin.to_str().ok()?)
        .then(|| origin.clone())
}

fn list(items: &[&str]) -> HeaderValue {
    // The constants are ASCII tokens; `from_str` cannot fail on them.
    HeaderValue::from_str(&items.join(",")).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> AllowedOrigins {
        AllowedOrigins::parse("http://localhost:3000,https://app.example.com").unwrap()
    }

    fn request(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_preflight_needs_options_origin_and_the_requested_method() {
        let full = request(&[
            (header::ORIGIN, "http://localhost:3000"),
            (header::ACCESS_CONTROL_REQUEST_METHOD, "POST"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &full));
        assert!(!is_preflight(&Method::GET, &full));
        let no_method = request(&[(header::ORIGIN, "http://localhost:3000")]);
        assert!(!is_preflight(&Method::OPTIONS, &no_method));
    }

    #[test]
    fn an_allowed_origin_gets_the_policy_and_no_wildcard() {
        let answer = preflight_headers(
            &API,
            &origins(),
            &request(&[
                (header::ORIGIN, "https://app.example.com"),
                (header::ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
                (
                    header::ACCESS_CONTROL_REQUEST_HEADERS,
                    "authorization,content-type",
                ),
            ]),
        );
        assert_eq!(
            answer[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(
            answer[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET,POST,PUT,PATCH,DELETE"
        );
        assert!(answer[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("idempotency-key"));
        assert_eq!(answer[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert!(!answer.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn other_origins_and_methods_get_no_cors_header() {
        for (policy, origin, method) in [
            (&API, "https://evil.example", "GET"),
            (&API, "http://localhost:3001", "GET"),
            (&API, "http://localhost:3000", "TRACE"),
            (&UPLOADS, "http://localhost:3000", "POST"),
        ] {
            let answer = preflight_headers(
                policy,
                &origins(),
                &request(&[
                    (header::ORIGIN, origin),
                    (header::ACCESS_CONTROL_REQUEST_METHOD, method),
                ]),
            );
            assert!(
                !answer.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{origin} {method}"
            );
        }
    }

    #[test]
    fn answers_carry_the_origin_only_when_allowed_and_never_the_functions_own() {
        let mut response = request(&[(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")]);
        apply(
            &API,
            &origins(),
            &request(&[(header::ORIGIN, "https://evil.example")]),
            &mut response,
        );
        assert!(!response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let mut response = HeaderMap::new();
        apply(
            &API,
            &origins(),
            &request(&[(header::ORIGIN, "http://localhost:3000")]),
            &mut response,
        );
        assert_eq!(
            response[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:3000"
        );
        assert_eq!(
            response[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "retry-after"
        );
        assert_eq!(response[header::VARY], "Origin");
    }

    #[test]
    fn uploads_allow_only_a_put_with_its_content_type() {
        let answer = preflight_headers(
            &UPLOADS,
            &origins(),
            &request(&[
                (header::ORIGIN, "http://localhost:3000"),
                (header::ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
            ]),
        );
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_METHODS], "PUT");
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        let mut response = HeaderMap::new();
        apply(
            &UPLOADS,
            &origins(),
            &request(&[(header::ORIGIN, "http://localhost:3000")]),
            &mut response,
        );
        assert!(!response.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
    }
}
