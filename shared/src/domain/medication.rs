//! Medication rules: the fields of a prescription or self-reported medication, and its
//! dose schedule — wall-clock times of day in the patient's zone, or every N hours from
//! a first dose.
//!
//! - **Times of day** (`08:00`) stay at 08:00 local across daylight-saving changes; a
//!   time that does not exist or exists twice on a change day gets the one rule of
//!   [`super::zone`] (gap: offset before the jump, so 02:30 is 03:30; overlap: the
//!   earlier instant). Two times that land on one instant (02:30 and 03:30 on a
//!   spring-forward day) are one dose.
//! - **Every N hours** counts elapsed hours from the first dose: a dose every 8 hours
//!   from 06:00 EST is at 14:00 and 22:00 EST, and after the spring-forward jump at
//!   07:00, 15:00, 23:00 EDT (the same instants, 8 hours apart).
//!
//! A course runs from `starts_on` through `ends_on` (local dates, inclusive); every-N-
//! hours doses start at `first_dose` and stop at the end of `ends_on`.

use super::text::bounded;
use super::zone::{parse_date, parse_time_of_day, Zone};
use super::Timestamp;
use crate::ApiError;
use chrono::{Duration, NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

/// At most this many times of day.
pub const MAX_TIMES: usize = 12;
/// Every-N-hours doses are 1 to this many hours apart.
pub const MAX_INTERVAL_HOURS: u32 = 168;
/// An adherence range (and any list of doses) covers at most this many days.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A dose schedule as sent and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleBody {
    /// Wall-clock times (`HH:MM`) in the patient's time zone, every day of the course.
    TimesOfDay { times: Vec<String> },
    /// Every `hours` hours (elapsed time) from `first_dose` (RFC 3339).
    EveryHours { hours: u32, first_dose: String },
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    TimesOfDay(Vec<NaiveTime>),
    EveryHours { hours: u32, first_dose: Timestamp },
}

impl Schedule {
    pub fn parse(body: &ScheduleBody) -> Result<Self, ApiError> {
        match body {
            ScheduleBody::TimesOfDay { times } => {
                if times.is_empty() || times.len() > MAX_TIMES {
                    return Err(ApiError::validation(format!(
                        "schedule.times: 1 to {MAX_TIMES} times of day"
                    )));
                }
                let mut parsed = times
                    .iter()
                    .map(|t| {
                        parse_time_of_day(t).ok_or_else(|| {
                            ApiError::validation("schedule.times: each must be HH:MM (24 hours)")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                parsed.sort_unstable();
                parsed.dedup();
                Ok(Schedule::TimesOfDay(parsed))
            }
            ScheduleBody::EveryHours { hours, first_dose } => {
                if !(1..=MAX_INTERVAL_HOURS).contains(hours) {
                    return Err(ApiError::validation(format!(
                        "schedule.hours: must be 1 to {MAX_INTERVAL_HOURS}"
                    )));
                }
                let first_dose = Timestamp::parse(first_dose)
                    .filter(|t| t.epoch_secs() % 60 == 0)
                    .ok_or_else(|| {
                        ApiError::validation(
                            "schedule.first_dose: must be an RFC 3339 time on a whole minute",
                        )
                    })?;
                Ok(Schedule::EveryHours {
                    hours: *hours,
                    first_dose,
                })
            }
        }
    }

    pub fn body(&self) -> ScheduleBody {
        match self {
            Schedule::TimesOfDay(times) => ScheduleBody::TimesOfDay {
                times: times
                    .iter()
                    .map(|t| t.format("%H:%M").to_string())
                    .collect(),
            },
            Schedule::EveryHours { hours, first_dose } => ScheduleBody::EveryHours {
                hours: *hours,
                first_dose: first_dose.to_string(),
            },
        }
    }
}

/// A schedule over a course of local dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Course {
    pub schedule: Schedule,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
}

impl Course {
    /// `starts_on`/`ends_on` as `YYYY-MM-DD`; `ends_on` not before `starts_on`.
    pub fn parse(
        schedule: &ScheduleBody,
        starts_on: &str,
        ends_on: Option<&str>,
    ) -> Result<Self, ApiError> {
        let schedule = Schedule::parse(schedule)?;
        let starts_on = parse_date(starts_on)
            .ok_or_else(|| ApiError::validation("starts_on: must be a date YYYY-MM-DD"))?;
        let ends_on = ends_on
            .map(|d| {
                parse_date(d)
                    .ok_or_else(|| ApiError::validation("ends_on: must be a date YYYY-MM-DD"))
            })
            .transpose()?;
        if ends_on.is_some_and(|end| end < starts_on) {
            return Err(ApiError::validation(
                "ends_on: must not be before starts_on",
            ));
        }
        Ok(Self {
            schedule,
            starts_on,
            ends_on,
        })
    }

    /// The first instant of the course (start of `starts_on` local).
    fn begins(&self, zone: Zone) -> Timestamp {
        zone.instant(self.starts_on, NaiveTime::MIN)
    }

    /// The instant the course is over (start of the day after `ends_on` local).
    fn over(&self, zone: Zone) -> Option<Timestamp> {
        self.ends_on
            .and_then(|d| d.succ_opt())
            .map(|d| zone.instant(d, NaiveTime::MIN))
    }

    fn in_course(&self, zone: Zone, at: Timestamp) -> bool {
        at >= self.begins(zone) && self.over(zone).is_none_or(|end| at < end)
    }

    /// Every dose in `[from, to)`, in order (a range longer than [`MAX_RANGE_DAYS`] is
    /// cut there).
    pub fn doses(&self, zone: Zone, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        let cap = Timestamp::new(from.as_datetime() + Duration::days(MAX_RANGE_DAYS));
        let to = to.min(cap);
        let mut out = Vec::new();
        match &self.schedule {
            Schedule::TimesOfDay(times) => {
                let mut date = zone.date(from).pred_opt().unwrap_or(self.starts_on);
                let last = zone.date(to).succ_opt().unwrap_or(date);
                while date <= last {
                    for time in times {
                        let at = zone.instant(date, *time);
                        if at >= from && at < to && self.in_course(zone, at) {
                            out.push(at);
                        }
                    }
                    match date.succ_opt() {
                        Some(next) => date = next,
                        None => break,
                    }
                }
                out.sort_unstable();
                out.dedup();
            }
            Schedule::EveryHours { hours, first_dose } => {
                let step = i64::from(*hours) * 3600;
                let first = first_dose.epoch_secs();
                let k = (from.epoch_secs() - first).max(0);
                let mut at = first + (k + step - 1) / step * step;
                while at < to.epoch_secs() {
                    if let Some(t) = chrono::DateTime::from_timestamp(at, 0).map(Timestamp::new) {
                        if self.over(zone).is_none_or(|end| t < end) {
                            out.push(t);
                        }
                    }
                    at += step;
                }
            }
        }
        out
    }

    /// The first dose at or after `at` (looking at most [`MAX_RANGE_DAYS`] ahead).
    pub fn next_at_or_after(&self, zone: Zone, at: Timestamp) -> Option<Timestamp> {
        // Look a few days ahead first: the common case is tomorrow at the latest.
        for days in [3, MAX_RANGE_DAYS] {
            let to = Timestamp::new(at.as_datetime() + Duration::days(days));
            if let Some(first) = self.doses(zone, at, to).into_iter().next() {
                return Some(first);
            }
        }
        None
    }

    /// Whether `at` is a dose this schedule actually has.
    pub fn has_dose(&self, zone: Zone, at: Timestamp) -> bool {
        let to = Timestamp::new(at.as_datetime() + Duration::seconds(1));
        self.doses(zone, at, to) == [at]
    }
}

/// A medication's descriptive fields (every one PHI, sealed on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedicationFields {
    pub name: String,
    pub dosage: String,
    pub form: String,
    pub route: String,
    pub instructions: Option<String>,
}

/// The most refills a prescription states.
pub const MAX_REFILLS: u32 = 99;

impl MedicationFields {
    pub fn parse(
        name: &str,
        dosage: &str,
        form: &str,
        route: &str,
        instructions: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            name: bounded("name", name, 200)?.to_string(),
            dosage: bounded("dosage", dosage, 100)?.to_string(),
            form: bounded("form", form, 50)?.to_string(),
            route: bounded("route", route, 50)?.to_string(),
            instructions: instructions
                .filter(|s| !s.trim().is_empty())
                .map(|s| bounded("instructions", s, 1000).map(str::to_string))
                .transpose()?,
        })
    }
}

/// A recorded dose: taken or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DoseStatus {
    Taken,
    Skipped,
}

impl DoseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DoseStatus::Taken => "taken",
            DoseStatus::Skipped => "skipped",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "taken" => Some(DoseStatus::Taken),
            "skipped" => Some(DoseStatus::Skipped),
            _ => None,
        }
    }
}

/// Taken doses over the doses due: `None` when none was due.
pub fn adherence_rate(taken: usize, due: usize) -> Option<f64> {
    (due > 0).then(|| ((taken.min(due) as f64 / due as f64) * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn daily(times: &[&str], starts: &str, ends: Option<&str>) -> Course {
        let body = ScheduleBody::TimesOfDay {
            times: times.iter().map(|t| t.to_string()).collect(),
        };
        Course::parse(&body, starts, ends).unwrap()
    }

    fn strings(doses: Vec<Timestamp>) -> Vec<String> {
        doses.into_iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn eight_oclock_stays_eight_oclock_local_across_spring_forward() {
        let ny = Zone::parse("America/New_York").unwrap();
        let course = daily(&["08:00"], "2027-03-13", None);
        let doses = course.doses(ny, ts("2027-03-13T00:00:00Z"), ts("2027-03-16T00:00:00Z"));
        assert_eq!(
            strings(doses),
            [
                "2027-03-13T13:00:00Z", // EST
                "2027-03-14T12:00:00Z", // EDT from the 14th
                "2027-03-15T12:00:00Z"
            ]
        );
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let course = daily(&["08:00"], "2027-10-30", None);
        let doses = course.doses(
            berlin,
            ts("2027-10-30T00:00:00Z"),
            ts("2027-11-01T00:00:00Z"),
        );
        assert_eq!(
            strings(doses),
            ["2027-10-30T06:00:00Z", "2027-10-31T07:00:00Z"] // CEST, then CET
        );
    }

    #[test]
    fn the_gap_and_the_overlap_get_the_zone_rule_and_one_dose_each() {
        let ny = Zone::parse("America/New_York").unwrap();
        // 02:30 does not exist on 2027-03-14: it is 03:30 EDT, the same instant as 03:30.
        let course = daily(&["02:30", "03:30"], "2027-03-14", Some("2027-03-14"));
        let doses = course.doses(ny, ts("2027-03-13T00:00:00Z"), ts("2027-03-16T00:00:00Z"));
        assert_eq!(strings(doses), ["2027-03-14T07:30:00Z"]);
        assert!(course.has_dose(ny, ts("2027-03-14T07:30:00Z")));
        assert!(!course.has_dose(ny, ts("2027-03-14T06:30:00Z")));
        // 01:30 exists twice on 2027-11-07: the earlier (EDT) one, once.
        let course = daily(&["01:30"], "2027-11-07", Some("2027-11-07"));
        let doses = course.doses(ny, ts("2027-11-06T00:00:00Z"), ts("2027-11-09T00:00:00Z"));
        assert_eq!(strings(doses), ["2027-11-07T05:30:00Z"]);
        assert!(!course.has_dose(ny, ts("2027-11-07T06:30:00Z")));
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let course = daily(&["02:30"], "2027-03-28", Some("2027-03-28"));
        assert_eq!(
            strings(course.doses(
                berlin,
                ts("2027-03-27T00:00:00Z"),
                ts("2027-03-29T00:00:00Z")
            )),
            ["2027-03-28T01:30:00Z"]
        );
        let course = daily(&["02:30"], "2027-10-31", Some("2027-10-31"));
        assert_eq!(
            strings(course.doses(
                berlin,
                ts("2027-10-30T00:00:00Z"),
                ts("2027-11-01T00:00:00Z")
            )),
            ["2027-10-31T00:30:00Z"]
        );
    }

    #[test]
    fn every_n_hours_counts_elapsed_hours_across_dst() {
        let ny = Zone::parse("America/New_York").unwrap();
        let body = ScheduleBody::EveryHours {
            hours: 8,
            first_dose: "2027-03-13T06:00:00-05:00".into(),
        };
        let course = Course::parse(&body, "2027-03-13", Some("2027-03-14")).unwrap();
        let doses = course.doses(ny, ts("2027-03-13T00:00:00Z"), ts("2027-03-20T00:00:00Z"));
        assert_eq!(
            strings(doses),
            [
                "2027-03-13T11:00:00Z",
                "2027-03-13T19:00:00Z",
                "2027-03-14T03:00:00Z",
                "2027-03-14T11:00:00Z", // 07:00 EDT: 8 elapsed hours, not 06:00 local
                "2027-03-14T19:00:00Z",
                "2027-03-15T03:00:00Z", // 23:00 EDT on the 14th, the last day
            ]
        );
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let body = ScheduleBody::EveryHours {
            hours: 12,
            first_dose: "2027-10-30T20:00:00+02:00".into(),
        };
        let course = Course::parse(&body, "2027-10-30", None).unwrap();
        assert_eq!(
            course
                .next_at_or_after(berlin, ts("2027-10-30T18:00:01Z"))
                .unwrap()
                .to_string(),
            "2027-10-31T06:00:00Z" // 07:00 CET: 12 elapsed hours over the 25-hour day
        );
    }

    #[test]
    fn the_next_dose_respects_the_course() {
        let utc = Zone::UTC;
        let course = daily(&["08:00", "20:00"], "2027-01-01", Some("2027-01-02"));
        let next = |at: &str| course.next_at_or_after(utc, ts(at)).map(|t| t.to_string());
        assert_eq!(
            next("2026-12-31T23:00:00Z").as_deref(),
            Some("2027-01-01T08:00:00Z")
        );
        assert_eq!(
            next("2027-01-01T08:00:00Z").as_deref(),
            Some("2027-01-01T08:00:00Z")
        );
        assert_eq!(
            next("2027-01-01T08:00:01Z").as_deref(),
            Some("2027-01-01T20:00:00Z")
        );
        assert_eq!(next("2027-01-02T20:00:01Z"), None);
    }

    #[test]
    fn bad_schedules_and_fields_are_refused() {
        let times = |t: &[&str]| ScheduleBody::TimesOfDay {
            times: t.iter().map(|s| s.to_string()).collect(),
        };
        assert!(Course::parse(&times(&[]), "2027-01-01", None).is_err());
        assert!(Course::parse(&times(&["8:00"]), "2027-01-01", None).is_err());
        assert!(Course::parse(&times(&["08:00"]), "2027-01-01", Some("2026-12-31")).is_err());
        let every = |h: u32, first: &str| ScheduleBody::EveryHours {
            hours: h,
            first_dose: first.into(),
        };
        assert!(Course::parse(&every(0, "2027-01-01T08:00:00Z"), "2027-01-01", None).is_err());
        assert!(Course::parse(&every(8, "2027-01-01T08:00:30Z"), "2027-01-01", None).is_err());
        assert!(MedicationFields::parse("", "5 mg", "tablet", "oral", None).is_err());
        assert_eq!(adherence_rate(2, 3), Some(0.667));
        assert_eq!(adherence_rate(0, 0), None);
    }
}
