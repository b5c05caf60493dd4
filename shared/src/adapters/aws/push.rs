//! The push port on the API Gateway Management API. A 410 (GoneException) is the
//! `Gone` outcome, not an error: the caller forgets the connection.

use crate::ports::push::{Push, PushError, PushOutcome, MAX_FRAME_BYTES};
use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;

pub struct ManagementApi {
    client: super::LazyClient<aws_sdk_apigatewaymanagement::Client>,
}

impl ManagementApi {
    pub fn new(client: impl Into<super::LazyClient<aws_sdk_apigatewaymanagement::Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }
}

/// The typed "connection is gone" variant of each operation's error. Matching the
/// variant (not the error code string) also holds for errors built without metadata.
trait GoneError {
    fn is_gone(&self) -> bool;
    fn is_too_large(&self) -> bool;
}

impl GoneError for PostToConnectionError {
    fn is_gone(&self) -> bool {
        self.is_gone_exception()
    }
    fn is_too_large(&self) -> bool {
        self.is_payload_too_large_exception()
    }
}

impl GoneError for DeleteConnectionError {
    fn is_gone(&self) -> bool {
        self.is_gone_exception()
    }
    fn is_too_large(&self) -> bool {
        false
    }
}

/// Gone, a refused frame, or a failure worth retrying.
fn outcome_of<E, R>(err: SdkError<E, R>) -> Result<PushOutcome, PushError>
where
    E: GoneError + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let service = err.as_service_error();
    if service.is_some_and(|e| e.is_gone()) || err.code() == Some("GoneException") {
        tracing::debug!("push: connection gone");
        return Ok(PushOutcome::Gone);
    }
    if service.is_some_and(|e| e.is_too_large()) {
        return Err(PushError::Invalid("the frame is too large".into()));
    }
    Err(PushError::Unavailable(Box::new(err)))
}

#[async_trait]
impl Push for ManagementApi {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<PushOutcome, PushError> {
        if data.len() > MAX_FRAME_BYTES {
            return Err(PushError::Invalid("frames are at most 128 KiB".into()));
        }
        match self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data))
            .send()
            .await
        {
            Ok(_) => Ok(PushOutcome::Delivered),
            Err(err) => outcome_of(err),
        }
    }

    async fn disconnect(&self, connection_id: &str) -> Result<PushOutcome, PushError> {
        match self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
        {
            Ok(_) => Ok(PushOutcome::Delivered),
            Err(err) => outcome_of(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_apigatewaymanagement::types::error::{GoneException, PayloadTooLargeException};
    use aws_smithy_types::error::ErrorMetadata;

    fn service<E>(err: E) -> SdkError<E, ()> {
        SdkError::service_error(err, ())
    }

    // The emulator never answers 410 (it accepts any connection id), so the mapping is
    // proven on hand-built SDK errors: bare, and with the metadata a real 410 carries.
    #[test]
    fn gone_exception_is_the_gone_outcome() {
        let bare = GoneException::builder().message("gone").build();
        let post = service(PostToConnectionError::GoneException(bare));
        assert!(matches!(outcome_of(post), Ok(PushOutcome::Gone)));

        let meta = ErrorMetadata::builder().code("GoneException").build();
        let as_received = GoneException::builder().meta(meta).build();
        let delete = service(DeleteConnectionError::GoneException(as_received));
        assert!(matches!(outcome_of(delete), Ok(PushOutcome::Gone)));
    }

    #[test]
    fn a_refused_frame_is_invalid() {
        let too_large = PayloadTooLargeException::builder().build();
        let err = service(PostToConnectionError::PayloadTooLargeException(too_large));
        assert!(matches!(outcome_of(err), Err(PushError::Invalid(_))));
    }

    #[test]
    fn other_failures_are_unavailable() {
        let err: SdkError<PostToConnectionError, ()> = SdkError::timeout_error("slow");
        assert!(matches!(outcome_of(err), Err(PushError::Unavailable(_))));
    }
}
