//! The video port on Twilio's Video REST API (form-encoded requests, JSON answers, HTTP
//! basic auth with an API key). The API key's SID and secret come from the secret store
//! (`docare/<stage>/twilio/api_key_sid` and `…/api_key_secret`, Secrets Manager on AWS),
//! fetched on first use and cached with a bounded age. Every call has a connect timeout
//! and an overall timeout; a transport failure, a timeout, a 401, a 429 or a 5xx is
//! [`VideoError::Unavailable`] (503 to the client, nothing recorded as done).

use crate::clock::Clock;
use crate::ports::secrets::SecretStore;
use crate::ports::video::{is_sid, NewRoom, Room, Video, VideoError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Twilio's Video API.
pub const TWILIO_VIDEO_API: &str = "https://video.twilio.com";
/// Twilio's error code for "a room with this unique name is in progress".
pub const ROOM_EXISTS: i64 = 53113;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(10);

/// The form fields of a new room: a group room, its unique name, the status callback,
/// whether to record from the start. Nothing else.
pub fn room_form(new: &NewRoom) -> Vec<(String, String)> {
    vec![
        ("UniqueName".into(), new.unique_name.clone()),
        ("Type".into(), "group".into()),
        ("StatusCallback".into(), new.status_callback.clone()),
        ("StatusCallbackMethod".into(), "POST".into()),
        ("RecordParticipantsOnConnect".into(), new.record.to_string()),
    ]
}

/// The recording rules of a room: everything included, or everything excluded.
pub fn recording_rules(record: bool) -> String {
    let kind = if record { "include" } else { "exclude" };
    serde_json::json!([{ "type": kind, "all": true }]).to_string()
}

pub struct TwilioApi {
    http: super::LazyHttp,
    base_url: String,
    secrets: crate::secrets::Secrets,
    key_sid_name: String,
    key_secret_name: String,
}

impl TwilioApi {
    /// `base_url` is [`TWILIO_VIDEO_API`] (a test points it at a fake server).
    pub fn new(
        base_url: &str,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
        stage: &str,
    ) -> Self {
        Self {
            http: super::LazyHttp::new(CONNECT_TIMEOUT, TIMEOUT),
            base_url: base_url.trim_end_matches('/').to_string(),
            secrets: crate::secrets::Secrets::new(secrets, clock),
            key_sid_name: crate::video::api_key_sid_name(stage),
            key_secret_name: crate::video::api_key_secret_name(stage),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(String, String)]>,
    ) -> Result<serde_json::Value, VideoError> {
        let unavailable = |e: crate::ApiError| VideoError::Unavailable(Box::new(e));
        let sid = self
            .secrets
            .get(&self.key_sid_name)
            .await
            .map_err(unavailable)?;
        let secret = self
            .secrets
            .get(&self.key_secret_name)
            .await
            .map_err(unavailable)?;
        let http = self
            .http
            .get()
            .map_err(|e| VideoError::Unavailable(Box::new(e)))?;
        let mut request = http
            .request(method, format!("{}{path}", self.base_url))
            .basic_auth(sid.as_str(), Some(secret.as_str()));
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request
            .send()
            .await
            .map_err(|e| VideoError::Unavailable(Box::new(e.without_url())))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| VideoError::Unavailable(Box::new(e.without_url())))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| VideoError::Unavailable(Box::new(e)));
        }
        Err(classify(status.as_u16(), &bytes))
    }
}

/// Twilio's error answer as a [`VideoError`]: only its status and code are kept (never
/// its message, which may quote parameters).
pub fn classify(status: u16, body: &[u8]) -> VideoError {
    let error: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = error["code"].as_i64().unwrap_or(0);
    match status {
        404 => VideoError::NotFound,
        400 | 403 | 409 | 422 => VideoError::Invalid(format!("{status} {code}")),
        _ => VideoError::Unavailable(format!("Twilio answered {status} {code}").into()),
    }
}

fn room(value: &serde_json::Value) -> Result<Room, VideoError> {
    let text = |name: &str| value[name].as_str().map(str::to_string);
    match (text("sid"), text("unique_name"), text("status")) {
        (Some(sid), Some(unique_name), Some(status)) => Ok(Room {
            sid,
            unique_name,
            status,
        }),
        _ => Err(VideoError::Unavailable(
            "Twilio answered a room without sid, unique_name or status".into(),
        )),
    }
}

/// Room unique names made by `domain::video::room_name`: letters, digits and `-`.
fn check_name(name: &str) -> Result<(), VideoError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(VideoError::Invalid(
            "room names are letters, digits and -".into(),
        ))
    }
}

fn check_sid(sid: &str) -> Result<(), VideoError> {
    if is_sid(sid, "RM") {
        Ok(())
    } else {
        Err(VideoError::NotFound)
    }
}

#[async_trait]
impl Video for TwilioApi {
    async fn create_room(&self, new: &NewRoom) -> Result<Room, VideoError> {
        check_name(&new.unique_name)?;
        let form = room_form(new);
        match self
            .call(reqwest::Method::POST, "/v1/Rooms", Some(&form))
            .await
        {
            Ok(value) => room(&value),
            // An in-progress room of this name exists (a racing creation): that one.
            Err(VideoError::Invalid(what)) if what.ends_with(&ROOM_EXISTS.to_string()) => {
                let value = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/v1/Rooms/{}", new.unique_name),
                        None,
                    )
                    .await?;
                room(&value)
            }
            Err(err) => Err(err),
        }
    }

    async fn fetch_room(&self, sid: &str) -> Result<Room, VideoError> {
        check_sid(sid)?;
        let value = self
            .call(reqwest::Method::GET, &format!("/v1/Rooms/{sid}"), None)
            .await?;
        room(&value)
    }

    async fn complete_room(&self, sid: &str) -> Result<Room, VideoError> {
        check_sid(sid)?;
        let form = [("Status".to_string(), "completed".to_string())];
        let value = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/Rooms/{sid}"),
                Some(&form),
            )
            .await?;
        room(&value)
    }

    async fn set_recording(&self, sid: &str, record: bool) -> Result<(), VideoError> {
        check_sid(sid)?;
        let form = [("Rules".to_string(), recording_rules(record))];
        self.call(
            reqwest::Method::POST,
            &format!("/v1/Rooms/{sid}/RecordingRules"),
            Some(&form),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_without_their_messages() {
        let body = br#"{"code":53113,"message":"Room 01J-1 already exists","status":400}"#;
        let err = classify(400, body);
        assert!(
            matches!(&err, VideoError::Invalid(m) if m == "400 53113"),
            "{err:?}"
        );
        assert!(matches!(classify(404, b"{}"), VideoError::NotFound));
        for status in [401, 429, 500, 503] {
            assert!(matches!(classify(status, b""), VideoError::Unavailable(_)));
        }
    }

    #[test]
    fn a_room_is_a_group_room_with_its_callback_and_nothing_else() {
        let form = room_form(&NewRoom {
            unique_name: "01JD5Z6Q8W3M0V7K2R9T4Y6B1C-1".into(),
            status_callback: "https://api.example.com/api/v1/webhooks/twilio/video".into(),
            record: false,
        });
        let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "UniqueName",
                "Type",
                "StatusCallback",
                "StatusCallbackMethod",
                "RecordParticipantsOnConnect"
            ]
        );
        assert_eq!(recording_rules(true), r#"[{"all":true,"type":"include"}]"#);
    }
}
