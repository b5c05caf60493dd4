//! Emergency contacts: a user's own, every field encrypted, at most
//! [`MAX_CONTACTS`] (kept by a transaction condition, see `shared::store::contacts`).
//! Every read and change is audited; a change is committed with its event.
//!
//! A contact is told when it is added, and when a contact is re-pointed at a new phone
//! or e-mail the new one is told (`domain::emergency::added_notice`, through the sealed
//! notification queue): nobody gets SOS alerts from an account without having heard of
//! it. Each notice spends one of the account's daily messages to contacts, reserved in
//! the change's own transaction (429 when spent, nothing changed). A phone outside the
//! configured SMS countries (`DOCARE_SMS_COUNTRY_CODES`) is a 422. When the notice cannot
//! be queued, the change is undone (audited) and the answer is 503.

use serde::Deserialize;
use shared::audit::{Action, Outcome};
use shared::auth::{accounts, audit_event, authenticate, record, Principal};
use shared::domain::emergency::added_notice;
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::notifications::{enqueue_all, Notification};
use shared::store::contacts::{self, Channel, ContactFields};
use shared::{guard, ApiError, App, AppContext};

pub use shared::store::contacts::{Contact, MAX_CONTACTS};

const RESOURCE: &str = "emergency_contact";

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewContact")]
pub struct ContactBody {
    name: String,
    relationship: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

fn validate(app: &AppContext, body: ContactBody) -> Result<ContactFields, ApiError> {
    let fields = ContactFields::parse(
        &body.name,
        &body.relationship,
        body.phone.as_deref(),
        body.email.as_deref(),
    )?;
    if let Some(phone) = &fields.phone {
        if !app.config.sms_countries.allows(phone) {
            return Err(ApiError::unprocessable(format!(
                "phone: SMS can only be sent to numbers starting with {}",
                app.config.sms_countries.codes().join(", ")
            )));
        }
    }
    Ok(fields)
}

/// Queues the notice telling a new (or re-pointed) contact who added them, on each of
/// `channels` (already reserved).
async fn tell(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    contact: &Contact,
    channels: &[Channel],
) -> Result<(), ApiError> {
    if channels.is_empty() {
        return Ok(());
    }
    let account = accounts::get(app, &principal.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let resource = ("account", account.id.as_str());
    let holder =
        shared::phi::open_audited(app, req, principal, &account.item, &["full_name"], resource)
            .await?
            .pop()
            .flatten()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "A DoCare user".to_string());
    let (subject, body) = added_notice(&holder);
    let notice = app.new_id();
    let mut outgoing = Vec::new();
    for channel in channels {
        let id = format!("contact:{}:{notice}", contact.id);
        match (channel, &contact.phone, &contact.email) {
            (Channel::Sms, Some(phone), _) => {
                outgoing.push(Notification::sms(format!("{id}:sms"), phone, body.clone()))
            }
            (Channel::Email, _, Some(email)) => outgoing.push(Notification::email(
                format!("{id}:email"),
                email,
                subject,
                body.clone(),
            )),
            _ => {}
        }
    }
    enqueue_all(app, outgoing).await
}

async fn audit(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    action: Action,
    id: &str,
) -> Result<(), ApiError> {
    record(
        app,
        req,
        principal,
        action,
        (RESOURCE, id),
        Outcome::Success,
    )
    .await
}

/// The `{id}` of the path: a contact id, or a 404 (recorded by the guard).
async fn contact_id(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<String, ApiError> {
    Ok(guard::path_id(app, req, principal, "id", RESOURCE)
        .await?
        .to_string())
}

/// `GET /api/v1/emergency/contacts`.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let page = PageRequest::from_request(&req)?;
    let contacts = contacts::list(&app, &req, &principal, &principal.user_id, &page).await?;
    audit(&app, &req, &principal, Action::View, "*").await?;
    ApiResponse::ok(&contacts)
}

/// `POST /api/v1/emergency/contacts`: 409 beyond [`MAX_CONTACTS`], 429 when today's
/// messages to contacts are spent; the contact is told (see the module comment).
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let fields = validate(&app, req.json()?)?;
    let id = app.new_id();
    let event =
        audit_event(&req, &principal, Action::Create, Outcome::Success).resource(RESOURCE, &id);
    let channels = contacts::channels(fields.phone.as_ref(), fields.email.as_ref());
    let contact = contacts::create(&app, &principal.user_id, &id, fields, event).await?;
    if let Err(err) = tell(&app, &req, &principal, &contact, &channels).await {
        // Not told, not kept: the contact is removed again (recorded as its deletion).
        let undo =
            audit_event(&req, &principal, Action::Delete, Outcome::Success).resource(RESOURCE, &id);
        contacts::delete(&app, &principal.user_id, &id, undo).await?;
        return Err(err);
    }
    ApiResponse::created(&contact)
}

/// `GET /api/v1/emergency/contacts/{id}` (only the owner's; others get 404).
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let id = contact_id(&app, &req, &principal).await?;
    let contact = contacts::get(&app, &req, &principal, &principal.user_id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    audit(&app, &req, &principal, Action::View, &id).await?;
    ApiResponse::ok(&contact)
}

/// `PUT /api/v1/emergency/contacts/{id}`: replaces every field. A new phone or e-mail is
/// told like a new contact (429 when today's messages are spent).
pub async fn replace(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let id = contact_id(&app, &req, &principal).await?;
    let user = principal.user_id.clone();
    // Someone else's contact is a 404 whatever the body says.
    let before = contacts::get(&app, &req, &principal, &user, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let fields = validate(&app, req.json()?)?;
    let new_phone = fields
        .phone
        .as_ref()
        .filter(|p| before.phone.as_ref() != Some(*p));
    let new_email = fields
        .email
        .as_ref()
        .filter(|e| before.email.as_ref() != Some(*e));
    let channels = contacts::channels(new_phone, new_email);
    let event =
        audit_event(&req, &principal, Action::Update, Outcome::Success).resource(RESOURCE, &id);
    let contact = contacts::replace(
        &app,
        &user,
        &id,
        &before.created_at,
        fields,
        &channels,
        event,
    )
    .await?
    .ok_or(ApiError::NotFound)?;
    if let Err(err) = tell(&app, &req, &principal, &contact, &channels).await {
        // Not told, not kept: the previous fields are written back (recorded).
        let undo =
            audit_event(&req, &principal, Action::Update, Outcome::Success).resource(RESOURCE, &id);
        let previous = ContactFields {
            name: before.name,
            relationship: before.relationship,
            phone: before.phone,
            email: before.email,
        };
        contacts::replace(&app, &user, &id, &before.created_at, previous, &[], undo).await?;
        return Err(err);
    }
    ApiResponse::ok(&contact)
}

/// `DELETE /api/v1/emergency/contacts/{id}`.
pub async fn delete(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let id = contact_id(&app, &req, &principal).await?;
    let event =
        audit_event(&req, &principal, Action::Delete, Outcome::Success).resource(RESOURCE, &id);
    if !contacts::delete(&app, &principal.user_id, &id, event).await? {
        return Err(ApiError::NotFound);
    }
    Ok(ApiResponse::no_content())
}
