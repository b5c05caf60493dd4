//! Secure clinical notes: their types, the rules of their text and of the reason every
//! access states, what a version is, and the sealed form of a version's text (the text
//! with its SHA-256, checked again on every read). No I/O: the store seals and opens,
//! this module says what is sealed and whether what was opened is whole.

use crate::audit::Reason;
use crate::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest note text, in characters (a version is one item: DynamoDB's 400 KB bound
/// leaves room for 4-byte characters, the digest and the envelope).
pub const MAX_CONTENT_CHARS: usize = 20_000;
/// Bounds of an access reason, in characters (the same as an administrator's
/// break-glass reason: enough to say why, never a document).
pub const MIN_REASON_CHARS: usize = 10;
pub const MAX_REASON_CHARS: usize = crate::audit::MAX_REASON_CHARS;

/// What kind of clinical note it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoteType {
    Progress,
    Intake,
    Assessment,
    TreatmentPlan,
    Consultation,
    Discharge,
}

impl NoteType {
    pub const ALL: [NoteType; 6] = [
        NoteType::Progress,
        NoteType::Intake,
        NoteType::Assessment,
        NoteType::TreatmentPlan,
        NoteType::Consultation,
        NoteType::Discharge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoteType::Progress => "progress",
            NoteType::Intake => "intake",
            NoteType::Assessment => "assessment",
            NoteType::TreatmentPlan => "treatment_plan",
            NoteType::Consultation => "consultation",
            NoteType::Discharge => "discharge",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

/// Whether a note can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoteStatus {
    Active,
    Archived,
}

impl NoteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteStatus::Active => "active",
            NoteStatus::Archived => "archived",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(NoteStatus::Active),
            "archived" => Some(NoteStatus::Archived),
            _ => None,
        }
    }
}

/// How a version came to be: the first text, a revision by the note's author, or an
/// addendum by another provider in the patient's care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    Original,
    Revision,
    Addendum,
}

impl VersionKind {
    /// The kind of version `version` written by `author` of a note first written by
    /// `note_author`.
    pub fn of(version: i64, author: &str, note_author: &str) -> Self {
        if version <= 1 {
            VersionKind::Original
        } else if author == note_author {
            VersionKind::Revision
        } else {
            VersionKind::Addendum
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VersionKind::Original => "original",
            VersionKind::Revision => "revision",
            VersionKind::Addendum => "addendum",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "original" => Some(VersionKind::Original),
            "revision" => Some(VersionKind::Revision),
            "addendum" => Some(VersionKind::Addendum),
            _ => None,
        }
    }
}

/// The note text: 1 to [`MAX_CONTENT_CHARS`] characters, not blank, no control
/// characters but line breaks and tabs. Kept as written (not trimmed inside). A refusal
/// names the field, never the text.
pub fn content(value: &str) -> Result<&str, ApiError> {
    let len = value.chars().count();
    if value.trim().is_empty() || len > MAX_CONTENT_CHARS {
        return Err(ApiError::validation(format!(
            "content: must be 1 to {MAX_CONTENT_CHARS} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::validation(
            "content: must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(value)
}

/// The reason an access states (`access_reason`): required, [`MIN_REASON_CHARS`] to
/// [`MAX_REASON_CHARS`] characters, no control characters but line breaks. It goes
/// only into the audit event, where the writer seals it.
pub fn access_reason(value: Option<&str>) -> Result<Reason, ApiError> {
    let text = value.map(str::trim).unwrap_or_default();
    let len = text.chars().count();
    if !(MIN_REASON_CHARS..=MAX_REASON_CHARS).contains(&len) {
        return Err(ApiError::validation(format!(
            "access_reason: every access to a clinical note states why, in {MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::validation(
            "access_reason: must not contain control characters",
        ));
    }
    Reason::new(text).map_err(|_| ApiError::validation("access_reason: not a valid reason"))
}

/// The version a client expects to replace: 1 or more.
pub fn expected_version(value: i64) -> Result<i64, ApiError> {
    if value >= 1 {
        Ok(value)
    } else {
        Err(ApiError::validation(
            "expected_version: the current version number (1 or more)",
        ))
    }
}

/// The hex SHA-256 of a text.
pub fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What is sealed for one version: the text and its digest, together, so the digest is
/// never in the clear (it would confirm a guessed text) and travels with what it checks.
#[derive(Serialize, Deserialize)]
struct SealedContent {
    v: u8,
    sha256: String,
    content: String,
}

/// The plaintext to seal for a version's text.
pub fn sealed_payload(text: &str) -> String {
    let payload = SealedContent {
        v: 1,
        sha256: digest(text),
        content: text.to_string(),
    };
    // A struct of strings always serializes.
    serde_json::to_string(&payload).unwrap_or_default()
}

/// The opened payload did not hold a text whose digest matches the one sealed with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the note text failed its integrity check")]
pub struct IntegrityError;

/// The text of an opened payload, after checking its digest.
pub fn open_payload(opened: &str) -> Result<String, IntegrityError> {
    let payload: SealedContent = serde_json::from_str(opened).map_err(|_| IntegrityError)?;
    if payload.v != 1 || payload.sha256 != digest(&payload.content) {
        return Err(IntegrityError);
    }
    Ok(payload.content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_types_round_trip_and_unknown_ones_are_refused() {
        for t in NoteType::ALL {
            assert_eq!(NoteType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert!(NoteType::parse("gossip").is_none());
        assert!(serde_json::from_str::<NoteType>("\"gossip\"").is_err());
    }

    #[test]
    fn content_is_bounded_and_refusals_never_echo_it() {
        assert_eq!(
            content("Line one\n\tline two").unwrap(),
            "Line one\n\tline two"
        );
        for bad in ["", "   \n ", "secret\u{7}text"] {
            let err = content(bad).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(!err.to_string().contains("secret"));
        }
        assert!(content(&"x".repeat(MAX_CONTENT_CHARS)).is_ok());
        assert!(content(&"x".repeat(MAX_CONTENT_CHARS + 1)).is_err());
    }

    #[test]
    fn a_reason_is_required_and_bounded() {
        assert_eq!(
            access_reason(Some("  Reviewing for follow-up  "))
                .unwrap()
                .as_str(),
            "Reviewing for follow-up"
        );
        for bad in [None, Some(""), Some("short"), Some("reviewing\u{1b}[31m")] {
            let err = access_reason(bad).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains("access_reason"));
        }
        assert!(access_reason(Some(&"y".repeat(MAX_REASON_CHARS))).is_ok());
        assert!(access_reason(Some(&"y".repeat(MAX_REASON_CHARS + 1))).is_err());
    }

    #[test]
    fn the_digest_is_sealed_with_the_text_and_checked_on_open() {
        let payload = sealed_payload("Patient reports less anxiety.");
        assert!(payload.contains(&digest("Patient reports less anxiety.")));
        assert_eq!(
            open_payload(&payload).unwrap(),
            "Patient reports less anxiety."
        );
        // The text changed, the digest did not: refused.
        let altered = payload.replace("less", "more");
        assert_eq!(open_payload(&altered), Err(IntegrityError));
        assert_eq!(open_payload("not json"), Err(IntegrityError));
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_version_is_an_addendum_when_another_provider_writes_it() {
        assert_eq!(VersionKind::of(1, "a", "a"), VersionKind::Original);
        assert_eq!(VersionKind::of(2, "a", "a"), VersionKind::Revision);
        assert_eq!(VersionKind::of(3, "b", "a"), VersionKind::Addendum);
        assert!(expected_version(0).is_err());
        assert_eq!(expected_version(4).unwrap(), 4);
    }
}
