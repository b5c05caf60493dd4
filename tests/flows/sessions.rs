//! Sessions and revocation: every way a session ends cuts its access tokens within the
//! revocation cache's bound (at once on the instance that ended it), lifetimes per role,
//! a refresh racing a logout-all or a disable issues nothing, and refresh, logout,
//! logout-all and token reuse commit with their audit events.

use async_trait::async_trait;
use http::Method;
use serde_json::{json, Value};
use shared::auth::accounts::{self, NewAccount, Status};
use shared::auth::Role;
use shared::domain::session::CHECK_CACHE_MS;
use shared::ports::db::{
    Condition, Database, DbError, Item, Key, Query, QueryPage, Update, WriteOp,
};
use shared::testing::{
    account, dispatch, request, session, token, with_ports, AuditTableDown, TestApp, TestSession,
};
use shared::App;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const ME: &str = "/api/v1/users/me";

async fn me(app: &App, access: &str) -> u16 {
    dispatch(
        &docare_users::router(),
        app,
        request(Method::GET, ME, Some(access), None),
    )
    .await
    .0
}

async fn auth(app: &App, path: &str, access: Option<&str>, body: Option<Value>) -> (u16, Value) {
    dispatch(
        &docare_auth::router(),
        app,
        request(Method::POST, path, access, body),
    )
    .await
}

async fn refresh(app: &App, refresh_token: &str) -> (u16, Value) {
    auth(
        app,
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh_token})),
    )
    .await
}

fn admin_call(
    method: Method,
    path: String,
    admin: &str,
    body: Option<Value>,
) -> shared::http::ApiRequest {
    request(method, &path, Some(admin), body)
}

/// The instant after the revocation cache's bound.
fn past_the_cache(t: &TestApp) {
    t.clock
        .advance(chrono::Duration::milliseconds(CHECK_CACHE_MS));
}

#[tokio::test]
async fn every_way_of_ending_a_session_cuts_its_access_tokens() {
    let t = TestApp::new();
    let users = docare_users::router();
    let admin = account(&t.app, "root@example.com", "Root", Role::Admin).await;
    let admin_token = token(&t.app, &admin, Role::Admin, "root", &["pwd", "mfa", "otp"]).await;
    // Another instance, which has the account's revocation state cached.
    let other = with_ports(&t.app, |_| {});

    // Logout: this session only, at once here; within the bound on the other instance.
    let pat = account(&t.app, "pat@example.com", "Pat", Role::Patient).await;
    let phone = session(&t.app, &pat, Role::Patient, &["pwd"]).await;
    let laptop = session(&t.app, &pat, Role::Patient, &["pwd"]).await;
    assert_eq!(me(&t.app, &phone.access).await, 200);
    assert_eq!(me(&other, &phone.access).await, 200);
    let (status, _) = auth(&t.app, "/api/v1/auth/logout", Some(&phone.access), None).await;
    assert_eq!(status, 204);
    assert_eq!(me(&t.app, &phone.access).await, 401, "cut at once here");
    assert_eq!(
        me(&t.app, &laptop.access).await,
        200,
        "the other session lives"
    );
    assert_eq!(
        me(&other, &phone.access).await,
        200,
        "another instance answers from its copy within the bound"
    );
    past_the_cache(&t);
    assert_eq!(me(&other, &phone.access).await, 401, "and not after it");
    assert_eq!(me(&other, &laptop.access).await, 200);
    assert_eq!(refresh(&t.app, &phone.refresh).await.0, 401);

    // Logout-all: every session of the account, refresh tokens included.
    let (status, _) = auth(
        &t.app,
        "/api/v1/auth/logout-all",
        Some(&laptop.access),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(me(&t.app, &laptop.access).await, 401);
    assert_eq!(refresh(&t.app, &laptop.refresh).await.0, 401);
    past_the_cache(&t);
    assert_eq!(me(&other, &laptop.access).await, 401);
    // A login after it is a new session and works.
    let later = session(&t.app, &pat, Role::Patient, &["pwd"]).await;
    assert_eq!(me(&t.app, &later.access).await, 200);

    // Disable (an admin on this instance): cut; enabling again does not revive it.
    let (status, _) = dispatch(
        &users,
        &t.app,
        admin_call(
            Method::POST,
            format!("/api/v1/users/{pat}/disable"),
            &admin_token,
            None,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me(&t.app, &later.access).await, 401);
    assert_eq!(refresh(&t.app, &later.refresh).await.0, 401);
    let (status, _) = dispatch(
        &users,
        &t.app,
        admin_call(
            Method::POST,
            format!("/api/v1/users/{pat}/enable"),
            &admin_token,
            None,
        ),
    )
    .await;
    assert_eq!(status, 200);
    past_the_cache(&t);
    assert_eq!(me(&t.app, &later.access).await, 401);

    // Role change: the provider's token (role provider) stops working.
    let dr = account(&t.app, "dr@example.com", "Dr", Role::Provider).await;
    let dr_session = session(&t.app, &dr, Role::Provider, &["pwd", "mfa", "otp"]).await;
    assert_eq!(me(&t.app, &dr_session.access).await, 200);
    let (status, _) = dispatch(
        &users,
        &t.app,
        admin_call(
            Method::PUT,
            format!("/api/v1/users/{dr}/role"),
            &admin_token,
            Some(json!({"role": "patient"})),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me(&t.app, &dr_session.access).await, 401);
    assert_eq!(refresh(&t.app, &dr_session.refresh).await.0, 401);

    // Password change: every session, the one that changed it too.
    let hash = shared::auth::passwords::hash_blocking("correct horse battery".into())
        .await
        .unwrap();
    let Ok(owner) = accounts::create(
        &t.app,
        NewAccount {
            email: "owner@example.com",
            full_name: "Owner",
            password_hash: hash,
            role: Role::Patient,
            status: Status::Active,
        },
    )
    .await
    else {
        panic!("account")
    };
    let s = session(&t.app, &owner.id, Role::Patient, &["pwd"]).await;
    let (status, body) = auth(
        &t.app,
        "/api/v1/auth/password/change",
        Some(&s.access),
        Some(json!({"current_password": "correct horse battery", "new_password": "another good passphrase"})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me(&t.app, &s.access).await, 401);

    // A replayed refresh token ends the session: its access tokens die at once.
    t.clock.advance(chrono::Duration::milliseconds(1));
    let victim = session(&t.app, &owner.id, Role::Patient, &["pwd"]).await;
    let (status, next) = refresh(&t.app, &victim.refresh).await;
    assert_eq!(status, 200);
    let next_access = next["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(&t.app, &next_access).await, 200);
    assert_eq!(refresh(&t.app, &victim.refresh).await.0, 401, "replay");
    assert_eq!(me(&t.app, &next_access).await, 401);
    assert_eq!(me(&t.app, &victim.access).await, 401);
}

#[tokio::test]
async fn staff_sessions_idle_out_after_30_minutes_and_end_after_12_hours() {
    let t = TestApp::new();
    let dr = account(&t.app, "dr@example.com", "Dr", Role::Provider).await;
    let s = session(&t.app, &dr, Role::Provider, &["pwd", "mfa", "otp"]).await;
    t.clock.advance(chrono::Duration::minutes(29));
    let (status, body) = refresh(&t.app, &s.refresh).await;
    assert_eq!(status, 200, "within 30 minutes of the last use");
    let idle = body["refresh_token"].as_str().unwrap().to_string();
    t.clock.advance(chrono::Duration::minutes(30));
    assert_eq!(refresh(&t.app, &idle).await.0, 401, "30 minutes unused");

    // Used every 20 minutes, the session still ends 12 hours after login.
    let s = session(&t.app, &dr, Role::Provider, &["pwd"]).await;
    let mut current = s.refresh;
    for _ in 0..35 {
        t.clock.advance(chrono::Duration::minutes(20));
        let (status, body) = refresh(&t.app, &current).await;
        assert_eq!(status, 200, "{body}");
        current = body["refresh_token"].as_str().unwrap().to_string();
    }
    // 11 h 40 min after login; the next at 12 h is refused.
    t.clock.advance(chrono::Duration::minutes(20));
    assert_eq!(refresh(&t.app, &current).await.0, 401, "12 hours absolute");
}

#[tokio::test]
async fn patient_sessions_follow_the_configured_lifetime() {
    // Defaults: a day idle.
    let t = TestApp::new();
    let pat = account(&t.app, "pat@example.com", "Pat", Role::Patient).await;
    let s = session(&t.app, &pat, Role::Patient, &["pwd"]).await;
    t.clock.advance(chrono::Duration::hours(23));
    let (status, body) = refresh(&t.app, &s.refresh).await;
    assert_eq!(status, 200, "a patient may be away for 23 hours");
    t.clock.advance(chrono::Duration::hours(24));
    let next = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&t.app, next).await.0, 401, "but not 24");

    // Configured: one hour idle, two hours at most.
    let mut config = t.app.config.clone();
    config.patient_sessions = shared::domain::session::Lifetime::patient(3_600, 7_200).unwrap();
    let app: App = Arc::new(shared::AppContext::new(config, t.app.ports()));
    let s = session(&app, &pat, Role::Patient, &["pwd"]).await;
    t.clock.advance(chrono::Duration::minutes(61));
    assert_eq!(refresh(&app, &s.refresh).await.0, 401, "an hour unused");
    let s = session(&app, &pat, Role::Patient, &["pwd"]).await;
    let mut current = s.refresh;
    for _ in 0..2 {
        t.clock.advance(chrono::Duration::minutes(40));
        let (status, body) = refresh(&app, &current).await;
        assert_eq!(status, 200, "{body}");
        current = body["refresh_token"].as_str().unwrap().to_string();
    }
    t.clock.advance(chrono::Duration::minutes(40));
    assert_eq!(refresh(&app, &current).await.0, 401, "two hours absolute");
}

/// With the audit trail down, refresh, logout, logout-all and a replayed refresh token
/// answer 503 and change nothing: the same tokens work once it is back.
#[tokio::test]
async fn session_changes_are_not_kept_without_their_audit_events() {
    let t = TestApp::new();
    let down = with_ports(&t.app, |p| p.db = AuditTableDown::of(&t.app));
    let pat = account(&t.app, "pat@example.com", "Pat", Role::Patient).await;
    let s = session(&t.app, &pat, Role::Patient, &["pwd"]).await;

    assert_eq!(refresh(&down, &s.refresh).await.0, 503);
    assert_eq!(
        auth(&down, "/api/v1/auth/logout", Some(&s.access), None)
            .await
            .0,
        503
    );
    assert_eq!(
        auth(&down, "/api/v1/auth/logout-all", Some(&s.access), None)
            .await
            .0,
        503
    );
    past_the_cache(&t);
    assert_eq!(me(&t.app, &s.access).await, 200, "not logged out");
    // Not rotated: the presented token is still the unused one.
    let (status, body) = refresh(&t.app, &s.refresh).await;
    assert_eq!(status, 200, "{body}");
    let next = body["refresh_token"].as_str().unwrap().to_string();

    // A replay with the trail down: 503, and the session is not ended either.
    assert_eq!(refresh(&down, &s.refresh).await.0, 503);
    let (status, body) = refresh(&t.app, &next).await;
    assert_eq!(status, 200, "the family lives: {body}");
    // With the trail back, the replay ends it.
    assert_eq!(refresh(&t.app, &s.refresh).await.0, 401);
    let last = body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&t.app, last).await.0, 401);
}

/// The database with latency (0–3 ms per call, like a network round trip), counting
/// calls in flight and noting the order in which transactions commit.
struct Recorded {
    db: Arc<dyn Database>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    commits: Mutex<Vec<Commit>>,
    /// Held across a refresh's or revocation's commit and its entry in `commits`, so
    /// the list has the store's order (without it, a task descheduled between its
    /// commit and its push records a later position than its commit had). Only the
    /// commit itself waits: the reads before it still race.
    commit_order: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Commit {
    /// A refresh rotated a token of this user.
    Refresh(String),
    /// Every session of this user ended, or the account was disabled.
    Revoke(String),
}

impl Recorded {
    async fn around<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let jitter = (n.wrapping_mul(2_654_435_761) >> 7) % 3_000;
        tokio::time::sleep(std::time::Duration::from_micros(jitter as u64)).await;
        let out = call.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }

    fn classify(ops: &[WriteOp]) -> Option<Commit> {
        for op in ops {
            match op {
                WriteOp::Put { item, .. } => {
                    let pk = item.get("pk").and_then(|v| v.as_str()).unwrap_or("");
                    if pk.starts_with("REFRESH#") {
                        let user = item.get("user_id").and_then(|v| v.as_str())?;
                        return Some(Commit::Refresh(user.to_string()));
                    }
                }
                WriteOp::Update { key, update, .. } => {
                    if let Some(user) = key.pk.strip_prefix("USER#") {
                        let ends = update.set.iter().any(|(name, value)| {
                            name == "sessions_valid_after"
                                || (name == "status" && value.as_str() == Some("disabled"))
                        });
                        if ends {
                            return Some(Commit::Revoke(user.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[async_trait]
impl Database for Recorded {
    async fn get(&self, t: &str, k: &Key) -> Result<Option<Item>, DbError> {
        self.around(self.db.get(t, k)).await
    }
    async fn put(&self, t: &str, i: Item, c: Option<Condition>) -> Result<(), DbError> {
        self.around(self.db.put(t, i, c)).await
    }
    async fn update(
        &self,
        t: &str,
        k: &Key,
        u: Update,
        c: Option<Condition>,
    ) -> Result<Item, DbError> {
        self.around(self.db.update(t, k, u, c)).await
    }
    async fn delete(
        &self,
        t: &str,
        k: &Key,
        c: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        self.around(self.db.delete(t, k, c)).await
    }
    async fn query(&self, t: &str, q: Query) -> Result<QueryPage, DbError> {
        self.around(self.db.query(t, q)).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), DbError> {
        let kind = Self::classify(&ops);
        self.around(async {
            let _order = if kind.is_some() {
                Some(self.commit_order.lock().await)
            } else {
                None
            };
            let result = self.db.transact_write(ops).await;
            if result.is_ok() {
                if let Some(kind) = kind {
                    self.commits.lock().unwrap().push(kind);
                }
            }
            result
        })
        .await
    }
    async fn transact_write_once(&self, ops: Vec<WriteOp>, token: &str) -> Result<(), DbError> {
        let kind = Self::classify(&ops);
        self.around(async {
            let _order = if kind.is_some() {
                Some(self.commit_order.lock().await)
            } else {
                None
            };
            let result = self.db.transact_write_once(ops, token).await;
            if result.is_ok() {
                if let Some(kind) = kind {
                    self.commits.lock().unwrap().push(kind);
                }
            }
            result
        })
        .await
    }
    async fn check(&self, t: &str) -> Result<(), DbError> {
        self.db.check(t).await
    }
}

const PAIRS: usize = 40;

/// 40 refreshes race 40 logout-alls, and 40 more race 40 disables, each pair on two
/// instances, all 160 requests released together: a refresh either committed before
/// the revocation (and its tokens then die with the session) or issues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_racing_logout_all_or_disable_issues_nothing() {
    let t = TestApp::new();
    let admin = account(&t.app, "root@example.com", "Root", Role::Admin).await;
    let admin_token = token(&t.app, &admin, Role::Admin, "root", &["pwd", "mfa", "otp"]).await;
    let mut pairs: Vec<(String, TestSession, bool)> = Vec::new();
    for i in 0..PAIRS * 2 {
        let user = account(
            &t.app,
            &format!("race{i}@example.com"),
            "Racer",
            Role::Patient,
        )
        .await;
        let s = session(&t.app, &user, Role::Patient, &["pwd"]).await;
        pairs.push((user, s, i % 2 == 0));
    }
    let recorded = Arc::new(Recorded {
        db: t.app.ports().db,
        calls: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        commits: Mutex::new(Vec::new()),
        commit_order: tokio::sync::Mutex::new(()),
    });
    let refresher = with_ports(&t.app, |p| p.db = recorded.clone());
    let revoker = with_ports(&t.app, |p| p.db = recorded.clone());
    let requests = Arc::new(AtomicUsize::new(0));
    let max_requests = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(pairs.len() * 2));
    let mut tasks = Vec::new();
    for (user, s, logout_all) in &pairs {
        let (b, r, m) = (barrier.clone(), requests.clone(), max_requests.clone());
        let (app, refresh_token, user_id) = (refresher.clone(), s.refresh.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(n, Ordering::SeqCst);
            let (status, body) = refresh(&app, &refresh_token).await;
            r.fetch_sub(1, Ordering::SeqCst);
            (user_id, "refresh", status, body)
        }));
        let (b, r, m) = (barrier.clone(), requests.clone(), max_requests.clone());
        let (app, access, user_id, logout_all, admin_token) = (
            revoker.clone(),
            s.access.clone(),
            user.clone(),
            *logout_all,
            admin_token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(n, Ordering::SeqCst);
            let (status, body) = if logout_all {
                auth(&app, "/api/v1/auth/logout-all", Some(&access), None).await
            } else {
                dispatch(
                    &docare_users::router(),
                    &app,
                    admin_call(
                        Method::POST,
                        format!("/api/v1/users/{user_id}/disable"),
                        &admin_token,
                        None,
                    ),
                )
                .await
            };
            r.fetch_sub(1, Ordering::SeqCst);
            (user_id, "revoke", status, body)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let overlapped = max_requests.load(Ordering::SeqCst);
    assert!(
        overlapped >= PAIRS,
        "requests overlapped: at most {overlapped} in flight"
    );
    assert!(recorded.max_in_flight.load(Ordering::SeqCst) >= 2);

    let commits = recorded.commits.lock().unwrap().clone();
    let fresh = with_ports(&t.app, |_| {});
    let (mut won, mut lost) = (0, 0);
    for (user, kind, status, body) in &outcomes {
        if *kind == "revoke" {
            assert!(*status == 204 || *status == 200, "{status} {body}");
            continue;
        }
        let revoked_at = commits
            .iter()
            .position(|c| *c == Commit::Revoke(user.clone()))
            .expect("the revocation committed");
        match *status {
            200 => {
                won += 1;
                let refreshed_at = commits
                    .iter()
                    .position(|c| *c == Commit::Refresh(user.clone()))
                    .expect("the refresh committed");
                assert!(
                    refreshed_at < revoked_at,
                    "a refresh of {user} committed after its revocation (commit {refreshed_at} > {revoked_at})"
                );
                // Its tokens died with the session.
                let access = body["access_token"].as_str().unwrap();
                assert_eq!(me(&fresh, access).await, 401);
                assert_eq!(
                    refresh(&fresh, body["refresh_token"].as_str().unwrap())
                        .await
                        .0,
                    401
                );
            }
            401 => lost += 1,
            other => panic!("refresh answered {other}: {body}"),
        }
        assert!(
            !commits.contains(&Commit::Refresh(user.clone())) || *status == 200,
            "a refresh committed but answered {status}"
        );
    }
    eprintln!("refresh vs revocation: {won} refreshes committed first, {lost} issued nothing; {overlapped} requests in flight at once");
}
