//! Conversations and messages: who may be in one, what a message body and a client
//! message id may be, sync tokens. Plain rules, no I/O.
//!
//! A conversation is one patient and the providers of their care team (at least one);
//! participants never change after creation. Its size is bounded by
//! [`MAX_PARTICIPANTS`] because every event fans out to each participant inside one
//! DynamoDB transaction (100 items; see `shared::store::messages` for the count).

use crate::ApiError;

/// Most participants a conversation holds (the patient and up to 19 providers): a send
/// writes 4 items plus 3 per participant (see `shared::store::messages::send`), which
/// must stay within one audited transaction (98 items).
pub const MAX_PARTICIPANTS: usize = 20;
/// Most documents one message attaches.
pub const MAX_ATTACHMENTS: usize = 5;

/// Most attachments a message to a conversation of `participants` can carry: each
/// writes a check, a share per provider and its audit event into the send's one
/// transaction (100 items: the send's `3 + 3P`, its event and the chain head), so a
/// large conversation takes fewer ([`MAX_ATTACHMENTS`] up to 10 participants, 1 at
/// [`MAX_PARTICIPANTS`]).
pub fn attachments_fit(participants: usize) -> usize {
    let room = crate::ports::db::MAX_TRANSACTION_OPS.saturating_sub(2 + 3 + 3 * participants);
    (room / (participants + 1)).min(MAX_ATTACHMENTS)
}

/// Longest server-sealed body, in characters.
pub const MAX_BODY_CHARS: usize = 4000;
/// Longest client-encrypted body (as given: base64 or similar text), in bytes.
pub const MAX_CLIENT_BODY_BYTES: usize = 16 * 1024;
/// Longest client message id.
pub const MAX_CLIENT_MESSAGE_ID: usize = 64;
/// How long a `typing` state lasts unless renewed (clients drop it after this).
pub const TYPING_EXPIRES_SECS: i64 = 10;
/// A user whose last-seen is older than this shows as offline (`$disconnect` is
/// best-effort on API Gateway, so offline is never taken from it alone).
pub const PRESENCE_GRACE_SECS: i64 = 120;

/// How a message body is kept.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// Plain text from the client, envelope-sealed by the server (purpose `docare-phi`).
    Server,
    /// Ciphertext the client made; stored and returned exactly as given.
    Client,
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Server => "server",
            Encryption::Client => "client",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "server" => Some(Encryption::Server),
            "client" => Some(Encryption::Client),
            _ => None,
        }
    }
}

/// A message body as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub text: String,
    pub encryption: Encryption,
}

impl Body {
    /// A server-sealed body is 1 to [`MAX_BODY_CHARS`] characters, not only whitespace,
    /// with no control characters but newlines and tabs; a client-encrypted one is 1 to
    /// [`MAX_CLIENT_BODY_BYTES`] printable ASCII bytes (the server never reads it).
    pub fn parse(text: &str, encryption: Encryption) -> Result<Self, ApiError> {
        match encryption {
            Encryption::Server => {
                let len = text.chars().count();
                let allowed = |c: char| !c.is_control() || c == '\n' || c == '\t';
                if text.trim().is_empty() || len > MAX_BODY_CHARS || !text.chars().all(allowed) {
                    return Err(ApiError::validation(format!(
                        "body: 1 to {MAX_BODY_CHARS} characters, not only spaces, no control characters"
                    )));
                }
            }
            Encryption::Client => {
                if text.is_empty()
                    || text.len() > MAX_CLIENT_BODY_BYTES
                    || !text.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(ApiError::validation(format!(
                        "body: an encrypted body is 1 to {MAX_CLIENT_BODY_BYTES} printable ASCII characters"
                    )));
                }
            }
        }
        Ok(Self {
            text: text.to_string(),
            encryption,
        })
    }
}

/// A client message id: 1 to [`MAX_CLIENT_MESSAGE_ID`] of `A-Z a-z 0-9 - _ . :` (a
/// UUID or ULID fits). It names the message per sender and conversation: a resend
/// with the same id is the same message.
pub fn client_message_id(value: &str) -> Result<&str, ApiError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_CLIENT_MESSAGE_ID
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(value)
    } else {
        Err(ApiError::validation(format!(
            "client_message_id: 1 to {MAX_CLIENT_MESSAGE_ID} of A-Z a-z 0-9 - _ . :"
        )))
    }
}

/// Who is in a new conversation: the caller and `others`, deduplicated, in order, the
/// caller first. 400 when the list is empty or too long or names the caller only.
pub fn participants(caller: &str, others: &[String]) -> Result<Vec<String>, ApiError> {
    let mut all = vec![caller.to_string()];
    for id in others {
        if !all.contains(id) {
            all.push(id.clone());
        }
    }
    if all.len() < 2 || others.len() > MAX_PARTICIPANTS {
        return Err(ApiError::validation(format!(
            "participant_ids: 1 to {} other people",
            MAX_PARTICIPANTS - 1
        )));
    }
    if all.len() > MAX_PARTICIPANTS {
        return Err(ApiError::validation(format!(
            "participant_ids: at most {} other people",
            MAX_PARTICIPANTS - 1
        )));
    }
    Ok(all)
}

/// A sync token: the caller's event sequence number, as a decimal string (opaque to
/// clients). 400 for anything else.
pub fn parse_token(value: &str) -> Result<i64, ApiError> {
    let invalid = || ApiError::validation("since: not a token this API issued");
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    value.parse().map_err(|_| invalid())
}

/// The token of a sequence number.
pub fn token(seq: i64) -> String {
    seq.to_string()
}

/// Presence as others see it: the state last set, or offline once the last-seen is
/// older than [`PRESENCE_GRACE_SECS`].
pub fn presence_state(state: &str, last_seen: i64, now: i64) -> &'static str {
    if now - last_seen > PRESENCE_GRACE_SECS {
        return "offline";
    }
    match state {
        "away" => "away",
        "online" => "online",
        _ => "offline",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_with_its_attachments_fits_one_transaction_at_every_size() {
        for participants in 2..=MAX_PARTICIPANTS {
            let fit = attachments_fit(participants);
            assert!(fit >= 1, "{participants} participants take no attachment");
            // The send (3 + 3P), per attachment a check and a share per provider, the
            // message's and each share's audit event, the chain head.
            let providers = participants - 1;
            let items = 3 + 3 * participants + fit * (1 + providers) + 1 + fit + 1;
            assert!(
                items <= crate::ports::db::MAX_TRANSACTION_OPS,
                "{participants}: {items}"
            );
        }
        assert_eq!(attachments_fit(2), MAX_ATTACHMENTS);
        assert_eq!(attachments_fit(MAX_PARTICIPANTS), 1);
    }

    #[test]
    fn bodies_are_bounded_and_client_bodies_are_kept_as_given() {
        assert!(Body::parse("Hello,\ndoctor\t!", Encryption::Server).is_ok());
        assert!(Body::parse("   ", Encryption::Server).is_err());
        assert!(Body::parse("a\u{0007}b", Encryption::Server).is_err());
        assert!(Body::parse(&"é".repeat(MAX_BODY_CHARS), Encryption::Server).is_ok());
        assert!(Body::parse(&"é".repeat(MAX_BODY_CHARS + 1), Encryption::Server).is_err());
        let sealed = "djEuQUVTLUdDTS4uLg==";
        assert_eq!(
            Body::parse(sealed, Encryption::Client).unwrap().text,
            sealed
        );
        assert!(Body::parse("has space", Encryption::Client).is_err());
        assert!(Body::parse(&"A".repeat(MAX_CLIENT_BODY_BYTES + 1), Encryption::Client).is_err());
    }

    #[test]
    fn client_message_ids_are_short_tokens() {
        assert!(client_message_id("0b9f6a7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b").is_ok());
        for bad in ["", "has space", "a/b", &"x".repeat(65), "ünï"] {
            assert!(client_message_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn participants_start_with_the_caller_and_are_bounded() {
        let others = vec!["b".to_string(), "b".to_string(), "a".to_string()];
        assert_eq!(participants("a", &others).unwrap(), vec!["a", "b"]);
        assert!(participants("a", &[]).is_err());
        assert!(participants("a", &["a".to_string()]).is_err());
        let many: Vec<String> = (0..MAX_PARTICIPANTS).map(|i| format!("u{i}")).collect();
        assert!(participants("a", &many).is_err());
        assert_eq!(
            participants("a", &many[..MAX_PARTICIPANTS - 1])
                .unwrap()
                .len(),
            MAX_PARTICIPANTS
        );
    }

    #[test]
    fn tokens_are_sequence_numbers() {
        assert_eq!(parse_token(&token(42)).unwrap(), 42);
        for bad in [
            "",
            "-1",
            "1.5",
            "01JD5Z6Q8W3M0V7K2R9T4Y6B1C",
            "99999999999999999999",
        ] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn presence_goes_offline_after_the_grace_period() {
        assert_eq!(
            presence_state("online", 100, 100 + PRESENCE_GRACE_SECS),
            "online"
        );
        assert_eq!(presence_state("away", 100, 150), "away");
        assert_eq!(
            presence_state("online", 100, 101 + PRESENCE_GRACE_SECS),
            "offline"
        );
    }
}
