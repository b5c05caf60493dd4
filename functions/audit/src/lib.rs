//! The audit function: the compliance query API over the audit trail
//! (`GET /api/v1/audit`, administrators with an MFA session only) and each user's own
//! access log (`GET /api/v1/users/me/access-log`: who else touched my records, the
//! HIPAA accounting of disclosures). Both read the audit indexes, never scan, never
//! decrypt reasons or user agents, and both are audited themselves.

pub mod access_log;
pub mod query;

use http::Method;
use shared::http::Router;

pub fn router() -> Router {
    Router::new()
        .route(Method::GET, "/api/v1/audit", query::list)
        .route(Method::GET, "/api/v1/users/me/access-log", access_log::list)
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
