//! The audit trail (DESIGN §6): every PHI access, auth event and admin action becomes
//! an [`AuditEvent`], appended by the one [`AuditWriter`] to a hash chain in the audit
//! table, and read back by the [`AuditReader`] and the verifier. See `docs/audit.md`.
//!
//! A handler records before it answers, and fails closed:
//!
//! ```ignore
//! let event = AuditEvent::from_request(&req, Action::View, Outcome::Success)
//!     .actor(Actor::user(&user_id, "provider").with_session(&session_id))
//!     .resource("note", &note_id);
//! audit.record(event).await?; // AuditError -> 503: no audit, no PHI
//! ```
//!
//! A change is committed with its event ([`AuditWriter::commit`]): the entity writes,
//! the event and the chain head in one transaction, so a change whose event cannot be
//! recorded is not kept.

pub mod anchor;
pub mod archive;
mod chain;
mod event;
mod reader;
pub mod verify;
mod writer;

#[cfg(test)]
mod tests;

/// The writes a unit of work commits with its event (built by the repositories).
pub use crate::ports::db::WriteOp;
pub use anchor::{Anchor, AnchorRun, Anchorer, ANCHOR_GRACE, ANCHOR_INTERVAL, ANCHOR_PK};
pub use chain::{
    attr, chain_pk, format_time, genesis_hash, head_key, parse_time, seq_sk, ChainHead, Malformed,
    StoredEvent, CHAIN_SHARDS, FORMAT_VERSION, RETENTION_DAYS,
};
pub use event::{
    Action, Actor, AuditEvent, Origin, Outcome, Reason, Resource, UnknownName, MAX_REASON_CHARS,
};
pub use reader::{AuditReader, TimeRange};
pub use verify::{
    verify, verify_with_anchors, verify_with_archive, Archive, BreakKind, ChainBreak,
    VerifyOptions, VerifyReport,
};
pub use writer::{AuditWriter, CommitError, MAX_ATTEMPTS, MAX_CHANGE_OPS};

use crate::crypto::CryptoError;
use crate::ports::db::DbError;
use crate::ApiError;

/// Why an event could not be recorded or read. Never carries event contents.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store unavailable")]
    Store(#[source] DbError),
    #[error("audit encryption unavailable")]
    Crypto(#[source] CryptoError),
    /// Other instances kept advancing every shard tried.
    #[error("audit chain contended after {attempts} attempts")]
    Contended { attempts: u32 },
    /// A stored audit item or head is not what the writer writes.
    #[error("audit data is corrupt")]
    Corrupt(#[source] Malformed),
    /// The handler built an event the chain cannot hold (names the field): a bug.
    #[error("invalid audit event: {0}")]
    InvalidEvent(&'static str),
    /// A list cursor that does not belong to this list.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The audit archive (S3) could not be read.
    #[error("audit archive unavailable")]
    Archive(#[source] crate::ports::blobs::BlobError),
}

/// Unrecorded means unavailable: the request fails closed with a 503 (a bad cursor is
/// the caller's 400; an invalid event is our bug, a 500).
impl From<AuditError> for ApiError {
    fn from(err: AuditError) -> Self {
        match err {
            AuditError::InvalidCursor => {
                ApiError::validation("the cursor is not valid for this list")
            }
            AuditError::InvalidEvent(_) => ApiError::internal(err),
            other => ApiError::unavailable("audit", other),
        }
    }
}
