//! The payments port on Stripe's REST API (form-encoded requests, JSON answers). The
//! secret API key comes from the secret store (`docare/<stage>/stripe/api_key`, Secrets
//! Manager on AWS), fetched on first use and cached with a bounded age. Every call has a
//! connect timeout and an overall timeout; a transport failure, a timeout, a 429 or a
//! 5xx is [`PaymentError::Unavailable`] (503 to the client, nothing recorded as done).

use crate::clock::Clock;
use crate::ports::payments::{
    check_metadata, Intent, Metadata, NewIntent, NewRefund, PaymentError, Payments, Refund,
};
use crate::ports::secrets::SecretStore;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Stripe's API.
pub const STRIPE_API: &str = "https://api.stripe.com";
/// The API version every request pins (objects' shapes follow it).
pub const STRIPE_VERSION: &str = "2024-06-20";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(10);

/// The form fields of an intent: amount, currency, opaque metadata. Nothing else (no
/// description, customer or receipt e-mail; the statement descriptor is the account's
/// generic default).
pub fn intent_form(new: &NewIntent) -> Vec<(String, String)> {
    let mut form = vec![
        ("amount".to_string(), new.amount.to_string()),
        ("currency".to_string(), new.currency.clone()),
    ];
    push_metadata(&mut form, &new.metadata);
    form
}

/// The form fields of a refund: the intent, the amount, opaque metadata.
pub fn refund_form(new: &NewRefund) -> Vec<(String, String)> {
    let mut form = vec![
        ("payment_intent".to_string(), new.payment_intent.clone()),
        ("amount".to_string(), new.amount.to_string()),
    ];
    push_metadata(&mut form, &new.metadata);
    form
}

fn push_metadata(form: &mut Vec<(String, String)>, metadata: &Metadata) {
    for (key, value) in metadata {
        form.push((format!("metadata[{key}]"), value.clone()));
    }
}

pub struct StripeApi {
    http: super::LazyHttp,
    base_url: String,
    secrets: crate::secrets::Secrets,
    key_name: String,
}

impl StripeApi {
    /// `base_url` is [`STRIPE_API`] (a test points it at a fake Stripe server).
    pub fn new(
        base_url: &str,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
        stage: &str,
    ) -> Self {
        Self {
            http: super::LazyHttp::new(CONNECT_TIMEOUT, TIMEOUT),
            base_url: base_url.trim_end_matches('/').to_string(),
            secrets: crate::secrets::Secrets::new(secrets, clock),
            key_name: crate::payments::api_key_secret(stage),
        }
    }

    async fn api_key(&self) -> Result<zeroize::Zeroizing<String>, PaymentError> {
        self.secrets
            .get(&self.key_name)
            .await
            .map_err(|e| PaymentError::Unavailable(Box::new(e)))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(String, String)]>,
        idempotency_key: Option<&str>,
    ) -> Result<T, PaymentError> {
        let key = self.api_key().await?;
        let http = self
            .http
            .get()
            .map_err(|e| PaymentError::Unavailable(Box::new(e)))?;
        let mut request = http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(key.as_str())
            .header("Stripe-Version", STRIPE_VERSION);
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request
            .send()
            .await
            .map_err(|e| PaymentError::Unavailable(Box::new(e.without_url())))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| PaymentError::Unavailable(Box::new(e.without_url())))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| PaymentError::Unavailable(Box::new(e)));
        }
        Err(classify(status.as_u16(), &bytes))
    }
}

/// Stripe's error answer as a [`PaymentError`]: only the error's type and code are kept
/// (never its message, which may quote parameters).
fn classify(status: u16, body: &[u8]) -> PaymentError {
    let error: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let kind = error["error"]["type"].as_str().unwrap_or("").to_string();
    let code = error["error"]["code"].as_str().unwrap_or("").to_string();
    match status {
        404 => PaymentError::NotFound,
        400 if kind == "idempotency_error" => PaymentError::KeyReused,
        400 | 402 | 403 => PaymentError::Invalid(format!("{status} {kind} {code}").trim().into()),
        // 401 (a wrong key), 409 (a concurrent request with the same key), 429, 5xx:
        // nothing was decided; the request may be retried.
        _ => PaymentError::Unavailable(format!("Stripe answered {status} {kind}").into()),
    }
}

#[async_trait]
impl Payments for StripeApi {
    async fn create_intent(&self, new: &NewIntent) -> Result<Intent, PaymentError> {
        check_metadata(&new.metadata)?;
        let form = intent_form(new);
        self.call(
            reqwest::Method::POST,
            "/v1/payment_intents",
            Some(&form),
            Some(&new.idempotency_key),
        )
        .await
    }

    async fn retrieve_intent(&self, id: &str) -> Result<Intent, PaymentError> {
        check_id(id, "pi_")?;
        self.call(
            reqwest::Method::GET,
            &format!("/v1/payment_intents/{id}"),
            None,
            None,
        )
        .await
    }

    async fn confirm_intent(&self, id: &str) -> Result<Intent, PaymentError> {
        check_id(id, "pi_")?;
        if self.api_key().await?.starts_with("sk_live_") {
            return Err(PaymentError::Invalid(
                "intents are confirmed by the client with a live key".into(),
            ));
        }
        let form = [("payment_method".to_string(), "pm_card_visa".to_string())];
        let _: Intent = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/payment_intents/{id}"),
                Some(&form),
                None,
            )
            .await?;
        self.call(
            reqwest::Method::POST,
            &format!("/v1/payment_intents/{id}/confirm"),
            Some(&[]),
            None,
        )
        .await
    }

    async fn refund(&self, new: &NewRefund) -> Result<Refund, PaymentError> {
        check_metadata(&new.metadata)?;
        check_id(&new.payment_intent, "pi_")?;
        let form = refund_form(new);
        self.call(
            reqwest::Method::POST,
            "/v1/refunds",
            Some(&form),
            Some(&new.idempotency_key),
        )
        .await
    }

    async fn retrieve_refund(&self, id: &str) -> Result<Refund, PaymentError> {
        check_id(id, "re_")?;
        self.call(
            reqwest::Method::GET,
            &format!("/v1/refunds/{id}"),
            None,
            None,
        )
        .await
    }
}

/// Stripe ids are a prefix and letters and digits: nothing else is put in a URL.
fn check_id(id: &str, prefix: &str) -> Result<(), PaymentError> {
    let ok = id.starts_with(prefix)
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PaymentError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_without_their_messages() {
        let body = br#"{"error":{"type":"card_error","code":"card_declined","message":"Jane Doe's card"}}"#;
        let err = classify(402, body);
        assert!(
            matches!(&err, PaymentError::Invalid(m) if !m.contains("Jane")),
            "{err:?}"
        );
        let idem = br#"{"error":{"type":"idempotency_error"}}"#;
        assert!(matches!(classify(400, idem), PaymentError::KeyReused));
        assert!(matches!(classify(404, b"{}"), PaymentError::NotFound));
        for status in [401, 409, 429, 500, 502, 503] {
            assert!(matches!(
                classify(status, b""),
                PaymentError::Unavailable(_)
            ));
        }
    }
}
