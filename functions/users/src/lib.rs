//! The users function: the caller's own account, administrators' account management
//! (create providers and admins, list, disable/enable, change role) and care
//! relationships. Every admin action and every read of someone's account is audited.

mod admin;
mod care;
mod me;
mod profile;

use http::Method;
use shared::http::Router;

/// Every handler records through the one shared helper.
pub(crate) use shared::auth::record as audit;

pub fn router() -> Router {
    Router::new()
        .route(Method::GET, "/api/v1/users/me", me::get)
        .route(Method::PATCH, "/api/v1/users/me", me::patch)
        .route(Method::GET, "/api/v1/users/me/profile", profile::get_own)
        .route(Method::PUT, "/api/v1/users/me/profile", profile::put_own)
        .route(
            Method::GET,
            "/api/v1/users/{id}/profile",
            profile::get_patient,
        )
        .route(Method::GET, "/api/v1/users", admin::list)
        .route(Method::POST, "/api/v1/users", admin::create)
        .route(Method::GET, "/api/v1/users/{id}", admin::get)
        .route(Method::POST, "/api/v1/users/{id}/disable", admin::disable)
        .route(Method::POST, "/api/v1/users/{id}/enable", admin::enable)
        .route(Method::PUT, "/api/v1/users/{id}/role", admin::set_role)
        .route(Method::POST, "/api/v1/care-relationships", care::create)
        .route(Method::GET, "/api/v1/care-relationships", care::list)
        .route(Method::DELETE, "/api/v1/care-relationships/{id}", care::end)
}
