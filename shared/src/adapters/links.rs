//! Which outside services a function's binary links, and the adapter that stands in for
//! one it does not.
//!
//! Why: every SDK client and HTTPS API a binary links costs at every cold start, used or
//! not. Each operation brings vtables and static tables that the loader relocates before
//! `main` (one write per pointer into pages it then owns), and megabytes of code. Most
//! functions use few of the services: S3 is used by 4 of the 23 functions, SES and SNS
//! by 2. A function names its services in a `LINKS` constant (its crate root), and
//! [`crate::lambda`] builds its app with [`aws::build_app_linking`], where every other
//! port is [`Unlinked`]: the compiler drops that adapter, its SDK crate and their
//! statics from the binary.
//!
//! What keeps the sets right: the IAM tour (`tests/e2e/iam.rs`) runs every function's
//! handlers with its own set on the recording ports and fails on any call to a port the
//! set leaves out, and on a set that names a service the function's role cannot call.
//! A call that slipped past both would answer 503 (`Unavailable`), never act.
//!
//! The database (DynamoDB) and the key service (KMS) are in every set: the audit trail
//! and the envelope encryption need them in every function. The clock and the malware
//! scanner link no outside client.
//!
//! [`aws::build_app_linking`]: crate::adapters::aws::build_app_linking

use crate::domain::Timestamp;
use crate::ports::blobs::{BlobBody, BlobError, BlobMeta, BlobObject, BlobStore, PresignedRequest};
use crate::ports::health_api::{DataPointPage, DataType, HealthApi, HealthApiError, Tokens};
use crate::ports::messenger::{Messenger, MessengerError, OutboundMessage};
use crate::ports::payments::{Intent, NewIntent, NewRefund, PaymentError, Payments, Refund};
use crate::ports::push::{Push, PushError, PushOutcome};
use crate::ports::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use crate::ports::secrets::{SecretError, SecretStore};
use crate::ports::video::{NewRoom, Room, Video, VideoError};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;
use zeroize::Zeroizing;

/// A set of linked services: the bits below, or-ed (`BLOBS | QUEUE`).
pub type Links = u16;

/// DynamoDB and KMS only, which every function links.
pub const NONE: Links = 0;
/// S3 (`ports::BlobStore`).
pub const BLOBS: Links = 1;
/// SQS (`ports::Queue`): sending to the queues; SQS itself delivers a worker's batches.
pub const QUEUE: Links = 1 << 1;
/// The API Gateway Management API (`ports::Push`): WebSocket frames.
pub const PUSH: Links = 1 << 2;
/// SES (e-mail) and SNS (SMS) (`ports::Messenger`).
pub const MESSENGER: Links = 1 << 3;
/// Secrets Manager (`ports::SecretStore`): webhook secrets, API keys.
pub const SECRETS: Links = 1 << 4;
/// Stripe's REST API (`ports::Payments`); its API key comes through [`SECRETS`].
pub const PAYMENTS: Links = 1 << 5;
/// Twilio Video's REST API (`ports::Video`); its credentials come through [`SECRETS`].
pub const VIDEO: Links = 1 << 6;
/// Google's OAuth and Health APIs (`ports::HealthApi`); the client secret comes through
/// [`SECRETS`].
pub const HEALTH_API: Links = 1 << 7;
/// Every service: the operations tools and the tests.
pub const ALL: Links = BLOBS | QUEUE | PUSH | MESSENGER | SECRETS | PAYMENTS | VIDEO | HEALTH_API;

/// The services `links` needs: the three HTTPS APIs read their keys through the secret
/// store, so any of them links Secrets Manager too.
pub const fn effective(links: Links) -> Links {
    if links & (PAYMENTS | VIDEO | HEALTH_API) != 0 {
        links | SECRETS
    } else {
        links
    }
}

/// Each service's bit and the name the tour's failures and `/health` use.
pub const NAMES: [(Links, &str); 8] = [
    (BLOBS, "blobs"),
    (QUEUE, "queue"),
    (PUSH, "push"),
    (MESSENGER, "messenger"),
    (SECRETS, "secrets"),
    (PAYMENTS, "payments"),
    (VIDEO, "video"),
    (HEALTH_API, "health_api"),
];

/// The names of the services in `links`, in [`NAMES`]' order.
pub fn names(links: Links) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(bit, _)| links & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// Stands in for the port of a service the binary does not link: every call fails as
/// that service being unavailable (a 503 naming it), and nothing is sent anywhere.
#[derive(Debug, Clone, Copy)]
pub struct Unlinked(pub &'static str);

/// The error every call of an [`Unlinked`] port returns, inside its port's
/// `Unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not linked into this function (its LINKS)")]
pub struct NotLinked(pub &'static str);

impl Unlinked {
    fn error(&self) -> Box<dyn std::error::Error + Send + Sync> {
        tracing::error!(
            port = self.0,
            "a port this function does not link was called"
        );
        Box::new(NotLinked(self.0))
    }
}

#[async_trait]
impl BlobStore for Unlinked {
    async fn put(
        &self,
        _: &str,
        _: &str,
        _: Bytes,
        _: &str,
        _: BTreeMap<String, String>,
    ) -> Result<(), BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn put_new(&self, _: &str, _: &str, _: Bytes, _: &str) -> Result<bool, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn put_stream(
        &self,
        _: &str,
        _: &str,
        _: BlobBody,
        _: &str,
        _: BTreeMap<String, String>,
    ) -> Result<u64, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<BlobObject>, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn get_version(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<Option<BlobObject>, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn get_range(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: u64,
    ) -> Result<Option<BlobObject>, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn head(&self, _: &str, _: &str) -> Result<Option<BlobMeta>, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn delete_version(&self, _: &str, _: &str, _: Option<&str>) -> Result<(), BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn presign_put(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<u64>,
        _: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn presign_get(
        &self,
        _: &str,
        _: &str,
        _: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
    async fn check(&self, _: &str) -> Result<(), BlobError> {
        Err(BlobError::Unavailable(self.error()))
    }
}

#[async_trait]
impl Queue for Unlinked {
    async fn send(&self, _: &str, _: OutgoingMessage) -> Result<String, QueueError> {
        Err(QueueError::Unavailable(self.error()))
    }
    async fn send_batch(&self, _: &str, _: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(self.error()))
    }
    async fn receive(
        &self,
        _: &str,
        _: u32,
        _: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        Err(QueueError::Unavailable(self.error()))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(self.error()))
    }
    async fn check(&self, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(self.error()))
    }
}

#[async_trait]
impl Push for Unlinked {
    async fn post(&self, _: &str, _: &[u8]) -> Result<PushOutcome, PushError> {
        Err(PushError::Unavailable(self.error()))
    }
    async fn disconnect(&self, _: &str) -> Result<PushOutcome, PushError> {
        Err(PushError::Unavailable(self.error()))
    }
}

#[async_trait]
impl Messenger for Unlinked {
    async fn send(&self, _: &OutboundMessage) -> Result<String, MessengerError> {
        Err(MessengerError::Unavailable(self.error()))
    }
}

#[async_trait]
impl SecretStore for Unlinked {
    async fn get(&self, _: &str) -> Result<Option<Zeroizing<String>>, SecretError> {
        Err(SecretError::Unavailable(self.error()))
    }
}

#[async_trait]
impl Payments for Unlinked {
    async fn create_intent(&self, _: &NewIntent) -> Result<Intent, PaymentError> {
        Err(PaymentError::Unavailable(self.error()))
    }
    async fn retrieve_intent(&self, _: &str) -> Result<Intent, PaymentError> {
        Err(PaymentError::Unavailable(self.error()))
    }
    async fn confirm_intent(&self, _: &str) -> Result<Intent, PaymentError> {
        Err(PaymentError::Unavailable(self.error()))
    }
    async fn refund(&self, _: &NewRefund) -> Result<Refund, PaymentError> {
        Err(PaymentError::Unavailable(self.error()))
    }
    async fn retrieve_refund(&self, _: &str) -> Result<Refund, PaymentError> {
        Err(PaymentError::Unavailable(self.error()))
    }
}

#[async_trait]
impl Video for Unlinked {
    async fn create_room(&self, _: &NewRoom) -> Result<Room, VideoError> {
        Err(VideoError::Unavailable(self.error()))
    }
    async fn fetch_room(&self, _: &str) -> Result<Room, VideoError> {
        Err(VideoError::Unavailable(self.error()))
    }
    async fn complete_room(&self, _: &str) -> Result<Room, VideoError> {
        Err(VideoError::Unavailable(self.error()))
    }
    async fn set_recording(&self, _: &str, _: bool) -> Result<(), VideoError> {
        Err(VideoError::Unavailable(self.error()))
    }
}

#[async_trait]
impl HealthApi for Unlinked {
    async fn authorization_url(&self, _: &str, _: &str, _: &str) -> Result<String, HealthApiError> {
        Err(HealthApiError::Unavailable(self.error()))
    }
    async fn exchange_code(&self, _: &str, _: &str, _: &str) -> Result<Tokens, HealthApiError> {
        Err(HealthApiError::Unavailable(self.error()))
    }
    async fn refresh(&self, _: &str) -> Result<Tokens, HealthApiError> {
        Err(HealthApiError::Unavailable(self.error()))
    }
    async fn revoke(&self, _: &str) -> Result<(), HealthApiError> {
        Err(HealthApiError::Unavailable(self.error()))
    }
    async fn user_id(&self, _: &str) -> Result<String, HealthApiError> {
        Err(HealthApiError::Unavailable(self.error()))
    }
    async fn list_data_points(
        &self,
        _: &str,
        _: DataType,
        _: Timestamp,
        _: Timestamp,
        _: Option<&str>,
    ) -> Result<DataPointPage, HealthApiError> {
        Err(HealthApiError::Unavailable(self.error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unlinked_port_fails_as_unavailable_naming_itself() {
        let blobs = Unlinked("blobs");
        let err = BlobStore::check(&blobs, "bucket").await.unwrap_err();
        assert!(matches!(err, BlobError::Unavailable(_)));
        let api: crate::ApiError = err.into();
        assert_eq!(api.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let err = Queue::send_batch(&Unlinked("queue"), "q", vec![])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("unavailable") || matches!(err, QueueError::Unavailable(_))
        );
    }

    #[test]
    fn every_bit_has_one_name() {
        assert_eq!(names(ALL).len(), NAMES.len());
        assert_eq!(names(BLOBS | SECRETS), ["blobs", "secrets"]);
        let bits: Links = NAMES.iter().map(|(bit, _)| bit).sum();
        assert_eq!(bits, ALL, "the bits are distinct and cover ALL");
        assert_eq!(effective(VIDEO), VIDEO | SECRETS);
        assert_eq!(effective(BLOBS), BLOBS);
    }
}
