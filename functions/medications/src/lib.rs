//! The medications function: a patient's medications, prescribed by a provider in an
//! active care relationship or self-reported by the patient, with their dose schedule
//! (times of day in the patient's zone, or every N hours), recorded doses and
//! adherence. Name, dosage, form, route and instructions are sealed
//! (`shared::store::medications`). Every read and change is audited; changes commit
//! with their event and the medication's rolling dose reminder
//! (`shared::store::reminders`).
//!
//! Who may do what: the patient reads, creates (self-reported), updates, discontinues
//! and records doses of their own; a provider with an active care relationship and an
//! MFA session reads, prescribes, updates and discontinues their patients'; an admin
//! reads through break-glass (MFA and `X-Access-Reason`) and changes nothing. Anyone
//! else gets a 404 (recorded as `ACCESS_DENIED`).

/// The outside services the `medications` binary links (`shared::adapters::links`): the
/// table and the keys only.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::NONE;

use chrono::Duration;
use http::Method;
use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome, Reason};
use shared::auth::policy::Basis;
use shared::auth::{audit_event, Principal, Role};
use shared::domain::medication::{
    adherence_rate, Course, DoseStatus, MedicationFields, ScheduleBody, MAX_RANGE_DAYS, MAX_REFILLS,
};
use shared::domain::Timestamp;
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, Page, RouteDoc, Router};
use shared::store::medications::{self, Change, Dose, Medication, NewMedication, Recorded, Stored};
use shared::store::profiles;
use shared::{guard, ApiError, App, AppContext};

pub use shared::store::medications::RESOURCE;

/// What a patient's list is recorded on (with the patient's id).
pub const LIST_RESOURCE: &str = "patient_medications";
/// How far ahead of now a dose may be recorded (taken early).
pub const EARLY_HOURS: i64 = 12;

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, "/api/v1/medications", create)
        .doc(
            RouteDoc::new("Add a medication: prescribed by a provider for `patient_id`, or self-reported by the patient")
                .describe("Schedules its first dose reminder. A provider needs an active care relationship and an MFA session.")
                .bearer()
                .body::<MedicationBody>()
                .response::<Medication>(201)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::GET, "/api/v1/medications", list)
        .doc(
            RouteDoc::new("A patient's medications (the caller's own unless `patient_id` names a patient in their care)")
                .bearer()
                .query::<String>("patient_id", "The patient (default: the caller)")
                .header("X-Access-Reason", "An admin's break-glass reason (10 to 500 characters)")
                .paged()
                .response::<Page<Medication>>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::GET, "/api/v1/medications/{id}", get)
        .doc(
            RouteDoc::new("A medication")
                .bearer()
                .header("X-Access-Reason", "An admin's break-glass reason (10 to 500 characters)")
                .response::<Medication>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::PATCH, "/api/v1/medications/{id}", update)
        .doc(
            RouteDoc::new("Change a medication (fields left out keep their value); moves its dose reminder")
                .bearer()
                .body::<MedicationPatch>()
                .response::<Medication>(200)
                .errors(&[400, 401, 403, 404, 409, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/medications/{id}/discontinue",
            discontinue,
        )
        .doc(
            RouteDoc::new("Discontinue a medication; its reminders stop")
                .bearer()
                .response::<Medication>(200)
                .errors(&[401, 403, 404, 409, 429, 503]),
        )
        .route(Method::POST, "/api/v1/medications/{id}/doses", record_dose)
        .doc(
            RouteDoc::new("Record a scheduled dose as taken or skipped (once per dose)")
                .describe("A repeat with the same answer returns the first one (200); another answer is a 409. `scheduled_for` must be a dose of the schedule (422 otherwise).")
                .bearer()
                .body::<DoseBody>()
                .response::<Dose>(201)
                .response::<Dose>(200)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/medications/{id}/adherence", adherence)
        .doc(
            RouteDoc::new("Adherence: taken doses over the doses due in a range")
                .bearer()
                .query::<String>("from", "RFC 3339 (default: 7 days before `to`)")
                .query::<String>("to", "RFC 3339, exclusive (default: now)")
                .header("X-Access-Reason", "An admin's break-glass reason (10 to 500 characters)")
                .response::<Adherence>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewMedication")]
pub struct MedicationBody {
    /// The patient, when a provider prescribes (a patient may leave it out).
    #[serde(default)]
    patient_id: Option<String>,
    name: String,
    dosage: String,
    form: String,
    route: String,
    #[serde(default)]
    instructions: Option<String>,
    schedule: ScheduleBody,
    /// `YYYY-MM-DD` in the patient's zone (default: today there).
    #[serde(default)]
    starts_on: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    #[serde(default)]
    ends_on: Option<String>,
    #[serde(default)]
    refills: Option<u32>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MedicationPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    dosage: Option<String>,
    #[serde(default)]
    form: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    schedule: Option<ScheduleBody>,
    #[serde(default)]
    starts_on: Option<String>,
    #[serde(default)]
    ends_on: Option<String>,
    #[serde(default)]
    refills: Option<u32>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoseBody {
    /// The scheduled dose (RFC 3339): one the schedule has.
    scheduled_for: String,
    status: DoseStatus,
    /// When it was taken or skipped (default: now).
    #[serde(default)]
    at: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Adherence {
    medication_id: String,
    from: String,
    to: String,
    /// Scheduled doses in the range that were due (before now).
    due: usize,
    taken: usize,
    skipped: usize,
    /// `taken / due`, to three decimals; null when no dose was due.
    rate: Option<f64>,
}

fn refills(value: Option<u32>) -> Result<Option<u32>, ApiError> {
    match value {
        Some(n) if n > MAX_REFILLS => Err(ApiError::validation(format!(
            "refills: at most {MAX_REFILLS}"
        ))),
        other => Ok(other),
    }
}

/// Records a successful read, with the basis it was allowed on.
async fn record_read(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    basis: Basis,
    resource: (&str, &str),
) -> Result<(), ApiError> {
    let event = match basis {
        Basis::BreakGlass { reason } => {
            audit_event(req, principal, Action::BreakGlass, Outcome::Success)
                .reason(Reason::new(&reason)?)
        }
        Basis::Owner | Basis::CareRelationship => {
            audit_event(req, principal, Action::View, Outcome::Success)
        }
    };
    app.audit
        .record(event.resource(resource.0, resource.1))
        .await?;
    Ok(())
}

/// The medication named by `{id}` and the basis of the caller's access: 404 (recorded)
/// when malformed, absent or not the caller's to see.
async fn medication(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<(Stored, Basis), ApiError> {
    let id = guard::path_id(app, req, principal, "id", RESOURCE).await?;
    let Some(stored) = medications::stored(app, id).await? else {
        return Err(guard::refuse(app, req, principal, (RESOURCE, id), ApiError::NotFound).await);
    };
    let basis = guard::patient(app, req, principal, &stored.patient_id, RESOURCE).await?;
    Ok((stored, basis))
}

/// Changes are the patient's or their providers': an admin's break-glass is read-only.
async fn may_change(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    basis: &Basis,
    target: (&str, &str),
) -> Result<(), ApiError> {
    match basis {
        Basis::Owner | Basis::CareRelationship => Ok(()),
        Basis::BreakGlass { .. } => {
            Err(guard::refuse(app, req, principal, target, ApiError::Forbidden).await)
        }
    }
}

/// `POST /api/v1/medications`.
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role == Role::Admin {
        return Err(guard::refuse(
            &app,
            &req,
            &principal,
            (RESOURCE, guard::ANY),
            ApiError::Forbidden,
        )
        .await);
    }
    let body: MedicationBody = req.json()?;
    let patient_id = match (&principal.role, body.patient_id.as_deref()) {
        (Role::Patient, None) => principal.user_id.clone(),
        (_, Some(id)) if guard::is_id(id) => id.to_string(),
        (_, Some(id)) => {
            let target = (RESOURCE, guard::recorded_id(id));
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
        }
        (_, None) => return Err(ApiError::validation("patient_id: required for a provider")),
    };
    let basis = guard::patient(&app, &req, &principal, &patient_id, RESOURCE).await?;
    may_change(&app, &req, &principal, &basis, (RESOURCE, &patient_id)).await?;
    let fields = MedicationFields::parse(
        &body.name,
        &body.dosage,
        &body.form,
        &body.route,
        body.instructions.as_deref(),
    )?;
    let zone = profiles::time_zone(&app, &patient_id).await?;
    let today = zone.date(app.now()).format("%Y-%m-%d").to_string();
    let course = Course::parse(
        &body.schedule,
        body.starts_on.as_deref().unwrap_or(&today),
        body.ends_on.as_deref(),
    )?;
    let refills = refills(body.refills)?;
    let next = medications::next_dose(&course, zone, app.now(), None);
    let id = app.new_id();
    let prescribed_by = (principal.role == Role::Provider).then_some(principal.user_id.as_str());
    let event =
        audit_event(&req, &principal, Action::Create, Outcome::Success).resource(RESOURCE, &id);
    let created = medications::create(
        &app,
        NewMedication {
            id: &id,
            patient_id: &patient_id,
            prescribed_by,
            fields,
            course,
            refills,
        },
        next,
        event,
    )
    .await?;
    ApiResponse::created(&created)
}

/// `GET /api/v1/medications[?patient_id=]`.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let patient_id = match req.query_param("patient_id") {
        None if principal.role == Role::Patient => principal.user_id.clone(),
        None => return Err(ApiError::validation("patient_id: required for staff")),
        Some(id) if guard::is_id(id) => id.to_string(),
        Some(id) => {
            let target = (LIST_RESOURCE, guard::recorded_id(id));
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
        }
    };
    let basis = guard::patient(&app, &req, &principal, &patient_id, LIST_RESOURCE).await?;
    let page = PageRequest::from_request(&req)?;
    let items = medications::list(&app, &req, &principal, &patient_id, &page).await?;
    record_read(&app, &req, &principal, basis, (LIST_RESOURCE, &patient_id)).await?;
    ApiResponse::ok(&items)
}

/// `GET /api/v1/medications/{id}`.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, basis) = medication(&app, &req, &principal).await?;
    let view = medications::open(&app, &req, &principal, &stored.item).await?;
    record_read(&app, &req, &principal, basis, (RESOURCE, &stored.id)).await?;
    ApiResponse::ok(&view)
}

/// `PATCH /api/v1/medications/{id}`.
pub async fn update(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, basis) = medication(&app, &req, &principal).await?;
    may_change(&app, &req, &principal, &basis, (RESOURCE, &stored.id)).await?;
    let body: MedicationPatch = req.json()?;
    if !stored.active {
        return Err(ApiError::conflict(
            "a discontinued medication cannot be changed",
        ));
    }
    let descriptive = body.name.is_some()
        || body.dosage.is_some()
        || body.form.is_some()
        || body.route.is_some()
        || body.instructions.is_some();
    let fields = if descriptive {
        // Fields left out keep their stored value: open them to re-seal the whole set.
        let current = medications::open(&app, &req, &principal, &stored.item).await?;
        Some(MedicationFields::parse(
            body.name.as_deref().unwrap_or(&current.name),
            body.dosage.as_deref().unwrap_or(&current.dosage),
            body.form.as_deref().unwrap_or(&current.form),
            body.route.as_deref().unwrap_or(&current.route),
            body.instructions
                .as_deref()
                .or(current.instructions.as_deref()),
        )?)
    } else {
        None
    };
    let schedule = body
        .schedule
        .unwrap_or_else(|| stored.course.schedule.body());
    let starts_on = body
        .starts_on
        .unwrap_or_else(|| stored.course.starts_on.format("%Y-%m-%d").to_string());
    let ends_on = body.ends_on.or_else(|| {
        stored
            .course
            .ends_on
            .map(|d| d.format("%Y-%m-%d").to_string())
    });
    let course = Course::parse(&schedule, &starts_on, ends_on.as_deref())?;
    let stored_refills = stored
        .item
        .get("refills")
        .and_then(|v| v.as_i64())
        .and_then(|n| u32::try_from(n).ok());
    let refills = refills(body.refills.or(stored_refills))?;
    let zone = profiles::time_zone(&app, &stored.patient_id).await?;
    let next = medications::next_dose(&course, zone, app.now(), None);
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource(RESOURCE, &stored.id);
    let change = Change {
        fields,
        course,
        refills,
    };
    let updated = medications::update(&app, &stored, change, next, event).await?;
    ApiResponse::ok(&updated)
}

/// `POST /api/v1/medications/{id}/discontinue`.
pub async fn discontinue(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, basis) = medication(&app, &req, &principal).await?;
    may_change(&app, &req, &principal, &basis, (RESOURCE, &stored.id)).await?;
    if !stored.active {
        return Err(ApiError::conflict(
            "this medication is already discontinued",
        ));
    }
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource(RESOURCE, &stored.id);
    let view = medications::discontinue(&app, &stored, event).await?;
    ApiResponse::ok(&view)
}

fn timestamp(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(value)
        .ok_or_else(|| ApiError::validation(format!("{field}: must be an RFC 3339 time")))
}

/// `POST /api/v1/medications/{id}/doses`: the patient's own record of a dose.
pub async fn record_dose(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, basis) = medication(&app, &req, &principal).await?;
    if basis != Basis::Owner {
        let target = (RESOURCE, stored.id.as_str());
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: DoseBody = req.json()?;
    let scheduled_for = timestamp("scheduled_for", &body.scheduled_for)?;
    let now = app.now();
    let stated_at = body
        .at
        .as_deref()
        .map(|at| timestamp("at", at))
        .transpose()?;
    if stated_at.is_some_and(|at| at > now) {
        return Err(ApiError::unprocessable("at: must not be in the future"));
    }
    if scheduled_for.as_datetime() > now.as_datetime() + Duration::hours(EARLY_HOURS) {
        return Err(ApiError::unprocessable(format!(
            "scheduled_for: at most {EARLY_HOURS} hours ahead"
        )));
    }
    let zone = profiles::time_zone(&app, &stored.patient_id).await?;
    if !stored.course.has_dose(zone, scheduled_for) {
        return Err(ApiError::unprocessable(
            "scheduled_for: not a dose of this medication's schedule",
        ));
    }
    let event = audit_event(&req, &principal, Action::Create, Outcome::Success)
        .resource(RESOURCE, &stored.id);
    match medications::record_dose(
        &app,
        &stored.id,
        scheduled_for,
        body.status,
        stated_at,
        &principal.user_id,
        event,
    )
    .await?
    {
        Recorded::New(dose) => ApiResponse::created(&dose),
        Recorded::Repeat(dose) => {
            // Nothing changed; the repeat is still a read of the record.
            record_read(&app, &req, &principal, basis, (RESOURCE, &stored.id)).await?;
            ApiResponse::ok(&dose)
        }
    }
}

/// `GET /api/v1/medications/{id}/adherence[?from=&to=]`.
pub async fn adherence(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, basis) = medication(&app, &req, &principal).await?;
    let now = app.now();
    let to = match req.query_param("to") {
        Some(to) => timestamp("to", to)?,
        None => now,
    };
    let from = match req.query_param("from") {
        Some(from) => timestamp("from", from)?,
        None => Timestamp::new(to.as_datetime() - Duration::days(7)),
    };
    if from >= to || to.as_datetime() - from.as_datetime() > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::validation(format!(
            "from and to: from before to, at most {MAX_RANGE_DAYS} days apart"
        )));
    }
    let zone = profiles::time_zone(&app, &stored.patient_id).await?;
    let due = stored.course.doses(zone, from, to.min(now));
    let recorded = medications::doses(&app, &stored.id, from, to).await?;
    let due_set: std::collections::HashSet<String> = due.iter().map(|t| t.to_string()).collect();
    let count = |status: DoseStatus| {
        recorded
            .iter()
            .filter(|d| d.status == status && due_set.contains(&d.scheduled_for))
            .count()
    };
    let (taken, skipped) = (count(DoseStatus::Taken), count(DoseStatus::Skipped));
    record_read(&app, &req, &principal, basis, (RESOURCE, &stored.id)).await?;
    ApiResponse::ok(&Adherence {
        medication_id: stored.id.clone(),
        from: from.to_string(),
        to: to.to_string(),
        due: due.len(),
        taken,
        skipped,
        rate: adherence_rate(taken, due.len()),
    })
}
