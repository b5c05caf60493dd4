//! Round trips per request, counted by the recording wrapper around every port
//! (`shared::ports::recording`): a warm request makes exactly the calls its design says
//! (DESIGN §10), so a regression that adds a read or a KMS call fails here.

use http::Method;
use serde_json::json;
use shared::auth::Role;
use shared::ports::recording::{counts, Access, Counts};
use shared::testing::{account, request, token, TestApp};

async fn recorded(
    t: &TestApp,
    router: &shared::http::Router,
    req: shared::http::ApiRequest,
) -> (u16, Vec<Access>) {
    let (response, accesses) = router.dispatch_recorded(&t.app, req).await;
    (response.status.as_u16(), accesses)
}

fn budget(dynamodb: usize, kms: usize) -> Counts {
    Counts {
        dynamodb,
        kms,
        ..Counts::default()
    }
}

#[tokio::test]
async fn a_warm_phi_read_and_write_cost_what_the_design_says() {
    let t = TestApp::new();
    let users = docare_users::router();
    let me = account(
        &t.app,
        "budget@example.com",
        "Budget Patient",
        Role::Patient,
    )
    .await;
    let bearer = token(&t.app, &me, Role::Patient, "budget", &["pwd"]).await;
    let profile = json!({"full_name": "Budget Patient", "date_of_birth": "1980-01-02", "phone": "+14155550123", "current_password": shared::testing::PASSWORD});
    let put = || {
        request(
            Method::PUT,
            "/api/v1/users/me/profile",
            Some(&bearer),
            Some(profile.clone()),
        )
    };
    let get = || request(Method::GET, "/api/v1/users/me/profile", Some(&bearer), None);
    // Cold: keys and data keys are fetched once.
    assert_eq!(recorded(&t, &users, put()).await.0, 200);
    assert_eq!(recorded(&t, &users, get()).await.0, 200);

    // Warm write: rate-limit counter, the stored profile (is the phone that receives
    // sign-in codes changing? It is not: no password check, no notice), then one
    // transaction (profile, account, event, chain head). No KMS call: the data key is
    // cached.
    let (status, accesses) = recorded(&t, &users, put()).await;
    assert_eq!(status, 200);
    assert_eq!(counts(&accesses), budget(3, 0), "{accesses:#?}");
    let items: Vec<&str> = accesses.iter().map(|a| a.scope.as_str()).collect();
    assert_eq!(
        items,
        [
            "RATE#",
            "PROFILE#",
            "transaction:4",
            "PROFILE#",
            "USER#",
            "CHAIN#",
            "AUDITHEAD#"
        ],
        "the write and its event commit together"
    );

    // Warm read: the session check answers from the instance's cache (no call), then
    // rate-limit counter, account, profile, audit append; no KMS call.
    let (status, accesses) = recorded(&t, &users, get()).await;
    assert_eq!(status, 200);
    assert_eq!(counts(&accesses), budget(4, 0), "{accesses:#?}");
    let items: Vec<&str> = accesses.iter().map(|a| a.scope.as_str()).collect();
    assert_eq!(
        items,
        [
            "RATE#",
            "USER#",
            "PROFILE#",
            "transaction:2",
            "CHAIN#",
            "AUDITHEAD#"
        ]
    );

    // Once the cached copy is older than its bound (5 s), the session check costs one
    // GetItem of the account, before anything else.
    t.clock.advance(chrono::Duration::milliseconds(
        shared::domain::session::CHECK_CACHE_MS,
    ));
    let (status, accesses) = recorded(&t, &users, get()).await;
    assert_eq!(status, 200);
    assert_eq!(counts(&accesses), budget(5, 0), "{accesses:#?}");
    assert_eq!(
        (accesses[0].action, accesses[0].scope.as_str()),
        ("dynamodb:GetItem", "USER#")
    );
}

#[tokio::test]
async fn a_revoked_token_costs_at_most_one_read_per_cache_bound() {
    let t = TestApp::new();
    let users = docare_users::router();
    let me = account(&t.app, "gone@example.com", "Gone", Role::Patient).await;
    let bearer = token(&t.app, &me, Role::Patient, "gone", &["pwd"]).await;
    let get = || request(Method::GET, "/api/v1/users/me", Some(&bearer), None);
    // Warm: the verification keys are loaded by a first request.
    assert_eq!(recorded(&t, &users, get()).await.0, 200);
    shared::auth::accounts::change(
        &t.app,
        &me,
        shared::auth::accounts::AccountChange::new()
            .end_sessions(t.app.clock.now().timestamp_millis()),
    )
    .await
    .unwrap();
    t.clock.advance(chrono::Duration::milliseconds(1));
    let (status, accesses) = recorded(&t, &users, get()).await;
    assert_eq!(status, 401);
    assert_eq!(
        counts(&accesses),
        budget(1, 0),
        "one read, no rate counter: {accesses:#?}"
    );
    let (status, accesses) = recorded(&t, &users, get()).await;
    assert_eq!(
        (status, accesses.len()),
        (401, 0),
        "then cached: {accesses:?}"
    );
}

#[tokio::test]
async fn a_refused_request_costs_no_more_than_its_refusal() {
    let t = TestApp::new();
    let users = docare_users::router();
    // No token: nothing is read, nothing is counted.
    let (status, accesses) = recorded(
        &t,
        &users,
        request(Method::GET, "/api/v1/users/me/profile", None, None),
    )
    .await;
    assert_eq!((status, accesses.len()), (401, 0), "{accesses:?}");
}
