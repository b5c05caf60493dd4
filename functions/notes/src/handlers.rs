//! Secure clinical notes (`docs/notes.md`).
//!
//! Who may do what: a provider with an active care relationship with the patient (and
//! an MFA session) writes notes for the patient's appointments, reads them, writes new
//! versions (an addendum when they are not the note's author) and lists their versions;
//! the note's author shares it with the patient and archives it; the patient reads the
//! current version of a note shared with them; the author and administrators read the
//! note's audit trail. Anyone else gets 404, recorded as `ACCESS_DENIED`.
//!
//! Every create, read, update, share and archive states an `access_reason`: checked
//! here, sealed in the audit event by the writer, never stored or answered in the
//! clear. Each access by someone other than the patient is recorded twice: on the note
//! (`secure_note/<id>`, with the reason: the note's audit trail) and on the patient's
//! clinical record (`clinical_notes/<patient id>`, ids only: their access log).

use serde::Deserialize;
use shared::audit::{Action, Actor, AuditEvent, AuditReader, Outcome, Reason, TimeRange};
use shared::auth::{audit_event, care, record, Principal, Role};
use shared::domain::note::{self, NoteType};
use shared::http::pagination::{Page, PageRequest};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::store::appointments;
use shared::store::notes::{self as store, ChangeError, NewNote, Stored, PATIENT_RECORD, RESOURCE};
use shared::{guard, ApiError, App, AppContext};
use std::future::Future;
use std::pin::Pin;

/// Bodies with a note's text may be larger than the default (20,000 characters of any
/// script, JSON-escaped).
const TEXT_BODY_LIMIT: usize = 160 * 1024;
/// What the reads of an appointment's note list are recorded on.
pub const APPOINTMENT_NOTES: &str = "appointment_secure_notes";
/// What reads of a note's audit trail are recorded on (as the audit function does).
pub const AUDIT_LOG: &str = "audit_log";

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewSecureNote")]
pub(crate) struct CreateBody {
    /// An appointment of a patient in the caller's care.
    appointment_id: String,
    note_type: NoteType,
    /// The note's text (1 to 20,000 characters; sealed with its SHA-256).
    content: String,
    /// Why (10 to 500 characters): sealed in the audit event, never stored in the clear.
    #[schemars(length(min = 10, max = 500))]
    access_reason: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SecureNoteRevision")]
pub(crate) struct UpdateBody {
    /// The new text: a new version; earlier ones stay readable.
    content: String,
    /// Default: the current type.
    #[serde(default)]
    note_type: Option<NoteType>,
    /// The version the caller read (`version` of the note): 409 when it is no longer
    /// the current one.
    expected_version: i64,
    #[schemars(length(min = 10, max = 500))]
    access_reason: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AccessReason")]
pub(crate) struct ReasonBody {
    /// Why (10 to 500 characters): sealed in the audit event, never stored in the clear.
    #[schemars(length(min = 10, max = 500))]
    access_reason: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SecureNoteSharing")]
pub(crate) struct ShareBody {
    /// Whether the patient may read the note's current version.
    shared_with_patient: bool,
    #[schemars(length(min = 10, max = 500))]
    access_reason: String,
}

/// One event of a note's audit trail: ids, never the reason or the user agent.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "SecureNoteAuditEvent")]
pub(crate) struct AuditView {
    id: String,
    time: String,
    actor: Actor,
    action: Action,
    outcome: Outcome,
    request_id: Option<String>,
    has_reason: bool,
}

/// The caller's side of a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A provider with an active care relationship with the note's patient.
    CareTeam,
    /// The patient, for a note shared with them and still active.
    Patient,
}

/// A future built in this function's frame and polled from the heap: the caller's poll
/// frame holds a pointer, not the future. Debug builds give every pending future room in
/// the frame that creates it, and the audit test drives every route on one test thread's
/// stack; the notes' longest paths (sealing, a transaction with the audit chain) stay
/// small this way.
fn heap<'a, T, Fut>(make: impl FnOnce() -> Fut) -> Pin<Box<dyn Future<Output = T> + Send + 'a>>
where
    Fut: Future<Output = T> + Send + 'a,
{
    Box::pin(make())
}

/// [`guard::refuse`], on the heap ([`heap`]).
fn refuse<'a>(
    app: &'a AppContext,
    req: &'a ApiRequest,
    principal: &'a Principal,
    target: (&'a str, &'a str),
    refusal: ApiError,
) -> Pin<Box<dyn Future<Output = ApiError> + Send + 'a>> {
    Box::pin(guard::refuse(app, req, principal, target, refusal))
}

fn reason_of(value: Option<&str>) -> Result<Reason, ApiError> {
    note::access_reason(value)
}

/// The event of an access to a note, with its reason (sealed by the writer).
fn note_event(
    req: &ApiRequest,
    principal: &Principal,
    action: Action,
    note_id: &str,
    reason: Reason,
) -> AuditEvent {
    audit_event(req, principal, action, Outcome::Success)
        .resource(RESOURCE, note_id)
        .reason(reason)
}

/// Records the access on the patient's clinical record, so it is in their access log
/// (not for the patient's own reads). Ids only: the reason is on the note's event.
async fn disclose(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    action: Action,
    patient_id: &str,
) -> Result<(), ApiError> {
    if principal.user_id == patient_id {
        return Ok(());
    }
    record(
        app,
        req,
        principal,
        action,
        (PATIENT_RECORD, patient_id),
        Outcome::Success,
    )
    .await
}

/// [`guard::require_staff_mfa`] (403, recorded, for staff without an MFA session or a
/// patient whose second step was a mailed code), on the heap ([`heap`]).
async fn require_mfa(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    target: (&str, &str),
) -> Result<(), ApiError> {
    Box::pin(guard::require_staff_mfa(app, req, principal, target)).await
}

/// The caller's side of a note, or the refusal (recorded): 404 to anyone who may not
/// know it exists, 403 to staff without MFA.
async fn side(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    stored: &Stored,
) -> Result<Side, ApiError> {
    let target = (RESOURCE, stored.id.as_str());
    let side = match principal.role {
        Role::Provider => care::is_active(app, &principal.user_id, &stored.patient_id)
            .await?
            .then_some(Side::CareTeam),
        Role::Patient => (principal.user_id == stored.patient_id
            && stored.shared_with_patient
            && stored.is_active())
        .then_some(Side::Patient),
        Role::Admin => None,
    };
    let Some(side) = side else {
        return Err(refuse(app, req, principal, target, ApiError::NotFound).await);
    };
    require_mfa(app, req, principal, target).await?;
    Ok(side)
}

/// The note named in the path (`{id}`), or a recorded 404.
async fn note_in_path(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<Stored, ApiError> {
    let id = guard::path_id(app, req, principal, "id", RESOURCE).await?;
    match store::get(app, id).await? {
        Some(stored) => Ok(stored),
        None => Err(refuse(app, req, principal, (RESOURCE, id), ApiError::NotFound).await),
    }
}

/// The note in the path, for its care team only: the patient it is shared with gets a
/// 403 (recorded), anyone else a 404.
async fn for_care_team(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<Stored, ApiError> {
    let stored = note_in_path(app, req, principal).await?;
    match side(app, req, principal, &stored).await? {
        Side::CareTeam => Ok(stored),
        Side::Patient => {
            let target = (RESOURCE, stored.id.as_str());
            Err(refuse(app, req, principal, target, ApiError::Forbidden).await)
        }
    }
}

/// The note in the path, for its author only (sharing, archiving): others of its care
/// team get a 403 (recorded).
async fn for_author(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<Stored, ApiError> {
    let stored = for_care_team(app, req, principal).await?;
    if stored.author_id != principal.user_id {
        let target = (RESOURCE, stored.id.as_str());
        return Err(refuse(app, req, principal, target, ApiError::Forbidden).await);
    }
    Ok(stored)
}

fn change_failed(err: ChangeError) -> ApiError {
    match err {
        ChangeError::Conflict => ApiError::conflict(
            "the note changed meanwhile (a newer version, or it was archived): read it again",
        ),
        ChangeError::NoCare => ApiError::NotFound,
        ChangeError::Api(err) => err,
    }
}

/// `POST /api/v1/secure-notes`: a provider writes a note for an appointment of a
/// patient in their care.
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let any = (RESOURCE, guard::ANY);
    if principal.role != Role::Provider {
        return Err(refuse(&app, &req, &principal, any, ApiError::Forbidden).await);
    }
    require_mfa(&app, &req, &principal, any).await?;
    let body: CreateBody = req.json_limited(TEXT_BODY_LIMIT)?;
    let reason = reason_of(Some(&body.access_reason))?;
    let content = note::content(&body.content)?;
    let appointment_id = body.appointment_id.trim();
    let target = ("appointment", guard::recorded_id(appointment_id));
    let appointment = if guard::is_id(appointment_id) {
        heap(|| appointments::get(&app, appointment_id)).await?
    } else {
        None
    };
    let Some(appointment) = appointment else {
        return Err(refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    if !care::is_active(&app, &principal.user_id, &appointment.patient_id).await? {
        return Err(refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    }
    let id = app.new_id();
    let event = note_event(&req, &principal, Action::Create, &id, reason);
    let stored = heap(|| {
        store::create(
            &app,
            NewNote {
                id: &id,
                appointment_id: &appointment.id,
                patient_id: &appointment.patient_id,
                author_id: &principal.user_id,
                note_type: body.note_type,
                content,
            },
            event,
        )
    })
    .await
    .map_err(change_failed)?;
    heap(|| disclose(&app, &req, &principal, Action::Create, &stored.patient_id)).await?;
    ApiResponse::created(&store::NoteText {
        note: stored.view(),
        content: content.to_string(),
        content_version: 1,
        content_author_id: principal.user_id.clone(),
        content_created_at: stored.created_at.clone(),
    })
}

/// `POST /api/v1/secure-notes/{id}/access`: the current version, with a reason.
pub async fn access(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let stored = note_in_path(&app, &req, &principal).await?;
    side(&app, &req, &principal, &stored).await?;
    let body: ReasonBody = req.json()?;
    let reason = reason_of(Some(&body.access_reason))?;
    let text = heap(|| store::current_text(&app, &req, &principal, &stored)).await?;
    let event = note_event(&req, &principal, Action::View, &stored.id, reason);
    heap(|| app.audit.record(event)).await?;
    heap(|| disclose(&app, &req, &principal, Action::View, &stored.patient_id)).await?;
    ApiResponse::ok(&text)
}

/// `PUT /api/v1/secure-notes/{id}`: a new version (a revision by the author, an
/// addendum by another provider of the care team), from the version the caller read.
pub async fn update(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let stored = for_care_team(&app, &req, &principal).await?;
    let body: UpdateBody = req.json_limited(TEXT_BODY_LIMIT)?;
    let reason = reason_of(Some(&body.access_reason))?;
    let content = note::content(&body.content)?;
    let expected = note::expected_version(body.expected_version)?;
    if !stored.is_active() {
        return Err(ApiError::conflict(
            "the note is archived: it no longer changes",
        ));
    }
    if expected != stored.version {
        return Err(ApiError::conflict(
            "expected_version: not the current version; read the note again",
        ));
    }
    let note_type = body.note_type.unwrap_or(stored.note_type);
    let event = note_event(&req, &principal, Action::Update, &stored.id, reason);
    let revised = heap(|| {
        store::revise(
            &app,
            &stored,
            expected,
            &principal.user_id,
            note_type,
            content,
            event,
        )
    })
    .await
    .map_err(change_failed)?;
    heap(|| disclose(&app, &req, &principal, Action::Update, &stored.patient_id)).await?;
    ApiResponse::ok(&store::NoteText {
        note: revised.view(),
        content: content.to_string(),
        content_version: revised.version,
        content_author_id: principal.user_id.clone(),
        content_created_at: revised.updated_at.clone(),
    })
}

/// `PUT /api/v1/secure-notes/{id}/share`: the author lets the patient read the note
/// (or stops).
pub async fn share(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let stored = for_author(&app, &req, &principal).await?;
    let body: ShareBody = req.json()?;
    let reason = reason_of(Some(&body.access_reason))?;
    if !stored.is_active() {
        return Err(ApiError::conflict(
            "the note is archived: it no longer changes",
        ));
    }
    let event = note_event(&req, &principal, Action::Update, &stored.id, reason);
    let shared = heap(|| store::set_shared(&app, &stored, body.shared_with_patient, event))
        .await
        .map_err(change_failed)?;
    heap(|| disclose(&app, &req, &principal, Action::Update, &stored.patient_id)).await?;
    ApiResponse::ok(&shared.view())
}

/// `PUT /api/v1/secure-notes/{id}/archive`: the author archives the note (never deleted).
pub async fn archive(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let stored = for_author(&app, &req, &principal).await?;
    let body: ReasonBody = req.json()?;
    let reason = reason_of(Some(&body.access_reason))?;
    if !stored.is_active() {
        return Err(ApiError::conflict("the note is archived already"));
    }
    let event = note_event(&req, &principal, Action::Archive, &stored.id, reason);
    let archived = heap(|| store::archive(&app, &stored, event))
        .await
        .map_err(change_failed)?;
    heap(|| disclose(&app, &req, &principal, Action::Archive, &stored.patient_id)).await?;
    ApiResponse::ok(&archived.view())
}

/// `GET /api/v1/secure-notes/{id}/versions`: who wrote each version and when (no text).
pub async fn versions(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let stored = for_care_team(&app, &req, &principal).await?;
    let page = PageRequest::from_request(&req)?;
    let versions = store::versions(&app, &stored.id, &page).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (RESOURCE, &stored.id),
        Outcome::Success,
    )
    .await?;
    heap(|| disclose(&app, &req, &principal, Action::View, &stored.patient_id)).await?;
    ApiResponse::ok(&versions)
}

/// `POST /api/v1/secure-notes/{id}/versions/{version}/access`: one version's text, with
/// a reason.
pub async fn version_access(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let stored = for_care_team(&app, &req, &principal).await?;
    let number = req
        .param("version")?
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=stored.version).contains(n));
    let Some(number) = number else {
        return Err(ApiError::NotFound);
    };
    let body: ReasonBody = req.json()?;
    let reason = reason_of(Some(&body.access_reason))?;
    let Some(version) =
        heap(|| store::version_text(&app, &req, &principal, &stored.id, number)).await?
    else {
        return Err(ApiError::NotFound);
    };
    let event = note_event(&req, &principal, Action::View, &stored.id, reason);
    heap(|| app.audit.record(event)).await?;
    heap(|| disclose(&app, &req, &principal, Action::View, &stored.patient_id)).await?;
    ApiResponse::ok(&version)
}

/// `POST /api/v1/appointments/{id}/secure-notes/access`: an appointment's notes (no
/// text: each is read on its own, with its own event), with a reason. The care team
/// sees every note, archived ones included; the patient those shared with them.
pub async fn for_appointment(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let id = guard::path_id(&app, &req, &principal, "id", "appointment").await?;
    let target = ("appointment", id);
    let Some(appointment) = heap(|| appointments::get(&app, id)).await? else {
        return Err(refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    // `Some(true)`: the patient's view (shared notes only); `Some(false)`: the care team's.
    let patient_view = match principal.role {
        Role::Patient => (principal.user_id == appointment.patient_id).then_some(true),
        Role::Provider => care::is_active(&app, &principal.user_id, &appointment.patient_id)
            .await?
            .then_some(false),
        Role::Admin => None,
    };
    let Some(patient_view) = patient_view else {
        return Err(refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    require_mfa(&app, &req, &principal, target).await?;
    let page = PageRequest::from_request(&req)?;
    let body: ReasonBody = req.json()?;
    let reason = reason_of(Some(&body.access_reason))?;
    let notes = store::for_appointment(&app, id, &page, patient_view).await?;
    let event = audit_event(&req, &principal, Action::View, Outcome::Success)
        .resource(APPOINTMENT_NOTES, id)
        .reason(reason);
    heap(|| app.audit.record(event)).await?;
    disclose(
        &app,
        &req,
        &principal,
        Action::View,
        &appointment.patient_id,
    )
    .await?;
    ApiResponse::ok(&notes)
}

/// `GET /api/v1/secure-notes/{id}/audit-logs`: the note's audit trail, newest first,
/// for its author and administrators (MFA sessions); anyone else gets 404.
pub async fn audit_logs(app: App, req: ApiRequest) -> HandlerResult {
    let principal = heap(|| guard::signed_in(&app, &req)).await?;
    let stored = note_in_path(&app, &req, &principal).await?;
    let target = (RESOURCE, stored.id.as_str());
    let allowed = match principal.role {
        Role::Admin => true,
        Role::Provider => principal.user_id == stored.author_id,
        Role::Patient => false,
    };
    if !allowed {
        return Err(refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    }
    require_mfa(&app, &req, &principal, target).await?;
    let page = PageRequest::from_request(&req)?;
    let events = AuditReader::of(&app)
        .by_resource(RESOURCE, &stored.id, &TimeRange::default(), &page)
        .await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (AUDIT_LOG, &format!("resource:{RESOURCE}:{}", stored.id)),
        Outcome::Success,
    )
    .await?;
    let items = events
        .items
        .into_iter()
        .map(|event| AuditView {
            has_reason: event.reason.is_some(),
            id: event.event_id,
            time: event.time,
            actor: event.actor,
            action: event.action,
            outcome: event.outcome,
            request_id: event.request_id,
        })
        .collect();
    ApiResponse::ok(&Page {
        items,
        next_cursor: events.next_cursor,
    })
}
