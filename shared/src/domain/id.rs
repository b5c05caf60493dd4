//! Record ids: ULIDs, 26 characters, sortable by creation time. They are generated from
//! the app's clock (not the system's), so a test that sets the clock gets ids that sort
//! with the times it set.

use chrono::{DateTime, Utc};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(ulid::Ulid);

impl Id {
    /// A new id for something created at `at` (random below the millisecond).
    pub fn generate(at: DateTime<Utc>) -> Self {
        Self(ulid::Ulid::from_datetime(at.into()))
    }

    /// A well-formed id, or `None` (callers answer 404: see `shared::guard::path_id`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != ulid::ULID_LEN {
            return None;
        }
        ulid::Ulid::from_string(text).ok().map(Self)
    }

    /// When the id was generated (millisecond precision).
    pub fn created_at(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.0.datetime())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_sort_with_the_clock_that_made_them() {
        let early = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let late = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
        let a = Id::generate(early);
        let b = Id::generate(late);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.created_at(), early);
        assert_eq!(a.to_string().len(), 26);
    }

    #[test]
    fn only_ulids_parse() {
        let id = Id::generate(Utc::now());
        assert_eq!(Id::parse(&id.to_string()), Some(id));
        for bad in [
            "",
            "not-an-id",
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1",
            "0192f0c4-7d1a-7b3e-9c2d-1a2b3c4d5e6f",
        ] {
            assert_eq!(Id::parse(bad), None, "{bad}");
        }
    }
}
