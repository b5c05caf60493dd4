//! The documents function: uploads go straight to S3 (a presigned PUT into the
//! quarantine bucket, bound to the declared type and size), the scanner worker
//! ([`scanner`]) scans and seals them into the documents bucket, and reads come back
//! through here, decrypted frame by frame, at most 4 MiB per request (an HTTP API
//! Lambda answer carries at most 6 MB, base64 included): a client reads a large
//! document with `Range` requests (`docs/documents.md`).
//!
//! Who may do what: a patient uploads, lists, reads, shares and deletes their own
//! documents; a provider with an active care relationship and an MFA session uploads
//! for the patient (`patient_id`) and reads what was shared with them (what they
//! uploaded is shared with them); an admin does nothing here (document contents are
//! shared explicitly, never opened by break-glass). Anyone else gets a 404, recorded as
//! `ACCESS_DENIED`. Every read and change is audited; uploads count against 20 per hour
//! per account (`rate_limit::UPLOADS`, reserved before the URL is signed).

/// The outside services the `documents` binary links (`shared::adapters::links`): presigned
/// uploads and downloads.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::BLOBS;
/// The outside services the `scanner` binary links (`shared::adapters::links`): reads
/// quarantined uploads, tells the uploader.
pub const SCANNER_LINKS: shared::adapters::links::Links =
    shared::adapters::links::BLOBS | shared::adapters::links::PUSH;

pub mod scanner;

use http::{HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::policy::{self, Basis};
use shared::auth::{audit_event, care, rate_limit, record, Principal, Role};
use shared::crypto::frames::{self, FrameError, Header, FRAME_LEN, HEADER_LEN};
use shared::domain::document::{self, read_range, Status, Unsatisfiable};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, Page, RouteDoc, Router};
use shared::store::documents::{self as store, Document, ListOf, NewDocument, Stored, RESOURCE};
use shared::{guard, ApiError, App, AppContext};
use std::time::Duration;

/// What an owner's list is recorded on (with the owner's id).
pub const LIST_RESOURCE: &str = "patient_documents";
/// What a provider's list of documents shared with them is recorded on (their id).
pub const SHARED_LIST_RESOURCE: &str = "shared_documents";

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, "/api/v1/documents", create)
        .doc(
            RouteDoc::new("Start an upload: a document record and a presigned PUT into the quarantine bucket")
                .describe("The URL accepts exactly the declared content type and size (send `upload_headers` with the bytes) and expires at `expires_at`. The upload is scanned; the document becomes `available` or `rejected` (a WebSocket `document` event tells the owner). A provider uploads for `patient_id` (active care relationship, MFA session); the document is then shared with them. 20 uploads per hour per account.")
                .bearer()
                .body::<NewDocumentBody>()
                .response::<UploadTicket>(201)
                .errors(&[400, 401, 403, 404, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/documents", list)
        .doc(
            RouteDoc::new("The caller's documents (a patient's own; a provider's: those shared with them), newest first")
                .describe("Deleted documents are left out.")
                .bearer()
                .query::<String>("category", "Only this category")
                .paged()
                .response::<Page<Document>>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
        .route(Method::GET, "/api/v1/documents/{id}", get)
        .doc(
            RouteDoc::new("A document's metadata (its name and checksum are sealed at rest)")
                .bearer()
                .response::<Document>(200)
                .errors(&[401, 403, 404, 429, 503]),
        )
        .route(Method::GET, "/api/v1/documents/{id}/content", content)
        .doc(
            RouteDoc::new("A document's bytes, decrypted: at most 4 MiB per request")
                .describe("Send `Range: bytes=start-end` (one range; `bytes=start-` and `bytes=-suffix` too) for a part: 206 with `Content-Range`. Without it, a document up to 4 MiB answers 200 whole, a larger one 206 with its first 4 MiB; a longer range is cut to 4 MiB (the `Content-Range` says which bytes came). 416 for a range starting past the end. A stored document that fails its integrity check (tampered, cut short, reordered) answers 500 `integrity_failure`, audited. 409 until the document is available.")
                .bearer()
                .header("Range", "bytes=start-end (one range)")
                .binary_response(200, document::CONTENT_TYPES)
                .binary_response(206, document::CONTENT_TYPES)
                .errors(&[401, 403, 404, 409, 416, 429, 500, 503]),
        )
        .route(Method::POST, "/api/v1/documents/{id}/share", share)
        .doc(
            RouteDoc::new("Share an available document with a provider in the owner's care team")
                .describe("The owner only; `provider_id` must have an active care relationship with them (422 otherwise). A repeat changes nothing.")
                .bearer()
                .body::<ShareBody>()
                .response::<Share>(200)
                .errors(&[401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::DELETE, "/api/v1/documents/{id}", delete)
        .doc(
            RouteDoc::new("Delete a document (the owner only; kept sealed until purged)")
                .bearer()
                .no_content()
                .errors(&[401, 403, 404, 409, 429, 503]),
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewDocument")]
pub struct NewDocumentBody {
    /// The file name (1 to 255 characters, no path); sealed at rest.
    name: String,
    /// `application/pdf`, `image/png`, `image/jpeg` or `text/plain`.
    content_type: String,
    /// Exact size in bytes (1 to the configured limit, default 25 MiB).
    size: u64,
    /// `lab_result`, `imaging`, `prescription`, `referral`, `insurance`,
    /// `identification`, `consent` or `other`.
    category: String,
    /// The patient, when a provider uploads (a patient leaves it out).
    #[serde(default)]
    patient_id: Option<String>,
}

/// Where and how to upload.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UploadTicket {
    pub id: String,
    /// `pending_upload`.
    pub status: Status,
    /// `PUT` the bytes here (the quarantine bucket, or the local stack).
    pub upload_url: String,
    pub upload_method: String,
    /// Headers the PUT must carry exactly (`content-type`, and `content-length`, which
    /// HTTP clients send by themselves).
    pub upload_headers: std::collections::BTreeMap<String, String>,
    pub expires_at: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    provider_id: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Share {
    pub document_id: String,
    pub provider_id: String,
}

fn upload_subject(principal: &Principal) -> String {
    format!("user:{}", principal.user_id)
}

/// `POST /api/v1/documents`.
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role == Role::Admin {
        let target = (RESOURCE, guard::ANY);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: NewDocumentBody = req.json()?;
    let owner_id = match (&principal.role, body.patient_id.as_deref()) {
        (Role::Patient, None) => principal.user_id.clone(),
        (_, Some(id)) if guard::is_id(id) => id.to_string(),
        (_, Some(id)) => {
            let target = (RESOURCE, guard::recorded_id(id));
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
        }
        (_, None) => return Err(ApiError::validation("patient_id: required for a provider")),
    };
    let name = document::name(&body.name)?;
    let content_type = document::content_type(&body.content_type)?;
    let category = document::category(&body.category)?;
    let size = document::declared_size(body.size, app.config.document_max_bytes)?;
    match guard::patient(&app, &req, &principal, &owner_id, RESOURCE).await? {
        Basis::Owner | Basis::CareRelationship => {}
        Basis::BreakGlass { .. } => {
            let target = (RESOURCE, owner_id.as_str());
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
        }
    }
    let reserved =
        rate_limit::reserve(&app, rate_limit::UPLOADS, &upload_subject(&principal)).await?;
    match start_upload(
        &app,
        &req,
        &principal,
        &owner_id,
        (name, content_type, category, size),
    )
    .await
    {
        Ok(ticket) => ApiResponse::created(&ticket),
        Err(err) => {
            // An upload that could not start does not count.
            rate_limit::release(&app, reserved).await;
            Err(err)
        }
    }
}

async fn start_upload(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    owner_id: &str,
    (name, content_type, category, size): (&str, &str, &str, u64),
) -> Result<UploadTicket, ApiError> {
    let id = app.new_id();
    let expires_in = Duration::from_secs(document::UPLOAD_URL_SECS);
    let presigned = app
        .blobs
        .presign_put(
            &app.config.quarantine_bucket,
            &store::upload_key(&id),
            content_type,
            Some(size),
            expires_in,
        )
        .await?;
    let event =
        audit_event(req, principal, Action::Create, Outcome::Success).resource(RESOURCE, &id);
    let created = store::create(
        app,
        NewDocument {
            id: &id,
            owner_id,
            uploaded_by: &principal.user_id,
            name,
            category,
            content_type,
            declared_size: size,
            share_with_uploader: principal.user_id != owner_id,
        },
        event,
    )
    .await?;
    let expires_at = shared::domain::Timestamp::new(
        app.clock.now() + chrono::Duration::seconds(document::UPLOAD_URL_SECS as i64),
    );
    Ok(UploadTicket {
        id: created.id,
        status: created.status,
        upload_url: presigned.url,
        upload_method: presigned.method.to_string(),
        upload_headers: presigned.headers,
        expires_at: expires_at.to_string(),
    })
}

/// `GET /api/v1/documents[?category=]`.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let category = req
        .query_param("category")
        .map(document::category)
        .transpose()?;
    let page = PageRequest::from_request(&req)?;
    let (of, target) = match principal.role {
        Role::Patient => {
            guard::require_staff_mfa(&app, &req, &principal, (LIST_RESOURCE, &principal.user_id))
                .await?;
            (
                ListOf::Owner(&principal.user_id),
                (LIST_RESOURCE, principal.user_id.as_str()),
            )
        }
        Role::Provider => {
            let target = (SHARED_LIST_RESOURCE, principal.user_id.as_str());
            guard::require_staff_mfa(&app, &req, &principal, target).await?;
            (ListOf::SharedWith(&principal.user_id), target)
        }
        Role::Admin => {
            let target = (LIST_RESOURCE, guard::ANY);
            return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
        }
    };
    let items = store::list(&app, &req, &principal, of, category, &page).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        target,
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&items)
}

/// The document `{id}` names and the caller's basis: the owner, or a provider it is
/// shared with (an active care relationship and an MFA session); a 404 (recorded) for
/// anyone else, a malformed id, an unknown or deleted document.
async fn document(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<(Stored, Basis), ApiError> {
    let id = guard::path_id(app, req, principal, "id", RESOURCE).await?;
    let visible = match store::stored(app, id).await? {
        Some(stored) if stored.status != Status::Deleted => {
            let basis = match principal.role {
                Role::Patient if principal.user_id == stored.owner_id => Some(Basis::Owner),
                Role::Provider
                    if store::is_shared_with(app, id, &principal.user_id).await?
                        && care::is_active(app, &principal.user_id, &stored.owner_id).await? =>
                {
                    Some(Basis::CareRelationship)
                }
                _ => None,
            };
            basis.map(|basis| (stored, basis))
        }
        _ => None,
    };
    let Some((stored, basis)) = visible else {
        return Err(guard::refuse(app, req, principal, (RESOURCE, id), ApiError::NotFound).await);
    };
    if let Err(refusal) = policy::require_mfa_for_staff(principal) {
        return Err(guard::refuse(app, req, principal, (RESOURCE, id), refusal).await);
    }
    Ok((stored, basis))
}

/// Only the owner changes a document (sharing, deleting).
async fn owner_only(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    basis: &Basis,
    id: &str,
) -> Result<(), ApiError> {
    match basis {
        Basis::Owner => Ok(()),
        _ => Err(guard::refuse(app, req, principal, (RESOURCE, id), ApiError::Forbidden).await),
    }
}

/// `GET /api/v1/documents/{id}`.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, _) = document(&app, &req, &principal).await?;
    let view = store::open(&app, &req, &principal, &stored.item).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (RESOURCE, &stored.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&view)
}

/// `GET /api/v1/documents/{id}/content` (`Range` optional).
pub async fn content(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, _) = document(&app, &req, &principal).await?;
    let (Status::Available, Some(size), Some(blob_key), Some(content_id)) = (
        stored.status,
        stored.size,
        stored.blob_key.as_deref(),
        stored.content_id.as_deref(),
    ) else {
        return Err(ApiError::conflict(format!(
            "the document is {}, not available",
            stored.status.as_str()
        )));
    };
    let range = match read_range(req.header("range"), size) {
        Ok(range) => range,
        Err(Unsatisfiable) => return Ok(unsatisfiable(&req, size)),
    };
    let plain = match read_plaintext(&app, blob_key, content_id, size, range.start, range.end).await
    {
        Ok(plain) => plain,
        Err(ReadError::Integrity) => {
            tracing::error!(document = %stored.id, "a sealed document failed its integrity check");
            record(
                &app,
                &req,
                &principal,
                Action::IntegrityFailure,
                (RESOURCE, &stored.id),
                Outcome::Failed,
            )
            .await?;
            return Err(ApiError::Integrity);
        }
        Err(ReadError::Api(err)) => return Err(err),
    };
    record(
        &app,
        &req,
        &principal,
        Action::Export,
        (RESOURCE, &stored.id),
        Outcome::Success,
    )
    .await?;
    let mut response = ApiResponse::no_content();
    response.status = if range.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let headers = &mut response.headers;
    let content_type = HeaderValue::from_str(&stored.content_type).map_err(ApiError::internal)?;
    headers.insert(http::header::CONTENT_TYPE, content_type);
    headers.insert(
        http::header::ACCEPT_RANGES,
        HeaderValue::from_static("bytes"),
    );
    headers.insert(
        http::header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    if range.partial {
        let value = format!("bytes {}-{}/{size}", range.start, range.end - 1);
        headers.insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_str(&value).map_err(ApiError::internal)?,
        );
    }
    response.body = plain.into();
    Ok(response)
}

/// 416 with the size, as HTTP asks (`Content-Range: bytes */size`).
fn unsatisfiable(req: &ApiRequest, size: u64) -> ApiResponse {
    let mut response = ApiResponse::error(
        &ApiError::validation("Range: not satisfiable for this document"),
        &req.request_id,
    );
    response.status = StatusCode::RANGE_NOT_SATISFIABLE;
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers.insert(http::header::CONTENT_RANGE, value);
    }
    response
}

enum ReadError {
    Integrity,
    Api(ApiError),
}

impl From<ApiError> for ReadError {
    fn from(err: ApiError) -> Self {
        ReadError::Api(err)
    }
}

impl From<FrameError> for ReadError {
    fn from(_: FrameError) -> Self {
        ReadError::Integrity
    }
}

/// Reads exactly `want` bytes at `start..start+want` of the sealed object; fewer (an
/// object cut short) or none is an integrity failure.
async fn read_sealed(
    app: &AppContext,
    blob_key: &str,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, ReadError> {
    let object = match app
        .blobs
        .get_range(&app.config.documents_bucket, blob_key, start, end)
        .await
    {
        Ok(Some(object)) => object,
        // Missing, or shorter than the record says: not what was sealed.
        Ok(None) | Err(shared::ports::blobs::BlobError::Invalid(_)) => {
            return Err(ReadError::Integrity)
        }
        Err(err) => return Err(ReadError::Api(err.into())),
    };
    let bytes = object
        .collect()
        .await
        .map_err(|err| ReadError::Api(err.into()))?;
    if bytes.len() as u64 != end - start {
        return Err(ReadError::Integrity);
    }
    Ok(bytes)
}

/// Plaintext bytes `start..end` of a sealed document of `size` bytes: the header, then
/// only the frames the range covers, each opened (and authenticated) on its own.
async fn read_plaintext(
    app: &AppContext,
    blob_key: &str,
    content_id: &str,
    size: u64,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, ReadError> {
    let frame_len = FRAME_LEN as u64;
    let (first, last) = (start / frame_len, (end - 1) / frame_len);
    let (sealed_start, _) = frames::frame_range(size, first);
    let (_, sealed_end) = frames::frame_range(size, last);
    // One read when the range starts in the first frame (the header is just before it).
    let (header_bytes, mut sealed) = if first == 0 {
        let mut all = read_sealed(app, blob_key, 0, sealed_end).await?;
        let rest = all.split_off(HEADER_LEN);
        (all, rest)
    } else {
        let header = read_sealed(app, blob_key, 0, HEADER_LEN as u64).await?;
        (
            header,
            read_sealed(app, blob_key, sealed_start, sealed_end).await?,
        )
    };
    let header = Header::parse(&header_bytes)?;
    let key = app
        .crypto
        .data_key_by_id(&header.data_key_id)
        .await
        .map_err(|err| ReadError::Api(err.into()))?;
    let mut plain = Vec::with_capacity((end - start) as usize);
    let mut offset = 0usize;
    for index in first..=last {
        let (a, b) = frames::frame_range(size, index);
        let len = (b - a) as usize;
        let frame = sealed
            .get_mut(offset..offset + len)
            .ok_or(ReadError::Integrity)?;
        let opened = frames::open_frame(&header, &key, content_id, size, index, frame)?;
        let frame_start = index * frame_len;
        let from = start.saturating_sub(frame_start) as usize;
        let to = ((end - frame_start) as usize).min(opened.len());
        plain.extend_from_slice(&opened[from..to]);
        offset += len;
    }
    Ok(plain)
}

/// `POST /api/v1/documents/{id}/share`.
pub async fn share(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, basis) = document(&app, &req, &principal).await?;
    owner_only(&app, &req, &principal, &basis, &stored.id).await?;
    let body: ShareBody = req.json()?;
    let not_in_care = || ApiError::unprocessable("provider_id: not a provider in your care team");
    if !guard::is_id(&body.provider_id) {
        return Err(not_in_care());
    }
    if stored.status != Status::Available {
        return Err(ApiError::conflict(
            "only an available document can be shared",
        ));
    }
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource(RESOURCE, &stored.id);
    match store::share(&app, &stored, &body.provider_id, event).await {
        Ok(()) => {}
        Err(ApiError::NotFound) => return Err(not_in_care()),
        Err(err) => return Err(err),
    }
    ApiResponse::ok(&Share {
        document_id: stored.id,
        provider_id: body.provider_id,
    })
}

/// `DELETE /api/v1/documents/{id}`.
pub async fn delete(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (stored, basis) = document(&app, &req, &principal).await?;
    owner_only(&app, &req, &principal, &basis, &stored.id).await?;
    let event = audit_event(&req, &principal, Action::Delete, Outcome::Success)
        .resource(RESOURCE, &stored.id);
    store::delete(&app, &stored, event).await?;
    Ok(ApiResponse::no_content())
}
