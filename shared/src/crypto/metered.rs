//! Counts every KMS call and logs it as a metric line, so tests and benchmarks can
//! assert on KMS usage (a warm cache makes none) and operators can chart it.

use crate::ports::keys::{DataKey, EncryptionContext, KeyError, KeyService, Rewrapped, Unwrapped};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// KMS calls made so far by this process, by operation.
#[derive(Debug, Default)]
pub struct KmsCalls {
    pub generate_data_key: AtomicU64,
    pub decrypt: AtomicU64,
    pub re_encrypt: AtomicU64,
    /// Access tokens signed (one per login and refresh) and audit anchors.
    pub sign: AtomicU64,
    /// Public keys fetched (once per instance and key).
    pub get_public_key: AtomicU64,
}

impl KmsCalls {
    pub fn total(&self) -> u64 {
        self.generate_data_key.load(Ordering::Relaxed)
            + self.decrypt.load(Ordering::Relaxed)
            + self.re_encrypt.load(Ordering::Relaxed)
            + self.sign.load(Ordering::Relaxed)
            + self.get_public_key.load(Ordering::Relaxed)
    }
}

/// A [`KeyService`] that counts and logs the calls it forwards.
pub struct MeteredKeys {
    inner: Arc<dyn KeyService>,
    calls: Arc<KmsCalls>,
}

impl MeteredKeys {
    pub fn new(inner: Arc<dyn KeyService>) -> Self {
        Self {
            inner,
            calls: Arc::default(),
        }
    }

    pub fn calls(&self) -> Arc<KmsCalls> {
        self.calls.clone()
    }
}

fn record(counter: &AtomicU64, operation: &'static str) {
    let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(metric = "kms_calls", operation, total, "kms call");
}

#[async_trait]
impl KeyService for MeteredKeys {
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        record(&self.calls.generate_data_key, "GenerateDataKey");
        self.inner.generate_data_key(key_id, context).await
    }

    async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Unwrapped, KeyError> {
        record(&self.calls.decrypt, "Decrypt");
        self.inner.decrypt(ciphertext, context).await
    }

    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<Rewrapped, KeyError> {
        record(&self.calls.re_encrypt, "ReEncrypt");
        self.inner
            .re_encrypt(ciphertext, context, destination_key_id, destination_context)
            .await
    }

    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<[u8; 64], KeyError> {
        record(&self.calls.sign, "Sign");
        self.inner.sign(key_id, message).await
    }

    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>, KeyError> {
        record(&self.calls.get_public_key, "GetPublicKey");
        self.inner.public_key(key_id).await
    }

    // Like `check`, a DescribeKey: not a cryptographic operation, so not metered.
    async fn resolve_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        self.inner.resolve_key_id(key_id).await
    }

    async fn check(&self, key_id: &str) -> Result<(), KeyError> {
        self.inner.check(key_id).await
    }
}
