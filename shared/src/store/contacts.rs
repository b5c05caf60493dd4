//! Emergency contacts: `ECONTACTS#<id>` / `CONTACT#<contact id>`, every field sealed on
//! its own. The count lives in `ECONTACTS#<id>` / `COUNT` and is raised in the same
//! transaction as the insert under a `count < MAX` condition, so the limit holds however
//! many requests race. Each change is committed with its audit event.
//!
//! Messages to contacts (SOS alerts, the notice telling a contact they were added) are
//! counted per user, UTC day and channel in `ECONTACTS#<id>` / `SENT#<day>` and capped
//! ([`daily_cap`]): a reservation is one conditional `ADD` under `count <= cap - n`,
//! made before anything is queued (inside the contact's own transaction when a contact
//! is added or re-pointed), never a read followed by a write.

use crate::audit::{AuditEvent, CommitError};
use crate::auth::Principal;
use crate::domain::emergency::{secs_to_next_day, CONTACT_EMAILS_PER_DAY, CONTACT_SMS_PER_DAY};
use crate::http::pagination::{Page, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{item, Condition, Item, Key, Query, SortKey, Update, Value, WriteOp, TTL};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};
use serde::Serialize;

pub use crate::domain::emergency::{ContactFields, MAX_CONTACTS};
pub use crate::ports::messenger::Channel;

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

/// A contact's addresses, for an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    pub id: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// Every contact's phone and e-mail, for an alert (at most [`MAX_CONTACTS`]), and how many
/// contacts were left out because a value failed its integrity check (each recorded as
/// `INTEGRITY_FAILURE` on `emergency_contact/<id>`): an alert still reaches the others.
/// Otherwise unaudited by itself: the caller records the alert that needs them.
pub async fn reachable(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> Result<(Vec<Reachable>, usize), ApiError> {
    let page = app
        .db
        .query(
            &app.config.table,
            of_user(user_id).limit(MAX_CONTACTS as u32),
        )
        .await?;
    let mut out = Vec::with_capacity(page.items.len());
    let mut broken = 0;
    for item in &page.items {
        let id = text(item, "id");
        let resource = ("emergency_contact", id.as_str());
        let attributes = ["phone", "email"];
        match phi::open_or_report(app, req, principal, item, &attributes, resource).await? {
            Some(opened) => {
                let mut values = opened.into_iter();
                let (phone, email) = (values.next().flatten(), values.next().flatten());
                out.push(Reachable { id, phone, email });
            }
            None => broken += 1,
        }
    }
    Ok((out, broken))
}

/// The most messages of `channel` a user's contacts may be sent per UTC day.
pub fn daily_cap(channel: Channel) -> i64 {
    match channel {
        Channel::Sms => CONTACT_SMS_PER_DAY,
        Channel::Email => CONTACT_EMAILS_PER_DAY,
    }
}

fn quota_attribute(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "sms",
        Channel::Email => "email",
    }
}

/// Today's message counter (UTC day by the app clock) and its TTL (a day after the day).
fn quota(app: &AppContext, user_id: &str) -> (Key, i64) {
    let now = app.clock.now();
    let day = now.format("%Y-%m-%d").to_string();
    let ends = now.timestamp() + secs_to_next_day(now.timestamp());
    (keys::contact_messages(user_id, &day), ends + 86_400)
}

/// The write reserving messages today, `n` per channel (one item holds every channel's
/// count, so this is one update): `ADD n` only while each count stays within its cap (a
/// missing counter fails it too: see [`create_quota`]).
fn reserve_op(app: &AppContext, user_id: &str, wanted: &[(Channel, i64)]) -> WriteOp {
    // The TTL comes with the counter ([`create_quota`]): a reservation only adds.
    let (key, _) = quota(app, user_id);
    let mut update = Update::new();
    let mut conditions = Vec::with_capacity(wanted.len());
    for (channel, n) in wanted {
        let attribute = quota_attribute(*channel);
        update = update.add(attribute, *n);
        conditions.push(Condition::LessThan(
            attribute.into(),
            daily_cap(*channel) - n + 1,
        ));
    }
    WriteOp::Update {
        table: app.config.table.clone(),
        key,
        update,
        // One condition on its own: DynamoDB refuses redundant parentheses.
        condition: Some(if conditions.len() == 1 {
            conditions.remove(0)
        } else {
            Condition::And(conditions)
        }),
    }
}

/// Creates today's counter at zero, with its TTL, if there is none (a failed `NotExists`
/// means another request created it: fine).
async fn create_quota(app: &AppContext, user_id: &str) -> Result<(), ApiError> {
    let (key, expires_at) = quota(app, user_id);
    let counter = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("sms", Value::N(0)),
        ("email", Value::N(0)),
        (TTL, Value::N(expires_at)),
    ]);
    match app
        .db
        .put(&app.config.table, counter, Some(Condition::NotExists))
        .await
    {
        Ok(()) => Ok(()),
        Err(err) if err.is_condition_failed() => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The answer when today's cap is spent: 429 until the next UTC midnight.
fn cap_spent(app: &AppContext) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: secs_to_next_day(app.clock.now().timestamp()).max(1) as u64,
    }
}

/// Reserves `n` messages of `channel` to the user's contacts today; `false`, reserving
/// nothing, when that would pass the cap. One conditional write (two more on the day's
/// first reservation).
pub async fn reserve(
    app: &AppContext,
    user_id: &str,
    channel: Channel,
    n: usize,
) -> Result<bool, ApiError> {
    if n == 0 {
        return Ok(true);
    }
    for first in [true, false] {
        let WriteOp::Update {
            table,
            key,
            update,
            condition,
        } = reserve_op(app, user_id, &[(channel, n as i64)])
        else {
            return Err(ApiError::internal("a reservation is an update"));
        };
        match app.db.update(&table, &key, update, condition).await {
            Ok(_) => return Ok(true),
            Err(err) if err.is_condition_failed() && first => create_quota(app, user_id).await?,
            Err(err) if err.is_condition_failed() => return Ok(false),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(false)
}

/// Reserves as many of `wanted` messages as today's cap leaves and returns how many: all
/// at once, or else one by one until refused (at most `wanted + 1` reservations; the
/// counter is never read).
pub async fn reserve_up_to(
    app: &AppContext,
    user_id: &str,
    channel: Channel,
    wanted: usize,
) -> Result<usize, ApiError> {
    if reserve(app, user_id, channel, wanted).await? {
        return Ok(wanted);
    }
    let mut got = 0;
    while got + 1 < wanted && reserve(app, user_id, channel, 1).await? {
        got += 1;
    }
    Ok(got)
}

/// The channels a contact's fields can be told on (phone: SMS, e-mail: e-mail).
pub fn channels(phone: Option<&String>, email: Option<&String>) -> Vec<Channel> {
    let mut out = Vec::new();
    if phone.is_some() {
        out.push(Channel::Sms);
    }
    if email.is_some() {
        out.push(Channel::Email);
    }
    out
}

/// Runs a contact change whose ops are `change` followed by the reservation of one
/// message per channel of `tell`: creates a missing day counter and retries once; a reservation refused
/// again is [`cap_spent`]. A failed condition of `change` is returned as its op index.
async fn commit_reserving(
    app: &AppContext,
    user_id: &str,
    event: &AuditEvent,
    change: &(dyn Fn() -> Vec<WriteOp> + Sync),
    tell: &[Channel],
) -> Result<Result<(), usize>, ApiError> {
    let mut quota_created = false;
    loop {
        let mut ops = change();
        let first_reservation = ops.len();
        if !tell.is_empty() {
            let wanted: Vec<(Channel, i64)> = tell.iter().map(|c| (*c, 1)).collect();
            ops.push(reserve_op(app, user_id, &wanted));
        }
        match app.audit.commit(event.clone(), ops).await {
            Ok(()) => return Ok(Ok(())),
            Err(CommitError::Change { op }) if op >= first_reservation => {
                if quota_created {
                    return Err(cap_spent(app));
                }
                create_quota(app, user_id).await?;
                quota_created = true;
            }
            Err(CommitError::Change { op }) => return Ok(Err(op)),
            Err(err) => return Err(err.into()),
        }
    }
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

/// Creates a contact and counts it, with its event, reserving one message per channel
/// the contact can be told on (worst case 5 items: counter, contact, the day's message
/// counter, event, head); [`CreateError::Limit`] beyond [`MAX_CONTACTS`], a 429 when today's
/// messages to contacts are spent (nothing written either way).
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
    let tell = channels(fields.phone.as_ref(), fields.email.as_ref());
    // A missing counter also fails `count < MAX`: create it (at 0), then try once more.
    for first in [true, false] {
        match commit_reserving(app, user_id, &event, &change, &tell).await? {
            Ok(()) => return Ok(written(id, fields, &now, &now)),
            Err(0) if first => {
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
            Err(_) => return Err(CreateError::Limit),
        }
    }
    Err(CreateError::Limit)
}

/// Replaces every field of an existing contact (created at `created_at`), with its
/// event, reserving one message per channel in `tell` (the new phone or e-mail to be
/// told; worst case 4 items); `None` when it is gone meanwhile, a 429 when today's
/// messages to contacts are spent (nothing written either way).
pub async fn replace(
    app: &AppContext,
    user_id: &str,
    id: &str,
    created_at: &str,
    fields: ContactFields,
    tell: &[Channel],
    event: AuditEvent,
) -> Result<Option<Contact>, ApiError> {
    let key = keys::contact(user_id, id);
    let now = app.now().to_string();
    let item = sealed_item(app, &key, id, &fields, created_at, &now).await?;
    let table = app.config.table.clone();
    let change = || {
        vec![WriteOp::Put {
            table: table.clone(),
            item: item.clone(),
            condition: Some(Condition::Exists),
        }]
    };
    match commit_reserving(app, user_id, &event, &change, tell).await? {
        Ok(()) => Ok(Some(written(id, fields, created_at, &now))),
        Err(_) => Ok(None),
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
