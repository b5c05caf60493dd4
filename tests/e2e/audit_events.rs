//! The audit trail's "done when": every route of every HTTP function, driven through
//! its router on a local app as the actors that matter, writes exactly the audit events
//! a compliance officer expects (action, outcome, actor, resource) — successes, auth
//! failures and denials alike — and no audit item holds any PHI, password or token used
//! here (every attribute of the raw items, strings and bytes).
//!
//! Steps run in order (later ones use earlier tokens); each names its route, request and
//! expected events. A route of `http_functions()` that no step drives fails the test.

use docare_local::accounts::{self, Created};
use docare_local::mounts::{http_functions, HttpMount};
use http::Method;
use serde_json::{json, Value as Json};
use shared::adapters::local::LocalParts;
use shared::audit::{attr, StoredEvent};
use shared::auth::one_time::{self, Purpose};
use shared::auth::{care, totp, Role};
use shared::clock::SystemClock;
use shared::http::ApiRequest;
use shared::ports::db::{Item, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A client-chosen user agent naming the patient: stored only encrypted.
const USER_AGENT: &str = "DoCareApp/2.1 (Patience Okafor's phone)";
const REASON: &str = "Patience Okafor unconscious in ER ward 7";

/// One expected event: action, outcome, actor (user id, role) and resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Want {
    action: String,
    outcome: String,
    actor: Option<String>,
    role: Option<String>,
    resource: Option<(String, String)>,
}

fn ev(
    action: &str,
    outcome: &str,
    actor: Option<&Created>,
    resource: Option<(&str, &str)>,
) -> Want {
    Want {
        action: action.into(),
        outcome: outcome.into(),
        actor: actor.map(|a| a.id.clone()),
        role: actor.map(|a| a.role.as_str().to_string()),
        resource: resource.map(|(t, i)| (t.to_string(), i.to_string())),
    }
}

fn ok(action: &str, actor: &Created, resource: (&str, &str)) -> Want {
    ev(action, "success", Some(actor), Some(resource))
}

fn denied(action: &str, actor: &Created, resource: (&str, &str)) -> Want {
    ev(action, "denied", Some(actor), Some(resource))
}

/// A request of one step.
struct Call<'a> {
    method: Method,
    path: String,
    token: Option<&'a str>,
    body: Option<Json>,
    /// A body sent as is (a webhook's signed bytes).
    raw: Option<String>,
    query: Vec<(&'a str, String)>,
    headers: Vec<(&'static str, &'a str)>,
}

fn call<'a>(method: Method, path: impl Into<String>, token: Option<&'a str>) -> Call<'a> {
    Call {
        method,
        path: path.into(),
        token,
        body: None,
        raw: None,
        query: Vec::new(),
        headers: Vec::new(),
    }
}

impl<'a> Call<'a> {
    fn body(mut self, body: Json) -> Self {
        self.body = Some(body);
        self
    }
    fn raw(mut self, body: &str) -> Self {
        self.raw = Some(body.to_string());
        self
    }
    fn query(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }
    fn header(mut self, name: &'static str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
}

struct Harness {
    parts: LocalParts,
    mounts: Vec<HttpMount>,
    seen: BTreeSet<String>,
    covered: BTreeSet<(String, String)>,
    requests: usize,
    failures: Vec<String>,
    /// Each read route's first successful request (its mount and route), measured warm
    /// after the tour ([`Harness::warm_reads`]; `super::budgets` holds the budgets).
    reads: Vec<(usize, String, ApiRequest)>,
}

impl Harness {
    /// Events appended since the last look.
    fn new_events(&mut self) -> Vec<StoredEvent> {
        let items = self
            .parts
            .store
            .raw_items(&self.parts.app.config.audit_table)
            .unwrap();
        let mut fresh = Vec::new();
        for item in items {
            let event = StoredEvent::from_item(&item).expect("a well-formed audit item");
            if self.seen.insert(event.event_id.clone()) {
                fresh.push(event);
            }
        }
        fresh
    }

    /// Sends one request and checks its status and the events it wrote. Boxed: the
    /// tour awaits some 130 steps, and each unboxed step future would take its room in
    /// the tour's own frame (debug builds do not overlap them) on a 2 MiB test stack.
    fn step<'s>(
        &'s mut self,
        label: &'s str,
        call: Call<'s>,
        status: u16,
        want: Vec<Want>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Json> + 's>> {
        Box::pin(async move {
            let (got_status, body, events) = self.send(call).await;
            self.check(label, got_status, status, events, want);
            body
        })
    }

    async fn send(&mut self, call: Call<'_>) -> (u16, Json, Vec<StoredEvent>) {
        // Boxed: every step awaits one, and the tour's future is near the test thread's
        // stack size in debug builds.
        Box::pin(self.send_now(call)).await
    }

    async fn send_now(&mut self, call: Call<'_>) -> (u16, Json, Vec<StoredEvent>) {
        self.new_events();
        self.requests += 1;
        let mut req = ApiRequest::new(call.method.clone(), &call.path);
        // A fresh address per request: the per-IP auth limit stays out of the way.
        req.source_ip = Some(format!(
            "198.51.{}.{}",
            self.requests / 250,
            self.requests % 250 + 1
        ));
        req.user_agent = Some(USER_AGENT.into());
        if let Some(token) = call.token {
            req.headers
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        for (name, value) in call.headers {
            req.headers.insert(name, value.parse().unwrap());
        }
        for (name, value) in call.query {
            req.query.insert(name.into(), value);
        }
        if let Some(body) = call.body {
            req.headers
                .insert("content-type", "application/json".parse().unwrap());
            req.body = serde_json::to_vec(&body).unwrap().into();
        }
        if let Some(raw) = call.raw {
            req.body = raw.into_bytes().into();
        }
        let at = self
            .mounts
            .iter()
            .position(|m| m.router.resolve(&call.method, &call.path).is_some())
            .unwrap_or_else(|| panic!("no function serves {} {}", call.method, call.path));
        let mount = &self.mounts[at];
        let (pattern, _) = mount.router.resolve(&call.method, &call.path).unwrap();
        self.covered
            .insert((call.method.to_string(), pattern.to_string()));
        let replay = req.clone();
        let response = mount.dispatch(&self.parts.app, req).await;
        let status = response.status.as_u16();
        let body = serde_json::from_slice(&response.body).unwrap_or(Json::Null);
        let events = self.new_events();
        if call.method == Method::GET && (200..300).contains(&status) {
            self.reads.push((at, format!("GET {pattern}"), replay));
        }
        (status, body, events)
    }

    /// Starts every rate-limit window afresh (deletes the counters).
    async fn reset_rate_limits(&self) {
        let table = &self.parts.app.config.table;
        for item in self.parts.store.raw_items(table).unwrap() {
            if let Some(key) = shared::ports::db::Key::of(&item) {
                if key.pk.starts_with("RATE#") {
                    self.parts.app.db.delete(table, &key, None).await.unwrap();
                }
            }
        }
    }

    /// Each read route's successful requests, latest first, sent again twice on one
    /// new instance after the tour (so their audit events stay out of the tour's
    /// checks) until one still succeeds (a later step may have deleted what an earlier
    /// one read): the first warms the instance (session check, keys, data keys), the
    /// second is what a warm Lambda instance pays. The rate-limit windows start afresh
    /// for each route (the tour spent most of its accounts' general budget).
    async fn warm_reads(&mut self) -> Vec<super::budgets::Observed> {
        let mut observed: Vec<super::budgets::Observed> = Vec::new();
        for (at, route, req) in std::mem::take(&mut self.reads).into_iter().rev() {
            if observed
                .iter()
                .any(|o| o.route == route && (200..300).contains(&o.status))
            {
                continue;
            }
            self.reset_rate_limits().await;
            let mount = &self.mounts[at];
            let instance = self.parts.app.new_instance();
            let mut warm_up = req.clone();
            warm_up.request_id = format!("{}-warm-up", req.request_id);
            shared::ports::recording::as_function(
                mount.function,
                mount.router.dispatch(&instance, warm_up),
            )
            .await;
            let mut measured = req;
            measured.request_id = format!("{}-warm", measured.request_id);
            let (response, accesses) = shared::ports::recording::as_function(
                mount.function,
                mount.router.dispatch_recorded(&instance, measured),
            )
            .await;
            let status = response.status.as_u16();
            observed.retain(|o| o.route != route);
            observed.push(super::budgets::Observed {
                route,
                status,
                counts: shared::ports::recording::counts(&accesses),
                calls: super::budgets::describe(&accesses),
            });
        }
        observed
    }

    fn check(
        &mut self,
        label: &str,
        got: u16,
        status: u16,
        events: Vec<StoredEvent>,
        want: Vec<Want>,
    ) {
        if got != status {
            self.failures
                .push(format!("{label}: status {got}, want {status}"));
        }
        let mut got: Vec<Want> = events
            .iter()
            .map(|e| Want {
                action: e.action.as_str().into(),
                outcome: e.outcome.as_str().into(),
                actor: e.actor.user_id.clone(),
                role: e.actor.role.clone(),
                resource: e.resource.as_ref().map(|r| (r.kind.clone(), r.id.clone())),
            })
            .collect();
        let mut want = want;
        got.sort();
        want.sort();
        if got != want {
            self.failures
                .push(format!("{label}:\n    got  {got:?}\n    want {want:?}"));
        }
    }
}

fn text(value: &Json, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` in {value}"))
        .to_string()
}

fn totp_code(secret: &str, offset_secs: i64) -> String {
    let secret = totp::decode_base32(secret).unwrap();
    totp::code_at(&secret, chrono::Utc::now().timestamp() + offset_secs)
}

#[tokio::test]
pub(crate) async fn every_route_writes_the_audit_events_a_compliance_officer_expects_and_no_phi() {
    // The tour is one large future: kept on the heap, not on the test thread's stack.
    Box::pin(every_route_tour()).await
}

async fn every_route_tour() {
    let (parts, _dir) = shared::testing::local_app(Arc::new(SystemClock));
    let app = parts.app.clone();
    let mut h = Harness {
        parts,
        mounts: http_functions(),
        seen: BTreeSet::new(),
        covered: BTreeSet::new(),
        reads: Vec::new(),
        requests: 0,
        failures: Vec::new(),
    };
    // PHI and secrets used below; none may appear in any audit item.
    let mut phi: Vec<String> = vec![USER_AGENT.into(), REASON.into()];
    let mut person = |email: &str, name: &str| {
        phi.extend([email.to_string(), name.to_string()]);
    };
    person("patience.okafor@example.org", "Patience Okafor");
    person("otto.other@example.org", "Otto Other");
    person("carla.carer@example.org", "Dr Carla Carer");
    person("stan.stranger@example.org", "Dr Stan Stranger");
    person("ada.admin@example.org", "Ada Admin");
    person("lou.locked@example.org", "Lou Locked");
    person("sig.newcomer@example.org", "Sig Newcomer");
    person("nina.nurse@example.org", "Nina Invited");
    let patient = accounts::create(
        &app,
        "patience.okafor@example.org",
        "Patience Okafor",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    let other = accounts::create(
        &app,
        "otto.other@example.org",
        "Otto Other",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    let carer = accounts::create(
        &app,
        "carla.carer@example.org",
        "Dr Carla Carer",
        Role::Provider,
        true,
    )
    .await
    .unwrap();
    let stranger = accounts::create(
        &app,
        "stan.stranger@example.org",
        "Dr Stan Stranger",
        Role::Provider,
        true,
    )
    .await
    .unwrap();
    let admin = accounts::create(
        &app,
        "ada.admin@example.org",
        "Ada Admin",
        Role::Admin,
        true,
    )
    .await
    .unwrap();
    let locked = accounts::create(
        &app,
        "lou.locked@example.org",
        "Lou Locked",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    for who in [&patient, &other, &carer, &stranger, &admin, &locked] {
        phi.push(who.password.clone());
        phi.extend(who.totp_secret.clone());
    }
    care::start(&app, &carer.id, &patient.id, "admin", None)
        .await
        .unwrap();
    h.new_events(); // set-up is not under test

    let issue = |who: &Created, mfa: bool| {
        let app = app.clone();
        let (id, role) = (who.id.clone(), who.role);
        async move {
            let amr: &[&str] = if mfa {
                &["pwd", "mfa", "otp"]
            } else {
                &["pwd"]
            };
            app.tokens
                .issue(&app, &id, role, &ulid::Ulid::new().to_string(), amr)
                .await
                .unwrap()
                .0
        }
    };
    let patient_token = issue(&patient, false).await;
    let other_token = issue(&other, false).await;
    let carer_token = issue(&carer, true).await;
    let carer_no_mfa = issue(&carer, false).await;
    let stranger_token = issue(&stranger, true).await;
    let admin_token = issue(&admin, true).await;
    let admin_no_mfa = issue(&admin, false).await;
    phi.extend([
        patient_token.clone(),
        other_token.clone(),
        carer_token.clone(),
        carer_no_mfa.clone(),
        stranger_token.clone(),
        admin_token.clone(),
        admin_no_mfa.clone(),
    ]);
    let (pt, ot, ct, st, at) = (
        Some(patient_token.as_str()),
        Some(other_token.as_str()),
        Some(carer_token.as_str()),
        Some(stranger_token.as_str()),
        Some(admin_token.as_str()),
    );

    // --- health and auth: public, read-only routes write nothing --------------------
    h.step(
        "GET /health",
        call(Method::GET, "/health", None),
        200,
        vec![],
    )
    .await;
    h.step(
        "GET openapi.json",
        call(Method::GET, "/api/v1/openapi.json", None),
        200,
        vec![],
    )
    .await;
    h.step(
        "GET jwks",
        call(Method::GET, "/.well-known/jwks.json", None),
        200,
        vec![],
    )
    .await;
    h.step(
        "GET /users/me anonymous",
        call(Method::GET, "/api/v1/users/me", None),
        401,
        vec![],
    )
    .await;

    // --- sign-up and verification -------------------------------------------------------
    let new_password = "N3w-passphrase-for-sig!";
    phi.push(new_password.into());
    let (status, _, events) = h
        .send(call(Method::POST, "/api/v1/auth/signup", None).body(json!({
            "email": "sig.newcomer@example.org", "password": new_password, "full_name": "Sig Newcomer"
        })))
        .await;
    let newbie_account = shared::auth::accounts::find_by_email(&app, "sig.newcomer@example.org")
        .await
        .unwrap()
        .expect("signed up");
    let newbie = Created {
        id: newbie_account.id.clone(),
        email: "sig.newcomer@example.org".into(),
        role: Role::Patient,
        password: new_password.into(),
        totp_secret: None,
    };
    h.check(
        "POST signup",
        status,
        201,
        events,
        vec![ok("SIGNUP", &newbie, ("account", &newbie.id))],
    );
    h.step(
        "POST signup, address taken (answer and trail alike: nothing to enumerate)",
        call(Method::POST, "/api/v1/auth/signup", None).body(json!({
            "email": "otto.other@example.org", "password": new_password, "full_name": "Otto Other"
        })),
        201,
        vec![],
    )
    .await;
    // A verification token as a repeat sign-up makes it (bound to the credentials).
    let issued = one_time::prepare(
        &app,
        Purpose::VerifyEmail,
        &newbie.id,
        3600,
        vec![(
            "password_hash",
            shared::ports::db::Value::S(newbie_account.password_hash.clone()),
        )],
    );
    let restart = shared::auth::accounts::restart_signup(&app, &newbie.id, &issued.hash);
    app.db
        .transact_write(vec![restart, issued.write])
        .await
        .unwrap();
    let verify = issued.token;
    phi.push(verify.clone());
    h.step(
        "POST verify-email, bad token",
        call(Method::POST, "/api/v1/auth/verify-email", None).body(json!({"token": "not-a-token"})),
        400,
        vec![],
    )
    .await;
    h.step(
        "POST verify-email",
        call(Method::POST, "/api/v1/auth/verify-email", None).body(json!({"token": verify})),
        204,
        vec![ok("EMAIL_VERIFY", &newbie, ("account", &newbie.id))],
    )
    .await;

    // --- login, lockout, second factor -------------------------------------------------
    let wrong = "Wr0ng-password-guess";
    phi.push(wrong.into());
    h.step(
        "POST login, unknown account",
        call(Method::POST, "/api/v1/auth/login", None)
            .body(json!({"email": "nobody.here@example.org", "password": wrong})),
        401,
        vec![ev("LOGIN_FAILED", "denied", None, None)],
    )
    .await;
    phi.push("nobody.here@example.org".into());
    h.step(
        "POST login, wrong password",
        call(Method::POST, "/api/v1/auth/login", None)
            .body(json!({"email": patient.email, "password": wrong})),
        401,
        vec![denied("LOGIN_FAILED", &patient, ("account", &patient.id))],
    )
    .await;
    let login = h
        .step(
            "POST login",
            call(Method::POST, "/api/v1/auth/login", None)
                .body(json!({"email": patient.email, "password": patient.password})),
            200,
            vec![ok("LOGIN", &patient, ("account", &patient.id))],
        )
        .await;
    let (access, refresh) = (text(&login, "access_token"), text(&login, "refresh_token"));
    phi.extend([access.clone(), refresh.clone()]);
    // A second device: its session is the one logged out below (the first one's family
    // is revoked by the reuse step).
    let second = h
        .step(
            "POST login, second device",
            call(Method::POST, "/api/v1/auth/login", None)
                .body(json!({"email": patient.email, "password": patient.password})),
            200,
            vec![ok("LOGIN", &patient, ("account", &patient.id))],
        )
        .await;
    let access = text(&second, "access_token");
    phi.extend([access.clone(), text(&second, "refresh_token")]);
    for attempt in 1..=5 {
        let mut want = vec![denied("LOGIN_FAILED", &locked, ("account", &locked.id))];
        if attempt == 5 {
            want.push(denied("ACCOUNT_LOCKED", &locked, ("account", &locked.id)));
        }
        h.step(
            &format!("POST login, failure {attempt} of 5 (lockout)"),
            call(Method::POST, "/api/v1/auth/login", None)
                .body(json!({"email": locked.email, "password": wrong})),
            401,
            want,
        )
        .await;
    }
    let pending = h
        .step(
            "POST login, staff with TOTP (password step: the challenge starts)",
            call(Method::POST, "/api/v1/auth/login", None)
                .body(json!({"email": admin.email, "password": admin.password})),
            200,
            vec![ok("MFA_REQUIRED", &admin, ("account", &admin.id))],
        )
        .await;
    let mfa_token = text(&pending, "mfa_token");
    phi.push(mfa_token.clone());
    h.step(
        "POST mfa/send-code",
        call(Method::POST, "/api/v1/auth/mfa/send-code", None)
            .body(json!({"mfa_token": mfa_token})),
        202,
        vec![ok("MFA_CODE_SENT", &admin, ("account", &admin.id))],
    )
    .await;
    h.step(
        "POST mfa/challenge, wrong code",
        call(Method::POST, "/api/v1/auth/mfa/challenge", None)
            .body(json!({"mfa_token": mfa_token, "code": "000000"})),
        401,
        vec![denied("MFA_FAILED", &admin, ("account", &admin.id))],
    )
    .await;
    let admin_code = totp_code(admin.totp_secret.as_deref().unwrap(), 0);
    let tokens = h
        .step(
            "POST mfa/challenge",
            call(Method::POST, "/api/v1/auth/mfa/challenge", None)
                .body(json!({"mfa_token": mfa_token, "code": admin_code})),
            200,
            vec![
                ok("MFA_CHALLENGE", &admin, ("account", &admin.id)),
                ok("LOGIN", &admin, ("account", &admin.id)),
            ],
        )
        .await;
    phi.extend([
        text(&tokens, "access_token"),
        text(&tokens, "refresh_token"),
    ]);

    // --- sessions -----------------------------------------------------------------------
    let rotated = h
        .step(
            "POST refresh",
            call(Method::POST, "/api/v1/auth/refresh", None)
                .body(json!({"refresh_token": refresh})),
            200,
            vec![ok("TOKEN_REFRESH", &patient, ("account", &patient.id))],
        )
        .await;
    phi.extend([
        text(&rotated, "access_token"),
        text(&rotated, "refresh_token"),
    ]);
    h.step(
        "POST refresh, spent token (reuse revokes the family)",
        call(Method::POST, "/api/v1/auth/refresh", None).body(json!({"refresh_token": refresh})),
        401,
        vec![Want {
            role: None,
            ..denied("TOKEN_REUSE", &patient, ("account", &patient.id))
        }],
    )
    .await;
    h.step(
        "POST refresh, unknown token",
        call(Method::POST, "/api/v1/auth/refresh", None)
            .body(json!({"refresh_token": "bogus-refresh"})),
        401,
        vec![],
    )
    .await;
    let ticket = h
        .step(
            "POST realtime/ticket",
            call(Method::POST, "/api/v1/realtime/ticket", Some(&access)),
            201,
            vec![ok("REALTIME_TICKET", &patient, ("account", &patient.id))],
        )
        .await;
    phi.push(ticket["ticket"].as_str().unwrap_or_default().to_string());
    h.step(
        "POST logout",
        call(Method::POST, "/api/v1/auth/logout", Some(&access)),
        204,
        vec![ok("LOGOUT", &patient, ("account", &patient.id))],
    )
    .await;
    h.step(
        "POST logout-all",
        call(Method::POST, "/api/v1/auth/logout-all", pt),
        204,
        vec![ok("LOGOUT", &patient, ("account", &patient.id))],
    )
    .await;
    // That ended the patient's sessions: a new login for the steps after it.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let patient_token = issue(&patient, false).await;
    phi.push(patient_token.clone());
    let pt = Some(patient_token.as_str());

    // --- passwords ------------------------------------------------------------------------
    let changed = "Ch4nged-passphrase-okafor";
    phi.push(changed.into());
    h.step(
        "POST password/change, wrong current password",
        call(Method::POST, "/api/v1/auth/password/change", pt)
            .body(json!({"current_password": wrong, "new_password": changed})),
        401,
        vec![denied(
            "PASSWORD_CHANGE",
            &patient,
            ("account", &patient.id),
        )],
    )
    .await;
    h.step(
        "POST password/change",
        call(Method::POST, "/api/v1/auth/password/change", pt)
            .body(json!({"current_password": patient.password, "new_password": changed})),
        204,
        vec![ok("PASSWORD_CHANGE", &patient, ("account", &patient.id))],
    )
    .await;
    h.step(
        "POST password/reset-request, unknown address",
        call(Method::POST, "/api/v1/auth/password/reset-request", None)
            .body(json!({"email": "nobody.here@example.org"})),
        202,
        vec![],
    )
    .await;
    h.step(
        "POST password/reset-request",
        call(Method::POST, "/api/v1/auth/password/reset-request", None)
            .body(json!({"email": patient.email})),
        202,
        vec![ok(
            "PASSWORD_RESET_REQUEST",
            &patient,
            ("account", &patient.id),
        )],
    )
    .await;
    // A reset token as reset-request makes it (of the account's pending epoch).
    let current = shared::auth::accounts::get(&app, &patient.id)
        .await
        .unwrap()
        .unwrap();
    let issued = shared::auth::accounts::reset_token(&app, &current, 1800);
    app.db.transact_write(vec![issued.write]).await.unwrap();
    let reset = issued.token;
    let after_reset = "Re5et-passphrase-okafor";
    phi.extend([reset.clone(), after_reset.to_string()]);
    h.step(
        "POST password/reset, bad token",
        call(Method::POST, "/api/v1/auth/password/reset", None)
            .body(json!({"token": "not-a-token", "new_password": after_reset})),
        400,
        vec![],
    )
    .await;
    h.step(
        "POST password/reset",
        call(Method::POST, "/api/v1/auth/password/reset", None)
            .body(json!({"token": reset, "new_password": after_reset})),
        204,
        vec![ok("PASSWORD_RESET", &patient, ("account", &patient.id))],
    )
    .await;
    // That ended the patient's sessions: a new login for the steps after it.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let patient_token = issue(&patient, false).await;
    phi.push(patient_token.clone());
    let pt = Some(patient_token.as_str());

    // --- TOTP enrolment -------------------------------------------------------------------
    let enrolled = h
        .step(
            "POST mfa/totp/enroll",
            call(Method::POST, "/api/v1/auth/mfa/totp/enroll", pt)
                .body(json!({"password": after_reset})),
            200,
            vec![ok("MFA_ENROLL", &patient, ("account", &patient.id))],
        )
        .await;
    let secret = text(&enrolled, "secret");
    phi.extend([secret.clone(), text(&enrolled, "otpauth_uri")]);
    let confirmed = h
        .step(
            "POST mfa/totp/confirm",
            call(Method::POST, "/api/v1/auth/mfa/totp/confirm", pt)
                .body(json!({"code": totp_code(&secret, 0)})),
            200,
            vec![ok("MFA_CONFIRM", &patient, ("account", &patient.id))],
        )
        .await;
    for code in confirmed["recovery_codes"].as_array().unwrap() {
        phi.push(code.as_str().unwrap().to_string());
    }
    h.step(
        "POST mfa/totp/disable, wrong code",
        call(Method::POST, "/api/v1/auth/mfa/totp/disable", pt).body(json!({"code": "000000"})),
        400,
        vec![denied("MFA_FAILED", &patient, ("account", &patient.id))],
    )
    .await;
    h.step(
        "POST mfa/totp/disable",
        call(Method::POST, "/api/v1/auth/mfa/totp/disable", pt)
            .body(json!({"code": totp_code(&secret, 30)})),
        204,
        vec![ok("MFA_DISABLE", &patient, ("account", &patient.id))],
    )
    .await;

    // --- own account and profile ----------------------------------------------------------
    let (pa, pp) = (
        ("account", patient.id.as_str()),
        ("profile", patient.id.as_str()),
    );
    h.step(
        "GET /users/me",
        call(Method::GET, "/api/v1/users/me", pt),
        200,
        vec![ok("VIEW", &patient, pa)],
    )
    .await;
    h.step(
        "PATCH /users/me",
        call(Method::PATCH, "/api/v1/users/me", pt).body(json!({"full_name": "Patience Okafor"})),
        200,
        vec![ok("UPDATE", &patient, pa)],
    )
    .await;
    let profile = json!({
        "full_name": "Patience Okafor",
        "date_of_birth": "1984-07-14",
        "ssn": "234-56-7891",
        "phone": "+14155550123",
        "current_password": after_reset,
        "address": {"line1": "42 Wallaby Way", "city": "Port Sydneytown", "postal_code": "NW1 6XE", "country": "GB"}
    });
    phi.extend(
        [
            "1984-07-14",
            "234-56-7891",
            "234567891",
            "+14155550123",
            "42 Wallaby Way",
            "Port Sydneytown",
            "NW1 6XE",
        ]
        .map(String::from),
    );
    let mut wrong = profile.clone();
    wrong["current_password"] = json!("not the password at all");
    h.step(
        "PUT /users/me/profile, a new phone with a wrong password",
        call(Method::PUT, "/api/v1/users/me/profile", pt).body(wrong),
        401,
        vec![denied("UPDATE", &patient, pp)],
    )
    .await;
    h.step(
        "PUT /users/me/profile",
        call(Method::PUT, "/api/v1/users/me/profile", pt).body(profile),
        200,
        vec![ok("UPDATE", &patient, pp)],
    )
    .await;
    h.step(
        "GET /users/me/profile",
        call(Method::GET, "/api/v1/users/me/profile", pt),
        200,
        vec![ok("VIEW", &patient, pp)],
    )
    .await;
    h.step(
        "GET /users/me/profile?reveal=ssn",
        call(Method::GET, "/api/v1/users/me/profile", pt).query("reveal", "ssn"),
        200,
        vec![ok("REVEAL", &patient, pp)],
    )
    .await;

    // --- someone else's profile: care team, strangers, break-glass -------------------------
    let other_profile = format!("/api/v1/users/{}/profile", patient.id);
    h.step(
        "GET /users/{id}/profile, care team",
        call(Method::GET, &other_profile, ct),
        200,
        vec![ok("VIEW", &carer, pp)],
    )
    .await;
    h.step(
        "GET /users/{id}/profile, care team without MFA",
        call(Method::GET, &other_profile, Some(&carer_no_mfa)),
        403,
        vec![denied("ACCESS_DENIED", &carer, pp)],
    )
    .await;
    h.step(
        "GET /users/{id}/profile, provider without relationship",
        call(Method::GET, &other_profile, st),
        404,
        vec![denied("ACCESS_DENIED", &stranger, pp)],
    )
    .await;
    h.step(
        "GET /users/{id}/profile, another patient",
        call(Method::GET, &other_profile, ot),
        404,
        vec![denied("ACCESS_DENIED", &other, pp)],
    )
    .await;
    h.step(
        "GET /users/{id}/profile, free text instead of an id",
        call(Method::GET, "/api/v1/users/234-56-7891/profile", ot),
        404,
        vec![denied("ACCESS_DENIED", &other, ("profile", "invalid"))],
    )
    .await;
    h.step(
        "GET /users/{id}/profile, admin without a reason",
        call(Method::GET, &other_profile, at),
        400,
        vec![denied("ACCESS_DENIED", &admin, pp)],
    )
    .await;
    h.step(
        "GET /users/{id}/profile, admin break-glass",
        call(Method::GET, &other_profile, at).header("x-access-reason", REASON),
        200,
        vec![ok("BREAK_GLASS", &admin, pp)],
    )
    .await;

    // --- account administration -------------------------------------------------------------
    h.step(
        "GET /users",
        call(Method::GET, "/api/v1/users", at),
        200,
        vec![ok("VIEW", &admin, ("account_list", "all"))],
    )
    .await;
    h.step(
        "GET /users, with a reason (each patient shown is recorded on their account)",
        call(Method::GET, "/api/v1/users", at).header("x-access-reason", REASON),
        200,
        vec![
            ok("BREAK_GLASS", &admin, ("account_list", "all")),
            ok("BREAK_GLASS", &admin, ("account", &patient.id)),
            ok("BREAK_GLASS", &admin, ("account", &other.id)),
            ok("BREAK_GLASS", &admin, ("account", &locked.id)),
            ok("BREAK_GLASS", &admin, ("account", &newbie.id)),
        ],
    )
    .await;
    h.step(
        "GET /users, a reason too short",
        call(Method::GET, "/api/v1/users", at).header("x-access-reason", "why not"),
        400,
        vec![denied("ACCESS_DENIED", &admin, ("account_list", "all"))],
    )
    .await;
    h.step(
        "GET /users, patient",
        call(Method::GET, "/api/v1/users", pt),
        403,
        vec![denied("ACCESS_DENIED", &patient, ("account_list", "all"))],
    )
    .await;
    h.step(
        "GET /users, admin without MFA",
        call(Method::GET, "/api/v1/users", Some(&admin_no_mfa)),
        403,
        vec![denied("ACCESS_DENIED", &admin, ("account_list", "all"))],
    )
    .await;
    let invite =
        json!({"email": "nina.nurse@example.org", "full_name": "Nina Invited", "role": "provider"});
    h.step(
        "POST /users, provider",
        call(Method::POST, "/api/v1/users", ct).body(invite.clone()),
        403,
        vec![denied("ACCESS_DENIED", &carer, ("account_list", "all"))],
    )
    .await;
    let (status, invited, events) = h
        .send(call(Method::POST, "/api/v1/users", at).body(invite))
        .await;
    let invited_id = text(&invited, "id");
    h.check(
        "POST /users",
        status,
        201,
        events,
        vec![ok("CREATE", &admin, ("account", &invited_id))],
    );
    let target = format!("/api/v1/users/{}", newbie.id);
    let nb = ("account", newbie.id.as_str());
    h.step(
        "GET /users/{id}",
        call(Method::GET, &target, at),
        200,
        vec![ok("VIEW", &admin, nb)],
    )
    .await;
    h.step(
        "GET /users/{id}, with a reason",
        call(Method::GET, &target, at).header("x-access-reason", REASON),
        200,
        vec![ok("BREAK_GLASS", &admin, nb)],
    )
    .await;
    h.step(
        "GET /users/{id}, patient",
        call(Method::GET, &target, pt),
        403,
        vec![denied("ACCESS_DENIED", &patient, nb)],
    )
    .await;
    h.step(
        "GET /users/{id}, patient, free text",
        call(Method::GET, "/api/v1/users/sig.newcomer@example.org", pt),
        404,
        vec![denied("ACCESS_DENIED", &patient, ("account", "invalid"))],
    )
    .await;
    h.step(
        "POST /users/{id}/disable",
        call(Method::POST, format!("{target}/disable"), at),
        200,
        vec![ok("UPDATE", &admin, nb)],
    )
    .await;
    h.step(
        "POST /users/{id}/disable, provider",
        call(Method::POST, format!("{target}/disable"), ct),
        403,
        vec![denied("ACCESS_DENIED", &carer, nb)],
    )
    .await;
    h.step(
        "POST /users/{id}/enable",
        call(Method::POST, format!("{target}/enable"), at),
        200,
        vec![ok("UPDATE", &admin, nb)],
    )
    .await;
    h.step(
        "POST /users/{id}/enable, patient",
        call(Method::POST, format!("{target}/enable"), pt),
        403,
        vec![denied("ACCESS_DENIED", &patient, nb)],
    )
    .await;
    h.step(
        "PUT /users/{id}/role",
        call(Method::PUT, format!("{target}/role"), at).body(json!({"role": "patient"})),
        200,
        vec![ok("UPDATE", &admin, nb)],
    )
    .await;
    h.step(
        "PUT /users/{id}/role, patient",
        call(Method::PUT, format!("{target}/role"), pt).body(json!({"role": "admin"})),
        403,
        vec![denied("ACCESS_DENIED", &patient, nb)],
    )
    .await;

    // --- care relationships --------------------------------------------------------------------
    h.step(
        "POST /care-relationships, patient",
        call(Method::POST, "/api/v1/care-relationships", pt)
            .body(json!({"provider_id": stranger.id, "patient_id": other.id})),
        403,
        vec![denied(
            "ACCESS_DENIED",
            &patient,
            ("care_relationship", "*"),
        )],
    )
    .await;
    let (status, rel, events) = h
        .send(
            call(Method::POST, "/api/v1/care-relationships", at)
                .body(json!({"provider_id": stranger.id, "patient_id": other.id})),
        )
        .await;
    let rel_id = text(&rel, "id");
    h.check(
        "POST /care-relationships",
        status,
        201,
        events,
        vec![ok("CREATE", &admin, ("care_relationship", &rel_id))],
    );
    h.step(
        "GET /care-relationships, patient",
        call(Method::GET, "/api/v1/care-relationships", pt),
        200,
        vec![ok(
            "VIEW",
            &patient,
            ("care_relationship_list", &patient.id),
        )],
    )
    .await;
    h.step(
        "GET /care-relationships, admin about a patient",
        call(Method::GET, "/api/v1/care-relationships", at).query("patient_id", other.id.clone()),
        200,
        vec![ok("VIEW", &admin, ("care_relationship_list", &other.id))],
    )
    .await;
    h.step(
        "GET /care-relationships, provider without MFA",
        call(
            Method::GET,
            "/api/v1/care-relationships",
            Some(&carer_no_mfa),
        ),
        403,
        vec![denied(
            "ACCESS_DENIED",
            &carer,
            ("care_relationship_list", &carer.id),
        )],
    )
    .await;
    h.step(
        "GET /care-relationships, admin without MFA",
        call(
            Method::GET,
            "/api/v1/care-relationships",
            Some(&admin_no_mfa),
        )
        .query("patient_id", other.id.clone()),
        403,
        vec![denied(
            "ACCESS_DENIED",
            &admin,
            ("care_relationship_list", &other.id),
        )],
    )
    .await;
    h.step(
        "GET /care-relationships, admin, free text",
        call(Method::GET, "/api/v1/care-relationships", at).query("patient_id", "Otto Other"),
        400,
        vec![],
    )
    .await;
    let rel_path = format!("/api/v1/care-relationships/{rel_id}");
    h.step(
        "DELETE /care-relationships/{id}, not a party",
        call(Method::DELETE, &rel_path, ct),
        404,
        vec![denied(
            "ACCESS_DENIED",
            &carer,
            ("care_relationship", &rel_id),
        )],
    )
    .await;
    h.step(
        "DELETE /care-relationships/{id}, admin without MFA",
        call(Method::DELETE, &rel_path, Some(&admin_no_mfa)),
        403,
        vec![denied(
            "ACCESS_DENIED",
            &admin,
            ("care_relationship", &rel_id),
        )],
    )
    .await;
    h.step(
        "DELETE /care-relationships/{id}",
        call(Method::DELETE, &rel_path, st),
        200,
        vec![ok("DELETE", &stranger, ("care_relationship", &rel_id))],
    )
    .await;

    // --- emergency contacts and SOS ----------------------------------------------------------
    let contact = json!({"name": "Sam Sibling", "relationship": "brother", "phone": "+14155550199", "email": "sam.sibling@example.net"});
    phi.extend(
        [
            "Sam Sibling",
            "brother",
            "+14155550199",
            "sam.sibling@example.net",
        ]
        .map(String::from),
    );
    let (status, created, events) = h
        .send(call(Method::POST, "/api/v1/emergency/contacts", pt).body(contact))
        .await;
    let contact_id = text(&created, "id");
    let ec = ("emergency_contact", contact_id.as_str());
    h.check(
        "POST /emergency/contacts",
        status,
        201,
        events,
        vec![ok("CREATE", &patient, ec)],
    );
    h.step(
        "GET /emergency/contacts",
        call(Method::GET, "/api/v1/emergency/contacts", pt),
        200,
        vec![ok("VIEW", &patient, ("emergency_contact", "*"))],
    )
    .await;
    let contact_path = format!("/api/v1/emergency/contacts/{contact_id}");
    h.step(
        "GET /emergency/contacts/{id}",
        call(Method::GET, &contact_path, pt),
        200,
        vec![ok("VIEW", &patient, ec)],
    )
    .await;
    h.step(
        "GET /emergency/contacts/{id}, another patient (keyed by the caller: nothing of the owner's is touched)",
        call(Method::GET, &contact_path, ot),
        404,
        vec![],
    )
    .await;
    let updated =
        json!({"name": "Sam Sibling", "relationship": "brother", "phone": "+14155550177"});
    phi.push("+14155550177".into());
    h.step(
        "PUT /emergency/contacts/{id}",
        call(Method::PUT, &contact_path, pt).body(updated),
        200,
        vec![ok("UPDATE", &patient, ec)],
    )
    .await;
    let sos_message = "crushing chest pain by the boating lake";
    phi.push(sos_message.into());
    let sos =
        json!({"message": sos_message, "location": {"latitude": 51.5055, "longitude": -0.1655}});
    let (status, raised, events) = h
        .send(call(Method::POST, "/api/v1/emergency/sos", pt).body(sos.clone()))
        .await;
    let sos_id = text(&raised, "sos_id");
    h.check(
        "POST /emergency/sos",
        status,
        202,
        events,
        vec![ok("SOS", &patient, ("sos", &sos_id))],
    );
    h.step(
        "POST /emergency/sos, repeated (joins the open alert)",
        call(Method::POST, "/api/v1/emergency/sos", pt).body(sos),
        202,
        vec![ok("SOS", &patient, ("sos", &sos_id))],
    )
    .await;
    h.step(
        "DELETE /emergency/contacts/{id}",
        call(Method::DELETE, &contact_path, pt),
        204,
        vec![ok("DELETE", &patient, ec)],
    )
    .await;

    // --- appointments ---------------------------------------------------------------------------
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let weekly: Vec<Json> = days
        .iter()
        .map(|d| json!({"day": d, "start": "00:00", "end": "23:45"}))
        .collect();
    let availability = json!({"time_zone": "UTC", "slot_minutes": 30, "weekly": weekly});
    h.step(
        "PUT /providers/me/availability, patient",
        call(Method::PUT, "/api/v1/providers/me/availability", pt).body(availability.clone()),
        403,
        vec![denied(
            "ACCESS_DENIED",
            &patient,
            ("provider_listing", &patient.id),
        )],
    )
    .await;
    h.step(
        "PUT /providers/me/availability",
        call(Method::PUT, "/api/v1/providers/me/availability", st).body(availability),
        200,
        vec![ok("UPDATE", &stranger, ("provider_listing", &stranger.id))],
    )
    .await;
    h.step(
        "GET /providers (public scheduling data: not audited)",
        call(Method::GET, "/api/v1/providers", pt),
        200,
        vec![],
    )
    .await;
    let slots = h
        .step(
            "GET /providers/{id}/slots (not audited)",
            call(
                Method::GET,
                format!("/api/v1/providers/{}/slots", stranger.id),
                pt,
            ),
            200,
            vec![],
        )
        .await;
    // Far enough ahead for a patient's cancel (2 hours' notice).
    let start = text(&slots["items"][8], "start");
    let visit_reason = "Patience Okafor: chest pain since Tuesday";
    phi.push(visit_reason.into());
    let (status, booked, events) = h
        .send(
            call(Method::POST, "/api/v1/appointments", pt)
                .header("idempotency-key", "audit-step-booking")
                .body(json!({
            "provider_id": stranger.id, "start": start, "consultation_type": "video", "reason": visit_reason})),
        )
        .await;
    let appointment_id = text(&booked, "id");
    let ap = ("appointment", appointment_id.as_str());
    h.check(
        "POST /appointments",
        status,
        201,
        events,
        vec![ok("CREATE", &patient, ap)],
    );
    h.step(
        "POST /appointments, the same slot taken (nothing written, nothing recorded)",
        call(Method::POST, "/api/v1/appointments", ot).body(json!({
            "provider_id": stranger.id, "start": start, "consultation_type": "video"})),
        409,
        vec![],
    )
    .await;
    let appointment_path = format!("/api/v1/appointments/{appointment_id}");
    h.step(
        "GET /appointments/{id}, another patient",
        call(Method::GET, &appointment_path, ot),
        404,
        vec![denied("ACCESS_DENIED", &other, ap)],
    )
    .await;
    h.step(
        "GET /appointments/{id}",
        call(Method::GET, &appointment_path, pt),
        200,
        vec![ok("VIEW", &patient, ap)],
    )
    .await;
    h.step(
        "GET /appointments/{id}, admin with a reason",
        call(Method::GET, &appointment_path, at).header("x-access-reason", REASON),
        200,
        vec![ok("BREAK_GLASS", &admin, ap)],
    )
    .await;
    h.step(
        "GET /appointments",
        call(Method::GET, "/api/v1/appointments", pt),
        200,
        vec![ok("VIEW", &patient, ("appointment_list", &patient.id))],
    )
    .await;
    h.step(
        "PATCH /appointments/{id}, confirm",
        call(Method::PATCH, &appointment_path, st).body(json!({"status": "confirmed"})),
        200,
        vec![ok("UPDATE", &stranger, ap)],
    )
    .await;
    // Confirmed: the provider now cares for the patient and books for them.
    let (status, for_patient, events) = h
        .send(call(Method::POST, "/api/v1/appointments", st).body(json!({
            "provider_id": stranger.id, "patient_id": patient.id, "start": text(&slots["items"][10], "start"),
            "consultation_type": "video"})))
        .await;
    let second = text(&for_patient, "id");
    h.check(
        "POST /appointments, a provider for a patient in their care",
        status,
        201,
        events,
        vec![ok("CREATE", &stranger, ("appointment", &second))],
    );
    h.step(
        "PATCH /appointments/{id}, a transition the machine refuses",
        call(Method::PATCH, &appointment_path, pt).body(json!({"status": "completed"})),
        422,
        vec![],
    )
    .await;
    h.step(
        "PATCH /appointments/{id}, cancel",
        call(Method::PATCH, &appointment_path, pt).body(json!({"status": "cancelled"})),
        200,
        vec![ok("UPDATE", &patient, ap)],
    )
    .await;

    // --- billing ------------------------------------------------------------------------------
    h.step(
        "PUT /providers/me/prices",
        call(Method::PUT, "/api/v1/providers/me/prices", st)
            .body(json!({"consultation_type": "video", "amount": 5000, "currency": "usd"})),
        200,
        vec![ok("UPDATE", &stranger, ("price", &stranger.id))],
    )
    .await;
    h.step(
        "POST /payments, an amount named by the client (nothing written)",
        call(Method::POST, "/api/v1/payments", pt)
            .body(json!({"appointment_id": second, "amount": 1})),
        422,
        vec![],
    )
    .await;
    h.step(
        "POST /payments, another patient's appointment",
        call(Method::POST, "/api/v1/payments", ot).body(json!({"appointment_id": second})),
        404,
        vec![denied("ACCESS_DENIED", &other, ("appointment", &second))],
    )
    .await;
    let (status, paid, events) = h
        .send(call(Method::POST, "/api/v1/payments", pt).body(json!({"appointment_id": second})))
        .await;
    let payment_id = text(&paid, "id");
    let pay = ("payment", payment_id.as_str());
    h.check(
        "POST /payments",
        status,
        201,
        events,
        vec![ok("CREATE", &patient, pay)],
    );
    // Confirmed at (the fake) Stripe; its signed event reaches the webhook.
    let from = h.parts.stripe.deliveries().len();
    app.payments
        .confirm_intent(&text(&paid, "stripe_payment_intent_id"))
        .await
        .unwrap();
    let success = h.parts.stripe.deliveries()[from].clone();
    let by_stripe = Want {
        action: "UPDATE".into(),
        outcome: "success".into(),
        actor: None,
        role: Some("stripe".into()),
        resource: Some(("payment".into(), payment_id.clone())),
    };
    h.step(
        "POST /webhooks/stripe, forged (nothing written, nothing recorded)",
        call(Method::POST, "/api/v1/webhooks/stripe", None)
            .raw(&success.body)
            .header("stripe-signature", "t=1,v1=00"),
        400,
        vec![],
    )
    .await;
    h.step(
        "POST /webhooks/stripe, payment_intent.succeeded",
        call(Method::POST, "/api/v1/webhooks/stripe", None)
            .raw(&success.body)
            .header("stripe-signature", &success.signature),
        200,
        vec![by_stripe],
    )
    .await;
    h.step(
        "POST /webhooks/stripe, replayed (processed once)",
        call(Method::POST, "/api/v1/webhooks/stripe", None)
            .raw(&success.body)
            .header("stripe-signature", &success.signature),
        200,
        vec![],
    )
    .await;
    let payment_path = format!("/api/v1/payments/{payment_id}");
    h.step(
        "GET /payments/{id}",
        call(Method::GET, &payment_path, pt),
        200,
        vec![ok("VIEW", &patient, pay)],
    )
    .await;
    h.step(
        "GET /payments/{id}, another patient",
        call(Method::GET, &payment_path, ot),
        404,
        vec![denied("ACCESS_DENIED", &other, pay)],
    )
    .await;
    h.step(
        "GET /appointments/{id}/payments",
        call(
            Method::GET,
            format!("/api/v1/appointments/{second}/payments"),
            pt,
        ),
        200,
        vec![ok("VIEW", &patient, ("appointment_payments", &second))],
    )
    .await;
    h.step(
        "GET /payments/{id}/receipt",
        call(Method::GET, format!("{payment_path}/receipt"), pt),
        200,
        vec![ok("VIEW", &patient, pay)],
    )
    .await;
    h.step(
        "POST /payments/{id}/refunds, the patient",
        call(Method::POST, format!("{payment_path}/refunds"), pt)
            .body(json!({"amount": 1000, "reason": "requested_by_customer"})),
        403,
        vec![denied("ACCESS_DENIED", &patient, pay)],
    )
    .await;
    let (status, refund, events) = h
        .send(
            call(Method::POST, format!("{payment_path}/refunds"), st)
                .body(json!({"amount": 1000, "reason": "requested_by_customer"})),
        )
        .await;
    let refund_id = text(&refund, "id");
    h.check(
        "POST /payments/{id}/refunds",
        status,
        201,
        events,
        vec![
            ok("CREATE", &stranger, ("refund", &refund_id)),
            ok("UPDATE", &stranger, ("refund", &refund_id)),
        ],
    );
    h.step(
        "POST /payments/{id}/refunds, above what is left (nothing written)",
        call(Method::POST, format!("{payment_path}/refunds"), st)
            .body(json!({"amount": 4001, "reason": "requested_by_customer"})),
        422,
        vec![],
    )
    .await;
    h.step(
        "GET /billing/transactions",
        call(Method::GET, "/api/v1/billing/transactions", pt),
        200,
        vec![ok("VIEW", &patient, ("billing_history", &patient.id))],
    )
    .await;

    // --- video (Twilio): its own future, boxed (this one is large enough) --------------
    Box::pin(video_steps(
        &mut h,
        &app,
        &mut phi,
        [&patient, &other, &admin],
        [&patient_token, &other_token, &admin_token],
    ))
    .await;

    // --- medications --------------------------------------------------------------------------
    let drug = "Sertraline for Patience Okafor";
    phi.extend([
        drug.to_string(),
        "take with breakfast, never with grapefruit".into(),
    ]);
    let med = json!({"patient_id": patient.id, "name": drug, "dosage": "50 mg", "form": "tablet",
        "route": "oral", "instructions": "take with breakfast, never with grapefruit",
        "schedule": {"kind": "times_of_day", "times": ["08:00"]}, "starts_on": "2026-01-01", "refills": 2});
    let (status, created, events) = h
        .send(call(Method::POST, "/api/v1/medications", ct).body(med.clone()))
        .await;
    let med_id = text(&created, "id");
    let mr = ("medication", med_id.as_str());
    h.check(
        "POST /medications, prescribed by the carer",
        status,
        201,
        events,
        vec![ok("CREATE", &carer, mr)],
    );
    // The stranger's relationship with `other` was ended above (the one with `patient`
    // was started by the confirmed appointment).
    let mut foreign = med.clone();
    foreign["patient_id"] = json!(other.id);
    h.step(
        "POST /medications, a provider without a relationship",
        call(Method::POST, "/api/v1/medications", st).body(foreign),
        404,
        vec![denied(
            "ACCESS_DENIED",
            &stranger,
            ("medication", &other.id),
        )],
    )
    .await;
    h.step(
        "GET /medications",
        call(Method::GET, "/api/v1/medications", pt),
        200,
        vec![ok("VIEW", &patient, ("patient_medications", &patient.id))],
    )
    .await;
    let med_path = format!("/api/v1/medications/{med_id}");
    h.step(
        "GET /medications/{id}, the carer",
        call(Method::GET, &med_path, ct),
        200,
        vec![ok("VIEW", &carer, mr)],
    )
    .await;
    h.step(
        "GET /medications/{id}, another patient",
        call(Method::GET, &med_path, ot),
        404,
        vec![denied("ACCESS_DENIED", &other, ("medication", &patient.id))],
    )
    .await;
    h.step(
        "PATCH /medications/{id}",
        call(Method::PATCH, &med_path, ct).body(json!({"dosage": "100 mg"})),
        200,
        vec![ok("UPDATE", &carer, mr)],
    )
    .await;
    let dose = json!({"scheduled_for": "2026-01-01T08:00:00Z", "status": "taken"});
    h.step(
        "POST /medications/{id}/doses",
        call(Method::POST, format!("{med_path}/doses"), pt).body(dose.clone()),
        201,
        vec![ok("CREATE", &patient, mr)],
    )
    .await;
    h.step(
        "POST /medications/{id}/doses, repeated (the first answer, recorded as a read)",
        call(Method::POST, format!("{med_path}/doses"), pt).body(dose),
        200,
        vec![ok("VIEW", &patient, mr)],
    )
    .await;
    h.step(
        "GET /medications/{id}/adherence",
        call(Method::GET, format!("{med_path}/adherence"), ct)
            .query("from", "2026-01-01T00:00:00Z")
            .query("to", "2026-01-03T00:00:00Z"),
        200,
        vec![ok("VIEW", &carer, mr)],
    )
    .await;
    h.step(
        "POST /medications/{id}/discontinue",
        call(Method::POST, format!("{med_path}/discontinue"), pt),
        200,
        vec![ok("UPDATE", &patient, mr)],
    )
    .await;

    // --- devices (observations) ---------------------------------------------------------------
    // Boxed inside a plain function: the step future is built in that function's
    // frame, not in this one's (already near the 2 MiB stack in debug builds).
    observation_steps(&mut h, [&patient, &carer, &other], [pt, ct, ot]).await;

    // --- secure notes ---------------------------------------------------------------------------
    // Boxed: the steps' futures stay off this test's (already large) stack.
    Box::pin(secure_notes_steps(
        &mut h,
        &mut phi,
        [&patient, &carer, &stranger, &other],
        [pt, ct, st, ot],
        &second,
    ))
    .await;

    // --- documents (boxed: a test's future lives on its thread's stack) ---------------------
    Box::pin(document_steps(
        &mut h,
        &mut phi,
        [&patient, &other, &carer, &stranger],
        [pt, ot, ct, st],
    ))
    .await;

    // --- messages ------------------------------------------------------------------------------
    let said = "Patience Okafor: the rash is spreading";
    phi.push(said.to_string());
    let (status, created, events) = h
        .send(
            call(Method::POST, "/api/v1/conversations", pt)
                .body(json!({"participant_ids": [carer.id]})),
        )
        .await;
    let conversation_id = text(&created, "id");
    let cv = ("conversation", conversation_id.as_str());
    h.check(
        "POST /conversations",
        status,
        201,
        events,
        vec![ok("CREATE", &patient, cv)],
    );
    h.step(
        "POST /conversations, with another patient",
        call(Method::POST, "/api/v1/conversations", pt)
            .body(json!({"participant_ids": [other.id]})),
        422,
        vec![],
    )
    .await;
    h.step(
        "GET /conversations",
        call(Method::GET, "/api/v1/conversations", ct),
        200,
        vec![ok("VIEW", &carer, ("conversations", &carer.id))],
    )
    .await;
    let conv_path = format!("/api/v1/conversations/{conversation_id}");
    h.step(
        "GET /conversations/{id}",
        call(Method::GET, &conv_path, pt),
        200,
        vec![ok("VIEW", &patient, cv)],
    )
    .await;
    h.step(
        "GET /conversations/{id}, another patient",
        call(Method::GET, &conv_path, ot),
        404,
        vec![denied("ACCESS_DENIED", &other, cv)],
    )
    .await;
    let message = json!({"client_message_id": "m-1", "body": said});
    h.step(
        "POST /conversations/{id}/messages",
        call(Method::POST, format!("{conv_path}/messages"), pt).body(message.clone()),
        201,
        vec![ok("CREATE", &patient, cv)],
    )
    .await;
    h.step(
        "POST /conversations/{id}/messages, resent (the stored message, recorded as a read)",
        call(Method::POST, format!("{conv_path}/messages"), pt).body(message),
        200,
        vec![ok("VIEW", &patient, cv)],
    )
    .await;
    h.step(
        "POST /conversations/{id}/messages, a provider outside it",
        call(Method::POST, format!("{conv_path}/messages"), st)
            .body(json!({"client_message_id": "s-1", "body": "hello"})),
        404,
        vec![denied("ACCESS_DENIED", &stranger, cv)],
    )
    .await;
    h.step(
        "GET /conversations/{id}/messages",
        call(Method::GET, format!("{conv_path}/messages"), ct),
        200,
        vec![ok("VIEW", &carer, cv)],
    )
    .await;
    h.step(
        "POST /conversations/{id}/read",
        call(Method::POST, format!("{conv_path}/read"), ct).body(json!({"up_to": 1})),
        200,
        vec![ok("UPDATE", &carer, cv)],
    )
    .await;
    h.step(
        "GET /sync",
        call(Method::GET, "/api/v1/sync", ct).query("since", "0"),
        200,
        vec![ok("VIEW", &carer, ("message_sync", &carer.id))],
    )
    .await;
    h.step(
        "GET /sync, an admin",
        call(Method::GET, "/api/v1/sync", at),
        403,
        vec![denied("ACCESS_DENIED", &admin, ("message_sync", "*"))],
    )
    .await;

    // --- the audit function itself ------------------------------------------------------------
    h.step(
        "GET /audit, patient",
        call(Method::GET, "/api/v1/audit", pt).query("actor", patient.id.clone()),
        403,
        vec![denied("ACCESS_DENIED", &patient, ("audit_log", "*"))],
    )
    .await;
    h.step(
        "GET /audit, admin without MFA",
        call(Method::GET, "/api/v1/audit", Some(&admin_no_mfa)).query("action", "LOGIN"),
        403,
        vec![denied("ACCESS_DENIED", &admin, ("audit_log", "*"))],
    )
    .await;
    h.step(
        "GET /audit, two filters",
        call(Method::GET, "/api/v1/audit", at)
            .query("action", "LOGIN")
            .query("actor", patient.id.clone()),
        400,
        vec![],
    )
    .await;
    let trail = h
        .step(
            "GET /audit?resource=profile",
            call(Method::GET, "/api/v1/audit", at)
                .query("resource_type", "profile")
                .query("resource_id", patient.id.clone()),
            200,
            vec![ok(
                "VIEW",
                &admin,
                ("audit_log", &format!("resource:profile:{}", patient.id)),
            )],
        )
        .await;
    let items = trail["items"].as_array().unwrap();
    let glass: Vec<&Json> = items
        .iter()
        .filter(|i| i["action"] == "BREAK_GLASS")
        .collect();
    assert_eq!(glass.len(), 1, "{trail}");
    assert_eq!(glass[0]["has_reason"], true);
    assert_eq!(glass[0]["actor"]["user_id"], admin.id.as_str());
    assert!(glass[0].get("reason").is_none() && glass[0].get("user_agent").is_none());
    h.step(
        "GET /audit?action=LOGIN_FAILED",
        call(Method::GET, "/api/v1/audit", at)
            .query("action", "LOGIN_FAILED")
            .query("limit", "2"),
        200,
        vec![ok("VIEW", &admin, ("audit_log", "action:LOGIN_FAILED"))],
    )
    .await;
    let log = h
        .step(
            "GET /users/me/access-log",
            // One page of everything: the notes' entries are the newest.
            call(Method::GET, "/api/v1/users/me/access-log", pt).query("limit", "100"),
            200,
            vec![ok("VIEW", &patient, ("access_log", &patient.id))],
        )
        .await;
    let actors: BTreeSet<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["actor"]["user_id"].as_str())
        .collect();
    assert!(
        !actors.contains(patient.id.as_str()),
        "only others' accesses: {log}"
    );
    for who in [&carer, &stranger, &other, &admin] {
        assert!(
            actors.contains(who.id.as_str()),
            "{} missing from {log}",
            who.role.as_str()
        );
    }

    // Every route was driven.
    let served: BTreeSet<(String, String)> = h
        .mounts
        .iter()
        .flat_map(|m| m.router.table())
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&h.covered).collect();
    assert!(missing.is_empty(), "routes no step drives: {missing:?}");
    let reads: BTreeSet<String> = served
        .iter()
        .filter(|(method, _)| method == "GET")
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    let read_routes = reads;
    assert!(
        h.failures.is_empty(),
        "audit events per route:\n{}",
        h.failures.join("\n")
    );

    // No PHI, password or token in any attribute of any audit item.
    let items = h.parts.store.raw_items(&app.config.audit_table).unwrap();
    assert!(items.len() > 60, "{} events", items.len());
    let mut leaks = Vec::new();
    for item in &items {
        scan(item, &phi, &mut leaks);
    }
    assert!(
        leaks.is_empty(),
        "PHI in the audit table:\n{}",
        leaks.join("\n")
    );
    // The user agent and the reason are there, sealed.
    let glass = items
        .iter()
        .find(|i| i.get(attr::ACTION).and_then(Value::as_str) == Some("BREAK_GLASS"))
        .unwrap();
    assert!(matches!(glass.get(attr::REASON), Some(Value::B(_))));
    assert!(matches!(glass.get(attr::USER_AGENT), Some(Value::B(_))));

    // Every read route within its warm budget (after the checks above: the replays
    // write audit events of their own). A contact and a document again, read once,
    // since later steps deleted the ones read above.
    Box::pin(h.reset_rate_limits()).await;
    let contact =
        json!({"name": "Budget Contact", "relationship": "friend", "phone": "+14155550188"});
    let (status, contact, _) = h
        .send(call(Method::POST, "/api/v1/emergency/contacts", pt).body(contact))
        .await;
    assert_eq!(status, 201, "{contact}");
    let contact_path = format!("/api/v1/emergency/contacts/{}", text(&contact, "id"));
    assert_eq!(h.send(call(Method::GET, contact_path, pt)).await.0, 200);
    let bytes = docare_e2e::pdf(2_000, "budget");
    let upload = json!({"name": "budget.pdf", "content_type": "application/pdf",
        "size": bytes.len(), "category": "lab_result"});
    let (status, ticket, _) = h
        .send(call(Method::POST, "/api/v1/documents", pt).body(upload))
        .await;
    assert_eq!(status, 201, "{ticket}");
    docare_e2e::upload_and_scan(&h.parts.app.clone(), &ticket, &bytes).await;
    let document_path = format!("/api/v1/documents/{}", text(&ticket, "id"));
    for path in [document_path.clone(), format!("{document_path}/content")] {
        assert_eq!(h.send(call(Method::GET, path, pt)).await.0, 200);
    }
    let observed = Box::pin(h.warm_reads()).await;
    let over = super::budgets::check(&read_routes, &observed);
    assert!(over.is_empty(), "warm read budgets:\n{}", over.join("\n"));
}

/// The secure notes' steps (`docs/notes.md`): each access records the note's event
/// (with the sealed reason) and, when someone other than the patient acts, one on the
/// patient's `clinical_notes` (their access log). `people`: patient, carer, stranger
/// (both in the patient's care) and another patient; `tokens` theirs; `second` an
/// appointment of the patient with the stranger.
async fn secure_notes_steps(
    h: &mut Harness,
    phi: &mut Vec<String>,
    people: [&Created; 4],
    tokens: [Option<&str>; 4],
    second: &str,
) {
    let [patient, carer, stranger, other] = people;
    let [pt, ct, st, ot] = tokens;
    let note_text = "Patience Okafor disclosed panic attacks at work";
    phi.push(note_text.to_string());
    let cn = ("clinical_notes", patient.id.as_str());
    let (status, created, events) = h
        .send(call(Method::POST, "/api/v1/secure-notes", st).body(json!({
            "appointment_id": second, "note_type": "progress", "content": note_text,
            "access_reason": REASON})))
        .await;
    let note_id = text(&created, "id");
    let nr = ("secure_note", note_id.as_str());
    h.check(
        "POST /secure-notes",
        status,
        201,
        events,
        vec![ok("CREATE", stranger, nr), ok("CREATE", stranger, cn)],
    );
    h.step(
        "POST /secure-notes, a patient",
        call(Method::POST, "/api/v1/secure-notes", pt).body(json!({
            "appointment_id": second, "note_type": "progress", "content": "x",
            "access_reason": REASON})),
        403,
        vec![denied("ACCESS_DENIED", patient, ("secure_note", "*"))],
    )
    .await;
    let note_path = format!("/api/v1/secure-notes/{note_id}");
    h.step(
        "POST /secure-notes/{id}/access, without a reason (nothing read, nothing recorded)",
        call(Method::POST, format!("{note_path}/access"), ct).body(json!({})),
        400,
        vec![],
    )
    .await;
    h.step(
        "POST /secure-notes/{id}/access, another provider of the care team",
        call(Method::POST, format!("{note_path}/access"), ct)
            .body(json!({"access_reason": REASON})),
        200,
        vec![ok("VIEW", carer, nr), ok("VIEW", carer, cn)],
    )
    .await;
    h.step(
        "POST /secure-notes/{id}/access, another patient",
        call(Method::POST, format!("{note_path}/access"), ot)
            .body(json!({"access_reason": REASON})),
        404,
        vec![denied("ACCESS_DENIED", other, nr)],
    )
    .await;
    h.step(
        "PUT /secure-notes/{id}, an addendum by the carer",
        call(Method::PUT, &note_path, ct).body(json!({"content": "Addendum: sleeping better",
            "expected_version": 1, "access_reason": REASON})),
        200,
        vec![ok("UPDATE", carer, nr), ok("UPDATE", carer, cn)],
    )
    .await;
    h.step(
        "PUT /secure-notes/{id}, from a stale version (nothing written)",
        call(Method::PUT, &note_path, st).body(json!({"content": "Late edit",
            "expected_version": 1, "access_reason": REASON})),
        409,
        vec![],
    )
    .await;
    h.step(
        "GET /secure-notes/{id}/versions",
        call(Method::GET, format!("{note_path}/versions"), st),
        200,
        vec![ok("VIEW", stranger, nr), ok("VIEW", stranger, cn)],
    )
    .await;
    h.step(
        "POST /secure-notes/{id}/versions/{version}/access",
        call(Method::POST, format!("{note_path}/versions/1/access"), st)
            .body(json!({"access_reason": REASON})),
        200,
        vec![ok("VIEW", stranger, nr), ok("VIEW", stranger, cn)],
    )
    .await;
    h.step(
        "PUT /secure-notes/{id}/share, not the author",
        call(Method::PUT, format!("{note_path}/share"), ct)
            .body(json!({"shared_with_patient": true, "access_reason": REASON})),
        403,
        vec![denied("ACCESS_DENIED", carer, nr)],
    )
    .await;
    h.step(
        "PUT /secure-notes/{id}/share",
        call(Method::PUT, format!("{note_path}/share"), st)
            .body(json!({"shared_with_patient": true, "access_reason": REASON})),
        200,
        vec![ok("UPDATE", stranger, nr), ok("UPDATE", stranger, cn)],
    )
    .await;
    h.step(
        "POST /secure-notes/{id}/access, the patient (shared: no access-log entry of their own)",
        call(Method::POST, format!("{note_path}/access"), pt)
            .body(json!({"access_reason": "Reading my own session note"})),
        200,
        vec![ok("VIEW", patient, nr)],
    )
    .await;
    h.step(
        "POST /appointments/{id}/secure-notes/access",
        call(
            Method::POST,
            format!("/api/v1/appointments/{second}/secure-notes/access"),
            ct,
        )
        .body(json!({"access_reason": REASON})),
        200,
        vec![
            ok("VIEW", carer, ("appointment_secure_notes", second)),
            ok("VIEW", carer, cn),
        ],
    )
    .await;
    h.step(
        "GET /secure-notes/{id}/audit-logs, not the author",
        call(Method::GET, format!("{note_path}/audit-logs"), ct),
        404,
        vec![denied("ACCESS_DENIED", carer, nr)],
    )
    .await;
    let trail = h
        .step(
            "GET /secure-notes/{id}/audit-logs",
            call(Method::GET, format!("{note_path}/audit-logs"), st),
            200,
            vec![ok(
                "VIEW",
                stranger,
                ("audit_log", &format!("resource:secure_note:{note_id}")),
            )],
        )
        .await;
    let trail_items = trail["items"].as_array().unwrap();
    assert!(
        trail_items
            .iter()
            .any(|i| i["action"] == "UPDATE" && i["has_reason"] == true),
        "{trail}"
    );
    assert!(
        trail_items.iter().all(|i| i.get("reason").is_none()),
        "{trail}"
    );
    h.step(
        "PUT /secure-notes/{id}/archive",
        call(Method::PUT, format!("{note_path}/archive"), st)
            .body(json!({"access_reason": REASON})),
        200,
        vec![ok("ARCHIVE", stranger, nr), ok("ARCHIVE", stranger, cn)],
    )
    .await;
}

/// The documents routes (and the scanner's event on an upload).
async fn document_steps(
    h: &mut Harness,
    phi: &mut Vec<String>,
    [patient, other, carer, stranger]: [&Created; 4],
    [pt, ot, ct, st]: [Option<&str>; 4],
) {
    let file_name = "Patience Okafor biopsy results.pdf";
    let marker = "Patience Okafor biopsy: benign";
    phi.extend([file_name.to_string(), marker.to_string()]);
    let pdf = docare_e2e::pdf(200_000, marker);
    let upload = json!({"name": file_name, "content_type": "application/pdf",
        "size": pdf.len(), "category": "lab_result"});
    let (status, ticket, events) = h
        .send(call(Method::POST, "/api/v1/documents", pt).body(upload.clone()))
        .await;
    let doc_id = text(&ticket, "id");
    let dr = ("document", doc_id.as_str());
    h.check(
        "POST /documents, the patient",
        status,
        201,
        events,
        vec![ok("CREATE", patient, dr)],
    );
    let mut for_patient = upload.clone();
    for_patient["patient_id"] = json!(patient.id);
    // The stranger's relationship with `other` was ended above.
    let mut foreign = upload.clone();
    foreign["patient_id"] = json!(other.id);
    let (status, carer_ticket, events) = h
        .send(call(Method::POST, "/api/v1/documents", ct).body(for_patient.clone()))
        .await;
    h.check(
        "POST /documents, the carer for the patient",
        status,
        201,
        events,
        vec![ok(
            "CREATE",
            carer,
            ("document", &text(&carer_ticket, "id")),
        )],
    );
    h.step(
        "POST /documents, a provider without a relationship",
        call(Method::POST, "/api/v1/documents", st).body(foreign),
        404,
        vec![denied("ACCESS_DENIED", stranger, ("document", &other.id))],
    )
    .await;
    // The upload and its scan (S3 and the scanner worker, not a route).
    docare_e2e::upload_and_scan(&h.parts.app.clone(), &ticket, &pdf).await;
    let scanned: Vec<Want> = h
        .new_events()
        .iter()
        .map(|e| Want {
            action: e.action.as_str().into(),
            outcome: e.outcome.as_str().into(),
            actor: e.actor.user_id.clone(),
            role: e.actor.role.clone(),
            resource: e.resource.as_ref().map(|r| (r.kind.clone(), r.id.clone())),
        })
        .collect();
    let by_scanner = Want {
        action: "UPDATE".into(),
        outcome: "success".into(),
        actor: None,
        role: Some("scanner".into()),
        resource: Some(("document".into(), doc_id.clone())),
    };
    if scanned != vec![by_scanner] {
        h.failures
            .push(format!("the scan of an upload: got {scanned:?}"));
    }
    h.step(
        "GET /documents?category=, the patient",
        call(Method::GET, "/api/v1/documents", pt).query("category", "lab_result"),
        200,
        vec![ok("VIEW", patient, ("patient_documents", &patient.id))],
    )
    .await;
    h.step(
        "GET /documents, the carer (shared with them)",
        call(Method::GET, "/api/v1/documents", ct),
        200,
        vec![ok("VIEW", carer, ("shared_documents", &carer.id))],
    )
    .await;
    let doc_path = format!("/api/v1/documents/{doc_id}");
    h.step(
        "GET /documents/{id}",
        call(Method::GET, &doc_path, pt),
        200,
        vec![ok("VIEW", patient, dr)],
    )
    .await;
    h.step(
        "GET /documents/{id}, another patient",
        call(Method::GET, &doc_path, ot),
        404,
        vec![denied("ACCESS_DENIED", other, dr)],
    )
    .await;
    h.step(
        "GET /documents/{id}/content",
        call(Method::GET, format!("{doc_path}/content"), pt),
        200,
        vec![ok("EXPORT", patient, dr)],
    )
    .await;
    h.step(
        "GET /documents/{id}/content, the carer before it is shared",
        call(Method::GET, format!("{doc_path}/content"), ct),
        404,
        vec![denied("ACCESS_DENIED", carer, dr)],
    )
    .await;
    h.step(
        "POST /documents/{id}/share",
        call(Method::POST, format!("{doc_path}/share"), pt).body(json!({"provider_id": carer.id})),
        200,
        vec![ok("UPDATE", patient, dr)],
    )
    .await;
    h.step(
        "GET /documents/{id}/content, the carer it was shared with",
        call(Method::GET, format!("{doc_path}/content"), ct).header("range", "bytes=0-99"),
        206,
        vec![ok("EXPORT", carer, dr)],
    )
    .await;
    h.step(
        "POST /documents/{id}/share, by the carer (the owner only)",
        call(Method::POST, format!("{doc_path}/share"), ct)
            .body(json!({"provider_id": stranger.id})),
        403,
        vec![denied("ACCESS_DENIED", carer, dr)],
    )
    .await;
    h.step(
        "DELETE /documents/{id}",
        call(Method::DELETE, &doc_path, pt),
        204,
        vec![ok("DELETE", patient, dr)],
    )
    .await;
    h.step(
        "GET /documents/{id}, deleted",
        call(Method::GET, &doc_path, pt),
        404,
        vec![denied("ACCESS_DENIED", patient, dr)],
    )
    .await;
}

fn scan(item: &Item, phi: &[String], leaks: &mut Vec<String>) {
    for (name, value) in item {
        scan_value(name, value, phi, leaks);
    }
}

fn scan_value(name: &str, value: &Value, phi: &[String], leaks: &mut Vec<String>) {
    let bytes: &[u8] = match value {
        Value::S(s) => s.as_bytes(),
        Value::B(b) => b,
        Value::L(list) => {
            for v in list {
                scan_value(name, v, phi, leaks);
            }
            return;
        }
        Value::M(map) => {
            scan(map, phi, leaks);
            return;
        }
        Value::N(_) | Value::Bool(_) | Value::Null => return,
    };
    let lower = bytes.to_ascii_lowercase();
    for secret in phi {
        let needle = secret.to_ascii_lowercase();
        if lower.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            leaks.push(format!(
                "attribute `{name}` holds a PHI value used by the test"
            ));
        }
    }
}

/// Who the video steps act as, and the appointment they use.
struct VideoCtx<'a> {
    patient: &'a Created,
    other: &'a Created,
    admin: &'a Created,
    patient_token: &'a str,
    other_token: &'a str,
    admin_token: &'a str,
    vera: Created,
    vera_token: String,
    appointment: String,
}

fn deliver(c: &shared::adapters::local::Callback) -> Call<'_> {
    call(Method::POST, "/api/v1/webhooks/twilio/video", None)
        .raw(&c.body)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &c.signature)
        .header("i-twilio-idempotency-token", &c.idempotency_token)
}

fn by_twilio(video_id: &str) -> Want {
    Want {
        action: "UPDATE".into(),
        outcome: "success".into(),
        actor: None,
        role: Some("twilio".into()),
        resource: Some(("video_session".into(), video_id.to_string())),
    }
}

/// The video and twilio-webhook routes (the appointment is one of a provider with
/// 15-minute slots, so its first free slot starts within the 15 minutes in which tokens
/// are issued). In parts, each its own boxed future: the tour's own frame is large.
async fn video_steps(
    h: &mut Harness,
    app: &shared::App,
    phi: &mut Vec<String>,
    [patient, other, admin]: [&Created; 3],
    [patient_token, other_token, admin_token]: [&str; 3],
) {
    let (vera, vera_token, appointment) = Box::pin(video_setup(h, app, phi, patient_token)).await;
    let cx = VideoCtx {
        patient,
        other,
        admin,
        patient_token,
        other_token,
        admin_token,
        vera,
        vera_token,
        appointment,
    };
    let video_id = Box::pin(video_create(h, &cx)).await;
    let access_token = Box::pin(video_join(h, &cx, &video_id)).await;
    phi.push(access_token.clone());
    Box::pin(video_callbacks(h, &cx, &video_id, &access_token)).await;
    Box::pin(video_consent_and_end(h, &cx, &video_id)).await;
}

struct SetupCx<'a> {
    patient_token: &'a str,
}

async fn video_setup(
    h: &mut Harness,
    app: &shared::App,
    phi: &mut Vec<String>,
    patient_token: &str,
) -> (Created, String, String) {
    let cx = SetupCx { patient_token };
    let pt = Some(cx.patient_token);
    // --- video (Twilio) -----------------------------------------------------------------------
    // A provider with 15-minute slots: the patient's first free slot starts within the
    // 15 minutes in which tokens are issued.
    phi.extend(["vera.video@example.org".into(), "Dr Vera Video".into()]);
    let vera = accounts::create(
        app,
        "vera.video@example.org",
        "Dr Vera Video",
        Role::Provider,
        true,
    )
    .await
    .unwrap();
    phi.push(vera.password.clone());
    phi.extend(vera.totp_secret.clone());
    let vera_token = app
        .tokens
        .issue(
            app,
            &vera.id,
            vera.role,
            &ulid::Ulid::new().to_string(),
            &["pwd", "mfa", "otp"],
        )
        .await
        .unwrap()
        .0;
    phi.push(vera_token.clone());
    let vt = Some(vera_token.as_str());
    let video_appointment = {
        use shared::testing::{dispatch, request};
        let router = docare_appointments::router();
        let days = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        let weekly: Vec<Json> = days
            .iter()
            .map(|d| json!({"day": d, "start": "00:00", "end": "23:45"}))
            .collect();
        let body = json!({"time_zone": docare_e2e::availability_zone(), "slot_minutes": 15, "weekly": weekly,
            "consultation_types": ["video"]});
        let (status, answer) = dispatch(
            &router,
            app,
            request(
                Method::PUT,
                "/api/v1/providers/me/availability",
                vt,
                Some(body),
            ),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let (_, slots) = dispatch(
            &router,
            app,
            request(
                Method::GET,
                &format!("/api/v1/providers/{}/slots", vera.id),
                pt,
                None,
            ),
        )
        .await;
        let mut booked = None;
        for slot in slots["items"].as_array().unwrap().iter().take(2) {
            let (status, answer) = dispatch(
                &router,
                app,
                request(
                    Method::POST,
                    "/api/v1/appointments",
                    pt,
                    Some(json!({"provider_id": vera.id, "start": slot["start"],
                        "consultation_type": "video"})),
                ),
            )
            .await;
            if status == 201 {
                booked = Some(text(&answer, "id"));
                break;
            }
        }
        let id = booked.expect("a slot within 15 minutes");
        let (status, answer) = dispatch(
            &router,
            app,
            request(
                Method::PATCH,
                &format!("/api/v1/appointments/{id}"),
                vt,
                Some(json!({"status": "confirmed"})),
            ),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        id
    };
    h.new_events(); // set-up is not under test
    (vera, vera_token, video_appointment)
}

async fn video_create(h: &mut Harness, cx: &VideoCtx<'_>) -> String {
    let (patient, other, admin, vera) = (cx.patient, cx.other, cx.admin, &cx.vera);
    let (pt, ot, at, vt) = (
        Some(cx.patient_token),
        Some(cx.other_token),
        Some(cx.admin_token),
        Some(cx.vera_token.as_str()),
    );
    let video_appointment = cx.appointment.clone();
    let _ = (
        patient,
        other,
        admin,
        vera,
        pt,
        ot,
        at,
        vt,
        &video_appointment,
    );
    h.step(
        "POST /video-calls, an administrator (admins take no part)",
        call(Method::POST, "/api/v1/video-calls", at)
            .body(json!({"appointment_id": video_appointment})),
        403,
        vec![denied("ACCESS_DENIED", admin, ("video_session", "*"))],
    )
    .await;
    h.step(
        "POST /video-calls, another patient's appointment",
        call(Method::POST, "/api/v1/video-calls", ot)
            .body(json!({"appointment_id": video_appointment})),
        404,
        vec![denied(
            "ACCESS_DENIED",
            other,
            ("appointment", &video_appointment),
        )],
    )
    .await;
    let (status, created, events) = h
        .send(
            call(Method::POST, "/api/v1/video-calls", vt)
                .body(json!({"appointment_id": video_appointment, "recording_enabled": true})),
        )
        .await;
    let video_id = text(&created, "id");
    let vs = ("video_session", video_id.as_str());
    h.check(
        "POST /video-calls",
        status,
        201,
        events,
        vec![ok("CREATE", vera, vs)],
    );
    h.step(
        "POST /video-calls, a second session of the appointment (nothing written)",
        call(Method::POST, "/api/v1/video-calls", pt)
            .body(json!({"appointment_id": video_appointment})),
        409,
        vec![],
    )
    .await;
    video_id
}

async fn video_join(h: &mut Harness, cx: &VideoCtx<'_>, video_id: &str) -> String {
    let (patient, other, admin, vera) = (cx.patient, cx.other, cx.admin, &cx.vera);
    let (pt, ot, at, vt) = (
        Some(cx.patient_token),
        Some(cx.other_token),
        Some(cx.admin_token),
        Some(cx.vera_token.as_str()),
    );
    let video_appointment = cx.appointment.clone();
    let _ = (
        patient,
        other,
        admin,
        vera,
        pt,
        ot,
        at,
        vt,
        &video_appointment,
    );
    let video_path = format!("/api/v1/video-calls/{video_id}");
    let vs = ("video_session", video_id);
    let _ = (&video_path, vs);
    h.step(
        "GET /video-calls/{id}, another patient",
        call(Method::GET, &video_path, ot),
        404,
        vec![denied("ACCESS_DENIED", other, vs)],
    )
    .await;
    h.step(
        "POST /video-calls/tokens, another patient (no token)",
        call(Method::POST, "/api/v1/video-calls/tokens", ot).body(json!({"session_id": video_id})),
        404,
        vec![denied("ACCESS_DENIED", other, vs)],
    )
    .await;
    let (status, issued_token, events) = h
        .send(
            call(Method::POST, "/api/v1/video-calls/tokens", pt)
                .body(json!({"session_id": video_id})),
        )
        .await;
    let access_token = text(&issued_token, "access_token");
    h.check(
        "POST /video-calls/tokens",
        status,
        200,
        events,
        vec![ok("VIDEO_TOKEN", patient, vs)],
    );
    h.step(
        "POST /video-calls/{id}/start, the patient (the provider's transition)",
        call(Method::POST, format!("{video_path}/start"), pt),
        403,
        vec![denied("ACCESS_DENIED", patient, vs)],
    )
    .await;
    h.step(
        "POST /video-calls/{id}/start",
        call(Method::POST, format!("{video_path}/start"), vt),
        200,
        vec![ok("UPDATE", vera, vs)],
    )
    .await;
    access_token
}

async fn video_callbacks(h: &mut Harness, cx: &VideoCtx<'_>, video_id: &str, access_token: &str) {
    let (patient, other, admin, vera) = (cx.patient, cx.other, cx.admin, &cx.vera);
    let (pt, ot, at, vt) = (
        Some(cx.patient_token),
        Some(cx.other_token),
        Some(cx.admin_token),
        Some(cx.vera_token.as_str()),
    );
    let video_appointment = cx.appointment.clone();
    let _ = (
        patient,
        other,
        admin,
        vera,
        pt,
        ot,
        at,
        vt,
        &video_appointment,
    );
    let video_path = format!("/api/v1/video-calls/{video_id}");
    let vs = ("video_session", video_id);
    let _ = (&video_path, vs);
    // Twilio's callbacks (the fake's, signed as Twilio signs them).
    let by_twilio = by_twilio(video_id);
    let callbacks = h.parts.twilio.callbacks();
    let created_cb = callbacks
        .iter()
        .find(|c| c.event == "room-created")
        .expect("room-created")
        .clone();
    let room_sid = created_cb
        .params
        .iter()
        .find(|(n, _)| n == "RoomSid")
        .map(|(_, v)| v.clone())
        .unwrap();
    h.step(
        "POST /webhooks/twilio/video, forged (nothing written, nothing recorded)",
        call(Method::POST, "/api/v1/webhooks/twilio/video", None)
            .raw(&created_cb.body)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA=="),
        403,
        vec![],
    )
    .await;
    h.step(
        "POST /webhooks/twilio/video, room-created",
        deliver(&created_cb),
        200,
        vec![by_twilio.clone()],
    )
    .await;
    h.step(
        "POST /webhooks/twilio/video, room-created replayed (processed once)",
        deliver(&created_cb),
        200,
        vec![],
    )
    .await;
    // The participant the token names joins and leaves; the join arrives last.
    let claims: Json = {
        use base64::Engine;
        let payload = access_token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let identity = claims["grants"]["identity"].as_str().unwrap().to_string();
    let joined = h.parts.twilio.connect(&room_sid, &identity).unwrap();
    let left = h.parts.twilio.disconnect(&room_sid, &identity).unwrap();
    h.step(
        "POST /webhooks/twilio/video, participant-disconnected",
        deliver(&left),
        200,
        vec![by_twilio.clone()],
    )
    .await;
    h.step(
        "POST /webhooks/twilio/video, participant-connected after it (older: nothing written)",
        deliver(&joined),
        200,
        vec![],
    )
    .await;
}

async fn video_consent_and_end(h: &mut Harness, cx: &VideoCtx<'_>, video_id: &str) {
    let (patient, other, admin, vera) = (cx.patient, cx.other, cx.admin, &cx.vera);
    let (pt, ot, at, vt) = (
        Some(cx.patient_token),
        Some(cx.other_token),
        Some(cx.admin_token),
        Some(cx.vera_token.as_str()),
    );
    let video_appointment = cx.appointment.clone();
    let _ = (
        patient,
        other,
        admin,
        vera,
        pt,
        ot,
        at,
        vt,
        &video_appointment,
    );
    let video_path = format!("/api/v1/video-calls/{video_id}");
    let vs = ("video_session", video_id);
    let _ = (&video_path, vs);
    let by_twilio = by_twilio(video_id);
    h.step(
        "POST /video-calls/{id}/consent, recording not allowed in the body's shape",
        call(Method::POST, format!("{video_path}/consent"), pt).body(json!({"recording": "yes"})),
        400,
        vec![],
    )
    .await;
    h.step(
        "POST /video-calls/{id}/consent, the patient",
        call(Method::POST, format!("{video_path}/consent"), pt).body(json!({"recording": true})),
        200,
        vec![ok("RECORDING_CONSENT", patient, vs)],
    )
    .await;
    h.step(
        "POST /video-calls/{id}/consent, the provider",
        call(Method::POST, format!("{video_path}/consent"), vt).body(json!({"recording": true})),
        200,
        vec![ok("RECORDING_CONSENT", vera, vs)],
    )
    .await;
    h.step(
        "GET /video-calls/{id}",
        call(Method::GET, &video_path, pt),
        200,
        vec![ok("VIEW", patient, vs)],
    )
    .await;
    h.step(
        "GET /appointments/{id}/video-calls",
        call(
            Method::GET,
            format!("/api/v1/appointments/{video_appointment}/video-calls"),
            pt,
        ),
        200,
        vec![ok(
            "VIEW",
            patient,
            ("appointment_video_calls", &video_appointment),
        )],
    )
    .await;
    let before_end = h.parts.twilio.callbacks().len();
    h.step(
        "POST /video-calls/{id}/end",
        call(Method::POST, format!("{video_path}/end"), vt),
        200,
        vec![ok("UPDATE", vera, vs)],
    )
    .await;
    let ended = h.parts.twilio.callbacks()[before_end..]
        .iter()
        .find(|c| c.event == "room-ended")
        .expect("room-ended")
        .clone();
    h.step(
        "POST /webhooks/twilio/video, room-ended",
        deliver(&ended),
        200,
        vec![by_twilio.clone()],
    )
    .await;
    h.step(
        "POST /video-calls/tokens, after the end (nothing written)",
        call(Method::POST, "/api/v1/video-calls/tokens", pt).body(json!({"session_id": video_id})),
        409,
        vec![],
    )
    .await;
}

/// The devices function's routes: a pushed batch, a care-team read, a threshold, a
/// other patient refused, then the device connections. (A sample value is PHI, but
/// numbers alone name no one; the steps check the events, the final scan the absence
/// of names and tokens.) Called from the tour as before: a new call there grows the
/// tour's own frame, which is at the 2 MiB stack in debug builds.
fn observation_steps<'a>(
    h: &'a mut Harness,
    actors: [&'a Created; 3],
    tokens: [Option<&'a str>; 3],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
    Box::pin(async move {
        observation_steps_inner(h, actors, tokens).await;
        let [patient, _, _] = actors;
        let [pt, _, ot] = tokens;
        device_link_steps(h, patient, [pt, ot]).await;
    })
}

async fn observation_steps_inner(
    h: &mut Harness,
    [patient, carer, other]: [&Created; 3],
    [pt, ct, ot]: [Option<&str>; 3],
) {
    let batch = json!({"samples": [{"id": "HK-1", "code": "8867-4", "value": 71.0, "unit": "/min",
        "effective": "2026-01-01T08:00:00Z", "source": "apple_health"}]});
    let obs = ("observations", patient.id.as_str());
    h.step(
        "POST /observations/batch",
        call(Method::POST, "/api/v1/observations/batch", pt).body(batch),
        200,
        vec![ok("CREATE", patient, obs)],
    )
    .await;
    h.step(
        "GET /observations, the carer (hourly)",
        call(Method::GET, "/api/v1/observations", ct)
            .query("patient_id", patient.id.clone())
            .query("code", "8867-4")
            .query("from", "2026-01-01T00:00:00Z")
            .query("to", "2026-01-02T00:00:00Z")
            .query("resolution", "1h"),
        200,
        vec![ok("VIEW", carer, obs)],
    )
    .await;
    h.step(
        "GET /observations, another patient",
        call(Method::GET, "/api/v1/observations", ot)
            .query("patient_id", patient.id.clone())
            .query("code", "8867-4")
            .query("from", "2026-01-01T00:00:00Z")
            .query("to", "2026-01-02T00:00:00Z"),
        404,
        vec![denied("ACCESS_DENIED", other, obs)],
    )
    .await;
    h.step(
        "PUT /observations/thresholds, the carer",
        call(Method::PUT, "/api/v1/observations/thresholds", ct)
            .body(json!({"patient_id": patient.id, "code": "40443-4", "above": 120.0})),
        200,
        vec![ok("UPDATE", carer, ("observation_threshold", &patient.id))],
    )
    .await;
}

/// Device connections (the devices function's `/api/v1/devices…` routes), boxed inside
/// a plain function as `observation_steps` is.
fn device_link_steps<'a>(
    h: &'a mut Harness,
    patient: &'a Created,
    tokens: [Option<&'a str>; 2],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
    Box::pin(device_link_steps_inner(h, patient, tokens))
}

async fn device_link_steps_inner(h: &mut Harness, patient: &Created, [pt, ot]: [Option<&str>; 2]) {
    // Device connections: starting a flow records nothing (nothing is connected yet);
    // the provider's redirect records the connection for the patient the state names;
    // deleting records it; another user's delete finds nothing of theirs.
    let started = h
        .step(
            "POST /devices/connect/google_health",
            call(Method::POST, "/api/v1/devices/connect/google_health", pt),
            200,
            vec![],
        )
        .await;
    let authorize = text(&started, "authorization_url");
    let callback = h
        .parts
        .google
        .consent(&authorize)
        .await
        .expect("the fake consents");
    let callback = url::Url::parse(&callback).expect("callback URL");
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let link = ("device_connection", patient.id.as_str());
    h.step(
        "GET /devices/google_health/callback (no token)",
        call(Method::GET, "/api/v1/devices/google_health/callback", None)
            .query("state", param("state"))
            .query("code", param("code")),
        200,
        vec![ok("CREATE", patient, link)],
    )
    .await;
    h.step(
        "GET /devices",
        call(Method::GET, "/api/v1/devices", pt),
        200,
        vec![],
    )
    .await;
    // Google's webhook: its verification, a forged delivery and a signed one record
    // nothing (a delivery only queues a sync; the sync worker records what it stores).
    let now = h.parts.app.now();
    let delivery = |forged: bool| {
        let google = h.parts.google.clone();
        async move {
            google
                .delivery(
                    shared::adapters::local::FAKE_HEALTH_USER,
                    shared::ports::health_api::DataType::HeartRate,
                    now,
                    now,
                    forged,
                )
                .await
                .expect("a delivery")
        }
    };
    let (signed, forged) = (delivery(false).await, delivery(true).await);
    h.step(
        "POST /webhooks/google-health, Google's verification",
        call(Method::POST, "/api/v1/webhooks/google-health", None)
            .header("authorization", &signed.authorization)
            .raw(r#"{"type":"verification"}"#),
        201,
        vec![],
    )
    .await;
    h.step(
        "POST /webhooks/google-health, forged (nothing queued, nothing recorded)",
        call(Method::POST, "/api/v1/webhooks/google-health", None)
            .header("authorization", &forged.authorization)
            .raw(&forged.body),
        401,
        vec![],
    )
    .await;
    h.step(
        "POST /webhooks/google-health, a signed delivery (a sync queued)",
        call(Method::POST, "/api/v1/webhooks/google-health", None)
            .header("authorization", &signed.authorization)
            .raw(&signed.body),
        200,
        vec![],
    )
    .await;
    h.step(
        "DELETE /devices/google_health, another patient",
        call(Method::DELETE, "/api/v1/devices/google_health", ot),
        404,
        vec![],
    )
    .await;
    h.step(
        "DELETE /devices/google_health",
        call(Method::DELETE, "/api/v1/devices/google_health", pt),
        204,
        vec![ok("DELETE", patient, link)],
    )
    .await;
}
