//! Medications: `MED#<id>` / `MEDICATION` (gsi1 `MEDSOF#<patient>`, sorted by id, so a
//! patient's list is one index query), and its recorded doses in the same partition,
//! `MED#<id>` / `DOSE#<scheduled_for>` (one item per scheduled dose: the conditional put
//! that records it is what makes a repeat idempotent).
//!
//! Sealed on their own (PHI): `name`, `dosage`, `form`, `route`, `instructions`. In the
//! clear: ids, the schedule (times or an interval, no drug), the course dates, the
//! refill count, the status and `next_dose_at`, the time of the one rolling dose
//! reminder (see [`crate::store::reminders`]): written with the medication, moved by
//! the scheduler ([`roll_forward`]) when it fires, removed when the course ends or the
//! medication is discontinued.

use crate::audit::{AuditEvent, CommitError};
use crate::auth::Principal;
use crate::domain::medication::{Course, DoseStatus, MedicationFields, ScheduleBody};
use crate::domain::zone::Zone;
use crate::domain::Timestamp;
use crate::http::pagination::{Page, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{Condition, Index, Item, Key, Query, SortKey, Update, Value, WriteOp};
use crate::store::reminders::{self, Reminder};
use crate::store::{keys, profiles};
use crate::{phi, ApiError, AppContext};
use chrono::Duration;
use serde::Serialize;

/// The sealed attributes of a medication item.
pub const SEALED: [&str; 5] = ["name", "dosage", "form", "route", "instructions"];
/// What audit events and refusals name.
pub const RESOURCE: &str = "medication";

fn field<'a>(fields: &'a MedicationFields, attribute: &str) -> Option<&'a String> {
    match attribute {
        "name" => Some(&fields.name),
        "dosage" => Some(&fields.dosage),
        "form" => Some(&fields.form),
        "route" => Some(&fields.route),
        "instructions" => fields.instructions.as_ref(),
        _ => None,
    }
}

/// A medication as shown.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Medication {
    pub id: String,
    pub patient_id: String,
    /// `prescribed` (by `prescribed_by`, a provider) or `self_reported`.
    pub source: String,
    pub prescribed_by: Option<String>,
    pub name: String,
    pub dosage: String,
    pub form: String,
    pub route: String,
    pub instructions: Option<String>,
    pub schedule: ScheduleBody,
    pub starts_on: String,
    pub ends_on: Option<String>,
    pub refills: Option<u32>,
    /// `active` or `discontinued`.
    pub status: String,
    /// The next dose a reminder is scheduled for (none when the course is over).
    pub next_dose_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A medication as stored, before anything is opened: what authorization and the
/// scheduler need.
#[derive(Debug, Clone)]
pub struct Stored {
    pub item: Item,
    pub id: String,
    pub patient_id: String,
    pub active: bool,
    pub course: Course,
    pub next_dose_at: Option<Timestamp>,
    pub version: i64,
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Value::as_str).map(str::to_string)
}

impl Stored {
    fn from_item(item: Item) -> Result<Self, ApiError> {
        let bad = || ApiError::internal("a medication item is malformed");
        let schedule: ScheduleBody =
            serde_json::from_str(&text(&item, "schedule").ok_or_else(bad)?).map_err(|_| bad())?;
        let course = Course::parse(
            &schedule,
            &text(&item, "starts_on").ok_or_else(bad)?,
            text(&item, "ends_on").as_deref(),
        )
        .map_err(|_| bad())?;
        Ok(Self {
            id: text(&item, "id").ok_or_else(bad)?,
            patient_id: text(&item, "patient_id").ok_or_else(bad)?,
            active: text(&item, "status").as_deref() == Some("active"),
            next_dose_at: text(&item, "next_dose_at").and_then(|t| Timestamp::parse(&t)),
            version: item.get("version").and_then(Value::as_i64).unwrap_or(0),
            course,
            item,
        })
    }
}

/// One medication, unopened; `None` when there is none with this id.
pub async fn stored(app: &AppContext, id: &str) -> Result<Option<Stored>, ApiError> {
    app.db
        .get(&app.config.table, &keys::medication(id))
        .await?
        .map(Stored::from_item)
        .transpose()
}

/// The next dose a new reminder may be written for: at or after the next minute (the
/// scheduler may already be past the current one), after `after` when given.
pub fn next_dose(
    course: &Course,
    zone: Zone,
    now: Timestamp,
    after: Option<Timestamp>,
) -> Option<Timestamp> {
    let next_minute =
        Timestamp::new(now.as_datetime() + Duration::seconds(60 - now.epoch_secs().rem_euclid(60)));
    let from = match after {
        Some(after) => next_minute.max(Timestamp::new(after.as_datetime() + Duration::seconds(1))),
        None => next_minute,
    };
    course.next_at_or_after(zone, from)
}

/// What a new medication holds besides its sealed fields.
pub struct NewMedication<'a> {
    pub id: &'a str,
    pub patient_id: &'a str,
    pub prescribed_by: Option<&'a str>,
    pub fields: MedicationFields,
    pub course: Course,
    pub refills: Option<u32>,
}

async fn sealed_item(
    app: &AppContext,
    key: &Key,
    fields: &MedicationFields,
) -> Result<Item, ApiError> {
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
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

fn set_plain(item: &mut Item, course: &Course, refills: Option<u32>) -> Result<(), ApiError> {
    let schedule = serde_json::to_string(&course.schedule.body()).map_err(ApiError::internal)?;
    item.insert("schedule".into(), Value::S(schedule));
    item.insert(
        "starts_on".into(),
        Value::S(course.starts_on.format("%Y-%m-%d").to_string()),
    );
    match course.ends_on {
        Some(end) => item.insert(
            "ends_on".into(),
            Value::S(end.format("%Y-%m-%d").to_string()),
        ),
        None => item.remove("ends_on"),
    };
    match refills {
        Some(n) => item.insert("refills".into(), Value::N(i64::from(n))),
        None => item.remove("refills"),
    };
    Ok(())
}

fn set_next(item: &mut Item, next: Option<Timestamp>) {
    match next {
        Some(next) => item.insert("next_dose_at".into(), Value::S(next.to_string())),
        None => item.remove("next_dose_at"),
    };
}

/// Creates a medication with its first dose reminder and its event (worst case 4
/// items: medication, reminder, event, head). `next` is from [`next_dose`].
pub async fn create(
    app: &AppContext,
    new: NewMedication<'_>,
    next: Option<Timestamp>,
    event: AuditEvent,
) -> Result<Medication, ApiError> {
    let key = keys::medication(new.id);
    let now = app.now().to_string();
    let mut item = sealed_item(app, &key, &new.fields).await?;
    item.insert("id".into(), Value::S(new.id.into()));
    item.insert("patient_id".into(), Value::S(new.patient_id.into()));
    item.insert(
        "source".into(),
        Value::S(
            if new.prescribed_by.is_some() {
                "prescribed"
            } else {
                "self_reported"
            }
            .into(),
        ),
    );
    if let Some(provider) = new.prescribed_by {
        item.insert("prescribed_by".into(), Value::S(provider.into()));
    }
    item.insert("status".into(), Value::S("active".into()));
    item.insert("version".into(), Value::N(1));
    item.insert("created_at".into(), Value::S(now.clone()));
    item.insert("updated_at".into(), Value::S(now.clone()));
    item.insert(
        "gsi1pk".into(),
        Value::S(keys::medications_of(new.patient_id)),
    );
    item.insert("gsi1sk".into(), Value::S(new.id.into()));
    set_plain(&mut item, &new.course, new.refills)?;
    set_next(&mut item, next);
    let table = app.config.table.clone();
    let mut change = vec![WriteOp::Put {
        table: table.clone(),
        item: item.clone(),
        condition: Some(Condition::NotExists),
    }];
    change.extend(
        next.map(|at| Reminder::dose(new.patient_id, new.id, at))
            .and_then(|r| reminders::schedule(&table, &r)),
    );
    match app.audit.commit(event, change).await {
        Ok(()) => Ok(written(&item, new.fields)),
        Err(CommitError::Change { .. }) => Err(ApiError::conflict("this medication exists")),
        Err(err) => Err(err.into()),
    }
}

/// The view of an item just written, from the plain fields (no decryption).
fn written(item: &Item, fields: MedicationFields) -> Medication {
    let mut view = plain_view(item);
    view.name = fields.name;
    view.dosage = fields.dosage;
    view.form = fields.form;
    view.route = fields.route;
    view.instructions = fields.instructions;
    view
}

fn plain_view(item: &Item) -> Medication {
    let schedule = text(item, "schedule")
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(ScheduleBody::TimesOfDay { times: Vec::new() });
    Medication {
        id: text(item, "id").unwrap_or_default(),
        patient_id: text(item, "patient_id").unwrap_or_default(),
        source: text(item, "source").unwrap_or_default(),
        prescribed_by: text(item, "prescribed_by"),
        name: String::new(),
        dosage: String::new(),
        form: String::new(),
        route: String::new(),
        instructions: None,
        schedule,
        starts_on: text(item, "starts_on").unwrap_or_default(),
        ends_on: text(item, "ends_on"),
        refills: item
            .get("refills")
            .and_then(Value::as_i64)
            .and_then(|n| u32::try_from(n).ok()),
        status: text(item, "status").unwrap_or_default(),
        next_dose_at: text(item, "next_dose_at"),
        created_at: text(item, "created_at").unwrap_or_default(),
        updated_at: text(item, "updated_at").unwrap_or_default(),
    }
}

/// Opens a stored medication for a request; an integrity failure is audited and fails it.
pub async fn open(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    item: &Item,
) -> Result<Medication, ApiError> {
    let mut view = plain_view(item);
    let opened =
        phi::open_audited(app, req, principal, item, &SEALED, (RESOURCE, &view.id)).await?;
    let mut values = opened.into_iter();
    view.name = values.next().flatten().unwrap_or_default();
    view.dosage = values.next().flatten().unwrap_or_default();
    view.form = values.next().flatten().unwrap_or_default();
    view.route = values.next().flatten().unwrap_or_default();
    view.instructions = values.next().flatten();
    Ok(view)
}

/// One page of a patient's medications (one gsi1 query), opened.
pub async fn list(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    patient_id: &str,
    page: &PageRequest,
) -> Result<Page<Medication>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::medications_of(patient_id))
                .on(Index::Gsi1)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for item in &result.items {
        items.push(open(app, req, principal, item).await?);
    }
    Ok(Page::new(items, result.next))
}

/// The changes of an update: `None` keeps the stored value.
pub struct Change {
    pub fields: Option<MedicationFields>,
    pub course: Course,
    pub refills: Option<u32>,
}

/// Applies an update to a medication read as `stored` (its version is the condition),
/// moving its dose reminder from `stored.next_dose_at` to `next`, with its event (worst
/// case 5 items: medication, old and new reminder, event, head). 409 when it changed
/// meanwhile.
pub async fn update(
    app: &AppContext,
    stored: &Stored,
    change: Change,
    next: Option<Timestamp>,
    event: AuditEvent,
) -> Result<Medication, ApiError> {
    let key = keys::medication(&stored.id);
    let mut item = stored.item.clone();
    let fields = match change.fields {
        Some(fields) => {
            for attribute in SEALED {
                item.remove(attribute);
            }
            item.extend(sealed_item(app, &key, &fields).await?);
            Some(fields)
        }
        None => None,
    };
    set_plain(&mut item, &change.course, change.refills)?;
    set_next(&mut item, next);
    item.insert("version".into(), Value::N(stored.version + 1));
    item.insert("updated_at".into(), Value::S(app.now().to_string()));
    let table = app.config.table.clone();
    let mut ops = vec![WriteOp::Put {
        table: table.clone(),
        item: item.clone(),
        condition: Some(Condition::Equals(
            "version".into(),
            Value::N(stored.version),
        )),
    }];
    ops.extend(reminder_moves(&table, stored, next));
    commit_change(app, event, ops).await?;
    Ok(match fields {
        Some(fields) => written(&item, fields),
        None => plain_view(&item),
    })
}

/// The reminder writes that move a medication's rolling reminder to `next`.
fn reminder_moves(table: &str, stored: &Stored, next: Option<Timestamp>) -> Vec<WriteOp> {
    if stored.next_dose_at == next {
        return Vec::new();
    }
    let reminder = |at| Reminder::dose(&stored.patient_id, &stored.id, at);
    let mut ops = Vec::new();
    ops.extend(
        stored
            .next_dose_at
            .and_then(|at| reminders::cancel(table, &reminder(at))),
    );
    ops.extend(next.and_then(|at| reminders::schedule(table, &reminder(at))));
    ops
}

async fn commit_change(
    app: &AppContext,
    event: AuditEvent,
    ops: Vec<WriteOp>,
) -> Result<(), ApiError> {
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(()),
        Err(CommitError::Change { .. }) => Err(ApiError::conflict(
            "the medication was changed by another request; read it again",
        )),
        Err(err) => Err(err.into()),
    }
}

/// Discontinues an active medication and cancels its reminder, with its event (4 items).
pub async fn discontinue(
    app: &AppContext,
    stored: &Stored,
    event: AuditEvent,
) -> Result<Medication, ApiError> {
    let now = app.now().to_string();
    let table = app.config.table.clone();
    let mut ops = vec![WriteOp::Update {
        table: table.clone(),
        key: keys::medication(&stored.id),
        update: Update::new()
            .set("status", "discontinued")
            .set("discontinued_at", now.clone())
            .set("updated_at", now.clone())
            .set("version", stored.version + 1)
            .remove("next_dose_at"),
        condition: Some(Condition::Equals(
            "version".into(),
            Value::N(stored.version),
        )),
    }];
    ops.extend(reminder_moves(&table, stored, None));
    commit_change(app, event, ops).await?;
    let mut item = stored.item.clone();
    item.insert("status".into(), Value::S("discontinued".into()));
    item.insert("updated_at".into(), Value::S(now));
    item.remove("next_dose_at");
    Ok(plain_view(&item))
}

/// A recorded dose.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Dose {
    pub medication_id: String,
    pub scheduled_for: String,
    pub status: DoseStatus,
    /// When it was taken (or skipped), as the patient said.
    pub at: String,
    pub recorded_at: String,
    pub recorded_by: String,
}

fn dose_of(item: &Item) -> Option<Dose> {
    Some(Dose {
        medication_id: text(item, "medication_id")?,
        scheduled_for: text(item, "scheduled_for")?,
        status: DoseStatus::parse(&text(item, "status")?)?,
        at: text(item, "at")?,
        recorded_at: text(item, "recorded_at")?,
        recorded_by: text(item, "recorded_by")?,
    })
}

/// What recording a dose did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now.
    New(Dose),
    /// The same answer was recorded before: the first answer.
    Repeat(Dose),
}

/// Records one scheduled dose once (a conditional put keyed by the dose time), with its
/// event (3 items). A repeat with the same status (and the same `at`, when the repeat
/// states one; `None` means "now" and matches any) is [`Recorded::Repeat`] (nothing
/// written); a different one is a 409.
pub async fn record_dose(
    app: &AppContext,
    medication_id: &str,
    scheduled_for: Timestamp,
    status: DoseStatus,
    stated_at: Option<Timestamp>,
    recorded_by: &str,
    event: AuditEvent,
) -> Result<Recorded, ApiError> {
    let at = stated_at.unwrap_or_else(|| app.now());
    let scheduled = scheduled_for.to_string();
    let key = keys::dose(medication_id, &scheduled);
    let dose = Dose {
        medication_id: medication_id.to_string(),
        scheduled_for: scheduled.clone(),
        status,
        at: at.to_string(),
        recorded_at: app.now().to_string(),
        recorded_by: recorded_by.to_string(),
    };
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    item.insert("medication_id".into(), Value::S(dose.medication_id.clone()));
    item.insert("scheduled_for".into(), Value::S(scheduled));
    item.insert("status".into(), Value::S(status.as_str().into()));
    item.insert("at".into(), Value::S(dose.at.clone()));
    item.insert("recorded_at".into(), Value::S(dose.recorded_at.clone()));
    item.insert("recorded_by".into(), Value::S(dose.recorded_by.clone()));
    let op = WriteOp::Put {
        table: app.config.table.clone(),
        item,
        condition: Some(Condition::NotExists),
    };
    match app.audit.commit(event, vec![op]).await {
        Ok(()) => Ok(Recorded::New(dose)),
        Err(CommitError::Change { .. }) => {
            let first = app
                .db
                .get(&app.config.table, &key)
                .await?
                .as_ref()
                .and_then(dose_of)
                .ok_or_else(|| ApiError::conflict("this dose is being recorded; retry"))?;
            let same_at = stated_at.is_none_or(|at| first.at == at.to_string());
            if first.status == dose.status && same_at {
                Ok(Recorded::Repeat(first))
            } else {
                Err(ApiError::conflict(
                    "this dose was already recorded with another answer",
                ))
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// The recorded doses scheduled in `[from, to)` (one query per 1,000).
pub async fn doses(
    app: &AppContext,
    medication_id: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Dose>, ApiError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = app
            .db
            .query(
                &app.config.table,
                Query::partition(keys::medication_partition(medication_id))
                    .sort_key(SortKey::Between(
                        format!("{}{from}", keys::DOSE_SK),
                        format!("{}{to}", keys::DOSE_SK),
                    ))
                    .limit(1000)
                    .start(start),
            )
            .await?;
        out.extend(
            page.items
                .iter()
                .filter_map(dose_of)
                .filter(|d| d.scheduled_for != to.to_string()),
        );
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(out),
        }
    }
}

/// The medication a dose reminder is for, when the reminder is still its next dose
/// (one read); `None` when it is stale (the medication was changed, discontinued or
/// deleted since the reminder was written, or the reminder was already rolled past).
pub async fn current_dose(
    app: &AppContext,
    reminder: &Reminder,
) -> Result<Option<Stored>, ApiError> {
    let Some(due) = reminder.due() else {
        return Ok(None);
    };
    let Some(stored) = stored(app, &reminder.subject_id).await? else {
        return Ok(None);
    };
    Ok((stored.active && stored.next_dose_at == Some(due)).then_some(stored))
}

/// Moves a medication's rolling reminder past `due` (queued already) to its next dose
/// (one read of the profile's zone, one transaction). Called after the reminder was
/// queued: a crash in between queues it again on the next run (a duplicate the worker
/// drops), never loses it.
pub async fn roll_forward(
    app: &AppContext,
    stored: &Stored,
    due: Timestamp,
) -> Result<(), ApiError> {
    let zone = profiles::time_zone(app, &stored.patient_id).await?;
    let next = next_dose(&stored.course, zone, app.now(), Some(due));
    let table = app.config.table.clone();
    let mut update = Update::new().set("rolled_at", app.now().to_string());
    update = match next {
        Some(next) => update.set("next_dose_at", next.to_string()),
        None => update.remove("next_dose_at"),
    };
    let mut ops = vec![WriteOp::Update {
        table: table.clone(),
        key: keys::medication(&stored.id),
        update,
        condition: Some(Condition::Equals(
            "next_dose_at".into(),
            Value::S(due.to_string()),
        )),
    }];
    ops.extend(next.and_then(|at| {
        reminders::schedule(&table, &Reminder::dose(&stored.patient_id, &stored.id, at))
    }));
    match app.db.transact_write(ops).await {
        Ok(()) => Ok(()),
        // Changed meanwhile (updated, discontinued, or rolled by another run).
        Err(err) if err.is_condition_failed() => Ok(()),
        Err(err) => Err(err.into()),
    }
}
