//! One trait per outside service. Handlers see only these; `adapters::aws` and
//! `adapters::local` implement each one, and `shared/tests/contract` proves they agree.

pub mod blobs;
pub mod db;
pub mod health_api;
pub mod keys;
pub mod messenger;
pub mod payments;
pub mod push;
pub mod queue;
pub mod recording;
pub mod scanner;
pub mod secrets;
pub mod video;

pub use crate::clock::Clock;
pub use blobs::BlobStore;
pub use db::Database;
pub use health_api::HealthApi;
pub use keys::KeyService;
pub use messenger::Messenger;
pub use payments::Payments;
pub use push::Push;
pub use queue::Queue;
pub use scanner::Scanner;
pub use secrets::SecretStore;
pub use video::Video;
