//! Envelope encryption of PHI (DESIGN §6): KMS-wrapped data keys and branch keys
//! (the hierarchical keyring, [`keyring`]), a per-value key derived with HKDF,
//! AES-256-GCM bound to where the value is stored.

pub mod envelope;
pub mod format;
pub mod frames;
pub mod keyring;
pub mod metered;
pub mod rotation;
pub mod signing;

pub use envelope::{CachePolicy, CryptoError, Envelope};
pub use format::Binding;
pub use metered::{KmsCalls, MeteredKeys};
pub mod blind_index;
