//! The health API port offline, in process: a fake of Google's OAuth 2.0 endpoints for
//! the local stack (its default) and tests. It reads the OAuth client from the secret
//! store as the Google adapter does (`docare/<stage>/google/oauth_client`), gives out an
//! authorization code when the user consents ([`FakeGoogleHealth::consent`], and the
//! local stack's `GET /_fake/google-health/authorize`), and at the token endpoint
//! checks what Google checks: the code is single-use, the redirect URI is the one
//! consented to, and the verifier's S256 hash is the challenge. Refresh and revocation
//! are counted so tests can assert what reached the provider.
//!
//! It also holds data points for its users ([`FakeGoogleHealth::add_points`]), lists
//! them to the holder of a live access token as the Google Health API does (paged, a
//! time range), and makes webhook deliveries as Google sends them: a JSON array of
//! notifications (`healthUserId`, `dataType`, `intervals`) with the subscriber's secret
//! (the secret store's `docare/<stage>/google/webhook_secret`) as the `Authorization`
//! header ([`FakeGoogleHealth::delivery`]), or a forged one with another secret; once
//! the local stack has said where ([`FakeGoogleHealth::deliver_to`]) it POSTs them.

use crate::domain::Timestamp;
use crate::ports::health_api::{
    authorization_url, s256_challenge, DataPoint, DataPointPage, DataType, HealthApi,
    HealthApiError, Tokens,
};
use crate::ports::SecretStore;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// The fake's authorization path on the local stack.
pub const FAKE_GOOGLE_AUTHORIZE_PATH: &str = "/_fake/google-health/authorize";

/// Access tokens the fake issues live this long (seconds).
pub const FAKE_TOKEN_SECS: i64 = 3600;

/// The Google user who consents on the local stack's consent page.
pub const FAKE_HEALTH_USER: &str = "fake-health-user-1";

/// The fake lists this many data points a page (Google: up to 10,000), so syncs page.
pub const FAKE_PAGE_SIZE: usize = 250;

/// A webhook delivery: the `Authorization` header and the JSON body.
#[derive(Clone)]
pub struct GoogleDelivery {
    pub authorization: String,
    pub body: String,
}

impl std::fmt::Debug for GoogleDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleDelivery")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Code → (challenge, redirect URI, the consenting user).
    codes: HashMap<String, (String, String, String)>,
    /// Live refresh tokens → their user.
    refresh_tokens: HashMap<String, String>,
    /// Each user's data points.
    points: HashMap<String, Vec<DataPoint>>,
    lists: usize,
    /// Access token → the refresh token of its grant.
    access_tokens: HashMap<String, String>,
    exchanges: usize,
    refreshes: usize,
    revocations: usize,
    down: bool,
}

pub struct FakeGoogleHealth {
    /// Where the client is read on every call, as Google requires a registered client.
    client: Option<(Arc<dyn SecretStore>, String)>,
    /// Where the subscriber's webhook secret is read.
    webhook_secret: Option<(Arc<dyn SecretStore>, String)>,
    deliver_to: Mutex<Option<String>>,
    authorize_endpoint: String,
    state: Mutex<State>,
}

fn random(prefix: &str) -> String {
    format!("{prefix}{}", crate::auth::secrets::token())
}

impl FakeGoogleHealth {
    /// `base_url` is where the fake's authorization route is served (the local API).
    pub fn new(base_url: &str) -> Self {
        Self {
            client: None,
            webhook_secret: None,
            deliver_to: Mutex::new(None),
            authorize_endpoint: format!(
                "{}{FAKE_GOOGLE_AUTHORIZE_PATH}",
                base_url.trim_end_matches('/')
            ),
            state: Mutex::default(),
        }
    }

    /// Requires the OAuth client from `store` under `name` on every call (missing: the
    /// call fails as Google's `invalid_client` does, unavailable).
    pub fn with_client_from(mut self, store: Arc<dyn SecretStore>, name: String) -> Self {
        self.client = Some((store, name));
        self
    }

    /// Signs deliveries with the webhook secret from `store` under `name`.
    pub fn with_webhook_secret_from(mut self, store: Arc<dyn SecretStore>, name: String) -> Self {
        self.webhook_secret = Some((store, name));
        self
    }

    /// Where [`Self::deliver`] POSTs deliveries (the local webhook route).
    pub fn deliver_to(&self, url: &str) {
        *self.deliver_to.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.to_string());
    }

    /// Stores data points of a user (as their devices would upload them).
    pub fn add_points(&self, user: &str, points: impl IntoIterator<Item = DataPoint>) {
        self.lock()
            .points
            .entry(user.to_string())
            .or_default()
            .extend(points);
    }

    /// List calls that succeeded.
    pub fn lists(&self) -> usize {
        self.lock().lists
    }

    /// A delivery notifying that `user`'s `data_type` changed in `[from, to)`: signed
    /// with the subscriber's secret, or `forged` with another one.
    pub async fn delivery(
        &self,
        user: &str,
        data_type: DataType,
        from: Timestamp,
        to: Timestamp,
        forged: bool,
    ) -> Result<GoogleDelivery, HealthApiError> {
        let secret = match (&self.webhook_secret, forged) {
            (_, true) => random("forged-"),
            (None, false) => "docare-local-webhook-secret".to_string(),
            (Some((store, name)), false) => store
                .get(name)
                .await
                .map_err(|e| HealthApiError::Unavailable(Box::new(e)))?
                .ok_or_else(|| HealthApiError::Unavailable("no webhook secret".into()))?
                .to_string(),
        };
        let body = serde_json::json!([{
            "data": {
                "version": "1",
                "clientProvidedSubscriptionName": "docare",
                "healthUserId": user,
                "operation": "UPSERT",
                "dataType": data_type.as_str(),
                "intervals": [{
                    "physicalTimeInterval": {
                        "startTime": from.to_string(),
                        "endTime": to.to_string(),
                    }
                }]
            }
        }]);
        Ok(GoogleDelivery {
            authorization: secret,
            body: body.to_string(),
        })
    }

    /// POSTs a delivery to the configured webhook URL: the status it was answered.
    pub async fn deliver(&self, delivery: &GoogleDelivery) -> Result<u16, HealthApiError> {
        let target = self
            .deliver_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| HealthApiError::Unavailable("no webhook URL".into()))?;
        let response = reqwest::Client::new()
            .post(&target)
            .header("content-type", "application/json")
            .header("authorization", &delivery.authorization)
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| HealthApiError::Unavailable(Box::new(e.without_url())))?;
        Ok(response.status().as_u16())
    }

    /// The user whose grant an access token belongs to.
    fn user_of(state: &State, access_token: &str) -> Option<String> {
        let refresh = state.access_tokens.get(access_token)?;
        state.refresh_tokens.get(refresh).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every call fail as unavailable (or recover).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    async fn client_id(&self) -> Result<String, HealthApiError> {
        let down = self.lock().down;
        if down {
            return Err(HealthApiError::Unavailable("the fake is down".into()));
        }
        let Some((store, name)) = &self.client else {
            return Ok("docare-local-client".into());
        };
        let value = store
            .get(name)
            .await
            .map_err(|e| HealthApiError::Unavailable(Box::new(e)))?
            .ok_or_else(|| HealthApiError::Unavailable("invalid_client".into()))?;
        let client: serde_json::Value = serde_json::from_str(&value)
            .map_err(|_| HealthApiError::Unavailable("invalid_client".into()))?;
        client["client_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| HealthApiError::Unavailable("invalid_client".into()))
    }

    /// The user consents on the authorization URL: the callback URL the browser is
    /// redirected to (`<redirect_uri>?state=…&code=…`). `None` for a URL that is not a
    /// PKCE S256 request of our client.
    pub async fn consent(&self, authorization_url: &str) -> Option<String> {
        self.consent_as(authorization_url, FAKE_HEALTH_USER).await
    }

    /// [`Self::consent`] by the Google user `user`.
    pub async fn consent_as(&self, authorization_url: &str, user: &str) -> Option<String> {
        let url = url::Url::parse(authorization_url).ok()?;
        let pairs: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let client_id = self.client_id().await.ok()?;
        if pairs.get("client_id") != Some(&client_id)
            || pairs.get("code_challenge_method").map(String::as_str) != Some("S256")
            || pairs.get("response_type").map(String::as_str) != Some("code")
        {
            return None;
        }
        let (redirect, state, challenge) = (
            pairs.get("redirect_uri")?,
            pairs.get("state")?,
            pairs.get("code_challenge")?,
        );
        let code = random("4/fake-");
        self.lock().codes.insert(
            code.clone(),
            (challenge.clone(), redirect.clone(), user.to_string()),
        );
        let mut callback = url::Url::parse(redirect).ok()?;
        callback
            .query_pairs_mut()
            .append_pair("state", state)
            .append_pair("code", &code);
        Some(callback.to_string())
    }

    /// Code exchanges that succeeded.
    pub fn exchanges(&self) -> usize {
        self.lock().exchanges
    }

    /// Refreshes that succeeded.
    pub fn refreshes(&self) -> usize {
        self.lock().refreshes
    }

    /// Revocations received.
    pub fn revocations(&self) -> usize {
        self.lock().revocations
    }

    /// Whether a refresh token is still live (not revoked).
    pub fn is_live(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.contains_key(refresh_token)
    }

    fn issue(state: &mut State, refresh_token: &str) -> Zeroizing<String> {
        let access = random("ya29.fake-");
        state
            .access_tokens
            .insert(access.clone(), refresh_token.to_string());
        Zeroizing::new(access)
    }
}

#[async_trait]
impl HealthApi for FakeGoogleHealth {
    async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<String, HealthApiError> {
        let client_id = self.client_id().await?;
        Ok(authorization_url(
            &self.authorize_endpoint,
            &client_id,
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
        self.client_id().await?;
        let mut state = self.lock();
        // Single use: removed whether or not the rest holds, as Google does.
        let Some((challenge, redirect, user)) = state.codes.remove(code) else {
            return Err(HealthApiError::InvalidGrant);
        };
        if redirect != redirect_uri || s256_challenge(verifier) != challenge {
            return Err(HealthApiError::InvalidGrant);
        }
        let refresh = random("1//fake-");
        state.refresh_tokens.insert(refresh.clone(), user);
        state.exchanges += 1;
        let access_token = Self::issue(&mut state, &refresh);
        Ok(Tokens {
            access_token,
            refresh_token: Some(Zeroizing::new(refresh)),
            expires_in: FAKE_TOKEN_SECS,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, HealthApiError> {
        self.client_id().await?;
        let mut state = self.lock();
        if !state.refresh_tokens.contains_key(refresh_token) {
            return Err(HealthApiError::InvalidGrant);
        }
        state.refreshes += 1;
        let access_token = Self::issue(&mut state, refresh_token);
        Ok(Tokens {
            access_token,
            refresh_token: None,
            expires_in: FAKE_TOKEN_SECS,
        })
    }

    async fn revoke(&self, token: &str) -> Result<(), HealthApiError> {
        self.client_id().await?;
        let mut state = self.lock();
        state.revocations += 1;
        // Revoking either token ends the grant.
        let grant = state
            .access_tokens
            .get(token)
            .cloned()
            .unwrap_or_else(|| token.to_string());
        state.refresh_tokens.remove(&grant);
        state.access_tokens.retain(|_, r| *r != grant);
        Ok(())
    }

    async fn user_id(&self, access_token: &str) -> Result<String, HealthApiError> {
        self.client_id().await?;
        Self::user_of(&self.lock(), access_token)
            .ok_or_else(|| HealthApiError::Unavailable("401: unknown access token".into()))
    }

    async fn list_data_points(
        &self,
        access_token: &str,
        data_type: DataType,
        from: Timestamp,
        to: Timestamp,
        page_token: Option<&str>,
    ) -> Result<DataPointPage, HealthApiError> {
        self.client_id().await?;
        let mut state = self.lock();
        let user = Self::user_of(&state, access_token)
            .ok_or_else(|| HealthApiError::Unavailable("401: unknown access token".into()))?;
        let skip = match page_token {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .map_err(|_| HealthApiError::Unavailable("400: bad page token".into()))?,
        };
        let mut matching: Vec<DataPoint> = state
            .points
            .get(&user)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| p.data_type == data_type && p.at >= from && p.at < to)
            .cloned()
            .collect();
        matching.sort_by_key(|p| p.at);
        state.lists += 1;
        let next = skip + FAKE_PAGE_SIZE;
        Ok(DataPointPage {
            next_page_token: (next < matching.len()).then(|| next.to_string()),
            points: matching
                .into_iter()
                .skip(skip)
                .take(FAKE_PAGE_SIZE)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_code_is_single_use_and_bound_to_the_verifier() {
        let fake = FakeGoogleHealth::new("http://127.0.0.1:1");
        let redirect = "http://127.0.0.1:1/api/v1/devices/google_health/callback";
        let verifier = crate::auth::secrets::token();
        let url = fake
            .authorization_url(redirect, "st", &s256_challenge(&verifier))
            .await
            .unwrap();
        let code_of = |callback: String| {
            url::Url::parse(&callback)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "code")
                .unwrap()
                .1
                .into_owned()
        };
        let code = code_of(fake.consent(&url).await.unwrap());
        assert!(matches!(
            fake.exchange_code(&code, "another-verifier", redirect)
                .await,
            Err(HealthApiError::InvalidGrant)
        ));
        // The failed attempt used the code up.
        assert!(fake
            .exchange_code(&code, &verifier, redirect)
            .await
            .is_err());
        let code = code_of(fake.consent(&url).await.unwrap());
        let tokens = fake
            .exchange_code(&code, &verifier, redirect)
            .await
            .unwrap();
        let refresh = tokens.refresh_token.unwrap();
        assert!(fake.refresh(&refresh).await.is_ok());
        fake.revoke(&tokens.access_token).await.unwrap();
        assert!(!fake.is_live(&refresh));
        assert!(matches!(
            fake.refresh(&refresh).await,
            Err(HealthApiError::InvalidGrant)
        ));
    }
}
