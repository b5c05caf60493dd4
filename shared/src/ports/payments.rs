//! The payments port: Stripe's payment intents and refunds, as the billing function uses
//! them. On AWS the Stripe REST adapter (`adapters::aws::StripeApi`); locally and in
//! tests an offline in-process fake (`adapters::local::FakeStripe`) that also signs and
//! delivers webhooks. Both pass the contract suite in `shared/tests/contract/payments.rs`.
//!
//! What reaches Stripe is only an amount, a currency and opaque ids in `metadata` (Stripe
//! signs no BAA): no description, customer or statement descriptor is sent, so the
//! account's own generic default descriptor applies. [`Metadata`] holds ids only, checked
//! by [`check_metadata`] before any call. No card data passes through this port.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Opaque ids only (`docare_payment_id`, `docare_refund_id`, …).
pub type Metadata = BTreeMap<String, String>;

/// The only metadata keys sent to Stripe.
pub const METADATA_KEYS: [&str; 3] = ["docare_payment_id", "docare_refund_id", "docare_ref"];

/// Metadata keys are one of [`METADATA_KEYS`] and values opaque ids (ULIDs or Stripe
/// ids): no free text can ride along to Stripe.
pub fn check_metadata(metadata: &Metadata) -> Result<(), PaymentError> {
    for (key, value) in metadata {
        let key_ok = METADATA_KEYS.contains(&key.as_str());
        let value_ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok || !value_ok {
            return Err(PaymentError::Invalid(format!(
                "metadata {key}: opaque ids only"
            )));
        }
    }
    Ok(())
}

/// A payment intent to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent {
    /// In the currency's smallest unit (cents).
    pub amount: i64,
    /// ISO 4217, lowercase (`usd`).
    pub currency: String,
    /// Stripe's `Idempotency-Key`: a retry with the same key returns the same intent.
    pub idempotency_key: String,
    pub metadata: Metadata,
}

/// A payment intent as Stripe reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// Stripe's status: `requires_payment_method`, `requires_confirmation`,
    /// `requires_action`, `processing`, `requires_capture`, `canceled`, `succeeded`.
    pub status: String,
    /// For the client's Stripe.js only; never stored.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// A refund to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    pub payment_intent: String,
    pub amount: i64,
    pub idempotency_key: String,
    pub metadata: Metadata,
}

/// A refund as Stripe reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    /// `pending`, `requires_action`, `succeeded`, `failed`, `canceled`.
    pub status: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// Stripe refused the request as malformed or not allowed (4xx other than 404).
    #[error("the payment provider refused the request: {0}")]
    Invalid(String),
    /// No such object.
    #[error("no such payment object")]
    NotFound,
    /// The same idempotency key was used with other parameters.
    #[error("the idempotency key was used with other parameters")]
    KeyReused,
    /// Stripe could not be reached, timed out or failed (5xx, 429): nothing was decided.
    #[error("payment provider unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<PaymentError> for crate::ApiError {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::Invalid(_) | PaymentError::KeyReused => {
                crate::ApiError::unprocessable(err.to_string())
            }
            PaymentError::NotFound => crate::ApiError::NotFound,
            PaymentError::Unavailable(_) => crate::ApiError::unavailable("payments", err),
        }
    }
}

#[async_trait]
pub trait Payments: Send + Sync {
    async fn create_intent(&self, new: &NewIntent) -> Result<Intent, PaymentError>;
    async fn retrieve_intent(&self, id: &str) -> Result<Intent, PaymentError>;
    /// Confirms with a test card (test mode and the fake only: the client confirms with
    /// Stripe.js in production; the Stripe adapter refuses with a live key).
    async fn confirm_intent(&self, id: &str) -> Result<Intent, PaymentError>;
    async fn refund(&self, new: &NewRefund) -> Result<Refund, PaymentError>;
    async fn retrieve_refund(&self, id: &str) -> Result<Refund, PaymentError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_holds_opaque_ids_only() {
        let ok: Metadata = [("docare_payment_id".to_string(), "01JABC".to_string())].into();
        assert!(check_metadata(&ok).is_ok());
        for (key, value) in [
            ("description", "01JABC"),
            ("docare_payment_id", "Mental health consultation"),
            ("docare_reason", "anxiety"),
            ("docare_payment_id", ""),
        ] {
            let bad: Metadata = [(key.to_string(), value.to_string())].into();
            assert!(check_metadata(&bad).is_err(), "{key}={value}");
        }
    }
}
