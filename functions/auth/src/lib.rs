//! The auth function: sign-up with e-mail verification, login with lockout and an
//! optional second factor (TOTP, recovery code or e-mailed code), refresh-token
//! rotation with reuse detection, logout, password change and reset, TOTP enrolment,
//! and the JWKS that every verifier reads.
//!
//! Answers never tell whether an e-mail has an account: sign-up and reset requests
//! answer the same either way (the owner is told by mail), and every failed login is
//! the same 401 after the same password-hashing work.

mod events;
mod mail;
mod mfa;
mod password;
mod sessions;
mod signup;

use http::Method;
use shared::http::{ApiResponse, Router};

pub use sessions::{REFRESH_ABSOLUTE_SECS, REFRESH_IDLE_SECS};

/// The route table (also mounted by the local stack and checked against the template).
pub fn router() -> Router {
    Router::new()
        .route(
            Method::GET,
            "/.well-known/jwks.json",
            |app, _req| async move { ApiResponse::ok(&app.tokens.jwks(&app).await?) },
        )
        .route(Method::POST, "/api/v1/auth/signup", signup::signup)
        .route(
            Method::POST,
            "/api/v1/auth/verify-email",
            signup::verify_email,
        )
        .route(Method::POST, "/api/v1/auth/login", sessions::login)
        .route(Method::POST, "/api/v1/auth/mfa/challenge", mfa::challenge)
        .route(Method::POST, "/api/v1/auth/mfa/send-code", mfa::send_code)
        .route(Method::POST, "/api/v1/auth/refresh", sessions::refresh)
        .route(Method::POST, "/api/v1/auth/logout", sessions::logout)
        .route(
            Method::POST,
            "/api/v1/auth/logout-all",
            sessions::logout_all,
        )
        .route(
            Method::POST,
            "/api/v1/auth/password/change",
            password::change,
        )
        .route(
            Method::POST,
            "/api/v1/auth/password/reset-request",
            password::reset_request,
        )
        .route(Method::POST, "/api/v1/auth/password/reset", password::reset)
        .route(Method::POST, "/api/v1/auth/mfa/totp/enroll", mfa::enroll)
        .route(Method::POST, "/api/v1/auth/mfa/totp/confirm", mfa::confirm)
        .route(Method::POST, "/api/v1/auth/mfa/totp/disable", mfa::disable)
}
