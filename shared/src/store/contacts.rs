//! Emergency contacts: `ECONTACTS#<id>` / `CONTACT#<contact id>`, every field sealed on
//! its own. The count lives in `ECONTACTS#<id>` / `COUNT` and is raised in the same
//! transaction as the insert under a `count < MAX` condition, so the limit holds however
//! many requests race. Each change is committed with its audit event.

use crate::audit::{AuditEvent, CommitError};
use crate::auth::Principal;
use crate::http::pagination::{Page, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{item, Condition, Item, Key, Query, SortKey, Update, Value, WriteOp};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};
use serde::Serialize;

pub use crate::domain::emergency::{ContactFields, MAX_CONTACTS};

const SEALED: [&str; 4] = ["name", "relationship", "phone", "email"];

/// A contact's plain value by attribute name (sealing by name, never by position).
fn field<'a>(fields: &'a ContactFields, attribute: &str) -> Option<&'a String> {
    match attribute {
        "name" => Some(&fields.name),
        "relationship" => Some(&fields.relationship),
        "phone" => fields.phone.as_ref(),
        "email" => fields.email.as_ref(),
        _ => None,
    }
}

/// A stored contact, opened.
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

/// Why a contact was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("at most {MAX_CONTACTS} emergency contacts; delete one first")]
    Limit,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<CreateError> for ApiError {
    fn from(err: CreateError) -> Self {
        match err {
            CreateError::Limit => ApiError::conflict(CreateError::Limit.to_string()),
            CreateError::Api(err) => err,
        }
    }
}

fn of_user(user_id: &str) -> Query {
    Query::partition(keys::contacts_of(user_id))
        .sort_key(SortKey::BeginsWith(keys::CONTACT_SK.into()))
}

async fn sealed_item(
    app: &AppContext,
    key: &Key,
    id: &str,
    fields: &ContactFields,
    created_at: &str,
    now: &str,
) -> Result<Item, ApiError> {
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    item.insert("id".into(), Value::S(id.into()));
    item.insert("created_at".into(), Value::S(created_at.into()));
    item.insert("updated_at".into(), Value::S(now.into()));
    for attribute in SEALED {
        if let Some(value) = field(fields, attribute) {
            item.insert(
                attribute.into(),
                phi::seal(app, key, attribute, value).await?,
            );
        }
    }
    Ok(item)
}

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Opens a stored contact for a request; an integrity failure is audited and fails it.
async fn open(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    item: &Item,
) -> Result<Contact, ApiError> {
    let id = text(item, "id");
    let opened = phi::open_audited(
        app,
        req,
        principal,
        item,
        &SEALED,
        ("emergency_contact", &id),
    )
    .await?;
    let mut values = opened.into_iter();
    Ok(Contact {
        name: values.next().flatten().unwrap_or_default(),
        relationship: values.next().flatten().unwrap_or_default(),
        phone: values.next().flatten(),
        email: values.next().flatten(),
        created_at: text(item, "created_at"),
        updated_at: text(item, "updated_at"),
        id,
    })
}

/// The fields as just written, without a decryption.
fn written(id: &str, fields: ContactFields, created_at: &str, now: &str) -> Contact {
    Contact {
        id: id.to_string(),
        name: fields.name,
        relationship: fields.relationship,
        phone: fields.phone,
        email: fields.email,
        created_at: created_at.to_string(),
        updated_at: now.to_string(),
    }
}

/// One page of a user's contacts, opened.
pub async fn list(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    user_id: &str,
    page: &PageRequest,
) -> Result<Page<Contact>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            of_user(user_id).limit(page.limit).start(page.start.clone()),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for item in &result.items {
        items.push(open(app, req, principal, item).await?);
    }
    Ok(Page::new(items, result.next))
}

/// Every contact's phone and e-mail, for an alert (at most [`MAX_CONTACTS`]). Unaudited
/// by itself: the caller records the alert that needs them.
pub async fn reachable(
    app: &AppContext,
    user_id: &str,
) -> Result<Vec<(String, Option<String>, Option<String>)>, ApiError> {
    let page = app
        .db
        .query(
            &app.config.table,
            of_user(user_id).limit(MAX_CONTACTS as u32),
        )
        .await?;
    let mut out = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let phone = phi::open(app, item, "phone").await?;
        let email = phi::open(app, item, "email").await?;
        out.push((text(item, "id"), phone, email));
    }
    Ok(out)
}

/// One contact of a user, opened; `None` when there is none with this id.
pub async fn get(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    user_id: &str,
    id: &str,
) -> Result<Option<Contact>, ApiError> {
    match app
        .db
        .get(&app.config.table, &keys::contact(user_id, id))
        .await?
    {
        Some(item) => Ok(Some(open(app, req, principal, &item).await?)),
        None => Ok(None),
    }
}

/// Creates a contact and counts it, with its event (worst case 4 items: counter,
/// contact, event, head); [`CreateError::Limit`] beyond [`MAX_CONTACTS`].
pub async fn create(
    app: &AppContext,
    user_id: &str,
    id: &str,
    fields: ContactFields,
    event: AuditEvent,
) -> Result<Contact, CreateError> {
    let key = keys::contact(user_id, id);
    let now = app.now().to_string();
    let contact = sealed_item(app, &key, id, &fields, &now, &now).await?;
    let table = app.config.table.clone();
    let change = || {
        vec![
            WriteOp::Update {
                table: table.clone(),
                key: keys::contact_count(user_id),
                update: Update::new().add("count", 1),
                condition: Some(Condition::LessThan("count".into(), MAX_CONTACTS)),
            },
            WriteOp::Put {
                table: table.clone(),
                item: contact.clone(),
                condition: Some(Condition::NotExists),
            },
        ]
    };
    // A missing counter also fails `count < MAX`: create it (at 0), then try once more.
    for first in [true, false] {
        match app.audit.commit(event.clone(), change()).await {
            Ok(()) => return Ok(written(id, fields, &now, &now)),
            Err(CommitError::Change { op: 0 }) if first => {
                let counter = keys::contact_count(user_id);
                let created = app
                    .db
                    .put(
                        &table,
                        item([
                            ("pk", Value::S(counter.pk)),
                            ("sk", Value::S(counter.sk)),
                            ("count", Value::N(0)),
                        ]),
                        Some(Condition::NotExists),
                    )
                    .await;
                match created {
                    Ok(()) => continue,
                    Err(err) if err.is_condition_failed() => return Err(CreateError::Limit),
                    Err(err) => return Err(ApiError::from(err).into()),
                }
            }
            Err(CommitError::Change { op: 0 }) => return Err(CreateError::Limit),
            Err(err) => return Err(ApiError::from(err).into()),
        }
    }
    Err(CreateError::Limit)
}

/// When a user's contact was created; `None` when there is no such contact (one read,
/// nothing decrypted).
pub async fn created_at(
    app: &AppContext,
    user_id: &str,
    id: &str,
) -> Result<Option<String>, ApiError> {
    let item = app
        .db
        .get(&app.config.table, &keys::contact(user_id, id))
        .await?;
    Ok(item.map(|item| text(&item, "created_at")))
}

/// Replaces every field of an existing contact (created at `created_at`, from
/// [`created_at`]), with its event (3 items); `None` when it is gone meanwhile.
pub async fn replace(
    app: &AppContext,
    user_id: &str,
    id: &str,
    created_at: &str,
    fields: ContactFields,
    event: AuditEvent,
) -> Result<Option<Contact>, ApiError> {
    let key = keys::contact(user_id, id);
    let now = app.now().to_string();
    let item = sealed_item(app, &key, id, &fields, created_at, &now).await?;
    let change = vec![WriteOp::Put {
        table: app.config.table.clone(),
        item,
        condition: Some(Condition::Exists),
    }];
    match app.audit.commit(event, change).await {
        Ok(()) => Ok(Some(written(id, fields, created_at, &now))),
        Err(CommitError::Change { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Deletes a contact and uncounts it, with its event (4 items); `false` when there was
/// no such contact.
pub async fn delete(
    app: &AppContext,
    user_id: &str,
    id: &str,
    event: AuditEvent,
) -> Result<bool, ApiError> {
    let table = app.config.table.clone();
    let change = vec![
        WriteOp::Delete {
            table: table.clone(),
            key: keys::contact(user_id, id),
            condition: Some(Condition::Exists),
        },
        WriteOp::Update {
            table,
            key: keys::contact_count(user_id),
            update: Update::new().add("count", -1),
            condition: Some(Condition::Exists),
        },
    ];
    match app.audit.commit(event, change).await {
        Ok(()) => Ok(true),
        Err(CommitError::Change { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}
