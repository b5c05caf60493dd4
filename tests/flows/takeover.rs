//! Account takeover paths (issue 12): sign-up pre-hijack, a mailbox alone giving an MFA
//! session, guessing races against the limits (40+ truly parallel requests, counting
//! the password-hash and code checks actually made), reset ending what is pending, and
//! the auth routes' units of work with the audit trail down.

use http::Method;
use serde_json::{json, Value};
use shared::audit::{Action, AuditReader, Outcome, TimeRange};
use shared::auth::checks::{self, Check};
use shared::auth::{accounts, totp, Role};
use shared::http::pagination::PageRequest;
use shared::notifications::Notification;
use shared::ports::db::{Key, Query, Update, Value as DbValue};
use shared::testing::{
    dispatch, drain_notifications, request, with_ports, AuditTableDown, TestApp,
};
use shared::App;
use std::sync::Arc;

const PASSWORD: &str = "violet anchor meadow tundra";
const OTHER: &str = "copper lantern glacier orchid";

fn router() -> shared::http::Router {
    docare_auth::router()
}

async fn call(app: &App, ip: &str, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut req = request(Method::POST, path, token, Some(body));
    req.source_ip = Some(ip.to_string());
    dispatch(&router(), app, req).await
}

async fn mails(app: &App) -> Vec<Notification> {
    let mut out = Vec::new();
    for (_, sealed) in drain_notifications(app).await {
        out.push(sealed.open(app).await.unwrap());
    }
    out
}

fn token_in(mail: &Notification) -> String {
    mail.body
        .split_whitespace()
        .find(|w| w.len() == 43)
        .expect("a token in the mail")
        .to_string()
}

fn code_in(mail: &Notification) -> String {
    mail.body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("a code")
        .to_string()
}

async fn signup(app: &App, email: &str, password: &str) -> (u16, Value) {
    call(
        app,
        "198.51.100.1",
        "/api/v1/auth/signup",
        json!({"email": email, "password": password, "full_name": "Pat Doe"}),
        None,
    )
    .await
}

async fn login(app: &App, ip: &str, email: &str, password: &str) -> (u16, Value) {
    call(
        app,
        ip,
        "/api/v1/auth/login",
        json!({"email": email, "password": password}),
        None,
    )
    .await
}

/// An active account with `PASSWORD` (hash made once per process: 40 accounts stay
/// cheap) and, when `totp`, TOTP on; returns its id and TOTP secret.
async fn active(app: &App, email: &str, role: Role, with_totp: bool) -> (String, Vec<u8>) {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH
        .get_or_init(|| shared::auth::passwords::hash(PASSWORD).unwrap())
        .clone();
    let account = accounts::create(
        app,
        accounts::NewAccount {
            email,
            full_name: "Test Person",
            password_hash: hash,
            role,
            status: accounts::Status::Active,
        },
    )
    .await
    .unwrap_or_else(|_| panic!("account"));
    let secret = totp::new_secret().to_vec();
    if with_totp {
        let sealed = accounts::seal(app, &account.id, "totp_secret", &totp::base32(&secret))
            .await
            .unwrap();
        accounts::change(
            app,
            &account.id,
            accounts::AccountChange::new().enable_totp(sealed),
        )
        .await
        .unwrap();
    }
    (account.id, secret)
}

/// Runs `n` copies of a request at once (released together by a barrier, on a
/// multi-threaded runtime) and returns the statuses, after asserting that the requests
/// truly overlapped: more than `LIMIT` were in flight at the same moment, so a
/// read-then-write limit would have let more than `LIMIT` through. (Requests refused
/// by the limit answer in microseconds, so "all started before the first answered"
/// is not a property of a correct limiter; the peak in flight is.)
async fn parallel<F, Fut>(n: usize, make: F) -> Vec<u16>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (u16, Value)> + Send + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    const LIMIT: usize = 5;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let work = make(i);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let (status, _) = work.await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            status
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most > LIMIT,
        "the {n} requests overlapped: {most} in flight at most, want more than {LIMIT}"
    );
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn sign_up_pre_hijack_activates_the_verifying_persons_password() {
    let t = TestApp::new();
    let app = &t.app;
    // The attacker signs up first with the victim's address and their own password.
    assert_eq!(signup(app, "victim@example.com", OTHER).await.0, 201);
    let first = mails(app).await.pop().unwrap();
    // The victim signs up: the same answer as for any address.
    let (status, body) = signup(app, "victim@example.com", PASSWORD).await;
    assert_eq!(status, 201);
    assert_eq!(body["status"], "verification_sent");
    let second = mails(app).await.pop().unwrap();
    assert_eq!(second.to, "victim@example.com");
    // The earlier token (the attacker's credentials) no longer verifies anything.
    let (status, _) = call(
        app,
        "198.51.100.1",
        "/api/v1/auth/verify-email",
        json!({"token": token_in(&first)}),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = call(
        app,
        "198.51.100.1",
        "/api/v1/auth/verify-email",
        json!({"token": token_in(&second)}),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        login(app, "198.51.100.2", "victim@example.com", PASSWORD)
            .await
            .0,
        200,
        "the victim's own password is the one verified"
    );
    assert_eq!(
        login(app, "198.51.100.3", "victim@example.com", OTHER)
            .await
            .0,
        401,
        "the attacker's password does not work"
    );
}

#[tokio::test]
async fn a_mailed_code_is_not_mfa_and_reads_no_phi() {
    let t = TestApp::new();
    let app = &t.app;
    let (provider, secret) = active(app, "dr.mail@example.com", Role::Provider, true).await;
    let (patient, _) = active(app, "pat.mail@example.com", Role::Patient, false).await;
    shared::auth::care::start(app, &provider, &patient, "admin", None)
        .await
        .unwrap();
    let users = docare_users::router();
    let read = |token: String| {
        let users = users.clone();
        let path = format!("/api/v1/users/{patient}/profile");
        async move {
            let req = request(Method::GET, &path, Some(&token), None);
            dispatch(&users, app, req).await.0
        }
    };

    // Password, then a code mailed to the provider's mailbox.
    let (_, step1) = login(app, "198.51.100.4", "dr.mail@example.com", PASSWORD).await;
    let mfa_token = step1["mfa_token"].as_str().unwrap().to_string();
    mails(app).await;
    let (status, _) = call(
        app,
        "198.51.100.4",
        "/api/v1/auth/mfa/send-code",
        json!({"mfa_token": mfa_token}),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let code = code_in(&mails(app).await.pop().unwrap());
    let (status, pair) = call(
        app,
        "198.51.100.4",
        "/api/v1/auth/mfa/challenge",
        json!({"mfa_token": mfa_token, "code": code}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{pair}");
    let access = pair["access_token"].as_str().unwrap().to_string();
    let claims = app.tokens.verify(app, &access).await.unwrap();
    assert_eq!(claims.amr, vec!["pwd", "mca"], "RFC 8176: multiple-channel");
    let principal = claims.principal().unwrap();
    assert!(!principal.mfa && principal.mailed_code);
    assert_eq!(read(access).await, 403, "a mailbox alone reads no PHI");

    // TOTP is the strong kind.
    let (_, step1) = login(app, "198.51.100.4", "dr.mail@example.com", PASSWORD).await;
    let mfa_token = step1["mfa_token"].as_str().unwrap().to_string();
    let now = {
        use shared::ports::Clock;
        t.clock.now().timestamp()
    };
    let (status, pair) = call(
        app,
        "198.51.100.4",
        "/api/v1/auth/mfa/challenge",
        json!({"mfa_token": mfa_token, "code": totp::code_at(&secret, now)}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{pair}");
    let access = pair["access_token"].as_str().unwrap().to_string();
    let claims = app.tokens.verify(app, &access).await.unwrap();
    assert_eq!(claims.amr, vec!["pwd", "otp", "mfa"]);
    assert_eq!(read(access).await, 200);

    // A patient with TOTP who used a texted code reads no PHI of their own either.
    let (me, _) = active(app, "pat.totp@example.com", Role::Patient, true).await;
    let texted = shared::testing::session(app, &me, Role::Patient, &["pwd", "mca", "sms"])
        .await
        .access;
    let req = request(Method::GET, "/api/v1/users/me/profile", Some(&texted), None);
    assert_eq!(dispatch(&users, app, req).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_wrong_passwords_from_one_address_evaluate_at_most_five() {
    let t = TestApp::new();
    let app = t.app.clone();
    // Forty accounts: the per-IP budget, not the per-account one, must stop them.
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            active(&app, &format!("ip{n}@example.com"), Role::Patient, false)
                .await
                .0,
        );
    }
    let statuses = parallel(40, |n| {
        let app = app.clone();
        async move { login(&app, "203.0.113.7", &format!("ip{n}@example.com"), OTHER).await }
    })
    .await;
    let checked: u64 = ids.iter().map(|id| checks::made(Check::Password, id)).sum();
    assert!(
        checked <= 5,
        "{checked} password hashes checked; the limit is 5"
    );
    assert_eq!(count(&statuses, 401) as u64, checked, "{statuses:?}");
    assert!(count(&statuses, 429) >= 35, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_wrong_passwords_on_one_account_evaluate_at_most_five_and_lock_it() {
    let t = TestApp::new();
    let app = t.app.clone();
    let (id, _) = active(&app, "target@example.com", Role::Patient, false).await;
    let statuses = parallel(48, |n| {
        let app = app.clone();
        let ip = format!("198.18.{}.{}", n / 200, n % 200 + 1);
        async move { login(&app, &ip, "target@example.com", OTHER).await }
    })
    .await;
    let checked = checks::made(Check::Password, &id);
    assert!(
        checked <= 5,
        "{checked} password hashes checked; the lockout is 5"
    );
    assert!(
        count(&statuses, 401) + count(&statuses, 429) == 48,
        "{statuses:?}"
    );
    let account = accounts::get(&app, &id).await.unwrap().unwrap();
    use shared::ports::Clock;
    assert!(account.locked(t.clock.now().timestamp()), "locked");
    let locked_mails = mails(&app)
        .await
        .into_iter()
        .filter(|m| m.subject.as_deref() == Some("Your DoCare account was locked"))
        .count();
    assert_eq!(locked_mails, 1, "the owner is told once");

    // Locked by someone else's guesses (which also spent the address's login budget):
    // the owner still gets in by password reset, at once.
    t.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(
        login(&app, "192.0.2.10", "target@example.com", PASSWORD)
            .await
            .0,
        429,
        "before the reset, the address's budget is spent"
    );
    let (status, _) = call(
        &app,
        "192.0.2.10",
        "/api/v1/auth/password/reset-request",
        json!({"email": "target@example.com"}),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let reset = token_in(&mails(&app).await.pop().unwrap());
    let (status, body) = call(
        &app,
        "192.0.2.10",
        "/api/v1/auth/password/reset",
        json!({"token": reset, "new_password": "saffron bicycle harbor quill"}),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = login(
        &app,
        "192.0.2.10",
        "target@example.com",
        "saffron bicycle harbor quill",
    )
    .await;
    assert_eq!(status, 200, "reset clears the lock: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_wrong_codes_evaluate_at_most_five_per_challenge_and_per_account() {
    let t = TestApp::new();
    let app = t.app.clone();
    let (id, _) = active(&app, "codes@example.com", Role::Patient, true).await;
    // Three challenges (three right passwords), guessed at from forty addresses.
    let mut tokens = Vec::new();
    for n in 0..3 {
        let (status, step1) = login(
            &app,
            &format!("192.0.2.{}", 100 + n),
            "codes@example.com",
            PASSWORD,
        )
        .await;
        assert_eq!(status, 200, "{step1}");
        tokens.push(step1["mfa_token"].as_str().unwrap().to_string());
    }
    let before = checks::made(Check::Code, &id);
    let statuses = parallel(42, |n| {
        let app = app.clone();
        let token = tokens[n % 3].clone();
        let ip = format!("198.19.0.{}", n + 1);
        async move {
            call(
                &app,
                &ip,
                "/api/v1/auth/mfa/challenge",
                json!({"mfa_token": token, "code": format!("{:06}", 100_000 + n)}),
                None,
            )
            .await
        }
    })
    .await;
    let checked = checks::made(Check::Code, &id) - before;
    assert!(
        checked <= 5,
        "{checked} codes checked; the account's budget is 5 per 15 minutes"
    );
    assert!(count(&statuses, 429) >= 30, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_wrong_codes_on_one_challenge_evaluate_at_most_five() {
    let t = TestApp::new();
    let app = t.app.clone();
    let (id, _) = active(&app, "one.challenge@example.com", Role::Patient, true).await;
    let (_, step1) = login(&app, "192.0.2.1", "one.challenge@example.com", PASSWORD).await;
    let token = step1["mfa_token"].as_str().unwrap().to_string();
    let before = checks::made(Check::Code, &id);
    let statuses = parallel(40, |n| {
        let app = app.clone();
        let token = token.clone();
        let ip = format!("198.20.0.{}", n + 1);
        async move {
            call(
                &app,
                &ip,
                "/api/v1/auth/mfa/challenge",
                json!({"mfa_token": token, "code": format!("{:06}", 200_000 + n)}),
                None,
            )
            .await
        }
    })
    .await;
    let checked = checks::made(Check::Code, &id) - before;
    assert!(checked <= 5, "{checked} codes checked on one challenge");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_counter_that_cannot_be_written_refuses_the_attempt() {
    let t = TestApp::new();
    active(&t.app, "counter@example.com", Role::Patient, false).await;
    let down = with_ports(&t.app, |p| p.db = Arc::new(shared::testing::OUTAGE));
    let (status, _) = login(&down, "192.0.2.3", "counter@example.com", PASSWORD).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn password_reset_ends_other_reset_tokens_and_pending_challenges() {
    let t = TestApp::new();
    let app = &t.app;
    let (_, secret) = active(app, "pending@example.com", Role::Patient, true).await;
    let (_, step1) = login(app, "192.0.2.4", "pending@example.com", PASSWORD).await;
    let challenge = step1["mfa_token"].as_str().unwrap().to_string();
    mails(app).await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, _) = call(
            app,
            "192.0.2.4",
            "/api/v1/auth/password/reset-request",
            json!({"email": "pending@example.com"}),
            None,
        )
        .await;
        assert_eq!(status, 202);
        tokens.push(token_in(&mails(app).await.pop().unwrap()));
    }
    let (status, _) = call(
        app,
        "192.0.2.4",
        "/api/v1/auth/password/reset",
        json!({"token": tokens[0], "new_password": OTHER}),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        app,
        "192.0.2.4",
        "/api/v1/auth/password/reset",
        json!({"token": tokens[1], "new_password": "saffron bicycle harbor quill"}),
        None,
    )
    .await;
    assert_eq!(status, 400, "the other reset token ended with the reset");
    let now = {
        use shared::ports::Clock;
        t.clock.now().timestamp()
    };
    let (status, _) = call(
        app,
        "192.0.2.4",
        "/api/v1/auth/mfa/challenge",
        json!({"mfa_token": challenge, "code": totp::code_at(&secret, now)}),
        None,
    )
    .await;
    assert_eq!(status, 401, "the pending challenge ended with the reset");
    // The new password works (and opens a fresh challenge).
    let (status, body) = login(app, "192.0.2.5", "pending@example.com", OTHER).await;
    assert_eq!((status, body["mfa_required"].clone()), (200, json!(true)));
}

#[tokio::test]
async fn totp_changes_need_the_password_or_a_code_and_tell_the_owner() {
    let t = TestApp::new();
    let app = &t.app;
    let (id, _) = active(app, "settings@example.com", Role::Patient, false).await;
    let access = shared::testing::session(app, &id, Role::Patient, &["pwd"])
        .await
        .access;
    let enroll = |body: Value| {
        call(
            app,
            "192.0.2.6",
            "/api/v1/auth/mfa/totp/enroll",
            body,
            Some(&access),
        )
    };
    assert_eq!(enroll(json!({})).await.0, 400, "the password is required");
    assert_eq!(enroll(json!({"password": OTHER})).await.0, 401);
    let (status, enrolled) = enroll(json!({"password": PASSWORD})).await;
    assert_eq!(status, 200, "{enrolled}");
    let secret = totp::decode_base32(enrolled["secret"].as_str().unwrap()).unwrap();
    let now = {
        use shared::ports::Clock;
        t.clock.now().timestamp()
    };
    let (status, _) = call(
        app,
        "192.0.2.6",
        "/api/v1/auth/mfa/totp/confirm",
        json!({"code": totp::code_at(&secret, now)}),
        Some(&access),
    )
    .await;
    assert_eq!(status, 200);
    let told = mails(app).await;
    assert!(
        told.iter()
            .any(|m| m.to == "settings@example.com"
                && m.body.contains("authenticator app was added")),
        "the owner is told"
    );
    t.clock.advance(chrono::Duration::seconds(30));
    let (status, _) = call(
        app,
        "192.0.2.6",
        "/api/v1/auth/mfa/totp/disable",
        json!({"code": totp::code_at(&secret, now + 30)}),
        Some(&access),
    )
    .await;
    assert_eq!(status, 204);
    assert!(mails(app)
        .await
        .iter()
        .any(|m| m.body.contains("TOTP was turned off")));
}

#[tokio::test]
async fn weak_passwords_are_refused_clearly_and_staff_need_twelve_characters() {
    let t = TestApp::new();
    let app = &t.app;
    for weak in ["password123", "long enough", "qwertyuiop"] {
        let (status, body) = signup(app, "pat.weak@example.com", weak).await;
        assert_eq!(status, 400, "{weak}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("password: too easy to guess"), "{message}");
        assert!(!body.to_string().contains(weak), "not echoed");
    }
    assert!(mails(app).await.is_empty());
    assert!(accounts::find_by_email(app, "pat.weak@example.com")
        .await
        .unwrap()
        .is_none());
    // A provider setting a strong-looking 11-character password by reset.
    let (id, _) = active(app, "dr.short@example.com", Role::Provider, false).await;
    let token = shared::auth::one_time::issue(
        app,
        shared::auth::one_time::Purpose::PasswordReset,
        &id,
        600,
    )
    .await
    .unwrap();
    let (status, body) = call(
        app,
        "192.0.2.7",
        "/api/v1/auth/password/reset",
        json!({"token": token, "new_password": "Xq7!vR2#kLp"}),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at least 12"));
    let (status, _) = call(
        app,
        "192.0.2.7",
        "/api/v1/auth/password/reset",
        json!({"token": token, "new_password": "Xq7!vR2#kLp9"}),
        None,
    )
    .await;
    assert_eq!(status, 204, "the token survives a refused password");
}

/// Sign-up, verification, login, MFA challenge, password reset and TOTP enrolment each
/// commit with their event: with the audit table down they answer 503 and keep nothing.
#[tokio::test]
async fn auth_changes_are_not_kept_without_their_audit_events() {
    let t = TestApp::new();
    let app = &t.app;
    let down = with_ports(app, |p| p.db = AuditTableDown::of(app));

    // Sign-up: no account.
    let (status, _) = signup(&down, "uow@example.com", PASSWORD).await;
    assert_eq!(status, 503);
    assert!(accounts::find_by_email(app, "uow@example.com")
        .await
        .unwrap()
        .is_none());
    // Verification: still unverified, the token still works afterwards.
    assert_eq!(signup(app, "uow@example.com", PASSWORD).await.0, 201);
    let token = token_in(&mails(app).await.pop().unwrap());
    let verify = json!({"token": token});
    let (status, _) = call(
        &down,
        "192.0.2.8",
        "/api/v1/auth/verify-email",
        verify.clone(),
        None,
    )
    .await;
    assert_eq!(status, 503);
    let account = accounts::find_by_email(app, "uow@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.status, accounts::Status::Unverified);
    let (status, _) = call(app, "192.0.2.8", "/api/v1/auth/verify-email", verify, None).await;
    assert_eq!(status, 204);

    // Login: no session.
    let sessions = || async {
        let partition = shared::store::keys::session(&account.id, "x").pk;
        app.db
            .query(&app.config.table, Query::partition(&partition))
            .await
            .unwrap()
            .items
            .len()
    };
    let (status, _) = login(&down, "192.0.2.9", "uow@example.com", PASSWORD).await;
    assert_eq!(status, 503);
    assert_eq!(sessions().await, 0, "no session without its LOGIN event");

    // Password reset: the old password stays, the token stays usable.
    let (status, _) = call(
        app,
        "192.0.2.9",
        "/api/v1/auth/password/reset-request",
        json!({"email": "uow@example.com"}),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let reset = token_in(&mails(app).await.pop().unwrap());
    let body = json!({"token": reset, "new_password": OTHER});
    let (status, _) = call(
        &down,
        "192.0.2.9",
        "/api/v1/auth/password/reset",
        body.clone(),
        None,
    )
    .await;
    assert_eq!(status, 503);
    let after = accounts::get(app, &account.id).await.unwrap().unwrap();
    assert_eq!(
        after.password_hash,
        accounts::get(app, &account.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
    );
    assert_eq!(
        shared::auth::passwords::verify(PASSWORD, &after.password_hash),
        shared::auth::passwords::Verified::Yes { rehash: false }
    );

    // TOTP enrolment and confirmation: nothing pending, MFA stays off.
    let access = shared::testing::session(app, &account.id, Role::Patient, &["pwd"])
        .await
        .access;
    let (status, _) = call(
        &down,
        "192.0.2.9",
        "/api/v1/auth/mfa/totp/enroll",
        json!({"password": PASSWORD}),
        Some(&access),
    )
    .await;
    assert_eq!(status, 503);
    let after = accounts::get(app, &account.id).await.unwrap().unwrap();
    assert!(!after.item.contains_key("totp_pending"));
    let (status, enrolled) = call(
        app,
        "192.0.2.9",
        "/api/v1/auth/mfa/totp/enroll",
        json!({"password": PASSWORD}),
        Some(&access),
    )
    .await;
    assert_eq!(status, 200);
    let secret = totp::decode_base32(enrolled["secret"].as_str().unwrap()).unwrap();
    let now = {
        use shared::ports::Clock;
        t.clock.now().timestamp()
    };
    let (status, _) = call(
        &down,
        "192.0.2.9",
        "/api/v1/auth/mfa/totp/confirm",
        json!({"code": totp::code_at(&secret, now)}),
        Some(&access),
    )
    .await;
    assert_eq!(status, 503);
    assert!(
        !accounts::get(app, &account.id)
            .await
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
    let (status, _) = call(
        app,
        "192.0.2.9",
        "/api/v1/auth/mfa/totp/confirm",
        json!({"code": totp::code_at(&secret, now)}),
        Some(&access),
    )
    .await;
    assert_eq!(status, 200);

    // MFA challenge: no session, and the challenge still works when the trail is back.
    let before = sessions().await;
    let (_, step1) = login(app, "192.0.2.11", "uow@example.com", PASSWORD).await;
    let challenge = step1["mfa_token"].as_str().unwrap().to_string();
    t.clock.advance(chrono::Duration::seconds(30));
    let code = totp::code_at(&secret, now + 30);
    let body = json!({"mfa_token": challenge, "code": code});
    let (status, _) = call(
        &down,
        "192.0.2.11",
        "/api/v1/auth/mfa/challenge",
        body,
        None,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(sessions().await, before, "no session without its events");
    let _ = DbValue::Null;

    // The password step of an MFA login (lockout cleared, hash upgraded, challenge
    // started): kept only with its event.
    let failed = |id: String| async move {
        accounts::get(app, &id).await.unwrap().unwrap().item["failed_logins"]
            .as_i64()
            .unwrap()
    };
    let (status, _) = login(app, "192.0.2.12", "uow@example.com", OTHER).await;
    assert_eq!(status, 401);
    assert_eq!(failed(account.id.clone()).await, 1);
    let (status, _) = login(&down, "192.0.2.12", "uow@example.com", PASSWORD).await;
    assert_eq!(status, 503, "no MFA step without its event");
    assert!(
        failed(account.id.clone()).await >= 1,
        "the lockout counter is not cleared without an event"
    );
    let (status, step) = login(app, "192.0.2.12", "uow@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert!(step["mfa_token"].is_string());
    assert_eq!(failed(account.id.clone()).await, 0);
    assert!(account_events(app, &account.id)
        .await
        .contains(&(Action::MfaRequired, Outcome::Success)));

    // A repeat sign-up of an unverified address (new credentials, earlier tokens end):
    // kept only with its event.
    assert_eq!(signup(app, "again@example.com", PASSWORD).await.0, 201);
    let first = token_in(&mails(app).await.pop().unwrap());
    let again = accounts::find_by_email(app, "again@example.com")
        .await
        .unwrap()
        .unwrap();
    let pending = |id: String| async move {
        accounts::get(app, &id).await.unwrap().unwrap().item["pending_signup"].clone()
    };
    let before = pending(again.id.clone()).await;
    assert_eq!(signup(&down, "again@example.com", OTHER).await.0, 503);
    assert_eq!(pending(again.id.clone()).await, before, "nothing changed");
    assert!(mails(app).await.is_empty(), "no token mailed");
    assert_eq!(signup(app, "again@example.com", OTHER).await.0, 201);
    let signups = account_events(app, &again.id)
        .await
        .into_iter()
        .filter(|e| *e == (Action::Signup, Outcome::Success))
        .count();
    assert_eq!(signups, 2, "the repeat sign-up is recorded");
    let (status, _) = call(
        app,
        "192.0.2.13",
        "/api/v1/auth/verify-email",
        json!({"token": first}),
        None,
    )
    .await;
    assert_eq!(
        status, 400,
        "the earlier token ended with the recorded repeat"
    );

    // A right password on an unverified account (still the first sign-up's until a
    // token is verified) clears the lockout counter: kept only with its event.
    let (status, _) = login(app, "192.0.2.14", "again@example.com", OTHER).await;
    assert_eq!(status, 401);
    assert_eq!(failed(again.id.clone()).await, 1);
    let (status, _) = login(&down, "192.0.2.14", "again@example.com", PASSWORD).await;
    assert_eq!(status, 503);
    assert!(
        failed(again.id.clone()).await >= 1,
        "not cleared without an event"
    );
    let (status, _) = login(app, "192.0.2.14", "again@example.com", PASSWORD).await;
    assert_eq!(status, 422);
    assert_eq!(failed(again.id.clone()).await, 0);
}

/// The account's audit events (as resource), as (action, outcome).
async fn account_events(app: &App, id: &str) -> Vec<(Action, Outcome)> {
    let reader = AuditReader::new(app.db.clone(), &app.config);
    let page = PageRequest {
        limit: 100,
        start: None,
    };
    reader
        .by_resource("account", id, &TimeRange::default(), &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.action, e.outcome))
        .collect()
}

/// Moves one sealed value of an item into another attribute or item (what someone with
/// write access to the table could do): it must fail its integrity check there.
async fn plant(app: &App, from: &Key, attribute: &str, to: &Key, into: &str) {
    let table = app.config.table.clone();
    let item = app.db.get(&table, from).await.unwrap().unwrap();
    app.db
        .update(
            &table,
            to,
            Update::new().set(into, item[attribute].clone()),
            None,
        )
        .await
        .unwrap();
}

/// Sealed values on the MFA path (the TOTP secret, the address a code is mailed to, the
/// phone an SMS code goes to, the address told of a lockout) that fail their integrity
/// check answer 500 with `INTEGRITY_FAILURE` recorded, and nothing is sent.
#[tokio::test]
async fn integrity_failures_on_the_mfa_path_are_audited_and_send_nothing() {
    let t = TestApp::new();
    let app = &t.app;
    let failures = |events: Vec<(Action, Outcome)>| {
        events
            .iter()
            .filter(|e| **e == (Action::IntegrityFailure, Outcome::Failed))
            .count()
    };
    let (id, secret) = active(app, "sealed@example.com", Role::Patient, true).await;
    let account_key = accounts::key(&id);
    let now = {
        use shared::ports::Clock;
        t.clock.now().timestamp()
    };
    let challenge = |ip: &'static str| async move {
        let (status, body) = login(app, ip, "sealed@example.com", PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        body["mfa_token"].as_str().unwrap().to_string()
    };

    // The phone of the profile replaced by another sealed value: no SMS code.
    let phone = shared::testing::session(app, &id, Role::Patient, &["pwd", "otp", "mfa"]).await;
    let mut req = request(
        Method::PUT,
        "/api/v1/users/me/profile",
        Some(&phone.access),
        Some(
            json!({"full_name": "Test Person", "phone": "+15555550123", "current_password": PASSWORD}),
        ),
    );
    req.source_ip = Some("192.0.2.30".into());
    let (status, body) = dispatch(&docare_users::router(), app, req).await;
    assert_eq!(status, 200, "{body}");
    mails(app).await;
    let profile_key = shared::store::keys::profile(&id);
    plant(app, &account_key, "email", &profile_key, "phone").await;
    let token = challenge("192.0.2.30").await;
    let (status, _) = call(
        app,
        "192.0.2.30",
        "/api/v1/auth/mfa/send-code",
        json!({"mfa_token": token, "channel": "sms"}),
        None,
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(failures(account_events(app, &id).await), 1);
    assert!(mails(app).await.is_empty(), "no SMS sent");

    // The TOTP secret replaced by another sealed value: the challenge fails, recorded.
    plant(app, &account_key, "email", &account_key, "totp_secret").await;
    let (status, _) = call(
        app,
        "192.0.2.31",
        "/api/v1/auth/mfa/challenge",
        json!({"mfa_token": token, "code": totp::code_at(&secret, now)}),
        None,
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(failures(account_events(app, &id).await), 2);

    // The address replaced by another sealed value: no mailed code, no lockout mail.
    plant(app, &account_key, "full_name", &account_key, "email").await;
    let (status, _) = call(
        app,
        "192.0.2.32",
        "/api/v1/auth/mfa/send-code",
        json!({"mfa_token": token}),
        None,
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(failures(account_events(app, &id).await), 3);
    for n in 0..5 {
        let ip = format!("192.0.2.{}", 40 + n);
        let (status, _) = login(app, &ip, "sealed@example.com", OTHER).await;
        assert_eq!(status, if n < 4 { 401 } else { 500 }, "attempt {n}");
    }
    assert_eq!(failures(account_events(app, &id).await), 4);
    assert!(mails(app).await.is_empty(), "nothing mailed");
}

async fn put_profile(app: &App, token: &str, body: Value) -> (u16, Value) {
    let mut req = request(
        Method::PUT,
        "/api/v1/users/me/profile",
        Some(token),
        Some(body),
    );
    req.source_ip = Some("192.0.2.50".into());
    dispatch(&docare_users::router(), app, req).await
}

async fn stored_phone(app: &App, id: &str) -> Option<String> {
    shared::store::profiles::phone(app, id).await.unwrap()
}

/// The phone that receives sign-in codes by SMS changes only with the current password,
/// and the owner is told by mail; other profile changes need nothing more.
#[tokio::test]
async fn changing_the_phone_for_sms_codes_needs_the_password_and_tells_the_owner() {
    let t = TestApp::new();
    let app = &t.app;
    let (id, _) = active(app, "phone@example.com", Role::Patient, false).await;
    let access = shared::testing::session(app, &id, Role::Patient, &["pwd"])
        .await
        .access;
    let body = |phone: Option<&str>, password: Option<&str>| {
        let mut body = json!({"full_name": "Test Person", "date_of_birth": "1980-02-03"});
        if let Some(phone) = phone {
            body["phone"] = json!(phone);
        }
        if let Some(password) = password {
            body["current_password"] = json!(password);
        }
        body
    };
    let notices = |mails: Vec<Notification>| -> Vec<String> {
        mails
            .into_iter()
            .filter(|m| m.to == "phone@example.com")
            .filter(|m| {
                m.subject.as_deref() == Some("A security setting of your DoCare account changed")
            })
            .map(|m| m.body)
            .collect()
    };

    // A stolen access token alone cannot point the codes at another phone.
    let (status, answer) = put_profile(app, &access, body(Some("+15555550111"), None)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("current_password"), "{answer}");
    let (status, _) = put_profile(app, &access, body(Some("+15555550111"), Some(OTHER))).await;
    assert_eq!(status, 401);
    assert_eq!(stored_phone(app, &id).await, None, "nothing changed");
    assert!(notices(mails(app).await).is_empty());

    let (status, answer) =
        put_profile(app, &access, body(Some("+15555550111"), Some(PASSWORD))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        stored_phone(app, &id).await.as_deref(),
        Some("+15555550111")
    );
    let told = notices(mails(app).await);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("phone number that receives your DoCare sign-in codes was changed"));
    assert!(
        !told[0].contains("5555550111"),
        "the notice names no number"
    );

    // The same phone again (another field changed): no password, no notice.
    let mut same = body(Some("+15555550111"), None);
    same["date_of_birth"] = json!("1980-02-04");
    assert_eq!(put_profile(app, &access, same).await.0, 200);
    assert!(notices(mails(app).await).is_empty());

    // Replacing it and removing it need the password too.
    let (status, _) = put_profile(app, &access, body(Some("+15555550122"), None)).await;
    assert_eq!(status, 400);
    let (status, _) = put_profile(app, &access, body(None, None)).await;
    assert_eq!(status, 400, "removing the phone needs the password");
    assert_eq!(
        stored_phone(app, &id).await.as_deref(),
        Some("+15555550111")
    );
    let (status, _) = put_profile(app, &access, body(None, Some(PASSWORD))).await;
    assert_eq!(status, 200);
    assert_eq!(stored_phone(app, &id).await, None);
    let told = notices(mails(app).await);
    assert!(
        told.len() == 1 && told[0].contains("was removed"),
        "{told:?}"
    );

    // The refused attempt was recorded on the profile.
    let reader = AuditReader::new(app.db.clone(), &app.config);
    let page = PageRequest {
        limit: 100,
        start: None,
    };
    let events = reader
        .by_resource("profile", &id, &TimeRange::default(), &page)
        .await
        .unwrap()
        .items;
    assert!(events
        .iter()
        .any(|e| e.action == Action::Update && e.outcome == Outcome::Denied));
}

/// 40 parallel phone changes with wrong passwords check at most the account's failure
/// budget (5 hashes), the rest answer 429, and the phone stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_wrong_passwords_for_a_phone_change_check_at_most_five() {
    let t = TestApp::new();
    let app = t.app.clone();
    let (id, _) = active(&app, "phonerace@example.com", Role::Patient, false).await;
    let access = shared::testing::session(&app, &id, Role::Patient, &["pwd"])
        .await
        .access;
    let statuses = parallel(40, |n| {
        let (app, access) = (app.clone(), access.clone());
        async move {
            let body = json!({"full_name": "Test Person", "phone": format!("+1555555{n:04}"),
                              "current_password": OTHER});
            put_profile(&app, &access, body).await
        }
    })
    .await;
    let checked = checks::made(Check::Password, &id);
    assert!(
        checked <= 5,
        "{checked} password hashes checked; the budget is 5"
    );
    assert_eq!(count(&statuses, 401), checked as usize, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 40 - checked as usize, "{statuses:?}");
    assert_eq!(stored_phone(&app, &id).await, None);
}
