//! The messaging actions of the WebSocket API (`shared::chat` holds what they share
//! with the REST routes of the messages function):
//!
//! - `message:send` `{conversation_id, client_message_id, body, encryption?, attachments?}`: stored
//!   first (`shared::store::messages::send`, idempotent by client id), then
//!   `message:delivered` `{conversation_id, client_message_id, message_id, seq}` to the
//!   sending connection and `message:received` (the message) to every connection of
//!   every other participant. A resend is answered `message:delivered` again and not
//!   pushed twice.
//! - `message:read` `{conversation_id, up_to}`: the marker stored, then `message:read`
//!   `{conversation_id, user_id, up_to}` to the other participants (and as the answer).
//! - `typing:start` / `typing:stop` `{conversation_id}`: `typing` `{conversation_id,
//!   user_id, state, expires_in_secs}` to the other participants; never stored, and a
//!   `start` lapses by itself after `expires_in_secs`.
//! - `presence:update` `{state: online|away}`: the state and last-seen stored, `presence`
//!   `{user_id, state, last_seen}` pushed to everyone who shares a conversation with the
//!   caller, and their presence sent back. Offline is computed from last-seen with a
//!   grace period (`shared::domain::conversation::PRESENCE_GRACE_SECS`), never taken from
//!   `$disconnect` alone (API Gateway does not always send it).
//!
//! Each frame is from the user who opened the connection (its stored record, the session
//! still live); a failure answers an `error` frame `{code, message, status}` and the
//! connection stays up. Only participants receive anything of a conversation.

use serde::{Deserialize, Serialize};
use shared::auth::rate_limit::{self, Limit, CHAT, CHAT_MESSAGES};
use shared::auth::{amr, Principal};
use shared::chat::{self, SendBody};
use shared::domain::conversation::{presence_state, Encryption, TYPING_EXPIRES_SECS};
use shared::http::ApiRequest;
use shared::ports::push::PushOutcome;
use shared::store::messages::{self, Sent};
use shared::store::{connections, sessions};
use shared::ws::{push_to_user, ServerEvent, WsReply, WsRequest, WsResult};
use shared::{ApiError, App, AppContext};

/// The route keys of the messaging actions.
pub const ACTIONS: [&str; 5] = [
    "message:send",
    "message:read",
    "typing:start",
    "typing:stop",
    "presence:update",
];

/// The caller of a frame: the connection's user, with the session's second factor, as
/// an `ApiRequest` for the audit trail (request id, source IP, user agent). 401 when
/// the connection is unknown or its session has ended.
async fn caller(
    app: &AppContext,
    req: &WsRequest,
    limit: Limit,
) -> Result<(Principal, ApiRequest), ApiError> {
    let (user_id, role, session_id) = connections::owner(app, &req.connection_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let amr = sessions::session(app, &user_id, &session_id)
        .await?
        .map(|s| s.amr)
        .unwrap_or_default();
    let has = |method: &str| amr.split(' ').any(|m| m == method);
    let principal = Principal {
        user_id,
        role,
        session_id,
        mfa: has(amr::MFA),
        mailed_code: has(amr::MULTI_CHANNEL),
    };
    if !app.sessions.is_live(app, &principal).await? {
        return Err(ApiError::Unauthenticated);
    }
    let mut api = ApiRequest::new(http::Method::POST, &format!("/ws/{}", req.route_key));
    api.request_id = req.request_id.clone();
    api.source_ip = req.source_ip.clone();
    api.user_agent = req.user_agent.clone();
    rate_limit::hit(app, limit, &format!("user:{}", principal.user_id)).await?;
    Ok((principal, api))
}

/// Sends a frame to the connection that sent `req` (forgotten when gone).
async fn answer<T: Serialize>(
    app: &AppContext,
    req: &WsRequest,
    kind: &'static str,
    data: T,
) -> Result<(), ApiError> {
    let payload = ServerEvent::reply(kind, &req.request_id, Some(data)).to_bytes()?;
    if app.push.post(&req.connection_id, &payload).await? == PushOutcome::Gone {
        connections::forget(app, &req.connection_id).await?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ErrorFrame {
    code: &'static str,
    message: String,
    status: u16,
}

/// Runs an action; a failure becomes an `error` frame on the connection (the status is
/// the route's answer).
async fn run<F>(app: App, req: WsRequest, action: F) -> WsResult
where
    F: std::future::Future<Output = Result<(), ApiError>>,
{
    match action.await {
        Ok(()) => Ok(WsReply::ok()),
        Err(err) => {
            let status = err.status().as_u16();
            if err.is_server_error() {
                // The code only: never a body, never a cause that could quote one.
                tracing::error!(request_id = %req.request_id, code = err.code(), "a websocket action failed");
            }
            let frame = ErrorFrame {
                code: err.code(),
                message: err.to_string(),
                status,
            };
            answer(&app, &req, "error", frame).await?;
            Ok(WsReply { status, body: None })
        }
    }
}

/// A frame's JSON (its `action` is the route).
fn frame<T: for<'de> Deserialize<'de>>(req: &WsRequest) -> Result<T, ApiError> {
    let body = req.body.as_deref().unwrap_or_default();
    let mut de = serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|err| ApiError::validation(format!("invalid frame at `{}`", err.path())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendFrame {
    #[allow(dead_code)]
    action: String,
    conversation_id: String,
    client_message_id: String,
    body: String,
    #[serde(default)]
    encryption: Option<Encryption>,
    #[serde(default)]
    attachments: Vec<String>,
}

#[derive(Serialize)]
struct Delivered<'a> {
    conversation_id: &'a str,
    client_message_id: &'a str,
    message_id: &'a str,
    seq: i64,
}

/// `message:send`.
pub async fn send(app: App, req: WsRequest) -> WsResult {
    let action = async {
        let (principal, api) = caller(&app, &req, CHAT_MESSAGES).await?;
        let frame: SendFrame = frame(&req)?;
        let conversation =
            chat::conversation(&app, &api, &principal, &frame.conversation_id).await?;
        let body = SendBody {
            client_message_id: frame.client_message_id,
            body: frame.body,
            encryption: frame.encryption,
            attachments: frame.attachments,
        };
        let sent = chat::deliver(&app, &api, &principal, &conversation, &body).await?;
        let message = sent.message();
        let delivered = Delivered {
            conversation_id: &conversation.id,
            client_message_id: &message.client_message_id,
            message_id: &message.id,
            seq: message.seq,
        };
        answer(&app, &req, "message:delivered", delivered).await?;
        if let Sent::New(message, _) = &sent {
            let event = ServerEvent::new("message:received", message);
            chat::announce(&app, &conversation, Some(&principal.user_id), &event).await;
        }
        Ok(())
    };
    run(app.clone(), req.clone(), action).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadFrame {
    #[allow(dead_code)]
    action: String,
    conversation_id: String,
    up_to: i64,
}

/// `message:read`.
pub async fn read(app: App, req: WsRequest) -> WsResult {
    let action = async {
        let (principal, api) = caller(&app, &req, CHAT).await?;
        let frame: ReadFrame = frame(&req)?;
        let conversation =
            chat::conversation(&app, &api, &principal, &frame.conversation_id).await?;
        let (receipt, moved) =
            chat::read_up_to(&app, &api, &principal, &conversation, frame.up_to).await?;
        answer(&app, &req, "message:read", &receipt).await?;
        if moved {
            let event = ServerEvent::new("message:read", &receipt);
            chat::announce(&app, &conversation, Some(&principal.user_id), &event).await;
        }
        Ok(())
    };
    run(app.clone(), req.clone(), action).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypingFrame {
    #[allow(dead_code)]
    action: String,
    conversation_id: String,
}

#[derive(Serialize)]
struct Typing<'a> {
    conversation_id: &'a str,
    user_id: &'a str,
    /// `start` or `stop`.
    state: &'static str,
    /// A `start` lapses after this many seconds unless repeated.
    expires_in_secs: i64,
}

async fn typing(app: App, req: WsRequest, state: &'static str) -> WsResult {
    let action = async {
        let (principal, api) = caller(&app, &req, CHAT).await?;
        let frame: TypingFrame = frame(&req)?;
        let conversation =
            chat::conversation(&app, &api, &principal, &frame.conversation_id).await?;
        let event = ServerEvent::new(
            "typing",
            Typing {
                conversation_id: &conversation.id,
                user_id: &principal.user_id,
                state,
                expires_in_secs: if state == "start" {
                    TYPING_EXPIRES_SECS
                } else {
                    0
                },
            },
        );
        chat::announce(&app, &conversation, Some(&principal.user_id), &event).await;
        Ok(())
    };
    run(app.clone(), req.clone(), action).await
}

/// `typing:start`.
pub async fn typing_start(app: App, req: WsRequest) -> WsResult {
    typing(app, req, "start").await
}

/// `typing:stop`.
pub async fn typing_stop(app: App, req: WsRequest) -> WsResult {
    typing(app, req, "stop").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceFrame {
    #[allow(dead_code)]
    action: String,
    state: PresenceState,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum PresenceState {
    Online,
    Away,
}

#[derive(Serialize)]
struct Presence<'a> {
    user_id: &'a str,
    /// `online`, `away` or `offline` (last-seen older than the grace period).
    state: &'a str,
    /// Epoch seconds (null: never seen).
    last_seen: Option<i64>,
}

/// `presence:update`.
pub async fn presence(app: App, req: WsRequest) -> WsResult {
    let action = async {
        let (principal, api) = caller(&app, &req, CHAT).await?;
        let frame: PresenceFrame = frame(&req)?;
        chat::allowed(
            &app,
            &api,
            &principal,
            (messages::RESOURCE, shared::guard::ANY),
        )
        .await?;
        let state = match frame.state {
            PresenceState::Online => "online",
            PresenceState::Away => "away",
        };
        let seen = messages::set_presence(&app, &principal.user_id, state).await?;
        let mine = ServerEvent::new(
            "presence",
            Presence {
                user_id: &principal.user_id,
                state,
                last_seen: Some(seen),
            },
        );
        let now = app.clock.now().timestamp();
        for contact in messages::contacts(&app, &principal.user_id).await? {
            if let Err(err) = push_to_user(&app, &contact, &mine).await {
                tracing::warn!(error = %err, "a presence push failed");
            }
            let theirs = messages::presence(&app, &contact).await?;
            let (state, last_seen) = match &theirs {
                Some((state, seen)) => (presence_state(state, *seen, now), Some(*seen)),
                None => ("offline", None),
            };
            let presence = Presence {
                user_id: &contact,
                state,
                last_seen,
            };
            answer(&app, &req, "presence", presence).await?;
        }
        Ok(())
    };
    run(app.clone(), req.clone(), action).await
}
