//! Video sessions, tokens, start, end and consent (`docs/video.md`).
//!
//! Who may do what: the two participants of a video appointment (the patient, and the
//! provider with an MFA session) create its session, get tokens, give or withdraw
//! consent and read it; only the provider starts and ends the call (the appointment's
//! `in_progress` and `completed` are the provider's transitions). Anyone else —
//! administrators included — gets a 404, recorded as `ACCESS_DENIED`. Nothing that
//! names a person reaches Twilio: rooms are `<session id>-<n>` and participants opaque
//! ids.

use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::{audit_event, record, Principal, Role};
use shared::domain::appointment::{ConsultationType, Status};
use shared::domain::video::{
    completes, may_create, may_join, room_name, start_path, SessionStatus, Side, VideoRefusal,
};
use shared::domain::Timestamp;
use shared::guard::{Admins, Party};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::video::{NewRoom, VideoError};
use shared::store::appointments::{self, Change, ChangeError, Stored};
use shared::store::video::{
    self as store, NewSession, OpenedRoom, Session, SessionChange, SessionView,
};
use shared::{guard, ApiError, App, AppContext};

const SESSION: &str = "video_session";
const APPOINTMENT: &str = "appointment";
/// Attempts of a change whose session moved between read and commit (a racing token
/// request opened the room first).
const ATTEMPTS: usize = 3;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewVideoSession")]
pub(crate) struct CreateBody {
    /// A video appointment of the caller's.
    appointment_id: String,
    /// Whether the session may be recorded (once both participants consent).
    #[serde(default)]
    recording_enabled: bool,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "VideoTokenRequest")]
pub(crate) struct TokenBody {
    session_id: String,
}

/// What a client connects with (`twilio-video`'s `connect(access_token, {name: room_name})`).
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "VideoToken")]
pub(crate) struct TokenAnswer {
    /// A Twilio access token (JWT), valid 1 hour; never stored or logged.
    access_token: String,
    room_name: String,
    /// RFC 3339 UTC.
    expires_at: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "VideoConsentChange")]
pub(crate) struct ConsentBody {
    /// `true` consents to recording, `false` withdraws.
    recording: bool,
}

fn refusal(err: VideoRefusal) -> ApiError {
    match err {
        VideoRefusal::Ended => ApiError::conflict(err.to_string()),
        other => ApiError::unprocessable(other.to_string()),
    }
}

/// The caller's side, or the refusal (recorded on `target`): 404 to anyone who is not
/// one of the two participants, 403 to the provider without an MFA session.
async fn side(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    target: (&str, &str),
    patient_id: &str,
    provider_id: &str,
) -> Result<Side, ApiError> {
    let parties = (patient_id, provider_id);
    match guard::party(app, req, principal, target, parties, Admins::Refused).await? {
        Party::Patient => Ok(Side::Patient),
        Party::Provider => Ok(Side::Provider),
        // Not a party to a call (`Admins::Refused` never answers this); refused the same.
        Party::Admin => Err(guard::refuse(app, req, principal, target, ApiError::NotFound).await),
    }
}

/// The session named in the path and the caller's side of it.
async fn session_in_path(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<(Session, Side), ApiError> {
    let id = guard::path_id(app, req, principal, "id", SESSION).await?;
    let Some(session) = store::get(app, id).await? else {
        return Err(guard::refuse(app, req, principal, (SESSION, id), ApiError::NotFound).await);
    };
    let side = side(
        app,
        req,
        principal,
        (SESSION, id),
        &session.patient_id,
        &session.provider_id,
    )
    .await?;
    Ok((session, side))
}

/// Only the provider may: the patient is refused with a 403 (recorded).
async fn provider_only(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    session: &Session,
    side: Side,
) -> Result<(), ApiError> {
    if side == Side::Provider {
        return Ok(());
    }
    let target = (SESSION, session.id.as_str());
    Err(guard::refuse(app, req, principal, target, ApiError::Forbidden).await)
}

async fn appointment_of(app: &AppContext, session: &Session) -> Result<Stored, ApiError> {
    appointments::get(app, &session.appointment_id)
        .await?
        .ok_or_else(|| ApiError::internal("a video session without its appointment"))
}

fn join_check(app: &AppContext, session: &Session, appointment: &Stored) -> Result<(), ApiError> {
    may_join(
        session.status,
        appointment.status,
        app.now(),
        appointment.start,
        appointment.end,
        app.config.video.join_early_minutes,
    )
    .map_err(refusal)
}

/// The session's current room if Twilio still has it in progress (a dropped call's room
/// has ended, whether or not its `room-ended` callback arrived).
async fn live_room(app: &AppContext, session: &Session) -> Result<Option<String>, ApiError> {
    let Some((name, sid)) = session.live_room() else {
        return Ok(None);
    };
    match app.video.fetch_room(sid).await {
        Ok(room) if room.is_live() => Ok(Some(name.to_string())),
        Ok(_) | Err(VideoError::NotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Opens the session's next room at Twilio (an in-progress room of the same name, made
/// by a racing request, is that room). Nothing is written here.
async fn open_room(app: &AppContext, session: &Session) -> Result<OpenedRoom, ApiError> {
    let Some(callback) = app.config.video.callback_url() else {
        tracing::error!("DOCARE_PUBLIC_API_URL is not set: no video rooms");
        return Err(ApiError::unavailable(
            "video",
            ApiError::internal("the public API URL is not configured"),
        ));
    };
    let seq = session.room_seq + 1;
    let record = session.recording_allowed();
    let room = app
        .video
        .create_room(&NewRoom {
            unique_name: room_name(&session.id, seq),
            status_callback: callback,
            record,
        })
        .await?;
    Ok(OpenedRoom {
        seq,
        room,
        recording: record,
    })
}

/// The session as it is now, with its participants' stays.
async fn view(app: &AppContext, id: &str) -> Result<SessionView, ApiError> {
    let session = store::get(app, id).await?.ok_or(ApiError::NotFound)?;
    let stays = store::stays(app, &session).await?;
    Ok(SessionView::of(&session, stays))
}

/// `POST /api/v1/video-calls` `{appointment_id, recording_enabled}`.
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role == Role::Admin {
        let target = (SESSION, guard::ANY);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: CreateBody = req.json()?;
    let appointment_id = body.appointment_id.trim();
    let target = (APPOINTMENT, guard::recorded_id(appointment_id));
    let appointment = if guard::is_id(appointment_id) {
        appointments::get(&app, appointment_id).await?
    } else {
        None
    };
    let Some(appointment) = appointment else {
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    side(
        &app,
        &req,
        &principal,
        target,
        &appointment.patient_id,
        &appointment.provider_id,
    )
    .await?;
    may_create(
        appointment.status,
        appointment.consultation_type == ConsultationType::Video,
    )
    .map_err(refusal)?;
    let new = NewSession {
        id: app.new_id(),
        appointment_id: appointment.id.clone(),
        patient_id: appointment.patient_id.clone(),
        provider_id: appointment.provider_id.clone(),
        // Opaque, per session: what Twilio sees of each participant.
        patient_identity: app.new_id(),
        provider_identity: app.new_id(),
        recording_enabled: body.recording_enabled,
    };
    let event =
        audit_event(&req, &principal, Action::Create, Outcome::Success).resource(SESSION, &new.id);
    let session = store::create(&app, &new, event).await?;
    ApiResponse::created(&SessionView::of(&session, Vec::new()))
}

/// `GET /api/v1/video-calls/{id}`.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (session, _) = session_in_path(&app, &req, &principal).await?;
    let stays = store::stays(&app, &session).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (SESSION, &session.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&SessionView::of(&session, stays))
}

/// `GET /api/v1/appointments/{id}/video-calls`.
pub async fn for_appointment(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (appointment, _) =
        guard::appointment_in_path(&app, &req, &principal, Admins::Refused).await?;
    let page = PageRequest::from_request(&req)?;
    let sessions = store::for_appointment(&app, &appointment.id, &page).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        ("appointment_video_calls", &appointment.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&sessions)
}

/// `POST /api/v1/video-calls/tokens` `{session_id}`: a token for the caller's side, for
/// the session's live room (a new room when there is none: the first join, or a dropped
/// call). The token is answered only once its `VIDEO_TOKEN` event is recorded.
pub async fn token(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role == Role::Admin {
        let target = (SESSION, guard::ANY);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: TokenBody = req.json()?;
    let id = body.session_id.trim().to_string();
    let target = (SESSION, guard::recorded_id(&id));
    let mut session = if guard::is_id(&id) {
        store::get(&app, &id).await?
    } else {
        None
    };
    let Some(first) = session.take() else {
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    let side = side(
        &app,
        &req,
        &principal,
        target,
        &first.patient_id,
        &first.provider_id,
    )
    .await?;
    let appointment = appointment_of(&app, &first).await?;
    join_check(&app, &first, &appointment)?;
    let stage = app.config.stage.as_str();
    let account_sid = app
        .secrets
        .get(&shared::video::account_sid_name(stage))
        .await?;
    let key_sid = app
        .secrets
        .get(&shared::video::api_key_sid_name(stage))
        .await?;
    let key_secret = app
        .secrets
        .get(&shared::video::api_key_secret_name(stage))
        .await?;
    let mut current = first;
    for attempt in 1..=ATTEMPTS {
        let (room, ops) = match live_room(&app, &current).await? {
            Some(room) => (room, Vec::new()),
            None => {
                let opened = open_room(&app, &current).await?;
                let name = opened.room.unique_name.clone();
                let change = SessionChange {
                    new_room: Some(opened),
                    ..SessionChange::default()
                };
                (name, store::change_ops(&app, &current, change))
            }
        };
        let now = app.now();
        let token = shared::video::access_token(
            &shared::video::TokenCredentials {
                account_sid: &account_sid,
                api_key_sid: &key_sid,
                api_key_secret: &key_secret,
            },
            current.identity(side),
            &room,
            now.epoch_secs(),
            shared::video::TOKEN_TTL_SECS,
        )
        .map_err(ApiError::internal)?;
        let event = audit_event(&req, &principal, Action::VideoToken, Outcome::Success)
            .resource(SESSION, &current.id);
        match store::commit(&app, ops, event).await {
            Ok(()) => {
                let expires = Timestamp::new(
                    now.as_datetime() + chrono::Duration::seconds(shared::video::TOKEN_TTL_SECS),
                );
                return ApiResponse::ok(&TokenAnswer {
                    access_token: token,
                    room_name: room,
                    expires_at: expires.to_string(),
                });
            }
            // Another request recorded a room meanwhile: that one is used.
            Err(store::ChangeError::Stale) if attempt < ATTEMPTS => {
                current = store::get(&app, &current.id)
                    .await?
                    .ok_or(ApiError::NotFound)?;
                join_check(&app, &current, &appointment)?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::conflict("the session kept changing; retry"))
}

fn change_error(err: ChangeError) -> ApiError {
    match err {
        ChangeError::Also | ChangeError::Stale => {
            ApiError::conflict("the session or the appointment changed meanwhile; retry")
        }
        other => other.into(),
    }
}

/// `POST /api/v1/video-calls/{id}/start` (the provider): the live room (opened if there
/// is none) and the appointment `in_progress`, through the appointments area's own
/// transitions, in one transaction with the session's change.
pub async fn start(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (session, side) = session_in_path(&app, &req, &principal).await?;
    provider_only(&app, &req, &principal, &session, side).await?;
    let appointment = appointment_of(&app, &session).await?;
    join_check(&app, &session, &appointment)?;
    let now = app.now();
    let path =
        start_path(appointment.status, now, appointment.start, appointment.end).map_err(refusal)?;
    let mut change = SessionChange {
        status: Some(SessionStatus::InProgress),
        started_at: session.started_at.is_none().then(|| now.to_string()),
        ..SessionChange::default()
    };
    if live_room(&app, &session).await?.is_none() {
        change.new_room = Some(open_room(&app, &session).await?);
    }
    let ops = store::change_ops(&app, &session, change);
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource(SESSION, &session.id);
    if path.is_empty() {
        store::commit(&app, ops, event).await?;
    } else {
        let change = Change {
            status: Some(Status::InProgress),
            also: ops,
            ..Change::default()
        };
        appointments::change(&app, &appointment, change, event)
            .await
            .map_err(change_error)?;
    }
    ApiResponse::ok(&view(&app, &session.id).await?)
}

/// `POST /api/v1/video-calls/{id}/end` (the provider): the room completed at Twilio,
/// the session ended and the appointment completed (when it is in progress), in one
/// transaction.
pub async fn end(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (session, side) = session_in_path(&app, &req, &principal).await?;
    provider_only(&app, &req, &principal, &session, side).await?;
    if session.status == SessionStatus::Ended {
        return Err(refusal(VideoRefusal::Ended));
    }
    let appointment = appointment_of(&app, &session).await?;
    if let Some((_, sid)) = session.live_room() {
        match app.video.complete_room(sid).await {
            Ok(_) | Err(VideoError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let now = app.now();
    let change = SessionChange {
        status: Some(SessionStatus::Ended),
        ended_at: Some(now.to_string()),
        room_completed: session.room_sid.is_some(),
        ..SessionChange::default()
    };
    let ops = store::change_ops(&app, &session, change);
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource(SESSION, &session.id);
    if completes(appointment.status, now, appointment.start, appointment.end) {
        let change = Change {
            status: Some(Status::Completed),
            also: ops,
            ..Change::default()
        };
        appointments::change(&app, &appointment, change, event)
            .await
            .map_err(change_error)?;
    } else {
        store::commit(&app, ops, event).await?;
    }
    ApiResponse::ok(&view(&app, &session.id).await?)
}

/// `POST /api/v1/video-calls/{id}/consent` `{recording}`: the caller's consent, stored
/// and audited. When it turns recording on or off in a live room, Twilio is told first
/// (an outage is a 503 and nothing is stored); should the commit then fail, Twilio is
/// set back.
pub async fn consent(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (session, side) = session_in_path(&app, &req, &principal).await?;
    let body: ConsentBody = req.json()?;
    if session.status == SessionStatus::Ended {
        return Err(refusal(VideoRefusal::Ended));
    }
    if body.recording && !session.recording_enabled {
        return Err(refusal(VideoRefusal::RecordingNotEnabled));
    }
    let mut after = session.clone();
    match side {
        Side::Patient => after.consent_patient = Some(body.recording),
        Side::Provider => after.consent_provider = Some(body.recording),
    }
    let allowed = after.recording_allowed();
    let mut change = SessionChange {
        consent: Some((side, body.recording, app.now().to_string())),
        ..SessionChange::default()
    };
    let mut told = None;
    if let Some((_, sid)) = session.live_room() {
        if session.room_recording != allowed {
            app.video.set_recording(sid, allowed).await?;
            told = Some(sid.to_string());
            change.room_recording = Some(allowed);
        }
    }
    let event = audit_event(&req, &principal, Action::RecordingConsent, Outcome::Success)
        .resource(SESSION, &session.id);
    let ops = store::change_ops(&app, &session, change);
    if let Err(err) = store::commit(&app, ops, event).await {
        // Not recorded: a room that was told to start recording stops again (a
        // withdrawal's stop stands; the stored flag makes a retry tell Twilio again).
        if let Some(sid) = told.filter(|_| allowed) {
            if let Err(undo) = app.video.set_recording(&sid, session.room_recording).await {
                tracing::error!(session = %session.id, error = %undo, "recording rules not restored");
            }
        }
        return Err(err.into());
    }
    ApiResponse::ok(&view(&app, &session.id).await?)
}
