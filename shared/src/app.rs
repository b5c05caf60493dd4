//! The application context: configuration plus one instance of each port, built once
//! per cold start (or once per local stack) and shared by every request.

use crate::config::Config;
use crate::ports::{BlobStore, Clock, Database, KeyService, Messenger, Push, Queue};
use std::sync::Arc;

/// What handlers receive. Cloning is a reference-count increment.
pub type App = Arc<AppContext>;

pub struct AppContext {
    pub config: Config,
    pub db: Arc<dyn Database>,
    pub blobs: Arc<dyn BlobStore>,
    pub keys: Arc<dyn KeyService>,
    pub queue: Arc<dyn Queue>,
    pub push: Arc<dyn Push>,
    pub messenger: Arc<dyn Messenger>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext")
            .field("stage", &self.config.stage)
            .finish_non_exhaustive()
    }
}
