//! Emergency contacts: `USER#<id>` / `ECONTACT#<contact id>`, every field sealed. The
//! count lives in `USER#<id>` / `ECONTACTS` and is raised in the same transaction as
//! the insert, under a `count < MAX` condition, so the limit holds under concurrency.

use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::{authenticate, input, record, Principal};
use shared::http::pagination::{Page, PageRequest};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::db::{Condition, Item, Key, Query, SortKey, Update, Value, WriteOp};
use shared::{phi, ApiError, App, AppContext};

/// A sane maximum per user.
pub const MAX_CONTACTS: i64 = 10;
const SEALED: [&str; 4] = ["name", "relationship", "phone", "email"];

fn contact_key(user_id: &str, contact_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), format!("ECONTACT#{contact_id}"))
}

fn counter_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "ECONTACTS")
}

/// A user's contacts, as a query.
pub fn of_user(user_id: &str) -> Query {
    Query::partition(format!("USER#{user_id}")).sort_key(SortKey::BeginsWith("ECONTACT#".into()))
}

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

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub relationship: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

struct Valid {
    name: String,
    relationship: String,
    phone: Option<String>,
    email: Option<String>,
}

fn validate(body: ContactBody) -> Result<Valid, ApiError> {
    let phone = body
        .phone
        .filter(|p| !p.trim().is_empty())
        .map(|p| input::phone("phone", &p).map(str::to_string))
        .transpose()?;
    let email = body
        .email
        .filter(|e| !e.trim().is_empty())
        .map(|e| input::email(&e).map(str::to_string))
        .transpose()?;
    if phone.is_none() && email.is_none() {
        return Err(ApiError::validation(
            "a contact needs a `phone` or an `email`",
        ));
    }
    Ok(Valid {
        name: input::text("name", &body.name, 200)?.to_string(),
        relationship: input::text("relationship", &body.relationship, 50)?.to_string(),
        phone,
        email,
    })
}

async fn sealed_item(
    app: &AppContext,
    key: &Key,
    id: &str,
    valid: &Valid,
    created_at: &str,
    now: &str,
) -> Result<Item, ApiError> {
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    item.insert("id".into(), Value::S(id.into()));
    item.insert("created_at".into(), Value::S(created_at.into()));
    item.insert("updated_at".into(), Value::S(now.into()));
    let fields = [
        ("name", Some(&valid.name)),
        ("relationship", Some(&valid.relationship)),
        ("phone", valid.phone.as_ref()),
        ("email", valid.email.as_ref()),
    ];
    for (attribute, value) in fields {
        if let Some(value) = value {
            item.insert(
                attribute.into(),
                phi::seal(app, key, attribute, value).await?,
            );
        }
    }
    Ok(item)
}

/// Opens a stored contact; an integrity failure is audited and fails the request.
pub async fn open(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    item: &Item,
) -> Result<Contact, ApiError> {
    let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
    let opened = phi::open_audited(
        app,
        req,
        principal,
        item,
        &SEALED,
        ("emergency_contact", id),
    )
    .await?;
    let text = |name: &str| {
        item.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut values = opened.into_iter();
    Ok(Contact {
        id: text("id"),
        name: values.next().flatten().unwrap_or_default(),
        relationship: values.next().flatten().unwrap_or_default(),
        phone: values.next().flatten(),
        email: values.next().flatten(),
        created_at: text("created_at"),
        updated_at: text("updated_at"),
    })
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
        ("emergency_contact", id),
        Outcome::Success,
    )
    .await
}

/// `GET /api/v1/emergency/contacts`.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let page = PageRequest::from_request(&req)?;
    let result = app
        .db
        .query(
            &app.config.table,
            of_user(&principal.user_id)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for item in &result.items {
        items.push(open(&app, &req, &principal, item).await?);
    }
    audit(&app, &req, &principal, Action::View, "*").await?;
    ApiResponse::ok(&Page::new(items, result.next))
}

/// `POST /api/v1/emergency/contacts`: 409 beyond [`MAX_CONTACTS`].
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let valid = validate(req.json()?)?;
    let id = ulid::Ulid::new().to_string();
    let key = contact_key(&principal.user_id, &id);
    let now = app
        .clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let item = sealed_item(&app, &key, &id, &valid, &now, &now).await?;
    let table = app.config.table.clone();
    let written = app
        .db
        .transact_write(vec![
            WriteOp::Update {
                table: table.clone(),
                key: counter_key(&principal.user_id),
                update: Update::new().add("count", 1),
                condition: Some(Condition::LessThan("count".into(), MAX_CONTACTS)),
            },
            WriteOp::Put {
                table,
                item: item.clone(),
                condition: Some(Condition::NotExists),
            },
        ])
        .await;
    match written {
        Ok(()) => {}
        Err(shared::ports::db::DbError::ConditionFailed { op: Some(0) }) => {
            // A missing counter also fails `count < MAX`: create it, then retry once.
            let created = app
                .db
                .put(
                    &app.config.table,
                    shared::ports::db::item([
                        ("pk", Value::S(counter_key(&principal.user_id).pk)),
                        ("sk", Value::S(counter_key(&principal.user_id).sk)),
                        ("count", Value::N(0)),
                    ]),
                    Some(Condition::NotExists),
                )
                .await;
            match created {
                Ok(()) => return Box::pin(create(app, req)).await,
                Err(err) if err.is_condition_failed() => {
                    return Err(ApiError::conflict(format!(
                        "at most {MAX_CONTACTS} emergency contacts; delete one first"
                    )))
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(err) => return Err(err.into()),
    }
    audit(&app, &req, &principal, Action::Create, &id).await?;
    ApiResponse::created(&open(&app, &req, &principal, &item).await?)
}

async fn stored(
    app: &AppContext,
    principal: &Principal,
    req: &ApiRequest,
) -> Result<(String, Item), ApiError> {
    let id = req.param("id")?.to_string();
    if ulid::Ulid::from_string(&id).is_err() {
        return Err(ApiError::NotFound);
    }
    let item = app
        .db
        .get(&app.config.table, &contact_key(&principal.user_id, &id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((id, item))
}

/// `GET /api/v1/emergency/contacts/{id}` (only the owner's; others get 404).
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let (id, item) = stored(&app, &principal, &req).await?;
    let contact = open(&app, &req, &principal, &item).await?;
    audit(&app, &req, &principal, Action::View, &id).await?;
    ApiResponse::ok(&contact)
}

/// `PUT /api/v1/emergency/contacts/{id}`: replaces every field.
pub async fn replace(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    // Someone else's contact is a 404 whatever the body says.
    let (id, old) = stored(&app, &principal, &req).await?;
    let valid = validate(req.json()?)?;
    let key = contact_key(&principal.user_id, &id);
    let created_at = old
        .get("created_at")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let now = app
        .clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let item = sealed_item(&app, &key, &id, &valid, &created_at, &now).await?;
    app.db
        .put(&app.config.table, item.clone(), Some(Condition::Exists))
        .await
        .map_err(|err| {
            if err.is_condition_failed() {
                ApiError::NotFound
            } else {
                err.into()
            }
        })?;
    audit(&app, &req, &principal, Action::Update, &id).await?;
    ApiResponse::ok(&open(&app, &req, &principal, &item).await?)
}

/// `DELETE /api/v1/emergency/contacts/{id}`.
pub async fn delete(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let (id, _) = stored(&app, &principal, &req).await?;
    let table = app.config.table.clone();
    app.db
        .transact_write(vec![
            WriteOp::Delete {
                table: table.clone(),
                key: contact_key(&principal.user_id, &id),
                condition: Some(Condition::Exists),
            },
            WriteOp::Update {
                table,
                key: counter_key(&principal.user_id),
                update: Update::new().add("count", -1),
                condition: Some(Condition::Exists),
            },
        ])
        .await
        .map_err(|err| {
            if err.is_condition_failed() {
                ApiError::NotFound
            } else {
                err.into()
            }
        })?;
    audit(&app, &req, &principal, Action::Delete, &id).await?;
    Ok(ApiResponse::no_content())
}
