//! Secrets for outside services, fetched on first use (never at init: no network call
//! at cold start) and cached for at most [`MAX_AGE`], so a rotated secret takes effect
//! within that time without a redeploy. Values are zeroized when dropped and never
//! logged.

use crate::clock::Clock;
use crate::ports::secrets::SecretStore;
use crate::ApiError;
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// How long a fetched secret is used before it is fetched again.
pub const MAX_AGE: chrono::Duration = chrono::Duration::minutes(5);

/// A fetched value and when it was fetched.
type Cached = (chrono::DateTime<chrono::Utc>, Zeroizing<String>);

pub struct Secrets {
    store: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
}

impl Secrets {
    pub fn new(store: Arc<dyn SecretStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: tokio::sync::Mutex::default(),
        }
    }

    /// The secret's value; a missing secret is a misconfiguration, answered 503 (the
    /// request can succeed once an operator stores it) and logged by name only.
    pub async fn get(&self, name: &str) -> Result<Zeroizing<String>, ApiError> {
        let now = self.clock.now();
        // One fetch at a time: concurrent first uses make one call.
        let mut cache = self.cache.lock().await;
        if let Some((fetched, value)) = cache.get(name) {
            if now - *fetched < MAX_AGE {
                return Ok(value.clone());
            }
        }
        let Some(value) = self.store.get(name).await? else {
            tracing::error!(secret = name, "a required secret is not stored");
            return Err(ApiError::unavailable(
                "secrets",
                crate::ports::secrets::SecretError::Invalid(format!("{name} is not stored")),
            ));
        };
        cache.insert(name.to_string(), (now, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ports::secrets::SecretError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        value: std::sync::Mutex<String>,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SecretStore for Counting {
        async fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, SecretError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok((name == "docare/test/api_key")
                .then(|| Zeroizing::new(self.value.lock().unwrap().clone())))
        }
    }

    #[tokio::test]
    async fn fetched_on_first_use_cached_and_refreshed_after_max_age() {
        let store = Arc::new(Counting {
            value: std::sync::Mutex::new("one".into()),
            calls: AtomicUsize::new(0),
        });
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let secrets = Secrets::new(store.clone(), clock.clone());
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            0,
            "nothing at construction"
        );
        assert_eq!(
            secrets.get("docare/test/api_key").await.unwrap().as_str(),
            "one"
        );
        *store.value.lock().unwrap() = "two".into();
        assert_eq!(
            secrets.get("docare/test/api_key").await.unwrap().as_str(),
            "one"
        );
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        clock.advance(MAX_AGE);
        assert_eq!(
            secrets.get("docare/test/api_key").await.unwrap().as_str(),
            "two"
        );
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
        assert!(matches!(
            secrets.get("docare/test/missing").await,
            Err(ApiError::Unavailable { .. })
        ));
    }
}
