//! The PHI routes on the AWS adapters against the AWS emulator, then boto3 reads the raw
//! DynamoDB items and queue messages back and finds no plaintext of any PHI field.

use http::Method;
use serde_json::{json, Value};
use shared::http::Router;
use shared::testing::aws::{sdk_config, stage, Stage};
use shared::testing::{dispatch, repo_root, request};
use shared::App;

const PLAINTEXTS: [&str; 9] = [
    "phi-aws@example.com",
    "Ada Lovelace",
    "1945-12-10",
    "078-05-1120",
    "+442071234567",
    "12 St James Square",
    "Charles Babbage",
    "+442079460000",
    "feeling faint",
];

async fn call(
    router: &Router,
    app: &App,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = request(method, path, token, Some(body));
    req.source_ip = Some("198.51.100.77".into());
    let (status, body) = dispatch(router, app, req).await;
    assert!(status < 300, "{path}: {status} {body}");
    body
}

#[tokio::test]
async fn no_phi_in_the_clear_in_dynamodb_or_sqs() {
    let Ok(endpoint) = std::env::var("DOCARE_TEST_AWS_ENDPOINT") else {
        assert_eq!(
            std::env::var("DOCARE_TEST_SKIP_AWS").as_deref(),
            Ok("1"),
            "AWS emulator not running: use scripts/test"
        );
        return;
    };
    let python =
        std::env::var("DOCARE_TEST_PYTHON").expect("DOCARE_TEST_PYTHON (scripts/test sets it)");
    let sdk = sdk_config(&endpoint);
    // Access tokens are signed by KMS (Sign, GetPublicKey) through the AWS adapter; the
    // contact's UK number is allowed by configuration (the default is +1 only).
    let Stage {
        table,
        audit_table,
        queue_url,
        config,
    } = stage(
        &sdk,
        &endpoint,
        "phi",
        &[("DOCARE_SMS_COUNTRY_CODES", "+1,+44")],
    )
    .await;
    let app = shared::adapters::aws::build_app(config, &sdk);

    let auth = docare_auth::router();
    call(
        &auth,
        &app,
        Method::POST,
        "/api/v1/auth/signup",
        None,
        json!({"email": PLAINTEXTS[0], "password": "granite walrus tuesday orbit", "full_name": PLAINTEXTS[1]}),
    )
    .await;
    let account = shared::auth::accounts::find_by_email(&app, PLAINTEXTS[0])
        .await
        .unwrap()
        .expect("account");
    // Verified (as the mailed token would): only an active account's tokens work.
    shared::auth::accounts::change(
        &app,
        &account.id,
        shared::auth::accounts::AccountChange::new().status(shared::auth::accounts::Status::Active),
    )
    .await
    .unwrap();
    // A real session (authenticate checks it is live).
    let token = shared::testing::session(&app, &account.id, shared::auth::Role::Patient, &["pwd"])
        .await
        .access;
    call(
        &docare_users::router(),
        &app,
        Method::PUT,
        "/api/v1/users/me/profile",
        Some(&token),
        json!({"full_name": PLAINTEXTS[1], "date_of_birth": PLAINTEXTS[2], "ssn": PLAINTEXTS[3], "phone": PLAINTEXTS[4], "current_password": "granite walrus tuesday orbit",
               "address": {"line1": PLAINTEXTS[5], "city": "London", "postal_code": "SW1Y 4LG", "country": "GB"}}),
    )
    .await;
    let emergency = docare_emergency::router();
    call(
        &emergency,
        &app,
        Method::POST,
        "/api/v1/emergency/contacts",
        Some(&token),
        json!({"name": PLAINTEXTS[6], "relationship": "friend", "phone": PLAINTEXTS[7]}),
    )
    .await;
    let sos = call(
        &emergency,
        &app,
        Method::POST,
        "/api/v1/emergency/sos",
        Some(&token),
        json!({"message": PLAINTEXTS[8]}),
    )
    .await;
    assert_eq!(sos["notified"], 1);
    let profile = call(
        &docare_users::router(),
        &app,
        Method::GET,
        "/api/v1/users/me/profile",
        Some(&token),
        Value::Null,
    )
    .await;
    assert_eq!(
        profile["date_of_birth"], PLAINTEXTS[2],
        "reads back through the AWS adapters"
    );

    // Sessions on the AWS adapters: a refresh (rotation with the account's condition
    // checks), a logout (the account's revoked-session list, compare-and-set) and a
    // logout-all cut the tokens; each commits with its event.
    use shared::auth::Role;
    let phone = shared::testing::session(&app, &account.id, Role::Patient, &["pwd"]).await;
    let laptop = shared::testing::session(&app, &account.id, Role::Patient, &["pwd"]).await;
    let refreshed = call(
        &auth,
        &app,
        Method::POST,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": phone.refresh}),
    )
    .await;
    let me = |token: String| {
        let app = app.clone();
        async move {
            dispatch(
                &docare_users::router(),
                &app,
                request(Method::GET, "/api/v1/users/me", Some(&token), None),
            )
            .await
            .0
        }
    };
    let phone_access = refreshed["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(phone_access.clone()).await, 200);
    call(
        &auth,
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        Some(&phone_access),
        Value::Null,
    )
    .await;
    assert_eq!(me(phone_access).await, 401, "logged out");
    assert_eq!(
        me(laptop.access.clone()).await,
        200,
        "the other session lives"
    );
    let spent = dispatch(
        &auth,
        &app,
        request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refreshed["refresh_token"]})),
        ),
    )
    .await;
    assert_eq!(spent.0, 401);
    call(
        &auth,
        &app,
        Method::POST,
        "/api/v1/auth/logout-all",
        Some(&laptop.access),
        Value::Null,
    )
    .await;
    assert_eq!(me(laptop.access.clone()).await, 401, "every session ended");

    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(repo_root().join("tests/python/raw_items.py"))
            .args([&endpoint, &table, &audit_table, &queue_url])
            .args(PLAINTEXTS)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    assert!(
        output.status.success(),
        "raw_items.py:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The daily SMS cap on the AWS adapters (DynamoDB's conditional update in a transaction,
/// SQS): 48 requests at once from 8 app instances — 8 Lambda instances with their own
/// clients, caches and audit writers — each re-pointing one contact at a new number;
/// exactly what the cap leaves is queued, the rest is `429`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daily_sms_cap_holds_under_parallel_requests_on_dynamodb() {
    use shared::domain::emergency::CONTACT_SMS_PER_DAY;
    const REQUESTS: usize = 48;
    if std::env::var("DOCARE_TEST_AWS_ENDPOINT").is_err() {
        assert_eq!(
            std::env::var("DOCARE_TEST_SKIP_AWS").as_deref(),
            Ok("1"),
            "AWS emulator not running: use scripts/test"
        );
        return;
    }
    // Its own serial emulator: the shared threaded one loses concurrent transactions.
    let emulator = crate::appointments::SerialMoto::start().await;
    let endpoint = emulator.url.clone();
    let sdk = sdk_config(&endpoint);
    let Stage { config, .. } = stage(&sdk, &endpoint, "cap", &[]).await;
    let instances: Vec<App> = (0..8)
        .map(|_| shared::adapters::aws::build_app(config.clone(), &sdk))
        .collect();
    let app = instances[0].clone();
    let user = shared::testing::account(
        &app,
        "cap@example.com",
        "Cap Tain",
        shared::auth::Role::Patient,
    )
    .await;
    let (token, _) = app
        .tokens
        .issue(
            &app,
            &user,
            shared::auth::Role::Patient,
            &app.new_id(),
            &["pwd"],
        )
        .await
        .unwrap();
    let emergency = docare_emergency::router();
    let contact = call(
        &emergency,
        &app,
        Method::POST,
        "/api/v1/emergency/contacts",
        Some(&token),
        json!({"name": "Sam", "relationship": "friend", "phone": "+14155550100"}),
    )
    .await;
    // Spend all but a few of today's SMS, so the race is about the last ones.
    let spent = CONTACT_SMS_PER_DAY as usize - 1 - 20;
    assert!(shared::store::contacts::reserve(
        &app,
        &user,
        shared::store::contacts::Channel::Sms,
        spent
    )
    .await
    .unwrap());
    let left = 20;
    assert_eq!(shared::testing::drain_notifications(&app).await.len(), 1);
    let path = format!(
        "/api/v1/emergency/contacts/{}",
        contact["id"].as_str().unwrap()
    );
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let router = std::sync::Arc::new(emergency);
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for n in 0..REQUESTS {
        let (app, barrier, router) = (instances[n % 8].clone(), barrier.clone(), router.clone());
        let (path, token, in_flight, most) =
            (path.clone(), token.clone(), in_flight.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"name": "Sam", "relationship": "friend", "phone": format!("+1415777{n:04}")});
            let mut req = request(Method::PUT, &path, Some(&token), Some(body));
            req.source_ip = Some("198.51.100.78".into());
            barrier.wait().await;
            let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
            let status = dispatch(&router, &app, req).await.0;
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            status
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()).or_insert(0usize) += 1;
    }
    assert!(
        most.load(std::sync::atomic::Ordering::SeqCst) >= 8,
        "the requests overlapped"
    );
    let queued = shared::testing::drain_notifications(&app).await.len();
    assert_eq!(queued, left, "{statuses:?}");
    assert_eq!(statuses.get(&200).copied(), Some(left), "{statuses:?}");
    assert_eq!(
        statuses.get(&429).copied(),
        Some(REQUESTS - left),
        "{statuses:?}"
    );
}
