//! Emergency contacts: a user's own, every field encrypted, at most
//! [`MAX_CONTACTS`] (kept by a transaction condition, see `shared::store::contacts`).
//! Every read and change is audited; a change is committed with its event.

use serde::Deserialize;
use shared::audit::{Action, Outcome};
use shared::auth::{audit_event, authenticate, record, Principal};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::store::contacts::{self, ContactFields};
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

fn validate(body: ContactBody) -> Result<ContactFields, ApiError> {
    ContactFields::parse(
        &body.name,
        &body.relationship,
        body.phone.as_deref(),
        body.email.as_deref(),
    )
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

/// `POST /api/v1/emergency/contacts`: 409 beyond [`MAX_CONTACTS`].
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let fields = validate(req.json()?)?;
    let id = app.new_id();
    let event =
        audit_event(&req, &principal, Action::Create, Outcome::Success).resource(RESOURCE, &id);
    let contact = contacts::create(&app, &principal.user_id, &id, fields, event).await?;
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

/// `PUT /api/v1/emergency/contacts/{id}`: replaces every field.
pub async fn replace(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let id = contact_id(&app, &req, &principal).await?;
    // Someone else's contact is a 404 whatever the body says.
    let created_at = contacts::created_at(&app, &principal.user_id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let fields = validate(req.json()?)?;
    let event =
        audit_event(&req, &principal, Action::Update, Outcome::Success).resource(RESOURCE, &id);
    let contact = contacts::replace(&app, &principal.user_id, &id, &created_at, fields, event)
        .await?
        .ok_or(ApiError::NotFound)?;
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
