//! Secure messaging: conversations, their participants and messages, client message id
//! claims, and each user's event stream for `sync`.
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | conversation | `CONV#<id>` | `CONV` | patient, participants, `last_seq`, `last_message_at` |
//! | participant | `CONV#<id>` | `MEMBER#<user>` | `read_up_to`; gsi1 `CONVSOF#<user>` / `<id>` |
//! | message | `CONV#<id>` | `MSG#<seq, 20 digits>` | body sealed (`body`), or `client_body` as given |
//! | claim | `CONV#<id>` | `CMID#<sender>#<client id>` | the message a client id named |
//! | counter | `SYNC#<user>` | `SEQ` | the user's last event sequence number |
//! | event | `SYNC#<user>` | `EVT#<seq, 20 digits>` | ids only (no PHI); TTL 30 days |
//! | presence | `PRESENCE#<user>` | `PRESENCE` | state, last-seen; TTL 1 day |
//!
//! Ordering without read-then-write: a message takes the conversation's next sequence
//! number by a write conditioned on `last_seq` being what was read, and every event
//! takes its user's next number by a write conditioned on the counter likewise, in the
//! same transaction as the message or receipt it reports. A commit that lost a race
//! writes nothing and is retried on fresh numbers, so numbers are dense and commit in
//! order: a reader who has seen event `n` has seen every event before it (never a time
//! or a ULID, which a slower instance could commit behind a reader's back). The claim
//! of the client message id is a conditional put in the same transaction: of any number
//! of concurrent sends with one id exactly one commits; the others answer its message.
//!
//! Transaction size (one audited commit: at most 98 items of ours): a send writes 4
//! items (claim, message, conversation, sender's read marker), a care-relationship check
//! per provider and 2 per participant (counter, event): `3 + 3P` with `P` participants,
//! 63 at [`MAX_PARTICIPANTS`]; creating a conversation `1 + 3P` (61); a read receipt
//! `1 + 2P` (41). That bound is why a conversation holds at most [`MAX_PARTICIPANTS`].
//! Each attachment adds a check and a share per provider (`P` items) and its share's
//! audit event, which is why a message carries at most
//! [`crate::domain::conversation::attachments_fit`] of them.
//!
//! Bodies are PHI: a server body is envelope-sealed (`phi::seal`, purpose `docare-phi`,
//! bound to the message's key and the attribute `body`); a body the client encrypted
//! itself (`encryption: "client"`) is stored as given in `client_body` and returned
//! byte for byte. Events and claims hold ids and numbers only.

use crate::audit::{AuditEvent, CommitError};
use crate::auth::care;
use crate::auth::Principal;
use crate::domain::conversation::{Body, Encryption};
use crate::http::pagination::{Page, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{Condition, Index, Item, Key, Query, SortKey, Update, Value, WriteOp};
use crate::store::{documents, keys};
use crate::{phi, ApiError, AppContext};
use serde::Serialize;

pub use crate::domain::conversation::MAX_PARTICIPANTS;

/// What audit events and refusals name.
pub const RESOURCE: &str = "conversation";
/// A caller's list of conversations (with their user id).
pub const LIST_RESOURCE: &str = "conversations";
/// A caller's event stream (with their user id).
pub const SYNC_RESOURCE: &str = "message_sync";
/// How long events are kept for `sync`.
pub const EVENT_TTL_SECS: i64 = 30 * 86_400;
/// How long a presence record lives without an update.
pub const PRESENCE_TTL_SECS: i64 = 86_400;
/// Commits retried on fresh sequence numbers before a send answers 503 (the client
/// resends with the same id, which is safe).
pub const MAX_ATTEMPTS: u32 = 16;
/// Most events one `sync` page returns.
pub const MAX_SYNC_PAGE: u32 = 100;

/// Whether a conversation takes new messages.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every provider in it has an active care relationship with the patient.
    Open,
    /// A care relationship of it has ended: readable, no new messages.
    Closed,
}

/// A conversation as a participant sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Conversation {
    pub id: String,
    pub patient_id: String,
    /// Everyone in it, the creator first.
    pub participant_ids: Vec<String>,
    /// `open`, or `closed` once a care relationship of it has ended (computed from the
    /// relationships when read, as a send checks them; open again if one restarts).
    pub status: Status,
    pub created_by: String,
    pub created_at: String,
    /// The sequence number of its newest message (0: none yet).
    pub last_seq: i64,
    pub last_message_at: Option<String>,
    /// The caller's read marker: messages up to this seq are read.
    pub read_up_to: i64,
    /// Messages after the caller's read marker.
    pub unread_count: i64,
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub patient_id: String,
    pub participant_ids: Vec<String>,
    pub created_by: String,
    pub created_at: String,
    pub last_seq: i64,
    pub last_message_at: Option<String>,
}

impl Stored {
    pub fn has(&self, user_id: &str) -> bool {
        self.participant_ids.iter().any(|p| p == user_id)
    }

    /// The providers in it (everyone but the patient).
    pub fn providers(&self) -> impl Iterator<Item = &String> {
        self.participant_ids
            .iter()
            .filter(move |p| **p != self.patient_id)
    }

    /// Whether it takes new messages now: one read per provider of their care
    /// relationship with the patient (what a send checks in its transaction).
    pub async fn status(&self, app: &AppContext) -> Result<Status, ApiError> {
        for provider in self.providers() {
            if !care::is_active(app, provider, &self.patient_id).await? {
                return Ok(Status::Closed);
            }
        }
        Ok(Status::Open)
    }

    /// The view for one participant with their read marker.
    pub fn view(&self, read_up_to: i64, status: Status) -> Conversation {
        Conversation {
            id: self.id.clone(),
            patient_id: self.patient_id.clone(),
            participant_ids: self.participant_ids.clone(),
            status,
            created_by: self.created_by.clone(),
            created_at: self.created_at.clone(),
            last_seq: self.last_seq,
            last_message_at: self.last_message_at.clone(),
            read_up_to,
            unread_count: (self.last_seq - read_up_to).max(0),
        }
    }

    fn from_item(item: &Item) -> Result<Self, ApiError> {
        let bad = || ApiError::internal("a conversation item is malformed");
        Ok(Self {
            id: text(item, "id").ok_or_else(bad)?,
            patient_id: text(item, "patient_id").ok_or_else(bad)?,
            participant_ids: strings_of(item, "participant_ids"),
            created_by: text(item, "created_by").unwrap_or_default(),
            created_at: text(item, "created_at").unwrap_or_default(),
            last_seq: number(item, "last_seq"),
            last_message_at: text(item, "last_message_at"),
        })
    }
}

/// A message as shown.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    /// Its place in the conversation (1, 2, …; no gaps).
    pub seq: i64,
    pub sender_id: String,
    pub client_message_id: String,
    /// The text, or the client's ciphertext exactly as sent (`encryption: client`).
    pub body: String,
    pub encryption: Encryption,
    pub sent_at: String,
    /// The documents attached (ids): shared with every participant when it was sent.
    pub attachments: Vec<String>,
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Value::as_str).map(str::to_string)
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(Value::as_i64).unwrap_or(0)
}

fn strings_of(item: &Item, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(Value::L(values)) => values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn strings(values: &[String]) -> Value {
    Value::L(values.iter().map(|v| Value::S(v.clone())).collect())
}

/// One conversation; `None` when there is none with this id.
pub async fn stored(app: &AppContext, id: &str) -> Result<Option<Stored>, ApiError> {
    app.db
        .get(&app.config.table, &keys::conversation(id))
        .await?
        .as_ref()
        .map(Stored::from_item)
        .transpose()
}

/// A participant's read marker; `None` when the user is not in the conversation.
pub async fn read_marker(
    app: &AppContext,
    conversation_id: &str,
    user_id: &str,
) -> Result<Option<i64>, ApiError> {
    Ok(app
        .db
        .get(
            &app.config.table,
            &keys::participant(conversation_id, user_id),
        )
        .await?
        .map(|item| number(&item, "read_up_to")))
}

/// An event for a user's stream: what happened, in which conversation, ids only.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: &'static str,
    pub conversation_id: &'a str,
    /// Ids and numbers only (never a body).
    pub data: serde_json::Value,
}

/// The writes that append `event` to each user's stream (2 per user: the counter moved
/// from the value read just now, conditioned on it; the event under its new number),
/// and the numbers assigned.
async fn fan_out(
    app: &AppContext,
    users: &[String],
    event: &Event<'_>,
) -> Result<(Vec<WriteOp>, Vec<(String, i64)>), ApiError> {
    let now = app.now();
    let data = serde_json::to_string(&event.data).map_err(ApiError::internal)?;
    let mut ops = Vec::with_capacity(users.len() * 2);
    let mut assigned = Vec::with_capacity(users.len());
    for user in users {
        let current = current_seq(app, user).await?;
        let next = current + 1;
        ops.push(counter_move(app, user, current, next));
        ops.push(event_put(app, user, next, event, &data, now));
        assigned.push((user.clone(), next));
    }
    Ok((ops, assigned))
}

/// The write that moves a user's counter from `current` (as read) to `next`.
fn counter_move(app: &AppContext, user: &str, current: i64, next: i64) -> WriteOp {
    let condition = if current == 0 {
        Condition::AttributeNotExists("seq".into())
    } else {
        Condition::Equals("seq".into(), Value::N(current))
    };
    WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::sync_counter(user),
        update: Update::new().set("seq", next),
        condition: Some(condition),
    }
}

/// The put of one event under its number in a user's stream (`data`: its JSON).
fn event_put(
    app: &AppContext,
    user: &str,
    seq: i64,
    event: &Event<'_>,
    data: &str,
    now: crate::domain::Timestamp,
) -> WriteOp {
    let key = keys::sync_event(user, seq);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("seq".into(), Value::N(seq));
    item.insert("type".into(), Value::S(event.kind.into()));
    item.insert(
        "conversation_id".into(),
        Value::S(event.conversation_id.into()),
    );
    item.insert("data".into(), Value::S(data.to_string()));
    item.insert("at".into(), Value::S(now.to_string()));
    item.insert(
        "expires_at".into(),
        Value::N(now.epoch_secs() + EVENT_TTL_SECS),
    );
    WriteOp::Put {
        table: app.config.table.clone(),
        item,
        condition: Some(Condition::NotExists),
    }
}

/// The kind of the event that tells a conversation's participants it closed.
pub const CLOSED_EVENT: &str = "conversation_closed";
/// Most writes the closing events add to the transaction that ends a care relationship
/// (with the relationship and the audit event's 2 items, within DynamoDB's 100).
pub const CLOSING_BUDGET: usize = 90;

/// A conversation that a care relationship's end closes: its id and participants.
pub type Closing = (String, Vec<String>);

/// The conversations of `patient_id` that `provider_id` takes part in (a gsi1 query of
/// the patient's participant items, every page).
pub async fn of_patient_with(
    app: &AppContext,
    patient_id: &str,
    provider_id: &str,
) -> Result<Vec<Closing>, ApiError> {
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let result = app
            .db
            .query(
                &app.config.table,
                Query::partition(keys::conversations_of(patient_id))
                    .on(Index::Gsi1)
                    .limit(100)
                    .start(start),
            )
            .await?;
        for member in &result.items {
            let participants = strings_of(member, "participant_ids");
            if participants.iter().any(|p| p == provider_id) {
                if let Some(id) = text(member, "conversation_id") {
                    found.push((id, participants));
                }
            }
        }
        match result.next {
            Some(next) => start = Some(next),
            None => return Ok(found),
        }
    }
}

/// The writes of a [`CLOSED_EVENT`] per conversation and participant, for one
/// transaction of at most `budget` writes: per user one counter move (from the number
/// read, conditioned on it, by as many events as they get) and one event per
/// conversation. Conversations that do not fit are returned for [`close_later`].
pub async fn closing_events(
    app: &AppContext,
    conversations: &[Closing],
    budget: usize,
) -> Result<(Vec<WriteOp>, Vec<Closing>), ApiError> {
    let mut per_user: Vec<(String, Vec<&str>)> = Vec::new();
    let mut count = 0;
    let mut rest = Vec::new();
    for (id, participants) in conversations {
        let new_users = participants
            .iter()
            .filter(|p| !per_user.iter().any(|(user, _)| user == *p))
            .count();
        if count + new_users + participants.len() > budget {
            rest.push((id.clone(), participants.clone()));
            continue;
        }
        count += new_users + participants.len();
        for user in participants {
            match per_user.iter_mut().find(|(u, _)| u == user) {
                Some((_, ids)) => ids.push(id.as_str()),
                None => per_user.push((user.clone(), vec![id.as_str()])),
            }
        }
    }
    let now = app.now();
    let mut ops = Vec::with_capacity(count);
    for (user, ids) in per_user {
        let current = current_seq(app, &user).await?;
        ops.push(counter_move(
            app,
            &user,
            current,
            current + ids.len() as i64,
        ));
        for (n, id) in ids.into_iter().enumerate() {
            let event = Event {
                kind: CLOSED_EVENT,
                conversation_id: id,
                data: serde_json::json!({"conversation_id": id}),
            };
            let data = serde_json::to_string(&event.data).map_err(ApiError::internal)?;
            ops.push(event_put(
                app,
                &user,
                current + 1 + n as i64,
                &event,
                &data,
                now,
            ));
        }
    }
    Ok((ops, rest))
}

/// The closing events of conversations that did not fit the ending's transaction, one
/// transaction per conversation after it committed. Best effort: a failure is logged
/// (the conversations' `status` is computed, so it is right regardless).
pub async fn close_later(app: &AppContext, rest: &[Closing]) {
    for (id, participants) in rest {
        let event = Event {
            kind: CLOSED_EVENT,
            conversation_id: id,
            data: serde_json::json!({"conversation_id": id}),
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let ops = match fan_out(app, participants, &event).await {
                Ok((ops, _)) => ops,
                Err(err) => {
                    tracing::warn!(conversation_id = %id, error = %err, "closing event not recorded");
                    break;
                }
            };
            match app.db.transact_write(ops).await {
                Ok(()) => break,
                Err(err) if err.is_condition_failed() && attempt < MAX_ATTEMPTS => {
                    back_off(attempt).await
                }
                Err(err) => {
                    tracing::warn!(conversation_id = %id, error = %err, "closing event not recorded");
                    break;
                }
            }
        }
    }
}

/// A user's last event number (0: none yet): what `sync` without `since` answers.
pub async fn current_seq(app: &AppContext, user_id: &str) -> Result<i64, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::sync_counter(user_id))
        .await?
        .map(|item| number(&item, "seq"))
        .unwrap_or(0))
}

/// A short random pause before retrying a commit that lost a race.
pub(crate) async fn back_off(attempt: u32) {
    use rand::Rng;
    let most = 5 + 10 * u64::from(attempt.min(10));
    let wait = rand::thread_rng().gen_range(1..=most);
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
}

fn busy() -> ApiError {
    ApiError::unavailable(
        "database",
        "the conversation is busy: retry (with the same client_message_id)",
    )
}

/// What a new conversation holds.
pub struct NewConversation<'a> {
    pub id: &'a str,
    pub patient_id: &'a str,
    /// Everyone, the creator first (`domain::conversation::participants`).
    pub participant_ids: &'a [String],
    pub created_by: &'a str,
}

/// Creates a conversation with a participant item for each, a care-relationship check
/// per provider (so a relationship ended meanwhile fails it: 409) and a
/// `conversation` event in every participant's stream, committed with `event`
/// (`1 + 3P` items). Returns it and the event numbers.
pub async fn create(
    app: &AppContext,
    new: NewConversation<'_>,
    event: AuditEvent,
) -> Result<(Stored, Vec<(String, i64)>), ApiError> {
    let now = app.now().to_string();
    let table = app.config.table.clone();
    let conversation = Stored {
        id: new.id.to_string(),
        patient_id: new.patient_id.to_string(),
        participant_ids: new.participant_ids.to_vec(),
        created_by: new.created_by.to_string(),
        created_at: now.clone(),
        last_seq: 0,
        last_message_at: None,
    };
    let key = keys::conversation(new.id);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("id".into(), Value::S(new.id.into()));
    item.insert("patient_id".into(), Value::S(new.patient_id.into()));
    item.insert("participant_ids".into(), strings(new.participant_ids));
    item.insert("created_by".into(), Value::S(new.created_by.into()));
    item.insert("created_at".into(), Value::S(now.clone()));
    item.insert("last_seq".into(), Value::N(0));
    let mut base = vec![WriteOp::Put {
        table: table.clone(),
        item,
        condition: Some(Condition::NotExists),
    }];
    for user in new.participant_ids {
        let key = keys::participant(new.id, user);
        let mut member = Item::new();
        member.insert("pk".into(), Value::S(key.pk));
        member.insert("sk".into(), Value::S(key.sk));
        member.insert("conversation_id".into(), Value::S(new.id.into()));
        member.insert("user_id".into(), Value::S(user.clone()));
        member.insert("participant_ids".into(), strings(new.participant_ids));
        member.insert("read_up_to".into(), Value::N(0));
        member.insert("gsi1pk".into(), Value::S(keys::conversations_of(user)));
        member.insert("gsi1sk".into(), Value::S(new.id.into()));
        base.push(WriteOp::Put {
            table: table.clone(),
            item: member,
            condition: Some(Condition::NotExists),
        });
    }
    let checks_from = base.len();
    base.extend(
        conversation
            .providers()
            .map(|provider| care::active_check(app, provider, new.patient_id)),
    );
    let checks_to = base.len();
    let data = serde_json::json!({"conversation_id": new.id, "created_by": new.created_by});
    for attempt in 1..=MAX_ATTEMPTS {
        let (fan, assigned) = fan_out(
            app,
            new.participant_ids,
            &Event {
                kind: "conversation",
                conversation_id: new.id,
                data: data.clone(),
            },
        )
        .await?;
        let mut ops = base.clone();
        ops.extend(fan);
        match app.audit.commit(event.clone(), ops).await {
            Ok(()) => return Ok((conversation, assigned)),
            Err(CommitError::Change { op }) if (checks_from..checks_to).contains(&op) => {
                return Err(ended());
            }
            Err(CommitError::Change { op }) if op < checks_from => {
                return Err(ApiError::conflict("this conversation exists"));
            }
            Err(CommitError::Change { .. }) => back_off(attempt).await,
            Err(err) => return Err(err.into()),
        }
    }
    Err(busy())
}

fn ended() -> ApiError {
    ApiError::conflict(
        "a care relationship of this conversation has ended: it can be read but takes no new messages",
    )
}

/// One page of a user's conversations (one gsi1 query, one read per conversation),
/// oldest first.
pub async fn list(
    app: &AppContext,
    user_id: &str,
    page: &PageRequest,
) -> Result<Page<Conversation>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::conversations_of(user_id))
                .on(Index::Gsi1)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for member in &result.items {
        let Some(id) = text(member, "conversation_id") else {
            continue;
        };
        if let Some(conversation) = stored(app, &id).await? {
            let status = conversation.status(app).await?;
            items.push(conversation.view(number(member, "read_up_to"), status));
        }
    }
    Ok(Page::new(items, result.next))
}

/// A message to send.
pub struct Outgoing<'a> {
    pub sender_id: &'a str,
    pub client_message_id: &'a str,
    pub body: Body,
    /// Documents of the sender's (the conversation's patient) to share with the other
    /// participants, each with the audit event of its share.
    pub attachments: Vec<Attachment<'a>>,
}

/// A document attached to a message, checked by the caller to be the sender's and
/// available; the send checks both again in its transaction.
pub struct Attachment<'a> {
    pub document: &'a documents::Stored,
    /// The share's audit event (committed with the message's).
    pub event: AuditEvent,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Stored now, with the event numbers of each participant.
    New(Message, Vec<(String, i64)>),
    /// The client id was already used by this sender here: that message.
    Repeat(Message),
}

impl Sent {
    pub fn message(&self) -> &Message {
        match self {
            Sent::New(message, _) | Sent::Repeat(message) => message,
        }
    }
}

/// The message a claim names, if the client id was used.
async fn claimed(app: &AppContext, claim: &Key) -> Result<Option<(String, i64)>, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, claim)
        .await?
        .and_then(|item| Some((text(&item, "conversation_id")?, number(&item, "seq")))))
}

/// Sends a message: the claim of its client id, the message under the conversation's
/// next seq, the conversation's `last_seq`, the sender's read marker, a check of each
/// provider's care relationship, per attachment a check that the document is still the
/// sender's and available and a share with each provider, and a `message` event per
/// participant, in one audited commit (`3 + 3P + A·P` items, plus the message's and
/// each share's audit event). A repeat of a client id (however many race) answers the
/// message the first one stored; an ended relationship or an attachment that changed
/// meanwhile is a 409 and stores nothing. `event` is the audit event given the new
/// message's id.
pub async fn send(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    conversation: &Stored,
    out: Outgoing<'_>,
    event: impl Fn(&str) -> AuditEvent,
) -> Result<Sent, ApiError> {
    let table = app.config.table.clone();
    let claim = keys::client_message(&conversation.id, out.sender_id, out.client_message_id);
    for attempt in 1..=MAX_ATTEMPTS {
        if let Some((conversation_id, seq)) = claimed(app, &claim).await? {
            let repeat = message(app, req, principal, &conversation_id, seq)
                .await?
                .ok_or_else(|| ApiError::internal("a claim names no message"))?;
            return Ok(Sent::Repeat(repeat));
        }
        let current = stored(app, &conversation.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let seq = current.last_seq + 1;
        let id = app.new_id();
        let now = app.now().to_string();
        let key = keys::message(&conversation.id, seq);
        let mut item = Item::new();
        item.insert("pk".into(), Value::S(key.pk.clone()));
        item.insert("sk".into(), Value::S(key.sk.clone()));
        item.insert("id".into(), Value::S(id.clone()));
        item.insert("conversation_id".into(), Value::S(conversation.id.clone()));
        item.insert("seq".into(), Value::N(seq));
        item.insert("sender_id".into(), Value::S(out.sender_id.into()));
        item.insert(
            "client_message_id".into(),
            Value::S(out.client_message_id.into()),
        );
        item.insert(
            "encryption".into(),
            Value::S(out.body.encryption.as_str().into()),
        );
        item.insert("sent_at".into(), Value::S(now.clone()));
        let attachment_ids: Vec<String> = out
            .attachments
            .iter()
            .map(|a| a.document.id.clone())
            .collect();
        if !attachment_ids.is_empty() {
            item.insert("attachments".into(), strings(&attachment_ids));
        }
        match out.body.encryption {
            Encryption::Server => {
                item.insert(
                    "body".into(),
                    phi::seal(app, &key, "body", &out.body.text).await?,
                );
            }
            Encryption::Client => {
                item.insert("client_body".into(), Value::S(out.body.text.clone()));
            }
        }
        let mut claim_item = Item::new();
        claim_item.insert("pk".into(), Value::S(claim.pk.clone()));
        claim_item.insert("sk".into(), Value::S(claim.sk.clone()));
        claim_item.insert("message_id".into(), Value::S(id.clone()));
        claim_item.insert("conversation_id".into(), Value::S(conversation.id.clone()));
        claim_item.insert("seq".into(), Value::N(seq));
        let mut ops = vec![
            // 0: the client id is unused.
            WriteOp::Put {
                table: table.clone(),
                item: claim_item,
                condition: Some(Condition::NotExists),
            },
            // 1: the message.
            WriteOp::Put {
                table: table.clone(),
                item,
                condition: Some(Condition::NotExists),
            },
            // 2: the conversation moves from the seq read.
            WriteOp::Update {
                table: table.clone(),
                key: keys::conversation(&conversation.id),
                update: Update::new()
                    .set("last_seq", seq)
                    .set("last_message_at", now.clone()),
                condition: Some(Condition::Equals(
                    "last_seq".into(),
                    Value::N(current.last_seq),
                )),
            },
            // 3: the sender has read up to their own message.
            WriteOp::Update {
                table: table.clone(),
                key: keys::participant(&conversation.id, out.sender_id),
                update: Update::new().set("read_up_to", seq),
                condition: Some(Condition::Exists),
            },
        ];
        let checks_from = ops.len();
        ops.extend(
            conversation
                .providers()
                .map(|provider| care::active_check(app, provider, &conversation.patient_id)),
        );
        let checks_to = ops.len();
        let mut attachment_checks = Vec::with_capacity(out.attachments.len());
        for attachment in &out.attachments {
            attachment_checks.push(ops.len());
            ops.extend(documents::attach_ops(
                app,
                attachment.document,
                Some(out.sender_id),
                conversation.providers().map(String::as_str),
            ));
        }
        let (fan, assigned) = fan_out(
            app,
            &conversation.participant_ids,
            &Event {
                kind: "message",
                conversation_id: &conversation.id,
                data: serde_json::json!({"message_id": id, "seq": seq, "sender_id": out.sender_id,
                    "client_message_id": out.client_message_id}),
            },
        )
        .await?;
        ops.extend(fan);
        let mut events = vec![event(&id)];
        events.extend(out.attachments.iter().map(|a| a.event.clone()));
        match app.audit.commit_all(events, ops).await {
            Ok(()) => {
                return Ok(Sent::New(
                    Message {
                        id,
                        conversation_id: conversation.id.clone(),
                        seq,
                        sender_id: out.sender_id.to_string(),
                        client_message_id: out.client_message_id.to_string(),
                        body: out.body.text.clone(),
                        encryption: out.body.encryption,
                        sent_at: now,
                        attachments: attachment_ids,
                    },
                    assigned,
                ));
            }
            // The client id was taken meanwhile: the next round answers its message.
            Err(CommitError::Change { op: 0 }) => continue,
            Err(CommitError::Change { op }) if (checks_from..checks_to).contains(&op) => {
                return Err(ended());
            }
            Err(CommitError::Change { op }) if attachment_checks.contains(&op) => {
                return Err(ApiError::conflict(
                    "an attachment was deleted or changed meanwhile: nothing was sent",
                ));
            }
            Err(CommitError::Change { op: 3 }) => return Err(ApiError::NotFound),
            // Another message or event took the number: again on fresh numbers.
            Err(CommitError::Change { .. }) => back_off(attempt).await,
            Err(err) => return Err(err.into()),
        }
    }
    Err(busy())
}

/// Opens a message item for a request (an integrity failure is audited and fails it).
async fn open(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    item: &Item,
) -> Result<Message, ApiError> {
    let conversation_id = text(item, "conversation_id").unwrap_or_default();
    let encryption = text(item, "encryption")
        .as_deref()
        .and_then(Encryption::parse)
        .ok_or_else(|| ApiError::internal("a message item is malformed"))?;
    let body = match encryption {
        Encryption::Client => text(item, "client_body").unwrap_or_default(),
        Encryption::Server => phi::open_audited(
            app,
            req,
            principal,
            item,
            &["body"],
            (RESOURCE, &conversation_id),
        )
        .await?
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_default(),
    };
    Ok(Message {
        id: text(item, "id").unwrap_or_default(),
        conversation_id,
        seq: number(item, "seq"),
        sender_id: text(item, "sender_id").unwrap_or_default(),
        client_message_id: text(item, "client_message_id").unwrap_or_default(),
        body,
        encryption,
        sent_at: text(item, "sent_at").unwrap_or_default(),
        attachments: strings_of(item, "attachments"),
    })
}

/// The message with this seq, opened.
pub async fn message(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    conversation_id: &str,
    seq: i64,
) -> Result<Option<Message>, ApiError> {
    match app
        .db
        .get(&app.config.table, &keys::message(conversation_id, seq))
        .await?
    {
        Some(item) => Ok(Some(open(app, req, principal, &item).await?)),
        None => Ok(None),
    }
}

/// A page of messages, newest first.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// Pass as `before` for the next (older) page; null at the first message.
    pub next_before: Option<i64>,
}

/// Up to `limit` messages before seq `before` (default: the newest), newest first (one
/// query).
pub async fn messages(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    conversation_id: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<MessagePage, ApiError> {
    let range = match before {
        Some(before) if before <= 1 => {
            return Ok(MessagePage {
                items: Vec::new(),
                next_before: None,
            })
        }
        Some(before) => SortKey::Between(keys::MESSAGE_SK.into(), keys::message_sk(before - 1)),
        None => SortKey::BeginsWith(keys::MESSAGE_SK.into()),
    };
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::conversation_partition(conversation_id))
                .sort_key(range)
                .descending()
                .limit(limit),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for item in &result.items {
        items.push(open(app, req, principal, item).await?);
    }
    let next_before = match items.last() {
        Some(last) if items.len() as u32 == limit && last.seq > 1 => Some(last.seq),
        _ => None,
    };
    Ok(MessagePage { items, next_before })
}

/// How a read receipt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// Moved to `up_to`, with the event numbers of each participant.
    Moved(Vec<(String, i64)>),
    /// The marker was already there or further: nothing changed.
    Unchanged(i64),
}

/// Moves a participant's read marker forward to `up_to` (never back) with a `read`
/// event per participant, committed with `event` (`1 + 2P` items).
pub async fn mark_read(
    app: &AppContext,
    conversation: &Stored,
    user_id: &str,
    up_to: i64,
    event: AuditEvent,
) -> Result<Marked, ApiError> {
    for attempt in 1..=MAX_ATTEMPTS {
        let current = read_marker(app, &conversation.id, user_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        if current >= up_to {
            return Ok(Marked::Unchanged(current));
        }
        let mut ops = vec![WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::participant(&conversation.id, user_id),
            update: Update::new().set("read_up_to", up_to),
            condition: Some(Condition::Equals("read_up_to".into(), Value::N(current))),
        }];
        let (fan, assigned) = fan_out(
            app,
            &conversation.participant_ids,
            &Event {
                kind: "read",
                conversation_id: &conversation.id,
                data: serde_json::json!({"user_id": user_id, "up_to": up_to}),
            },
        )
        .await?;
        ops.extend(fan);
        match app.audit.commit(event.clone(), ops).await {
            Ok(()) => return Ok(Marked::Moved(assigned)),
            Err(CommitError::Change { op: 0 }) => continue,
            Err(CommitError::Change { .. }) => back_off(attempt).await,
            Err(err) => return Err(err.into()),
        }
    }
    Err(busy())
}

/// One event of a user's stream as stored (ids only).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub seq: i64,
    pub kind: String,
    pub conversation_id: String,
    pub at: String,
    pub data: serde_json::Value,
}

/// Why a `since` cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Beyond the user's last event: not a token of theirs.
    Ahead,
    /// Older than the events kept ([`EVENT_TTL_SECS`]).
    Expired,
}

/// Up to `limit` events after `since`, in order, and the user's last event number;
/// `Err(Gap)` when the token cannot be answered.
pub async fn events_since(
    app: &AppContext,
    user_id: &str,
    since: i64,
    limit: u32,
) -> Result<Result<(Vec<Recorded>, i64), Gap>, ApiError> {
    let current = current_seq(app, user_id).await?;
    if since > current {
        return Ok(Err(Gap::Ahead));
    }
    if since == current {
        return Ok(Ok((Vec::new(), current)));
    }
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::sync_partition(user_id))
                .sort_key(SortKey::Between(
                    keys::event_sk(since + 1),
                    keys::event_sk(current),
                ))
                .limit(limit),
        )
        .await?;
    let events: Vec<Recorded> = result
        .items
        .iter()
        .map(|item| Recorded {
            seq: number(item, "seq"),
            kind: text(item, "type").unwrap_or_default(),
            conversation_id: text(item, "conversation_id").unwrap_or_default(),
            at: text(item, "at").unwrap_or_default(),
            data: text(item, "data")
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null),
        })
        .collect();
    if events.first().map(|e| e.seq) != Some(since + 1) {
        return Ok(Err(Gap::Expired));
    }
    Ok(Ok((events, current)))
}

/// Records a user's presence (`online` or `away`) seen now.
pub async fn set_presence(app: &AppContext, user_id: &str, state: &str) -> Result<i64, ApiError> {
    let now = app.clock.now().timestamp();
    let key = keys::presence(user_id);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("state".into(), Value::S(state.into()));
    item.insert("last_seen".into(), Value::N(now));
    item.insert("expires_at".into(), Value::N(now + PRESENCE_TTL_SECS));
    app.db.put(&app.config.table, item, None).await?;
    Ok(now)
}

/// A user's last presence: state and last-seen (epoch seconds), if any.
pub async fn presence(app: &AppContext, user_id: &str) -> Result<Option<(String, i64)>, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::presence(user_id))
        .await?
        .map(|item| {
            (
                text(&item, "state").unwrap_or_default(),
                number(&item, "last_seen"),
            )
        }))
}

/// Everyone who shares a conversation with the user (one gsi1 query over their first
/// 100 conversations), without the user.
pub async fn contacts(app: &AppContext, user_id: &str) -> Result<Vec<String>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::conversations_of(user_id))
                .on(Index::Gsi1)
                .limit(100),
        )
        .await?;
    let mut people: Vec<String> = Vec::new();
    for member in &result.items {
        for other in strings_of(member, "participant_ids") {
            if other != user_id && !people.contains(&other) {
                people.push(other);
            }
        }
    }
    Ok(people)
}
