//! The emergency function: a user's emergency contacts (every field encrypted, at most
//! [`contacts::MAX_CONTACTS`]) and the SOS alert, which is recorded, answered with 202
//! and fanned out to the contacts (e-mail/SMS through the sealed notification queue) and
//! the care team (WebSocket `notification` push and e-mail). An SOS repeated within
//! [`sos::COLLAPSE_SECS`] joins the open alert: recorded, not re-sent.

/// The outside services the `emergency` binary links (`shared::adapters::links`): alerts
/// are queued and pushed to connected providers.
pub const LINKS: shared::adapters::links::Links =
    shared::adapters::links::PUSH | shared::adapters::links::QUEUE;

pub mod contacts;
pub mod sos;

use contacts::{Contact, ContactBody};
use http::Method;
use shared::http::{Page, RouteDoc, Router};

pub fn router() -> Router {
    Router::new()
        .route(Method::GET, "/api/v1/emergency/contacts", contacts::list)
        .doc(
            RouteDoc::new("The caller's emergency contacts")
                .bearer()
                .paged()
                .response::<Page<Contact>>(200)
                .errors(&[400, 401, 429, 503]),
        )
        .route(Method::POST, "/api/v1/emergency/contacts", contacts::create)
        .doc(
            RouteDoc::new("Create an emergency contact")
                .bearer()
                .body::<ContactBody>()
                .response::<Contact>(201)
                .errors(&[401, 409, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/emergency/contacts/{id}",
            contacts::get,
        )
        .doc(
            RouteDoc::new("An emergency contact")
                .bearer()
                .response::<Contact>(200)
                .errors(&[401, 404, 429, 503]),
        )
        .route(
            Method::PUT,
            "/api/v1/emergency/contacts/{id}",
            contacts::replace,
        )
        .doc(
            RouteDoc::new("Replace an emergency contact")
                .bearer()
                .body::<ContactBody>()
                .response::<Contact>(200)
                .errors(&[401, 404, 429, 503]),
        )
        .route(
            Method::DELETE,
            "/api/v1/emergency/contacts/{id}",
            contacts::delete,
        )
        .doc(
            RouteDoc::new("Delete an emergency contact")
                .bearer()
                .no_content()
                .errors(&[401, 404, 429, 503]),
        )
        .route(Method::POST, "/api/v1/emergency/sos", sos::raise)
        .doc(
            RouteDoc::new("Raise an SOS: recorded, then sent to the contacts and the care team")
                .describe("The body is optional. An SOS repeated within the collapse window joins the open alert.")
                .bearer()
                .optional_body::<sos::SosBody>()
                .response::<sos::SosAccepted>(202)
                .errors(&[401, 409, 429, 503]),
        )
}
