//! Emergency rules: a contact can be reached, a user has a bounded number of contacts,
//! and repeated SOS alerts collapse into the open one.

use super::text::{bounded, email, phone};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// A sane maximum of contacts per user (kept by a transaction condition in the store).
pub const MAX_CONTACTS: i64 = 10;
/// Repeats within this many seconds of an alert join it instead of alerting again.
pub const COLLAPSE_SECS: i64 = 5 * 60;
/// The longest SOS message.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// SMS to a user's emergency contacts per UTC day (SOS alerts and the notices telling a
/// contact they were added): reserved with a conditional counter before anything is
/// queued, so an account cannot be turned into an SMS relay. Ten contacts told they were
/// added and four full SOS alerts fit in a day.
pub const CONTACT_SMS_PER_DAY: i64 = 50;
/// E-mails to a user's emergency contacts per UTC day, reserved like the SMS.
pub const CONTACT_EMAILS_PER_DAY: i64 = 50;

/// What a new emergency contact is told (subject, body), on each channel the contact was
/// given: who added them and what it means, nothing else (not the relationship, not the
/// other contacts, no health information).
pub fn added_notice(holder_name: &str) -> (&'static str, String) {
    (
        "You were added as an emergency contact on DoCare",
        format!(
            "DoCare: {holder_name} added you as an emergency contact. If they raise an SOS \
             alert, DoCare will send it to you here. If you do not know them, ignore this \
             message."
        ),
    )
}

/// Seconds from `now` (epoch seconds) to the next UTC midnight, when daily caps reset.
pub fn secs_to_next_day(now: i64) -> i64 {
    86_400 - now.rem_euclid(86_400)
}

/// A contact as validated: reachable by phone (E.164) or e-mail, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFields {
    pub name: String,
    pub relationship: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

impl ContactFields {
    /// Validates a contact; blank phone or e-mail count as absent.
    pub fn parse(
        name: &str,
        relationship: &str,
        phone_number: Option<&str>,
        address: Option<&str>,
    ) -> Result<Self, ApiError> {
        let phone_number = phone_number
            .filter(|p| !p.trim().is_empty())
            .map(|p| phone("phone", p).map(str::to_string))
            .transpose()?;
        let address = address
            .filter(|e| !e.trim().is_empty())
            .map(|e| email(e).map(str::to_string))
            .transpose()?;
        if phone_number.is_none() && address.is_none() {
            return Err(ApiError::validation(
                "a contact needs a `phone` or an `email`",
            ));
        }
        Ok(Self {
            name: bounded("name", name, 200)?.to_string(),
            relationship: bounded("relationship", relationship, 50)?.to_string(),
            phone: phone_number,
            email: address,
        })
    }
}

/// Where the person raising an SOS is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub accuracy_m: Option<f64>,
}

/// An SOS's location and message, validated; a blank message counts as none.
pub fn sos_input<'a>(
    location: Option<&Location>,
    message: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    if let Some(l) = location {
        let ok = (-90.0..=90.0).contains(&l.latitude)
            && (-180.0..=180.0).contains(&l.longitude)
            && l.accuracy_m.is_none_or(|a| (0.0..=100_000.0).contains(&a));
        if !ok {
            return Err(ApiError::validation(
                "location: latitude -90..90, longitude -180..180, accuracy_m 0..100000",
            ));
        }
    }
    if let Some(m) = message {
        if m.chars().count() > MAX_MESSAGE_CHARS || m.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ApiError::validation(format!(
                "message: at most {MAX_MESSAGE_CHARS} printable characters"
            )));
        }
    }
    Ok(message.map(str::trim).filter(|m| !m.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_must_be_reachable() {
        let c = ContactFields::parse(" Sam ", "sibling", Some("+14155550123"), Some(" ")).unwrap();
        assert_eq!((c.name.as_str(), c.email), ("Sam", None));
        assert!(ContactFields::parse("Sam", "sibling", None, Some("")).is_err());
        assert!(ContactFields::parse("Sam", "sibling", Some("555"), None).is_err());
        assert!(ContactFields::parse("", "sibling", None, Some("s@example.com")).is_err());
    }

    #[test]
    fn the_added_notice_names_the_holder_only_and_caps_reset_at_midnight() {
        let (subject, body) = added_notice("Homer Simpson");
        assert!(body.contains("Homer Simpson added you as an emergency contact"));
        assert!(!subject.contains("Homer"));
        assert_eq!(secs_to_next_day(86_400 * 3), 86_400);
        assert_eq!(secs_to_next_day(86_400 * 3 + 86_399), 1);
    }

    #[test]
    fn sos_locations_are_on_earth_and_messages_bounded() {
        let at = |latitude, longitude| Location {
            latitude,
            longitude,
            accuracy_m: None,
        };
        assert!(sos_input(Some(&at(91.0, 0.0)), None).is_err());
        assert!(sos_input(Some(&at(0.0, -181.0)), None).is_err());
        assert_eq!(sos_input(Some(&at(45.0, 7.0)), Some("  ")).unwrap(), None);
        assert!(sos_input(None, Some(&"x".repeat(501))).is_err());
        assert_eq!(sos_input(None, Some(" help ")).unwrap(), Some("help"));
    }
}
