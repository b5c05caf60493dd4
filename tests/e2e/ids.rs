//! A malformed id in a path is a 404 on every route, for every caller: it names nothing
//! that exists, and answering it differently from an unknown id (400, 403, 422) would
//! tell ids apart.

use docare_e2e::TestStack;
use shared::auth::Role;

#[tokio::test]
async fn a_malformed_path_id_is_a_404_on_every_route_for_every_caller() {
    let t = TestStack::start().await;
    let app = t.app().clone();
    // Each caller is a few accounts, each used for fewer requests than the general
    // rate limit (100 per 15 minutes per account), so every answer is the route's own.
    const ACCOUNTS_PER_ROLE: usize = 8;
    const REQUESTS_PER_ACCOUNT: usize = 90;
    let mut tokens = Vec::new();
    for (role, amr) in [
        (Role::Patient, &["pwd"][..]),
        (Role::Provider, &["pwd", "mfa", "otp"][..]),
        (Role::Admin, &["pwd", "mfa", "otp"][..]),
    ] {
        let mut role_tokens = Vec::new();
        for n in 0..ACCOUNTS_PER_ROLE {
            let email = format!("ids-{}-{n}@example.com", role.as_str());
            let who = docare_local::accounts::create(&app, &email, "Ids", role, false)
                .await
                .expect("account")
                .id;
            let (token, _) = app
                .tokens
                .issue(&app, &who, role, &app.new_id(), amr)
                .await
                .expect("token");
            role_tokens.push(token);
        }
        tokens.push((role, role_tokens));
    }
    let mut checked = 0;
    for mount in docare_local::mounts::http_functions() {
        for (method, pattern) in mount.router.table() {
            if !pattern.contains('{') {
                continue;
            }
            for bad in [
                "not-an-id",
                "234-56-7891",
                "01JD5Z6Q8W3M0V7K2R9T4Y6B1",
                "%2e%2e",
            ] {
                let path = pattern
                    .split('/')
                    .map(|part| if part.starts_with('{') { bad } else { part })
                    .collect::<Vec<_>>()
                    .join("/");
                for (role, role_tokens) in &tokens {
                    let token = role_tokens
                        .get(checked / tokens.len() / REQUESTS_PER_ACCOUNT)
                        .expect("enough accounts for every route");
                    let response = t
                        .http
                        .request(method.clone(), t.url(&path))
                        .bearer_auth(token)
                        .header("x-access-reason", "checking a malformed id is refused")
                        .json(&serde_json::json!({}))
                        .send()
                        .await
                        .expect("request");
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.expect("json");
                    assert_eq!(
                        (status, body["error"]["code"].as_str()),
                        (404, Some("not_found")),
                        "{method} {path} as {role:?}: {body}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked >= 8 * 4 * 3,
        "only {checked} requests: routes with ids went missing"
    );
    t.stack.stop().await;
}
