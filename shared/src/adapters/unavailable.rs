//! A port whose service does not answer: every call fails as that service being
//! unavailable (`Unavailable` inside the port's error: a 503 naming the service), and
//! nothing is sent anywhere. Two uses, one type: the ports a Lambda binary does not link
//! (`adapters::links`), and the outages the tests simulate (`testing::OUTAGE`).

use crate::domain::Timestamp;
use crate::ports::blobs::{BlobBody, BlobError, BlobMeta, BlobObject, BlobStore, PresignedRequest};
use crate::ports::db::{
    Condition, Database, DbError, Item, Key, Query, QueryPage, Update, WriteOp,
};
use crate::ports::health_api::{DataPointPage, DataType, HealthApi, HealthApiError, Tokens};
use crate::ports::keys::{DataKey, EncryptionContext, KeyError, KeyService, Rewrapped, Unwrapped};
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

/// A port that never answers, and the cause its errors carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The binary does not link the service it names (`adapters::links`): a wrong
    /// `LINKS`, which the IAM tour would have caught.
    #[error("{0} is not linked into this function (its LINKS)")]
    NotLinked(&'static str),
    /// A test's simulated outage.
    #[error("simulated outage")]
    Outage,
}

impl Unavailable {
    fn error(&self) -> Box<dyn std::error::Error + Send + Sync> {
        if let Self::NotLinked(port) = self {
            tracing::error!(port, "a port this function does not link was called");
        }
        Box::new(*self)
    }
}

#[async_trait]
impl Database for Unavailable {
    async fn get(&self, _: &str, _: &Key) -> Result<Option<Item>, DbError> {
        Err(DbError::Unavailable(self.error()))
    }
    async fn put(&self, _: &str, _: Item, _: Option<Condition>) -> Result<(), DbError> {
        Err(DbError::Unavailable(self.error()))
    }
    async fn update(
        &self,
        _: &str,
        _: &Key,
        _: Update,
        _: Option<Condition>,
    ) -> Result<Item, DbError> {
        Err(DbError::Unavailable(self.error()))
    }
    async fn delete(
        &self,
        _: &str,
        _: &Key,
        _: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        Err(DbError::Unavailable(self.error()))
    }
    async fn query(&self, _: &str, _: Query) -> Result<QueryPage, DbError> {
        Err(DbError::Unavailable(self.error()))
    }
    async fn transact_write(&self, _: Vec<WriteOp>) -> Result<(), DbError> {
        Err(DbError::Unavailable(self.error()))
    }
    async fn check(&self, _: &str) -> Result<(), DbError> {
        Err(DbError::Unavailable(self.error()))
    }
}

#[async_trait]
impl KeyService for Unavailable {
    async fn generate_data_key(&self, _: &str, _: &EncryptionContext) -> Result<DataKey, KeyError> {
        Err(KeyError::Unavailable(self.error()))
    }
    async fn decrypt(&self, _: &[u8], _: &EncryptionContext) -> Result<Unwrapped, KeyError> {
        Err(KeyError::Unavailable(self.error()))
    }
    async fn re_encrypt(
        &self,
        _: &[u8],
        _: &EncryptionContext,
        _: &str,
        _: &EncryptionContext,
    ) -> Result<Rewrapped, KeyError> {
        Err(KeyError::Unavailable(self.error()))
    }
    async fn sign(&self, _: &str, _: &[u8]) -> Result<[u8; 64], KeyError> {
        Err(KeyError::Unavailable(self.error()))
    }
    async fn public_key(&self, _: &str) -> Result<Vec<u8>, KeyError> {
        Err(KeyError::Unavailable(self.error()))
    }
    async fn resolve_key_id(&self, _: &str) -> Result<String, KeyError> {
        Err(KeyError::Unavailable(self.error()))
    }
    async fn check(&self, _: &str) -> Result<(), KeyError> {
        Err(KeyError::Unavailable(self.error()))
    }
}

#[async_trait]
impl BlobStore for Unavailable {
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
impl Queue for Unavailable {
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
impl Push for Unavailable {
    async fn post(&self, _: &str, _: &[u8]) -> Result<PushOutcome, PushError> {
        Err(PushError::Unavailable(self.error()))
    }
    async fn disconnect(&self, _: &str) -> Result<PushOutcome, PushError> {
        Err(PushError::Unavailable(self.error()))
    }
}

#[async_trait]
impl Messenger for Unavailable {
    async fn send(&self, _: &OutboundMessage) -> Result<String, MessengerError> {
        Err(MessengerError::Unavailable(self.error()))
    }
}

#[async_trait]
impl SecretStore for Unavailable {
    async fn get(&self, _: &str) -> Result<Option<Zeroizing<String>>, SecretError> {
        Err(SecretError::Unavailable(self.error()))
    }
}

#[async_trait]
impl Payments for Unavailable {
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
impl Video for Unavailable {
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
impl HealthApi for Unavailable {
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
        let err = BlobStore::check(&Unavailable::NotLinked("blobs"), "bucket")
            .await
            .unwrap_err();
        let BlobError::Unavailable(cause) = &err else {
            panic!("not Unavailable: {err:?}")
        };
        assert_eq!(
            cause.to_string(),
            "blobs is not linked into this function (its LINKS)"
        );
        let api: crate::ApiError = err.into();
        assert_eq!(api.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let err = Queue::send_batch(&Unavailable::NotLinked("queue"), "q", vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
        let err = Payments::retrieve_intent(&Unavailable::Outage, "pi_1")
            .await
            .unwrap_err();
        assert!(matches!(err, PaymentError::Unavailable(_)), "{err:?}");
        assert_eq!(err.to_string(), "payment provider unavailable");
        assert_eq!(crate::error::cause_chain(&err), "simulated outage");
    }
}
