//! Storage: the only code that knows keys and items. [`keys`] names every item kind of
//! the domain table; the repositories turn typed entities into conditional writes and
//! typed reads, so handlers never assemble an item or a key.

pub mod appointments;
pub mod connections;
pub mod contacts;
pub mod devices;
pub mod documents;
pub mod keys;
pub mod medications;
pub mod messages;
pub mod mfa;
pub mod notes;
pub mod notifications;
pub mod observations;
pub mod payments;
pub mod profiles;
pub mod reminders;
pub mod sessions;
pub mod single_use;
pub mod sos;
pub mod tickets;
pub mod video;

/// Whether the database answers (the health check's probe: one read, no data).
pub async fn database_reachable(app: &crate::AppContext, table: &str) -> bool {
    app.db.check(table).await.is_ok()
}
