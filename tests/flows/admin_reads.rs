//! Administrators' account reads and the care-relationship list (issue 12, "admin reads"):
//! a patient's e-mail and name only with an `X-Access-Reason`, each patient shown
//! recorded where that patient's access log finds it; providers need MFA to list their
//! patients, and every refusal is recorded; an account ciphertext that fails to open is
//! audited on every account view.

use http::Method;
use serde_json::Value;
use shared::audit::{Action, AuditReader, Outcome, StoredEvent, TimeRange};
use shared::auth::{care, Role};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, Router};
use shared::ports::db::Update;
use shared::testing::{account, dispatch, request, token, TestApp};
use shared::App;

const REASON: &str = "Verifying a patient's identity for ticket 4711";

struct H {
    t: TestApp,
    users: Router,
    audit: Router,
}

impl H {
    fn new() -> Self {
        Self {
            t: TestApp::new(),
            users: docare_users::router(),
            audit: docare_audit::router(),
        }
    }

    fn app(&self) -> &App {
        &self.t.app
    }

    async fn user(&self, email: &str, name: &str, role: Role, amr: &[&str]) -> (String, String) {
        let id = account(self.app(), email, name, role).await;
        let token = token(self.app(), &id, role, "session-1", amr).await;
        (id, token)
    }

    async fn call(
        &self,
        router: &Router,
        method: Method,
        path: &str,
        token: &str,
        reason: Option<&str>,
    ) -> (u16, Value) {
        let mut req: ApiRequest = request(method, path, Some(token), None);
        if let Some(reason) = reason {
            req.headers
                .insert("x-access-reason", reason.parse().unwrap());
        }
        dispatch(router, self.app(), req).await
    }

    async fn events_on(&self, kind: &str, id: &str) -> Vec<StoredEvent> {
        let page = PageRequest {
            limit: 100,
            start: None,
        };
        AuditReader::of(self.app())
            .by_resource(kind, id, &TimeRange::default(), &page)
            .await
            .unwrap()
            .items
    }

    /// The patient's own access log (the audit function), as its items.
    async fn access_log(&self, patient_token: &str) -> Vec<Value> {
        let (status, log) = self
            .call(
                &self.audit,
                Method::GET,
                "/api/v1/users/me/access-log",
                patient_token,
                None,
            )
            .await;
        assert_eq!(status, 200, "{log}");
        log["items"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn admins_see_patients_identity_only_with_a_reason_and_each_one_shown_is_in_the_access_log() {
    let h = H::new();
    let (admin, at) = h
        .user(
            "root@example.com",
            "Rita Root",
            Role::Admin,
            &["pwd", "mfa", "otp"],
        )
        .await;
    let (patient, pt) = h
        .user(
            "pat.private@example.com",
            "Pat Private",
            Role::Patient,
            &["pwd"],
        )
        .await;
    let (provider, _) = h
        .user("dr.known@example.com", "Dr Known", Role::Provider, &["pwd"])
        .await;

    // Without a reason: the list and the read leave the patient's e-mail and name out,
    // and staff accounts are shown as they are.
    let (status, list) = h
        .call(&h.users, Method::GET, "/api/v1/users", &at, None)
        .await;
    assert_eq!(status, 200, "{list}");
    let text = list.to_string();
    assert!(
        !text.contains("pat.private") && !text.contains("Pat Private"),
        "{list}"
    );
    let items = list["items"].as_array().unwrap();
    let row = |id: &str| items.iter().find(|i| i["id"] == id).unwrap().clone();
    assert_eq!(row(&patient)["identity_withheld"], true);
    assert!(row(&patient).get("email").is_none());
    assert_eq!(row(&patient)["role"], "patient");
    assert_eq!(row(&provider)["email"], "dr.known@example.com");
    assert_eq!(row(&provider)["identity_withheld"], false);
    let path = format!("/api/v1/users/{patient}");
    let (status, one) = h.call(&h.users, Method::GET, &path, &at, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            one.get("email"),
            one.get("full_name"),
            &one["identity_withheld"]
        ),
        (None, None, &Value::Bool(true))
    );
    assert!(h
        .access_log(&pt)
        .await
        .iter()
        .all(|e| e["action"] != "BREAK_GLASS"));

    // With a reason: shown, and recorded on the patient's account as break-glass.
    let (status, list) = h
        .call(&h.users, Method::GET, "/api/v1/users", &at, Some(REASON))
        .await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().unwrap();
    let shown = items.iter().find(|i| i["id"] == patient.as_str()).unwrap();
    assert_eq!(shown["email"], "pat.private@example.com");
    assert_eq!(shown["full_name"], "Pat Private");
    let (status, one) = h
        .call(&h.users, Method::GET, &path, &at, Some(REASON))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["full_name"], "Pat Private");
    let glass: Vec<StoredEvent> = h
        .events_on("account", &patient)
        .await
        .into_iter()
        .filter(|e| e.action == Action::BreakGlass)
        .collect();
    assert_eq!(glass.len(), 2, "the list and the read");
    assert!(glass
        .iter()
        .all(|e| e.reason.is_some() && e.actor.user_id.as_deref() == Some(admin.as_str())));
    // The provider's account was shown without a reason: no break-glass on it.
    assert!(h
        .events_on("account", &provider)
        .await
        .iter()
        .all(|e| e.action != Action::BreakGlass));
    let log = h.access_log(&pt).await;
    let disclosed = log
        .iter()
        .filter(|e| e["action"] == "BREAK_GLASS" && e["actor"]["user_id"] == admin.as_str())
        .count();
    assert_eq!(disclosed, 2, "{log:?}");

    // A reason that is too short is refused like on the profile route, and recorded.
    for target in ["/api/v1/users".to_string(), path.clone()] {
        let (status, body) = h
            .call(&h.users, Method::GET, &target, &at, Some("because"))
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(!body.to_string().contains("pat.private"));
    }
    let denied = h.events_on("account", &patient).await;
    assert!(denied
        .iter()
        .any(|e| e.action == Action::AccessDenied && e.outcome == Outcome::Denied));
    assert!(h
        .events_on("account_list", "all")
        .await
        .iter()
        .any(|e| e.action == Action::AccessDenied));

    // The answers of changes never show a patient's identity.
    let (status, disabled) = h
        .call(
            &h.users,
            Method::POST,
            &format!("{path}/disable"),
            &at,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(disabled["status"], "disabled");
    assert!(disabled.get("email").is_none() && disabled["identity_withheld"] == true);
}

#[tokio::test]
async fn a_page_with_patients_identities_is_bounded_and_every_patient_on_it_is_recorded() {
    let h = H::new();
    let (_, at) = h
        .user(
            "root@example.com",
            "Rita Root",
            Role::Admin,
            &["pwd", "mfa"],
        )
        .await;
    let mut patients = Vec::new();
    for n in 0..30 {
        // One second apart: the list is by creation time, and ids made in the same
        // second of the manual clock would sort by their random part.
        h.t.clock.advance(chrono::Duration::seconds(1));
        patients.push(
            account(
                h.app(),
                &format!("p{n}@example.com"),
                &format!("Patient {n}"),
                Role::Patient,
            )
            .await,
        );
    }
    let mut req = request(Method::GET, "/api/v1/users", Some(&at), None);
    req.query.insert("limit".into(), "100".into());
    req.headers
        .insert("x-access-reason", REASON.parse().unwrap());
    let (status, page) = dispatch(&h.users, h.app(), req).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), docare_users::PHI_PAGE_LIMIT as usize);
    assert!(
        page["next_cursor"].is_string(),
        "the rest is on the next page"
    );
    for item in items.iter().filter(|i| i["role"] == "patient") {
        let id = item["id"].as_str().unwrap();
        let recorded = h.events_on("account", id).await;
        assert_eq!(
            recorded
                .iter()
                .filter(|e| e.action == Action::BreakGlass)
                .count(),
            1,
            "{id}"
        );
    }
    // Patients past the page were not shown and not recorded.
    let last = patients.last().unwrap();
    assert!(h.events_on("account", last).await.is_empty());
}

/// Moves account B's sealed e-mail into account A: A's e-mail no longer opens.
async fn swap_email(app: &App, a: &str, b: &str) {
    let table = &app.config.table;
    let item_b = app
        .db
        .get(table, &shared::store::keys::account(b))
        .await
        .unwrap()
        .unwrap();
    app.db
        .update(
            table,
            &shared::store::keys::account(a),
            Update::new().set("email", item_b["email"].clone()),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_account_value_that_fails_to_open_is_audited_on_every_account_view() {
    let h = H::new();
    let (_, at) = h
        .user(
            "root@example.com",
            "Rita Root",
            Role::Admin,
            &["pwd", "mfa"],
        )
        .await;
    let (victim, vt) = h
        .user("victim@example.com", "Vic Tim", Role::Patient, &["pwd"])
        .await;
    let (other, _) = h
        .user("other@example.com", "Otto Other", Role::Patient, &["pwd"])
        .await;
    swap_email(h.app(), &victim, &other).await;
    let integrity = |events: Vec<StoredEvent>| {
        events
            .iter()
            .filter(|e| e.action == Action::IntegrityFailure && e.outcome == Outcome::Failed)
            .count()
    };

    let (status, body) = h
        .call(&h.users, Method::GET, "/api/v1/users/me", &vt, None)
        .await;
    assert_eq!(status, 500);
    assert!(!body.to_string().contains("other@example.com"));
    assert_eq!(integrity(h.events_on("account", &victim).await), 1);

    let path = format!("/api/v1/users/{victim}");
    let (status, body) = h
        .call(&h.users, Method::GET, &path, &at, Some(REASON))
        .await;
    assert_eq!(status, 500);
    assert!(!body.to_string().contains("other@example.com"));
    let (status, _) = h
        .call(&h.users, Method::GET, "/api/v1/users", &at, Some(REASON))
        .await;
    assert_eq!(status, 500, "a page with a broken account is not answered");
    assert_eq!(integrity(h.events_on("account", &victim).await), 3);
    // Without a reason the patient's values are not opened: the read still answers.
    let (status, _) = h.call(&h.users, Method::GET, &path, &at, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn providers_need_mfa_to_list_their_patients_and_staff_refusals_are_recorded() {
    let h = H::new();
    let (provider, with_mfa) = h
        .user(
            "dr@example.com",
            "Dr Who",
            Role::Provider,
            &["pwd", "mfa", "otp"],
        )
        .await;
    let password_only = token(h.app(), &provider, Role::Provider, "s2", &["pwd"]).await;
    let (patient, pt) = h
        .user("pat@example.com", "Pat", Role::Patient, &["pwd"])
        .await;
    let (admin, _) = h
        .user("root@example.com", "Root", Role::Admin, &["pwd", "mfa"])
        .await;
    let admin_no_mfa = token(h.app(), &admin, Role::Admin, "s3", &["pwd"]).await;
    let rel = care::start(h.app(), &provider, &patient, "admin", None)
        .await
        .unwrap();
    let list = "/api/v1/care-relationships";

    let (status, body) = h
        .call(&h.users, Method::GET, list, &password_only, None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains(&patient));
    let refused = h.events_on("care_relationship_list", &provider).await;
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].action, refused[0].outcome),
        (Action::AccessDenied, Outcome::Denied)
    );
    let (status, body) = h.call(&h.users, Method::GET, list, &with_mfa, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["patient_id"], patient.as_str());
    // Patients list their own providers with a password session.
    assert_eq!(h.call(&h.users, Method::GET, list, &pt, None).await.0, 200);

    // An administrator without MFA: refused and recorded, on the list and on the end.
    let mut req = request(Method::GET, list, Some(&admin_no_mfa), None);
    req.query.insert("patient_id".into(), patient.clone());
    assert_eq!(dispatch(&h.users, h.app(), req).await.0, 403);
    assert!(h
        .events_on("care_relationship_list", &patient)
        .await
        .iter()
        .any(|e| e.action == Action::AccessDenied
            && e.actor.user_id.as_deref() == Some(admin.as_str())));
    let end = format!("/api/v1/care-relationships/{}", rel.id);
    assert_eq!(
        h.call(&h.users, Method::DELETE, &end, &admin_no_mfa, None)
            .await
            .0,
        403
    );
    let on_rel = h.events_on("care_relationship", &rel.id).await;
    assert_eq!(on_rel.len(), 1);
    assert_eq!(on_rel[0].action, Action::AccessDenied);
    assert!(care::is_active(h.app(), &provider, &patient).await.unwrap());
}
