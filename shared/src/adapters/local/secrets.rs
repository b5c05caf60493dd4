//! The secrets port locally: `secrets.json` in the data folder, mode 0600, a JSON object
//! of name → value (`{"docare/local/stripe/webhook_secret": "whsec_…"}`). Read on every
//! call (the cache is the caller's), so editing the file is a rotation.

use crate::ports::secrets::{check_name, SecretError, SecretStore};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// The file's name in the data folder.
pub const SECRETS_FILE: &str = "secrets.json";

pub struct SecretsFile {
    path: PathBuf,
}

impl SecretsFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Sets one secret (local tools and fakes: e.g. the fake Stripe's webhook secret).
    pub fn set(&self, name: &str, value: &str) -> Result<(), SecretError> {
        check_name(name)?;
        let mut all = self.read()?;
        all.insert(name.to_string(), value.to_string());
        let bytes =
            serde_json::to_vec_pretty(&all).map_err(|e| SecretError::Unavailable(Box::new(e)))?;
        super::files::write_private(&self.path, &bytes)
            .map_err(|e| SecretError::Unavailable(Box::new(e)))
    }

    /// One secret's value, read synchronously (the local stack's start).
    pub fn value(&self, name: &str) -> Result<Option<String>, SecretError> {
        check_name(name)?;
        Ok(self.read()?.remove(name))
    }

    fn read(&self) -> Result<BTreeMap<String, String>, SecretError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| {
                SecretError::Unavailable(
                    format!("{} is not a JSON object of strings", SECRETS_FILE).into(),
                )
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(err) => Err(SecretError::Unavailable(Box::new(err))),
        }
    }
}

#[async_trait]
impl SecretStore for SecretsFile {
    async fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, SecretError> {
        check_name(name)?;
        Ok(self.read()?.remove(name).map(Zeroizing::new))
    }
}
