//! CORS, the way API Gateway's HTTP API applies its `CorsConfiguration`.
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

/// The methods a page may use (every method of the route tables).
pub const ALLOW_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The request headers a page may send: the bearer token, JSON bodies, idempotent
/// retries and the reason that audited PHI reads require.
pub const ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "idempotency-key",
    "x-access-reason",
];
/// The response headers a page may read besides the CORS-safelisted ones: how long to
/// wait after a 429.
pub const EXPOSE_HEADERS: &[&str] = &["retry-after"];
/// How long a browser may cache a preflight answer.
pub const MAX_AGE_SECS: u32 = 600;

/// Whether a request is a CORS preflight: API Gateway answers one itself only when it
/// is an `OPTIONS` with both `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, request: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && request.contains_key(header::ORIGIN)
        && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The headers of the answer to a preflight (status 204). For an origin that is not
/// allowed, or a method the API does not serve, only `Vary: Origin`: the browser then
/// refuses the actual request.
pub fn preflight_headers(origins: &AllowedOrigins, request: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = allowed_origin(origins, request) else {
        return headers;
    };
    let method_allowed = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| ALLOW_METHODS.contains(&m));
    if !method_allowed {
        return headers;
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, list(ALLOW_METHODS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list(ALLOW_HEADERS));
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(MAX_AGE_SECS),
    );
    headers
}

/// Applies the policy to an actual answer, errors included: whatever CORS headers the
/// function sent are dropped (API Gateway ignores them), and an allowed origin gets
/// `Access-Control-Allow-Origin` with the exposed headers.
pub fn apply(origins: &AllowedOrigins, request: &HeaderMap, response: &mut HeaderMap) {
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
        response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, list(EXPOSE_HEADERS));
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
        for (origin, method) in [
            ("https://evil.example", "GET"),
            ("http://localhost:3001", "GET"),
            ("http://localhost:3000", "TRACE"),
        ] {
            let answer = preflight_headers(
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
            &origins(),
            &request(&[(header::ORIGIN, "https://evil.example")]),
            &mut response,
        );
        assert!(!response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let mut response = HeaderMap::new();
        apply(
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
}
