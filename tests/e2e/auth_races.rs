//! The guessing races of issue 12 on the AWS adapters: 40 wrong passwords for one
//! account fired at once on 40 app instances (each its own SDK clients and caches, like
//! Lambda instances) against the emulator. The attempt is reserved in DynamoDB (the
//! per-address rate counter and the account's lockout counter, conditional writes)
//! before any hash is checked, so at most 5 hashes are checked, whatever the overlap.
//! Runs on its own serial moto (`SerialMoto`: the threaded one does not isolate
//! concurrent transactions); requests still arrive concurrently.

use crate::appointments::SerialMoto;
use http::Method;
use serde_json::json;
use shared::auth::checks::{self, Check};
use shared::auth::{accounts, Role};
use shared::testing::aws::{sdk_config, stage, Stage};
use shared::testing::{dispatch, request};
use shared::App;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const RACERS: usize = 40;
const LIMIT: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_wrong_passwords_on_forty_aws_instances_check_at_most_five() {
    if shared::testing::aws::endpoint().is_none() {
        return;
    }
    let emulator = SerialMoto::start().await;
    let endpoint = emulator.url.clone();
    let sdk = sdk_config(&endpoint);
    let Stage { config, .. } = stage(&sdk, &endpoint, "guess", &[]).await;
    let first = shared::adapters::aws::build_app(config.clone(), &sdk);
    let id = shared::testing::account(
        &first,
        "guessed@example.com",
        "Guessed Person",
        Role::Patient,
    )
    .await;
    let apps: Vec<App> = (0..RACERS)
        .map(|_| shared::adapters::aws::build_app(config.clone(), &sdk))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (n, app) in apps.into_iter().enumerate() {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            // One address per racer: the per-account limits, not the per-IP one, decide.
            let mut req = request(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(
                    json!({"email": "guessed@example.com", "password": "not the password at all"}),
                ),
            );
            req.source_ip = Some(format!("198.18.7.{}", n + 1));
            barrier.wait().await;
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let (status, body) = dispatch(&docare_auth::router(), &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            assert!(matches!(status, 401 | 429), "{status} {body}");
            status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most as u64 > LIMIT,
        "the guesses overlapped: {most} in flight at most, want more than {LIMIT}"
    );
    let checked = checks::made(Check::Password, &id);
    assert!(
        checked <= LIMIT,
        "{checked} password hashes checked on the AWS adapters; the limit is {LIMIT}"
    );
    let refused = statuses.iter().filter(|s| **s == 401).count() as u64;
    assert_eq!(
        refused, checked,
        "a 401 for each hash checked: {statuses:?}"
    );
    let account = accounts::get(&first, &id).await.unwrap().unwrap();
    assert!(
        account.locked(first.clock.now().timestamp()),
        "the fifth failure locked the account"
    );
}
