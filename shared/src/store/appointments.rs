//! Appointments, provider listings and the claims that keep a provider's appointments
//! apart (`docs/appointments.md`).
//!
//! | item | pk | sk | gsi1 | gsi2 |
//! |---|---|---|---|---|
//! | listing + availability | `PROVIDER#<provider>` | `LISTING` | `DIRECTORY` / `<provider>` | |
//! | appointment | `APPT#<id>` | `APPT` | `APPTSOF#<patient>` / `<start>#<id>` | `APPTSWITH#<provider>` / `<start>#<id>` |
//! | claim | `CLAIM#<provider>` | `UNIT#<unit start>` | | |
//! | idempotency record | `IDEMP#<user>#<key>` | `IDEMP` (TTL 24 h) | | |
//!
//! A booking puts one claim per 15-minute unit it covers, each conditioned on the unit
//! being free, in the same transaction as the appointment and its audit event: of any
//! number of racing bookings touching a unit, exactly one commits. Nothing is read to
//! decide whether time is free; the slot list only *shows* what is free.
//!
//! Worst-case item counts (DynamoDB allows 100): booking 1 idempotency record + 1
//! listing check + 1 care check + 1 appointment + 8 claims + event + chain head = **14**;
//! reschedule 1 appointment + 1 listing check + 8 releases + 8 claims + 2 = **20**;
//! cancel 1 + 8 + 2 = **11**; confirm 1 + 1 care relationship + 2 = **4**. Each leaves
//! room for 4 reminder ops ([`RESERVED_FOR_REMINDERS`]).

use crate::audit::{AuditEvent, CommitError};
use crate::auth::Principal;
use crate::domain::appointment::{units, AvailabilitySpec, ConsultationType, Status, MAX_UNITS};
use crate::domain::zone::Zone;
use crate::domain::Timestamp;
use crate::http::pagination::{Page, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{Condition, Index, Item, Key, Query, SortKey, Update, Value, WriteOp, TTL};
use crate::store::{keys, reminders};
use crate::{phi, ApiError, AppContext};
use serde::Serialize;
use std::collections::BTreeSet;

/// Ops each booking, reschedule and cancel commit leaves free for reminders.
pub const RESERVED_FOR_REMINDERS: usize = 4;
/// How long a booking's idempotency record is kept.
pub const IDEMPOTENCY_SECS: i64 = 24 * 3600;
/// The sealed attributes of an appointment.
pub const SEALED: [&str; 2] = ["reason", "notes"];

fn text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(Value::as_i64).unwrap_or(0)
}

// --- listings ---------------------------------------------------------------------------

/// A provider's public listing and availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub provider_id: String,
    pub display_name: String,
    pub specialty: Option<String>,
    pub consultation_types: Vec<ConsultationType>,
    pub availability: AvailabilitySpec,
    /// Raised by every change; a booking's transaction checks it.
    pub version: i64,
    pub updated_at: String,
}

impl Listing {
    fn parse(item: &Item) -> Result<Self, ApiError> {
        let availability = serde_json::from_str(&text(item, "availability"))
            .map_err(|_| ApiError::internal("malformed availability record"))?;
        let consultation_types = match item.get("consultation_types") {
            Some(Value::L(list)) => list
                .iter()
                .filter_map(|v| v.as_str().and_then(ConsultationType::parse))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            provider_id: text(item, "provider_id"),
            display_name: text(item, "display_name"),
            specialty: item
                .get("specialty")
                .and_then(Value::as_str)
                .map(str::to_string),
            consultation_types,
            availability,
            version: number(item, "version"),
            updated_at: text(item, "updated_at"),
        })
    }
}

/// A provider's listing; `None` when they have published none.
pub async fn listing(app: &AppContext, provider_id: &str) -> Result<Option<Listing>, ApiError> {
    app.db
        .get(&app.config.table, &keys::provider_listing(provider_id))
        .await?
        .map(|item| Listing::parse(&item))
        .transpose()
}

/// Creates or replaces a provider's listing (raising its version), with its event
/// (3 items). Appointments are not touched.
pub async fn save_listing(
    app: &AppContext,
    listing: &Listing,
    event: AuditEvent,
) -> Result<i64, ApiError> {
    let spec = serde_json::to_string(&listing.availability).map_err(ApiError::internal)?;
    let key = keys::provider_listing(&listing.provider_id);
    let mut update = Update::new()
        .set("provider_id", listing.provider_id.as_str())
        .set("display_name", listing.display_name.as_str())
        .set(
            "consultation_types",
            Value::L(
                listing
                    .consultation_types
                    .iter()
                    .map(|c| Value::S(c.as_str().into()))
                    .collect(),
            ),
        )
        .set("availability", spec)
        .set("updated_at", listing.updated_at.as_str())
        .set("gsi1pk", keys::DIRECTORY)
        .set("gsi1sk", listing.provider_id.as_str())
        .add("version", 1);
    update = match &listing.specialty {
        Some(s) => update.set("specialty", s.as_str()),
        None => update.remove("specialty"),
    };
    let op = WriteOp::Update {
        table: app.config.table.clone(),
        key,
        update,
        condition: None,
    };
    app.audit.commit(event, vec![op]).await?;
    // The version is what the update made it; read it back (strongly consistent).
    Ok(self::listing(app, &listing.provider_id)
        .await?
        .map_or(1, |l| l.version))
}

/// One page of the directory (listings by provider id).
pub async fn directory(app: &AppContext, page: &PageRequest) -> Result<Page<Listing>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::DIRECTORY)
                .on(Index::Gsi1)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    let items = result
        .items
        .iter()
        .map(Listing::parse)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(items, result.next))
}

/// The claimed units of a provider's time starting in `[from, to)` (every page).
pub async fn claimed(
    app: &AppContext,
    provider_id: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<BTreeSet<String>, ApiError> {
    let mut out = BTreeSet::new();
    let mut start = None;
    loop {
        let page = app
            .db
            .query(
                &app.config.table,
                Query::partition(keys::claims_of(provider_id))
                    .sort_key(SortKey::Between(
                        format!("{}{from}", keys::UNIT_SK),
                        format!("{}{to}", keys::UNIT_SK),
                    ))
                    .limit(1000)
                    .start(start),
            )
            .await?;
        for item in &page.items {
            if let Some(unit) = text(item, "sk").strip_prefix(keys::UNIT_SK) {
                out.insert(unit.to_string());
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(out),
        }
    }
}

// --- appointments -----------------------------------------------------------------------

/// An appointment as stored (reason and notes still sealed in `item`).
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub patient_id: String,
    pub provider_id: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub time_zone: String,
    pub status: Status,
    pub consultation_type: ConsultationType,
    pub booked_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
    pub item: Item,
}

impl Stored {
    fn parse(item: Item) -> Result<Self, ApiError> {
        let bad = || ApiError::internal("malformed appointment record");
        let time = |name: &str| Timestamp::parse(&text(&item, name)).ok_or_else(bad);
        Ok(Self {
            id: text(&item, "id"),
            patient_id: text(&item, "patient_id"),
            provider_id: text(&item, "provider_id"),
            start: time("start")?,
            end: time("end")?,
            time_zone: text(&item, "time_zone"),
            status: Status::parse(&text(&item, "status")).ok_or_else(bad)?,
            consultation_type: ConsultationType::parse(&text(&item, "consultation_type"))
                .ok_or_else(bad)?,
            booked_by: text(&item, "booked_by"),
            created_at: text(&item, "created_at"),
            updated_at: text(&item, "updated_at"),
            version: number(&item, "version"),
            item,
        })
    }

    pub fn is_party(&self, user_id: &str) -> bool {
        self.patient_id == user_id || self.provider_id == user_id
    }
}

/// An appointment in API answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Appointment {
    pub id: String,
    pub patient_id: String,
    pub provider_id: String,
    /// RFC 3339 UTC.
    pub start: String,
    pub end: String,
    /// The provider's IANA zone, for showing the times.
    pub time_zone: String,
    pub status: Status,
    pub consultation_type: ConsultationType,
    /// Reason for the visit (PHI, stored sealed).
    pub reason: Option<String>,
    /// The provider's notes (PHI, stored sealed).
    pub notes: Option<String>,
    /// The user who booked it (the patient, or the provider for the patient).
    pub booked_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Appointment {
    fn of(stored: &Stored, reason: Option<String>, notes: Option<String>) -> Self {
        Self {
            id: stored.id.clone(),
            patient_id: stored.patient_id.clone(),
            provider_id: stored.provider_id.clone(),
            start: stored.start.to_string(),
            end: stored.end.to_string(),
            time_zone: stored.time_zone.clone(),
            status: stored.status,
            consultation_type: stored.consultation_type,
            reason,
            notes,
            booked_by: stored.booked_by.clone(),
            created_at: stored.created_at.clone(),
            updated_at: stored.updated_at.clone(),
        }
    }
}

/// Opens an appointment for a request; an integrity failure is audited and fails it.
pub async fn open(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    stored: &Stored,
) -> Result<Appointment, ApiError> {
    let mut opened = phi::open_audited(
        app,
        req,
        principal,
        &stored.item,
        &SEALED,
        ("appointment", &stored.id),
    )
    .await?
    .into_iter();
    let reason = opened.next().flatten();
    let notes = opened.next().flatten();
    Ok(Appointment::of(stored, reason, notes))
}

/// An appointment with reason and notes already opened (or just written).
pub fn open_plain(stored: &Stored, reason: Option<String>, notes: Option<String>) -> Appointment {
    Appointment::of(stored, reason, notes)
}

/// One appointment; `None` when there is none with this id.
pub async fn get(app: &AppContext, id: &str) -> Result<Option<Stored>, ApiError> {
    app.db
        .get(&app.config.table, &keys::appointment(id))
        .await?
        .map(Stored::parse)
        .transpose()
}

/// A new appointment, validated by the caller (an offered slot, in the future).
#[derive(Debug, Clone)]
pub struct NewAppointment {
    pub id: String,
    pub patient_id: String,
    pub provider_id: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub time_zone: Zone,
    pub status: Status,
    pub consultation_type: ConsultationType,
    pub reason: Option<String>,
    pub booked_by: String,
}

/// A client's `Idempotency-Key` for a booking, and what the booking asked for (ids, the
/// time and the type: never the reason, which is compared by opening the first booking).
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub user_id: String,
    pub key: String,
    pub fingerprint: String,
}

/// Why a booking was not made. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("this time is no longer available")]
    Taken,
    #[error("the provider's availability changed meanwhile; retry")]
    ListingChanged,
    #[error("no active care relationship with this patient")]
    NoRelationship,
    /// The idempotency key was used first for this appointment.
    #[error("already booked under this idempotency key")]
    Replay(String),
    #[error("Idempotency-Key: used before for another booking")]
    KeyReused,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<BookError> for ApiError {
    fn from(err: BookError) -> Self {
        match err {
            BookError::Taken | BookError::ListingChanged => ApiError::conflict(err.to_string()),
            BookError::NoRelationship => ApiError::NotFound,
            BookError::KeyReused => ApiError::unprocessable(err.to_string()),
            BookError::Replay(_) => ApiError::conflict(err.to_string()),
            BookError::Api(err) => err,
        }
    }
}

/// What an earlier booking under this key answered: `Ok(Some(id))` for the same request,
/// [`BookError::KeyReused`] for another one, `Ok(None)` when the key is new.
pub async fn replayed(app: &AppContext, idem: &Idempotency) -> Result<Option<String>, BookError> {
    let item = app
        .db
        .get(
            &app.config.table,
            &keys::idempotency(&idem.user_id, &idem.key),
        )
        .await
        .map_err(ApiError::from)?;
    match item {
        None => Ok(None),
        Some(item) if text(&item, "fingerprint") == idem.fingerprint => {
            Ok(Some(text(&item, "appointment_id")))
        }
        Some(_) => Err(BookError::KeyReused),
    }
}

fn gsi_sk(start: Timestamp, id: &str) -> String {
    format!("{start}#{id}")
}

fn claim_put(app: &AppContext, provider_id: &str, unit: &str, appointment_id: &str) -> WriteOp {
    let key = keys::claim(provider_id, unit);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("appointment_id".into(), Value::S(appointment_id.into()));
    WriteOp::Put {
        table: app.config.table.clone(),
        item,
        condition: Some(Condition::NotExists),
    }
}

fn claim_release(app: &AppContext, provider_id: &str, unit: &str, appointment_id: &str) -> WriteOp {
    WriteOp::Delete {
        table: app.config.table.clone(),
        key: keys::claim(provider_id, unit),
        condition: Some(Condition::Equals(
            "appointment_id".into(),
            Value::S(appointment_id.into()),
        )),
    }
}

fn listing_check(app: &AppContext, provider_id: &str, version: i64) -> WriteOp {
    WriteOp::Check {
        table: app.config.table.clone(),
        key: keys::provider_listing(provider_id),
        condition: Condition::Equals("version".into(), Value::N(version)),
    }
}

fn unit_names(start: Timestamp, end: Timestamp) -> Result<Vec<String>, ApiError> {
    let units: Vec<String> = units(start, end).iter().map(Timestamp::to_string).collect();
    if units.is_empty() || units.len() > MAX_UNITS {
        return Err(ApiError::internal("appointment length out of bounds"));
    }
    Ok(units)
}

/// Books: the idempotency record (when a key is given), a check that the listing is at
/// `listing_version`, a check of the care relationship (when a provider books for a
/// patient), the appointment and one claim per unit, with `event`, in one transaction.
pub async fn book(
    app: &AppContext,
    new: &NewAppointment,
    listing_version: i64,
    care_check: Option<WriteOp>,
    idem: Option<&Idempotency>,
    event: AuditEvent,
) -> Result<Appointment, BookError> {
    let table = app.config.table.clone();
    let key = keys::appointment(&new.id);
    let now = app.now();
    let mut ops = Vec::with_capacity(4 + MAX_UNITS);
    let mut roles = Vec::new();
    if let Some(idem) = idem {
        let record = keys::idempotency(&idem.user_id, &idem.key);
        let mut item = Item::new();
        item.insert("pk".into(), Value::S(record.pk));
        item.insert("sk".into(), Value::S(record.sk));
        item.insert("fingerprint".into(), Value::S(idem.fingerprint.clone()));
        item.insert("appointment_id".into(), Value::S(new.id.clone()));
        item.insert(TTL.into(), Value::N(now.epoch_secs() + IDEMPOTENCY_SECS));
        ops.push(WriteOp::Put {
            table: table.clone(),
            item,
            condition: Some(Condition::NotExists),
        });
        roles.push("idempotency");
    }
    ops.push(listing_check(app, &new.provider_id, listing_version));
    roles.push("listing");
    if let Some(check) = care_check {
        ops.push(check);
        roles.push("care");
    }
    let mut item = Item::new();
    let now_text = now.to_string();
    for (name, value) in [
        ("pk", key.pk.clone()),
        ("sk", key.sk.clone()),
        ("id", new.id.clone()),
        ("patient_id", new.patient_id.clone()),
        ("provider_id", new.provider_id.clone()),
        ("start", new.start.to_string()),
        ("end", new.end.to_string()),
        ("time_zone", new.time_zone.name().to_string()),
        ("status", new.status.as_str().to_string()),
        (
            "consultation_type",
            new.consultation_type.as_str().to_string(),
        ),
        ("booked_by", new.booked_by.clone()),
        ("created_at", now_text.clone()),
        ("updated_at", now_text.clone()),
        ("gsi1pk", keys::appointments_of(&new.patient_id)),
        ("gsi1sk", gsi_sk(new.start, &new.id)),
        ("gsi2pk", keys::appointments_with(&new.provider_id)),
        ("gsi2sk", gsi_sk(new.start, &new.id)),
    ] {
        item.insert(name.into(), Value::S(value));
    }
    item.insert("version".into(), Value::N(1));
    if let Some(reason) = &new.reason {
        item.insert(
            "reason".into(),
            phi::seal(app, &key, "reason", reason).await?,
        );
    }
    ops.push(WriteOp::Put {
        table: table.clone(),
        item: item.clone(),
        condition: Some(Condition::NotExists),
    });
    roles.push("appointment");
    for unit in unit_names(new.start, new.end)? {
        ops.push(claim_put(app, &new.provider_id, &unit, &new.id));
        roles.push("claim");
    }
    // The 24-hour and 1-hour reminders, in the same commit (at most 2 ops).
    for op in
        reminders::appointment_ops(&table, &new.id, &new.patient_id, None, Some(new.start), now)
    {
        ops.push(op);
        roles.push("reminder");
    }
    match app.audit.commit(event, ops).await {
        Ok(()) => {
            let stored = Stored::parse(item)?;
            Ok(Appointment::of(&stored, new.reason.clone(), None))
        }
        Err(CommitError::Change { op }) => match roles.get(op).copied() {
            Some("idempotency") => match idem {
                Some(idem) => match replayed(app, idem).await? {
                    Some(id) => Err(BookError::Replay(id)),
                    None => Err(BookError::Taken),
                },
                None => Err(BookError::Taken),
            },
            Some("listing") => Err(BookError::ListingChanged),
            Some("care") => Err(BookError::NoRelationship),
            _ => Err(BookError::Taken),
        },
        Err(err) => Err(BookError::Api(err.into())),
    }
}

/// One change of an appointment (each part optional).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub status: Option<Status>,
    /// A new `[start, end)`, with the listing version it was checked against.
    pub slot: Option<(Timestamp, Timestamp, i64)>,
    pub reason: Option<String>,
    pub notes: Option<String>,
    /// A care-relationship write to commit with it (a confirmation).
    pub care: Option<WriteOp>,
    /// Writes of another area committed in the same transaction (a video session
    /// started or ended with the appointment); a failed condition of one of them is
    /// [`ChangeError::Also`].
    pub also: Vec<WriteOp>,
}

/// Why a change was not made. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("the appointment was changed by another request; retry")]
    Stale,
    #[error("this time is no longer available")]
    Taken,
    #[error("the provider's availability changed meanwhile; retry")]
    ListingChanged,
    /// The care relationship changed between the read and the commit.
    #[error("the care relationship changed meanwhile; retry")]
    Care,
    /// A write of [`Change::also`] failed its condition.
    #[error("a related record changed meanwhile; retry")]
    Also,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<ChangeError> for ApiError {
    fn from(err: ChangeError) -> Self {
        match err {
            ChangeError::Api(err) => err,
            other => ApiError::conflict(other.to_string()),
        }
    }
}

/// Applies a change, conditioned on the appointment's version (so two changes never
/// both apply to what one of them read). A reschedule releases the units the new time
/// no longer covers and claims the ones it newly covers; a cancel releases every unit.
/// Returns the appointment as stored after the change.
pub async fn change(
    app: &AppContext,
    stored: &Stored,
    change: Change,
    event: AuditEvent,
) -> Result<Stored, ChangeError> {
    let table = app.config.table.clone();
    let key = keys::appointment(&stored.id);
    let now = app.now().to_string();
    let mut sets: Vec<(&str, Value)> = vec![("updated_at", Value::S(now.clone()))];
    if let Some(status) = change.status {
        sets.push(("status", Value::S(status.as_str().into())));
    }
    let mut releases = Vec::new();
    let mut claims = Vec::new();
    let old_units: BTreeSet<String> = unit_names(stored.start, stored.end)?.into_iter().collect();
    if let Some((start, end, _)) = change.slot {
        let new_units: BTreeSet<String> = unit_names(start, end)?.into_iter().collect();
        releases.extend(old_units.difference(&new_units).cloned());
        claims.extend(new_units.difference(&old_units).cloned());
        let sk = gsi_sk(start, &stored.id);
        sets.push(("start", Value::S(start.to_string())));
        sets.push(("end", Value::S(end.to_string())));
        sets.push(("gsi1sk", Value::S(sk.clone())));
        sets.push(("gsi2sk", Value::S(sk)));
    }
    if change.status == Some(Status::Cancelled) {
        releases = old_units.into_iter().collect();
        claims.clear();
    }
    for (name, plain) in [("reason", &change.reason), ("notes", &change.notes)] {
        if let Some(plain) = plain {
            sets.push((name, phi::seal(app, &key, name, plain).await?));
        }
    }
    let mut update = Update::new().add("version", 1);
    let mut after = stored.item.clone();
    for (name, value) in sets {
        after.insert(name.into(), value.clone());
        update = update.set(name, value);
    }
    after.insert("version".into(), Value::N(stored.version + 1));
    let mut ops = vec![WriteOp::Update {
        table: table.clone(),
        key,
        update,
        condition: Some(Condition::Equals(
            "version".into(),
            Value::N(stored.version),
        )),
    }];
    let mut roles = vec!["appointment"];
    if let Some((_, _, version)) = change.slot {
        ops.push(listing_check(app, &stored.provider_id, version));
        roles.push("listing");
    }
    if let Some(care) = change.care {
        ops.push(care);
        roles.push("care");
    }
    for op in change.also {
        ops.push(op);
        roles.push("also");
    }
    for unit in &releases {
        ops.push(claim_release(app, &stored.provider_id, unit, &stored.id));
        roles.push("release");
    }
    for unit in &claims {
        ops.push(claim_put(app, &stored.provider_id, unit, &stored.id));
        roles.push("claim");
    }
    // Reminders follow the appointment: a move cancels the old ones and schedules the new
    // ones, a cancel, completion or no-show cancels them (at most 4 ops).
    let reminded_before = stored.status.is_reminded().then_some(stored.start);
    let new_start = change.slot.map_or(stored.start, |(start, _, _)| start);
    let reminded_after = change
        .status
        .unwrap_or(stored.status)
        .is_reminded()
        .then_some(new_start);
    for op in reminders::appointment_ops(
        &table,
        &stored.id,
        &stored.patient_id,
        reminded_before,
        reminded_after,
        app.now(),
    ) {
        ops.push(op);
        roles.push("reminder");
    }
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(Stored::parse(after)?),
        Err(CommitError::Change { op }) => Err(match roles.get(op).copied() {
            Some("listing") => ChangeError::ListingChanged,
            Some("care") => ChangeError::Care,
            Some("also") => ChangeError::Also,
            Some("claim") => ChangeError::Taken,
            _ => ChangeError::Stale,
        }),
        Err(err) => Err(ChangeError::Api(err.into())),
    }
}

/// Whose appointments a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side<'a> {
    Patient(&'a str),
    Provider(&'a str),
}

/// One page of appointments by start time (`[from, to)`), from the patient's (gsi1) or
/// the provider's (gsi2) index; `status` filters the page (which may then hold fewer
/// items than the limit and still have a cursor).
pub async fn list(
    app: &AppContext,
    side: Side<'_>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    status: Option<Status>,
    page: &PageRequest,
) -> Result<Page<Stored>, ApiError> {
    let query = match side {
        Side::Patient(id) => Query::partition(keys::appointments_of(id)).on(Index::Gsi1),
        Side::Provider(id) => Query::partition(keys::appointments_with(id)).on(Index::Gsi2),
    };
    let query = match (from, to) {
        (Some(f), Some(t)) => query.sort_key(SortKey::Between(f.to_string(), t.to_string())),
        (Some(f), None) => query.sort_key(SortKey::Ge(f.to_string())),
        (None, Some(t)) => query.sort_key(SortKey::Lt(t.to_string())),
        (None, None) => query,
    };
    let result = app
        .db
        .query(
            &app.config.table,
            query.limit(page.limit).start(page.start.clone()),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for item in result.items {
        let stored = Stored::parse(item)?;
        if status.is_none_or(|s| s == stored.status) {
            items.push(stored);
        }
    }
    Ok(Page::new(items, result.next))
}

/// A provider's appointments starting at or after `from` that still hold time
/// (requested, confirmed, checked in), at most 1000.
pub async fn upcoming_with(
    app: &AppContext,
    provider_id: &str,
    from: Timestamp,
) -> Result<Vec<Stored>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::appointments_with(provider_id))
                .on(Index::Gsi2)
                .sort_key(SortKey::Ge(from.to_string()))
                .limit(1000),
        )
        .await?;
    let mut out = Vec::new();
    for item in result.items {
        let stored = Stored::parse(item)?;
        if matches!(
            stored.status,
            Status::Requested | Status::Confirmed | Status::CheckedIn
        ) {
            out.push(stored);
        }
    }
    Ok(out)
}

/// The key of an appointment (for callers that add ops to its commits, e.g. reminders).
pub fn key(id: &str) -> Key {
    keys::appointment(id)
}
