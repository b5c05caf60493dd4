//! The devices function: health observations from wearables and phones
//! (`docs/devices.md`). Apple HealthKit has no server API, so the iOS app (and any
//! other source) pushes batches of samples; each sample is stored once however often
//! it is sent (deterministic keys, plain puts), as an observation in FHIR shape (LOINC
//! code, UCUM unit, effective time or period, source), its value sealed. A series is
//! read from one time-ordered partition per patient and code, raw or downsampled into
//! buckets. Providers set thresholds on their patients' codes; a crossing opens an
//! episode with a conditional write and notifies the provider once per episode.
//!
//! Who may do what: a patient pushes and reads their own observations; a provider with
//! an active care relationship and an MFA session reads them and sets thresholds; an
//! admin reads through break-glass (MFA and `X-Access-Reason`). Anyone else gets a 404
//! (recorded as `ACCESS_DENIED`). Every push, read and threshold change is audited.

/// The outside services the `devices` binary links (`shared::adapters::links`): Google
/// OAuth, the webhook secret, sync jobs, threshold alerts.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::PUSH
    | shared::adapters::links::QUEUE
    | shared::adapters::links::SECRETS
    | shared::adapters::links::HEALTH_API;
/// The outside services the `device-sync` binary links (`shared::adapters::links`):
/// Google's data points, threshold alerts.
pub const SYNC_LINKS: shared::adapters::links::Links = shared::adapters::links::PUSH
    | shared::adapters::links::QUEUE
    | shared::adapters::links::HEALTH_API;

use http::Method;
use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome, Reason};
use shared::auth::policy::Basis;
use shared::auth::{accounts, audit_event, care, input, Principal, Role};
use shared::domain::observation::{
    self, downsample, episode_closes, Bucket, Code, Crossing, Range, Resolution, Sample,
    SampleBody, Threshold, MAX_BATCH_BYTES, MAX_BUCKETS,
};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, Page, RouteDoc, Router};
use shared::notifications::{enqueue, Notification};
use shared::store::observations::{self as store, OpenError, Point, RESOURCE, THRESHOLD_RESOURCE};
use shared::ws::ServerEvent;
use shared::{guard, ApiError, App, AppContext};

/// The default hold before an episode closes.
pub const DEFAULT_CLEAR_AFTER_MINUTES: i64 = 60;

pub mod ingest;
pub mod links;
pub mod sync;

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, "/api/v1/observations/batch", push_batch)
        .doc(
            RouteDoc::new("Push a batch of the caller's health samples (Apple Health and any other source)")
                .describe("1 to 1,000 samples, each validated (LOINC code, its UCUM unit, a plausible value, an effective time not in the future); a bad sample refuses the batch (400, naming its index). Idempotent per sample: a sample sent again (same source, id and effective time) is the same observation, so a repeated batch stores nothing twice and a duplicate never fails a batch. Values are sealed. Crossing a provider's threshold opens an episode and notifies the provider once per episode. Audited (`CREATE` on `observations`).")
                .bearer()
                .body::<BatchBody>()
                .response::<BatchAnswer>(200)
                .errors(&[400, 401, 403, 413, 429, 503]),
        )
        .route(Method::GET, "/api/v1/observations", query)
        .doc(
            RouteDoc::new("A patient's observations of one code in [from, to): raw FHIR Observations (paged), or downsampled buckets")
                .describe("Read from one time-ordered partition (no scan): raw points a page at a time, or with `resolution` every point of the range (at most 31 days) folded into `{start, count, min, max, avg}` buckets. The caller's own unless `patient_id` names a patient in their care. Audited (`VIEW` on `observations`).")
                .bearer()
                .query::<String>("code", "A LOINC code (8867-4, 40443-4, 41950-7, 29463-7, 59408-5, 2339-0, 93832-4)")
                .query::<String>("from", "RFC 3339, inclusive")
                .query::<String>("to", "RFC 3339, exclusive; at most 31 days after from")
                .query::<String>("resolution", "1m, 5m, 15m, 1h, 6h or 1d (absent: raw points)")
                .query::<String>("patient_id", "The patient (default: the caller)")
                .header("X-Access-Reason", "An admin's break-glass reason (10 to 500 characters)")
                .paged()
                .response::<ObservationAnswer>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::PUT, "/api/v1/observations/thresholds", set_threshold)
        .doc(
            RouteDoc::new("Set the caller's threshold on one code of a patient in their care (providers)")
                .describe("Values above `above` or below `below` open an episode and notify the provider once (e-mail, and a WebSocket `notification`); it closes once values stayed back in range for `clear_after_minutes` (default 60). Audited (`UPDATE` on `observation_threshold`).")
                .bearer()
                .body::<ThresholdBody>()
                .response::<ThresholdView>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::POST, "/api/v1/devices/connect/{provider}", links::connect)
        .doc(
            RouteDoc::new("Start connecting the caller's account at a health data provider (patients; `google_health`)")
                .describe("OAuth 2.0 authorization code with PKCE (S256): a random `state` and code verifier are stored for 10 minutes, single use (the state by its hash, the verifier sealed). Answers the provider's authorization URL; the provider sends the browser back to the callback route.")
                .bearer()
                .response::<links::AuthorizationAnswer>(200)
                .errors(&[401, 403, 404, 429, 503]),
        )
        .route(Method::GET, "/api/v1/devices/{provider}/callback", links::callback)
        .doc(
            RouteDoc::new("The provider's OAuth redirect: completes a connection (no bearer token; the `state` names the flow)")
                .describe("The state is redeemed once by a conditional delete that also checks its 10-minute expiry: an unknown, reused or expired state is a 400 and nothing is exchanged. The code and the flow's verifier are exchanged at the provider's token endpoint; the tokens are stored sealed and the connection is `connected`. Audited (`CREATE` on `device_connection`).")
                .query::<String>("state", "The flow's state")
                .query::<String>("code", "The provider's authorization code")
                .query::<String>("error", "Set by the provider when the patient did not consent")
                .response::<links::LinkView>(200)
                .errors(&[400, 404, 503]),
        )
        .route(Method::GET, "/api/v1/devices", links::list)
        .doc(
            RouteDoc::new("The caller's device connections")
                .describe("`{provider, state, connected_at, last_sync_at}` for each; never a token.")
                .bearer()
                .response::<links::LinkList>(200)
                .errors(&[401, 429, 503]),
        )
        .route(Method::POST, ingest::PATH, ingest::receive)
        .doc(
            RouteDoc::new("The Google Health API's webhook: data change notifications (no bearer token; Google's `Authorization` secret)")
                .describe("The `Authorization` header is compared in constant time with the subscriber's secret before anything else: missing or different, a 401 and nothing happens. Google's verification POST `{\"type\": \"verification\"}` is answered 201. A delivery (a JSON array of 1 to 99 notifications: `healthUserId`, `operation`, `dataType`, `intervals`) queues one sync per connected patient and synced type (heart-rate, weight, oxygen-saturation) and is answered 200 at once; an unknown user is answered the same, nothing queued.")
                .header("authorization", "The subscriber's secret, exactly as registered with Google.")
                .body::<serde_json::Value>()
                .response::<ingest::Received>(200)
                .response::<ingest::Verified>(201)
                .errors(&[400, 401, 413, 503]),
        )
        .route(Method::DELETE, "/api/v1/devices/{provider}", links::disconnect)
        .doc(
            RouteDoc::new("Disconnect the caller's account at a provider")
                .describe("Revokes the grant at the provider, then deletes our copy of the tokens (stored observations stay). No connection: 404. The provider unreachable: 503 and the connection stays. Audited (`DELETE` on `device_connection`).")
                .bearer()
                .no_content()
                .errors(&[401, 404, 429, 503]),
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ObservationBatch")]
pub struct BatchBody {
    /// 1 to 1,000 samples.
    pub samples: Vec<SampleBody>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "ObservationBatchResult")]
pub struct BatchAnswer {
    /// Samples written (a sample stored before is written again, the same observation).
    pub accepted: usize,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ObservationThreshold")]
pub struct ThresholdBody {
    pub patient_id: String,
    /// A LOINC code.
    pub code: String,
    pub above: Option<f64>,
    pub below: Option<f64>,
    /// How long values must stay back in range before the episode closes (1 to 10,080).
    pub clear_after_minutes: Option<i64>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "ObservationThresholdView")]
pub struct ThresholdView {
    pub patient_id: String,
    pub provider_id: String,
    pub code: String,
    pub unit: String,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub clear_after_minutes: i64,
}

// --- FHIR shape ----------------------------------------------------------------------

#[derive(Serialize, schemars::JsonSchema)]
pub struct Coding {
    pub system: &'static str,
    pub code: String,
    pub display: String,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct CodeableConcept {
    pub coding: Vec<Coding>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Quantity {
    pub value: f64,
    pub unit: String,
    pub system: &'static str,
    pub code: String,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Period {
    pub start: String,
    pub end: String,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// A FHIR R4 `Observation` (the subset DoCare fills).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "FhirObservation")]
pub struct FhirObservation {
    /// Always `Observation`.
    pub resource_type: &'static str,
    /// Always `final`.
    pub status: &'static str,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_period: Option<Period>,
    pub value_quantity: Quantity,
    /// The source device or app.
    pub device: Reference,
    /// The source's sample id.
    pub identifier: Vec<Identifier>,
}

impl FhirObservation {
    fn of(patient_id: &str, point: Point) -> Self {
        let (effective_date_time, effective_period) = match point.end {
            Some(end) => (
                None,
                Some(Period {
                    start: point.start.to_string(),
                    end: end.to_string(),
                }),
            ),
            None => (Some(point.start.to_string()), None),
        };
        Self {
            resource_type: "Observation",
            status: "final",
            category: vec![CodeableConcept {
                coding: vec![Coding {
                    system: "http://terminology.hl7.org/CodeSystem/observation-category",
                    code: "vital-signs".into(),
                    display: "Vital Signs".into(),
                }],
            }],
            code: CodeableConcept {
                coding: vec![Coding {
                    system: "http://loinc.org",
                    code: point.code.loinc().into(),
                    display: point.code.display().into(),
                }],
            },
            subject: Reference {
                reference: Some(format!("Patient/{patient_id}")),
                display: None,
            },
            effective_date_time,
            effective_period,
            value_quantity: Quantity {
                value: point.value,
                unit: point.code.unit().into(),
                system: "http://unitsofmeasure.org",
                code: point.code.unit().into(),
            },
            device: Reference {
                reference: None,
                display: Some(point.source.clone()),
            },
            identifier: vec![Identifier {
                system: format!("urn:docare:source:{}", point.source),
                value: point.sample_id,
            }],
        }
    }
}

/// Raw points (a page) or downsampled buckets.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "ObservationSeries")]
pub enum ObservationAnswer {
    Raw(Page<FhirObservation>),
    Buckets { items: Vec<Bucket> },
}

// --- helpers -------------------------------------------------------------------------

/// Records a successful read, with the basis it was allowed on.
async fn record_read(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    basis: Basis,
    patient_id: &str,
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
        .record(event.resource(RESOURCE, patient_id))
        .await?;
    Ok(())
}

/// A page that could not be opened: an integrity failure is recorded and fails the
/// request; KMS down is a 503.
async fn opened<T>(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    patient_id: &str,
    result: Result<T, OpenError>,
) -> Result<T, ApiError> {
    match result {
        Ok(value) => Ok(value),
        Err(OpenError::Api(err)) => Err(err),
        Err(OpenError::Crypto(
            shared::crypto::CryptoError::Integrity | shared::crypto::CryptoError::Format(_),
        )) => {
            tracing::error!("an observation value failed its integrity check");
            shared::auth::record(
                app,
                req,
                principal,
                Action::IntegrityFailure,
                (RESOURCE, patient_id),
                Outcome::Failed,
            )
            .await?;
            Err(ApiError::Integrity)
        }
        Err(OpenError::Crypto(err)) => Err(err.into()),
    }
}

fn code_param(req: &ApiRequest) -> Result<Code, ApiError> {
    req.query_param("code")
        .and_then(Code::parse)
        .ok_or_else(|| ApiError::validation("code: a supported LOINC code is required"))
}

// --- handlers ------------------------------------------------------------------------

/// `POST /api/v1/observations/batch`.
pub async fn push_batch(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role != Role::Patient {
        let target = (RESOURCE, guard::ANY);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: BatchBody = req.json_limited(MAX_BATCH_BYTES)?;
    let samples = observation::parse_batch(&body.samples, app.now())?;
    let patient_id = principal.user_id.clone();
    // Recorded first: a push whose event cannot be recorded stores nothing. A failure
    // part-way through the puts leaves some samples stored; the client's retry of the
    // same batch completes it (the same keys).
    let event = audit_event(&req, &principal, Action::Create, Outcome::Success)
        .resource(RESOURCE, &patient_id);
    app.audit.record(event).await?;
    let accepted = Box::pin(store::store(&app, &patient_id, &samples)).await?;
    Box::pin(apply_thresholds(&app, &patient_id, &samples)).await?;
    ApiResponse::ok(&BatchAnswer { accepted })
}

/// Opens or closes the episodes of the thresholds set on the batch's codes, and
/// notifies each provider whose episode this batch opened (a pushed batch, and a
/// synced span: `sync`).
pub(crate) async fn apply_thresholds(
    app: &AppContext,
    patient_id: &str,
    samples: &[Sample],
) -> Result<(), ApiError> {
    let mut codes: Vec<Code> = samples.iter().map(|s| s.code).collect();
    codes.sort_unstable();
    codes.dedup();
    for code in codes {
        for stored in store::thresholds(app, patient_id, code).await? {
            let crossing = Crossing::of(&stored.threshold, samples);
            let provider = stored.provider_id.as_str();
            if let Some(last_out) = crossing.last_out {
                if let Some(opened) =
                    store::open_episode(app, patient_id, provider, code, last_out).await?
                {
                    if let Err(err) =
                        notify(app, patient_id, provider, code, &opened.episode_id).await
                    {
                        // Not notified: the episode is forgotten so a retry opens it again.
                        store::forget_episode(app, patient_id, provider, code, &opened.episode_id)
                            .await?;
                        return Err(err);
                    }
                }
            } else if let Some(last_in) = crossing.last_in {
                if let Some(last_out) =
                    store::episode_last_out(app, patient_id, provider, code).await?
                {
                    if episode_closes(&stored.threshold, last_out, last_in) {
                        store::close_episode(app, patient_id, provider, code, last_out).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Tells the provider an episode opened: an e-mail (queued, idempotent on the
/// episode) and a WebSocket `notification` (best effort). Neither carries a value.
async fn notify(
    app: &AppContext,
    patient_id: &str,
    provider_id: &str,
    code: Code,
    episode_id: &str,
) -> Result<(), ApiError> {
    if !care::is_active(app, provider_id, patient_id).await? {
        return Ok(());
    }
    let Some(provider) = accounts::get(app, provider_id).await? else {
        return Ok(());
    };
    let email = shared::phi::open(app, &provider.item, "email")
        .await
        .map_err(ApiError::from)?
        .unwrap_or_default();
    if input::email(&email).is_ok() {
        let body = format!(
            "A patient in your care has {} readings outside the threshold you set.\n\nOpen DoCare to review them.",
            code.display().to_lowercase()
        );
        enqueue(
            app,
            Notification::email(
                format!("threshold:{episode_id}"),
                &email,
                "DoCare: a patient's readings crossed your threshold",
                body,
            ),
        )
        .await?;
    }
    let push = ServerEvent::new(
        "notification",
        serde_json::json!({"kind": "observation_threshold", "episode_id": episode_id,
            "patient_id": patient_id, "code": code.loinc()}),
    );
    if let Err(err) = shared::ws::push_to_user(app, provider_id, &push).await {
        tracing::warn!(error = %shared::error::cause_chain(&err), "threshold push failed");
    }
    Ok(())
}

/// `GET /api/v1/observations?code=&from=&to=[&resolution=][&patient_id=]`.
pub async fn query(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let patient_id = match req.query_param("patient_id") {
        None if principal.role == Role::Patient => principal.user_id.clone(),
        None => return Err(ApiError::validation("patient_id: required for staff")),
        Some(id) if guard::is_id(id) => id.to_string(),
        Some(id) => {
            let target = (RESOURCE, guard::recorded_id(id));
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
        }
    };
    let basis = Box::pin(guard::patient(
        &app,
        &req,
        &principal,
        &patient_id,
        RESOURCE,
    ))
    .await?;
    // A session whose second step was a mailed code reads no PHI (as
    // `phi::open_audited` rules for every other sealed field).
    if principal.mailed_code {
        let target = (RESOURCE, patient_id.as_str());
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let code = code_param(&req)?;
    let range = Range::parse(req.query_param("from"), req.query_param("to"))?;
    let answer = match req.query_param("resolution") {
        Some(text) => {
            let resolution = Resolution::parse(text)?;
            let span = range.to.epoch_secs() - range.from.epoch_secs();
            if span / resolution.secs() > MAX_BUCKETS {
                return Err(ApiError::validation(format!(
                    "resolution: at most {MAX_BUCKETS} buckets per answer"
                )));
            }
            // Boxed (here and below): these futures are large in debug builds.
            let points = Box::pin(store::series(&app, &patient_id, code, &range)).await;
            let points = Box::pin(opened(&app, &req, &principal, &patient_id, points)).await?;
            ObservationAnswer::Buckets {
                items: downsample(points, resolution),
            }
        }
        None => {
            let page = PageRequest::from_request(&req)?;
            let result = Box::pin(store::page(
                &app,
                &patient_id,
                code,
                &range,
                page.limit,
                page.start,
            ))
            .await;
            let (points, next) =
                Box::pin(opened(&app, &req, &principal, &patient_id, result)).await?;
            let items = points
                .into_iter()
                .map(|p| FhirObservation::of(&patient_id, p))
                .collect();
            ObservationAnswer::Raw(Page::new(items, next))
        }
    };
    Box::pin(record_read(&app, &req, &principal, basis, &patient_id)).await?;
    ApiResponse::ok(&answer)
}

/// `PUT /api/v1/observations/thresholds`.
pub async fn set_threshold(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role != Role::Provider {
        let target = (THRESHOLD_RESOURCE, guard::ANY);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: ThresholdBody = req.json()?;
    if !guard::is_id(&body.patient_id) {
        let target = (THRESHOLD_RESOURCE, guard::recorded_id(&body.patient_id));
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    }
    let patient_id = body.patient_id.clone();
    guard::patient(&app, &req, &principal, &patient_id, THRESHOLD_RESOURCE).await?;
    let code = Code::parse(&body.code)
        .ok_or_else(|| ApiError::validation("code: not a supported LOINC code"))?;
    let threshold = Threshold::new(
        code,
        body.above,
        body.below,
        body.clear_after_minutes
            .unwrap_or(DEFAULT_CLEAR_AFTER_MINUTES),
    )?;
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource(THRESHOLD_RESOURCE, &patient_id);
    store::set_threshold(&app, &patient_id, &principal.user_id, &threshold, event).await?;
    ApiResponse::ok(&ThresholdView {
        patient_id,
        provider_id: principal.user_id.clone(),
        code: code.loinc().into(),
        unit: code.unit().into(),
        above: threshold.above,
        below: threshold.below,
        clear_after_minutes: threshold.clear_after_minutes,
    })
}
