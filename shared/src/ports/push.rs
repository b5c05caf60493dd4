//! The push port: messages to WebSocket clients through the API Gateway Management API
//! (locally, the local gateway). A connection that is gone is an outcome, not an error:
//! the caller removes it from the connection table.

use async_trait::async_trait;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// The client has disconnected (HTTP 410 on AWS).
    Gone,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("push unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<PushError> for crate::ApiError {
    fn from(err: PushError) -> Self {
        crate::ApiError::unavailable("push", err)
    }
}

/// API Gateway's largest WebSocket frame.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

#[async_trait]
pub trait Push: Send + Sync {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<PushOutcome, PushError>;
    /// Closes the connection from the server side.
    async fn disconnect(&self, connection_id: &str) -> Result<PushOutcome, PushError>;
}
