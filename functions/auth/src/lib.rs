//! The auth function: sign-up with e-mail verification, login with lockout and an
//! optional second factor (TOTP, recovery code or e-mailed code), refresh-token
//! rotation with reuse detection, logout, password change and reset, TOTP enrolment,
//! and the JWKS that every verifier reads.
//!
//! Answers never tell whether an e-mail has an account: sign-up and reset requests
//! answer the same either way (the owner is told by mail), and every failed login is
//! the same 401 after the same password-hashing work.

/// The outside services the `auth` binary links (`shared::adapters::links`): security
/// notices are queued; a revoked session's sockets are closed.
pub const LINKS: shared::adapters::links::Links =
    shared::adapters::links::PUSH | shared::adapters::links::QUEUE;

mod integrity;
mod mail;
mod mfa;
mod password;
mod sessions;
mod signup;
mod ticket;

use http::Method;
use sessions::TokenPair;
use shared::auth::tokens::Jwks;
use shared::http::{ApiResponse, RouteDoc, Router};

pub use sessions::{REFRESH_ABSOLUTE_SECS, REFRESH_IDLE_SECS};

/// The route table (also mounted by the local stack and checked against the template).
pub fn router() -> Router {
    Router::new()
        .route(
            Method::GET,
            "/.well-known/jwks.json",
            |app, _req| async move { ApiResponse::ok(&app.tokens.jwks(&app).await?) },
        )
        .doc(
            RouteDoc::new("The public keys that verify access tokens (JWKS)")
                .response::<Jwks>(200)
                .errors(&[503]),
        )
        .route(Method::POST, "/api/v1/auth/signup", signup::signup)
        .doc(
            RouteDoc::new("Sign up as a patient (a verification e-mail follows)")
                .describe("Answers the same whether or not the e-mail already has an account.")
                .body::<signup::SignupBody>()
                .response::<signup::SignupAccepted>(201)
                .errors(&[429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/auth/verify-email",
            signup::verify_email,
        )
        .doc(
            RouteDoc::new("Verify the e-mail address with the mailed token")
                .body::<signup::TokenBody>()
                .no_content()
                .errors(&[503]),
        )
        .route(Method::POST, "/api/v1/auth/login", sessions::login)
        .doc(
            RouteDoc::new("Log in with e-mail and password")
                .describe("Opens a session, or answers `mfa_required` with a token for `mfa/challenge`. Every failure is the same 401; repeated failures lock the account.")
                .body::<sessions::LoginBody>()
                .response::<sessions::LoginAnswer>(200)
                .errors(&[401, 422, 429, 503]),
        )
        .route(Method::POST, "/api/v1/auth/mfa/challenge", mfa::challenge)
        .doc(
            RouteDoc::new("Finish a login with a TOTP, recovery or e-mailed code")
                .describe("TOTP or a recovery code opens an MFA session (`amr` `pwd otp mfa`); a code sent by e-mail or SMS opens a weaker one (`pwd mca`, `pwd mca sms`) that reads no PHI.")
                .body::<mfa::ChallengeBody>()
                .response::<TokenPair>(200)
                .errors(&[401, 429, 503]),
        )
        .route(Method::POST, "/api/v1/auth/mfa/send-code", mfa::send_code)
        .doc(
            RouteDoc::new("Send a sign-in code by e-mail or SMS during a login")
                .body::<mfa::SendCodeBody>()
                .response::<mfa::CodeSent>(202)
                .errors(&[401, 422, 429, 503]),
        )
        .route(Method::POST, "/api/v1/auth/refresh", sessions::refresh)
        .doc(
            RouteDoc::new("Rotate a refresh token for a new token pair")
                .describe("A refresh token works once; presenting a used one revokes its session.")
                .body::<sessions::RefreshBody>()
                .response::<TokenPair>(200)
                .errors(&[401, 503]),
        )
        .route(Method::POST, "/api/v1/auth/logout", sessions::logout)
        .doc(
            RouteDoc::new("End this session")
                .bearer()
                .no_content()
                .errors(&[401, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/auth/logout-all",
            sessions::logout_all,
        )
        .doc(
            RouteDoc::new("End every session of the account")
                .bearer()
                .no_content()
                .errors(&[401, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/auth/password/change",
            password::change,
        )
        .doc(
            RouteDoc::new("Change the password (ends the other sessions)")
                .bearer()
                .body::<password::ChangeBody>()
                .no_content()
                .errors(&[401, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/auth/password/reset-request",
            password::reset_request,
        )
        .doc(
            RouteDoc::new("Ask for a password-reset token by e-mail")
                .describe("Answers the same whether or not the e-mail has an account.")
                .body::<password::ResetRequestBody>()
                .response::<password::ResetRequested>(202)
                .errors(&[429, 503]),
        )
        .route(Method::POST, "/api/v1/auth/password/reset", password::reset)
        .doc(
            RouteDoc::new("Set a new password with a reset token (ends every session)")
                .body::<password::ResetBody>()
                .no_content()
                .errors(&[429, 503]),
        )
        .route(Method::POST, "/api/v1/auth/mfa/totp/enroll", mfa::enroll)
        .doc(
            RouteDoc::new("Start TOTP enrolment: a new secret, pending until confirmed")
                .describe("Needs the current password; a wrong one is `401` and counts against the account's failure budget.")
                .bearer()
                .body::<mfa::EnrollBody>()
                .response::<mfa::TotpEnrollment<'static>>(200)
                .errors(&[401, 409, 429, 503]),
        )
        .route(Method::POST, "/api/v1/auth/mfa/totp/confirm", mfa::confirm)
        .doc(
            RouteDoc::new("Confirm TOTP enrolment with a code; answers the recovery codes")
                .bearer()
                .body::<mfa::CodeBody>()
                .response::<mfa::RecoveryCodes>(200)
                .errors(&[401, 409, 429, 503]),
        )
        .route(Method::POST, "/api/v1/auth/mfa/totp/disable", mfa::disable)
        .doc(
            RouteDoc::new("Turn TOTP off (needs a current code)")
                .bearer()
                .body::<mfa::CodeBody>()
                .no_content()
                .errors(&[401, 409, 429, 503]),
        )
        .route(ticket::METHOD, ticket::PATH, ticket::issue).doc(ticket::doc())
}
