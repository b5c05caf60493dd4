//! Wall-clock times in a person's time zone (IANA names, `America/New_York`), and the
//! one rule for turning a local date and time into an instant.
//!
//! Availability ("09:00 to 17:00 on Mondays") and medication schedules ("08:00 every
//! day") are wall-clock times: 08:00 stays 08:00 local across daylight-saving changes.
//! Two local times need a defined answer, and every area uses this one:
//!
//! - **A time that does not exist** (spring forward: 02:30 on 2027-03-14 in New York)
//!   is read with the offset in effect *before* the jump, so it lands as far after the
//!   jump as it was after the last valid minute: 02:30 becomes 03:30 EDT (07:30Z).
//! - **A time that exists twice** (fall back: 01:30 on 2027-11-07 in New York) is the
//!   *earlier* of the two instants: 01:30 EDT (05:30Z), not 01:30 EST.
//!
//! This is RFC 5545's rule for recurring events and what JavaScript's Temporal calls
//! `"compatible"` (as `jiff` does), so calendar clients show the same time we store.
//!
//! The zone database is the IANA one bundled into the binary by `jiff` (no files needed
//! on Lambda's image), kept as one byte string per zone: `chrono-tz`, used before, kept a
//! table with a pointer per transition, some 30,000 relocations applied at every cold
//! start of the four functions that link it (README, Benchmarks).

use super::Timestamp;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

/// An IANA time zone (`Europe/Berlin`, `UTC`). Abbreviations (`EST`) and fixed offsets
/// (`+01:00`) are refused: they do not know about daylight saving. A zone is its name,
/// one of the database's (so it is `Copy` and compares by name); its rules are looked up
/// when used (the database caches each zone it has read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Zone(&'static str);

/// The names of the bundled database, as it spells them (case included), each stored
/// once for the life of the process: the set is built on the first parse.
fn names() -> &'static BTreeSet<&'static str> {
    static NAMES: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        jiff::tz::db()
            .available()
            .map(|name| &*Box::leak(name.as_str().to_owned().into_boxed_str()))
            .collect()
    })
}

impl Zone {
    pub const UTC: Zone = Zone("UTC");

    /// An IANA zone name with at least one `/` (or exactly `UTC`), spelled as the
    /// database spells it; `None` otherwise.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        if name == Self::UTC.0 {
            return Some(Self::UTC);
        }
        if !name.contains('/') {
            return None;
        }
        names().get(name).map(|name| Self(name))
    }

    pub fn name(&self) -> &'static str {
        self.0
    }

    /// The zone's rules. Every name but `UTC` came from the database's own list, so the
    /// lookup finds it; were the database to fail, UTC is the answer rather than a panic.
    fn rules(&self) -> TimeZone {
        if *self == Self::UTC {
            return TimeZone::UTC;
        }
        jiff::tz::db().get(self.0).unwrap_or(TimeZone::UTC)
    }

    /// The instant of a local date and time in this zone, by the rule in the module
    /// documentation (gap: the offset before the jump; overlap: the earlier instant).
    pub fn instant(&self, date: NaiveDate, time: NaiveTime) -> Timestamp {
        let local = date.and_time(time);
        let zoned =
            civil(local).and_then(|civil| self.rules().to_ambiguous_zoned(civil).compatible().ok());
        match zoned.and_then(|zoned| utc(zoned.timestamp())) {
            Some(at) => Timestamp::new(at),
            // Outside the years the database covers (-9999 to 9999): read as UTC.
            None => Timestamp::new(DateTime::<Utc>::from_naive_utc_and_offset(local, Utc)),
        }
    }

    /// The local date and time of an instant in this zone.
    pub fn local(&self, at: Timestamp) -> NaiveDateTime {
        let utc_time = at.as_datetime().naive_utc();
        jiff_timestamp(at)
            .and_then(|ts| naive(self.rules().to_datetime(ts)))
            .unwrap_or(utc_time)
    }

    /// The local calendar date of an instant in this zone.
    pub fn date(&self, at: Timestamp) -> NaiveDate {
        self.local(at).date()
    }

    /// The zone's UTC offset at an instant (e.g. for display next to a UTC time).
    pub fn offset_seconds(&self, at: Timestamp) -> i32 {
        jiff_timestamp(at)
            .map(|ts| self.rules().to_offset(ts).seconds())
            .unwrap_or(0)
    }
}

fn civil(local: NaiveDateTime) -> Option<jiff::civil::DateTime> {
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        i8::try_from(local.month()).ok()?,
        i8::try_from(local.day()).ok()?,
        i8::try_from(local.hour()).ok()?,
        i8::try_from(local.minute()).ok()?,
        i8::try_from(local.second()).ok()?,
        i32::try_from(local.nanosecond()).ok()?,
    )
    .ok()
}

fn naive(civil: jiff::civil::DateTime) -> Option<NaiveDateTime> {
    let date = NaiveDate::from_ymd_opt(
        i32::from(civil.year()),
        u32::try_from(civil.month()).ok()?,
        u32::try_from(civil.day()).ok()?,
    )?;
    let time = NaiveTime::from_hms_nano_opt(
        u32::try_from(civil.hour()).ok()?,
        u32::try_from(civil.minute()).ok()?,
        u32::try_from(civil.second()).ok()?,
        u32::try_from(civil.subsec_nanosecond()).ok()?,
    )?;
    Some(date.and_time(time))
}

fn jiff_timestamp(at: Timestamp) -> Option<jiff::Timestamp> {
    let at = at.as_datetime();
    jiff::Timestamp::new(
        at.timestamp(),
        i32::try_from(at.timestamp_subsec_nanos()).ok()?,
    )
    .ok()
}

fn utc(ts: jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(ts.as_second(), u32::try_from(ts.subsec_nanosecond()).ok()?)
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Zone::parse(&name).ok_or_else(|| {
            serde::de::Error::custom("expected an IANA time zone such as Europe/Berlin")
        })
    }
}

impl schemars::JsonSchema for Zone {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IANA time zone name, such as America/New_York or Europe/Berlin.",
            "examples": ["America/New_York"]
        })
    }
}

/// A wall-clock time of day, `HH:MM` (24 hours, minutes only: schedules and
/// availability are to the minute).
pub fn parse_time_of_day(text: &str) -> Option<NaiveTime> {
    let text = text.trim();
    if text.len() != 5 || text.as_bytes()[2] != b':' {
        return None;
    }
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// A calendar date, `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    if text.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: &str, date: &str, time: &str) -> String {
        let zone = Zone::parse(zone).unwrap();
        zone.instant(parse_date(date).unwrap(), parse_time_of_day(time).unwrap())
            .to_string()
    }

    #[test]
    fn only_iana_names_are_zones() {
        assert_eq!(
            Zone::parse("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(Zone::parse("UTC"), Some(Zone::UTC));
        for bad in ["EST", "CET", "+01:00", "Mars/Olympus", "", "europe/berlin"] {
            assert_eq!(Zone::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn wall_clock_times_keep_their_local_time_across_dst() {
        // New York: EST (-5) in winter, EDT (-4) in summer.
        assert_eq!(
            at("America/New_York", "2027-03-13", "08:00"),
            "2027-03-13T13:00:00Z"
        );
        assert_eq!(
            at("America/New_York", "2027-03-15", "08:00"),
            "2027-03-15T12:00:00Z"
        );
        // Berlin: CET (+1), CEST (+2); Europe switches on other dates than the US.
        assert_eq!(
            at("Europe/Berlin", "2027-03-27", "08:00"),
            "2027-03-27T07:00:00Z"
        );
        assert_eq!(
            at("Europe/Berlin", "2027-03-29", "08:00"),
            "2027-03-29T06:00:00Z"
        );
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_moves_forward_by_the_gap() {
        assert_eq!(
            at("America/New_York", "2027-03-14", "02:30"),
            "2027-03-14T07:30:00Z"
        );
        assert_eq!(
            at("America/New_York", "2027-03-14", "02:00"),
            "2027-03-14T07:00:00Z"
        );
        assert_eq!(
            at("America/New_York", "2027-03-14", "03:00"),
            "2027-03-14T07:00:00Z"
        );
        assert_eq!(
            at("Europe/Berlin", "2027-03-28", "02:30"),
            "2027-03-28T01:30:00Z"
        );
        let ny = Zone::parse("America/New_York").unwrap();
        let t = Timestamp::parse("2027-03-14T07:30:00Z").unwrap();
        assert_eq!(ny.local(t).time(), parse_time_of_day("03:30").unwrap());
    }

    #[test]
    fn a_time_that_exists_twice_on_fall_back_day_is_the_earlier_one() {
        assert_eq!(
            at("America/New_York", "2027-11-07", "01:30"),
            "2027-11-07T05:30:00Z"
        );
        assert_eq!(
            at("Europe/Berlin", "2027-10-31", "02:30"),
            "2027-10-31T00:30:00Z"
        );
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let t = Timestamp::parse("2027-10-31T00:30:00Z").unwrap();
        assert_eq!(berlin.offset_seconds(t), 7200);
        assert_eq!(
            berlin.offset_seconds(Timestamp::parse("2027-10-31T01:30:00Z").unwrap()),
            3600
        );
    }

    #[test]
    fn times_and_dates_have_one_format() {
        assert!(parse_time_of_day("09:00").is_some());
        for bad in ["9:00", "09:00:00", "24:00", "09:60", "0900", ""] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
        assert!(parse_date("2027-02-28").is_some());
        for bad in ["2027-02-30", "2027-2-28", "28.02.2027", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn zones_round_trip_as_json_strings() {
        let zone: Zone = serde_json::from_str("\"Europe/Berlin\"").unwrap();
        assert_eq!(serde_json::to_string(&zone).unwrap(), "\"Europe/Berlin\"");
        assert!(serde_json::from_str::<Zone>("\"CET\"").is_err());
    }
}
