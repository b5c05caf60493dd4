//! Booking, reading, listing and changing appointments (`docs/appointments.md`).
//!
//! Who may do what: a patient books for themself (status `requested`); a provider books
//! their own time for a patient with an active care relationship (status `confirmed`).
//! Only the two participants see an appointment (anyone else gets 404), and an
//! administrator with an MFA session and an `X-Access-Reason` (break-glass, audited).
//! Providers need an MFA session for every appointment route (reasons and notes are PHI).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use shared::audit::{Action, Outcome, Reason};
use shared::auth::policy::{access_reason, require_mfa_for_staff};
use shared::auth::{audit_event, care, record, Principal, Role};
use shared::domain::appointment::{
    may_change_status, may_reschedule, ConsultationType, Party, Refusal, Status,
};
use shared::domain::text::bounded;
use shared::domain::Timestamp;
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, Page};
use shared::store::appointments::{
    self as store, Appointment, BookError, Change, ChangeError, Idempotency, NewAppointment, Stored,
};
use shared::{guard, ApiError, App, AppContext};

const RESOURCE: &str = "appointment";
pub const MAX_REASON_CHARS: usize = 1000;
pub const MAX_NOTES_CHARS: usize = 4000;
/// Attempts of a confirmation whose care relationship changed between read and commit.
const CONFIRM_ATTEMPTS: usize = 3;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewAppointment")]
pub(crate) struct BookBody {
    provider_id: String,
    /// RFC 3339: one of the provider's free slots, in the future.
    start: String,
    consultation_type: ConsultationType,
    /// Reason for the visit (PHI, stored sealed; at most 1000 characters).
    #[serde(default)]
    reason: Option<String>,
    /// Only when a provider books for a patient (needs an active care relationship).
    #[serde(default)]
    patient_id: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AppointmentChange")]
pub(crate) struct PatchBody {
    #[serde(default)]
    status: Option<Status>,
    /// A new start (a reschedule): one of the provider's free slots.
    #[serde(default)]
    start: Option<String>,
    /// The patient's reason for the visit.
    #[serde(default)]
    reason: Option<String>,
    /// The provider's notes.
    #[serde(default)]
    notes: Option<String>,
}

fn reason_text(value: Option<&str>) -> Result<Option<String>, ApiError> {
    value
        .map(|r| bounded("reason", r, MAX_REASON_CHARS).map(str::to_string))
        .transpose()
}

fn parse_start(text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(text).ok_or_else(|| ApiError::validation("start: must be an RFC 3339 time"))
}

/// The client's `Idempotency-Key` (`ApiRequest::idempotency_key`, shared by every route
/// that takes one).
fn idempotency_key(req: &ApiRequest) -> Result<Option<String>, ApiError> {
    req.idempotency_key()
}

/// A start the provider offers, in the future: its slot (end included).
async fn offered_slot(
    app: &AppContext,
    listing: &store::Listing,
    start: Timestamp,
) -> Result<Timestamp, ApiError> {
    if start <= app.now() {
        return Err(ApiError::unprocessable("start: must be in the future"));
    }
    let availability = listing.availability.parse().map_err(ApiError::internal)?;
    if !crate::providers::on_grid(start) {
        return Err(ApiError::unprocessable(
            "start: not a time the provider offers",
        ));
    }
    availability
        .offered(start)
        .map(|slot| slot.end)
        .ok_or_else(|| ApiError::unprocessable("start: not a time the provider offers"))
}

/// The first answer to a booking repeated under its idempotency key (201 again).
async fn replay(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    id: &str,
    reason: Option<&str>,
) -> HandlerResult {
    let stored = store::get(app, id).await?.ok_or(ApiError::NotFound)?;
    let appointment = store::open(app, req, principal, &stored).await?;
    if appointment.reason.as_deref() != reason {
        return Err(ApiError::unprocessable(
            "Idempotency-Key: used before for another booking",
        ));
    }
    record(
        app,
        req,
        principal,
        Action::View,
        (RESOURCE, id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::created(&appointment)
}

/// `POST /api/v1/appointments`.
pub async fn book(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let any = (RESOURCE, guard::ANY);
    let staff_ok = require_mfa_for_staff(&principal);
    if principal.role == Role::Admin || staff_ok.is_err() {
        return Err(guard::refuse(&app, &req, &principal, any, ApiError::Forbidden).await);
    }
    let body: BookBody = req.json()?;
    let key = idempotency_key(&req)?;
    let reason = reason_text(body.reason.as_deref())?;
    let start = parse_start(&body.start)?;
    let provider_id = body.provider_id.trim().to_string();
    let (patient_id, status) = match (principal.role, body.patient_id.as_deref()) {
        (Role::Patient, None) => (principal.user_id.clone(), Status::Requested),
        (Role::Patient, Some(id)) if id == principal.user_id => {
            (principal.user_id.clone(), Status::Requested)
        }
        (Role::Patient, Some(_)) => {
            return Err(ApiError::unprocessable(
                "patient_id: patients book for themselves",
            ))
        }
        (_, None) => {
            return Err(ApiError::unprocessable(
                "patient_id: a provider books for a patient",
            ))
        }
        (_, Some(id)) => {
            if provider_id != principal.user_id {
                return Err(ApiError::unprocessable(
                    "provider_id: providers book their own time",
                ));
            }
            (id.trim().to_string(), Status::Confirmed)
        }
    };
    let fingerprint = {
        let text = format!(
            "{provider_id}|{patient_id}|{start}|{}",
            body.consultation_type.as_str()
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    };
    let idem = key.map(|key| Idempotency {
        user_id: principal.user_id.clone(),
        key,
        fingerprint,
    });
    if let Some(idem) = &idem {
        if let Some(id) = store::replayed(&app, idem).await? {
            return replay(&app, &req, &principal, &id, reason.as_deref()).await;
        }
    }
    let not_bookable = || ApiError::unprocessable("provider_id: this provider takes no bookings");
    if !guard::is_id(&provider_id) {
        return Err(not_bookable());
    }
    let listing = store::listing(&app, &provider_id)
        .await?
        .ok_or_else(not_bookable)?;
    if !listing.consultation_types.contains(&body.consultation_type) {
        return Err(ApiError::unprocessable(
            "consultation_type: not offered by this provider",
        ));
    }
    let end = offered_slot(&app, &listing, start).await?;
    let care_check = if principal.role == Role::Provider {
        if !guard::is_id(&patient_id) {
            return Err(guard::refuse(&app, &req, &principal, any, ApiError::NotFound).await);
        }
        Some(care::active_check(&app, &provider_id, &patient_id))
    } else {
        None
    };
    let zone = listing.availability.time_zone;
    let new = NewAppointment {
        id: app.new_id(),
        patient_id: patient_id.clone(),
        provider_id,
        start,
        end,
        time_zone: zone,
        status,
        consultation_type: body.consultation_type,
        reason: reason.clone(),
        booked_by: principal.user_id.clone(),
    };
    let event =
        audit_event(&req, &principal, Action::Create, Outcome::Success).resource(RESOURCE, &new.id);
    match store::book(
        &app,
        &new,
        listing.version,
        care_check,
        idem.as_ref(),
        event,
    )
    .await
    {
        Ok(appointment) => ApiResponse::created(&appointment),
        Err(BookError::Replay(id)) => replay(&app, &req, &principal, &id, reason.as_deref()).await,
        Err(BookError::NoRelationship) => {
            let target = ("patient", guard::recorded_id(&patient_id));
            Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await)
        }
        Err(err) => Err(err.into()),
    }
}

/// Which side the principal is on, or the refusal (recorded): 404 to strangers, 403 to
/// a provider without MFA.
async fn party(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    stored: &Stored,
) -> Result<Party, ApiError> {
    let target = (RESOURCE, stored.id.as_str());
    match principal.role {
        Role::Patient if stored.patient_id == principal.user_id => Ok(Party::Patient),
        Role::Provider if stored.provider_id == principal.user_id => {
            if require_mfa_for_staff(principal).is_err() {
                return Err(guard::refuse(app, req, principal, target, ApiError::Forbidden).await);
            }
            Ok(Party::Provider)
        }
        _ => Err(guard::refuse(app, req, principal, target, ApiError::NotFound).await),
    }
}

/// `GET /api/v1/appointments/{id}`.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let id = guard::path_id(&app, &req, &principal, "id", RESOURCE).await?;
    let Some(stored) = store::get(&app, id).await? else {
        let target = (RESOURCE, id);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    let event = if principal.role == Role::Admin {
        let target = (RESOURCE, id);
        if require_mfa_for_staff(&principal).is_err() {
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
        }
        let reason = match access_reason(&req) {
            Ok(reason) => reason,
            Err(err) => return Err(guard::refuse(&app, &req, &principal, target, err).await),
        };
        audit_event(&req, &principal, Action::BreakGlass, Outcome::Success)
            .reason(Reason::new(&reason)?)
    } else {
        party(&app, &req, &principal, &stored).await?;
        audit_event(&req, &principal, Action::View, Outcome::Success)
    };
    let appointment = store::open(&app, &req, &principal, &stored).await?;
    app.audit.record(event.resource(RESOURCE, id)).await?;
    ApiResponse::ok(&appointment)
}

fn time_param(req: &ApiRequest, name: &str) -> Result<Option<Timestamp>, ApiError> {
    req.query_param(name)
        .map(|v| {
            Timestamp::parse(v)
                .ok_or_else(|| ApiError::validation(format!("{name}: must be an RFC 3339 time")))
        })
        .transpose()
}

/// `GET /api/v1/appointments?role=&status=&from=&to=`: the caller's appointments as
/// patient or provider (the role they have), by start time.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let target = ("appointment_list", principal.user_id.as_str());
    let side = match (principal.role, req.query_param("role")) {
        (Role::Patient, None | Some("patient")) => store::Side::Patient(&principal.user_id),
        (Role::Provider, None | Some("provider")) => {
            if require_mfa_for_staff(&principal).is_err() {
                return Err(
                    guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await,
                );
            }
            store::Side::Provider(&principal.user_id)
        }
        (Role::Admin, _) => {
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await)
        }
        (_, Some("patient" | "provider")) => {
            return Err(ApiError::validation("role: must be your own role"))
        }
        (_, Some(_)) => return Err(ApiError::validation("role: patient or provider")),
    };
    let status = req
        .query_param("status")
        .map(|s| Status::parse(s).ok_or_else(|| ApiError::validation("status: unknown status")))
        .transpose()?;
    let from = time_param(&req, "from")?;
    let to = time_param(&req, "to")?;
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            return Err(ApiError::validation("to: must be after from"));
        }
    }
    let page = PageRequest::from_request(&req)?;
    let stored = store::list(&app, side, from, to, status, &page).await?;
    let mut items: Vec<Appointment> = Vec::with_capacity(stored.items.len());
    for s in &stored.items {
        items.push(store::open(&app, &req, &principal, s).await?);
    }
    record(
        &app,
        &req,
        &principal,
        Action::View,
        target,
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&Page {
        items,
        next_cursor: stored.next_cursor,
    })
}

fn refusal(err: Refusal) -> ApiError {
    ApiError::unprocessable(err.to_string())
}

/// `PATCH /api/v1/appointments/{id}` `{status?, start?, reason?, notes?}`.
pub async fn patch(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let id = guard::path_id(&app, &req, &principal, "id", RESOURCE).await?;
    let Some(mut stored) = store::get(&app, id).await? else {
        let target = (RESOURCE, id);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    let who = party(&app, &req, &principal, &stored).await?;
    let target = (RESOURCE, id);
    let body: PatchBody = req.json()?;
    if body.status.is_none()
        && body.start.is_none()
        && body.reason.is_none()
        && body.notes.is_none()
    {
        return Err(ApiError::validation("give status, start, reason or notes"));
    }
    if body.status.is_some() && body.start.is_some() {
        return Err(ApiError::validation(
            "change status or start, not both at once",
        ));
    }
    let reason = reason_text(body.reason.as_deref())?;
    let notes = body
        .notes
        .as_deref()
        .map(|n| bounded("notes", n, MAX_NOTES_CHARS).map(str::to_string))
        .transpose()?;
    if reason.is_some() {
        if who != Party::Patient {
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
        }
        if !stored.status.is_upcoming() {
            return Err(refusal(Refusal::Transition));
        }
    }
    if notes.is_some() && who != Party::Provider {
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let now = app.now();
    let new_start = body.start.as_deref().map(parse_start).transpose()?;
    for attempt in 1..=CONFIRM_ATTEMPTS {
        let mut change = Change {
            status: body.status,
            reason: reason.clone(),
            notes: notes.clone(),
            ..Change::default()
        };
        if let Some(to) = body.status {
            match may_change_status(who, stored.status, to, now, stored.start, stored.end) {
                Ok(()) => {}
                Err(Refusal::NotYours(_)) => {
                    return Err(
                        guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await,
                    )
                }
                Err(err) => return Err(refusal(err)),
            }
            if to == Status::Confirmed {
                let current = care::between(&app, &stored.provider_id, &stored.patient_id).await?;
                change.care = care::start_from_appointment(
                    &app,
                    &stored.provider_id,
                    &stored.patient_id,
                    current.as_ref(),
                );
            }
        }
        if let Some(start) = new_start {
            may_reschedule(who, stored.status, now, stored.start).map_err(refusal)?;
            let listing = store::listing(&app, &stored.provider_id)
                .await?
                .ok_or_else(|| ApiError::unprocessable("start: the provider takes no bookings"))?;
            let end = offered_slot(&app, &listing, start).await?;
            change.slot = Some((start, end, listing.version));
            if who == Party::Patient && stored.status == Status::Confirmed {
                change.status = Some(Status::Requested);
            }
        }
        let opened = store::open(&app, &req, &principal, &stored).await?;
        let event =
            audit_event(&req, &principal, Action::Update, Outcome::Success).resource(RESOURCE, id);
        match store::change(&app, &stored, change, event).await {
            Ok(after) => {
                let mut view = store::open_plain(&after, opened.reason, opened.notes);
                if let Some(r) = reason {
                    view.reason = Some(r);
                }
                if let Some(n) = notes {
                    view.notes = Some(n);
                }
                return ApiResponse::ok(&view);
            }
            Err(ChangeError::Care) if attempt < CONFIRM_ATTEMPTS => {
                stored = store::get(&app, id).await?.ok_or(ApiError::NotFound)?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::conflict(
        "the care relationship kept changing; retry",
    ))
}
