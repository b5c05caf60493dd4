//! Appointments: a provider's weekly availability (wall-clock windows in the provider's
//! IANA zone, with dated exceptions), the slots it offers, the fixed claim units an
//! appointment holds, and the status machine with who may move it when.
//!
//! **Slots** are computed, never stored: for each local date, the weekly windows of its
//! weekday plus the `available: true` exceptions of that date, minus its `available:
//! false` exceptions (a whole day when they name no times). Each window's bounds become
//! instants by [`Zone::instant`] (the one DST rule), and slots of `slot_minutes` follow
//! each other in *elapsed* time, `buffer_minutes` apart, as long as they end inside the
//! window: a 00:00–08:00 window has 7 hours on a spring-forward day and 9 on a fall-back
//! day, and no slot is ever an hour off.
//!
//! **Claims**: an appointment holds the [`UNIT_MINUTES`] units of the provider's time it
//! covers (each a conditional put in the booking transaction), so two appointments of one
//! provider never overlap whatever their lengths. Every UTC offset in use is a multiple
//! of 15 minutes and window times must be too, so slot starts fall on the unit grid.

use super::zone::{parse_date, parse_time_of_day, Zone};
use super::Timestamp;
use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Timelike, Weekday};
use serde::{Deserialize, Serialize};

/// The claim unit: an appointment holds every unit it touches.
pub const UNIT_MINUTES: i64 = 15;
/// The longest appointment (8 units), so a reschedule (release 8, claim 8) and its audit
/// event fit one transaction with room to spare.
pub const MAX_APPOINTMENT_MINUTES: i64 = 120;
pub const MAX_UNITS: usize = (MAX_APPOINTMENT_MINUTES / UNIT_MINUTES) as usize;
pub const MAX_BUFFER_MINUTES: i64 = 120;
/// `GET …/slots` answers at most this many days.
pub const MAX_SLOT_RANGE_DAYS: i64 = 31;
/// Patients cancel or reschedule at least this long before the start.
pub const PATIENT_CUTOFF_MINUTES: i64 = 120;
/// Check-in opens this long before the start.
pub const CHECK_IN_OPENS_MINUTES: i64 = 60;
pub const MAX_WEEKLY_WINDOWS: usize = 50;
pub const MAX_EXCEPTIONS: usize = 200;

/// One weekly window as clients send it: `{"day": "monday", "start": "09:00", "end": "17:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyWindowSpec {
    /// `monday` … `sunday`.
    pub day: String,
    /// `HH:MM`, local time in the provider's zone, on a quarter hour.
    pub start: String,
    /// `HH:MM`, after `start` on the same day.
    pub end: String,
}

/// One dated exception: a day off (`available: false` without times), hours off, or
/// extra hours (`available: true` with times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionSpec {
    /// `YYYY-MM-DD`, the provider's local date.
    pub date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub available: bool,
}

/// Availability as clients send it and as it is stored (re-parsed on every read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilitySpec {
    pub time_zone: Zone,
    /// Length of one appointment: a multiple of 15, at most 120.
    pub slot_minutes: i64,
    /// Gap between consecutive slots: a multiple of 15, at most 120 (default 0).
    #[serde(default)]
    pub buffer_minutes: i64,
    pub weekly: Vec<WeeklyWindowSpec>,
    #[serde(default)]
    pub exceptions: Vec<ExceptionSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: NaiveTime,
    end: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Exception {
    date: NaiveDate,
    window: Option<Window>,
    available: bool,
}

/// Parsed availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    pub zone: Zone,
    pub slot_minutes: i64,
    pub buffer_minutes: i64,
    weekly: Vec<(Weekday, Window)>,
    exceptions: Vec<Exception>,
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.trim() {
        "monday" => Weekday::Mon,
        "tuesday" => Weekday::Tue,
        "wednesday" => Weekday::Wed,
        "thursday" => Weekday::Thu,
        "friday" => Weekday::Fri,
        "saturday" => Weekday::Sat,
        "sunday" => Weekday::Sun,
        _ => return None,
    })
}

fn quarter_hour(field: &str, text: &str) -> Result<NaiveTime, String> {
    let time = parse_time_of_day(text).ok_or_else(|| format!("{field}: must be HH:MM"))?;
    if i64::from(time.minute()) % UNIT_MINUTES != 0 {
        return Err(format!("{field}: must be on a quarter hour"));
    }
    Ok(time)
}

fn window(field: &str, start: &str, end: &str) -> Result<Window, String> {
    let start = quarter_hour(&format!("{field}.start"), start)?;
    let end = quarter_hour(&format!("{field}.end"), end)?;
    if end <= start {
        return Err(format!("{field}: end must be after start"));
    }
    Ok(Window { start, end })
}

fn minutes(field: &str, value: i64, min: i64, max: i64) -> Result<i64, String> {
    if value < min || value > max || value % UNIT_MINUTES != 0 {
        return Err(format!(
            "{field}: must be a multiple of {UNIT_MINUTES} from {min} to {max}"
        ));
    }
    Ok(value)
}

impl AvailabilitySpec {
    /// Validates every field; the message names the field.
    pub fn parse(&self) -> Result<Availability, String> {
        let slot_minutes = minutes(
            "slot_minutes",
            self.slot_minutes,
            UNIT_MINUTES,
            MAX_APPOINTMENT_MINUTES,
        )?;
        let buffer_minutes = minutes("buffer_minutes", self.buffer_minutes, 0, MAX_BUFFER_MINUTES)?;
        if self.weekly.len() > MAX_WEEKLY_WINDOWS {
            return Err(format!("weekly: at most {MAX_WEEKLY_WINDOWS} windows"));
        }
        if self.exceptions.len() > MAX_EXCEPTIONS {
            return Err(format!("exceptions: at most {MAX_EXCEPTIONS}"));
        }
        let mut weekly = Vec::with_capacity(self.weekly.len());
        for (i, w) in self.weekly.iter().enumerate() {
            let day = weekday(&w.day)
                .ok_or_else(|| format!("weekly[{i}].day: must be monday … sunday"))?;
            weekly.push((day, window(&format!("weekly[{i}]"), &w.start, &w.end)?));
        }
        let mut exceptions = Vec::with_capacity(self.exceptions.len());
        for (i, e) in self.exceptions.iter().enumerate() {
            let field = format!("exceptions[{i}]");
            let date =
                parse_date(&e.date).ok_or_else(|| format!("{field}.date: must be YYYY-MM-DD"))?;
            let window = match (&e.start, &e.end) {
                (Some(s), Some(t)) => Some(window(&field, s, t)?),
                (None, None) if !e.available => None,
                (None, None) => return Err(format!("{field}: extra hours need start and end")),
                _ => return Err(format!("{field}: give both start and end, or neither")),
            };
            exceptions.push(Exception {
                date,
                window,
                available: e.available,
            });
        }
        Ok(Availability {
            zone: self.time_zone,
            slot_minutes,
            buffer_minutes,
            weekly,
            exceptions,
        })
    }
}

/// Sorted, merged windows minus the removed ones (all local times of one day).
fn open_windows(mut add: Vec<Window>, remove: &[Window]) -> Vec<Window> {
    add.sort_by_key(|w| w.start);
    let mut merged: Vec<Window> = Vec::new();
    for w in add {
        match merged.last_mut() {
            Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
            _ => merged.push(w),
        }
    }
    for cut in remove {
        let mut next = Vec::with_capacity(merged.len() + 1);
        for w in merged {
            if cut.end <= w.start || cut.start >= w.end {
                next.push(w);
                continue;
            }
            if w.start < cut.start {
                next.push(Window {
                    start: w.start,
                    end: cut.start,
                });
            }
            if cut.end < w.end {
                next.push(Window {
                    start: cut.end,
                    end: w.end,
                });
            }
        }
        merged = next;
    }
    merged
}

/// One offered slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Availability {
    pub fn slot_length(&self) -> Duration {
        Duration::minutes(self.slot_minutes)
    }

    /// The slots of one local date, in order.
    fn slots_on(&self, date: NaiveDate) -> Vec<Slot> {
        let exceptions: Vec<&Exception> =
            self.exceptions.iter().filter(|e| e.date == date).collect();
        if exceptions
            .iter()
            .any(|e| !e.available && e.window.is_none())
        {
            return Vec::new();
        }
        let add: Vec<Window> = self
            .weekly
            .iter()
            .filter(|(day, _)| *day == date.weekday())
            .map(|(_, w)| *w)
            .chain(
                exceptions
                    .iter()
                    .filter(|e| e.available)
                    .filter_map(|e| e.window),
            )
            .collect();
        let remove: Vec<Window> = exceptions
            .iter()
            .filter(|e| !e.available)
            .filter_map(|e| e.window)
            .collect();
        let step = Duration::minutes(self.slot_minutes + self.buffer_minutes);
        let mut out = Vec::new();
        for w in open_windows(add, &remove) {
            let open = self.zone.instant(date, w.start).as_datetime();
            let close = self.zone.instant(date, w.end).as_datetime();
            let mut at = open;
            while at + self.slot_length() <= close {
                out.push(Slot {
                    start: Timestamp::new(at),
                    end: Timestamp::new(at + self.slot_length()),
                });
                at += step;
            }
        }
        out
    }

    /// Every slot starting in `[from, to)`, in order (before bookings are taken out).
    pub fn slots(&self, from: Timestamp, to: Timestamp) -> Vec<Slot> {
        let first = self.zone.date(from) - Duration::days(1);
        let last = self.zone.date(to) + Duration::days(1);
        let mut out = Vec::new();
        let mut date = first;
        while date <= last {
            out.extend(
                self.slots_on(date)
                    .into_iter()
                    .filter(|s| s.start >= from && s.start < to),
            );
            date += Duration::days(1);
        }
        out.sort();
        out.dedup();
        out
    }

    /// The slot starting exactly at `start`, if this availability offers one.
    pub fn offered(&self, start: Timestamp) -> Option<Slot> {
        let to = Timestamp::new(start.as_datetime() + Duration::seconds(1));
        self.slots(start, to).into_iter().find(|s| s.start == start)
    }
}

/// The claim units `[start, end)` covers (unit starts on the 15-minute UTC grid).
pub fn units(start: Timestamp, end: Timestamp) -> Vec<Timestamp> {
    let unit = UNIT_MINUTES * 60;
    let first = start.epoch_secs().div_euclid(unit) * unit;
    let mut out = Vec::new();
    let mut at = first;
    while at < end.epoch_secs() {
        if let Some(t) = chrono::DateTime::from_timestamp(at, 0) {
            out.push(Timestamp::new(t));
        }
        at += unit;
    }
    out
}

/// `video` or `in_person`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationType {
    Video,
    InPerson,
}

impl ConsultationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsultationType::Video => "video",
            ConsultationType::InPerson => "in_person",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "video" => Some(Self::Video),
            "in_person" => Some(Self::InPerson),
            _ => None,
        }
    }
}

/// An appointment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Requested,
    Confirmed,
    CheckedIn,
    InProgress,
    Completed,
    Cancelled,
    NoShow,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Requested,
        Status::Confirmed,
        Status::CheckedIn,
        Status::InProgress,
        Status::Completed,
        Status::Cancelled,
        Status::NoShow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Confirmed => "confirmed",
            Status::CheckedIn => "checked_in",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::NoShow => "no_show",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The transitions the state machine allows (any other is a 422).
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Requested, Confirmed)
                | (Requested, Cancelled)
                | (Confirmed, CheckedIn)
                | (Confirmed, Cancelled)
                | (Confirmed, NoShow)
                | (CheckedIn, InProgress)
                | (InProgress, Completed)
        )
    }

    /// Before the visit: the time may still move and the reason change.
    pub fn is_upcoming(self) -> bool {
        matches!(self, Status::Requested | Status::Confirmed)
    }

    /// Whether the patient is still reminded of it: not cancelled, completed or a no-show.
    pub fn is_reminded(self) -> bool {
        !matches!(self, Status::Cancelled | Status::Completed | Status::NoShow)
    }
}

/// Which side of the appointment is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Patient,
    Provider,
}

/// Why a change is refused: [`Refusal::NotYours`] is a 403, the others 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this change is not allowed from the current status")]
    Transition,
    #[error("only the {0} may make this change")]
    NotYours(&'static str),
    #[error("{0}")]
    Timing(&'static str),
}

fn minutes_before(start: Timestamp, minutes: i64) -> Timestamp {
    Timestamp::new(start.as_datetime() - Duration::minutes(minutes))
}

/// May `party` move an appointment `[start, end)` from `from` to `to` at `now`?
///
/// | to | who | when |
/// |---|---|---|
/// | confirmed | provider | any time before the start |
/// | checked_in | either | from 60 minutes before the start until the end |
/// | in_progress, completed | provider | any time |
/// | no_show | provider | after the start |
/// | cancelled | patient | at least 2 hours before the start |
/// | cancelled | provider | before the end |
pub fn may_change_status(
    party: Party,
    from: Status,
    to: Status,
    now: Timestamp,
    start: Timestamp,
    end: Timestamp,
) -> Result<(), Refusal> {
    if !from.can_become(to) {
        return Err(Refusal::Transition);
    }
    let provider_only = || match party {
        Party::Provider => Ok(()),
        Party::Patient => Err(Refusal::NotYours("provider")),
    };
    match to {
        Status::Confirmed => {
            provider_only()?;
            if now >= start {
                return Err(Refusal::Timing(
                    "an appointment that has started cannot be confirmed",
                ));
            }
        }
        Status::CheckedIn => {
            if now < minutes_before(start, CHECK_IN_OPENS_MINUTES) || now >= end {
                return Err(Refusal::Timing(
                    "check-in opens 60 minutes before the start and closes at the end",
                ));
            }
        }
        Status::InProgress | Status::Completed => provider_only()?,
        Status::NoShow => {
            provider_only()?;
            if now < start {
                return Err(Refusal::Timing("no_show only after the start"));
            }
        }
        Status::Cancelled => match party {
            Party::Patient if now > minutes_before(start, PATIENT_CUTOFF_MINUTES) => {
                return Err(Refusal::Timing(
                    "patients cancel at least 2 hours before the start",
                ))
            }
            Party::Provider if now >= end => {
                return Err(Refusal::Timing(
                    "an appointment that has ended cannot be cancelled",
                ))
            }
            _ => {}
        },
        Status::Requested => return Err(Refusal::Transition),
    }
    Ok(())
}

/// May `party` move an upcoming appointment (starting at `start`) at `now`? A patient's
/// reschedule sends it back to `requested`; the provider's keeps its status.
pub fn may_reschedule(
    party: Party,
    status: Status,
    now: Timestamp,
    start: Timestamp,
) -> Result<(), Refusal> {
    if !status.is_upcoming() {
        return Err(Refusal::Transition);
    }
    match party {
        Party::Patient if now > minutes_before(start, PATIENT_CUTOFF_MINUTES) => Err(
            Refusal::Timing("patients reschedule at least 2 hours before the start"),
        ),
        Party::Provider if now >= start => Err(Refusal::Timing(
            "an appointment that has started cannot be moved",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(zone: &str, weekly: &[(&str, &str, &str)]) -> AvailabilitySpec {
        AvailabilitySpec {
            time_zone: Zone::parse(zone).unwrap(),
            slot_minutes: 60,
            buffer_minutes: 0,
            weekly: weekly
                .iter()
                .map(|(d, s, e)| WeeklyWindowSpec {
                    day: d.to_string(),
                    start: s.to_string(),
                    end: e.to_string(),
                })
                .collect(),
            exceptions: Vec::new(),
        }
    }

    fn t(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn starts(slots: &[Slot]) -> Vec<String> {
        slots.iter().map(|s| s.start.to_string()).collect()
    }

    #[test]
    fn weekly_hours_keep_their_local_time_across_dst_in_new_york() {
        // Sunday 2027-03-14 is the spring-forward day; 09:00 is 14:00Z before, 13:00Z after.
        let a = spec(
            "America/New_York",
            &[("saturday", "09:00", "10:00"), ("monday", "09:00", "10:00")],
        )
        .parse()
        .unwrap();
        let slots = a.slots(t("2027-03-13T00:00:00Z"), t("2027-03-16T00:00:00Z"));
        assert_eq!(
            starts(&slots),
            ["2027-03-13T14:00:00Z", "2027-03-15T13:00:00Z"]
        );
    }

    #[test]
    fn a_window_across_the_jump_has_its_elapsed_length_in_berlin() {
        // 2027-03-28 (Sunday) Berlin springs forward at 02:00: 00:00-04:00 is 3 hours.
        let a = spec("Europe/Berlin", &[("sunday", "00:00", "04:00")])
            .parse()
            .unwrap();
        let spring = a.slots(t("2027-03-27T12:00:00Z"), t("2027-03-28T12:00:00Z"));
        assert_eq!(
            starts(&spring),
            [
                "2027-03-27T23:00:00Z",
                "2027-03-28T00:00:00Z",
                "2027-03-28T01:00:00Z"
            ]
        );
        // 2027-10-31 falls back at 03:00: 00:00-04:00 is 5 hours.
        let fall = a.slots(t("2027-10-30T12:00:00Z"), t("2027-10-31T12:00:00Z"));
        assert_eq!(fall.len(), 5, "{:?}", starts(&fall));
        assert_eq!(fall[0].start, t("2027-10-30T22:00:00Z"));
    }

    #[test]
    fn exceptions_remove_days_and_hours_and_add_hours() {
        let mut s = spec("UTC", &[("monday", "09:00", "12:00")]);
        s.exceptions = vec![
            ExceptionSpec {
                date: "2027-01-04".into(),
                start: None,
                end: None,
                available: false,
            },
            ExceptionSpec {
                date: "2027-01-11".into(),
                start: Some("10:00".into()),
                end: Some("11:00".into()),
                available: false,
            },
            ExceptionSpec {
                date: "2027-01-16".into(),
                start: Some("08:00".into()),
                end: Some("09:00".into()),
                available: true,
            },
        ];
        let a = s.parse().unwrap();
        let slots = a.slots(t("2027-01-04T00:00:00Z"), t("2027-01-17T00:00:00Z"));
        assert_eq!(
            starts(&slots),
            [
                "2027-01-11T09:00:00Z",
                "2027-01-11T11:00:00Z",
                "2027-01-16T08:00:00Z"
            ]
        );
    }

    #[test]
    fn buffers_space_slots_and_offered_finds_only_real_starts() {
        let mut s = spec("UTC", &[("monday", "09:00", "12:00")]);
        s.slot_minutes = 45;
        s.buffer_minutes = 15;
        let a = s.parse().unwrap();
        let slots = a.slots(t("2027-01-04T00:00:00Z"), t("2027-01-05T00:00:00Z"));
        assert_eq!(
            starts(&slots),
            [
                "2027-01-04T09:00:00Z",
                "2027-01-04T10:00:00Z",
                "2027-01-04T11:00:00Z"
            ]
        );
        assert!(a.offered(t("2027-01-04T10:00:00Z")).is_some());
        assert!(a.offered(t("2027-01-04T09:45:00Z")).is_none());
        assert!(a.offered(t("2027-01-05T10:00:00Z")).is_none());
    }

    #[test]
    fn bad_availability_names_the_field() {
        let mut s = spec("UTC", &[("funday", "09:00", "10:00")]);
        assert!(s.parse().unwrap_err().contains("weekly[0].day"));
        s = spec("UTC", &[("monday", "09:10", "10:00")]);
        assert!(s.parse().unwrap_err().contains("quarter hour"));
        s = spec("UTC", &[("monday", "10:00", "09:00")]);
        assert!(s.parse().unwrap_err().contains("after start"));
        s = spec("UTC", &[]);
        s.slot_minutes = 135;
        assert!(s.parse().unwrap_err().contains("slot_minutes"));
        s.slot_minutes = 20;
        assert!(s.parse().unwrap_err().contains("slot_minutes"));
    }

    #[test]
    fn units_cover_the_appointment_on_the_grid() {
        let u = units(t("2027-01-04T09:00:00Z"), t("2027-01-04T10:00:00Z"));
        assert_eq!(u.len(), 4);
        assert_eq!(u[3], t("2027-01-04T09:45:00Z"));
        // Overlapping appointments of different lengths share a unit.
        let a = units(t("2027-01-04T09:00:00Z"), t("2027-01-04T09:30:00Z"));
        let b = units(t("2027-01-04T09:15:00Z"), t("2027-01-04T10:15:00Z"));
        assert!(a.iter().any(|x| b.contains(x)));
        assert!(units(t("2027-01-04T09:00:00Z"), t("2027-01-04T11:00:00Z")).len() == MAX_UNITS);
    }

    #[test]
    fn the_state_machine_and_who_may_move_it() {
        let start = t("2027-01-04T10:00:00Z");
        let end = t("2027-01-04T10:30:00Z");
        let early = t("2027-01-04T07:00:00Z");
        let late = t("2027-01-04T09:00:00Z");
        use Party::*;
        use Status::*;
        assert_eq!(
            may_change_status(Provider, Requested, Confirmed, early, start, end),
            Ok(())
        );
        assert_eq!(
            may_change_status(Patient, Requested, Confirmed, early, start, end),
            Err(Refusal::NotYours("provider"))
        );
        assert_eq!(
            may_change_status(Provider, Completed, Confirmed, early, start, end),
            Err(Refusal::Transition)
        );
        assert_eq!(
            may_change_status(Provider, Requested, Completed, early, start, end),
            Err(Refusal::Transition)
        );
        assert_eq!(
            may_change_status(Patient, Confirmed, Cancelled, early, start, end),
            Ok(())
        );
        assert!(matches!(
            may_change_status(Patient, Confirmed, Cancelled, late, start, end),
            Err(Refusal::Timing(_))
        ));
        assert_eq!(
            may_change_status(Provider, Confirmed, Cancelled, late, start, end),
            Ok(())
        );
        assert_eq!(
            may_change_status(Patient, Confirmed, CheckedIn, late, start, end),
            Ok(())
        );
        assert!(may_change_status(Patient, Confirmed, CheckedIn, early, start, end).is_err());
        assert!(may_change_status(Provider, Confirmed, NoShow, late, start, end).is_err());
        assert_eq!(
            may_change_status(
                Provider,
                Confirmed,
                NoShow,
                t("2027-01-04T10:05:00Z"),
                start,
                end
            ),
            Ok(())
        );
        assert_eq!(may_reschedule(Patient, Confirmed, early, start), Ok(()));
        assert!(may_reschedule(Patient, Confirmed, late, start).is_err());
        assert_eq!(may_reschedule(Provider, Confirmed, late, start), Ok(()));
        assert_eq!(
            may_reschedule(Provider, Completed, early, start),
            Err(Refusal::Transition)
        );
    }
}
