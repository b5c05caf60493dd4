//! The auth function's flows through its router on the local adapters, with a manual
//! clock: sign-up to logout, MFA, refresh rotation and reuse, lockout, password reset,
//! bcrypt upgrade, and dependency failures.

use http::Method;
use serde_json::{json, Value};
use shared::auth::accounts;
use shared::auth::totp;
use shared::clock::ManualClock;
use shared::http::{ApiRequest, Router};
use shared::notifications::Notification;
use shared::ports::db::Value as DbValue;
use shared::testing::{dispatch, drain_notifications, request, with_ports, TestApp, OUTAGE};
use shared::App;
use std::sync::Arc;

struct Harness {
    app: App,
    clock: Arc<ManualClock>,
    router: Router,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    body: Value,
}

impl Harness {
    fn new() -> Self {
        let TestApp {
            app, clock, dir, ..
        } = TestApp::new();
        Self {
            app,
            clock,
            router: docare_auth::router(),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Answer {
        self.call_from("198.51.100.1", method, path, body, token)
            .await
    }

    async fn call_from(
        &self,
        ip: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Answer {
        let mut req = request(method, path, token, body);
        req.source_ip = Some(ip.to_string());
        let (status, body) = dispatch(&self.router, &self.app, req).await;
        Answer { status, body }
    }

    /// Every queued e-mail, oldest first (and removes them).
    async fn mails(&self) -> Vec<Notification> {
        let mut out = Vec::new();
        for (_, sealed) in drain_notifications(&self.app).await {
            assert!(
                sealed.sealed.is_some() && sealed.to.is_empty() && sealed.body.is_empty(),
                "sealed on the queue"
            );
            out.push(sealed.open(&self.app).await.unwrap());
        }
        out
    }

    async fn last_token_mailed_to(&self, to: &str) -> String {
        let mail = self
            .mails()
            .await
            .into_iter()
            .rev()
            .find(|m| m.to == to)
            .expect("a mail");
        mail.body
            .split_whitespace()
            .find(|w| w.len() == 43)
            .expect("a token in the mail")
            .to_string()
    }

    async fn signed_up(&self, email: &str, password: &str) {
        let answer = self
            .call(
                Method::POST,
                "/api/v1/auth/signup",
                Some(json!({"email": email, "password": password, "full_name": "Pat Doe"})),
                None,
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let token = self.last_token_mailed_to(email).await;
        let answer = self
            .call(
                Method::POST,
                "/api/v1/auth/verify-email",
                Some(json!({"token": token})),
                None,
            )
            .await;
        assert_eq!(answer.status, 204, "{}", answer.body);
    }

    async fn login(&self, email: &str, password: &str) -> Answer {
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": email, "password": password})),
            None,
        )
        .await
    }

    fn now(&self) -> i64 {
        use shared::ports::Clock;
        self.clock.now().timestamp()
    }
}

#[tokio::test]
async fn signup_verify_login_refresh_logout() {
    let h = Harness::new();
    let answer = h
        .call(Method::POST, "/api/v1/auth/signup", Some(json!({"email": "Pat@Example.com", "password": "correct horse", "full_name": "Pat Doe"})), None)
        .await;
    assert_eq!(answer.status, 201);
    assert!(
        answer.body.get("id").is_none(),
        "no account id before verification"
    );
    // Not verified yet: login refused even with the right password.
    assert_eq!(
        h.login("pat@example.com", "correct horse").await.status,
        422
    );
    let token = h.last_token_mailed_to("Pat@Example.com").await;
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/auth/verify-email",
            Some(json!({"token": token})),
            None
        )
        .await
        .status,
        204
    );
    // Single use.
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/auth/verify-email",
            Some(json!({"token": token})),
            None
        )
        .await
        .status,
        400
    );

    let login = h.login("PAT@example.com ", "correct horse").await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 900);
    let access = login.body["access_token"].as_str().unwrap();
    let claims = h.app.tokens.verify(&h.app, access).await.unwrap();
    assert_eq!(claims.role, "patient");
    assert_eq!(claims.amr, vec!["pwd"]);

    let refresh = login.body["refresh_token"].as_str().unwrap().to_string();
    let next = h
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": refresh})),
            None,
        )
        .await;
    assert_eq!(next.status, 200);
    let next_refresh = next.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next_refresh, refresh);

    let new_access = next.body["access_token"].as_str().unwrap();
    assert_eq!(
        h.call(Method::POST, "/api/v1/auth/logout", None, Some(new_access))
            .await
            .status,
        204
    );
    let after = h
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": next_refresh})),
            None,
        )
        .await;
    assert_eq!(
        after.status, 401,
        "logout ends the session's refresh tokens"
    );
}

#[tokio::test]
async fn signup_does_not_reveal_existing_accounts() {
    let h = Harness::new();
    h.signed_up("taken@example.com", "first password").await;
    let again = h
        .call(Method::POST, "/api/v1/auth/signup", Some(json!({"email": "taken@example.com", "password": "other password", "full_name": "Mallory"})), None)
        .await;
    assert_eq!(again.status, 201);
    let mails = h.mails().await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].body.contains("already has a DoCare account"));
    // The original password still works; the attacker's does not.
    assert_eq!(
        h.login("taken@example.com", "first password").await.status,
        200
    );
    assert_eq!(
        h.login("taken@example.com", "other password").await.status,
        401
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_400_and_changes_nothing() {
    let h = Harness::new();
    for (body, field) in [
        (
            json!({"email": "nope", "password": "long enough lantern", "full_name": "P"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short", "full_name": "P"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "long enough lantern", "full_name": ""}),
            "full_name",
        ),
        (
            json!({"email": "a@example.com", "password": "long enough lantern"}),
            "full_name",
        ),
    ] {
        let answer = h
            .call(Method::POST, "/api/v1/auth/signup", Some(body), None)
            .await;
        assert_eq!(answer.status, 400);
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{}",
            answer.body
        );
        assert!(
            !answer.body.to_string().contains("long enough lantern"),
            "no value echoed"
        );
    }
    assert!(h.mails().await.is_empty());
    assert!(accounts::find_by_email(&h.app, "a@example.com")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn unknown_email_and_wrong_password_answer_alike() {
    let h = Harness::new();
    h.signed_up("known@example.com", "right password").await;
    let unknown = h
        .call_from(
            "198.51.100.2",
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "nobody@example.com", "password": "whatever1"})),
            None,
        )
        .await;
    let wrong = h
        .call_from(
            "198.51.100.3",
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "known@example.com", "password": "whatever1"})),
            None,
        )
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.body["error"]["code"], wrong.body["error"]["code"]);
    assert_eq!(
        unknown.body["error"]["message"],
        wrong.body["error"]["message"]
    );
}

#[tokio::test]
async fn five_failures_lock_the_account_for_thirty_minutes() {
    let h = Harness::new();
    h.signed_up("lock@example.com", "right password").await;
    for attempt in 0..5 {
        // Different addresses, so the per-IP limit is not what stops them.
        let ip = format!("198.51.100.{}", 10 + attempt);
        let answer = h
            .call_from(
                &ip,
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"email": "lock@example.com", "password": "wrong password"})),
                None,
            )
            .await;
        assert_eq!(answer.status, 401, "attempt {attempt}");
    }
    let mails = h.mails().await;
    assert!(mails
        .iter()
        .any(|m| m.subject.as_deref() == Some("Your DoCare account was locked")));
    // The sixth attempt, even with the right password, is refused.
    let sixth = h
        .call_from(
            "198.51.100.50",
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "lock@example.com", "password": "right password"})),
            None,
        )
        .await;
    assert_eq!(sixth.status, 429, "{}", sixth.body);
    // After the rate-limit window the account is still locked...
    h.clock.advance(chrono::Duration::minutes(16));
    let locked = h
        .call_from(
            "198.51.100.51",
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "lock@example.com", "password": "right password"})),
            None,
        )
        .await;
    assert_eq!(locked.status, 401);
    // ...and after thirty minutes it opens again.
    h.clock.advance(chrono::Duration::minutes(15));
    let open = h
        .call_from(
            "198.51.100.52",
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "lock@example.com", "password": "right password"})),
            None,
        )
        .await;
    assert_eq!(open.status, 200, "{}", open.body);
}

#[tokio::test]
async fn per_ip_failures_are_rate_limited_with_retry_after() {
    let h = Harness::new();
    for n in 0..5 {
        let answer = h
            .call(
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"email": format!("u{n}@example.com"), "password": "whatever1"})),
                None,
            )
            .await;
        assert_eq!(answer.status, 401);
    }
    let mut req = ApiRequest::new(Method::POST, "/api/v1/auth/login");
    req.source_ip = Some("198.51.100.1".into());
    req.body = serde_json::to_vec(&json!({"email": "u9@example.com", "password": "whatever1"}))
        .unwrap()
        .into();
    let response = h.router.dispatch(&h.app, req).await;
    assert_eq!(response.status.as_u16(), 429);
    let retry: u64 = response.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
}

#[tokio::test]
async fn a_reused_refresh_token_kills_the_family() {
    let h = Harness::new();
    h.signed_up("reuse@example.com", "right password").await;
    let login = h.login("reuse@example.com", "right password").await;
    let first = login.body["refresh_token"].as_str().unwrap().to_string();
    let second = h
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": first})),
            None,
        )
        .await;
    assert_eq!(second.status, 200);
    let second_token = second.body["refresh_token"].as_str().unwrap().to_string();
    // The thief replays the first token: refused, and the family dies.
    let replay = h
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": first})),
            None,
        )
        .await;
    assert_eq!(replay.status, 401);
    let legit = h
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": second_token})),
            None,
        )
        .await;
    assert_eq!(legit.status, 401, "the whole family is revoked");
    // Another session of the same account is untouched.
    let other = h.login("reuse@example.com", "right password").await;
    let other_refresh = other.body["refresh_token"].as_str().unwrap();
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": other_refresh})),
            None
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn refresh_tokens_expire_when_idle_and_access_tokens_after_15_minutes() {
    let h = Harness::new();
    h.signed_up("idle@example.com", "right password").await;
    let login = h.login("idle@example.com", "right password").await;
    let access = login.body["access_token"].as_str().unwrap().to_string();
    h.clock.advance(chrono::Duration::minutes(16));
    assert!(h.app.tokens.verify(&h.app, &access).await.is_err());
    h.clock.advance(chrono::Duration::hours(24));
    let refresh = login.body["refresh_token"].as_str().unwrap();
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": refresh})),
            None
        )
        .await
        .status,
        401
    );
}

#[tokio::test]
async fn tampered_or_foreign_tokens_are_refused() {
    let h = Harness::new();
    h.signed_up("tamper@example.com", "right password").await;
    let login = h.login("tamper@example.com", "right password").await;
    let access = login.body["access_token"].as_str().unwrap();
    let mut parts: Vec<String> = access.split('.').map(String::from).collect();
    // Change the role claim without re-signing.
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    parts[1] = engine.encode(serde_json::to_vec(&claims).unwrap());
    let forged = parts.join(".");
    assert_eq!(
        h.call(Method::POST, "/api/v1/auth/logout", None, Some(&forged))
            .await
            .status,
        401
    );
    // alg=none.
    let none_header = engine.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    assert_eq!(
        h.call(Method::POST, "/api/v1/auth/logout", None, Some(&unsigned))
            .await
            .status,
        401
    );
    assert_eq!(
        h.call(Method::POST, "/api/v1/auth/logout", None, None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn totp_enrolment_and_login_with_codes_recovery_and_email() {
    let h = Harness::new();
    h.signed_up("mfa@example.com", "right password").await;
    let login = h.login("mfa@example.com", "right password").await;
    let access = login.body["access_token"].as_str().unwrap().to_string();
    let enroll = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/totp/enroll",
            Some(json!({"password": "right password"})),
            Some(&access),
        )
        .await;
    assert_eq!(enroll.status, 200);
    let secret = totp::decode_base32(enroll.body["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.len(), 20, "160-bit secret");
    assert!(enroll.body["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let wrong = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/totp/confirm",
            Some(json!({"code": "000000"})),
            Some(&access),
        )
        .await;
    assert_eq!(wrong.status, 400);
    let code = totp::code_at(&secret, h.now());
    let confirm = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/totp/confirm",
            Some(json!({"code": code})),
            Some(&access),
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let recovery: Vec<String> =
        serde_json::from_value(confirm.body["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);

    // Password alone is no longer enough.
    let step1 = h.login("mfa@example.com", "right password").await;
    assert_eq!(step1.body["mfa_required"], true);
    assert!(step1.body.get("access_token").is_none());
    let mfa_token = step1.body["mfa_token"].as_str().unwrap().to_string();
    // The code used to confirm cannot be replayed.
    let replay = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": code})),
            None,
        )
        .await;
    assert_eq!(replay.status, 401);
    h.clock.advance(chrono::Duration::seconds(30));
    let fresh = totp::code_at(&secret, h.now());
    let tokens = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": fresh})),
            None,
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let claims = h
        .app
        .tokens
        .verify(&h.app, tokens.body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(claims.amr.contains(&"mfa".to_string()));
    // The challenge is single use.
    h.clock.advance(chrono::Duration::seconds(30));
    let again = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": totp::code_at(&secret, h.now())})),
            None,
        )
        .await;
    assert_eq!(again.status, 401);

    // A recovery code works once.
    let step1 = h.login("mfa@example.com", "right password").await;
    let mfa_token = step1.body["mfa_token"].as_str().unwrap().to_string();
    let used = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": recovery[0].to_lowercase()})),
            None,
        )
        .await;
    assert_eq!(used.status, 200);
    let step1 = h.login("mfa@example.com", "right password").await;
    let mfa_token = step1.body["mfa_token"].as_str().unwrap().to_string();
    let reused = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": recovery[0]})),
            None,
        )
        .await;
    assert_eq!(reused.status, 401);

    // The e-mailed code, as the second method.
    h.mails().await;
    let sent = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/send-code",
            Some(json!({"mfa_token": mfa_token})),
            None,
        )
        .await;
    assert_eq!(sent.status, 202);
    let mail = h.mails().await.pop().unwrap();
    let code: String = mail
        .body
        .split_whitespace()
        .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
        .unwrap()
        .to_string();
    let by_mail = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": code})),
            None,
        )
        .await;
    assert_eq!(by_mail.status, 200, "{}", by_mail.body);

    // By SMS: needs a phone in the profile.
    let step1 = h.login("mfa@example.com", "right password").await;
    let mfa_token = step1.body["mfa_token"].as_str().unwrap().to_string();
    let body = json!({"mfa_token": mfa_token, "channel": "sms"});
    let no_phone = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/send-code",
            Some(body.clone()),
            None,
        )
        .await;
    assert_eq!(no_phone.status, 422);
    let account = accounts::find_by_email(&h.app, "mfa@example.com")
        .await
        .unwrap()
        .unwrap();
    let key = shared::store::keys::profile(&account.id);
    let mut profile = shared::ports::db::Item::new();
    profile.insert("pk".into(), DbValue::S(key.pk.clone()));
    profile.insert("sk".into(), DbValue::S(key.sk.clone()));
    profile.insert(
        "phone".into(),
        shared::phi::seal(&h.app, &key, "phone", "+14155550177")
            .await
            .unwrap(),
    );
    h.app
        .db
        .put(&h.app.config.table, profile, None)
        .await
        .unwrap();
    let sent = h
        .call(Method::POST, "/api/v1/auth/mfa/send-code", Some(body), None)
        .await;
    assert_eq!(sent.status, 202);
    let sms = h.mails().await.pop().unwrap();
    assert_eq!(sms.to, "+14155550177");
    let code: String = sms
        .body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_string();
    let by_sms = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": code})),
            None,
        )
        .await;
    assert_eq!(by_sms.status, 200, "{}", by_sms.body);
}

#[tokio::test]
async fn mfa_challenge_allows_five_wrong_codes() {
    let h = Harness::new();
    h.signed_up("guess@example.com", "right password").await;
    let login = h.login("guess@example.com", "right password").await;
    let access = login.body["access_token"].as_str().unwrap().to_string();
    let enroll = h
        .call(
            Method::POST,
            "/api/v1/auth/mfa/totp/enroll",
            Some(json!({"password": "right password"})),
            Some(&access),
        )
        .await;
    let secret = totp::decode_base32(enroll.body["secret"].as_str().unwrap()).unwrap();
    h.call(
        Method::POST,
        "/api/v1/auth/mfa/totp/confirm",
        Some(json!({"code": totp::code_at(&secret, h.now())})),
        Some(&access),
    )
    .await;
    let step1 = h.login("guess@example.com", "right password").await;
    let mfa_token = step1.body["mfa_token"].as_str().unwrap().to_string();
    for n in 0..5 {
        let ip = format!("203.0.113.{n}");
        let answer = h
            .call_from(
                &ip,
                Method::POST,
                "/api/v1/auth/mfa/challenge",
                Some(json!({"mfa_token": mfa_token, "code": "999999"})),
                None,
            )
            .await;
        assert_eq!(answer.status, 401);
    }
    h.clock.advance(chrono::Duration::seconds(30));
    let right = h
        .call_from(
            "203.0.113.99",
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            Some(json!({"mfa_token": mfa_token, "code": totp::code_at(&secret, h.now())})),
            None,
        )
        .await;
    // Spent after five wrong codes (401), and the account's budget of failed codes is
    // spent too (429): either way no session.
    assert!(
        [401, 429].contains(&right.status),
        "the challenge is spent after five wrong codes: {}",
        right.body
    );
}

#[tokio::test]
async fn password_reset_is_single_use_and_ends_every_session() {
    let h = Harness::new();
    h.signed_up("reset@example.com", "quiet old password").await;
    let login = h.login("reset@example.com", "quiet old password").await;
    let refresh = login.body["refresh_token"].as_str().unwrap().to_string();
    let unknown = h
        .call(
            Method::POST,
            "/api/v1/auth/password/reset-request",
            Some(json!({"email": "nobody@example.com"})),
            None,
        )
        .await;
    let known = h
        .call(
            Method::POST,
            "/api/v1/auth/password/reset-request",
            Some(json!({"email": "reset@example.com"})),
            None,
        )
        .await;
    assert_eq!((unknown.status, known.status), (202, 202));
    assert_eq!(unknown.body, known.body);
    let token = h.last_token_mailed_to("reset@example.com").await;
    h.clock.advance(chrono::Duration::milliseconds(5));
    let reset = h
        .call(
            Method::POST,
            "/api/v1/auth/password/reset",
            Some(json!({"token": token, "new_password": "fresh new password"})),
            None,
        )
        .await;
    assert_eq!(reset.status, 204);
    let again = h
        .call(
            Method::POST,
            "/api/v1/auth/password/reset",
            Some(json!({"token": token, "new_password": "other password"})),
            None,
        )
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": refresh})),
            None
        )
        .await
        .status,
        401
    );
    assert_eq!(
        h.login("reset@example.com", "quiet old password")
            .await
            .status,
        401
    );
    assert_eq!(
        h.login("reset@example.com", "fresh new password")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn bcrypt_hashes_from_the_predecessor_are_upgraded_on_login() {
    let h = Harness::new();
    h.signed_up("legacy@example.com", "lantern placeholder pw")
        .await;
    let account = accounts::find_by_email(&h.app, "legacy@example.com")
        .await
        .unwrap()
        .unwrap();
    let legacy = bcrypt::hash_with_result("legacy password", 12)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    accounts::change(
        &h.app,
        &account.id,
        accounts::AccountChange::new().password_hash(legacy),
    )
    .await
    .unwrap();
    assert_eq!(
        h.login("legacy@example.com", "legacy password")
            .await
            .status,
        200
    );
    let upgraded = accounts::get(&h.app, &account.id).await.unwrap().unwrap();
    assert!(upgraded.password_hash.starts_with("$argon2id$"));
    assert_eq!(
        h.login("legacy@example.com", "legacy password")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn jwks_publishes_the_signing_key() {
    let h = Harness::new();
    let jwks = h
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks.status, 200);
    let key = &jwks.body["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert!(key.get("d").is_none(), "no private part");
    assert_eq!(
        jwks.body["keys"].as_array().unwrap().len(),
        1,
        "one key, no overlap"
    );
    // The key is the key ring's signing key: the JWKS shows its public half, and a
    // token issued now verifies with it and names it.
    let der = h
        .app
        .keys
        .public_key(&h.app.config.signing_key_id)
        .await
        .unwrap();
    let public = shared::crypto::signing::PublicKey::from_spki_der(&der).unwrap();
    let (x, y) = public.jwk_coordinates();
    assert_eq!(
        (key["x"].as_str().unwrap(), key["y"].as_str().unwrap()),
        (x.as_str(), y.as_str())
    );
    assert_eq!(key["kid"], public.thumbprint());
    // Nothing of a signing key is stored in the table any more.
    let before = h
        .app
        .kms_calls
        .sign
        .load(std::sync::atomic::Ordering::Relaxed);
    let (token, _) = h
        .app
        .tokens
        .issue(
            &h.app,
            "01JTESTUSER0000000000000000",
            shared::auth::Role::Patient,
            "s1",
            &["pwd"],
        )
        .await
        .unwrap();
    assert_eq!(
        h.app
            .kms_calls
            .sign
            .load(std::sync::atomic::Ordering::Relaxed),
        before + 1,
        "one Sign per token"
    );
    assert_eq!(Some(kid_of(&token).as_str()), key["kid"].as_str());
    assert!(h.app.tokens.verify(&h.app, &token).await.is_ok());
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let json: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    json["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_rotation_overlap_publishes_both_keys_and_accepts_tokens_of_the_old_one() {
    let h = Harness::new();
    let old = h
        .app
        .tokens
        .issue(
            &h.app,
            "01JTESTUSER0000000000000000",
            shared::auth::Role::Patient,
            "s1",
            &["pwd"],
        )
        .await
        .unwrap()
        .0;
    // A new key signs; the old one stays listed for the overlap (15 minutes or more).
    let parts = h.app.ports();
    let ring =
        shared::adapters::local::LocalKeyring::open(&h._dir.path().join("keyring.json")).unwrap();
    ring.create_signing_key("local/docare-signing-2").unwrap();
    let mut config = h.app.config.clone();
    config.previous_signing_key_ids = vec![config.signing_key_id.clone()];
    config.signing_key_id = "local/docare-signing-2".into();
    let rotated = std::sync::Arc::new(shared::AppContext::new(
        config.clone(),
        shared::app::Ports {
            keys: std::sync::Arc::new(ring),
            ..parts
        },
    ));
    let jwks = rotated.tokens.jwks(&rotated).await.unwrap();
    assert_eq!(jwks.keys.len(), 2, "both keys during the overlap");
    let new = rotated
        .tokens
        .issue(
            &rotated,
            "01JTESTUSER0000000000000000",
            shared::auth::Role::Patient,
            "s1",
            &["pwd"],
        )
        .await
        .unwrap()
        .0;
    let kid = kid_of;
    assert_eq!(kid(&new), jwks.keys[0].kid, "the new key signs");
    assert_eq!(kid(&old), jwks.keys[1].kid);
    assert!(
        rotated.tokens.verify(&rotated, &old).await.is_ok(),
        "old tokens still pass"
    );
    assert!(rotated.tokens.verify(&rotated, &new).await.is_ok());
    // After the overlap the old key is dropped from the configuration: its tokens fail.
    config.previous_signing_key_ids.clear();
    let after = std::sync::Arc::new(shared::AppContext::new(config, rotated.ports()));
    assert!(after.tokens.verify(&after, &old).await.is_err());
    assert!(after.tokens.verify(&after, &new).await.is_ok());
}

#[tokio::test]
async fn dependency_outages_answer_503_and_write_nothing() {
    let h = Harness::new();
    let down = with_ports(&h.app, |p| p.keys = Arc::new(OUTAGE));
    let router = docare_auth::router();
    let mut req = ApiRequest::new(Method::POST, "/api/v1/auth/signup");
    req.source_ip = Some("198.51.100.9".into());
    req.body = serde_json::to_vec(
        &json!({"email": "kms@example.com", "password": "long enough lantern", "full_name": "K"}),
    )
    .unwrap()
    .into();
    let response = router.dispatch(&down, req.clone()).await;
    assert_eq!(response.status.as_u16(), 503);
    assert!(h.mails().await.is_empty());
    // KMS is back: the same request works.
    let response = router.dispatch(&h.app, req.clone()).await;
    assert_eq!(response.status.as_u16(), 201);

    let queue_down = with_ports(&h.app, |p| p.queue = Arc::new(OUTAGE));
    let mut req = ApiRequest::new(Method::POST, "/api/v1/auth/password/reset-request");
    req.source_ip = Some("198.51.100.9".into());
    req.body = serde_json::to_vec(&json!({"email": "kms@example.com"}))
        .unwrap()
        .into();
    assert_eq!(router.dispatch(&queue_down, req).await.status.as_u16(), 503);
}
