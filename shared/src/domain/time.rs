//! Times in the API and in stored records: RFC 3339 in UTC, to the second, with `Z`
//! (`2026-12-01T21:38:02Z`): one format, so strings sort as times and compare equal.

use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The instant, to the second (what the format can say).
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at))
    }

    /// Any RFC 3339 time (an offset is converted to UTC); `None` otherwise.
    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| Self::new(t.with_timezone(&Utc)))
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Seconds since the epoch (TTL attributes, windows).
    pub fn epoch_secs(&self) -> i64 {
        self.0.timestamp()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> Self {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_format_in_utc_to_the_second() {
        let t = Timestamp::parse("2026-12-01T22:38:02.123+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-12-01T21:38:02Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        assert_eq!(Timestamp::parse("2026-12-01 21:38"), None);
    }
}
