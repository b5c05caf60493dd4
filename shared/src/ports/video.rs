//! The video port: Twilio Programmable Video's rooms, as the video function uses them.
//! On AWS the Twilio REST adapter (`adapters::aws::TwilioApi`); locally and in tests an
//! offline in-process fake (`adapters::local::FakeTwilio`) that also signs and delivers
//! status callbacks. Access tokens are not made here: they are signed locally
//! (`shared::video::access_token`), without a network call.
//!
//! What reaches Twilio is a room's unique name (`<session id>-<n>`, opaque), the status
//! callback URL and whether to record; participants are known to Twilio only by opaque
//! participant ids inside their tokens. No name, e-mail or clinical text passes here.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A room to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoom {
    /// `UniqueName`: Twilio refuses a second in-progress room of the same name, so two
    /// racing creations end in one room.
    pub unique_name: String,
    /// Where Twilio sends the room's status callbacks (the public webhook URL).
    pub status_callback: String,
    /// Record participants from the moment they connect (both consented).
    pub record: bool,
}

/// A room as Twilio reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// `RM…`.
    pub sid: String,
    pub unique_name: String,
    /// `in-progress`, `completed` or `failed`.
    pub status: String,
}

impl Room {
    pub fn is_live(&self) -> bool {
        self.status == "in-progress"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// Twilio refused the request as malformed or not allowed (4xx other than 404).
    #[error("the video provider refused the request: {0}")]
    Invalid(String),
    #[error("no such room")]
    NotFound,
    /// Twilio could not be reached, timed out or failed (5xx, 429, 401): nothing was
    /// decided.
    #[error("video provider unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<VideoError> for crate::ApiError {
    fn from(err: VideoError) -> Self {
        match err {
            VideoError::Invalid(_) => crate::ApiError::unprocessable(err.to_string()),
            VideoError::NotFound => crate::ApiError::NotFound,
            VideoError::Unavailable(_) => crate::ApiError::unavailable("video", err),
        }
    }
}

#[async_trait]
pub trait Video: Send + Sync {
    /// Creates a group room; when an in-progress room of that unique name exists, that
    /// room is answered (Twilio's 53113 "room exists", resolved by fetching it).
    async fn create_room(&self, new: &NewRoom) -> Result<Room, VideoError>;
    /// A room by its SID (`RM…`).
    async fn fetch_room(&self, sid: &str) -> Result<Room, VideoError>;
    /// Ends a room (`Status=completed`): everyone is disconnected.
    async fn complete_room(&self, sid: &str) -> Result<Room, VideoError>;
    /// Turns recording of every participant's tracks on or off (the room's recording
    /// rules).
    async fn set_recording(&self, sid: &str, record: bool) -> Result<(), VideoError>;
}

/// Twilio SIDs: a two-letter prefix and 32 hex digits. Nothing else is put in a URL.
pub fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_a_prefix_and_32_hex_digits() {
        assert!(is_sid("RM0123456789abcdef0123456789abcdef", "RM"));
        assert!(!is_sid("RM0123456789abcdef0123456789abcde", "RM"));
        assert!(!is_sid("CA0123456789abcdef0123456789abcdef", "RM"));
        assert!(!is_sid("RM0123456789abcdef0123456789abcd/x", "RM"));
    }
}
