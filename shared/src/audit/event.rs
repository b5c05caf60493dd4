//! What an audit event says: who, what, on which resource, with which outcome, from
//! where and when. Events carry identifiers only, never PHI; the one free-text field a
//! caller can set (the reason) and the client-chosen user agent are encrypted by the
//! writer before they are stored.

use crate::http::ApiRequest;
use crate::ApiError;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Declares the action enum once: variant, stored name. Adding an action is one line.
macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal),* $(,)?) => {
        /// What was done. Stored and serialized in SCREAMING_SNAKE_CASE.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }

        impl schemars::JsonSchema for Action {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "AuditAction".into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "enum": [$($name,)*],
                })
            }
        }

        impl FromStr for Action {
            type Err = UnknownName;

            fn from_str(value: &str) -> Result<Self, UnknownName> {
                match value {
                    $($name => Ok(Action::$variant),)*
                    _ => Err(UnknownName),
                }
            }
        }
    };
}

actions! {
    Login => "LOGIN",
    LoginFailed => "LOGIN_FAILED",
    Logout => "LOGOUT",
    TokenRefresh => "TOKEN_REFRESH",
    /// A rotated refresh token was presented again: its family is revoked.
    TokenReuse => "TOKEN_REUSE",
    MfaEnroll => "MFA_ENROLL",
    MfaConfirm => "MFA_CONFIRM",
    MfaDisable => "MFA_DISABLE",
    MfaChallenge => "MFA_CHALLENGE",
    MfaFailed => "MFA_FAILED",
    MfaCodeSent => "MFA_CODE_SENT",
    /// A right password on an account with a second factor: the login's challenge was
    /// started (with the lockout counter cleared and the hash upgraded, if due).
    MfaRequired => "MFA_REQUIRED",
    Signup => "SIGNUP",
    EmailVerify => "EMAIL_VERIFY",
    PasswordChange => "PASSWORD_CHANGE",
    PasswordResetRequest => "PASSWORD_RESET_REQUEST",
    PasswordReset => "PASSWORD_RESET",
    AccountLocked => "ACCOUNT_LOCKED",
    /// A single-use WebSocket ticket was issued to a session.
    RealtimeTicket => "REALTIME_TICKET",
    View => "VIEW",
    Create => "CREATE",
    Update => "UPDATE",
    Delete => "DELETE",
    /// A record was archived: kept, read-only, out of the active lists (secure notes).
    Archive => "ARCHIVE",
    Export => "EXPORT",
    /// Emergency access to PHI outside the normal rules; always with a reason.
    BreakGlass => "BREAK_GLASS",
    /// An admin revealed a protected value through the audited path; with a reason.
    Reveal => "REVEAL",
    AccessDenied => "ACCESS_DENIED",
    /// A ciphertext or chain failed its integrity check.
    IntegrityFailure => "INTEGRITY_FAILURE",
    Sos => "SOS",
    /// A video access token was issued to a participant (who may join which session).
    VideoToken => "VIDEO_TOKEN",
    /// A participant gave or withdrew consent to recording a video session.
    RecordingConsent => "RECORDING_CONSENT",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom("unknown audit action"))
    }
}

/// A stored name that is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown name")]
pub struct UnknownName;

/// How the attempt ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "AuditOutcome")]
pub enum Outcome {
    Success,
    /// Refused by authorization, authentication or a policy.
    Denied,
    /// Attempted and failed (bad credentials, a dependency, an integrity check).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

impl FromStr for Outcome {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, UnknownName> {
        match value {
            "success" => Ok(Outcome::Success),
            "denied" => Ok(Outcome::Denied),
            "failed" => Ok(Outcome::Failed),
            _ => Err(UnknownName),
        }
    }
}

/// Who acted. Every part is an opaque id (never an e-mail, a name or a token); all may
/// be absent (an anonymous request, a failed login of an unknown account).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[schemars(rename = "AuditActor")]
pub struct Actor {
    pub user_id: Option<String>,
    pub role: Option<String>,
    /// The session (refresh-token family) id, never a token.
    pub session_id: Option<String>,
}

impl Actor {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn user(user_id: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            role: Some(role.into()),
            session_id: None,
        }
    }

    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
}

/// What was acted on: a type (`user`, `appointment`, `note`…) and its opaque id.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[schemars(rename = "AuditResource")]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl Resource {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Why an access was needed (break-glass, reveal, export…): free text, so the writer
/// stores it encrypted. Built only through [`Reason::new`], which checks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// A 400 names the field, never echoes the text.
    pub fn new(text: &str) -> Result<Self, ApiError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ApiError::validation("`reason` is required"));
        }
        if text.chars().count() > MAX_REASON_CHARS {
            return Err(ApiError::validation(format!(
                "`reason` must be at most {MAX_REASON_CHARS} characters"
            )));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ApiError::validation(
                "`reason` must not contain control characters",
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Never prints the text: a reason may mention a patient.
impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reason(<redacted>)")
    }
}

/// Where the request came from, copied from the [`ApiRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub request_id: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// Client-chosen free text: stored encrypted.
    pub user_agent: Option<String>,
}

/// Longest request id and user agent kept (longer values are cut, not refused: the
/// audit event must be written whatever a client sends).
const MAX_REQUEST_ID: usize = 128;
const MAX_USER_AGENT: usize = 512;

impl Origin {
    pub fn from_request(req: &ApiRequest) -> Self {
        let request_id = Some(req.request_id.as_str())
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= MAX_REQUEST_ID
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_=.:".contains(c))
            })
            .map(str::to_string);
        let source_ip = req.source_ip.as_deref().and_then(|ip| ip.parse().ok());
        let user_agent = req.user_agent.as_deref().map(|ua| {
            let mut cut = ua.to_string();
            if cut.len() > MAX_USER_AGENT {
                let mut end = MAX_USER_AGENT;
                while !cut.is_char_boundary(end) {
                    end -= 1;
                }
                cut.truncate(end);
            }
            cut
        });
        Self {
            request_id,
            source_ip,
            user_agent,
        }
    }
}

/// One audit event, before the writer gives it a place in a chain. The time is set by
/// the writer from the app clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub actor: Actor,
    pub action: Action,
    pub resource: Option<Resource>,
    pub outcome: Outcome,
    pub origin: Origin,
    pub reason: Option<Reason>,
}

impl AuditEvent {
    pub fn new(action: Action, outcome: Outcome) -> Self {
        Self {
            actor: Actor::anonymous(),
            action,
            resource: None,
            outcome,
            origin: Origin::default(),
            reason: None,
        }
    }

    /// The usual start in a handler: request id, source IP and user agent of `req`.
    pub fn from_request(req: &ApiRequest, action: Action, outcome: Outcome) -> Self {
        Self {
            origin: Origin::from_request(req),
            ..Self::new(action, outcome)
        }
    }

    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    pub fn resource(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.resource = Some(Resource::new(kind, id));
        self
    }

    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn actions_round_trip_by_name() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(*action));
            let json = serde_json::to_string(action).expect("json");
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert!(action
                .as_str()
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_'));
        }
        assert_eq!(Action::ALL.len(), 32);
        assert_eq!(
            Action::PasswordResetRequest.as_str(),
            "PASSWORD_RESET_REQUEST"
        );
        assert!("login".parse::<Action>().is_err());
    }

    #[test]
    fn reasons_are_checked_and_never_printed() {
        let reason = Reason::new("  patient in ER, unconscious ").expect("ok");
        assert_eq!(reason.as_str(), "patient in ER, unconscious");
        assert!(!format!("{reason:?}").contains("ER"));
        assert!(!format!(
            "{:?}",
            AuditEvent::new(Action::BreakGlass, Outcome::Success).reason(reason)
        )
        .contains("ER"));
        for bad in ["", "   ", "a\u{0}b"] {
            assert_eq!(Reason::new(bad).expect_err("bad").status(), 400);
        }
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let err = Reason::new(&long).expect_err("long");
        assert!(!err.to_string().contains("xxx"));
    }

    #[test]
    fn origin_comes_from_the_request_and_is_bounded() {
        let mut req = ApiRequest::new(Method::GET, "/x");
        req.request_id = "abc-123".into();
        req.source_ip = Some("203.0.113.9".into());
        req.user_agent = Some("é".repeat(400));
        let origin = Origin::from_request(&req);
        assert_eq!(origin.request_id.as_deref(), Some("abc-123"));
        assert_eq!(origin.source_ip, Some("203.0.113.9".parse().expect("ip")));
        assert!(origin.user_agent.expect("ua").len() <= MAX_USER_AGENT);
        req.request_id = "has space".into();
        req.source_ip = Some("not an ip".into());
        let origin = Origin::from_request(&req);
        assert_eq!((origin.request_id, origin.source_ip), (None, None));
    }
}
