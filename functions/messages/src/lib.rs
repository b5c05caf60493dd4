//! The messages function: secure conversations between a patient and the providers of
//! their care team, their messages and read receipts, and `sync`, which gives a client
//! everything it missed, in order, across its conversations (`shared::store::messages`
//! keeps the per-user event sequence it is built on).
//!
//! Who may do what: the participants of a conversation read it, send to it and mark it
//! read; anyone else — another patient, a provider outside it, an administrator — gets
//! a 404 on every route that names it (recorded as `ACCESS_DENIED`); an administrator
//! gets a 403 on the routes that name none. A conversation is
//! one patient and providers with an active care relationship with them; when one of
//! those relationships ends it stays readable and a send is a 409. Providers need an
//! MFA session (bodies are PHI). Every read is audited; sends and receipts commit with
//! their event, then are pushed to the other participants' open WebSocket connections
//! (`message:received`, `message:read`; the fast path: `sync` has them either way).
//!
//! Rate limits are chat's own (`shared::auth::rate_limit`): `CHAT_MESSAGES` per minute
//! for sends, `CHAT_SYNC` per minute for sync, `CHAT` per 15 minutes for the rest,
//! instead of the general 100 per 15 minutes. Attachments are not supported yet (there
//! are no documents to refer to).

/// The outside services the `messages` binary links (`shared::adapters::links`): frames to
/// the conversation's sockets.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::PUSH;

use http::Method;
use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::accounts::{self, Status};
use shared::auth::rate_limit::{CHAT, CHAT_MESSAGES, CHAT_SYNC};
use shared::auth::{audit_event, care, record, Principal, Role};
use shared::chat::{ReadReceipt, SendBody};
use shared::domain::conversation;
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, Page, RouteDoc, Router};
use shared::store::messages::{
    self, Conversation, Gap, Message, MessagePage, NewConversation, Sent, Stored, LIST_RESOURCE,
    MAX_SYNC_PAGE, RESOURCE, SYNC_RESOURCE,
};
use shared::ws::ServerEvent;
use shared::{chat, guard, ApiError, App, AppContext};

/// Default and largest page of messages.
pub const DEFAULT_MESSAGES: u32 = 50;
pub const MAX_MESSAGES: u32 = 100;

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, "/api/v1/conversations", create)
        .doc(
            RouteDoc::new("Start a conversation with `participant_ids` (the caller is added)")
                .describe("One patient and providers with an active care relationship with them (422 otherwise); at most 20 people. Providers need an MFA session.")
                .bearer()
                .body::<NewConversationBody>()
                .response::<Conversation>(201)
                .errors(&[400, 401, 403, 409, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/conversations", list)
        .doc(
            RouteDoc::new("The caller's conversations, with unread counts and the last message time")
                .bearer()
                .paged()
                .response::<Page<Conversation>>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
        .route(Method::GET, "/api/v1/conversations/{id}", get)
        .doc(
            RouteDoc::new("A conversation the caller is in")
                .bearer()
                .response::<Conversation>(200)
                .errors(&[401, 403, 404, 429, 503]),
        )
        .route(Method::GET, "/api/v1/conversations/{id}/messages", list_messages)
        .doc(
            RouteDoc::new("Messages, newest first")
                .describe("`before` is a message seq (the `next_before` of the previous page).")
                .bearer()
                .query::<i64>("before", "Only messages with a lower seq (default: from the newest)")
                .query::<u32>("limit", "1 to 100 (default 50)")
                .response::<MessagePage>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::POST, "/api/v1/conversations/{id}/messages", send)
        .doc(
            RouteDoc::new("Send a message (idempotent by `client_message_id`)")
                .describe("A resend with the same `client_message_id` answers the stored message (200), never a second one. `encryption: client` stores a body the client encrypted itself exactly as given. 409 when a care relationship of the conversation has ended.")
                .bearer()
                .body::<SendBody>()
                .response::<Message>(201)
                .response::<Message>(200)
                .errors(&[400, 401, 403, 404, 409, 429, 503]),
        )
        .route(Method::POST, "/api/v1/conversations/{id}/read", mark_read)
        .doc(
            RouteDoc::new("Mark messages read up to a seq (a read receipt for the other participants)")
                .describe("The marker only moves forward; an older `up_to` changes nothing. 422 beyond the newest message.")
                .bearer()
                .body::<ReadBody>()
                .response::<ReadReceipt>(200)
                .errors(&[400, 401, 403, 404, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/sync", sync)
        .doc(
            RouteDoc::new("Everything the caller missed since a token, in order")
                .describe("Without `since`: no items and the current token. With it: the events after it (messages, read receipts, new conversations) across the caller's conversations and the token to pass next; `has_more` when a page was full. 422 for a token older than the 30 days of events kept.")
                .bearer()
                .query::<String>("since", "A `next_token` from an earlier answer")
                .query::<u32>("limit", "1 to 100 (default 100)")
                .response::<SyncPage>(200)
                .errors(&[400, 401, 403, 422, 429, 503]),
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversationBody {
    /// The other people: the patient and/or providers of their care team.
    participant_ids: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    /// The seq of the newest message read.
    pub up_to: i64,
}

/// One event of `sync`, in the caller's order.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct SyncItem {
    /// Its number in the caller's stream (1, 2, …; no gaps).
    pub seq: i64,
    /// `message`, `read`, `conversation` (the caller was added to it) or
    /// `conversation_closed` (a care relationship of it ended: readable, no new messages).
    #[serde(rename = "type")]
    pub kind: String,
    pub conversation_id: String,
    pub at: String,
    /// The message (`message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// The receipt (`read`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadReceipt>,
    /// The conversation as it is now (`conversation`, `conversation_closed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Conversation>,
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct SyncPage {
    pub items: Vec<SyncItem>,
    /// Pass as `since` next time.
    pub next_token: String,
    /// More events follow `next_token` now.
    pub has_more: bool,
}

/// Records a read of `(kind, id)`.
async fn record_view(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    resource: (&str, &str),
) -> Result<(), ApiError> {
    record(
        app,
        req,
        principal,
        Action::View,
        resource,
        Outcome::Success,
    )
    .await
}

fn invalid_people() -> ApiError {
    ApiError::unprocessable(
        "participant_ids: a conversation is one patient and providers with an active care relationship with them",
    )
}

/// `POST /api/v1/conversations`.
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = chat::signed_in(&app, &req, CHAT, (RESOURCE, guard::ANY)).await?;
    let body: NewConversationBody = req.json()?;
    if body.participant_ids.iter().any(|id| !guard::is_id(id)) {
        return Err(ApiError::validation(
            "participant_ids: each must be a user id",
        ));
    }
    let people = conversation::participants(&principal.user_id, &body.participant_ids)?;
    let mut patient = (principal.role == Role::Patient).then(|| principal.user_id.clone());
    let mut providers = Vec::new();
    for id in &people[1..] {
        let account = accounts::get(&app, id).await?;
        match account {
            Some(a) if a.status == Status::Active && a.role == Role::Provider => {
                providers.push(a.id)
            }
            Some(a)
                if a.status == Status::Active && a.role == Role::Patient && patient.is_none() =>
            {
                patient = Some(a.id)
            }
            _ => return Err(invalid_people()),
        }
    }
    let patient = patient.ok_or_else(invalid_people)?;
    if principal.role == Role::Provider {
        providers.push(principal.user_id.clone());
    }
    for provider in &providers {
        if !care::is_active(&app, provider, &patient).await? {
            return Err(invalid_people());
        }
    }
    let id = app.new_id();
    let event =
        audit_event(&req, &principal, Action::Create, Outcome::Success).resource(RESOURCE, &id);
    let (created, _) = messages::create(
        &app,
        NewConversation {
            id: &id,
            patient_id: &patient,
            participant_ids: &people,
            created_by: &principal.user_id,
        },
        event,
    )
    .await?;
    // Its commit checked every care relationship: it is open.
    ApiResponse::created(&created.view(0, messages::Status::Open))
}

/// `GET /api/v1/conversations`.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let target = (LIST_RESOURCE, guard::ANY);
    let principal = chat::signed_in(&app, &req, CHAT, target).await?;
    let page = PageRequest::from_request(&req)?;
    let items = messages::list(&app, &principal.user_id, &page).await?;
    record_view(&app, &req, &principal, (LIST_RESOURCE, &principal.user_id)).await?;
    ApiResponse::ok(&items)
}

/// The conversation of the path for a participant.
async fn of_path(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<Stored, ApiError> {
    let id = req.param("id")?;
    chat::conversation(app, req, principal, id).await
}

/// `GET /api/v1/conversations/{id}`.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = chat::authenticated(&app, &req, CHAT).await?;
    let conversation = of_path(&app, &req, &principal).await?;
    let marker = messages::read_marker(&app, &conversation.id, &principal.user_id)
        .await?
        .unwrap_or(0);
    let status = conversation.status(&app).await?;
    record_view(&app, &req, &principal, (RESOURCE, &conversation.id)).await?;
    ApiResponse::ok(&conversation.view(marker, status))
}

/// `GET /api/v1/conversations/{id}/messages[?before=&limit=]`.
pub async fn list_messages(app: App, req: ApiRequest) -> HandlerResult {
    let principal = chat::authenticated(&app, &req, CHAT).await?;
    let conversation = of_path(&app, &req, &principal).await?;
    let limit = req.query_as::<u32>("limit")?.unwrap_or(DEFAULT_MESSAGES);
    if !(1..=MAX_MESSAGES).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit: between 1 and {MAX_MESSAGES}"
        )));
    }
    let before = req.query_as::<i64>("before")?;
    if before.is_some_and(|b| b < 1) {
        return Err(ApiError::validation("before: a message seq (1 or more)"));
    }
    let page = messages::messages(&app, &req, &principal, &conversation.id, before, limit).await?;
    record_view(&app, &req, &principal, (RESOURCE, &conversation.id)).await?;
    ApiResponse::ok(&page)
}

/// `POST /api/v1/conversations/{id}/messages`.
pub async fn send(app: App, req: ApiRequest) -> HandlerResult {
    let principal = chat::authenticated(&app, &req, CHAT_MESSAGES).await?;
    let conversation = of_path(&app, &req, &principal).await?;
    let body: SendBody = req.json()?;
    match chat::deliver(&app, &req, &principal, &conversation, &body).await? {
        Sent::New(message, _) => {
            // Stored: now the fast path to the others' open connections.
            let event = ServerEvent::new("message:received", &message);
            chat::announce(&app, &conversation, Some(&principal.user_id), &event).await;
            ApiResponse::created(&message)
        }
        Sent::Repeat(message) => ApiResponse::ok(&message),
    }
}

/// `POST /api/v1/conversations/{id}/read`.
pub async fn mark_read(app: App, req: ApiRequest) -> HandlerResult {
    let principal = chat::authenticated(&app, &req, CHAT).await?;
    let conversation = of_path(&app, &req, &principal).await?;
    let body: ReadBody = req.json()?;
    let (receipt, moved) =
        chat::read_up_to(&app, &req, &principal, &conversation, body.up_to).await?;
    if moved {
        let event = ServerEvent::new("message:read", &receipt);
        chat::announce(&app, &conversation, Some(&principal.user_id), &event).await;
    }
    ApiResponse::ok(&receipt)
}

/// `GET /api/v1/sync[?since=&limit=]`.
pub async fn sync(app: App, req: ApiRequest) -> HandlerResult {
    let target = (SYNC_RESOURCE, guard::ANY);
    let principal = chat::signed_in(&app, &req, CHAT_SYNC, target).await?;
    let limit = req.query_as::<u32>("limit")?.unwrap_or(MAX_SYNC_PAGE);
    if !(1..=MAX_SYNC_PAGE).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit: between 1 and {MAX_SYNC_PAGE}"
        )));
    }
    let page = match req.query_param("since") {
        None => {
            let current = messages::current_seq(&app, &principal.user_id).await?;
            SyncPage {
                items: Vec::new(),
                next_token: conversation::token(current),
                has_more: false,
            }
        }
        Some(since) => {
            let since = conversation::parse_token(since)?;
            let (events, current) =
                match messages::events_since(&app, &principal.user_id, since, limit).await? {
                    Ok(found) => found,
                    Err(Gap::Ahead) => {
                        return Err(ApiError::validation("since: not a token this API issued"))
                    }
                    Err(Gap::Expired) => return Err(ApiError::unprocessable(
                        "since: older than the events kept; reload the conversations and sync without since",
                    )),
                };
            let mut items = Vec::with_capacity(events.len());
            for event in events {
                items.push(item(&app, &req, &principal, event).await?);
            }
            let last = items.last().map_or(since, |i| i.seq);
            SyncPage {
                items,
                next_token: conversation::token(last),
                has_more: last < current,
            }
        }
    };
    record_view(&app, &req, &principal, (SYNC_RESOURCE, &principal.user_id)).await?;
    ApiResponse::ok(&page)
}

/// A stored event with what it refers to.
async fn item(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    event: messages::Recorded,
) -> Result<SyncItem, ApiError> {
    let mut item = SyncItem {
        seq: event.seq,
        kind: event.kind.clone(),
        conversation_id: event.conversation_id.clone(),
        at: event.at,
        message: None,
        read: None,
        conversation: None,
    };
    let number = |name: &str| event.data.get(name).and_then(serde_json::Value::as_i64);
    match event.kind.as_str() {
        "message" => {
            let seq = number("seq").unwrap_or(0);
            item.message =
                messages::message(app, req, principal, &event.conversation_id, seq).await?;
        }
        "read" => {
            item.read = Some(ReadReceipt {
                conversation_id: event.conversation_id.clone(),
                user_id: event
                    .data
                    .get("user_id")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                up_to: number("up_to").unwrap_or(0),
            });
        }
        _ => {
            if let Some(conversation) = messages::stored(app, &event.conversation_id).await? {
                let marker =
                    messages::read_marker(app, &conversation.id, &principal.user_id).await?;
                let status = conversation.status(app).await?;
                item.conversation = Some(conversation.view(marker.unwrap_or(0), status));
            }
        }
    }
    Ok(item)
}
