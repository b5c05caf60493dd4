//! The health API port on Google's OAuth 2.0 endpoints (the Google Health API's
//! authorization): the consent URL at [`GOOGLE_AUTHORIZE_URL`], code exchange and refresh
//! at the token endpoint, revocation at the revoke endpoint (form-encoded requests, JSON
//! answers). The OAuth client (`{"client_id", "client_secret"}`) comes from the secret
//! store (`docare/<stage>/google/oauth_client`, Secrets Manager on AWS), fetched on first
//! use and cached with a bounded age; never an environment variable. Every call has a
//! connect timeout and an overall timeout; `invalid_grant` is
//! [`HealthApiError::InvalidGrant`], anything else that fails is
//! [`HealthApiError::Unavailable`]. Only Google's error code is kept, never a token.
//!
//! Data comes from the Google Health API (`GET /v4/users/me/dataTypes/{type}/dataPoints`
//! with an AIP-160 time filter, paged by `pageToken`; `GET /v4/users/me/identity` for the
//! `healthUserId` webhook deliveries name), the patient's access token as the bearer.

use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::ports::health_api::{
    authorization_url, oauth_client_secret_name, time_filter, DataPoint, DataPointPage, DataType,
    HealthApi, HealthApiError, Tokens, GOOGLE_AUTHORIZE_URL, GOOGLE_HEALTH_API,
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

/// The largest page asked for (Google's maximum is 10,000).
pub const PAGE_SIZE: u32 = 1000;

pub struct GoogleHealthApi {
    http: super::LazyHttp,
    base_url: String,
    api_url: String,
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
    ) -> Self {
        Self {
            http: super::LazyHttp::new(CONNECT_TIMEOUT, TIMEOUT),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_url: GOOGLE_HEALTH_API.into(),
            secrets: crate::secrets::Secrets::new(secrets, clock),
            client_name: oauth_client_secret_name(stage),
        }
    }

    /// Points the data calls at another host (a test's fake server).
    pub fn with_api_url(mut self, api_url: &str) -> Self {
        self.api_url = api_url.trim_end_matches('/').to_string();
        self
    }

    /// GETs a Google Health API path with the user's access token: the JSON answer.
    /// Any failure is unavailable (an expired token included: the worker retries and
    /// refreshes); only the status is kept.
    async fn get_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        access_token: &str,
    ) -> Result<serde_json::Value, HealthApiError> {
        let mut url = url::Url::parse(&format!("{}{path}", self.api_url)).map_err(unavailable)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let http = self.http.get().map_err(unavailable)?;
        let response = http
            .get(url)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(HealthApiError::Unavailable(
                format!("Google Health answered {}", status.as_u16()).into(),
            ));
        }
        response
            .json()
            .await
            .map_err(|e| unavailable(e.without_url()))
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
        let http = self.http.get().map_err(unavailable)?;
        let response = http
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

    async fn user_id(&self, access_token: &str) -> Result<String, HealthApiError> {
        let identity = self
            .get_json("/v4/users/me/identity", &[], access_token)
            .await?;
        identity["healthUserId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| HealthApiError::Unavailable("an identity without healthUserId".into()))
    }

    async fn list_data_points(
        &self,
        access_token: &str,
        data_type: DataType,
        from: Timestamp,
        to: Timestamp,
        page_token: Option<&str>,
    ) -> Result<DataPointPage, HealthApiError> {
        let path = format!("/v4/users/me/dataTypes/{}/dataPoints", data_type.as_str());
        let filter = time_filter(data_type, from, to);
        let size = PAGE_SIZE.to_string();
        let mut query = vec![("filter", filter.as_str()), ("pageSize", size.as_str())];
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        let answer = self.get_json(&path, &query, access_token).await?;
        Ok(page_of(data_type, &answer))
    }
}

/// The data points of a list answer (`{dataPoints: [...], nextPageToken}`); a point
/// without a time or a numeric value is skipped.
pub fn page_of(data_type: DataType, answer: &serde_json::Value) -> DataPointPage {
    let points = answer["dataPoints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|point| {
            let data = &point[data_type.field()];
            let at = data["sampleTime"]["physicalTime"]
                .as_str()
                .and_then(Timestamp::parse)?;
            let value = &data[data_type.value_field()];
            // Proto3 JSON writes 64-bit integers as strings.
            let value = value
                .as_f64()
                .or_else(|| value.as_str().and_then(|v| v.parse().ok()))?;
            Some(DataPoint {
                data_type,
                at,
                value,
            })
        })
        .collect();
    let next_page_token = answer["nextPageToken"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    DataPointPage {
        points,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::ports::secrets::SecretError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Client;

    #[async_trait]
    impl SecretStore for Client {
        async fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, SecretError> {
            Ok((name == "docare/test/google/oauth_client")
                .then(|| Zeroizing::new(r#"{"client_id":"cid","client_secret":"csecret"}"#.into())))
        }
    }

    /// A one-request HTTP server answering `status` with `body`; the request it got
    /// (request line and form body) comes back through the handle.
    async fn stub(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if rest.len() >= length || n == 0 {
                        break;
                    }
                }
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            let text = String::from_utf8_lossy(&seen).to_string();
            let line = text.lines().next().unwrap_or_default().to_string();
            let form = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
            format!("{line}\n{}", form.unwrap_or_default())
        });
        (url, handle)
    }

    fn api(url: &str) -> GoogleHealthApi {
        GoogleHealthApi::new(url, Arc::new(Client), Arc::new(SystemClock), "test")
    }

    #[tokio::test]
    async fn the_code_and_verifier_go_to_the_token_endpoint_with_the_client() {
        let (url, seen) = stub(
            200,
            r#"{"access_token":"ya29.a","refresh_token":"1//r","expires_in":3599}"#,
        )
        .await;
        let tokens = api(&url)
            .exchange_code("4/code", "verif", "https://api.example.com/cb")
            .await
            .unwrap();
        assert_eq!(tokens.access_token.as_str(), "ya29.a");
        assert_eq!(
            tokens.refresh_token.as_deref().map(String::as_str),
            Some("1//r")
        );
        assert_eq!(tokens.expires_in, 3599);
        let seen = seen.await.unwrap();
        assert!(seen.starts_with("POST /token "), "{seen}");
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(seen.lines().nth(1).unwrap().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["code"], "4/code");
        assert_eq!(form["code_verifier"], "verif");
        assert_eq!(form["redirect_uri"], "https://api.example.com/cb");
        assert_eq!(form["client_id"], "cid");
        assert_eq!(form["client_secret"], "csecret");
    }

    #[tokio::test]
    async fn invalid_grant_is_its_own_error_and_other_failures_are_unavailable() {
        let (url, _) = stub(
            400,
            r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
        )
        .await;
        assert!(matches!(
            api(&url).refresh("1//r").await,
            Err(HealthApiError::InvalidGrant)
        ));
        let (url, _) = stub(500, r#"{"error":"internal_failure"}"#).await;
        assert!(matches!(
            api(&url).refresh("1//r").await,
            Err(HealthApiError::Unavailable(_))
        ));
        // Revoking a token Google no longer knows is done.
        let (url, seen) = stub(400, r#"{"error":"invalid_token"}"#).await;
        api(&url).revoke("1//r").await.unwrap();
        assert!(seen.await.unwrap().starts_with("POST /revoke "));
        // Nobody listening: unavailable.
        let gone = api("http://127.0.0.1:9").refresh("1//r").await;
        assert!(matches!(gone, Err(HealthApiError::Unavailable(_))));
    }

    #[tokio::test]
    async fn data_points_are_listed_with_the_bearer_token_and_the_time_filter() {
        let (url, seen) = stub(
            200,
            r#"{"dataPoints":[{"heartRate":{"sampleTime":{"physicalTime":"2026-12-07T10:00:00Z"},"beatsPerMinute":"72"}},{"heartRate":{"sampleTime":{"physicalTime":"2026-12-07T10:01:00.500Z"},"beatsPerMinute":75}},{"heartRate":{"beatsPerMinute":80}}],"nextPageToken":"p2"}"#,
        )
        .await;
        let from = Timestamp::parse("2026-12-07T09:00:00Z").unwrap();
        let to = Timestamp::parse("2026-12-07T11:00:00Z").unwrap();
        let page = api("http://127.0.0.1:9")
            .with_api_url(&url)
            .list_data_points("ya29.a", DataType::HeartRate, from, to, Some("p1"))
            .await
            .unwrap();
        assert_eq!(page.points.len(), 2, "the point without a time is skipped");
        assert_eq!(page.points[0].value, 72.0);
        assert_eq!(page.points[1].at.to_string(), "2026-12-07T10:01:00Z");
        assert_eq!(page.next_page_token.as_deref(), Some("p2"));
        let seen = seen.await.unwrap();
        let line = seen.lines().next().unwrap();
        assert!(
            line.starts_with("GET /v4/users/me/dataTypes/heart-rate/dataPoints?"),
            "{line}"
        );
        let target =
            url::Url::parse(&format!("http://x{}", line.split(' ').nth(1).unwrap())).unwrap();
        let query: std::collections::HashMap<String, String> =
            target.query_pairs().into_owned().collect();
        assert_eq!(
            query["filter"],
            r#"heart_rate.sample_time.physical_time >= "2026-12-07T09:00:00Z" AND heart_rate.sample_time.physical_time < "2026-12-07T11:00:00Z""#
        );
        assert_eq!(query["pageToken"], "p1");
        // Google refusing the token: unavailable, nothing of the answer kept.
        let (url, _) = stub(401, r#"{"error":{"code":401}}"#).await;
        let refused = api("http://127.0.0.1:9")
            .with_api_url(&url)
            .list_data_points("ya29.a", DataType::Weight, from, to, None)
            .await;
        assert!(matches!(refused, Err(HealthApiError::Unavailable(_))));
    }

    #[tokio::test]
    async fn the_identity_names_the_health_user() {
        let (url, seen) = stub(200, r#"{"name":"users/me/identity","healthUserId":"hu-1"}"#).await;
        let id = api("http://127.0.0.1:9")
            .with_api_url(&url)
            .user_id("ya29.a")
            .await
            .unwrap();
        assert_eq!(id, "hu-1");
        assert!(seen
            .await
            .unwrap()
            .starts_with("GET /v4/users/me/identity "));
    }

    #[tokio::test]
    async fn the_consent_url_is_googles_with_our_client() {
        let url = api("http://127.0.0.1:9")
            .authorization_url("https://api.example.com/cb", "st", "ch")
            .await
            .unwrap();
        assert!(url.starts_with(GOOGLE_AUTHORIZE_URL), "{url}");
        assert!(url.contains("client_id=cid"), "{url}");
        assert!(!url.contains("csecret"), "never the secret");
    }
}
