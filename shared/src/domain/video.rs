//! Video consultations: one session per appointment, that outlives its Twilio rooms
//! (a dropped call gets a new room in the same session); when participants may join;
//! when recording is on; and which status callbacks are news (`docs/video.md`).

use super::appointment::{may_change_status, Party, Refusal, Status};
use super::Timestamp;
use chrono::Duration;
use serde::{Deserialize, Serialize};

/// Tokens are issued from this many minutes before the appointment's start (default of
/// `DOCARE_VIDEO_JOIN_EARLY_MINUTES`)…
pub const JOIN_EARLY_MINUTES: i64 = 15;
/// …which may be set from 0 to this.
pub const MAX_JOIN_EARLY_MINUTES: i64 = 60;

/// A session's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "VideoSessionStatus")]
pub enum SessionStatus {
    /// Created; nobody has started it.
    Scheduled,
    /// Started by the provider (the appointment is `in_progress`).
    InProgress,
    /// Ended by the provider: no more rooms or tokens.
    Ended,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Scheduled => "scheduled",
            SessionStatus::InProgress => "in_progress",
            SessionStatus::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Scheduled, Self::InProgress, Self::Ended]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Which side of the appointment a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "VideoSide")]
pub enum Side {
    Patient,
    Provider,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Patient => "patient",
            Side::Provider => "provider",
        }
    }
}

/// Why a video request is refused (each a 422 or 409 that changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoRefusal {
    #[error("video sessions are for video consultations")]
    NotVideo,
    #[error("the appointment is cancelled, completed or missed")]
    AppointmentOver,
    #[error("the call opens {0} minutes before the appointment's start and closes at its end")]
    OutsideWindow(i64),
    #[error("the appointment is not confirmed yet")]
    NotConfirmed,
    #[error("the session has ended")]
    Ended,
    #[error("recording was not enabled for this session")]
    RecordingNotEnabled,
    #[error("{0}")]
    Appointment(Refusal),
}

/// May a session be created for an appointment of this status and type?
pub fn may_create(status: Status, is_video: bool) -> Result<(), VideoRefusal> {
    if !is_video {
        return Err(VideoRefusal::NotVideo);
    }
    if matches!(
        status,
        Status::Cancelled | Status::Completed | Status::NoShow
    ) {
        return Err(VideoRefusal::AppointmentOver);
    }
    Ok(())
}

/// May a participant join (get a token, or the provider start) at `now`? From
/// `early_minutes` before the start until the end, while neither the session nor the
/// appointment is over.
pub fn may_join(
    session: SessionStatus,
    appointment: Status,
    now: Timestamp,
    start: Timestamp,
    end: Timestamp,
    early_minutes: i64,
) -> Result<(), VideoRefusal> {
    if session == SessionStatus::Ended {
        return Err(VideoRefusal::Ended);
    }
    if matches!(
        appointment,
        Status::Cancelled | Status::Completed | Status::NoShow
    ) {
        return Err(VideoRefusal::AppointmentOver);
    }
    if appointment == Status::Requested {
        return Err(VideoRefusal::NotConfirmed);
    }
    let opens = Timestamp::new(start.as_datetime() - Duration::minutes(early_minutes));
    if now < opens || now >= end {
        return Err(VideoRefusal::OutsideWindow(early_minutes));
    }
    Ok(())
}

/// The statuses the appointment passes through to become `in_progress`, each allowed by
/// the appointments area's own rules ([`may_change_status`], the provider acting):
/// `confirmed → checked_in → in_progress`, `checked_in → in_progress`, nothing when it
/// is in progress already. Anything else is refused as the appointments area refuses it.
pub fn start_path(
    from: Status,
    now: Timestamp,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<Status>, VideoRefusal> {
    let path: &[Status] = match from {
        Status::InProgress => return Ok(Vec::new()),
        Status::Confirmed => &[Status::CheckedIn, Status::InProgress],
        _ => &[Status::InProgress],
    };
    let mut at = from;
    for next in path {
        may_change_status(Party::Provider, at, *next, now, start, end)
            .map_err(VideoRefusal::Appointment)?;
        at = *next;
    }
    Ok(path.to_vec())
}

/// Whether ending the call completes the appointment (it is in progress, and the
/// appointments area lets the provider complete it).
pub fn completes(from: Status, now: Timestamp, start: Timestamp, end: Timestamp) -> bool {
    may_change_status(Party::Provider, from, Status::Completed, now, start, end).is_ok()
}

/// Recording is on only when it was enabled for the session and both participants
/// consented (and neither withdrew).
pub fn recording_allowed(enabled: bool, patient: Option<bool>, provider: Option<bool>) -> bool {
    enabled && patient == Some(true) && provider == Some(true)
}

/// A room's unique name: the session id and the room's number in the session (opaque:
/// nothing about the people in it).
pub fn room_name(session_id: &str, seq: i64) -> String {
    format!("{session_id}-{seq}")
}

/// The session id and room number of a room name made by [`room_name`].
pub fn parse_room_name(name: &str) -> Option<(&str, i64)> {
    let (session, seq) = name.rsplit_once('-')?;
    let seq: i64 = seq.parse().ok()?;
    (seq > 0 && crate::domain::Id::parse(session).is_some()).then_some((session, seq))
}

/// Whether a callback with `sequence` is news for a room whose newest applied callback
/// had `applied` (`None`: none yet). Twilio numbers a room's callbacks from 0; an older
/// or repeated number changes nothing.
pub fn is_news(applied: Option<i64>, sequence: i64) -> bool {
    applied.is_none_or(|applied| sequence > applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn the_window_opens_early_minutes_before_the_start_and_closes_at_the_end() {
        let (start, end) = (t("2026-11-23T10:00:00Z"), t("2026-11-23T10:30:00Z"));
        let join = |now: &str| {
            may_join(
                SessionStatus::Scheduled,
                Status::Confirmed,
                t(now),
                start,
                end,
                JOIN_EARLY_MINUTES,
            )
        };
        assert_eq!(
            join("2026-11-23T09:44:59Z"),
            Err(VideoRefusal::OutsideWindow(15))
        );
        assert_eq!(join("2026-11-23T09:45:00Z"), Ok(()));
        assert_eq!(join("2026-11-23T10:29:59Z"), Ok(()));
        assert_eq!(
            join("2026-11-23T10:30:00Z"),
            Err(VideoRefusal::OutsideWindow(15))
        );
        assert_eq!(
            may_join(
                SessionStatus::Ended,
                Status::InProgress,
                t("2026-11-23T10:00:00Z"),
                start,
                end,
                15
            ),
            Err(VideoRefusal::Ended)
        );
        for over in [Status::Cancelled, Status::Completed, Status::NoShow] {
            assert!(may_join(
                SessionStatus::Scheduled,
                over,
                t("2026-11-23T10:00:00Z"),
                start,
                end,
                15
            )
            .is_err());
        }
    }

    #[test]
    fn starting_follows_the_appointments_own_transitions() {
        let (start, end) = (t("2026-11-23T10:00:00Z"), t("2026-11-23T10:30:00Z"));
        let now = t("2026-11-23T09:50:00Z");
        assert_eq!(
            start_path(Status::Confirmed, now, start, end),
            Ok(vec![Status::CheckedIn, Status::InProgress])
        );
        assert_eq!(
            start_path(Status::CheckedIn, now, start, end),
            Ok(vec![Status::InProgress])
        );
        assert_eq!(start_path(Status::InProgress, now, start, end), Ok(vec![]));
        assert_eq!(
            start_path(Status::Requested, now, start, end),
            Err(VideoRefusal::Appointment(Refusal::Transition))
        );
        // Check-in opens 60 minutes before the start.
        assert!(start_path(Status::Confirmed, t("2026-11-23T08:30:00Z"), start, end).is_err());
        assert!(completes(Status::InProgress, now, start, end));
        assert!(!completes(Status::Confirmed, now, start, end));
    }

    #[test]
    fn recording_needs_the_session_setting_and_both_consents() {
        assert!(recording_allowed(true, Some(true), Some(true)));
        assert!(!recording_allowed(false, Some(true), Some(true)));
        assert!(!recording_allowed(true, Some(true), None));
        assert!(!recording_allowed(true, Some(false), Some(true)));
    }

    #[test]
    fn room_names_round_trip_and_refuse_anything_else() {
        let id = "01JD5Z6Q8W3M0V7K2R9T4Y6B1C";
        assert_eq!(parse_room_name(&room_name(id, 3)), Some((id, 3)));
        for bad in [
            "",
            "x-1",
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1C",
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1C-0",
        ] {
            assert_eq!(parse_room_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_newer_callbacks_are_news() {
        assert!(is_news(None, 0));
        assert!(is_news(Some(2), 3));
        assert!(!is_news(Some(3), 3));
        assert!(!is_news(Some(3), 1));
    }
}
