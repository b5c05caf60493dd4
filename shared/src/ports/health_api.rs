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

/// The Google Health API's REST host (`v4/users/me/…`).
pub const GOOGLE_HEALTH_API: &str = "https://health.googleapis.com";

/// The secret holding the OAuth client, `{"client_id": …, "client_secret": …}`.
pub fn oauth_client_secret_name(stage: &str) -> String {
    format!("docare/{stage}/google/oauth_client")
}

/// The secret Google sends in the `Authorization` header of every webhook delivery
/// (the subscriber's `endpointAuthorization.secret`), compared in constant time.
pub fn webhook_secret_name(stage: &str) -> String {
    format!("docare/{stage}/google/webhook_secret")
}

/// The Google Health API data types DoCare syncs: sample types (one value at one
/// instant, `<field>.sampleTime.physicalTime`), each mapped to one LOINC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    HeartRate,
    Weight,
    OxygenSaturation,
}

impl DataType {
    pub const ALL: [DataType; 3] = [Self::HeartRate, Self::Weight, Self::OxygenSaturation];

    /// The path segment and the notifications' `dataType` (kebab-case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeartRate => "heart-rate",
            Self::Weight => "weight",
            Self::OxygenSaturation => "oxygen-saturation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The data point's union field (camelCase).
    pub fn field(self) -> &'static str {
        match self {
            Self::HeartRate => "heartRate",
            Self::Weight => "weight",
            Self::OxygenSaturation => "oxygenSaturation",
        }
    }

    /// The name the list filter uses (snake_case).
    pub fn filter_name(self) -> &'static str {
        match self {
            Self::HeartRate => "heart_rate",
            Self::Weight => "weight",
            Self::OxygenSaturation => "oxygen_saturation",
        }
    }

    /// The value's field inside the union field, in Google's unit.
    pub fn value_field(self) -> &'static str {
        match self {
            Self::HeartRate => "beatsPerMinute",
            Self::Weight => "weightGrams",
            Self::OxygenSaturation => "percentage",
        }
    }

    /// The LOINC code of the observations it becomes.
    pub fn code(self) -> crate::domain::observation::Code {
        use crate::domain::observation::Code;
        match self {
            Self::HeartRate => Code::HeartRate,
            Self::Weight => Code::BodyWeight,
            Self::OxygenSaturation => Code::Spo2,
        }
    }

    /// A value in Google's unit in the code's UCUM unit (grams to kilograms).
    pub fn to_ucum(self, value: f64) -> f64 {
        match self {
            Self::Weight => value / 1000.0,
            Self::HeartRate | Self::OxygenSaturation => value,
        }
    }
}

/// One data point as listed (a sample type: one value at one instant).
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    pub data_type: DataType,
    /// When it was measured.
    pub at: crate::domain::Timestamp,
    /// In Google's unit (`DataType::value_field`).
    pub value: f64,
}

/// A page of data points, and the token of the next page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataPointPage {
    pub points: Vec<DataPoint>,
    pub next_page_token: Option<String>,
}

/// The list filter of a time range `[from, to)` of a sample type (AIP-160).
pub fn time_filter(
    data_type: DataType,
    from: crate::domain::Timestamp,
    to: crate::domain::Timestamp,
) -> String {
    let field = format!("{}.sample_time.physical_time", data_type.filter_name());
    format!("{field} >= \"{from}\" AND {field} < \"{to}\"")
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
    /// The provider's id of the user who granted `access_token` (the `healthUserId`
    /// webhook deliveries name).
    async fn user_id(&self, access_token: &str) -> Result<String, HealthApiError>;
    /// One page of the user's data points of a type measured in `[from, to)`.
    async fn list_data_points(
        &self,
        access_token: &str,
        data_type: DataType,
        from: crate::domain::Timestamp,
        to: crate::domain::Timestamp,
        page_token: Option<&str>,
    ) -> Result<DataPointPage, HealthApiError>;
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
