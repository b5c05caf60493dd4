//! Device connections through the devices router on a throw-away app with the offline
//! fake of Google's OAuth (`shared::adapters::local::FakeGoogleHealth`): a patient
//! connects through the fake's consent and PKCE-checked token endpoint; a reused,
//! expired or forged callback is refused; another user neither sees nor deletes the
//! connection; disconnecting revokes the grant at the provider first.

use http::Method;
use serde_json::Value;
use shared::auth::Role;
use shared::testing::{account, dispatch, request, token, TestApp};
use std::sync::Arc;

struct H {
    t: TestApp,
    router: shared::http::Router,
    patient: String,
    pt: String,
    /// Another patient.
    ot: String,
    /// A provider.
    vt: String,
}

async fn setup() -> H {
    let t = TestApp::new();
    let patient = account(&t.app, "pat@example.com", "Pat Patient", Role::Patient).await;
    let other = account(&t.app, "oth@example.com", "Oth Patient", Role::Patient).await;
    let provider = account(&t.app, "doc@example.com", "Dr Carer", Role::Provider).await;
    let pt = token(&t.app, &patient, Role::Patient, "s1", &["pwd"]).await;
    let ot = token(&t.app, &other, Role::Patient, "s2", &["pwd"]).await;
    let vt = token(
        &t.app,
        &provider,
        Role::Provider,
        "s3",
        &["pwd", "otp", "mfa"],
    )
    .await;
    H {
        t,
        router: docare_devices::router(),
        patient,
        pt,
        ot,
        vt,
    }
}

impl H {
    async fn send(&self, method: Method, path: &str, token: Option<&str>) -> (u16, Value) {
        dispatch(
            &self.router,
            &self.t.app,
            request(method, path, token, None),
        )
        .await
    }

    /// Starts a connection as the patient: the authorization URL.
    async fn start(&self) -> String {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v1/devices/connect/google_health",
                Some(&self.pt),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["authorization_url"].as_str().unwrap().to_string()
    }

    /// The browser's arrival at the callback URL (no bearer token).
    async fn arrive(&self, callback: &str) -> (u16, Value) {
        let url = url::Url::parse(callback).unwrap();
        let mut req = request(Method::GET, url.path(), None, None);
        for (name, value) in url.query_pairs() {
            req.query.insert(name.into_owned(), value.into_owned());
        }
        dispatch(&self.router, &self.t.app, req).await
    }

    async fn connections(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.send(Method::GET, "/api/v1/devices", Some(token)).await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    /// Connects the patient through the fake's consent.
    async fn connect(&self) -> String {
        let callback = self.t.google.consent(&self.start().await).await.unwrap();
        let (status, body) = self.arrive(&callback).await;
        assert_eq!(status, 200, "{body}");
        callback
    }
}

#[tokio::test]
async fn a_patient_connects_through_the_fakes_oauth_with_pkce_and_the_state_works_once() {
    let h = setup().await;
    let authorize = h.start().await;
    let url = url::Url::parse(&authorize).unwrap();
    assert_eq!(
        url.path(),
        shared::adapters::local::FAKE_GOOGLE_AUTHORIZE_PATH
    );
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["code_challenge_method"], "S256");
    assert_eq!(pairs["code_challenge"].len(), 43, "BASE64URL of SHA-256");
    assert_eq!(pairs["state"].len(), 43, "256 random bits");
    assert!(pairs["redirect_uri"].ends_with("/api/v1/devices/google_health/callback"));
    assert!(pairs["scope"].contains("googlehealth"));
    assert_eq!(pairs["access_type"], "offline");

    let callback = h.t.google.consent(&authorize).await.unwrap();
    let (status, body) = h.arrive(&callback).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "google_health");
    assert_eq!(body["state"], "connected");
    assert_eq!(h.t.google.exchanges(), 1);

    let listed = h.connections(&h.pt).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["provider"], "google_health");
    assert_eq!(listed[0]["state"], "connected");
    assert_eq!(listed[0]["connected_at"], body["connected_at"]);
    assert!(listed[0]["last_sync_at"].is_null());
    assert!(!listed[0].to_string().contains("ya29"), "no token listed");

    // The tokens are sealed in the table: no attribute holds them in the clear.
    let key = shared::store::keys::device_link(&h.patient, "google_health");
    let item =
        h.t.app
            .db
            .get(&h.t.app.config.table, &key)
            .await
            .unwrap()
            .unwrap();
    for name in ["access_token", "refresh_token"] {
        assert!(
            matches!(item.get(name), Some(shared::ports::db::Value::B(_))),
            "{name} sealed"
        );
    }

    // The same callback again (a reload, a replay): the state is spent.
    let (status, body) = h.arrive(&callback).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(h.t.google.exchanges(), 1, "nothing exchanged again");

    // Connecting again replaces the connection.
    h.connect().await;
    assert_eq!(h.t.google.exchanges(), 2);
    assert_eq!(h.connections(&h.pt).await.len(), 1);
}

#[tokio::test]
async fn an_expired_unknown_or_forged_callback_is_refused() {
    let h = setup().await;
    // Expired: consented after the flow's 10 minutes.
    let authorize = h.start().await;
    h.t.clock.advance(chrono::Duration::seconds(
        shared::store::devices::FLOW_TTL_SECS + 1,
    ));
    let callback = h.t.google.consent(&authorize).await.unwrap();
    let (status, body) = h.arrive(&callback).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("expired"), "{body}");

    // Unknown or malformed states.
    for state in ["", "not-a-state", "a b c", &"x".repeat(300)] {
        let mut req = request(
            Method::GET,
            "/api/v1/devices/google_health/callback",
            None,
            None,
        );
        req.query.insert("state".into(), state.into());
        req.query.insert("code".into(), "4/fake-code".into());
        let (status, _) = dispatch(&h.router, &h.t.app, req).await;
        assert_eq!(status, 400, "state {state:?}");
    }

    // A live state with a forged code: the provider refuses the grant, and the state is
    // spent even so.
    let authorize = h.start().await;
    let callback = h.t.google.consent(&authorize).await.unwrap();
    let mut forged = url::Url::parse(&callback).unwrap();
    let state = forged
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("state", &state)
        .append_pair("code", "4/forged");
    let (status, body) = h.arrive(forged.as_str()).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = h.arrive(&callback).await;
    assert_eq!(status, 400, "the state was spent by the forged attempt");

    // The patient declined at the provider.
    let authorize = h.start().await;
    let callback = h.t.google.consent(&authorize).await.unwrap();
    let mut declined = url::Url::parse(&callback).unwrap();
    let state = declined
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    declined
        .query_pairs_mut()
        .clear()
        .append_pair("state", &state)
        .append_pair("error", "access_denied");
    let (status, _) = h.arrive(declined.as_str()).await;
    assert_eq!(status, 400);

    // Google unreachable at the exchange: a 503 (the state is spent; connect again).
    let callback = h.t.google.consent(&h.start().await).await.unwrap();
    h.t.google.set_down(true);
    let (status, _) = h.arrive(&callback).await;
    assert_eq!(status, 503);
    h.t.google.set_down(false);

    assert_eq!(h.t.google.exchanges(), 0);
    assert!(h.connections(&h.pt).await.is_empty());
}

#[tokio::test]
async fn parallel_callbacks_with_one_state_connect_once() {
    let h = Arc::new(setup().await);
    let callback = h.t.google.consent(&h.start().await).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(12));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (h, barrier, callback) = (h.clone(), barrier.clone(), callback.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                h.arrive(&callback).await.0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        11,
        "{statuses:?}"
    );
    assert_eq!(h.t.google.exchanges(), 1);
}

#[tokio::test]
async fn only_the_owner_sees_and_deletes_a_connection_and_deleting_revokes_first() {
    let h = setup().await;
    h.connect().await;

    // Another patient: an empty list, and a 404 on delete (the owner's stays).
    assert!(h.connections(&h.ot).await.is_empty());
    let (status, _) = h
        .send(Method::DELETE, "/api/v1/devices/google_health", Some(&h.ot))
        .await;
    assert_eq!(status, 404);
    assert_eq!(h.connections(&h.pt).await.len(), 1);
    assert_eq!(h.t.google.revocations(), 0);

    // Providers do not connect; unknown providers are not routes; no token: 401.
    let (status, _) = h
        .send(
            Method::POST,
            "/api/v1/devices/connect/google_health",
            Some(&h.vt),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .send(Method::POST, "/api/v1/devices/connect/fitbit", Some(&h.pt))
        .await;
    assert_eq!(status, 404);
    let (status, _) = h.send(Method::GET, "/api/v1/devices", None).await;
    assert_eq!(status, 401);

    // The provider unreachable: a 503 and the connection stays.
    let key = shared::store::keys::device_link(&h.patient, "google_health");
    h.t.google.set_down(true);
    let (status, _) = h
        .send(Method::DELETE, "/api/v1/devices/google_health", Some(&h.pt))
        .await;
    assert_eq!(status, 503);
    assert_eq!(h.connections(&h.pt).await.len(), 1);
    h.t.google.set_down(false);

    // The owner: revoked at the provider, our copy gone.
    let (status, _) = h
        .send(Method::DELETE, "/api/v1/devices/google_health", Some(&h.pt))
        .await;
    assert_eq!(status, 204);
    assert_eq!(h.t.google.revocations(), 1);
    assert!(h.connections(&h.pt).await.is_empty());
    let gone = h.t.app.db.get(&h.t.app.config.table, &key).await.unwrap();
    assert!(gone.is_none(), "no copy of the tokens is left");
    let (status, _) = h
        .send(Method::DELETE, "/api/v1/devices/google_health", Some(&h.pt))
        .await;
    assert_eq!(status, 404);
}

/// 40 callers find the access token about to expire at once: one takes the lease and
/// refreshes, the others wait and use its token (one refresh call reaches the provider,
/// so a refresh token is never burnt by a race); a refused refresh token moves the
/// connection to `needs_reauth`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_race_of_40_refreshes_once_and_a_refused_grant_needs_reauth() {
    use shared::store::devices::{access_token, TokenError};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let h = Arc::new(setup().await);
    h.connect().await;
    let app = h.t.app.clone();
    let first = access_token(&app, app.health_api.as_ref(), &h.patient, "google_health")
        .await
        .unwrap();
    assert_eq!(h.t.google.refreshes(), 0, "a fresh token is used as it is");

    // The token is within the refresh margin.
    h.t.clock.advance(chrono::Duration::seconds(
        shared::adapters::local::FAKE_TOKEN_SECS - 60,
    ));
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (h, barrier) = (h.clone(), barrier.clone());
            let (in_flight, most) = (in_flight.clone(), most.clone());
            tokio::spawn(async move {
                let app = h.t.app.clone();
                barrier.wait().await;
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let token =
                    access_token(&app, app.health_api.as_ref(), &h.patient, "google_health").await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                token.unwrap().to_string()
            })
        })
        .collect();
    let mut tokens = std::collections::BTreeSet::new();
    for task in tasks {
        tokens.insert(task.await.unwrap());
    }
    let overlap = most.load(Ordering::SeqCst);
    assert!(
        overlap >= 10,
        "only {overlap} of 40 callers were in flight at once"
    );
    assert_eq!(h.t.google.refreshes(), 1, "one refresh call for the race");
    assert_eq!(tokens.len(), 1, "every caller got the refreshed token");
    assert_ne!(tokens.first().unwrap().as_str(), first.as_str());

    // The provider down: the refresh fails, the lease is freed, the next caller refreshes.
    h.t.clock.advance(chrono::Duration::seconds(
        shared::adapters::local::FAKE_TOKEN_SECS,
    ));
    h.t.google.set_down(true);
    let down = access_token(&app, app.health_api.as_ref(), &h.patient, "google_health").await;
    assert!(matches!(down, Err(TokenError::Api(_))));
    h.t.google.set_down(false);
    let again = access_token(&app, app.health_api.as_ref(), &h.patient, "google_health")
        .await
        .unwrap();
    assert_eq!(h.t.google.refreshes(), 2);

    // The grant revoked at the provider: the next refresh is refused, needs_reauth.
    app.health_api.revoke(&again).await.unwrap();
    h.t.clock.advance(chrono::Duration::seconds(
        shared::adapters::local::FAKE_TOKEN_SECS,
    ));
    let refused = access_token(&app, app.health_api.as_ref(), &h.patient, "google_health").await;
    assert!(matches!(refused, Err(TokenError::NeedsReauth)));
    // (A new session: the clock has moved hours on.)
    let fresh = token(&app, &h.patient, Role::Patient, "s9", &["pwd"]).await;
    let listed = h.connections(&fresh).await;
    assert_eq!(listed[0]["state"], "needs_reauth");
    let key = shared::store::keys::device_link(&h.patient, "google_health");
    let item = app.db.get(&app.config.table, &key).await.unwrap().unwrap();
    assert!(
        !item.contains_key("refresh_token") && !item.contains_key("access_token"),
        "the refused tokens are removed"
    );
    let again = access_token(&app, app.health_api.as_ref(), &h.patient, "google_health").await;
    assert!(matches!(again, Err(TokenError::NeedsReauth)));
    assert_eq!(h.t.google.refreshes(), 2, "no refresh call once refused");
}
