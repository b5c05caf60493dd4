//! The twilio-webhook function: `POST /api/v1/webhooks/twilio/video`, Twilio's room
//! status callbacks. The `X-Twilio-Signature` is validated before anything else: base64
//! HMAC-SHA1 under the auth token (from the secret store) of the URL Twilio called —
//! rebuilt from configuration (`DOCARE_PUBLIC_API_URL`), never from the `Host` header —
//! followed by each sorted parameter name and value, with and without the port, compared
//! in constant time. A missing or forged signature is a 403 that changes nothing. Each
//! callback is processed once (`I-Twilio-Idempotency-Token`, put in the same transaction
//! as the change it causes), and one older than its room's state (`SequenceNumber`) is
//! answered 200 and changes nothing: Twilio does not retry status callbacks
//! (`docs/video.md`).

/// The outside services the `twilio-webhook` binary links (`shared::adapters::links`): the
/// auth token that signs callbacks.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::SECRETS;

use http::Method;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::audit::{Action, Actor, AuditEvent, Outcome};
use shared::domain::video::parse_room_name;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, RouteDoc, Router};
use shared::ports::video::is_sid;
use shared::store::video::{self as store, Processed, RoomCallback, RoomEvent};
use shared::{ApiError, App};

/// Largest body accepted (Twilio's callbacks are well under a kilobyte).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "TwilioCallbackReceipt")]
pub struct Received {
    received: bool,
    /// `applied`, `ignored` (older than the room's state, or nothing of ours) or
    /// `duplicate`.
    outcome: &'static str,
}

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, shared::video::CALLBACK_PATH, receive)
        .doc(
            RouteDoc::new("Twilio's room status callbacks (form-encoded, signed with the auth token)")
                .describe("`X-Twilio-Signature` is validated first (HMAC-SHA1 of the configured public URL and the sorted parameters, with and without the port): a missing or forged signature is a 403 and changes nothing. Each callback is processed once; one older than its room's state is answered 200 and ignored.")
                .header("x-twilio-signature", "Twilio's signature of the URL and the parameters.")
                .header("i-twilio-idempotency-token", "Names one callback (the same on a retry).")
                .body::<Value>()
                .response::<Received>(200)
                .errors(&[400, 403, 413, 503]),
        )
}

fn bad(message: &str) -> ApiError {
    ApiError::validation(message.to_string())
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The callback's idempotency token: Twilio's header when it is a plain token, else a
/// digest of the signed parameters (the same callback, the same digest).
fn token_of(req: &ApiRequest, params: &[(String, String)]) -> String {
    if let Some(token) = req.header(shared::video::IDEMPOTENCY_HEADER).filter(|t| {
        !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return token.to_string();
    }
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut digest = Sha256::new();
    for (name, value) in sorted {
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(value.as_bytes());
        digest.update([0]);
    }
    format!("sha256-{}", hex::encode(digest.finalize()))
}

fn answer(done: Processed) -> HandlerResult {
    let outcome = match done {
        Processed::Applied => "applied",
        Processed::Ignored => "ignored",
        Processed::Duplicate => "duplicate",
    };
    ApiResponse::ok(&Received {
        received: true,
        outcome,
    })
}

/// The audit event of a change Twilio reported (the actor is Twilio, no user).
fn twilio_event(req: &ApiRequest, session_id: &str) -> AuditEvent {
    let actor = Actor {
        user_id: None,
        role: Some("twilio".into()),
        session_id: None,
    };
    AuditEvent::from_request(req, Action::Update, Outcome::Success)
        .actor(actor)
        .resource("video_session", session_id)
}

/// `POST /api/v1/webhooks/twilio/video`.
pub async fn receive(app: App, req: ApiRequest) -> HandlerResult {
    if req.body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    let Some(base) = app.config.video.public_api_url.as_deref() else {
        tracing::error!("DOCARE_PUBLIC_API_URL is not set: Twilio callbacks cannot be checked");
        return Err(ApiError::unavailable(
            "video",
            ApiError::internal("the public API URL is not configured"),
        ));
    };
    let url = format!("{base}{}", shared::video::CALLBACK_PATH);
    let name = shared::video::auth_token_name(app.config.stage.as_str());
    let auth_token = app.secrets.get(&name).await?;
    let params = shared::video::form_params(&req.body);
    if let Err(err) = shared::video::validate(
        req.header(shared::video::SIGNATURE_HEADER),
        &auth_token,
        &url,
        &params,
    ) {
        tracing::warn!(request_id = %req.request_id, refusal = %err, "Twilio callback refused");
        return Err(ApiError::Forbidden);
    }
    // Verified: Twilio sent exactly these parameters.
    let event = param(&params, "StatusCallbackEvent").unwrap_or_default();
    let (Some(room_name), Some(room_sid)) = (
        param(&params, "RoomName"),
        param(&params, "RoomSid").filter(|sid| is_sid(sid, "RM")),
    ) else {
        return Err(bad("not a room status callback"));
    };
    let Some((session_id, room_seq)) = parse_room_name(room_name) else {
        // A room DoCare did not name: nothing of ours.
        return answer(Processed::Ignored);
    };
    let Some(sequence) = param(&params, "SequenceNumber").and_then(|n| n.parse::<i64>().ok())
    else {
        return Err(bad("SequenceNumber: missing or not a number"));
    };
    let token = token_of(&req, &params);
    if store::seen(&app, &token).await? {
        return answer(Processed::Duplicate);
    }
    let Some(session) = store::get(&app, session_id).await? else {
        return answer(Processed::Ignored);
    };
    let at = param(&params, "Timestamp")
        .and_then(shared::domain::Timestamp::parse)
        .unwrap_or_else(|| app.now())
        .to_string();
    let number = |name: &str| param(&params, name).and_then(|n| n.parse::<i64>().ok());
    let participant = || {
        param(&params, "ParticipantSid")
            .filter(|sid| is_sid(sid, "PA"))
            .map(str::to_string)
    };
    let side = param(&params, "ParticipantIdentity").and_then(|i| session.side_of_identity(i));
    let what = match event {
        "room-created" => RoomEvent::Created,
        "room-ended" => RoomEvent::Ended {
            duration_secs: number("RoomDuration"),
        },
        "participant-connected" => match participant() {
            Some(participant_sid) => RoomEvent::Connected {
                participant_sid,
                side,
            },
            None => return Err(bad("ParticipantSid: missing or malformed")),
        },
        "participant-disconnected" => match participant() {
            Some(participant_sid) => RoomEvent::Disconnected {
                participant_sid,
                side,
                duration_secs: number("ParticipantDuration"),
            },
            None => return Err(bad("ParticipantSid: missing or malformed")),
        },
        "recording-started" | "recording-completed" | "recording-failed" => {
            match param(&params, "RecordingSid").filter(|sid| is_sid(sid, "RT")) {
                Some(sid) => RoomEvent::Recording {
                    recording_sid: sid.to_string(),
                    event: event.to_string(),
                },
                None => return Err(bad("RecordingSid: missing or malformed")),
            }
        }
        // Track events and the like: nothing DoCare keeps.
        _ => return answer(Processed::Ignored),
    };
    let callback = RoomCallback {
        token,
        session_id: session.id.clone(),
        room_seq,
        room_sid: room_sid.to_string(),
        room_name: room_name.to_string(),
        sequence,
        at,
    };
    let done = store::apply(&app, &callback, &what, &session, || {
        twilio_event(&req, &session.id)
    })
    .await?;
    answer(done)
}
