//! The secrets port on AWS Secrets Manager (`GetSecretValue` of the current version).

use crate::ports::secrets::{check_name, SecretError, SecretStore};
use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use zeroize::Zeroizing;

pub struct SecretsManager {
    client: super::LazyClient<aws_sdk_secretsmanager::Client>,
}

impl SecretsManager {
    pub fn new(client: impl Into<super::LazyClient<aws_sdk_secretsmanager::Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }
}

fn map_err<E, R>(err: SdkError<E, R>) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("InvalidParameterException" | "InvalidRequestException") => {
            SecretError::Invalid("Secrets Manager refused the request".into())
        }
        _ => SecretError::Unavailable(Box::new(err)),
    }
}

#[async_trait]
impl SecretStore for SecretsManager {
    async fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, SecretError> {
        check_name(name)?;
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(output) => Ok(output.secret_string.map(Zeroizing::new)),
            Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(err) => Err(map_err(err)),
        }
    }
}
