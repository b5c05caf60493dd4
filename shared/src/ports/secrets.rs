//! The secrets port: API keys and webhook secrets of outside services (Stripe, Twilio,
//! Google), kept out of the template, the repository and environment variables. On AWS
//! they live in Secrets Manager; locally in `secrets.json` (0600) in the data folder.
//! Callers go through [`crate::secrets::Secrets`], which fetches on first use and caches
//! with a bounded age so a rotation takes effect.

use async_trait::async_trait;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The store refuses the name (a programming error).
    #[error("invalid secret request: {0}")]
    Invalid(String),
    #[error("secret store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<SecretError> for crate::ApiError {
    fn from(err: SecretError) -> Self {
        match err {
            SecretError::Invalid(_) => crate::ApiError::internal(err),
            SecretError::Unavailable(_) => crate::ApiError::unavailable("secrets", err),
        }
    }
}

/// Names are paths such as `docare/dev/stripe/api_key`: letters, digits and `/_+=.@-`.
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(SecretError::Invalid(
            "a secret name has 1 to 512 of A-Za-z0-9/_+=.@-".into(),
        ))
    }
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The current value of a secret; `None` when there is no such secret.
    async fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, SecretError>;
}
