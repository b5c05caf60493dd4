//! What the messages function (REST) and the realtime function (WebSocket actions)
//! share about conversations: who may use one ([`conversation`]), the caller's
//! authentication on chat's own rate limits ([`signed_in`]), and the pushes that tell
//! connected participants what was stored ([`announce`]). The store
//! (`shared::store::messages`) is the source of truth; a push is only the fast path, so
//! a push that fails is logged and never fails the request (`sync` delivers it).

use crate::audit::{Action, Outcome};
use crate::auth::rate_limit::Limit;
use crate::auth::{audit_event, record, Principal, Role};
use crate::domain::conversation::{self, Body, Encryption};
use crate::domain::document::Status as DocumentStatus;
use crate::guard;
use crate::http::ApiRequest;
use crate::store::documents;
use crate::store::messages::{self, Attachment, Marked, Outgoing, Sent, Stored, RESOURCE};
use crate::ws::{push_to_user, ServerEvent};
use crate::{ApiError, AppContext};
use serde::{Deserialize, Serialize};

/// The caller, counted against `limit` (chat's own budgets, not the general one), for
/// the routes that name no conversation. Providers need an MFA session (message bodies
/// are PHI); administrators take no part in conversations and are refused (403,
/// recorded on `target`). Routes that name one use [`authenticated`] and
/// [`conversation`] (a 404 for administrators, as for anyone outside it).
pub async fn signed_in(
    app: &AppContext,
    req: &ApiRequest,
    limit: Limit,
    target: (&str, &str),
) -> Result<Principal, ApiError> {
    let principal = crate::auth::authenticate_within(app, req, limit).await?;
    allowed(app, req, &principal, target).await?;
    Ok(principal)
}

/// The caller, counted against `limit`, for a route that names a conversation (the
/// rules are [`conversation`]'s).
pub async fn authenticated(
    app: &AppContext,
    req: &ApiRequest,
    limit: Limit,
) -> Result<Principal, ApiError> {
    crate::auth::authenticate_within(app, req, limit).await
}

/// [`signed_in`]'s rule for a principal known otherwise (a WebSocket connection's).
pub async fn allowed(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    target: (&str, &str),
) -> Result<(), ApiError> {
    if principal.role == Role::Admin {
        return Err(guard::refuse(app, req, principal, target, ApiError::Forbidden).await);
    }
    guard::require_staff_mfa(app, req, principal, target).await
}

/// The conversation `id` names if the caller is one of its participants; otherwise a
/// 404 (recorded as `ACCESS_DENIED`), the same for one that does not exist, a malformed
/// id, and an administrator (never a participant). A provider without an MFA session
/// gets a 403.
pub async fn conversation(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> Result<Stored, ApiError> {
    if !guard::is_id(id) {
        let target = (RESOURCE, guard::INVALID);
        return Err(guard::refuse(app, req, principal, target, ApiError::NotFound).await);
    }
    if principal.role == Role::Admin {
        return Err(guard::refuse(app, req, principal, (RESOURCE, id), ApiError::NotFound).await);
    }
    guard::require_staff_mfa(app, req, principal, (RESOURCE, id)).await?;
    match messages::stored(app, id).await? {
        Some(conversation) if conversation.has(&principal.user_id) => Ok(conversation),
        _ => Err(guard::refuse(app, req, principal, (RESOURCE, id), ApiError::NotFound).await),
    }
}

/// Pushes `event` to every connection of every participant but `except`; failures are
/// logged (the event is in each participant's stream for `sync`). Returns how many
/// connections received it.
pub async fn announce<T: Serialize>(
    app: &AppContext,
    conversation: &Stored,
    except: Option<&str>,
    event: &ServerEvent<T>,
) -> usize {
    let mut delivered = 0;
    for user in &conversation.participant_ids {
        if Some(user.as_str()) == except {
            continue;
        }
        match push_to_user(app, user, event).await {
            Ok(n) => delivered += n,
            Err(err) => {
                tracing::warn!(kind = event.kind, error = %err, "a push failed; sync has it")
            }
        }
    }
    delivered
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// The client's id of this message (1 to 64 of `A-Z a-z 0-9 - _ . :`): a resend with
    /// the same id is the same message.
    pub client_message_id: String,
    pub body: String,
    /// `server` (default: the server seals the text) or `client` (a ciphertext the
    /// client made, stored as given).
    #[serde(default)]
    pub encryption: Option<Encryption>,
    /// Ids of documents to attach (at most 5; fewer in conversations of more than 10
    /// participants): only the conversation's patient attaches, only their own
    /// available documents, which are then shared with every provider in it (audited).
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// A participant's read marker.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ReadReceipt {
    pub conversation_id: String,
    pub user_id: String,
    pub up_to: i64,
}

/// Parses and stores a message from a participant (the REST route and the WebSocket
/// action `message:send`): 201-like `Sent::New` or the stored `Sent::Repeat` (whose
/// read is recorded).
pub async fn deliver(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    conversation: &Stored,
    body: &SendBody,
) -> Result<Sent, ApiError> {
    let client_message_id = conversation::client_message_id(&body.client_message_id)?;
    let text = Body::parse(&body.body, body.encryption.unwrap_or(Encryption::Server))?;
    let documents = attachments(app, principal, conversation, &body.attachments).await?;
    let attachments = documents
        .iter()
        .map(|document| Attachment {
            document,
            event: audit_event(req, principal, Action::Update, Outcome::Success)
                .resource(documents::RESOURCE, &document.id),
        })
        .collect();
    let sent = messages::send(
        app,
        req,
        principal,
        conversation,
        Outgoing {
            sender_id: &principal.user_id,
            client_message_id,
            body: text,
            attachments,
        },
        |_| {
            audit_event(req, principal, Action::Create, Outcome::Success)
                .resource(RESOURCE, &conversation.id)
        },
    )
    .await?;
    if let Sent::Repeat(_) = sent {
        record(
            app,
            req,
            principal,
            Action::View,
            (RESOURCE, &conversation.id),
            Outcome::Success,
        )
        .await?;
    }
    Ok(sent)
}

/// The documents a message attaches, checked: at most what the conversation's size
/// allows, well-formed ids without repeats, each an available document of the sender's,
/// who is the conversation's patient (sharing is the owner's right). Anything else is a
/// 422 that does not tell a document of someone else's from one that does not exist.
async fn attachments(
    app: &AppContext,
    principal: &Principal,
    conversation: &Stored,
    ids: &[String],
) -> Result<Vec<documents::Stored>, ApiError> {
    let fit = conversation::attachments_fit(conversation.participant_ids.len());
    if ids.len() > fit {
        return Err(ApiError::validation(format!(
            "attachments: at most {fit} documents in a conversation of {} participants",
            conversation.participant_ids.len()
        )));
    }
    let mut found = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let not_yours = || {
            ApiError::unprocessable(format!(
                "attachments[{i}]: not an available document of yours"
            ))
        };
        if !guard::is_id(id) || ids[..i].contains(id) {
            return Err(ApiError::validation(format!(
                "attachments[{i}]: a document id, once"
            )));
        }
        if principal.user_id != conversation.patient_id {
            return Err(not_yours());
        }
        match documents::stored(app, id).await? {
            Some(document)
                if document.owner_id == principal.user_id
                    && document.status == DocumentStatus::Available =>
            {
                found.push(document)
            }
            _ => return Err(not_yours()),
        }
    }
    Ok(found)
}

/// Moves the caller's read marker (the REST route and the WebSocket `message:read`):
/// the receipt, and whether it moved.
pub async fn read_up_to(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    conversation: &Stored,
    up_to: i64,
) -> Result<(ReadReceipt, bool), ApiError> {
    if up_to < 1 || up_to > conversation.last_seq {
        return Err(ApiError::unprocessable(
            "up_to: the seq of a message of this conversation",
        ));
    }
    let event = audit_event(req, principal, Action::Update, Outcome::Success)
        .resource(RESOURCE, &conversation.id);
    let marked = messages::mark_read(app, conversation, &principal.user_id, up_to, event).await?;
    let (up_to, moved) = match marked {
        Marked::Moved(_) => (up_to, true),
        Marked::Unchanged(current) => (current, false),
    };
    Ok((
        ReadReceipt {
            conversation_id: conversation.id.clone(),
            user_id: principal.user_id.clone(),
            up_to,
        },
        moved,
    ))
}
