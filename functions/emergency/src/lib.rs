//! The emergency function: a user's emergency contacts (every field encrypted, at most
//! [`contacts::MAX_CONTACTS`]) and the SOS alert, which is recorded, answered with 202
//! and fanned out to the contacts (e-mail/SMS through the sealed notification queue) and
//! the care team (WebSocket `notification` push and e-mail). An SOS repeated within
//! [`sos::COLLAPSE_SECS`] joins the open alert: recorded, not re-sent.

pub mod contacts;
pub mod sos;

use http::Method;
use shared::http::Router;

pub fn router() -> Router {
    Router::new()
        .route(Method::GET, "/api/v1/emergency/contacts", contacts::list)
        .route(Method::POST, "/api/v1/emergency/contacts", contacts::create)
        .route(
            Method::GET,
            "/api/v1/emergency/contacts/{id}",
            contacts::get,
        )
        .route(
            Method::PUT,
            "/api/v1/emergency/contacts/{id}",
            contacts::replace,
        )
        .route(
            Method::DELETE,
            "/api/v1/emergency/contacts/{id}",
            contacts::delete,
        )
        .route(Method::POST, "/api/v1/emergency/sos", sos::raise)
}
