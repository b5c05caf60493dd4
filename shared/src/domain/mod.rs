//! The domain: parsed values and the rules of each entity, with no I/O, no async and
//! no database items, so each rule is unit-tested on its own and every function applies
//! the same one. Storage lives in [`crate::store`]; handlers parse into these types,
//! apply the rules, and hand the result to a repository.
//!
//! Values: [`Id`] (ULID, generated from the app's clock), [`Timestamp`] (one RFC 3339
//! format), [`text`] (e-mail, E.164 phone, bounded text). Entities: [`account`]
//! (lockout), [`session`] (lifetimes), [`profile`] (date of birth, SSN and its mask,
//! address), [`emergency`] (contacts and their limit, the SOS and its collapse window),
//! [`connection`] (WebSocket lifetime), [`appointment`] (availability, slots, claim units,
//! the status machine), [`medication`] (fields, dose schedules, adherence), [`note`] (secure clinical notes: types,
//! access reasons, versions, the sealed text and its digest). Time zones:
//! [`zone`] (IANA zones and the one rule
//! for local times on daylight-saving days).

pub mod account;
pub mod appointment;
pub mod connection;
pub mod conversation;
pub mod document;
pub mod emergency;
mod id;
pub mod medication;
pub mod note;
pub mod observation;
pub mod profile;
pub mod session;
pub mod text;
mod time;
pub mod video;
pub mod zone;

pub use id::Id;
pub use time::Timestamp;
