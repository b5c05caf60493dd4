//! The health API port: OAuth 2.0 (authorization code with PKCE S256) against a
//! wearable data provider, as the devices function uses it to connect a patient's
//! account. On AWS the Google Health API adapter (`adapters::aws::GoogleHealthApi`:
//! Google's OAuth endpoints, the client id and secret from the secret store); locally and
//! in tests an offline in-process fake (`adapters::local::FakeGoogleHealth`) that checks
//! the PKCE challenge as Google does.
//!
//! Tokens cross this port in [`Zeroizing`] strings and are never logged; the devices
//! store seals them before they are written.

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The one provider connected so far (the path segment of the devices routes).
pub const GOOGLE_HEALTH: &str = "google_health";

/// Google's authorization endpoint.
pub const GOOGLE_AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// The read-only scopes of the Google Health API DoCare asks for (restricted scopes:
/// Google's verification is needed before production use).
pub const GOOGLE_HEALTH_SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly",
    "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly",
    "https://www.googleapis.com/auth/googlehealth.sleep.readonly",
];

/// The secret holding the OAuth client, `{"client_id": …, "client_secret": …}`.
pub fn oauth_client_secret_name(stage: &str) -> String {
    format!("docare/{stage}/google/oauth_client")
}

/// The PKCE S256 challenge of a verifier: BASE64URL(SHA-256(verifier)), no padding
/// (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The authorization URL a browser is sent to: the client, the redirect URI, the
/// scopes, the opaque `state` and the S256 challenge (offline access, consent prompt so
/// a refresh token is issued).
pub fn authorization_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> String {
    let mut url = match url::Url::parse(endpoint) {
        Ok(url) => url,
        Err(_) => return endpoint.to_string(),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &GOOGLE_HEALTH_SCOPES.join(" "))
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent");
    url.to_string()
}

/// What a token endpoint answered.
pub struct Tokens {
    pub access_token: Zeroizing<String>,
    /// Issued with the first exchange (offline access); a refresh may leave it out.
    pub refresh_token: Option<Zeroizing<String>>,
    /// Seconds the access token lives.
    pub expires_in: i64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealthApiError {
    /// The code, verifier or refresh token was refused (`invalid_grant`): the user must
    /// connect again.
    #[error("the grant was refused")]
    InvalidGrant,
    /// The provider could not be reached, timed out, failed (5xx, 429) or refused our
    /// client: nothing was decided.
    #[error("health API unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<HealthApiError> for crate::ApiError {
    fn from(err: HealthApiError) -> Self {
        match err {
            HealthApiError::InvalidGrant => {
                crate::ApiError::validation("the authorization was refused by the provider")
            }
            HealthApiError::Unavailable(_) => crate::ApiError::unavailable("health_api", err),
        }
    }
}

#[async_trait]
pub trait HealthApi: Send + Sync {
    /// The URL the user's browser is sent to for consent.
    async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<String, HealthApiError>;
    /// Exchanges an authorization code and its PKCE verifier for tokens.
    async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, HealthApiError>;
    /// A new access token from a refresh token.
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, HealthApiError>;
    /// Revokes a token (and the grant behind it). An unknown token is not an error.
    async fn revoke(&self, token: &str) -> Result<(), HealthApiError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorization_url_carries_the_flow_and_the_scopes() {
        let url = authorization_url(
            GOOGLE_AUTHORIZE_URL,
            "client-1",
            "https://api.example.com/api/v1/devices/google_health/callback",
            "st",
            "ch",
        );
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(parsed.host_str(), Some("accounts.google.com"));
        assert_eq!(pairs["state"], "st");
        assert_eq!(pairs["code_challenge"], "ch");
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert_eq!(pairs["access_type"], "offline");
        assert_eq!(pairs["scope"], GOOGLE_HEALTH_SCOPES.join(" "));
    }
}
