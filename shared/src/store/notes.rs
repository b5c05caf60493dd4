//! Secure clinical notes (the notes function, `docs/notes.md`).
//!
//! | item | pk | sk | gsi1 |
//! |---|---|---|---|
//! | head | `NOTE#<id>` | `NOTE` | `NOTESFOR#<appointment>` / `<created>#<id>` |
//! | version | `NOTE#<id>` | `VERSION#<n, 10 digits>` | — |
//!
//! The head holds who and what in the clear (ids, type, current version, status, the
//! patient-sharing flag, times); every version is its own item, written once with a
//! `NotExists` condition and never changed, so no update destroys an earlier text. A
//! version's text is sealed by the envelope as `content` (bound to its table, key and
//! attribute) together with its SHA-256 ([`crate::domain::note::sealed_payload`]): the
//! digest is never in the clear, and every read checks it again. A mismatch, or a
//! ciphertext that fails to open, is recorded as `INTEGRITY_FAILURE` on the note and
//! fails the request.
//!
//! Every change commits with its audit event in one transaction
//! ([`crate::audit::AuditWriter::commit`]): a new version moves the head from the
//! version the client expected (a condition: of racing writers, exactly one wins, the
//! others get 409) and is written only if its number is free, with a check that the
//! writer's care relationship with the patient is still active.

use crate::audit::{Action, AuditEvent, CommitError, Outcome};
use crate::auth::{care, record, Principal};
use crate::domain::note::{self, NoteStatus, NoteType, VersionKind};
use crate::http::pagination::{Page, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{Condition, Index, Item, Key, Query, SortKey, Update, Value, WriteOp};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};
use serde::Serialize;

/// What audit events and refusals name: one note.
pub const RESOURCE: &str = "secure_note";
/// What a patient's access log reads: the events of others on their clinical notes
/// (`clinical_notes/<patient id>`), one per access, next to the event on the note.
pub const PATIENT_RECORD: &str = "clinical_notes";
/// The sealed attribute of a version.
pub const CONTENT: &str = "content";

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Value::as_str).map(str::to_string)
}

/// A note as stored (its head), before anything is opened: what authorization needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub appointment_id: String,
    pub patient_id: String,
    /// The provider who wrote the first version.
    pub author_id: String,
    pub note_type: NoteType,
    pub version: i64,
    pub status: NoteStatus,
    pub shared_with_patient: bool,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

impl Stored {
    fn parse(item: &Item) -> Result<Self, ApiError> {
        let bad = || ApiError::internal("a secure note item is malformed");
        Ok(Self {
            id: text(item, "id").ok_or_else(bad)?,
            appointment_id: text(item, "appointment_id").ok_or_else(bad)?,
            patient_id: text(item, "patient_id").ok_or_else(bad)?,
            author_id: text(item, "author_id").ok_or_else(bad)?,
            note_type: text(item, "note_type")
                .as_deref()
                .and_then(NoteType::parse)
                .ok_or_else(bad)?,
            version: item
                .get("version")
                .and_then(Value::as_i64)
                .ok_or_else(bad)?,
            status: text(item, "status")
                .as_deref()
                .and_then(NoteStatus::parse)
                .ok_or_else(bad)?,
            shared_with_patient: item
                .get("shared_with_patient")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            created_at: text(item, "created_at").ok_or_else(bad)?,
            updated_at: text(item, "updated_at").ok_or_else(bad)?,
            archived_at: text(item, "archived_at"),
        })
    }

    pub fn is_active(&self) -> bool {
        self.status == NoteStatus::Active
    }

    /// The note as shown (no text).
    pub fn view(&self) -> Note {
        Note {
            id: self.id.clone(),
            appointment_id: self.appointment_id.clone(),
            patient_id: self.patient_id.clone(),
            author_id: self.author_id.clone(),
            note_type: self.note_type,
            status: self.status,
            shared_with_patient: self.shared_with_patient,
            version: self.version,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            archived_at: self.archived_at.clone(),
        }
    }
}

/// A secure note as shown, without its text (lists, changes of state).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(rename = "SecureNote")]
pub struct Note {
    pub id: String,
    pub appointment_id: String,
    pub patient_id: String,
    /// The provider who wrote the first version.
    pub author_id: String,
    pub note_type: NoteType,
    pub status: NoteStatus,
    /// Set by the author: the patient may read the current version.
    pub shared_with_patient: bool,
    /// The current version (what `expected_version` of an update names).
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
}

/// A note with the text of one of its versions (opened and checked).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(rename = "SecureNoteText")]
pub struct NoteText {
    #[serde(flatten)]
    pub note: Note,
    pub content: String,
    /// The version whose text this is, its author and time.
    pub content_version: i64,
    pub content_author_id: String,
    pub content_created_at: String,
}

/// One version of a note, without its text (the reason it was written with is sealed in
/// the audit trail: only whether one was given is shown).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(rename = "SecureNoteVersion")]
pub struct VersionInfo {
    pub version: i64,
    pub author_id: String,
    pub kind: VersionKind,
    pub note_type: NoteType,
    pub created_at: String,
    pub has_reason: bool,
}

/// One version with its text (opened and checked).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(rename = "SecureNoteVersionText")]
pub struct VersionText {
    pub note_id: String,
    #[serde(flatten)]
    pub info: VersionInfo,
    pub content: String,
}

fn version_info(item: &Item) -> Result<VersionInfo, ApiError> {
    let bad = || ApiError::internal("a secure note version is malformed");
    Ok(VersionInfo {
        version: item
            .get("version")
            .and_then(Value::as_i64)
            .ok_or_else(bad)?,
        author_id: text(item, "author_id").ok_or_else(bad)?,
        kind: text(item, "kind")
            .as_deref()
            .and_then(VersionKind::parse)
            .ok_or_else(bad)?,
        note_type: text(item, "note_type")
            .as_deref()
            .and_then(NoteType::parse)
            .ok_or_else(bad)?,
        created_at: text(item, "created_at").ok_or_else(bad)?,
        has_reason: item
            .get("has_reason")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// A future built in this function's frame and polled from the heap, so the caller's
/// poll frame holds a pointer rather than the future: in debug builds every pending
/// future takes room in the frame that creates it, and these paths nest deeply (the
/// envelope, the audit chain). See `functions/notes`.
fn heap<'a, T, Fut>(
    make: impl FnOnce() -> Fut,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>
where
    Fut: std::future::Future<Output = T> + Send + 'a,
{
    Box::pin(make())
}

/// One note's head; `None` when there is none with this id.
pub async fn get(app: &AppContext, id: &str) -> Result<Option<Stored>, ApiError> {
    app.db
        .get(&app.config.table, &keys::note(id))
        .await?
        .as_ref()
        .map(Stored::parse)
        .transpose()
}

/// What one version is made of.
struct Draft<'a> {
    note_id: &'a str,
    version: i64,
    author_id: &'a str,
    kind: VersionKind,
    note_type: NoteType,
    content: &'a str,
    now: &'a str,
}

/// A version item, its text sealed with its digest.
async fn version_item(app: &AppContext, draft: Draft<'_>) -> Result<Item, ApiError> {
    let Draft {
        note_id,
        version,
        author_id,
        kind,
        note_type,
        content,
        now,
    } = draft;
    let key = keys::note_version(note_id, version);
    let payload = note::sealed_payload(content);
    let sealed = heap(|| phi::seal(app, &key, CONTENT, &payload)).await?;
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("note_id".into(), Value::S(note_id.into()));
    item.insert("version".into(), Value::N(version));
    item.insert("author_id".into(), Value::S(author_id.into()));
    item.insert("kind".into(), Value::S(kind.as_str().into()));
    item.insert("note_type".into(), Value::S(note_type.as_str().into()));
    // Every change states a reason (the handlers refuse one without); the reason
    // itself is sealed in the change's audit event, never here.
    item.insert("has_reason".into(), Value::Bool(true));
    item.insert("created_at".into(), Value::S(now.into()));
    item.insert(CONTENT.into(), sealed);
    Ok(item)
}

/// What a new note is.
pub struct NewNote<'a> {
    pub id: &'a str,
    pub appointment_id: &'a str,
    pub patient_id: &'a str,
    pub author_id: &'a str,
    pub note_type: NoteType,
    pub content: &'a str,
}

/// Why a change was not made.
#[derive(Debug)]
pub enum ChangeError {
    /// The version is no longer the one expected, or the note was archived meanwhile.
    Conflict,
    /// The writer's care relationship with the patient ended meanwhile.
    NoCare,
    Api(ApiError),
}

impl From<ApiError> for ChangeError {
    fn from(err: ApiError) -> Self {
        ChangeError::Api(err)
    }
}

fn change_error(err: CommitError, care_op: usize) -> ChangeError {
    match err {
        CommitError::Change { op } if op == care_op => ChangeError::NoCare,
        CommitError::Change { .. } => ChangeError::Conflict,
        CommitError::Audit(err) => ChangeError::Api(err.into()),
    }
}

/// Creates a note and its first version, with its event (worst case 5 items: head,
/// version, care check, event, chain head). The author's care relationship with the
/// patient must still be active when it commits.
pub async fn create(
    app: &AppContext,
    new: NewNote<'_>,
    event: AuditEvent,
) -> Result<Stored, ChangeError> {
    let now = app.now().to_string();
    let key = keys::note(new.id);
    let version = version_item(
        app,
        Draft {
            note_id: new.id,
            version: 1,
            author_id: new.author_id,
            kind: VersionKind::Original,
            note_type: new.note_type,
            content: new.content,
            now: &now,
        },
    )
    .await?;
    let stored = Stored {
        id: new.id.into(),
        appointment_id: new.appointment_id.into(),
        patient_id: new.patient_id.into(),
        author_id: new.author_id.into(),
        note_type: new.note_type,
        version: 1,
        status: NoteStatus::Active,
        shared_with_patient: false,
        created_at: now.clone(),
        updated_at: now.clone(),
        archived_at: None,
    };
    let mut head = Item::new();
    head.insert("pk".into(), Value::S(key.pk));
    head.insert("sk".into(), Value::S(key.sk));
    head.insert("id".into(), Value::S(new.id.into()));
    head.insert("appointment_id".into(), Value::S(new.appointment_id.into()));
    head.insert("patient_id".into(), Value::S(new.patient_id.into()));
    head.insert("author_id".into(), Value::S(new.author_id.into()));
    head.insert("note_type".into(), Value::S(new.note_type.as_str().into()));
    head.insert("version".into(), Value::N(1));
    head.insert(
        "status".into(),
        Value::S(NoteStatus::Active.as_str().into()),
    );
    head.insert("shared_with_patient".into(), Value::Bool(false));
    head.insert("created_at".into(), Value::S(now.clone()));
    head.insert("updated_at".into(), Value::S(now.clone()));
    head.insert(
        "gsi1pk".into(),
        Value::S(keys::notes_for(new.appointment_id)),
    );
    head.insert("gsi1sk".into(), Value::S(format!("{now}#{}", new.id)));
    let table = app.config.table.clone();
    let ops = vec![
        WriteOp::Put {
            table: table.clone(),
            item: head,
            condition: Some(Condition::NotExists),
        },
        WriteOp::Put {
            table,
            item: version,
            condition: Some(Condition::NotExists),
        },
        care::active_check(app, new.author_id, new.patient_id),
    ];
    heap(|| app.audit.commit(event, ops))
        .await
        .map_err(|err| change_error(err, 2))?;
    Ok(stored)
}

/// A new version of a note by `author_id` (a revision by the note's author, an addendum
/// by another provider), replacing `expected` — the version the client read. With its
/// event in one transaction (worst case 5 items: head, version, care check, event,
/// chain head): the head moves only from `expected` and only while the note is active,
/// the version is written only if its number is free, and the author's care
/// relationship must still be active. Of racing updates from the same version, exactly
/// one commits; the others get [`ChangeError::Conflict`] and write nothing.
pub async fn revise(
    app: &AppContext,
    stored: &Stored,
    expected: i64,
    author_id: &str,
    note_type: NoteType,
    content: &str,
    event: AuditEvent,
) -> Result<Stored, ChangeError> {
    let now = app.now().to_string();
    let next = expected + 1;
    let kind = VersionKind::of(next, author_id, &stored.author_id);
    let version = version_item(
        app,
        Draft {
            note_id: &stored.id,
            version: next,
            author_id,
            kind,
            note_type,
            content,
            now: &now,
        },
    )
    .await?;
    let table = app.config.table.clone();
    let ops = vec![
        WriteOp::Update {
            table: table.clone(),
            key: keys::note(&stored.id),
            update: Update::new()
                .set("version", next)
                .set("note_type", note_type.as_str())
                .set("updated_at", now.as_str()),
            condition: Some(Condition::And(vec![
                Condition::Equals("version".into(), Value::N(expected)),
                Condition::Equals(
                    "status".into(),
                    Value::S(NoteStatus::Active.as_str().into()),
                ),
            ])),
        },
        WriteOp::Put {
            table,
            item: version,
            condition: Some(Condition::NotExists),
        },
        care::active_check(app, author_id, &stored.patient_id),
    ];
    heap(|| app.audit.commit(event, ops))
        .await
        .map_err(|err| change_error(err, 2))?;
    Ok(Stored {
        version: next,
        note_type,
        updated_at: now,
        ..stored.clone()
    })
}

/// Sets whether the patient may read the note (the author's choice), with its event
/// (3 items: head, event, chain head). Only while the note is active.
pub async fn set_shared(
    app: &AppContext,
    stored: &Stored,
    shared: bool,
    event: AuditEvent,
) -> Result<Stored, ChangeError> {
    let now = app.now().to_string();
    let ops = vec![WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::note(&stored.id),
        update: Update::new()
            .set("shared_with_patient", shared)
            .set("updated_at", now.as_str()),
        condition: Some(Condition::Equals(
            "status".into(),
            Value::S(NoteStatus::Active.as_str().into()),
        )),
    }];
    heap(|| app.audit.commit(event, ops))
        .await
        .map_err(|err| change_error(err, usize::MAX))?;
    Ok(Stored {
        shared_with_patient: shared,
        updated_at: now,
        ..stored.clone()
    })
}

/// Archives a note (never deleted: every version stays readable to its care team), with
/// its event (3 items: head, event, chain head). [`ChangeError::Conflict`] when it is
/// archived already.
pub async fn archive(
    app: &AppContext,
    stored: &Stored,
    event: AuditEvent,
) -> Result<Stored, ChangeError> {
    let now = app.now().to_string();
    let ops = vec![WriteOp::Update {
        table: app.config.table.clone(),
        key: keys::note(&stored.id),
        update: Update::new()
            .set("status", NoteStatus::Archived.as_str())
            .set("archived_at", now.as_str())
            .set("updated_at", now.as_str()),
        condition: Some(Condition::Equals(
            "status".into(),
            Value::S(NoteStatus::Active.as_str().into()),
        )),
    }];
    heap(|| app.audit.commit(event, ops))
        .await
        .map_err(|err| change_error(err, usize::MAX))?;
    Ok(Stored {
        status: NoteStatus::Archived,
        archived_at: Some(now.clone()),
        updated_at: now,
        ..stored.clone()
    })
}

/// One version's item; `None` when the note has no such version.
async fn version_item_of(
    app: &AppContext,
    note_id: &str,
    version: i64,
) -> Result<Option<Item>, ApiError> {
    if version < 1 {
        return Ok(None);
    }
    Ok(app
        .db
        .get(&app.config.table, &keys::note_version(note_id, version))
        .await?)
}

/// Opens a version's text for a request and checks its digest. A ciphertext that does
/// not open (moved, altered) or a text whose digest does not match is recorded as
/// `INTEGRITY_FAILURE` on the note and fails the request (500): never a wrong text.
async fn open_text(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    note_id: &str,
    item: &Item,
) -> Result<String, ApiError> {
    let opened =
        heap(|| phi::open_audited(app, req, principal, item, &[CONTENT], (RESOURCE, note_id)))
            .await?
            .into_iter()
            .next()
            .flatten();
    match opened.as_deref().map(note::open_payload) {
        Some(Ok(content)) => Ok(content),
        Some(Err(err)) => {
            tracing::error!("a secure note's text failed its digest check");
            heap(|| {
                record(
                    app,
                    req,
                    principal,
                    Action::IntegrityFailure,
                    (RESOURCE, note_id),
                    Outcome::Failed,
                )
            })
            .await?;
            Err(ApiError::internal(err))
        }
        None => {
            heap(|| {
                record(
                    app,
                    req,
                    principal,
                    Action::IntegrityFailure,
                    (RESOURCE, note_id),
                    Outcome::Failed,
                )
            })
            .await?;
            Err(ApiError::internal(note::IntegrityError))
        }
    }
}

/// One version with its text, opened and checked; `None` when there is no such version.
pub async fn version_text(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    note_id: &str,
    version: i64,
) -> Result<Option<VersionText>, ApiError> {
    let Some(item) = version_item_of(app, note_id, version).await? else {
        return Ok(None);
    };
    let info = version_info(&item)?;
    let content = heap(|| open_text(app, req, principal, note_id, &item)).await?;
    Ok(Some(VersionText {
        note_id: note_id.to_string(),
        info,
        content,
    }))
}

/// The note with the text of its current version, opened and checked.
pub async fn current_text(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    stored: &Stored,
) -> Result<NoteText, ApiError> {
    let Some(version) =
        heap(|| version_text(app, req, principal, &stored.id, stored.version)).await?
    else {
        return Err(ApiError::internal(
            "a secure note's current version is missing",
        ));
    };
    Ok(NoteText {
        note: stored.view(),
        content: version.content,
        content_version: version.info.version,
        content_author_id: version.info.author_id,
        content_created_at: version.info.created_at,
    })
}

/// One page of a note's versions, oldest first, without their texts (one query).
pub async fn versions(
    app: &AppContext,
    note_id: &str,
    page: &PageRequest,
) -> Result<Page<VersionInfo>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::note_partition(note_id))
                .sort_key(SortKey::BeginsWith(keys::NOTE_VERSION_SK.into()))
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    Page::from_query(result, |item| version_info(&item))
}

/// One page of an appointment's notes, oldest first, without their texts (one gsi1
/// query). `patient_view` keeps only what the patient may see (shared and active), so
/// such a page may come back short, with a cursor.
pub async fn for_appointment(
    app: &AppContext,
    appointment_id: &str,
    page: &PageRequest,
    patient_view: bool,
) -> Result<Page<Note>, ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::notes_for(appointment_id))
                .on(Index::Gsi1)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    let mut items = Vec::with_capacity(result.items.len());
    for item in &result.items {
        let stored = Stored::parse(item)?;
        if patient_view && !(stored.shared_with_patient && stored.is_active()) {
            continue;
        }
        items.push(stored.view());
    }
    Ok(Page::new(items, result.next))
}

/// The key of a note's head (tests that alter stored items).
pub fn key(id: &str) -> Key {
    keys::note(id)
}

/// The key of a note version (tests that alter stored items).
pub fn version_key(id: &str, version: i64) -> Key {
    keys::note_version(id, version)
}
