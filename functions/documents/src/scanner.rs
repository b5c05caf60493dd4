//! The scanner worker: S3 upload events of the quarantine bucket, through the scans
//! queue (`shared::lambda::run_s3_queue`, partial batch failures).
//!
//! For each upload it reads the exact object version the event names (a later PUT to
//! the same key cannot swap the bytes), and streams it once through the SHA-256, the
//! scanner and the framed sealer (`shared::documents::scan_and_seal`) into the
//! documents bucket (`BlobStore::put_stream`: held one part at a time, committed only
//! when the document is kept). Then:
//!
//! - clean and as declared (size, magic bytes of the content type): the sealed object is
//!   kept, or, when the owner already stored the same content (keyed HMAC of the
//!   SHA-256), the upload is dropped and the record links to the earlier object; the
//!   record becomes `available` with size and checksum;
//! - infected, unscannable, or not as declared: nothing is kept, the record becomes
//!   `rejected` with its reason code;
//!
//! each with its audit event (actor: the scanner), then the quarantine object is
//! deleted and the owner (and a provider who uploaded it) notified over the WebSocket.
//!
//! Idempotent under redelivery: a document already decided only has its quarantine
//! object deleted; the decision is a conditional write from `scanning`, so of two
//! deliveries racing only one decides. A scanner or store that fails is a transient
//! failure (retried, then the dead-letter queue); an event that can never be processed
//! is a permanent one.

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use shared::audit::{Action, Actor, AuditEvent, Outcome};
use shared::crypto::blind_index::IndexName;
use shared::crypto::frames::Sealer;
use shared::documents::{scan_and_seal, Inspected, PipelineError, SealedSink};
use shared::domain::document::{content_matches, RejectReason, Status};
use shared::ports::blobs::BlobError;
use shared::ports::scanner::{ScanError, Verdict};
use shared::store::documents::{self, Accepted, Stored, StoredContent, RESOURCE};
use shared::worker::{process_s3_batch, S3Object, WorkError};
use shared::ws::{push_to_user, ServerEvent};
use shared::App;
use std::collections::BTreeMap;

/// The role audit events of the scanner name (no user acts).
pub const ACTOR_ROLE: &str = "scanner";

/// The WebSocket event an owner gets when a document is decided.
pub const EVENT_TYPE: &str = "document";

/// What the owner (and an uploading provider) is told.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub id: String,
    pub status: Status,
    pub reason: Option<&'static str>,
}

/// The SQS consumer (the local stack's poller calls it with the same event Lambda gets).
pub async fn handle(
    app: App,
    event: aws_lambda_events::sqs::SqsEvent,
) -> aws_lambda_events::sqs::SqsBatchResponse {
    // Boxed: one object's pass is a large future.
    process_s3_batch(event, |object| Box::pin(scan(app.clone(), object))).await
}

fn transient(err: impl std::error::Error + Send + Sync + 'static) -> WorkError {
    WorkError::Transient(Box::new(err))
}

/// Processes one object of an S3 event.
pub async fn scan(app: App, object: S3Object) -> Result<(), WorkError> {
    if object.bucket != app.config.quarantine_bucket {
        return Err(WorkError::Permanent(
            "an event of a bucket other than the quarantine".into(),
        ));
    }
    if !object.event_name.starts_with("ObjectCreated:") {
        tracing::info!(event = %object.event_name, "not an upload; ignored");
        return Ok(());
    }
    let version = object.version_id.as_deref();
    let Some(id) = documents::upload_id(&object.key).map(str::to_string) else {
        // Nothing we asked for: it must not sit in quarantine.
        tracing::warn!("an object that is no document's upload; deleted");
        return remove_upload(&app, &object).await;
    };
    let id = id.as_str();
    let Some(document) = documents::stored(&app, id).await.map_err(transient)? else {
        tracing::info!(
            document = id,
            "no such document (expired or unknown); upload deleted"
        );
        return remove_upload(&app, &object).await;
    };
    if !document.status.is_open() || !documents::start_scan(&app, id).await.map_err(transient)? {
        tracing::info!(
            document = id,
            status = document.status.as_str(),
            "already decided; upload deleted"
        );
        return remove_upload(&app, &object).await;
    }
    let Some(upload) = app
        .blobs
        .get_version(&app.config.quarantine_bucket, &object.key, version)
        .await
        .map_err(transient)?
    else {
        // That version is gone (replaced locally by a newer upload, whose own event
        // follows; or deleted by an earlier delivery).
        tracing::info!(document = id, "the named version is gone; nothing to scan");
        return Ok(());
    };
    // What is deleted afterwards is exactly what was read (an event of an unversioned
    // bucket, or an emulator's, names no version).
    let object = S3Object {
        version_id: object.version_id.or(upload.meta.version_id.clone()),
        ..object
    };
    let decision = if upload.meta.size != document.declared_size {
        Decision::Reject(RejectReason::SizeMismatch)
    } else {
        inspect(&app, &document, upload.body).await?
    };
    let (status, reason) = match &decision {
        Decision::Keep(accepted) => {
            let sha256 = hex::encode(accepted.inspected.sha256);
            let kept = documents::accept(
                &app,
                &document,
                Accepted {
                    size: accepted.inspected.size,
                    sha256: &sha256,
                    content_mac: &accepted.content_mac,
                    content: accepted.content.clone(),
                    duplicate_of: accepted.duplicate_of.clone(),
                },
                scanner_event(&document.id, Outcome::Success),
            )
            .await
            .map_err(transient)?;
            if !kept {
                tracing::info!(document = id, "decided by another delivery meanwhile");
                return remove_upload(&app, &object).await;
            }
            (Status::Available, None)
        }
        Decision::Reject(reason) => {
            let decided = documents::reject(
                &app,
                &document,
                *reason,
                scanner_event(&document.id, Outcome::Failed),
            )
            .await
            .map_err(transient)?;
            if !decided {
                return remove_upload(&app, &object).await;
            }
            tracing::warn!(document = id, reason = reason.as_str(), "upload rejected");
            (Status::Rejected, Some(reason.as_str()))
        }
    };
    remove_upload(&app, &object).await?;
    notify(&app, &document, status, reason).await;
    Ok(())
}

/// The scanner's audit event on a document (`UPDATE`: success when it became
/// available, failed when rejected).
fn scanner_event(id: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent::new(Action::Update, outcome)
        .actor(Actor {
            user_id: None,
            role: Some(ACTOR_ROLE.into()),
            session_id: None,
        })
        .resource(RESOURCE, id)
}

async fn remove_upload(app: &App, object: &S3Object) -> Result<(), WorkError> {
    app.blobs
        .delete_version(
            &app.config.quarantine_bucket,
            &object.key,
            object.version_id.as_deref(),
        )
        .await
        .map_err(transient)
}

/// Tells the owner and an uploading provider; a push that fails is logged, not retried
/// (the state is in the record, which the client reads).
async fn notify(app: &App, document: &Stored, status: Status, reason: Option<&'static str>) {
    let event = ServerEvent::new(
        EVENT_TYPE,
        Notice {
            id: document.id.clone(),
            status,
            reason,
        },
    );
    let mut recipients = vec![document.owner_id.as_str()];
    if document.uploaded_by != document.owner_id {
        recipients.push(document.uploaded_by.as_str());
    }
    for user in recipients {
        if let Err(err) = push_to_user(app, user, &event).await {
            tracing::warn!(code = err.code(), "the document notice was not pushed");
        }
    }
}

struct Kept {
    inspected: Inspected,
    content_mac: String,
    content: StoredContent,
    duplicate_of: Option<String>,
}

enum Decision {
    Keep(Kept),
    Reject(RejectReason),
}

/// The pipeline's output goes into the streamed upload of the sealed object.
struct ChannelSink(mpsc::Sender<Result<Bytes, BlobError>>);

#[async_trait::async_trait]
impl SealedSink for ChannelSink {
    async fn write(&mut self, sealed: &[u8]) -> Result<(), PipelineError> {
        self.0
            .send(Ok(Bytes::copy_from_slice(sealed)))
            .await
            .map_err(|err| PipelineError::Write(Box::new(err)))
    }
}

/// Streams the upload through hash, scan and seal into the documents bucket, and
/// decides; the sealed object is committed only when it is kept.
async fn inspect(
    app: &App,
    document: &Stored,
    body: futures::stream::BoxStream<'static, Result<Bytes, BlobError>>,
) -> Result<Decision, WorkError> {
    let (key_id, data_key) = app.crypto.data_key().await.map_err(transient)?;
    let sealer = Sealer::new(key_id, &data_key, &document.id)
        .map_err(|_| WorkError::Permanent("the sealer refused the data key".into()))?;
    drop(data_key);
    let sealed_key = documents::sealed_key(&document.id);
    // A few sealed chunks in flight at most; the upload holds one part.
    let (sender, receiver) = mpsc::channel::<Result<Bytes, BlobError>>(4);
    let metadata = BTreeMap::from([("document-id".to_string(), document.id.clone())]);
    let upload = app.blobs.put_stream(
        &app.config.documents_bucket,
        &sealed_key,
        receiver.boxed(),
        "application/octet-stream",
        metadata,
    );
    let decide = async {
        let mut sink = ChannelSink(sender);
        let outcome = scan_and_seal(
            body,
            app.scanner.as_ref(),
            sealer,
            document.declared_size,
            &mut sink,
        )
        .await;
        let decision = decide(app, document, outcome, &sealed_key).await;
        let keep_upload =
            matches!(&decision, Ok(Decision::Keep(kept)) if kept.duplicate_of.is_none());
        if !keep_upload {
            // An error item aborts the upload: nothing of it is stored.
            let _ = sink
                .0
                .send(Err(BlobError::Invalid("not kept".into())))
                .await;
        }
        drop(sink);
        (decision, keep_upload)
    };
    let (uploaded, (decision, keep_upload)) = futures::join!(upload, decide);
    let decision = decision?;
    if keep_upload {
        uploaded.map_err(transient)?;
    }
    Ok(decision)
}

/// The decision on one pass's outcome.
async fn decide(
    app: &App,
    document: &Stored,
    outcome: Result<Inspected, PipelineError>,
    sealed_key: &str,
) -> Result<Decision, WorkError> {
    let inspected = match outcome {
        Ok(inspected) => inspected,
        Err(PipelineError::TooLarge { .. }) => {
            return Ok(Decision::Reject(RejectReason::SizeMismatch))
        }
        Err(PipelineError::Scan(ScanError::TooLarge)) => {
            return Ok(Decision::Reject(RejectReason::Unscannable))
        }
        Err(err) => return Err(transient(err)),
    };
    match &inspected.verdict {
        Verdict::Infected { .. } if inspected.verdict.is_limits_exceeded() => {
            return Ok(Decision::Reject(RejectReason::Unscannable))
        }
        Verdict::Infected { signature } => {
            // A signature names a malware family, never the content: it may be logged.
            tracing::warn!(document = %document.id, signature = %signature, scanner = app.scanner.name(), "malware found");
            return Ok(Decision::Reject(RejectReason::Malware));
        }
        Verdict::Clean => {}
    }
    if inspected.size != document.declared_size {
        return Ok(Decision::Reject(RejectReason::SizeMismatch));
    }
    if !content_matches(&document.content_type, &inspected.head) {
        return Ok(Decision::Reject(RejectReason::TypeMismatch));
    }
    // The same content as one the owner already has: link to it. The HMAC is keyed
    // and includes the owner, so the table says nothing about which files are stored.
    let content_mac = app
        .index
        .compute(
            IndexName::DocumentContent,
            &format!("{}:{}", document.owner_id, hex::encode(inspected.sha256)),
        )
        .await
        .map_err(transient)?;
    let earlier = documents::content(app, &document.owner_id, &content_mac)
        .await
        .map_err(transient)?;
    if let Some(earlier) = earlier.filter(|c| c.content_id != document.id) {
        let still_there = app
            .blobs
            .head(&app.config.documents_bucket, &earlier.blob_key)
            .await
            .map_err(transient)?
            .is_some();
        if still_there && earlier.size == inspected.size {
            let duplicate_of = Some(earlier.content_id.clone());
            return Ok(Decision::Keep(Kept {
                inspected,
                content_mac,
                content: earlier,
                duplicate_of,
            }));
        }
    }
    let content = StoredContent {
        content_id: document.id.clone(),
        blob_key: sealed_key.to_string(),
        size: inspected.size,
    };
    Ok(Decision::Keep(Kept {
        inspected,
        content_mac,
        content,
        duplicate_of: None,
    }))
}
