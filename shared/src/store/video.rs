//! Video sessions, their Twilio rooms, participants' stays, recordings and processed
//! status callbacks (`docs/video.md`).
//!
//! | item | pk | sk | gsi2 |
//! |---|---|---|---|
//! | session | `VIDEOCALL#<id>` | `SESSION` | `VIDEOSFOR#<appointment>` / `<created>#<id>` |
//! | room | `VIDEOCALL#<id>` | `ROOM#<n>` | |
//! | participant's stay | `VIDEOCALL#<id>` | `PART#<n>#<participant SID>` | |
//! | recording | `VIDEOCALL#<id>` | `REC#<recording SID>` | |
//! | one per appointment | `APPTVIDEO#<appointment>` | `VIDEO` | |
//! | processed callback | `TWILIOCB#<idempotency token>` | `CALLBACK` (TTL 30 days) | |
//!
//! One session per appointment: the `APPTVIDEO#` item is put on the condition that it
//! does not exist, in the session's creation transaction. Every change of a session is
//! conditioned on its `version`. A status callback's token is put (`attribute_not_exists`)
//! in the same transaction as the change it causes, with the room's `seq` raised on the
//! condition that it is lower than the callback's `SequenceNumber`: a replay is a
//! duplicate and an older callback fails the condition, and either way nothing changes.

use crate::audit::{AuditEvent, CommitError};
use crate::domain::video::{SessionStatus, Side};
use crate::http::pagination::{Page, PageRequest};
use crate::ports::db::{Condition, Item, Key, Query, SortKey, Update, Value, WriteOp, TTL};
use crate::store::keys;
use crate::{ApiError, AppContext};
use serde::Serialize;

/// How long a processed callback's token is kept.
pub const CALLBACK_SECS: i64 = 30 * 24 * 3600;

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn opt_text(item: &Item, name: &str) -> Option<String> {
    item.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(Value::as_i64).unwrap_or(0)
}

fn opt_bool(item: &Item, name: &str) -> Option<bool> {
    item.get(name).and_then(Value::as_bool)
}

fn s(value: &str) -> Value {
    Value::S(value.to_string())
}

fn put(table: &str, key: Key, attrs: Vec<(&str, Value)>, condition: Option<Condition>) -> WriteOp {
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    for (name, value) in attrs {
        item.insert(name.into(), value);
    }
    WriteOp::Put {
        table: table.to_string(),
        item,
        condition,
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub appointment_id: String,
    pub patient_id: String,
    pub provider_id: String,
    /// The opaque identities in the participants' access tokens (what Twilio knows).
    pub patient_identity: String,
    pub provider_identity: String,
    pub status: SessionStatus,
    pub recording_enabled: bool,
    pub consent_patient: Option<bool>,
    pub consent_provider: Option<bool>,
    /// The number of the current room (0: none yet).
    pub room_seq: i64,
    pub room_name: Option<String>,
    pub room_sid: Option<String>,
    /// `in-progress` or `completed` (as the callbacks and the REST answers said).
    pub room_status: Option<String>,
    /// Whether the current room was told to record.
    pub room_recording: bool,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

impl Session {
    fn parse(item: &Item) -> Result<Self, ApiError> {
        let status = SessionStatus::parse(&text(item, "status"))
            .ok_or_else(|| ApiError::internal("malformed video session record"))?;
        Ok(Self {
            id: text(item, "id"),
            appointment_id: text(item, "appointment_id"),
            patient_id: text(item, "patient_id"),
            provider_id: text(item, "provider_id"),
            patient_identity: text(item, "patient_identity"),
            provider_identity: text(item, "provider_identity"),
            status,
            recording_enabled: opt_bool(item, "recording_enabled").unwrap_or(false),
            consent_patient: opt_bool(item, "consent_patient"),
            consent_provider: opt_bool(item, "consent_provider"),
            room_seq: number(item, "room_seq"),
            room_name: opt_text(item, "room_name"),
            room_sid: opt_text(item, "room_sid"),
            room_status: opt_text(item, "room_status"),
            room_recording: opt_bool(item, "room_recording").unwrap_or(false),
            started_at: opt_text(item, "started_at"),
            ended_at: opt_text(item, "ended_at"),
            created_at: text(item, "created_at"),
            updated_at: text(item, "updated_at"),
            version: number(item, "version"),
        })
    }

    /// Which side a user is on (`None`: not a participant).
    pub fn side_of(&self, user_id: &str) -> Option<Side> {
        if user_id == self.patient_id {
            Some(Side::Patient)
        } else if user_id == self.provider_id {
            Some(Side::Provider)
        } else {
            None
        }
    }

    /// Which side an identity from a callback is.
    pub fn side_of_identity(&self, identity: &str) -> Option<Side> {
        if identity == self.patient_identity {
            Some(Side::Patient)
        } else if identity == self.provider_identity {
            Some(Side::Provider)
        } else {
            None
        }
    }

    pub fn identity(&self, side: Side) -> &str {
        match side {
            Side::Patient => &self.patient_identity,
            Side::Provider => &self.provider_identity,
        }
    }

    /// The current room, while it is live (not known to have ended).
    pub fn live_room(&self) -> Option<(&str, &str)> {
        match (&self.room_name, &self.room_sid, self.room_status.as_deref()) {
            (Some(name), Some(sid), Some("in-progress")) => Some((name, sid)),
            _ => None,
        }
    }

    /// Whether recording is allowed now (enabled and both consented).
    pub fn recording_allowed(&self) -> bool {
        crate::domain::video::recording_allowed(
            self.recording_enabled,
            self.consent_patient,
            self.consent_provider,
        )
    }
}

/// Each participant's recording consent (`null`: not asked yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(rename = "VideoConsent")]
pub struct Consent {
    pub patient: Option<bool>,
    pub provider: Option<bool>,
}

/// A participant's stay in one room (join and leave times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(rename = "VideoParticipantStay")]
pub struct Stay {
    /// `patient`, `provider` or `unknown` (an identity that is neither).
    pub side: String,
    pub room_name: String,
    pub joined_at: Option<String>,
    pub left_at: Option<String>,
    pub duration_secs: Option<i64>,
}

/// A session as answered (no participant identities, no room SID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(rename = "VideoSession")]
pub struct SessionView {
    pub id: String,
    pub appointment_id: String,
    pub patient_id: String,
    pub provider_id: String,
    pub status: SessionStatus,
    /// Asked for at creation; recording happens only when both participants consented.
    pub recording_enabled: bool,
    pub consent: Consent,
    /// Whether rooms of this session are being recorded now.
    pub recording_active: bool,
    /// The current room's name (`null` before the first).
    pub room_name: Option<String>,
    /// `in-progress` or `completed`.
    pub room_status: Option<String>,
    /// Rooms opened so far (a dropped call gets a new one).
    pub rooms: i64,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Join and leave times (on `GET /api/v1/video-calls/{id}`; empty in lists).
    pub participants: Vec<Stay>,
}

impl SessionView {
    pub fn of(session: &Session, participants: Vec<Stay>) -> Self {
        Self {
            id: session.id.clone(),
            appointment_id: session.appointment_id.clone(),
            patient_id: session.patient_id.clone(),
            provider_id: session.provider_id.clone(),
            status: session.status,
            recording_enabled: session.recording_enabled,
            consent: Consent {
                patient: session.consent_patient,
                provider: session.consent_provider,
            },
            recording_active: session.recording_allowed() && session.live_room().is_some(),
            room_name: session.room_name.clone(),
            room_status: session.room_status.clone(),
            rooms: session.room_seq,
            started_at: session.started_at.clone(),
            ended_at: session.ended_at.clone(),
            created_at: session.created_at.clone(),
            updated_at: session.updated_at.clone(),
            participants,
        }
    }
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub appointment_id: String,
    pub patient_id: String,
    pub provider_id: String,
    pub patient_identity: String,
    pub provider_identity: String,
    pub recording_enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the appointment has a video session already")]
    Exists,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<CreateError> for ApiError {
    fn from(err: CreateError) -> Self {
        match err {
            CreateError::Exists => ApiError::conflict(err.to_string()),
            CreateError::Api(err) => err,
        }
    }
}

/// Records a session: the appointment's one-session item (on the condition that there
/// is none) and the session, with `event`, in one transaction (3 items with the head).
pub async fn create(
    app: &AppContext,
    new: &NewSession,
    event: AuditEvent,
) -> Result<Session, CreateError> {
    let table = app.config.table.as_str();
    let now = app.now().to_string();
    let session = put(
        table,
        keys::video_session(&new.id),
        vec![
            ("id", s(&new.id)),
            ("appointment_id", s(&new.appointment_id)),
            ("patient_id", s(&new.patient_id)),
            ("provider_id", s(&new.provider_id)),
            ("patient_identity", s(&new.patient_identity)),
            ("provider_identity", s(&new.provider_identity)),
            ("status", s(SessionStatus::Scheduled.as_str())),
            ("recording_enabled", Value::Bool(new.recording_enabled)),
            ("room_seq", Value::N(0)),
            ("version", Value::N(1)),
            ("created_at", s(&now)),
            ("updated_at", s(&now)),
            ("gsi2pk", Value::S(keys::videos_for(&new.appointment_id))),
            ("gsi2sk", Value::S(format!("{now}#{}", new.id))),
        ],
        Some(Condition::NotExists),
    );
    let item = match &session {
        WriteOp::Put { item, .. } => item.clone(),
        _ => Item::new(),
    };
    let one = put(
        table,
        keys::appointment_video(&new.appointment_id),
        vec![("session_id", s(&new.id))],
        Some(Condition::NotExists),
    );
    match app.audit.commit(event, vec![one, session]).await {
        Ok(()) => Ok(Session::parse(&item)?),
        Err(CommitError::Change { .. }) => Err(CreateError::Exists),
        Err(err) => Err(CreateError::Api(err.into())),
    }
}

pub async fn get(app: &AppContext, id: &str) -> Result<Option<Session>, ApiError> {
    app.db
        .get(&app.config.table, &keys::video_session(id))
        .await?
        .map(|item| Session::parse(&item))
        .transpose()
}

/// An appointment's sessions (at most one), oldest first.
pub async fn for_appointment(
    app: &AppContext,
    appointment_id: &str,
    page: &PageRequest,
) -> Result<Page<SessionView>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::videos_for(appointment_id))
                .on(crate::ports::db::Index::Gsi2)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    Page::from_query(result, |item| {
        Session::parse(&item).map(|session| SessionView::of(&session, Vec::new()))
    })
}

/// The participants' stays in the session's rooms, in room order.
pub async fn stays(app: &AppContext, session: &Session) -> Result<Vec<Stay>, ApiError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = app
            .db
            .query(
                &app.config.table,
                Query::partition(keys::video_session(&session.id).pk)
                    .sort_key(SortKey::BeginsWith(keys::VIDEO_PARTICIPANTS.into()))
                    .limit(100)
                    .start(start),
            )
            .await?;
        for item in page.items {
            let left_at = opt_text(&item, "left_at");
            let duration = item.get("duration_secs").and_then(Value::as_i64);
            // A leave that arrived without its join still says when the stay began.
            let joined_at = opt_text(&item, "joined_at").or_else(|| {
                let left = crate::domain::Timestamp::parse(left_at.as_deref()?)?;
                Some(
                    crate::domain::Timestamp::new(
                        left.as_datetime() - chrono::Duration::seconds(duration?),
                    )
                    .to_string(),
                )
            });
            out.push(Stay {
                side: text(&item, "side"),
                room_name: text(&item, "room_name"),
                joined_at,
                left_at,
                duration_secs: duration,
            });
        }
        match page.next {
            Some(next) if out.len() < 1000 => start = Some(next),
            _ => return Ok(out),
        }
    }
}

/// A room just opened at Twilio, to record as the session's current room.
#[derive(Debug, Clone)]
pub struct OpenedRoom {
    /// Its number in the session.
    pub seq: i64,
    pub room: crate::ports::video::Room,
    /// Whether it was told to record.
    pub recording: bool,
}

/// One change of a session (each part optional).
#[derive(Debug, Clone, Default)]
pub struct SessionChange {
    pub status: Option<SessionStatus>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// The current room is over (the call was ended).
    pub room_completed: bool,
    /// A participant's consent to recording, and when it was given.
    pub consent: Option<(Side, bool, String)>,
    /// What the live room was told about recording.
    pub room_recording: Option<bool>,
    /// A new current room.
    pub new_room: Option<OpenedRoom>,
}

/// The writes of a change: the session's fields on the condition that its version is
/// the one read (and a new room's own item). Nothing is written here.
pub fn change_ops(app: &AppContext, session: &Session, change: SessionChange) -> Vec<WriteOp> {
    let mut sets: Vec<(&'static str, Value)> = Vec::new();
    if let Some(status) = change.status {
        sets.push(("status", s(status.as_str())));
    }
    if let Some(at) = &change.started_at {
        sets.push(("started_at", s(at)));
    }
    if let Some(at) = &change.ended_at {
        sets.push(("ended_at", s(at)));
    }
    if change.room_completed {
        sets.push(("room_status", s("completed")));
    }
    if let Some((side, given, at)) = &change.consent {
        let (field, when) = match side {
            Side::Patient => ("consent_patient", "consent_patient_at"),
            Side::Provider => ("consent_provider", "consent_provider_at"),
        };
        sets.push((field, Value::Bool(*given)));
        sets.push((when, s(at)));
    }
    if let Some(recording) = change.room_recording {
        sets.push(("room_recording", Value::Bool(recording)));
    }
    match &change.new_room {
        Some(opened) => room_ops(
            app,
            session,
            opened.seq,
            &opened.room,
            opened.recording,
            sets,
        ),
        None => vec![session_update(app, session, sets)],
    }
}

/// A change of a session: `sets` applied on the condition that its version is the one
/// read (the version moves on).
fn session_update(app: &AppContext, session: &Session, sets: Vec<(&str, Value)>) -> WriteOp {
    let mut update = Update::new()
        .add("version", 1)
        .set("updated_at", app.now().to_string().as_str());
    for (name, value) in sets {
        update = update.set(name, value);
    }
    WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::video_session(&session.id),
        update,
        condition: Some(Condition::Equals(
            "version".into(),
            Value::N(session.version),
        )),
    }
}

/// The writes that make `room` (number `seq`) the session's current room: the
/// session's room fields (with `extra` sets) and the room's own item.
fn room_ops(
    app: &AppContext,
    session: &Session,
    seq: i64,
    room: &crate::ports::video::Room,
    recording: bool,
    mut extra: Vec<(&'static str, Value)>,
) -> Vec<WriteOp> {
    let now = app.now().to_string();
    extra.extend([
        ("room_seq", Value::N(seq)),
        ("room_name", s(&room.unique_name)),
        ("room_sid", s(&room.sid)),
        ("room_status", s("in-progress")),
        ("room_recording", Value::Bool(recording)),
    ]);
    vec![
        session_update(app, session, extra),
        put(
            &app.config.table,
            keys::video_room(&session.id, seq),
            vec![
                ("room_name", s(&room.unique_name)),
                ("room_sid", s(&room.sid)),
                ("status", s("in-progress")),
                // No callback applied yet: Twilio numbers a room's callbacks from 0.
                ("seq", Value::N(-1)),
                ("created_at", s(&now)),
            ],
            None,
        ),
    ]
}

/// Why a session change was not made. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("the video session was changed by another request; retry")]
    Stale,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<ChangeError> for ApiError {
    fn from(err: ChangeError) -> Self {
        match err {
            ChangeError::Stale => ApiError::conflict(err.to_string()),
            ChangeError::Api(err) => err,
        }
    }
}

/// Commits session writes with their audit event (at most 4 items with the head).
pub async fn commit(
    app: &AppContext,
    ops: Vec<WriteOp>,
    event: AuditEvent,
) -> Result<(), ChangeError> {
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(()),
        Err(CommitError::Change { .. }) => Err(ChangeError::Stale),
        Err(err) => Err(ChangeError::Api(err.into())),
    }
}

// --- status callbacks ---------------------------------------------------------------------

/// A verified status callback, as far as its processing needs it.
#[derive(Debug, Clone)]
pub struct RoomCallback {
    /// `I-Twilio-Idempotency-Token` (or a digest of the signed parameters).
    pub token: String,
    pub session_id: String,
    /// The room's number in the session.
    pub room_seq: i64,
    pub room_sid: String,
    pub room_name: String,
    /// Twilio's `SequenceNumber` of the callback in its room.
    pub sequence: i64,
    /// When it happened (Twilio's `Timestamp`).
    pub at: String,
}

/// What a callback says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    Created,
    Ended {
        duration_secs: Option<i64>,
    },
    Connected {
        participant_sid: String,
        side: Option<Side>,
    },
    Disconnected {
        participant_sid: String,
        side: Option<Side>,
        duration_secs: Option<i64>,
    },
    Recording {
        recording_sid: String,
        event: String,
    },
}

/// What processing a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// The change and the callback's token were committed together.
    Applied,
    /// Older than the room's state (or about nothing of ours): nothing written.
    Ignored,
    /// Processed before: nothing done.
    Duplicate,
}

/// Whether the callback was processed before (a cheap check before any work).
pub async fn seen(app: &AppContext, token: &str) -> Result<bool, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::twilio_callback(token))
        .await?
        .is_some())
}

fn side_text(side: Option<Side>) -> &'static str {
    side.map(Side::as_str).unwrap_or("unknown")
}

/// Applies a callback: its token (once), the room's sequence number (only forward),
/// what it says about the room, a participant or a recording, and — when the current
/// room ended — the session's room status, with `audit`, in one transaction (at most 5
/// items with the head). An older callback or a replay changes nothing.
pub async fn apply(
    app: &AppContext,
    callback: &RoomCallback,
    event: &RoomEvent,
    session: &Session,
    audit: impl Fn() -> AuditEvent,
) -> Result<Processed, ApiError> {
    let table = app.config.table.clone();
    let now = app.now();
    let mut room = Update::new().set("seq", Value::N(callback.sequence));
    let mut ops = vec![put(
        &table,
        keys::twilio_callback(&callback.token),
        vec![
            ("session_id", s(&callback.session_id)),
            ("sequence", Value::N(callback.sequence)),
            (TTL, Value::N(now.epoch_secs() + CALLBACK_SECS)),
        ],
        Some(Condition::NotExists),
    )];
    let mut extra = Vec::new();
    let mut ends_current = false;
    match event {
        RoomEvent::Created => room = room.set("status", "in-progress"),
        RoomEvent::Ended { duration_secs } => {
            room = room
                .set("status", "completed")
                .set("ended_at", callback.at.as_str());
            if let Some(d) = duration_secs {
                room = room.set("duration_secs", Value::N(*d));
            }
            ends_current = session.room_seq == callback.room_seq;
        }
        RoomEvent::Connected {
            participant_sid,
            side,
        } => extra.push(WriteOp::Update {
            table: table.clone(),
            key: keys::video_participant(&session.id, callback.room_seq, participant_sid),
            update: Update::new()
                .set("side", side_text(*side))
                .set("room_name", callback.room_name.as_str())
                .set("joined_at", callback.at.as_str()),
            condition: None,
        }),
        RoomEvent::Disconnected {
            participant_sid,
            side,
            duration_secs,
        } => {
            let mut update = Update::new()
                .set("side", side_text(*side))
                .set("room_name", callback.room_name.as_str())
                .set("left_at", callback.at.as_str());
            if let Some(d) = duration_secs {
                update = update.set("duration_secs", Value::N(*d));
            }
            extra.push(WriteOp::Update {
                table: table.clone(),
                key: keys::video_participant(&session.id, callback.room_seq, participant_sid),
                update,
                condition: None,
            });
        }
        RoomEvent::Recording {
            recording_sid,
            event,
        } => extra.push(WriteOp::Update {
            table: table.clone(),
            key: keys::video_recording(&session.id, recording_sid),
            update: Update::new()
                .set("room_name", callback.room_name.as_str())
                .set("status", event.as_str())
                .set("updated_at", callback.at.as_str()),
            condition: None,
        }),
    }
    ops.push(WriteOp::Update {
        table: table.clone(),
        key: keys::video_room(&session.id, callback.room_seq),
        update: room,
        condition: Some(Condition::And(vec![
            Condition::Exists,
            Condition::Equals("room_sid".into(), s(&callback.room_sid)),
            Condition::LessThan("seq".into(), callback.sequence),
        ])),
    });
    ops.extend(extra);
    if ends_current {
        ops.push(WriteOp::Update {
            table,
            key: keys::video_session(&session.id),
            update: Update::new()
                .set("room_status", "completed")
                .set("updated_at", now.to_string().as_str())
                .add("version", 1),
            condition: Some(Condition::Equals(
                "room_seq".into(),
                Value::N(callback.room_seq),
            )),
        });
    }
    let ends_at = ops.len() - 1;
    match app.audit.commit(audit(), ops.clone()).await {
        Ok(()) => Ok(Processed::Applied),
        Err(CommitError::Change { op: 0 }) => Ok(Processed::Duplicate),
        Err(CommitError::Change { op: 1 }) => Ok(Processed::Ignored),
        // A newer room became current meanwhile: the room's own change still applies.
        Err(CommitError::Change { op }) if ends_current && op == ends_at => {
            ops.pop();
            match app.audit.commit(audit(), ops).await {
                Ok(()) => Ok(Processed::Applied),
                Err(CommitError::Change { op: 0 }) => Ok(Processed::Duplicate),
                Err(CommitError::Change { .. }) => Ok(Processed::Ignored),
                Err(err) => Err(err.into()),
            }
        }
        Err(CommitError::Change { .. }) => Ok(Processed::Ignored),
        Err(err) => Err(err.into()),
    }
}
