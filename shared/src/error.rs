//! One error type for every handler, mapped to a status and the stable JSON body of
//! DESIGN §4 in exactly one place ([`ApiError::status`], [`crate::http::response`]).
//!
//! Messages are written for API clients and never carry PHI, SDK error strings or
//! internals; the cause chain (`source`) is kept for the logs only.

use http::StatusCode;
use std::error::Error as StdError;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: the caller can fix the request. The message names the field, never its value.
    #[error("{0}")]
    Validation(String),
    #[error("authentication is required")]
    Unauthenticated,
    /// Credentials (password, code, refresh token) that do not verify. One message for
    /// every cause, so the answer never tells whether an account exists.
    #[error("the credentials are not valid")]
    InvalidCredentials,
    #[error("you are not allowed to do this")]
    Forbidden,
    /// Also used for resources the caller may not see (no existence oracle).
    #[error("the requested resource was not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// Well-formed input that breaks a business rule.
    #[error("{0}")]
    Unprocessable(String),
    #[error("too many requests; retry later")]
    RateLimited { retry_after_secs: u64 },
    /// A dependency (database, KMS, queue…) failed. `dependency` is a short public name.
    #[error("a dependency is temporarily unavailable")]
    Unavailable {
        dependency: &'static str,
        #[source]
        source: Source,
    },
    /// A bug or an unexpected state. Logged with its cause; the client sees a generic message.
    #[error("an internal error occurred")]
    Internal(#[source] Source),
    /// Stored data failed its integrity check (tampered, truncated or reordered): the
    /// request fails rather than answer anything of it. Audited as `INTEGRITY_FAILURE`.
    #[error("the stored data failed its integrity check")]
    Integrity,
}

impl ApiError {
    pub fn validation(message: impl Into<String>) -> Self {
        Self::Validation(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::Unprocessable(message.into())
    }

    pub fn unavailable(dependency: &'static str, source: impl Into<Source>) -> Self {
        Self::Unavailable {
            dependency,
            source: source.into(),
        }
    }

    pub fn internal(source: impl Into<Source>) -> Self {
        Self::Internal(source.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Integrity => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable, machine-readable code that clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unprocessable(_) => "unprocessable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "service_unavailable",
            Self::Internal(_) => "internal_error",
            Self::Integrity => "integrity_failure",
        }
    }

    /// Seconds a client should wait before retrying, when the answer is worth retrying.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable { .. } => Some(1),
            _ => None,
        }
    }

    /// Server-side failures are logged with their cause chain; client errors are not noise.
    pub fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }
}

/// Walks the cause chain into one line for the logs (`a: b: c`). Only for server errors,
/// whose sources are our own and SDK errors, which carry no request data.
pub fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    let mut current = err.source();
    while let Some(cause) = current {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
        current = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_the_documented_status() {
        let io = || std::io::Error::other("boom");
        let cases = [
            (ApiError::validation("x"), 400),
            (ApiError::Unauthenticated, 401),
            (ApiError::Forbidden, 403),
            (ApiError::NotFound, 404),
            (ApiError::conflict("x"), 409),
            (ApiError::PayloadTooLarge { limit: 1 }, 413),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::unprocessable("x"), 422),
            (
                ApiError::RateLimited {
                    retry_after_secs: 3,
                },
                429,
            ),
            (ApiError::unavailable("database", io()), 503),
            (ApiError::internal(io()), 500),
            (ApiError::Integrity, 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
        }
    }

    #[test]
    fn server_errors_hide_their_cause_from_the_message() {
        let err = ApiError::unavailable("keys", std::io::Error::other("secret internals"));
        assert!(!err.to_string().contains("secret"));
        assert_eq!(cause_chain(&err), "secret internals");
    }
}
