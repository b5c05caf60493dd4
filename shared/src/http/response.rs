//! The one way to build responses, errors included.

use crate::error::{cause_chain, ApiError};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

/// The headers the first seed's Helmet gave, on every answer of every function: HTTPS
/// only, no MIME sniffing, no referrer leaking ids in URLs, nothing loadable or
/// frameable from a JSON answer, and no caching of answers that may carry PHI.
pub const SECURITY_HEADERS: [(http::HeaderName, &str); 5] = [
    (http::header::CACHE_CONTROL, "no-store"),
    (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        http::header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    ),
    (http::header::REFERRER_POLICY, "no-referrer"),
    (
        http::header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    /// A JSON response. Serializing our own types cannot fail in practice; if it does,
    /// it is a bug, reported as a 500 rather than a panic.
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(Self {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    pub fn ok<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        Self::json(StatusCode::OK, value)
    }

    pub fn created<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        Self::json(StatusCode::CREATED, value)
    }

    pub fn accepted<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        Self::json(StatusCode::ACCEPTED, value)
    }

    pub fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// The error body of DESIGN §4. Server errors are logged here, once, with their
    /// cause chain; client errors are logged at debug level without detail.
    pub fn error(err: &ApiError, request_id: &str) -> Self {
        if err.is_server_error() {
            let dependency = match err {
                ApiError::Unavailable { dependency, .. } => *dependency,
                _ => "",
            };
            tracing::error!(
                request_id,
                status = err.status().as_u16(),
                code = err.code(),
                dependency,
                cause = %cause_chain(err),
                "request failed"
            );
        } else {
            tracing::debug!(
                request_id,
                status = err.status().as_u16(),
                code = err.code(),
                "request refused"
            );
        }
        let body = super::openapi::ErrorBody {
            error: super::openapi::ErrorDetail {
                code: err.code().to_string(),
                message: err.to_string(),
                request_id: request_id.to_string(),
            },
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = err.retry_after() {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        Self {
            status: err.status(),
            headers,
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }

    /// Converts to the Lambda response type; [`SECURITY_HEADERS`] are added to every
    /// answer (a handler's own `Content-Security-Policy`, such as the receipt page's
    /// script-free one, is kept).
    pub fn into_lambda(self) -> lambda_http::Response<lambda_http::Body> {
        let mut response = lambda_http::Response::new(if self.body.is_empty() {
            lambda_http::Body::Empty
        } else {
            match String::from_utf8(self.body.to_vec()) {
                Ok(text) => lambda_http::Body::Text(text),
                Err(err) => lambda_http::Body::Binary(err.into_bytes()),
            }
        });
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        *headers = self.headers;
        for (name, value) in &SECURITY_HEADERS {
            if *name == http::header::CONTENT_SECURITY_POLICY && headers.contains_key(name) {
                continue;
            }
            headers.insert(name.clone(), HeaderValue::from_static(value));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_stable_body_and_retry_after() {
        let response = ApiResponse::error(
            &ApiError::RateLimited {
                retry_after_secs: 42,
            },
            "req-1",
        );
        assert_eq!(response.status, 429);
        assert_eq!(response.headers[http::header::RETRY_AFTER], "42");
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(body["error"]["request_id"], "req-1");
        assert!(body["error"]["message"].is_string());
    }

    #[test]
    fn unavailable_does_not_leak_its_cause() {
        let err =
            ApiError::unavailable("database", std::io::Error::other("arn:aws:dynamodb:secret"));
        let response = ApiResponse::error(&err, "r");
        let text = String::from_utf8(response.body.to_vec()).expect("utf8");
        assert!(!text.contains("arn:aws"), "{text}");
        assert_eq!(response.status, 503);
    }
}
