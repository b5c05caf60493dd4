//! The video port offline, in process: a fake Twilio for the local stack (its default)
//! and tests. It keeps rooms in memory (a second in-progress room of one unique name is
//! the first, as Twilio answers), checks the API key on every call as Twilio does, and
//! emits the room status callbacks Twilio would (`room-created`, `participant-connected`,
//! `participant-disconnected`, `recording-started`, `room-ended`), numbered per room
//! (`SequenceNumber`), each with an `I-Twilio-Idempotency-Token` and signed with the
//! auth token (`X-Twilio-Signature` over the room's status callback URL and the sorted
//! parameters). The credentials live in the data folder's `secrets.json`
//! (`docare/local/twilio/{account_sid,api_key_sid,api_key_secret,auth_token}`), so any
//! client can sign and verify as Twilio would. Once told to ([`FakeTwilio::deliver`]),
//! each callback is also POSTed to its URL (the local webhook route).

use crate::clock::Clock;
use crate::ports::video::{NewRoom, Room, Video, VideoError};
use crate::ports::SecretStore;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One signed status callback as Twilio would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The URL it was signed for and is sent to.
    pub url: String,
    pub event: String,
    pub params: Vec<(String, String)>,
    /// The form-encoded body.
    pub body: String,
    pub signature: String,
    pub idempotency_token: String,
}

#[derive(Debug, Clone)]
struct FakeRoom {
    room: Room,
    callback: String,
    record: bool,
    sequence: i64,
    /// identity → (participant SID, connected at).
    connected: HashMap<String, (String, chrono::DateTime<chrono::Utc>)>,
    created: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, FakeRoom>,
    received: Vec<(String, Vec<(String, String)>)>,
    callbacks: Vec<Callback>,
    down: bool,
    deliver: bool,
}

/// The fake's credentials: the account it speaks for and the auth token it signs with.
#[derive(Clone)]
pub struct FakeTwilioAccount {
    pub account_sid: String,
    pub auth_token: String,
}

pub struct FakeTwilio {
    account: FakeTwilioAccount,
    /// Where the API key is read on every call (the local stack's `secrets.json`), with
    /// the names of its SID and secret; `None`: no key needed.
    api_key: Option<(Arc<dyn SecretStore>, String, String)>,
    /// The key the calls must present (SID, secret).
    expected_key: Option<(String, String)>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

fn random(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

impl FakeTwilio {
    pub fn new(account: FakeTwilioAccount, clock: Arc<dyn Clock>) -> Self {
        Self {
            account,
            api_key: None,
            expected_key: None,
            clock,
            state: Mutex::default(),
        }
    }

    /// Requires, on every call, the API key read from `store` (as the REST adapter
    /// reads it) to be `expected` (a wrong or missing key fails as Twilio's 401 does:
    /// unavailable).
    pub fn with_api_key_from(
        mut self,
        store: Arc<dyn SecretStore>,
        names: (String, String),
        expected: (String, String),
    ) -> Self {
        self.api_key = Some((store, names.0, names.1));
        self.expected_key = Some(expected);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn authorize(&self) -> Result<(), VideoError> {
        let (Some((store, sid_name, secret_name)), Some((sid, secret))) =
            (&self.api_key, &self.expected_key)
        else {
            return Ok(());
        };
        let read = |r: Result<Option<zeroize::Zeroizing<String>>, _>| match r {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(VideoError::Unavailable("fake Twilio: no API key".into())),
            Err(err) => Err(VideoError::Unavailable(Box::new(err))),
        };
        let given_sid = read(store.get(sid_name).await)?;
        let given_secret = read(store.get(secret_name).await)?;
        if given_sid.as_str() == sid && given_secret.as_str() == secret {
            Ok(())
        } else {
            Err(VideoError::Unavailable(
                "fake Twilio: 401 (wrong API key)".into(),
            ))
        }
    }

    fn enter(&self, what: &str, form: &[(String, String)]) -> Result<(), VideoError> {
        let mut state = self.state();
        if state.down {
            return Err(VideoError::Unavailable("fake Twilio is down".into()));
        }
        state.received.push((what.to_string(), form.to_vec()));
        Ok(())
    }

    /// From now on, every callback is also POSTed to its URL (the local stack).
    pub fn deliver(&self, on: bool) {
        self.state().deliver = on;
    }

    /// Simulates an outage: every call fails as a timeout would.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Every request the fake received: (method and path, form fields), in order.
    pub fn received(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state().received.clone()
    }

    /// Every signed callback so far.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.state().callbacks.clone()
    }

    /// The room's state as the fake keeps it (`None`: no such room).
    pub fn room(&self, sid: &str) -> Option<(Room, bool)> {
        self.state()
            .rooms
            .get(sid)
            .map(|r| (r.room.clone(), r.record))
    }

    /// A participant with this identity (from their access token) joins the room:
    /// `participant-connected`.
    pub fn connect(&self, room_sid: &str, identity: &str) -> Option<Callback> {
        let now = self.clock.now();
        let participant = {
            let mut state = self.state();
            let room = state.rooms.get_mut(room_sid)?;
            if !room.room.is_live() {
                return None;
            }
            let sid = random("PA");
            room.connected
                .insert(identity.to_string(), (sid.clone(), now));
            sid
        };
        let extra = vec![
            ("ParticipantSid".to_string(), participant),
            ("ParticipantIdentity".to_string(), identity.to_string()),
            ("ParticipantStatus".to_string(), "connected".to_string()),
        ];
        self.emit(room_sid, "participant-connected", extra)
    }

    /// The participant leaves (or drops): `participant-disconnected` with the duration.
    pub fn disconnect(&self, room_sid: &str, identity: &str) -> Option<Callback> {
        let now = self.clock.now();
        let (participant, since) = {
            let mut state = self.state();
            let room = state.rooms.get_mut(room_sid)?;
            room.connected.remove(identity)?
        };
        let extra = vec![
            ("ParticipantSid".to_string(), participant),
            ("ParticipantIdentity".to_string(), identity.to_string()),
            ("ParticipantStatus".to_string(), "disconnected".to_string()),
            (
                "ParticipantDuration".to_string(),
                (now - since).num_seconds().max(0).to_string(),
            ),
        ];
        self.emit(room_sid, "participant-disconnected", extra)
    }

    /// The room ends as Twilio ends an empty room after its timeout (or a dropped call):
    /// everyone still connected is disconnected, then `room-ended`.
    pub fn end_room(&self, room_sid: &str) -> Vec<Callback> {
        let identities: Vec<String> = match self.state().rooms.get(room_sid) {
            Some(room) => room.connected.keys().cloned().collect(),
            None => return Vec::new(),
        };
        let mut out: Vec<Callback> = identities
            .iter()
            .filter_map(|identity| self.disconnect(room_sid, identity))
            .collect();
        let duration = {
            let mut state = self.state();
            let Some(room) = state.rooms.get_mut(room_sid) else {
                return out;
            };
            if !room.room.is_live() {
                return out;
            }
            room.room.status = "completed".into();
            (self.clock.now() - room.created).num_seconds().max(0)
        };
        out.extend(self.emit(
            room_sid,
            "room-ended",
            vec![("RoomDuration".to_string(), duration.to_string())],
        ));
        out
    }

    /// Signs and records (and delivers, when told to) the room's next callback.
    fn emit(&self, room_sid: &str, event: &str, extra: Vec<(String, String)>) -> Option<Callback> {
        let (room, url, sequence) = {
            let mut state = self.state();
            let room = state.rooms.get_mut(room_sid)?;
            let sequence = room.sequence;
            room.sequence += 1;
            (room.room.clone(), room.callback.clone(), sequence)
        };
        let now = self.clock.now();
        let mut params = vec![
            ("AccountSid".to_string(), self.account.account_sid.clone()),
            ("RoomName".to_string(), room.unique_name.clone()),
            ("RoomSid".to_string(), room.sid.clone()),
            ("RoomStatus".to_string(), room.status.clone()),
            ("RoomType".to_string(), "group".to_string()),
            ("StatusCallbackEvent".to_string(), event.to_string()),
            (
                "Timestamp".to_string(),
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            ("SequenceNumber".to_string(), sequence.to_string()),
        ];
        params.extend(extra);
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let callback = Callback {
            signature: crate::video::signature(&self.account.auth_token, &url, &params),
            url,
            event: event.to_string(),
            params,
            body,
            idempotency_token: random(""),
        };
        let deliver = {
            let mut state = self.state();
            state.callbacks.push(callback.clone());
            state.deliver
        };
        if deliver {
            let sent = callback.clone();
            tokio::spawn(async move {
                let result = reqwest::Client::new()
                    .post(&sent.url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header(crate::video::SIGNATURE_HEADER, &sent.signature)
                    .header(crate::video::IDEMPOTENCY_HEADER, &sent.idempotency_token)
                    .body(sent.body.clone())
                    .send()
                    .await;
                if let Err(err) = result {
                    tracing::warn!(event = %sent.event, error = %err.without_url(), "fake Twilio: callback not delivered");
                }
            });
        }
        Some(callback)
    }

    fn start_recording(&self, room_sid: &str) {
        let connected = self
            .state()
            .rooms
            .get(room_sid)
            .is_some_and(|r| !r.connected.is_empty());
        if connected {
            self.emit(
                room_sid,
                "recording-started",
                vec![
                    ("RecordingSid".to_string(), random("RT")),
                    ("RecordingStatus".to_string(), "processing".to_string()),
                ],
            );
        }
    }
}

#[async_trait]
impl Video for FakeTwilio {
    async fn create_room(&self, new: &NewRoom) -> Result<Room, VideoError> {
        self.authorize().await?;
        let form = crate::adapters::aws::twilio::room_form(new);
        self.enter("POST /v1/Rooms", &form)?;
        let sid = {
            let mut state = self.state();
            if let Some(existing) = state
                .rooms
                .values()
                .find(|r| r.room.unique_name == new.unique_name && r.room.is_live())
            {
                return Ok(existing.room.clone());
            }
            let sid = random("RM");
            let room = Room {
                sid: sid.clone(),
                unique_name: new.unique_name.clone(),
                status: "in-progress".into(),
            };
            state.rooms.insert(
                sid.clone(),
                FakeRoom {
                    room,
                    callback: new.status_callback.clone(),
                    record: new.record,
                    sequence: 0,
                    connected: HashMap::new(),
                    created: self.clock.now(),
                },
            );
            sid
        };
        self.emit(&sid, "room-created", Vec::new());
        self.state()
            .rooms
            .get(&sid)
            .map(|r| r.room.clone())
            .ok_or(VideoError::NotFound)
    }

    async fn fetch_room(&self, sid: &str) -> Result<Room, VideoError> {
        self.authorize().await?;
        self.enter(&format!("GET /v1/Rooms/{sid}"), &[])?;
        self.state()
            .rooms
            .get(sid)
            .map(|r| r.room.clone())
            .ok_or(VideoError::NotFound)
    }

    async fn complete_room(&self, sid: &str) -> Result<Room, VideoError> {
        self.authorize().await?;
        let form = [("Status".to_string(), "completed".to_string())];
        self.enter(&format!("POST /v1/Rooms/{sid}"), &form)?;
        if !self.state().rooms.contains_key(sid) {
            return Err(VideoError::NotFound);
        }
        self.end_room(sid);
        self.state()
            .rooms
            .get(sid)
            .map(|r| r.room.clone())
            .ok_or(VideoError::NotFound)
    }

    async fn set_recording(&self, sid: &str, record: bool) -> Result<(), VideoError> {
        self.authorize().await?;
        let form = [(
            "Rules".to_string(),
            crate::adapters::aws::twilio::recording_rules(record),
        )];
        self.enter(&format!("POST /v1/Rooms/{sid}/RecordingRules"), &form)?;
        let started = {
            let mut state = self.state();
            let room = state.rooms.get_mut(sid).ok_or(VideoError::NotFound)?;
            let started = record && !room.record;
            room.record = record;
            started
        };
        if started {
            self.start_recording(sid);
        }
        Ok(())
    }
}
