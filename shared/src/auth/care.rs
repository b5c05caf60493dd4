//! Care relationships: which provider may see which patient. Created by an admin or by
//! a provider confirming a patient's appointment, ended by either side or an admin. The policy reads
//! one item to decide.
//!
//! | item | pk | sk | gsi1 | gsi2 |
//! |---|---|---|---|---|
//! | relationship | `CARE#<provider>` | `PATIENT#<patient>` | `CAREOF#<patient>` / `<since>#<provider>` | `CAREID#<id>` / `CARE` |

use crate::ports::db::{Condition, Index, Item, Key, Query, SortKey, Update, Value, WriteOp};
use crate::store::{keys, messages};
use crate::{ApiError, AppContext};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct CareRelationship {
    pub id: String,
    pub provider_id: String,
    pub patient_id: String,
    pub since: String,
    /// `admin` or `appointment`.
    pub source: String,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

pub fn key(provider_id: &str, patient_id: &str) -> Key {
    keys::care(provider_id, patient_id)
}

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl CareRelationship {
    pub fn parse(item: &Item) -> Self {
        Self {
            id: text(item, "id"),
            provider_id: text(item, "provider_id"),
            patient_id: text(item, "patient_id"),
            since: text(item, "since"),
            source: text(item, "source"),
            active: item.get("active").and_then(Value::as_bool).unwrap_or(false),
            ended_at: item
                .get("ended_at")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// True when the provider has an active relationship with the patient (one read).
pub async fn is_active(
    app: &AppContext,
    provider_id: &str,
    patient_id: &str,
) -> Result<bool, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &key(provider_id, patient_id))
        .await?
        .is_some_and(|item| item.get("active").and_then(Value::as_bool) == Some(true)))
}

/// The audit event of a change to the relationship with this id.
pub type EventFor<'a> = &'a (dyn Fn(&str) -> crate::audit::AuditEvent + Sync);

/// Starts (or restarts) a relationship; 409 when one is already active. With `event`,
/// the write commits with its audit event (3 items: relationship, event, chain head).
pub async fn start(
    app: &AppContext,
    provider_id: &str,
    patient_id: &str,
    source: &str,
    event: Option<EventFor<'_>>,
) -> Result<CareRelationship, ApiError> {
    let now = app.now().to_string();
    let id = app.new_id();
    let key = key(provider_id, patient_id);
    let update = Update::new()
        .set("id", id.clone())
        .set("provider_id", provider_id)
        .set("patient_id", patient_id)
        .set("since", now.clone())
        .set("source", source)
        .set("active", true)
        .remove("ended_at")
        .remove("ended_by_patient")
        .set("gsi1pk", keys::care_of(patient_id))
        .set("gsi1sk", format!("{now}#{provider_id}"))
        .set("gsi2pk", keys::care_by_id(&id))
        .set("gsi2sk", "CARE");
    let after = CareRelationship::parse(&update.apply(None, &key)?);
    // A new item, or one that has ended; an active one is a conflict.
    for condition in [
        Condition::AttributeNotExists("active".into()),
        Condition::Equals("active".into(), Value::Bool(false)),
    ] {
        let write = WriteOp::Update {
            table: app.config.table.clone(),
            key: key.clone(),
            update: update.clone(),
            condition: Some(condition),
        };
        let outcome = match event {
            Some(event) => match app.audit.commit(event(&id), vec![write]).await {
                Ok(()) => Ok(()),
                Err(crate::audit::CommitError::Change { .. }) => Err(None),
                Err(err) => Err(Some(ApiError::from(err))),
            },
            None => match app.db.transact_write(vec![write]).await {
                Ok(()) => Ok(()),
                Err(err) if err.is_condition_failed() => Err(None),
                Err(err) => Err(Some(err.into())),
            },
        };
        match outcome {
            Ok(()) => return Ok(after),
            Err(None) => continue,
            Err(Some(err)) => return Err(err),
        }
    }
    Err(ApiError::conflict(
        "this care relationship is already active",
    ))
}

/// The relationship between the two, if any (one read).
pub async fn between(
    app: &AppContext,
    provider_id: &str,
    patient_id: &str,
) -> Result<Option<(CareRelationship, bool)>, ApiError> {
    let item = app
        .db
        .get(&app.config.table, &key(provider_id, patient_id))
        .await?;
    Ok(item.map(|item| {
        let by_patient = item.get("ended_by_patient").and_then(Value::as_bool) == Some(true);
        (CareRelationship::parse(&item), by_patient)
    }))
}

/// A transaction op that fails unless the relationship is active (a provider booking
/// for a patient).
pub fn active_check(app: &AppContext, provider_id: &str, patient_id: &str) -> WriteOp {
    WriteOp::Check {
        table: app.config.table.clone(),
        key: key(provider_id, patient_id),
        condition: Condition::Equals("active".into(), Value::Bool(true)),
    }
}

/// The write that starts the relationship (source `appointment`) inside the caller's
/// transaction when a provider confirms a patient's booking, given the state read just
/// before (`current`, from [`between`]), or `None` when nothing is to be written: it is
/// active, or the patient ended it (never revived). A new one is conditioned on there
/// still being none; a restart of one the provider or an admin ended on it being still
/// ended, under the same id and not by the patient — so a patient ending it meanwhile
/// fails the whole transaction.
pub fn start_from_appointment(
    app: &AppContext,
    provider_id: &str,
    patient_id: &str,
    current: Option<&(CareRelationship, bool)>,
) -> Option<WriteOp> {
    let condition = match current {
        Some((rel, _)) if rel.active => return None,
        Some((_, true)) => return None,
        Some((rel, false)) => Condition::And(vec![
            Condition::Equals("id".into(), Value::S(rel.id.clone())),
            Condition::Equals("active".into(), Value::Bool(false)),
            Condition::Equals("ended_by_patient".into(), Value::Bool(false)),
        ]),
        None => Condition::AttributeNotExists("active".into()),
    };
    let now = app.now().to_string();
    let id = app.new_id();
    Some(WriteOp::Update {
        table: app.config.table.clone(),
        key: key(provider_id, patient_id),
        update: Update::new()
            .set("id", id.clone())
            .set("provider_id", provider_id)
            .set("patient_id", patient_id)
            .set("since", now.clone())
            .set("source", "appointment")
            .set("active", true)
            .remove("ended_at")
            .remove("ended_by_patient")
            .set("gsi1pk", keys::care_of(patient_id))
            .set("gsi1sk", format!("{now}#{provider_id}"))
            .set("gsi2pk", keys::care_by_id(&id))
            .set("gsi2sk", "CARE"),
        condition: Some(condition),
    })
}

/// The relationship with this id, if any.
pub async fn find(app: &AppContext, id: &str) -> Result<Option<CareRelationship>, ApiError> {
    let page = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::care_by_id(id))
                .on(Index::Gsi2)
                .limit(1),
        )
        .await?;
    Ok(page.items.first().map(CareRelationship::parse))
}

/// Ends a relationship (repeating it moves `ended_at`), committed with its audit event.
/// `by_patient` is kept (`ended_by_patient`): an appointment never restarts a
/// relationship its patient ended ([`start_from_appointment`]).
///
/// Ending an active one closes the conversations the two share: the same transaction
/// appends a `conversation_closed` event to every participant's sync stream (at most
/// [`messages::CLOSING_BUDGET`] writes; conversations beyond that get theirs in their own
/// transactions just after, best effort), conditioned on the relationship being still
/// active, so two concurrent ends close once.
pub async fn end(
    app: &AppContext,
    rel: &CareRelationship,
    by_patient: bool,
    event: crate::audit::AuditEvent,
) -> Result<CareRelationship, ApiError> {
    let now = app.now().to_string();
    let update = Update::new()
        .set("active", false)
        .set("ended_at", now.clone())
        .set("ended_by_patient", by_patient);
    let same = Condition::Equals("id".into(), Value::S(rel.id.clone()));
    let ended = CareRelationship {
        active: false,
        ended_at: Some(now.clone()),
        ..rel.clone()
    };
    if rel.active {
        let closing = messages::of_patient_with(app, &rel.patient_id, &rel.provider_id).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (events, rest) =
                messages::closing_events(app, &closing, messages::CLOSING_BUDGET).await?;
            let mut ops = vec![WriteOp::Update {
                table: app.config.table.clone(),
                key: key(&rel.provider_id, &rel.patient_id),
                update: update.clone(),
                condition: Some(Condition::And(vec![
                    same.clone(),
                    Condition::Equals("active".into(), Value::Bool(true)),
                ])),
            }];
            ops.extend(events);
            match app.audit.commit(event.clone(), ops).await {
                Ok(()) => {
                    messages::close_later(app, &rest).await;
                    return Ok(ended);
                }
                // Ended (or restarted) meanwhile: ended again below, closing nothing.
                Err(crate::audit::CommitError::Change { op: 0 }) => break,
                // A participant's stream moved: again on fresh numbers.
                Err(crate::audit::CommitError::Change { .. })
                    if attempt < messages::MAX_ATTEMPTS =>
                {
                    messages::back_off(attempt).await
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
    let write = WriteOp::Update {
        table: app.config.table.clone(),
        key: key(&rel.provider_id, &rel.patient_id),
        update,
        condition: Some(same),
    };
    match app.audit.commit(event, vec![write]).await {
        Ok(()) => Ok(ended),
        // Restarted meanwhile under a new id: this one is gone.
        Err(crate::audit::CommitError::Change { .. }) => Err(ApiError::NotFound),
        Err(err) => Err(err.into()),
    }
}

/// Whose relationships a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side<'a> {
    /// A provider's patients.
    Provider(&'a str),
    /// A patient's providers.
    Patient(&'a str),
}

/// One page of relationships, ended ones included (one query).
pub async fn list(
    app: &AppContext,
    side: Side<'_>,
    page: &crate::http::pagination::PageRequest,
) -> Result<crate::http::pagination::Page<CareRelationship>, ApiError> {
    let query = match side {
        Side::Provider(id) => of_provider(id),
        Side::Patient(id) => of_patient(id),
    };
    let result = app
        .db
        .query(
            &app.config.table,
            query.limit(page.limit).start(page.start.clone()),
        )
        .await?;
    let items = result.items.iter().map(CareRelationship::parse).collect();
    Ok(crate::http::pagination::Page::new(items, result.next))
}

/// The ids of a patient's providers with an active relationship (their care team; one
/// query, at most 100).
pub async fn care_team(app: &AppContext, patient_id: &str) -> Result<Vec<String>, ApiError> {
    let page = app
        .db
        .query(&app.config.table, of_patient(patient_id).limit(100))
        .await?;
    Ok(page
        .items
        .iter()
        .map(CareRelationship::parse)
        .filter(|rel| rel.active)
        .map(|rel| rel.provider_id)
        .collect())
}

/// A provider's patients (`USER#<provider>`, `CARE#…`) as a query.
fn of_provider(provider_id: &str) -> Query {
    Query::partition(keys::care_of_provider(provider_id))
        .sort_key(SortKey::BeginsWith(keys::CARE_SK.into()))
}

/// A patient's providers, through gsi1.
fn of_patient(patient_id: &str) -> Query {
    Query::partition(keys::care_of(patient_id)).on(Index::Gsi1)
}
