//! The audit function: the compliance query API over the audit trail
//! (`GET /api/v1/audit`, administrators with an MFA session only) and each user's own
//! access log (`GET /api/v1/users/me/access-log`: who else touched my records, the
//! HIPAA accounting of disclosures). Both read the audit indexes, never scan, never
//! decrypt reasons or user agents, and both are audited themselves.

/// The outside services the `audit` binary links (`shared::adapters::links`): the audit
/// table and the keys only.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::NONE;

pub mod access_log;
pub mod query;

use http::Method;
use shared::http::{Page, RouteDoc, Router};

pub fn router() -> Router {
    Router::new()
        .route(Method::GET, "/api/v1/audit", query::list)
        .doc(
            RouteDoc::new("Query the audit trail by actor, resource or action")
                .describe("Give exactly one of `actor`, `resource_type` with `resource_id`, or `action`; `from`/`to` bound the time (RFC 3339). Unknown parameters are a 400. The query is audited.")
                .admin_mfa()
                .paged()
                .query::<String>("actor", "A user id: what this user did.")
                .query::<String>("resource_type", "A resource type (with `resource_id`).")
                .query::<String>("resource_id", "A resource id, or `*` for every resource of the type.")
                .query::<shared::audit::Action>("action", "An action name.")
                .query::<String>("from", "Earliest time (RFC 3339).")
                .query::<String>("to", "Latest time (RFC 3339).")
                .response::<Page<query::EventView>>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
        .route(Method::GET, "/api/v1/users/me/access-log", access_log::list)
        .doc(
            RouteDoc::new("Who else read or changed the caller's records (accounting of disclosures)")
                .bearer()
                .paged()
                .response::<Page<access_log::AccessView>>(200)
                .errors(&[400, 401, 429, 503]),
        )
}

/// True for the ids this system hands out (ULID, or UUID for ids of other origins).
/// Filters accept nothing else, so no free text (a name, an e-mail, an SSN) can reach
/// the audit event that records the query.
pub(crate) fn is_opaque_id(value: &str) -> bool {
    let ulid = value.len() == 26 && ulid::Ulid::from_string(value).is_ok();
    let uuid = value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    ulid || uuid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_are_ids() {
        assert!(is_opaque_id("01JD5Z6Q8W3M0V7K2R9T4Y6B1C"));
        assert!(is_opaque_id("0192f0c4-7d1a-7b3e-9c2d-1a2b3c4d5e6f"));
        for bad in [
            "",
            "123-45-6789",
            "pat@example.com",
            "Jane Doe",
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1",
            "0192f0c4-7d1a-7b3e-9c2d-1a2b3c4d5e6g",
        ] {
            assert!(!is_opaque_id(bad), "{bad}");
        }
    }
}
