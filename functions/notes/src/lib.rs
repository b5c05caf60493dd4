//! The notes function: secure clinical notes (`docs/notes.md`). Providers in a
//! patient's care write notes for the patient's appointments; every create, read,
//! update, share and archive states an `access_reason`, sealed in its audit event; the
//! text is sealed with its SHA-256 and checked on every read; an update is a new
//! version (never overwriting), guarded by the version the writer read; notes are
//! archived, never deleted; the patient reads the notes shared with them, and every
//! access by someone else is in the patient's access log.

/// The outside services the `notes` binary links (`shared::adapters::links`): the table and
/// the keys only.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::NONE;

pub mod handlers;

use http::Method;
use shared::http::{Page, RouteDoc, Router};
use shared::store::notes::{Note, NoteText, VersionInfo, VersionText};

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, "/api/v1/secure-notes", handlers::create)
        .doc(
            RouteDoc::new("Write a secure note for an appointment of a patient in the caller's care (providers, MFA session)")
                .describe("The text is sealed with its SHA-256; `access_reason` (10 to 500 characters) is sealed in the audit event, never stored or answered in the clear. A patient not in the caller's care, or an appointment that does not exist, is a 404.")
                .bearer()
                .body::<handlers::CreateBody>()
                .response::<NoteText>(201)
                .errors(&[400, 401, 403, 404, 413, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/secure-notes/{id}/access",
            handlers::access,
        )
        .doc(
            RouteDoc::new("Read a secure note's current version, stating why")
                .describe("For the patient's care team (MFA session), and for the patient once the author has shared it. The text's SHA-256 is checked on every read: a mismatch is a 500, recorded as INTEGRITY_FAILURE. Without a valid `access_reason` it is a 400 and nothing is read.")
                .bearer()
                .body::<handlers::ReasonBody>()
                .response::<NoteText>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::PUT, "/api/v1/secure-notes/{id}", handlers::update)
        .doc(
            RouteDoc::new("Write a new version of a secure note (a revision by its author, an addendum by another provider in the patient's care)")
                .describe("Earlier versions stay readable. `expected_version` is the version the caller read: a 409 when another update came first (of concurrent updates from one version exactly one is kept) or the note is archived.")
                .bearer()
                .body::<handlers::UpdateBody>()
                .response::<NoteText>(200)
                .errors(&[400, 401, 403, 404, 409, 413, 429, 503]),
        )
        .route(
            Method::PUT,
            "/api/v1/secure-notes/{id}/share",
            handlers::share,
        )
        .doc(
            RouteDoc::new("Share a secure note with its patient, or stop sharing it (its author)")
                .bearer()
                .body::<handlers::ShareBody>()
                .response::<Note>(200)
                .errors(&[400, 401, 403, 404, 409, 429, 503]),
        )
        .route(
            Method::PUT,
            "/api/v1/secure-notes/{id}/archive",
            handlers::archive,
        )
        .doc(
            RouteDoc::new("Archive a secure note (its author): never deleted, no longer changed")
                .bearer()
                .body::<handlers::ReasonBody>()
                .response::<Note>(200)
                .errors(&[400, 401, 403, 404, 409, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/secure-notes/{id}/versions",
            handlers::versions,
        )
        .doc(
            RouteDoc::new("A secure note's versions, oldest first: number, author, kind, time and whether a reason was given (no text)")
                .bearer()
                .paged()
                .response::<Page<VersionInfo>>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/secure-notes/{id}/versions/{version}/access",
            handlers::version_access,
        )
        .doc(
            RouteDoc::new("Read one version of a secure note, stating why (the patient's care team)")
                .bearer()
                .body::<handlers::ReasonBody>()
                .response::<VersionText>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/appointments/{id}/secure-notes/access",
            handlers::for_appointment,
        )
        .doc(
            RouteDoc::new("An appointment's secure notes, oldest first, stating why (no text: read each note on its own)")
                .describe("The patient's care team sees every note, archived ones included; the patient the active notes shared with them (a page may then be short, with a cursor).")
                .bearer()
                .paged()
                .body::<handlers::ReasonBody>()
                .response::<Page<Note>>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/secure-notes/{id}/audit-logs",
            handlers::audit_logs,
        )
        .doc(
            RouteDoc::new("A secure note's audit trail, newest first (its author and administrators, MFA sessions)")
                .describe("Who did what and when, and whether a reason was given; reasons and user agents stay sealed. Anyone else gets 404.")
                .bearer()
                .paged()
                .response::<Page<handlers::AuditView>>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
}
