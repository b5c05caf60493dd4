//! The health API port on Google's OAuth 2.0 endpoints (the Google Health API's
//! authorization): the consent URL at [`GOOGLE_AUTHORIZE_URL`], code exchange and refresh
//! at the token endpoint, revocation at the revoke endpoint (form-encoded requests, JSON
//! answers). The OAuth client (`{"client_id", "client_secret"}`) comes from the secret
//! store (`docare/<stage>/google/oauth_client`, Secrets Manager on AWS), fetched on first
//! use and cached with a bounded age; never an environment variable. Every call has a
//! connect timeout and an overall timeout; `invalid_grant` is
//! [`HealthApiError::InvalidGrant`], anything else that fails is
//! [`HealthApiError::Unavailable`]. Only Google's error code is kept, never a token.

use crate::clock::Clock;
use crate::ports::health_api::{
    authorization_url, oauth_client_secret_name, HealthApi, HealthApiError, Tokens,
    GOOGLE_AUTHORIZE_URL,
};
use crate::ports::secrets::SecretStore;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Google's OAuth 2.0 token and revocation host.
pub const GOOGLE_OAUTH_API: &str = "https://oauth2.googleapis.com";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct GoogleHealthApi {
    http: reqwest::Client,
    base_url: String,
    secrets: crate::secrets::Secrets,
    client_name: String,
}

#[derive(serde::Deserialize)]
struct Client {
    client_id: String,
    client_secret: String,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> HealthApiError {
    HealthApiError::Unavailable(Box::new(e))
}

impl GoogleHealthApi {
    /// `base_url` is [`GOOGLE_OAUTH_API`] (a test points it at a fake server).
    pub fn new(
        base_url: &str,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
        stage: &str,
    ) -> Result<Self, HealthApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .build()
            .map_err(unavailable)?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            secrets: crate::secrets::Secrets::new(secrets, clock),
            client_name: oauth_client_secret_name(stage),
        })
    }

    async fn client(&self) -> Result<Client, HealthApiError> {
        let value = self
            .secrets
            .get(&self.client_name)
            .await
            .map_err(unavailable)?;
        serde_json::from_str(&value)
            .map_err(|_| HealthApiError::Unavailable("the OAuth client secret is malformed".into()))
    }

    /// POSTs a form: the answer's body, or Google's status and error code (transport
    /// failures are unavailable).
    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Result<Vec<u8>, (u16, String)>, HealthApiError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .form(form)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.without_url()))?;
        if status.is_success() {
            return Ok(Ok(bytes.to_vec()));
        }
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = error["error"].as_str().unwrap_or("").to_string();
        Ok(Err((status.as_u16(), code)))
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<Tokens, HealthApiError> {
        let bytes = match self.post("/token", form).await? {
            Ok(bytes) => bytes,
            Err((_, code)) if code == "invalid_grant" => return Err(HealthApiError::InvalidGrant),
            Err((status, code)) => {
                return Err(HealthApiError::Unavailable(
                    format!("Google answered {status} {code}").into(),
                ))
            }
        };
        let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(unavailable)?;
        Ok(Tokens {
            access_token: Zeroizing::new(answer.access_token),
            refresh_token: answer.refresh_token.map(Zeroizing::new),
            expires_in: answer.expires_in.unwrap_or(3600),
        })
    }
}

#[async_trait]
impl HealthApi for GoogleHealthApi {
    async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<String, HealthApiError> {
        let client = self.client().await?;
        Ok(authorization_url(
            GOOGLE_AUTHORIZE_URL,
            &client.client_id,
            redirect_uri,
            state,
            challenge,
        ))
    }

    async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, HealthApiError> {
        let client = self.client().await?;
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect_uri),
            ("client_id", &client.client_id),
            ("client_secret", &client.client_secret),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, HealthApiError> {
        let client = self.client().await?;
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &client.client_id),
            ("client_secret", &client.client_secret),
        ])
        .await
    }

    async fn revoke(&self, token: &str) -> Result<(), HealthApiError> {
        match self.post("/revoke", &[("token", token)]).await? {
            // Google answers 400 invalid_token for a token already revoked or expired.
            Ok(_) => Ok(()),
            Err((400, code)) if code == "invalid_token" => Ok(()),
            Err((status, code)) => Err(HealthApiError::Unavailable(
                format!("Google answered {status} {code}").into(),
            )),
        }
    }
}
