//! Care relationships: created by an admin, listed by either side, ended by either side
//! or an admin. A caller who is not part of a relationship gets 404 for it.

use crate::audit;
use serde::Deserialize;
use shared::audit::{Action, Outcome};
use shared::auth::care;
use shared::auth::{accounts, audit_event, Role};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::{guard, ApiError, App};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewCareRelationship")]
pub(crate) struct CreateBody {
    provider_id: String,
    patient_id: String,
}

/// `POST /api/v1/care-relationships` (admin).
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::admin(&app, &req, ("care_relationship", guard::ANY)).await?;
    let body: CreateBody = req.json()?;
    let provider = accounts::get(&app, body.provider_id.trim()).await?;
    let patient = accounts::get(&app, body.patient_id.trim()).await?;
    match (provider, patient) {
        (Some(p), Some(q)) if p.role == Role::Provider && q.role == Role::Patient => {
            let event = |id: &str| {
                audit_event(&req, &principal, Action::Create, Outcome::Success)
                    .resource("care_relationship", id)
            };
            let rel = care::start(&app, &p.id, &q.id, "admin", Some(&event)).await?;
            ApiResponse::created(&rel)
        }
        _ => Err(ApiError::unprocessable(
            "provider_id must name a provider and patient_id a patient",
        )),
    }
}

/// `GET /api/v1/care-relationships`: a provider's patients, a patient's providers, or
/// (admin) those of `?provider_id=` or `?patient_id=`. Who treats whom is PHI: providers
/// and administrators need an MFA session (a refusal is recorded as `ACCESS_DENIED` on
/// the list asked for, `care_relationship_list/<id>`, or `/*` when no id was given).
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let page = PageRequest::from_request(&req)?;
    let asked = match principal.role {
        Role::Admin => match (
            req.query_param("provider_id"),
            req.query_param("patient_id"),
        ) {
            (Some(id), None) | (None, Some(id)) => guard::recorded_id(id),
            _ => guard::ANY,
        },
        Role::Provider | Role::Patient => principal.user_id.as_str(),
    };
    guard::require_staff_mfa(&app, &req, &principal, ("care_relationship_list", asked)).await?;
    // The read is recorded on the list of the person asked about.
    let (query, subject) = match principal.role {
        Role::Provider => (
            care::Side::Provider(&principal.user_id),
            principal.user_id.clone(),
        ),
        Role::Patient => (
            care::Side::Patient(&principal.user_id),
            principal.user_id.clone(),
        ),
        Role::Admin => {
            let (query, id) = match (
                req.query_param("provider_id"),
                req.query_param("patient_id"),
            ) {
                (Some(p), None) => (care::Side::Provider(p), p),
                (None, Some(q)) => (care::Side::Patient(q), q),
                _ => {
                    return Err(ApiError::validation(
                        "give exactly one of `provider_id` and `patient_id`",
                    ))
                }
            };
            if !guard::is_id(id) {
                return Err(ApiError::validation(
                    "`provider_id` / `patient_id` must be a user id",
                ));
            }
            (query, id.to_string())
        }
    };
    let relationships = care::list(&app, query, &page).await?;
    audit(
        &app,
        &req,
        &principal,
        Action::View,
        ("care_relationship_list", &subject),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&relationships)
}

/// `DELETE /api/v1/care-relationships/{id}`: either side or an admin (MFA session; a
/// refusal is recorded on the relationship) ends it.
pub async fn end(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let id = guard::path_id(&app, &req, &principal, "id", "care_relationship").await?;
    let rel = care::find(&app, id).await?.ok_or(ApiError::NotFound)?;
    let party = principal.user_id == rel.provider_id || principal.user_id == rel.patient_id;
    match principal.role {
        Role::Admin => {
            let target = ("care_relationship", rel.id.as_str());
            guard::require_staff_mfa(&app, &req, &principal, target).await?
        }
        _ if party => {}
        _ => {
            let target = ("care_relationship", rel.id.as_str());
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
        }
    }
    let event = audit_event(&req, &principal, Action::Delete, Outcome::Success)
        .resource("care_relationship", &rel.id);
    let ended = care::end(&app, &rel, principal.user_id == rel.patient_id, event).await?;
    ApiResponse::ok(&ended)
}
