//! Units of work: an audited change commits with its audit event, so with the audit
//! trail unreachable the change answers 503 and nothing of it is kept.

use http::Method;
use serde_json::json;
use shared::auth::Role;
use shared::testing::{account, request, token, TestApp};

/// Admin account changes and care relationships commit with their audit events: with
/// the audit table down each answers 503 and nothing changed.
#[tokio::test]
async fn admin_and_care_changes_are_not_kept_without_their_audit_events() {
    use shared::auth::care;
    use shared::testing::{dispatch, with_ports, AuditTableDown};
    let t = TestApp::new();
    let users = docare_users::router();
    let admin = account(&t.app, "root@example.com", "Root", Role::Admin).await;
    let admin_token = token(&t.app, &admin, Role::Admin, "root", &["pwd", "mfa", "otp"]).await;
    let provider = account(&t.app, "dr@example.com", "Dr", Role::Provider).await;
    let patient = account(&t.app, "pat@example.com", "Pat", Role::Patient).await;
    let down = with_ports(&t.app, |p| p.db = AuditTableDown::of(&t.app));
    let admin_call = |method: Method, path: String, body: Option<serde_json::Value>| {
        request(method, &path, Some(&admin_token), body)
    };

    let disable = admin_call(
        Method::POST,
        format!("/api/v1/users/{patient}/disable"),
        None,
    );
    let role = admin_call(
        Method::PUT,
        format!("/api/v1/users/{provider}/role"),
        Some(json!({"role": "admin"})),
    );
    let relate = admin_call(
        Method::POST,
        "/api/v1/care-relationships".into(),
        Some(json!({"provider_id": provider, "patient_id": patient})),
    );
    for req in [disable, role, relate] {
        assert_eq!(dispatch(&users, &down, req).await.0, 503);
    }
    let (_, body) = dispatch(
        &users,
        &t.app,
        admin_call(Method::GET, format!("/api/v1/users/{patient}"), None),
    )
    .await;
    assert_eq!(body["status"], "active", "{body}");
    let (_, body) = dispatch(
        &users,
        &t.app,
        admin_call(Method::GET, format!("/api/v1/users/{provider}"), None),
    )
    .await;
    assert_eq!(body["role"], "provider", "{body}");
    assert!(!care::is_active(&t.app, &provider, &patient).await.unwrap());

    // And when the trail answers, the same requests are kept.
    let relate = admin_call(
        Method::POST,
        "/api/v1/care-relationships".into(),
        Some(json!({"provider_id": provider, "patient_id": patient})),
    );
    let (status, rel) = dispatch(&users, &t.app, relate).await;
    assert_eq!(status, 201, "{rel}");
    assert!(care::is_active(&t.app, &provider, &patient).await.unwrap());
    let end = admin_call(
        Method::DELETE,
        format!("/api/v1/care-relationships/{}", rel["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(dispatch(&users, &down, end).await.0, 503);
    assert!(
        care::is_active(&t.app, &provider, &patient).await.unwrap(),
        "not ended without its event"
    );
}
