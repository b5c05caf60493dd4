//! The push port on the API Gateway Management API. A 410 (GoneException) is the
//! `Gone` outcome, not an error: the caller forgets the connection.

use crate::ports::push::{Push, PushError, PushOutcome, MAX_FRAME_BYTES};
use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;

pub struct ManagementApi {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ManagementApi {
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        Self { client }
    }
}

/// Gone, or a failure worth retrying.
fn outcome_of<E, R>(err: SdkError<E, R>) -> Result<PushOutcome, PushError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("GoneException") => Ok(PushOutcome::Gone),
        _ => Err(PushError::Unavailable(Box::new(err))),
    }
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
    use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
    use aws_sdk_apigatewaymanagement::types::error::GoneException;

    // The emulator never answers 410, so the mapping is proven on a hand-built error.
    #[test]
    fn gone_exception_is_the_gone_outcome() {
        let gone =
            PostToConnectionError::GoneException(GoneException::builder().message("gone").build());
        let err: SdkError<PostToConnectionError, ()> = SdkError::service_error(gone, ());
        assert!(matches!(outcome_of(err), Ok(PushOutcome::Gone)));
    }

    #[test]
    fn other_failures_are_unavailable() {
        let err: SdkError<PostToConnectionError, ()> = SdkError::timeout_error("slow");
        assert!(matches!(outcome_of(err), Err(PushError::Unavailable(_))));
    }
}
