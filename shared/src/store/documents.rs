//! Documents: `DOC#<id>` / `DOCUMENT` (gsi1 `DOCSOF#<owner>` and gsi2
//! `DOCSOF#<owner>#<category>`, sorted by id, so an owner's list, whole or by category,
//! is one index query; both index keys are removed when it is deleted, so a deleted
//! document leaves the lists), its shares `DOC#<id>` / `SHARE#<provider>` (gsi1
//! `DOCSHARED#<provider>`, gsi2 `DOCSHARED#<provider>#<category>`), and an owner's stored
//! contents `DOCCONTENT#<owner>` / `CONTENT#<hmac>` (duplicates link to the sealed object
//! already stored).
//!
//! Sealed on their own (PHI): `name` (the file name) and `sha256` (the checksum, shown
//! to its readers). In the clear: ids, status, reason code, content type, category,
//! sizes, the sealed object's key and the id its frames are bound to, and the keyed
//! HMAC of the checksum (`DOCCONTENT#`), which says nothing without the key.
//!
//! A record waits for its upload with a TTL (`expires_at`,
//! [`crate::domain::document::PENDING_TTL_SECS`]); the scanner removes it when the
//! document becomes available or rejected, so an upload never completed leaves nothing
//! (the quarantine bucket's lifecycle rule removes a stray object).

use crate::audit::{AuditEvent, CommitError};
use crate::auth::Principal;
use crate::domain::document::{RejectReason, Status};
use crate::http::pagination::{Page, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{Condition, Index, Item, Query, Update, Value, WriteOp};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};
use serde::Serialize;

/// The sealed attributes of a document item.
pub const SEALED: [&str; 2] = ["name", "sha256"];
/// What audit events and refusals name.
pub const RESOURCE: &str = "document";
/// The object key prefix of uploads in the quarantine bucket.
pub const UPLOAD_PREFIX: &str = "uploads/";
/// The object key prefix of sealed documents in the documents bucket.
pub const SEALED_PREFIX: &str = "sealed/";

/// The quarantine object of a document's upload.
pub fn upload_key(id: &str) -> String {
    format!("{UPLOAD_PREFIX}{id}")
}

/// The document id an upload key names (`None` for any other key).
pub fn upload_id(key: &str) -> Option<&str> {
    key.strip_prefix(UPLOAD_PREFIX)
        .filter(|id| crate::guard::is_id(id))
}

/// The sealed object of a document (frames bound to `id`).
pub fn sealed_key(id: &str) -> String {
    format!("{SEALED_PREFIX}{id}")
}

/// A document as shown.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Document {
    pub id: String,
    /// The patient the document belongs to.
    pub owner_id: String,
    /// Who uploaded it (the owner, or a provider in their care team).
    pub uploaded_by: String,
    /// The file name.
    pub name: String,
    pub category: String,
    pub content_type: String,
    /// Bytes: as declared until it is available, then as stored.
    pub size: u64,
    pub status: Status,
    /// Why it was rejected: `malware`, `unscannable`, `size_mismatch`, `type_mismatch`.
    pub reason: Option<String>,
    /// The SHA-256 of the content (hex), once available.
    pub sha256: Option<String>,
    /// The document whose stored content this one links to (the same bytes, uploaded
    /// earlier by the same owner), if any.
    pub duplicate_of: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A document as stored, before anything is opened: what authorization, downloads and
/// the scanner need.
#[derive(Debug, Clone)]
pub struct Stored {
    pub item: Item,
    pub id: String,
    pub owner_id: String,
    pub uploaded_by: String,
    pub category: String,
    pub content_type: String,
    /// The size declared when the upload was requested.
    pub declared_size: u64,
    /// The stored size (available documents).
    pub size: Option<u64>,
    pub status: Status,
    /// The sealed object and the id its frames are bound to (its own id, or the
    /// document's it duplicates).
    pub blob_key: Option<String>,
    pub content_id: Option<String>,
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Value::as_str).map(str::to_string)
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(Value::as_i64)
        .and_then(|n| u64::try_from(n).ok())
}

impl Stored {
    fn from_item(item: Item) -> Result<Self, ApiError> {
        let bad = || ApiError::internal("a document item is malformed");
        Ok(Self {
            id: text(&item, "id").ok_or_else(bad)?,
            owner_id: text(&item, "owner_id").ok_or_else(bad)?,
            uploaded_by: text(&item, "uploaded_by").ok_or_else(bad)?,
            category: text(&item, "category").ok_or_else(bad)?,
            content_type: text(&item, "content_type").ok_or_else(bad)?,
            declared_size: number(&item, "declared_size").ok_or_else(bad)?,
            size: number(&item, "size"),
            status: text(&item, "status")
                .and_then(|s| Status::parse(&s))
                .ok_or_else(bad)?,
            blob_key: text(&item, "blob_key"),
            content_id: text(&item, "content_id"),
            item,
        })
    }
}

/// One document, unopened; `None` when there is none with this id (or its pending
/// record expired).
pub async fn stored(app: &AppContext, id: &str) -> Result<Option<Stored>, ApiError> {
    app.db
        .get(&app.config.table, &keys::document(id))
        .await?
        .map(Stored::from_item)
        .transpose()
}

/// Whether the document is shared with this provider.
pub async fn is_shared_with(
    app: &AppContext,
    document_id: &str,
    provider_id: &str,
) -> Result<bool, ApiError> {
    Ok(app
        .db
        .get(
            &app.config.table,
            &keys::document_share(document_id, provider_id),
        )
        .await?
        .is_some())
}

/// What a new document holds besides its sealed name.
pub struct NewDocument<'a> {
    pub id: &'a str,
    pub owner_id: &'a str,
    pub uploaded_by: &'a str,
    pub name: &'a str,
    pub category: &'a str,
    pub content_type: &'a str,
    pub declared_size: u64,
    /// Share it with the uploader (a provider uploading for a patient in their care).
    pub share_with_uploader: bool,
}

fn share_item(
    document_id: &str,
    provider_id: &str,
    category: &str,
    expires_at: Option<i64>,
    now: &str,
) -> Item {
    let key = keys::document_share(document_id, provider_id);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("document_id".into(), Value::S(document_id.into()));
    item.insert("provider_id".into(), Value::S(provider_id.into()));
    item.insert(
        "gsi1pk".into(),
        Value::S(keys::documents_shared_with(provider_id)),
    );
    item.insert("gsi1sk".into(), Value::S(document_id.into()));
    item.insert(
        "gsi2pk".into(),
        Value::S(keys::documents_shared_with_in(provider_id, category)),
    );
    item.insert("gsi2sk".into(), Value::S(document_id.into()));
    item.insert("created_at".into(), Value::S(now.into()));
    if let Some(at) = expires_at {
        item.insert(crate::ports::db::TTL.into(), Value::N(at));
    }
    item
}

/// Creates a document in `pending_upload` (with its uploader's share when asked) and
/// its event in one commit. Both wait for the upload with a TTL.
pub async fn create(
    app: &AppContext,
    new: NewDocument<'_>,
    event: AuditEvent,
) -> Result<Document, ApiError> {
    let key = keys::document(new.id);
    let now = app.now();
    let created_at = now.to_string();
    let expires_at = now.epoch_secs() + crate::domain::document::PENDING_TTL_SECS;
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    item.insert("name".into(), phi::seal(app, &key, "name", new.name).await?);
    for (name, value) in [
        ("id", new.id),
        ("owner_id", new.owner_id),
        ("uploaded_by", new.uploaded_by),
        ("category", new.category),
        ("content_type", new.content_type),
        ("status", Status::PendingUpload.as_str()),
        ("created_at", &created_at),
        ("updated_at", &created_at),
    ] {
        item.insert(name.into(), Value::S(value.into()));
    }
    item.insert(
        "declared_size".into(),
        Value::N(i64::try_from(new.declared_size).map_err(ApiError::internal)?),
    );
    item.insert("version".into(), Value::N(1));
    item.insert(crate::ports::db::TTL.into(), Value::N(expires_at));
    set_lists(&mut item, new.owner_id, new.category, new.id);
    let table = app.config.table.clone();
    let mut ops = vec![WriteOp::Put {
        table: table.clone(),
        item: item.clone(),
        condition: Some(Condition::NotExists),
    }];
    if new.share_with_uploader {
        ops.push(WriteOp::Put {
            table,
            item: share_item(
                new.id,
                new.uploaded_by,
                new.category,
                Some(expires_at),
                &created_at,
            ),
            condition: None,
        });
    }
    match app.audit.commit(event, ops).await {
        Ok(()) => {
            let mut view = plain_view(&item);
            view.name = new.name.to_string();
            Ok(view)
        }
        Err(CommitError::Change { .. }) => Err(ApiError::conflict("this document exists")),
        Err(err) => Err(err.into()),
    }
}

fn set_lists(item: &mut Item, owner_id: &str, category: &str, id: &str) {
    item.insert("gsi1pk".into(), Value::S(keys::documents_of(owner_id)));
    item.insert("gsi1sk".into(), Value::S(id.into()));
    item.insert(
        "gsi2pk".into(),
        Value::S(keys::documents_of_in(owner_id, category)),
    );
    item.insert("gsi2sk".into(), Value::S(id.into()));
}

fn plain_view(item: &Item) -> Document {
    let status = text(item, "status")
        .and_then(|s| Status::parse(&s))
        .unwrap_or(Status::PendingUpload);
    Document {
        id: text(item, "id").unwrap_or_default(),
        owner_id: text(item, "owner_id").unwrap_or_default(),
        uploaded_by: text(item, "uploaded_by").unwrap_or_default(),
        name: String::new(),
        category: text(item, "category").unwrap_or_default(),
        content_type: text(item, "content_type").unwrap_or_default(),
        size: number(item, "size")
            .or_else(|| number(item, "declared_size"))
            .unwrap_or_default(),
        status,
        reason: text(item, "reason"),
        sha256: None,
        duplicate_of: text(item, "duplicate_of"),
        created_at: text(item, "created_at").unwrap_or_default(),
        updated_at: text(item, "updated_at").unwrap_or_default(),
    }
}

/// Opens a stored document for a request; an integrity failure is audited and fails it.
pub async fn open(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    item: &Item,
) -> Result<Document, ApiError> {
    let mut view = plain_view(item);
    let opened =
        phi::open_audited(app, req, principal, item, &SEALED, (RESOURCE, &view.id)).await?;
    let mut values = opened.into_iter();
    view.name = values.next().flatten().unwrap_or_default();
    view.sha256 = values.next().flatten();
    Ok(view)
}

/// Whose list a page is of.
pub enum ListOf<'a> {
    /// An owner's documents.
    Owner(&'a str),
    /// The documents shared with a provider.
    SharedWith(&'a str),
}

/// One page of a list (one index query; by category on gsi2), opened. A provider's page
/// reads each shared document's record (at most a page of them); shares of documents
/// deleted or expired meanwhile are left out.
pub async fn list(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    of: ListOf<'_>,
    category: Option<&str>,
    page: &PageRequest,
) -> Result<Page<Document>, ApiError> {
    let (partition, index) = match (&of, category) {
        (ListOf::Owner(owner), None) => (keys::documents_of(owner), Index::Gsi1),
        (ListOf::Owner(owner), Some(c)) => (keys::documents_of_in(owner, c), Index::Gsi2),
        (ListOf::SharedWith(p), None) => (keys::documents_shared_with(p), Index::Gsi1),
        (ListOf::SharedWith(p), Some(c)) => (keys::documents_shared_with_in(p, c), Index::Gsi2),
    };
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(partition)
                .on(index)
                .descending()
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for item in &result.items {
        match of {
            ListOf::Owner(_) => items.push(open(app, req, principal, item).await?),
            ListOf::SharedWith(_) => {
                let Some(id) = text(item, "document_id") else {
                    continue;
                };
                if let Some(document) = stored(app, &id).await? {
                    if document.status != Status::Deleted {
                        items.push(open(app, req, principal, &document.item).await?);
                    }
                }
            }
        }
    }
    Ok(Page::new(items, result.next))
}

/// Shares an available document with a provider (a repeat changes nothing), with its
/// event. 409 when the document changed state meanwhile.
pub async fn share(
    app: &AppContext,
    document: &Stored,
    provider_id: &str,
    event: AuditEvent,
) -> Result<(), ApiError> {
    let mut ops = attach_ops(app, document, None, std::iter::once(provider_id));
    ops.push(crate::auth::care::active_check(
        app,
        provider_id,
        &document.owner_id,
    ));
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(()),
        Err(CommitError::Change { op: 2 }) => Err(ApiError::NotFound),
        Err(CommitError::Change { .. }) => Err(ApiError::conflict(
            "only an available document can be shared",
        )),
        Err(err) => Err(err.into()),
    }
}

/// The writes that share a document with `providers` inside a caller's commit: first a
/// check that it is still available (and, with `owner`, still that user's), then one
/// share per provider (a repeat changes nothing). The caller checks the providers' care
/// relationships with the owner in the same commit and audits the share. A message's
/// attachments are shared this way, in the send's transaction.
pub fn attach_ops<'a>(
    app: &AppContext,
    document: &Stored,
    owner: Option<&str>,
    providers: impl IntoIterator<Item = &'a str>,
) -> Vec<WriteOp> {
    let table = &app.config.table;
    let available = Condition::Equals("status".into(), Value::S(Status::Available.as_str().into()));
    let condition = match owner {
        Some(owner) => Condition::And(vec![
            available,
            Condition::Equals("owner_id".into(), Value::S(owner.into())),
        ]),
        None => available,
    };
    let now = app.now().to_string();
    let mut ops = vec![WriteOp::Check {
        table: table.clone(),
        key: keys::document(&document.id),
        condition,
    }];
    ops.extend(providers.into_iter().map(|provider_id| WriteOp::Put {
        table: table.clone(),
        item: share_item(&document.id, provider_id, &document.category, None, &now),
        condition: None,
    }));
    ops
}

/// Soft-deletes a document: `deleted`, out of the lists (index keys removed), its TTL
/// dropped; the sealed object stays until a purge. 409 when it is deleted already.
pub async fn delete(
    app: &AppContext,
    document: &Stored,
    event: AuditEvent,
) -> Result<(), ApiError> {
    let update = Update::new()
        .set("status", Value::S(Status::Deleted.as_str().into()))
        .set("updated_at", Value::S(app.now().to_string()))
        .set("deleted_at", Value::S(app.now().to_string()))
        .remove("gsi1pk")
        .remove("gsi1sk")
        .remove("gsi2pk")
        .remove("gsi2sk")
        .remove(crate::ports::db::TTL);
    let ops = vec![WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::document(&document.id),
        update,
        condition: Some(Condition::Equals(
            "status".into(),
            Value::S(document.status.as_str().into()),
        )),
    }];
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(()),
        Err(CommitError::Change { .. }) => Err(ApiError::conflict(
            "the document was changed by another request; retry",
        )),
        Err(err) => Err(err.into()),
    }
}

// ---------------------------------------------------------------------------------
// The scanner's side
// ---------------------------------------------------------------------------------

/// Marks a document `scanning` (from `pending_upload`, or `scanning` again on a
/// redelivery). `false` when it is in neither state (already decided, deleted, gone).
pub async fn start_scan(app: &AppContext, id: &str) -> Result<bool, ApiError> {
    let update = Update::new()
        .set("status", Value::S(Status::Scanning.as_str().into()))
        .set("updated_at", Value::S(app.now().to_string()));
    let open_state =
        |status: Status| Condition::Equals("status".into(), Value::S(status.as_str().into()));
    for state in [Status::PendingUpload, Status::Scanning] {
        match app
            .db
            .update(
                &app.config.table,
                &keys::document(id),
                update.clone(),
                Some(open_state(state)),
            )
            .await
        {
            Ok(_) => return Ok(true),
            Err(err) if err.is_condition_failed() => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(false)
}

/// An owner's earlier content with the same keyed HMAC: the sealed object and the id its
/// frames are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    pub content_id: String,
    pub blob_key: String,
    pub size: u64,
}

/// The content an owner already stored under this HMAC, if any.
pub async fn content(
    app: &AppContext,
    owner_id: &str,
    content_mac: &str,
) -> Result<Option<StoredContent>, ApiError> {
    let Some(item) = app
        .db
        .get(
            &app.config.table,
            &keys::document_content(owner_id, content_mac),
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(
        match (
            text(&item, "content_id"),
            text(&item, "blob_key"),
            number(&item, "size"),
        ) {
            (Some(content_id), Some(blob_key), Some(size)) => Some(StoredContent {
                content_id,
                blob_key,
                size,
            }),
            _ => None,
        },
    )
}

/// What the scan found out about a clean upload.
pub struct Accepted<'a> {
    pub size: u64,
    /// Hex, sealed in the record.
    pub sha256: &'a str,
    pub content_mac: &'a str,
    /// Where the sealed bytes are: this document's own object, or an earlier one of the
    /// same owner with the same content.
    pub content: StoredContent,
    pub duplicate_of: Option<String>,
}

/// Makes a scanning document `available` (TTL dropped from it and its uploader's
/// share), records its content for later duplicates, with the event. `false` when it
/// was no longer `scanning` (another delivery decided it).
pub async fn accept(
    app: &AppContext,
    document: &Stored,
    accepted: Accepted<'_>,
    event: AuditEvent,
) -> Result<bool, ApiError> {
    let key = keys::document(&document.id);
    let now = app.now().to_string();
    let mut update = Update::new()
        .set("status", Value::S(Status::Available.as_str().into()))
        .set(
            "size",
            Value::N(i64::try_from(accepted.size).map_err(ApiError::internal)?),
        )
        // Sealed by the scanner, whose role opens no PHI: under a data key of its own.
        .set(
            "sha256",
            phi::seal_without_opening(app, &key, "sha256", accepted.sha256).await?,
        )
        .set("blob_key", Value::S(accepted.content.blob_key.clone()))
        .set("content_id", Value::S(accepted.content.content_id.clone()))
        .set("updated_at", Value::S(now.clone()))
        .remove(crate::ports::db::TTL);
    if let Some(original) = &accepted.duplicate_of {
        update = update.set("duplicate_of", Value::S(original.clone()));
    }
    let table = app.config.table.clone();
    let mut ops = vec![WriteOp::Update {
        table: table.clone(),
        key,
        update,
        condition: Some(Condition::Equals(
            "status".into(),
            Value::S(Status::Scanning.as_str().into()),
        )),
    }];
    if accepted.duplicate_of.is_none() {
        let content_key = keys::document_content(&document.owner_id, accepted.content_mac);
        let mut item = Item::new();
        item.insert("pk".into(), Value::S(content_key.pk));
        item.insert("sk".into(), Value::S(content_key.sk));
        item.insert(
            "content_id".into(),
            Value::S(accepted.content.content_id.clone()),
        );
        item.insert(
            "blob_key".into(),
            Value::S(accepted.content.blob_key.clone()),
        );
        item.insert(
            "size".into(),
            Value::N(i64::try_from(accepted.size).map_err(ApiError::internal)?),
        );
        item.insert("created_at".into(), Value::S(now));
        ops.push(WriteOp::Put {
            table: table.clone(),
            item,
            condition: None,
        });
    }
    if document.uploaded_by != document.owner_id {
        ops.push(WriteOp::Update {
            table,
            key: keys::document_share(&document.id, &document.uploaded_by),
            update: Update::new().remove(crate::ports::db::TTL),
            condition: Some(Condition::Exists),
        });
    }
    finish(app, event, ops).await
}

/// Makes a scanning document `rejected` with its reason (TTL dropped), with the event.
/// `false` when it was no longer `scanning`.
pub async fn reject(
    app: &AppContext,
    document: &Stored,
    reason: RejectReason,
    event: AuditEvent,
) -> Result<bool, ApiError> {
    let update = Update::new()
        .set("status", Value::S(Status::Rejected.as_str().into()))
        .set("reason", Value::S(reason.as_str().into()))
        .set("updated_at", Value::S(app.now().to_string()))
        .remove(crate::ports::db::TTL);
    let ops = vec![WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::document(&document.id),
        update,
        condition: Some(Condition::Equals(
            "status".into(),
            Value::S(Status::Scanning.as_str().into()),
        )),
    }];
    finish(app, event, ops).await
}

async fn finish(app: &AppContext, event: AuditEvent, ops: Vec<WriteOp>) -> Result<bool, ApiError> {
    match app.audit.commit(event, ops).await {
        Ok(()) => Ok(true),
        Err(CommitError::Change { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}
