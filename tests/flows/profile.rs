//! The encrypted profile end to end on the local adapters: validation, masking and the
//! audited reveal, who may read it, no plaintext at rest, integrity failures audited,
//! KMS outages.

use http::Method;
use serde_json::{json, Value};
use shared::audit::{Action, AuditReader, TimeRange};
use shared::auth::{care, Role};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, Router};
use shared::ports::db::Update;
use shared::testing::{self, dispatch, request, with_ports, AuditTableDown, TestApp, OUTAGE};
use shared::App;
use std::sync::Arc;

const DOB: &str = "1984-03-07";
const SSN: &str = "219-09-9999";
const PHONE: &str = "+14155550199";
const STREET: &str = "742 Evergreen Terrace";
const NAME: &str = "Marge Bouvier";

struct H {
    app: App,
    router: Router,
    dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    body: Value,
}

async fn account(app: &App, email: &str, role: Role) -> String {
    testing::account(app, email, "Someone", role).await
}

impl H {
    fn new() -> Self {
        let TestApp { app, dir, .. } = TestApp::new();
        Self {
            app,
            router: docare_users::router(),
            dir,
        }
    }

    async fn token(&self, user: &str, role: Role, mfa: bool) -> String {
        let amr: &[&str] = if mfa { &["pwd", "mfa"] } else { &["pwd"] };
        testing::token(&self.app, user, role, "s1", amr).await
    }

    async fn call_on(
        &self,
        app: &App,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        reason: Option<&str>,
    ) -> Answer {
        let mut req = request(method, path, Some(token), body);
        if let Some(reason) = reason {
            req.headers
                .insert("x-access-reason", reason.parse().unwrap());
        }
        let (status, body) = dispatch(&self.router, app, req).await;
        Answer { status, body }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        self.call_on(&self.app, method, path, token, body, None)
            .await
    }

    async fn events(&self, user: &str) -> Vec<Action> {
        let reader = AuditReader::new(self.app.db.clone(), &self.app.config);
        let page = PageRequest {
            limit: 100,
            start: None,
        };
        reader
            .by_resource("profile", user, &TimeRange::default(), &page)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// Every byte the local stack keeps on disk.
    fn files(&self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    all.extend(std::fs::read(path).unwrap());
                }
            }
        }
        all
    }
}

fn profile() -> Value {
    json!({
        "full_name": NAME,
        "date_of_birth": DOB,
        "ssn": SSN,
        "phone": PHONE,
        "current_password": testing::PASSWORD,
        "address": {"line1": STREET, "city": "Springfield", "postal_code": "49007", "country": "us"}
    })
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn owner_writes_and_reads_with_the_ssn_masked_and_reveal_audited() {
    let h = H::new();
    let me = account(&h.app, "marge@example.com", Role::Patient).await;
    let token = h.token(&me, Role::Patient, false).await;
    let put = h
        .call(
            Method::PUT,
            "/api/v1/users/me/profile",
            &token,
            Some(profile()),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["ssn"], "***-**-9999");
    assert_eq!(put.body["address"]["country"], "US");
    let get = h
        .call(Method::GET, "/api/v1/users/me/profile", &token, None)
        .await;
    assert_eq!(get.body["full_name"], NAME);
    assert_eq!(get.body["date_of_birth"], DOB);
    assert_eq!(get.body["phone"], PHONE);
    assert_eq!(get.body["ssn"], "***-**-9999");
    let mut req = ApiRequest::new(Method::GET, "/api/v1/users/me/profile");
    req.query.insert("reveal".into(), "ssn".into());
    req.headers
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let revealed: Value =
        serde_json::from_slice(&h.router.dispatch(&h.app, req).await.body).unwrap();
    assert_eq!(revealed["ssn"], SSN);
    let events = h.events(&me).await;
    assert!(events.contains(&Action::Reveal), "{events:?}");
    assert!(events.contains(&Action::Update));
    assert!(events.iter().filter(|a| **a == Action::View).count() >= 1);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_changes_nothing() {
    let h = H::new();
    let me = account(&h.app, "bad@example.com", Role::Patient).await;
    let token = h.token(&me, Role::Patient, false).await;
    for (field, value) in [
        ("date_of_birth", json!("2030-01-01")),
        ("ssn", json!("000-12-3456")),
        ("phone", json!("555-0199")),
        (
            "address",
            json!({"line1": "", "city": "X", "postal_code": "1", "country": "US"}),
        ),
    ] {
        let mut body = profile();
        body[field] = value;
        let answer = h
            .call(Method::PUT, "/api/v1/users/me/profile", &token, Some(body))
            .await;
        assert_eq!(answer.status, 400, "{field}");
        assert!(answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(field));
        assert!(
            !answer.body.to_string().contains("2030")
                && !answer.body.to_string().contains("555-0199")
        );
    }
    let get = h
        .call(Method::GET, "/api/v1/users/me/profile", &token, None)
        .await;
    assert_eq!(get.body["ssn"], Value::Null);
}

#[tokio::test]
async fn providers_need_a_relationship_and_admins_a_reason() {
    let h = H::new();
    let patient = account(&h.app, "pat@example.com", Role::Patient).await;
    let provider = account(&h.app, "dr@example.com", Role::Provider).await;
    let admin = account(&h.app, "root@example.com", Role::Admin).await;
    let token = h.token(&patient, Role::Patient, false).await;
    h.call(
        Method::PUT,
        "/api/v1/users/me/profile",
        &token,
        Some(profile()),
    )
    .await;
    let path = format!("/api/v1/users/{patient}/profile");

    let dr = h.token(&provider, Role::Provider, true).await;
    assert_eq!(h.call(Method::GET, &path, &dr, None).await.status, 404);
    care::start(&h.app, &provider, &patient, "admin", None)
        .await
        .unwrap();
    let seen = h.call(Method::GET, &path, &dr, None).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body["ssn"], "***-**-9999", "only the owner may reveal");
    let dr_no_mfa = h.token(&provider, Role::Provider, false).await;
    assert_eq!(
        h.call(Method::GET, &path, &dr_no_mfa, None).await.status,
        403
    );

    let root = h.token(&admin, Role::Admin, true).await;
    assert_eq!(
        h.call(Method::GET, &path, &root, None).await.status,
        400,
        "a reason is required"
    );
    let reason = "ticket 4711: patient asked for a records check";
    let glass = h
        .call_on(&h.app, Method::GET, &path, &root, None, Some(reason))
        .await;
    assert_eq!(glass.status, 200);
    let events = h.events(&patient).await;
    assert!(events.contains(&Action::BreakGlass));
    assert!(events.contains(&Action::AccessDenied));
    assert!(
        !contains(&h.files(), reason),
        "the reason is stored encrypted"
    );
}

#[tokio::test]
async fn no_phi_in_the_clear_in_any_local_file() {
    let h = H::new();
    let me = account(&h.app, "clear@example.com", Role::Patient).await;
    let token = h.token(&me, Role::Patient, false).await;
    assert_eq!(
        h.call(
            Method::PUT,
            "/api/v1/users/me/profile",
            &token,
            Some(profile())
        )
        .await
        .status,
        200
    );
    let files = h.files();
    assert!(files.len() > 1000);
    for plain in [
        DOB,
        SSN,
        "219099999",
        PHONE,
        STREET,
        NAME,
        "clear@example.com",
    ] {
        assert!(!contains(&files, plain), "{plain} found in the clear");
    }
}

#[tokio::test]
async fn a_value_swapped_between_users_or_fields_fails_and_is_audited() {
    let h = H::new();
    let a = account(&h.app, "a@example.com", Role::Patient).await;
    let b = account(&h.app, "b@example.com", Role::Patient).await;
    let (ta, tb) = (
        h.token(&a, Role::Patient, false).await,
        h.token(&b, Role::Patient, false).await,
    );
    h.call(
        Method::PUT,
        "/api/v1/users/me/profile",
        &ta,
        Some(profile()),
    )
    .await;
    let mut other = profile();
    other["ssn"] = json!("123-45-6789");
    h.call(Method::PUT, "/api/v1/users/me/profile", &tb, Some(other))
        .await;
    let table = h.app.config.table.clone();
    let key_a = shared::store::keys::profile(&a);
    let key_b = shared::store::keys::profile(&b);
    let item_a = h.app.db.get(&table, &key_a).await.unwrap().unwrap();
    // A's SSN ciphertext copied into B's item.
    h.app
        .db
        .update(
            &table,
            &key_b,
            Update::new().set("ssn", item_a["ssn"].clone()),
            None,
        )
        .await
        .unwrap();
    let answer = h
        .call(Method::GET, "/api/v1/users/me/profile", &tb, None)
        .await;
    assert_eq!(answer.status, 500);
    assert!(!answer.body.to_string().contains("9999"));
    assert!(h.events(&b).await.contains(&Action::IntegrityFailure));
    // A's phone ciphertext moved into A's own SSN attribute.
    h.app
        .db
        .update(
            &table,
            &key_a,
            Update::new().set("ssn", item_a["phone"].clone()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        h.call(Method::GET, "/api/v1/users/me/profile", &ta, None)
            .await
            .status,
        500
    );
    assert!(h.events(&a).await.contains(&Action::IntegrityFailure));
}

#[tokio::test]
async fn kms_down_means_503_nothing_in_the_clear_and_recovery_by_itself() {
    let h = H::new();
    let me = account(&h.app, "kms@example.com", Role::Patient).await;
    let token = h.token(&me, Role::Patient, false).await;
    let down = with_ports(&h.app, |p| p.keys = Arc::new(OUTAGE));
    let answer = h
        .call_on(
            &down,
            Method::PUT,
            "/api/v1/users/me/profile",
            &token,
            Some(profile()),
            None,
        )
        .await;
    assert_eq!(answer.status, 503);
    assert!(h
        .app
        .db
        .get(&h.app.config.table, &shared::store::keys::profile(&me))
        .await
        .unwrap()
        .is_none());
    assert!(!contains(&h.files(), SSN));
    // KMS is back.
    assert_eq!(
        h.call(
            Method::PUT,
            "/api/v1/users/me/profile",
            &token,
            Some(profile())
        )
        .await
        .status,
        200
    );
    // A cold instance (empty key cache) cannot read while KMS is down, and can after.
    let cold = with_ports(&h.app, |p| p.keys = Arc::new(OUTAGE));
    assert_eq!(
        h.call_on(
            &cold,
            Method::GET,
            "/api/v1/users/me/profile",
            &token,
            None,
            None
        )
        .await
        .status,
        503
    );
    let recovered = with_ports(&h.app, |_| {});
    assert_eq!(
        h.call_on(
            &recovered,
            Method::GET,
            "/api/v1/users/me/profile",
            &token,
            None,
            None
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn a_failed_audit_write_means_no_phi() {
    let h = H::new();
    let me = account(&h.app, "audit@example.com", Role::Patient).await;
    let token = h.token(&me, Role::Patient, false).await;
    h.call(
        Method::PUT,
        "/api/v1/users/me/profile",
        &token,
        Some(profile()),
    )
    .await;
    // The audit table is unreachable: every other table still answers.
    let app = with_ports(&h.app, |p| p.db = AuditTableDown::of(&h.app));
    let answer = h
        .call_on(
            &app,
            Method::GET,
            "/api/v1/users/me/profile",
            &token,
            None,
            None,
        )
        .await;
    assert_eq!(answer.status, 503);
    assert!(!answer.body.to_string().contains(DOB));
    assert!(!answer.body.to_string().contains(NAME));

    // A change whose audit event cannot be recorded is not kept.
    let mut changed = profile();
    changed["date_of_birth"] = json!("1990-12-24");
    changed["full_name"] = json!("Someone Else");
    let answer = h
        .call_on(
            &app,
            Method::PUT,
            "/api/v1/users/me/profile",
            &token,
            Some(changed),
            None,
        )
        .await;
    assert_eq!(answer.status, 503);
    let kept = h
        .call(Method::GET, "/api/v1/users/me/profile", &token, None)
        .await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.body["date_of_birth"], DOB, "{}", kept.body);
    assert_eq!(kept.body["full_name"], NAME);
}

#[tokio::test]
async fn a_thousand_profile_writes_cost_one_generate_data_key() {
    let h = H::new();
    // Eleven patients, so no one passes the general limit of 100 requests per window.
    let mut tokens = Vec::new();
    for n in 0..11 {
        let id = account(&h.app, &format!("warm{n}@example.com"), Role::Patient).await;
        tokens.push(h.token(&id, Role::Patient, false).await);
    }
    // Warm: the first write fetches the data key.
    assert_eq!(
        h.call(
            Method::PUT,
            "/api/v1/users/me/profile",
            &tokens[0],
            Some(profile())
        )
        .await
        .status,
        200
    );
    let calls = h.app.kms_calls.clone();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (before, decrypts) = (load(&calls.generate_data_key), load(&calls.decrypt));
    for n in 0..1000 {
        let answer = h
            .call(
                Method::PUT,
                "/api/v1/users/me/profile",
                &tokens[n % 11],
                Some(profile()),
            )
            .await;
        assert_eq!(answer.status, 200, "write {n}: {}", answer.body);
    }
    let made = load(&calls.generate_data_key) - before;
    assert!(
        made <= 1,
        "{made} GenerateDataKey calls for 1,000 profile writes"
    );
    assert_eq!(load(&calls.decrypt), decrypts, "no Decrypt on a warm cache");
}
