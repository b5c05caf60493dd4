//! Prices, payments, refunds, disputes and processed Stripe events (`docs/payments.md`).
//!
//! | item | pk | sk | gsi1 | gsi2 |
//! |---|---|---|---|---|
//! | price | `PRICE#<provider>` | `TYPE#<consultation type>` | | |
//! | payment | `PAYMENT#<id>` | `PAYMENT` | `TXNSOF#<patient>` / `<created>#<id>` | `PAYSFOR#<appointment>` / `<created>#<id>` |
//! | refund | `PAYMENT#<id>` | `REFUND#<refund>` | `TXNSOF#<patient>` / `<created>#<refund>` | |
//! | dispute | `PAYMENT#<id>` | `DISPUTE#<dispute>` | `TXNSOF#<patient>` / `<created>#<dispute>` | |
//! | paid mark | `PAYMENT#<appointment>` | `PAID` | | |
//! | creation key | `PAYKEY#<user>#<key>` | `PAYKEY` (TTL 24 h) | | |
//! | refund key | `PAYKEY#<user>#<key>` | `REFUNDKEY` (TTL 24 h) | | |
//! | intent → payment | `STRIPEPI#<intent>` | `PI` | | |
//! | processed event | `STRIPEEVT#<event>` | `EVENT` (TTL 30 days) | | |
//!
//! Refunds never exceed what was paid: a refund first *reserves* its amount on the
//! payment (`refund_reserved`, raised by `ADD` on the condition that the payment
//! succeeded and `refund_reserved < amount - refund + 1`), in the same transaction as
//! the refund item and its audit event, before Stripe is called; a refusal or a failure
//! releases it. Every webhook event's id is put (`attribute_not_exists`) in the same
//! transaction as the change it causes. The success of a payment puts its appointment's
//! paid mark in the same transaction; a new payment is committed on the condition that
//! there is none, so a paid appointment is never paid again (whatever was read before).

use crate::audit::{AuditEvent, CommitError};
use crate::http::pagination::{Page, PageRequest};
use crate::ports::db::{Condition, Index, Item, Key, Query, Update, Value, WriteOp, TTL};
use crate::store::keys;
use crate::{ApiError, AppContext};
use serde::Serialize;

/// How long a creation's idempotency record is kept.
pub const IDEMPOTENCY_SECS: i64 = 24 * 3600;
/// How long a processed event id is kept (Stripe retries for up to 3 days).
pub const EVENT_SECS: i64 = 30 * 24 * 3600;
/// Attempts of an event whose payment changed between read and commit.
const ATTEMPTS: usize = 4;

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(Value::as_i64).unwrap_or(0)
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

fn s(value: &str) -> Value {
    Value::S(value.to_string())
}

// --- prices ---------------------------------------------------------------------------

/// A provider's price of one consultation type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Price {
    pub provider_id: String,
    pub consultation_type: String,
    /// In the currency's smallest unit (cents).
    pub amount: i64,
    /// ISO 4217, lowercase.
    pub currency: String,
    pub updated_at: String,
}

pub async fn price(
    app: &AppContext,
    provider_id: &str,
    consultation_type: &str,
) -> Result<Option<Price>, ApiError> {
    let item = app
        .db
        .get(
            &app.config.table,
            &keys::price(provider_id, consultation_type),
        )
        .await?;
    Ok(item.map(|item| Price {
        provider_id: text(&item, "provider_id"),
        consultation_type: text(&item, "consultation_type"),
        amount: number(&item, "amount"),
        currency: text(&item, "currency"),
        updated_at: text(&item, "updated_at"),
    }))
}

/// Sets a price (with its audit event, one transaction).
pub async fn save_price(
    app: &AppContext,
    price: &Price,
    event: AuditEvent,
) -> Result<(), ApiError> {
    let op = put(
        &app.config.table,
        keys::price(&price.provider_id, &price.consultation_type),
        vec![
            ("provider_id", s(&price.provider_id)),
            ("consultation_type", s(&price.consultation_type)),
            ("amount", Value::N(price.amount)),
            ("currency", s(&price.currency)),
            ("updated_at", s(&price.updated_at)),
        ],
        None,
    );
    Ok(app.audit.commit(event, vec![op]).await?)
}

// --- payments -------------------------------------------------------------------------

/// A payment as stored (and answered: no card data, no client secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Payment {
    pub id: String,
    pub appointment_id: String,
    #[serde(skip)]
    pub patient_id: String,
    #[serde(skip)]
    pub provider_id: String,
    pub stripe_payment_intent_id: String,
    pub amount: i64,
    pub currency: String,
    /// Stripe's status of the intent (`requires_payment_method`, …, `succeeded`).
    pub status: String,
    /// Refunded (Stripe confirmed).
    pub refunded_amount: i64,
    /// Paid minus refunds succeeded or under way.
    pub refundable_amount: i64,
    pub disputed: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub refund_reserved: i64,
    #[serde(skip)]
    pub version: i64,
    /// The `created` of the newest event applied to the status.
    #[serde(skip)]
    pub event_created: i64,
}

impl Payment {
    fn parse(item: &Item) -> Self {
        let amount = number(item, "amount");
        let reserved = number(item, "refund_reserved");
        Self {
            id: text(item, "id"),
            appointment_id: text(item, "appointment_id"),
            patient_id: text(item, "patient_id"),
            provider_id: text(item, "provider_id"),
            stripe_payment_intent_id: text(item, "stripe_payment_intent_id"),
            amount,
            currency: text(item, "currency"),
            status: text(item, "status"),
            refunded_amount: number(item, "refunded"),
            refundable_amount: if text(item, "status") == "succeeded" {
                (amount - reserved).max(0)
            } else {
                0
            },
            disputed: item
                .get("disputed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            created_at: text(item, "created_at"),
            updated_at: text(item, "updated_at"),
            refund_reserved: reserved,
            version: number(item, "version"),
            event_created: number(item, "event_created"),
        }
    }
}

/// What a new payment records.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub id: String,
    pub appointment_id: String,
    pub patient_id: String,
    pub provider_id: String,
    pub intent_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
}

/// A client's `Idempotency-Key` for a creation, and what it was for.
#[derive(Debug, Clone)]
pub struct CreationKey {
    pub user_id: String,
    pub key: String,
    pub appointment_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Created before under this key (the payment id).
    #[error("already created under this idempotency key")]
    Replay(String),
    #[error("Idempotency-Key: used before for another appointment")]
    KeyReused,
    #[error("appointment_id: this appointment is paid already")]
    Paid,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<CreateError> for ApiError {
    fn from(err: CreateError) -> Self {
        match err {
            CreateError::Replay(_) => ApiError::conflict(err.to_string()),
            CreateError::KeyReused => ApiError::unprocessable(err.to_string()),
            CreateError::Paid => ApiError::conflict(err.to_string()),
            CreateError::Api(err) => err,
        }
    }
}

/// The payment made earlier under this key: `Ok(Some(id))`, [`CreateError::KeyReused`]
/// for another appointment, `Ok(None)` when the key is new.
pub async fn replayed(app: &AppContext, key: &CreationKey) -> Result<Option<String>, CreateError> {
    let item = app
        .db
        .get(
            &app.config.table,
            &keys::payment_key(&key.user_id, &key.key),
        )
        .await
        .map_err(ApiError::from)?;
    match item {
        None => Ok(None),
        Some(item) if text(&item, "appointment_id") == key.appointment_id => {
            Ok(Some(text(&item, "payment_id")))
        }
        Some(_) => Err(CreateError::KeyReused),
    }
}

fn gsi_sk(created: &str, id: &str) -> String {
    format!("{created}#{id}")
}

/// Whether the appointment has a payment that succeeded (its paid mark; one read). A
/// look before asking Stripe for an intent: [`create`]'s commit is what decides.
pub async fn is_paid(app: &AppContext, appointment_id: &str) -> Result<bool, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::appointment_paid(appointment_id))
        .await?
        .is_some())
}

/// Records a payment: the creation key (when given), the payment, the intent's mapping
/// and a check that the appointment has no paid mark ([`CreateError::Paid`] otherwise),
/// with `event`, in one transaction.
pub async fn create(
    app: &AppContext,
    new: &NewPayment,
    key: Option<&CreationKey>,
    event: AuditEvent,
) -> Result<Payment, CreateError> {
    let table = app.config.table.as_str();
    let now = app.now();
    let now_text = now.to_string();
    let mut ops = Vec::new();
    if let Some(key) = key {
        ops.push(put(
            table,
            keys::payment_key(&key.user_id, &key.key),
            vec![
                ("appointment_id", s(&key.appointment_id)),
                ("payment_id", s(&new.id)),
                (TTL, Value::N(now.epoch_secs() + IDEMPOTENCY_SECS)),
            ],
            Some(Condition::NotExists),
        ));
    }
    let payment = put(
        table,
        keys::payment(&new.id),
        vec![
            ("id", s(&new.id)),
            ("appointment_id", s(&new.appointment_id)),
            ("patient_id", s(&new.patient_id)),
            ("provider_id", s(&new.provider_id)),
            ("stripe_payment_intent_id", s(&new.intent_id)),
            ("amount", Value::N(new.amount)),
            ("currency", s(&new.currency)),
            ("status", s(&new.status)),
            ("refund_reserved", Value::N(0)),
            ("refunded", Value::N(0)),
            ("version", Value::N(1)),
            ("event_created", Value::N(0)),
            ("created_at", s(&now_text)),
            ("updated_at", s(&now_text)),
            ("gsi1pk", Value::S(keys::transactions_of(&new.patient_id))),
            ("gsi1sk", Value::S(gsi_sk(&now_text, &new.id))),
            ("gsi2pk", Value::S(keys::payments_for(&new.appointment_id))),
            ("gsi2sk", Value::S(gsi_sk(&now_text, &new.id))),
            ("kind", s("payment")),
        ],
        Some(Condition::NotExists),
    );
    let item = match &payment {
        WriteOp::Put { item, .. } => item.clone(),
        _ => Item::new(),
    };
    ops.push(payment);
    ops.push(put(
        table,
        keys::stripe_intent(&new.intent_id),
        vec![("payment_id", s(&new.id))],
        Some(Condition::NotExists),
    ));
    let unpaid = ops.len();
    ops.push(WriteOp::Check {
        table: table.to_string(),
        key: keys::appointment_paid(&new.appointment_id),
        condition: Condition::NotExists,
    });
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(Payment::parse(&item)),
        Err(CommitError::Change { op }) if op == unpaid => Err(CreateError::Paid),
        Err(CommitError::Change { .. }) => match key {
            Some(key) => match replayed(app, key).await? {
                Some(id) => Err(CreateError::Replay(id)),
                None => Err(ApiError::conflict("the payment was created meanwhile; retry").into()),
            },
            // The same intent (Stripe answered a retry with it) is recorded already.
            None => match by_intent(app, &new.intent_id).await? {
                Some(id) => Err(CreateError::Replay(id)),
                None => Err(ApiError::conflict("the payment was created meanwhile; retry").into()),
            },
        },
        Err(err) => Err(CreateError::Api(err.into())),
    }
}

pub async fn get(app: &AppContext, id: &str) -> Result<Option<Payment>, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::payment(id))
        .await?
        .map(|item| Payment::parse(&item)))
}

/// The payment of a Stripe intent.
pub async fn by_intent(app: &AppContext, intent_id: &str) -> Result<Option<String>, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::stripe_intent(intent_id))
        .await?
        .map(|item| text(&item, "payment_id")))
}

/// An appointment's payments, oldest first.
pub async fn for_appointment(
    app: &AppContext,
    appointment_id: &str,
    page: &PageRequest,
) -> Result<Page<Payment>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::payments_for(appointment_id))
                .on(Index::Gsi2)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    Page::from_query(result, |item| Ok(Payment::parse(&item)))
}

/// One line of a patient's billing history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Transaction {
    /// `payment`, `refund` or `dispute`.
    pub kind: String,
    pub id: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub created_at: String,
}

fn transaction(item: &Item) -> Transaction {
    let kind = text(item, "kind");
    let payment_id = if kind == "payment" {
        text(item, "id")
    } else {
        text(item, "payment_id")
    };
    Transaction {
        kind,
        id: text(item, "id"),
        payment_id,
        amount: number(item, "amount"),
        currency: text(item, "currency"),
        status: text(item, "status"),
        created_at: text(item, "created_at"),
    }
}

/// A patient's payments, refunds and disputes, newest first.
pub async fn transactions(
    app: &AppContext,
    patient_id: &str,
    page: &PageRequest,
) -> Result<Page<Transaction>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::transactions_of(patient_id))
                .on(Index::Gsi1)
                .descending()
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    Page::from_query(result, |item| Ok(transaction(&item)))
}

// --- refunds --------------------------------------------------------------------------

/// A refund as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RefundRecord {
    pub id: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    /// `requested_by_customer`, `duplicate` or `fraudulent` (`unspecified` for a refund
    /// made in Stripe's dashboard without one of these).
    pub reason: String,
    /// `reserved` (before Stripe answered), `unknown` (Stripe could not be reached or did
    /// not answer: still reserved, settled by a retry under the same `Idempotency-Key` or
    /// by Stripe's refund event), then Stripe's: `pending`, `succeeded`, `failed`,
    /// `canceled`.
    pub status: String,
    pub stripe_refund_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Whether its reservation was given back (refused or failed).
    #[serde(skip)]
    pub released: bool,
    /// The `Idempotency-Key` it is sent to Stripe with (every re-send uses it).
    #[serde(skip)]
    pub stripe_key: Option<String>,
}

impl RefundRecord {
    fn parse(item: &Item) -> Self {
        Self {
            id: text(item, "id"),
            payment_id: text(item, "payment_id"),
            amount: number(item, "amount"),
            currency: text(item, "currency"),
            reason: text(item, "reason"),
            status: text(item, "status"),
            stripe_refund_id: item
                .get("stripe_refund_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            created_at: text(item, "created_at"),
            updated_at: text(item, "updated_at"),
            released: item
                .get("released")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            stripe_key: item
                .get("stripe_key")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

pub async fn refunds(app: &AppContext, payment_id: &str) -> Result<Vec<RefundRecord>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::payment(payment_id).pk)
                .sort_key(crate::ports::db::SortKey::BeginsWith("REFUND#".into()))
                .limit(1000),
        )
        .await?;
    Ok(result.items.iter().map(RefundRecord::parse).collect())
}

pub async fn refund(
    app: &AppContext,
    payment_id: &str,
    refund_id: &str,
) -> Result<Option<RefundRecord>, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::refund(payment_id, refund_id))
        .await?
        .map(|item| RefundRecord::parse(&item)))
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("amount: more than the refundable amount")]
    Exceeds,
    /// Reserved before under this key (the refund id).
    #[error("already requested under this idempotency key")]
    Replay(String),
    #[error("Idempotency-Key: used before for another refund")]
    KeyReused,
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// A client's `Idempotency-Key` for a refund, and what the request asked for.
#[derive(Debug, Clone)]
pub struct RefundKey {
    pub user_id: String,
    pub key: String,
    pub payment_id: String,
    /// The request's amount (or `all`) and reason: the same key for another request is
    /// refused.
    pub fingerprint: String,
}

/// The refund requested earlier under this key: `Ok(Some(id))`,
/// [`ReserveError::KeyReused`] for another request, `Ok(None)` when the key is new.
pub async fn refund_replayed(
    app: &AppContext,
    key: &RefundKey,
) -> Result<Option<String>, ReserveError> {
    let item = app
        .db
        .get(&app.config.table, &keys::refund_key(&key.user_id, &key.key))
        .await
        .map_err(ApiError::from)?;
    match item {
        None => Ok(None),
        Some(item)
            if text(&item, "payment_id") == key.payment_id
                && text(&item, "fingerprint") == key.fingerprint =>
        {
            Ok(Some(text(&item, "refund_id")))
        }
        Some(_) => Err(ReserveError::KeyReused),
    }
}

/// Reserves `amount` of the payment for a new refund: one transaction of the payment's
/// `ADD refund_reserved` (conditioned on the payment having succeeded and the new total
/// not exceeding what was paid), the refund item (with the Stripe idempotency key it is
/// sent with), the client's key record when given (conditioned on being new) and
/// `event`. Nothing is read to decide.
#[allow(clippy::too_many_arguments)]
pub async fn reserve_refund(
    app: &AppContext,
    payment: &Payment,
    refund_id: &str,
    amount: i64,
    reason: &str,
    stripe_key: &str,
    key: Option<&RefundKey>,
    event: AuditEvent,
) -> Result<RefundRecord, ReserveError> {
    let table = app.config.table.as_str();
    let now = app.now().to_string();
    let reserve = WriteOp::Update {
        table: table.to_string(),
        key: keys::payment(&payment.id),
        update: Update::new()
            .add("refund_reserved", amount)
            .set("updated_at", now.as_str()),
        condition: Some(Condition::And(vec![
            Condition::Equals("status".into(), s("succeeded")),
            Condition::LessThan("refund_reserved".into(), payment.amount - amount + 1),
        ])),
    };
    let item_op = put(
        table,
        keys::refund(&payment.id, refund_id),
        vec![
            ("id", s(refund_id)),
            ("kind", s("refund")),
            ("payment_id", s(&payment.id)),
            ("amount", Value::N(amount)),
            ("currency", s(&payment.currency)),
            ("reason", s(reason)),
            ("status", s("reserved")),
            ("stripe_key", s(stripe_key)),
            ("created_at", s(&now)),
            ("updated_at", s(&now)),
            (
                "gsi1pk",
                Value::S(keys::transactions_of(&payment.patient_id)),
            ),
            ("gsi1sk", Value::S(gsi_sk(&now, refund_id))),
        ],
        Some(Condition::NotExists),
    );
    let item = match &item_op {
        WriteOp::Put { item, .. } => item.clone(),
        _ => Item::new(),
    };
    let mut ops = vec![reserve, item_op];
    if let Some(key) = key {
        ops.push(put(
            table,
            keys::refund_key(&key.user_id, &key.key),
            vec![
                ("payment_id", s(&key.payment_id)),
                ("fingerprint", s(&key.fingerprint)),
                ("refund_id", s(refund_id)),
                (TTL, Value::N(app.now().epoch_secs() + IDEMPOTENCY_SECS)),
            ],
            Some(Condition::NotExists),
        ));
    }
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(RefundRecord::parse(&item)),
        Err(CommitError::Change { op: 2 }) => match key {
            // A request under the same key committed first: that refund.
            Some(key) => match refund_replayed(app, key).await? {
                Some(id) => Err(ReserveError::Replay(id)),
                None => Err(ApiError::conflict("the refund was requested meanwhile; retry").into()),
            },
            None => Err(ApiError::conflict("retry").into()),
        },
        Err(CommitError::Change { op: 0 }) => Err(ReserveError::Exceeds),
        Err(err) => Err(ReserveError::Api(err.into())),
    }
}

/// Stripe could not be reached or did not answer: the refund stays reserved as
/// `unknown` (Stripe may have made it), with `event`. A webhook that settled it
/// meanwhile is left alone.
pub async fn refund_unknown(
    app: &AppContext,
    refund: &RefundRecord,
    event: AuditEvent,
) -> Result<(), ApiError> {
    if refund.status == "unknown" {
        return Ok(app.audit.commit(event, Vec::new()).await?);
    }
    let op = WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::refund(&refund.payment_id, &refund.id),
        update: Update::new()
            .set("status", "unknown")
            .set("updated_at", app.now().to_string().as_str()),
        condition: Some(Condition::Equals("status".into(), s(&refund.status))),
    };
    match app.audit.commit(event, vec![op]).await {
        Ok(()) | Err(CommitError::Change { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The ops that give a refund's reservation back once (refused or failed), given the
/// refund as read just before: conditioned on it not being released yet and on its
/// status being still the one read, so a refund recorded `succeeded` (whose amount was
/// added to the refunded total) also takes its amount off that total, and one that
/// succeeded meanwhile fails the commit instead (the caller re-reads).
fn release_ops(app: &AppContext, refund: &RefundRecord, status: &str) -> Vec<WriteOp> {
    let now = app.now().to_string();
    let mut payment = Update::new()
        .add("refund_reserved", -refund.amount)
        .set("updated_at", now.as_str());
    if refund.status == "succeeded" {
        payment = payment.add("refunded", -refund.amount);
    }
    vec![
        WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::refund(&refund.payment_id, &refund.id),
            update: Update::new()
                .set("released", Value::Bool(true))
                .set("status", status)
                .set("updated_at", now.as_str()),
            condition: Some(Condition::And(vec![
                Condition::AttributeNotExists("released".into()),
                Condition::Equals("status".into(), s(&refund.status)),
            ])),
        },
        WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::payment(&refund.payment_id),
            update: payment,
            condition: Some(Condition::Exists),
        },
    ]
}

/// Gives the reservation back (Stripe refused or could not be reached), with `event`.
/// A reservation already given back is left alone.
pub async fn release_refund(
    app: &AppContext,
    refund: &RefundRecord,
    status: &str,
    event: AuditEvent,
) -> Result<(), ApiError> {
    match app
        .audit
        .commit(event, release_ops(app, refund, status))
        .await
    {
        Ok(()) | Err(CommitError::Change { op: 0 }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The ops that record Stripe's answer about a refund still reserved or under way:
/// its id and status, and (once) the refunded total when it succeeded.
fn refund_status_ops(
    app: &AppContext,
    refund: &RefundRecord,
    stripe_refund_id: &str,
    status: &str,
) -> Vec<WriteOp> {
    let now = app.now().to_string();
    let mut ops = vec![WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::refund(&refund.payment_id, &refund.id),
        update: Update::new()
            .set("status", status)
            .set("stripe_refund_id", stripe_refund_id)
            .set("updated_at", now.as_str()),
        condition: Some(Condition::Equals("status".into(), s(&refund.status))),
    }];
    if status == "succeeded" {
        ops.push(WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::payment(&refund.payment_id),
            update: Update::new()
                .add("refunded", refund.amount)
                .set("updated_at", now.as_str()),
            condition: Some(Condition::Exists),
        });
    }
    ops
}

/// Records Stripe's answer to the refund call (with `event`).
pub async fn refund_submitted(
    app: &AppContext,
    refund: &RefundRecord,
    stripe_refund_id: &str,
    status: &str,
    event: AuditEvent,
) -> Result<RefundRecord, ApiError> {
    let ops = refund_status_ops(app, refund, stripe_refund_id, status);
    match app.audit.commit(event, ops).await {
        // A webhook got there first: what is stored is newer.
        Ok(()) | Err(CommitError::Change { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    Ok(self::refund(app, &refund.payment_id, &refund.id)
        .await?
        .unwrap_or_else(|| refund.clone()))
}

// --- webhook events -------------------------------------------------------------------

/// How far along an intent's status is: terminal states are never left, and among the
/// others an event only moves the status when it is newer (or, in the same second,
/// further along).
pub fn status_rank(status: &str) -> i64 {
    match status {
        "requires_payment_method" => 1,
        "requires_confirmation" => 2,
        "requires_action" => 3,
        "processing" => 4,
        "requires_capture" => 5,
        "succeeded" | "canceled" => 9,
        _ => 0,
    }
}

/// Whether an event of `created` reporting `status` overwrites what is stored.
pub fn moves_forward(stored: &Payment, status: &str, created: i64) -> bool {
    let (old, new) = (status_rank(&stored.status), status_rank(status));
    if old == 9 || new == 0 || status == stored.status {
        return false;
    }
    new == 9 || created > stored.event_created || (created == stored.event_created && new > old)
}

/// A verified Stripe event, as far as its processing needs it.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub created: i64,
}

/// What processing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// The change and the event id were committed together.
    Applied,
    /// The event id was recorded; the event changed nothing (older, or not ours).
    Ignored,
    /// The event id was recorded before: nothing was done.
    Duplicate,
}

fn event_put(app: &AppContext, event: &StripeEvent) -> WriteOp {
    put(
        &app.config.table,
        keys::stripe_event(&event.id),
        vec![
            ("type", s(&event.kind)),
            ("created", Value::N(event.created)),
            (TTL, Value::N(app.now().epoch_secs() + EVENT_SECS)),
        ],
        Some(Condition::NotExists),
    )
}

/// Commits the event's id with `ops` (the event id first): [`Processed::Duplicate`]
/// when it was recorded before, `Err(None)` when one of `ops`' conditions failed (the
/// caller re-reads and retries).
async fn commit_event(
    app: &AppContext,
    event: &StripeEvent,
    ops: Vec<WriteOp>,
    audit: AuditEvent,
) -> Result<Processed, Option<ApiError>> {
    let applied = !ops.is_empty();
    let mut all = vec![event_put(app, event)];
    all.extend(ops);
    match app.audit.commit(audit, all).await {
        Ok(()) if applied => Ok(Processed::Applied),
        Ok(()) => Ok(Processed::Ignored),
        Err(CommitError::Change { op: 0 }) => Ok(Processed::Duplicate),
        Err(CommitError::Change { .. }) => Err(None),
        Err(err) => Err(Some(err.into())),
    }
}

/// Whether the event was processed before (a cheap check before any work).
pub async fn seen(app: &AppContext, event_id: &str) -> Result<bool, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::stripe_event(event_id))
        .await?
        .is_some())
}

/// Records the event and nothing else (an event about nothing of ours, or one that
/// changes nothing).
pub async fn ignore(
    app: &AppContext,
    event: &StripeEvent,
    audit: AuditEvent,
) -> Result<Processed, ApiError> {
    match commit_event(app, event, Vec::new(), audit).await {
        Ok(done) => Ok(done),
        Err(err) => Err(err.unwrap_or_else(|| ApiError::conflict("retry"))),
    }
}

/// An intent event: its status applied to the payment when it moves forward.
pub async fn apply_intent_status(
    app: &AppContext,
    event: &StripeEvent,
    payment_id: &str,
    status: &str,
    audit: impl Fn() -> AuditEvent,
) -> Result<Processed, ApiError> {
    for _ in 0..ATTEMPTS {
        let Some(payment) = get(app, payment_id).await? else {
            return ignore(app, event, audit()).await;
        };
        let mut ops = if moves_forward(&payment, status, event.created) {
            vec![WriteOp::Update {
                table: app.config.table.clone(),
                key: keys::payment(payment_id),
                update: Update::new()
                    .set("status", status)
                    .set(
                        "event_created",
                        Value::N(event.created.max(payment.event_created)),
                    )
                    .set("updated_at", app.now().to_string().as_str())
                    .add("version", 1),
                condition: Some(Condition::Equals(
                    "version".into(),
                    Value::N(payment.version),
                )),
            }]
        } else {
            Vec::new()
        };
        if !ops.is_empty() && status == "succeeded" {
            // The appointment is paid: no new payment of it commits from now on.
            ops.push(put(
                &app.config.table,
                keys::appointment_paid(&payment.appointment_id),
                vec![
                    ("appointment_id", s(&payment.appointment_id)),
                    ("payment_id", s(&payment.id)),
                ],
                None,
            ));
        }
        match commit_event(app, event, ops, audit()).await {
            Ok(done) => return Ok(done),
            Err(None) => continue,
            Err(Some(err)) => return Err(err),
        }
    }
    Err(ApiError::conflict(
        "the payment kept changing; Stripe will retry",
    ))
}

/// A refund event (`refund.created`, `.updated`, `.failed`): the refund's status
/// recorded; a failed or canceled refund gives its reservation back (once); a refund
/// whose reservation was given back (Stripe did not answer the call) but that Stripe
/// made after all takes it again.
pub async fn apply_refund_status(
    app: &AppContext,
    event: &StripeEvent,
    payment_id: &str,
    refund_id: &str,
    stripe_refund_id: &str,
    status: &str,
    audit: impl Fn() -> AuditEvent,
) -> Result<Processed, ApiError> {
    for _ in 0..ATTEMPTS {
        let Some(stored) = refund(app, payment_id, refund_id).await? else {
            return ignore(app, event, audit()).await;
        };
        let ops = refund_event_ops(app, &stored, stripe_refund_id, status);
        match commit_event(app, event, ops, audit()).await {
            Ok(done) => return Ok(done),
            Err(None) => continue,
            Err(Some(err)) => return Err(err),
        }
    }
    Err(ApiError::conflict(
        "the refund kept changing; Stripe will retry",
    ))
}

/// What a refund event reporting `status` changes about the refund `stored` (read just
/// before; every op is conditioned on what was read).
fn refund_event_ops(
    app: &AppContext,
    stored: &RefundRecord,
    stripe_refund_id: &str,
    status: &str,
) -> Vec<WriteOp> {
    let now = app.now().to_string();
    if stored.released {
        // Given back earlier: only a refund Stripe did make takes its amount again.
        if status == "succeeded" {
            retake_ops(app, stored, stripe_refund_id, &now)
        } else {
            Vec::new()
        }
    } else if matches!(status, "failed" | "canceled") {
        release_ops(app, stored, status)
    } else if stored.status == "succeeded"
        || status == stored.status
        || !matches!(status, "pending" | "requires_action" | "succeeded")
    {
        // Final already, or no news.
        Vec::new()
    } else {
        refund_status_ops(app, stored, stripe_refund_id, status)
    }
}

/// A refund made outside DoCare (in Stripe's dashboard), as its events report it: no
/// ids of ours, its payment found by its intent.
#[derive(Debug, Clone)]
pub struct OutsideRefund<'a> {
    /// Stripe's id (`re_…`): also its id here.
    pub stripe_refund_id: &'a str,
    pub amount: i64,
    /// Stripe's reason when one of ours, else `unspecified`.
    pub reason: &'a str,
    pub status: &'a str,
}

/// A refund event about a refund made outside DoCare: on first sight (under way or made)
/// it is recorded as a refund of the payment under its Stripe id, its amount reserved
/// and, when it succeeded, added to the refunded total — unconditionally, since the money
/// has moved or is moving, and with the item's `attribute_not_exists`, so only once;
/// from then on its events are followed like those of ours (a failure gives it back).
pub async fn apply_outside_refund(
    app: &AppContext,
    event: &StripeEvent,
    payment: &Payment,
    outside: &OutsideRefund<'_>,
    audit: impl Fn() -> AuditEvent,
) -> Result<Processed, ApiError> {
    for _ in 0..ATTEMPTS {
        let ops = match refund(app, &payment.id, outside.stripe_refund_id).await? {
            Some(stored) => {
                refund_event_ops(app, &stored, outside.stripe_refund_id, outside.status)
            }
            None if outside.amount > 0
                && matches!(outside.status, "pending" | "requires_action" | "succeeded") =>
            {
                outside_refund_ops(app, payment, outside)
            }
            None => Vec::new(),
        };
        match commit_event(app, event, ops, audit()).await {
            Ok(done) => return Ok(done),
            Err(None) => continue,
            Err(Some(err)) => return Err(err),
        }
    }
    Err(ApiError::conflict(
        "the refund kept changing; Stripe will retry",
    ))
}

/// The first record of a refund made outside DoCare: the refund item (new only) and the
/// payment's reservation (and refunded total, when it succeeded) raised by its amount.
fn outside_refund_ops(
    app: &AppContext,
    payment: &Payment,
    outside: &OutsideRefund<'_>,
) -> Vec<WriteOp> {
    let now = app.now().to_string();
    let id = outside.stripe_refund_id;
    let mut raise = Update::new()
        .add("refund_reserved", outside.amount)
        .set("updated_at", now.as_str());
    if outside.status == "succeeded" {
        raise = raise.add("refunded", outside.amount);
    }
    vec![
        put(
            &app.config.table,
            keys::refund(&payment.id, id),
            vec![
                ("id", s(id)),
                ("kind", s("refund")),
                ("payment_id", s(&payment.id)),
                ("amount", Value::N(outside.amount)),
                ("currency", s(&payment.currency)),
                ("reason", s(outside.reason)),
                ("status", s(outside.status)),
                ("stripe_refund_id", s(id)),
                ("source", s("stripe")),
                ("created_at", s(&now)),
                ("updated_at", s(&now)),
                (
                    "gsi1pk",
                    Value::S(keys::transactions_of(&payment.patient_id)),
                ),
                ("gsi1sk", Value::S(gsi_sk(&now, id))),
            ],
            Some(Condition::NotExists),
        ),
        WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::payment(&payment.id),
            update: raise,
            condition: Some(Condition::Exists),
        },
    ]
}

/// A refund Stripe made although its reservation was given back: reserved again
/// (unconditionally: the money has moved) and marked succeeded.
fn retake_ops(
    app: &AppContext,
    refund: &RefundRecord,
    stripe_refund_id: &str,
    now: &str,
) -> Vec<WriteOp> {
    vec![
        WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::refund(&refund.payment_id, &refund.id),
            update: Update::new()
                .remove("released")
                .set("status", "succeeded")
                .set("stripe_refund_id", stripe_refund_id)
                .set("updated_at", now),
            condition: Some(Condition::AttributeExists("released".into())),
        },
        WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::payment(&refund.payment_id),
            update: Update::new()
                .add("refund_reserved", refund.amount)
                .add("refunded", refund.amount)
                .set("updated_at", now),
            condition: Some(Condition::Exists),
        },
    ]
}

/// `charge.dispute.created`: the dispute recorded in the patient's history and the
/// payment marked disputed.
pub async fn record_dispute(
    app: &AppContext,
    event: &StripeEvent,
    payment: &Payment,
    dispute_id: &str,
    amount: i64,
    status: &str,
    audit: AuditEvent,
) -> Result<Processed, ApiError> {
    let now = app.now().to_string();
    let ops = vec![
        put(
            &app.config.table,
            keys::dispute(&payment.id, dispute_id),
            vec![
                ("id", s(dispute_id)),
                ("kind", s("dispute")),
                ("payment_id", s(&payment.id)),
                ("amount", Value::N(amount)),
                ("currency", s(&payment.currency)),
                ("status", s(status)),
                ("created_at", s(&now)),
                (
                    "gsi1pk",
                    Value::S(keys::transactions_of(&payment.patient_id)),
                ),
                ("gsi1sk", Value::S(gsi_sk(&now, dispute_id))),
            ],
            None,
        ),
        WriteOp::Update {
            table: app.config.table.clone(),
            key: keys::payment(&payment.id),
            update: Update::new()
                .set("disputed", Value::Bool(true))
                .set("updated_at", now.as_str()),
            condition: Some(Condition::Exists),
        },
    ];
    match commit_event(app, event, ops, audit).await {
        Ok(done) => Ok(done),
        Err(err) => Err(err.unwrap_or_else(|| ApiError::conflict("retry"))),
    }
}
