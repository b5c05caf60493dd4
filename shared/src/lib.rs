//! The common crate of the DoCare backend: configuration, the error type, HTTP and
//! WebSocket plumbing, the ports to outside services and their AWS and local adapters.
//!
//! Handlers depend on [`App`] and the port traits only, never on an SDK or the
//! environment, so the same code runs on Lambda, in the local stack and in tests.

pub mod adapters;
pub mod app;
pub mod audit;
pub mod auth;
pub mod chat;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod documents;
pub mod domain;
pub mod encoding;
pub mod error;
pub mod guard;
pub mod http;
pub mod lambda;
pub mod notifications;
pub mod payments;
pub mod phi;
pub mod ports;
pub mod secrets;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod video;
pub mod worker;
pub mod ws;

pub use app::{App, AppContext, Ports};
pub use error::ApiError;
