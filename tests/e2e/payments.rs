//! The refund race on the AWS adapters: 45 refunds of one payment fired at once through
//! 45 separate apps (as 45 Lambda instances) against the AWS emulator, with a Stripe
//! that does not bound refunds itself (as localstripe does not). Only what fits the paid
//! amount is reserved: exactly 25 of 2.00 against 50.00. Runs on its own serial moto
//! (`SerialMoto`, see `appointments.rs`): the threaded moto does not isolate concurrent
//! transactions. The webhook secret is read from Secrets Manager (the emulator's).

use super::appointments::SerialMoto;
use http::Method;
use serde_json::json;
use shared::adapters::local::FakeStripe;
use shared::auth::Role;
use shared::testing::aws::{sdk_config, stage, Stage};
use shared::testing::{account, dispatch, request, token, with_ports};
use shared::App;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const RACERS: usize = 45;
const SECRET: &str = "whsec_e2e_refund_race";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_five_refunds_on_forty_five_aws_instances_never_exceed_the_paid_amount() {
    if shared::testing::aws::endpoint().is_none() {
        return;
    }
    let emulator = SerialMoto::start().await;
    let endpoint = emulator.url.clone();
    let sdk = sdk_config(&endpoint);
    let Stage { config, .. } = stage(&sdk, &endpoint, "pay", &[]).await;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(shared::payments::webhook_secret_name(config.stage.as_str()))
        .secret_string(SECRET)
        .send()
        .await
        .expect("the webhook secret");
    let stripe = Arc::new(FakeStripe::new(
        SECRET.into(),
        Arc::new(shared::clock::SystemClock),
    ));
    stripe.set_unchecked_refunds(true);
    let aws = shared::adapters::aws::build_app(config.clone(), &sdk);
    let first = with_ports(&aws, |p| p.payments = stripe.clone());
    let provider = account(&first, "refund-dr@example.com", "Dr Refund", Role::Provider).await;
    let provider_token = token(
        &first,
        &provider,
        Role::Provider,
        "d",
        &["pwd", "mfa", "otp"],
    )
    .await;
    let patient = account(&first, "refund-pt@example.com", "Pat", Role::Patient).await;
    let patient_token = token(&first, &patient, Role::Patient, "p", &["pwd"]).await;
    let appointment =
        docare_e2e::book_any_slot(&first, &provider, &provider_token, &patient_token).await;
    let payment = docare_e2e::pay_for(&first, &provider_token, &patient_token, &appointment).await;
    let (_, paid) = dispatch(
        &docare_billing::router(),
        &first,
        request(
            Method::GET,
            &format!("/api/v1/payments/{payment}"),
            Some(&patient_token),
            None,
        ),
    )
    .await;
    let intent = paid["stripe_payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let from = stripe.deliveries().len();
    first.payments.confirm_intent(&intent).await.unwrap();
    let success = stripe.deliveries()[from].clone();
    let mut hook = shared::http::ApiRequest::new(Method::POST, "/api/v1/webhooks/stripe");
    hook.body = success.body.clone().into_bytes().into();
    hook.headers
        .insert("stripe-signature", success.signature.parse().unwrap());
    let (status, answer) = dispatch(&docare_stripe_webhook::router(), &first, hook).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );

    // One app per racer: its own SDK clients, caches and audit writer.
    let apps: Vec<App> = (0..RACERS)
        .map(|_| {
            let app = shared::adapters::aws::build_app(config.clone(), &sdk);
            with_ports(&app, |p| p.payments = stripe.clone())
        })
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for app in apps {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let req = request(
            Method::POST,
            &format!("/api/v1/payments/{payment}/refunds"),
            Some(&provider_token),
            Some(json!({"amount": 200, "reason": "requested_by_customer"})),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            most.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let (status, body) = dispatch(&docare_billing::router(), &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            assert!(matches!(status, 201 | 422), "{status} {body}");
            status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most >= 20,
        "the refunds overlapped: at most {most} in flight"
    );
    let won = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!((won, RACERS - won), (25, 20), "{statuses:?}");
    let asked: i64 = stripe
        .received()
        .iter()
        .filter(|(what, _)| what == "POST /v1/refunds")
        .map(|(_, form)| form[1].1.parse::<i64>().unwrap())
        .sum();
    assert_eq!(asked, 5000, "what Stripe was asked to refund");
}

/// The local stack end to end over HTTP: a booking, its payment, the fake Stripe's
/// confirmation, whose signed `payment_intent.succeeded` the fake POSTs to the stack's
/// webhook route (as Stripe would), the payment paid and the receipt showing it; a
/// forged delivery is a 400 and a refund above the paid amount a 422.
#[tokio::test]
async fn over_http_a_confirmed_payment_is_marked_paid_by_its_signed_webhook() {
    let stack = docare_e2e::TestStack::start().await;
    let app = stack.app().clone();
    let provider = account(&app, "http-dr@example.com", "Dr Http", Role::Provider).await;
    let provider_token = token(&app, &provider, Role::Provider, "d", &["pwd", "mfa", "otp"]).await;
    let patient = account(&app, "http-pt@example.com", "Pat", Role::Patient).await;
    let patient_token = token(&app, &patient, Role::Patient, "p", &["pwd"]).await;
    let appointment =
        docare_e2e::book_any_slot(&app, &provider, &provider_token, &patient_token).await;
    let http = &stack.http;
    let answer = http
        .put(stack.url("/api/v1/providers/me/prices"))
        .bearer_auth(&provider_token)
        .json(&json!({"consultation_type": "video", "amount": 7500, "currency": "eur"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let created: serde_json::Value = http
        .post(stack.url("/api/v1/payments"))
        .bearer_auth(&patient_token)
        .header("idempotency-key", "http-pay-1")
        .json(&json!({"appointment_id": appointment}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (created["amount"].as_i64(), created["currency"].as_str()),
        (Some(7500), Some("eur")),
        "{created}"
    );
    let id = created["id"].as_str().unwrap().to_string();
    let intent = created["stripe_payment_intent_id"].as_str().unwrap();
    // A forged delivery changes nothing.
    let forged = http
        .post(stack.url("/api/v1/webhooks/stripe"))
        .header("stripe-signature", "t=1,v1=deadbeef")
        .body(r#"{"id":"evt_forged","type":"payment_intent.succeeded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    // The client confirms as Stripe.js does in test mode, over HTTP: the fake's own route
    // on the local stack takes the intent's client secret (a wrong one is Stripe's 404
    // and confirms nothing), then delivers the signed event to the stack's webhook route.
    let confirm = stack.url(&format!("/_fake/stripe/payment_intents/{intent}/confirm"));
    let wrong = http
        .post(&confirm)
        .form(&[("client_secret", "pi_wrong_secret_x")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let secret = created["client_secret"].as_str().unwrap();
    let confirmed = http
        .post(&confirm)
        .form(&[
            ("client_secret", secret),
            ("payment_method", "pm_card_visa"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let confirmed: serde_json::Value = confirmed.json().await.unwrap();
    assert_eq!(
        (confirmed["id"].as_str(), confirmed["status"].as_str()),
        (Some(intent), Some("succeeded")),
        "{confirmed}"
    );
    // Confirmed once only: again is Stripe's unexpected-state 400.
    let again = http
        .post(&confirm)
        .json(&json!({"client_secret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    let mut status = String::new();
    for _ in 0..100 {
        let read: serde_json::Value = http
            .get(stack.url(&format!("/api/v1/payments/{id}")))
            .bearer_auth(&patient_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status = read["status"].as_str().unwrap_or_default().to_string();
        if status == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded", "the webhook reached the stack");
    let receipt = http
        .get(stack.url(&format!("/api/v1/payments/{id}/receipt?format=html")))
        .bearer_auth(&patient_token)
        .send()
        .await
        .unwrap();
    assert!(receipt.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    let html = receipt.text().await.unwrap();
    assert!(
        html.contains("75.00 EUR") && html.contains("succeeded"),
        "{html}"
    );
    let refused = http
        .post(stack.url(&format!("/api/v1/payments/{id}/refunds")))
        .bearer_auth(&provider_token)
        .json(&json!({"amount": 7501, "reason": "requested_by_customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
}

/// The fake Stripe's route is the local stack's only: no function's router (as deployed
/// to Lambda) answers it and the template has no such route.
#[test]
fn the_fake_stripe_route_exists_on_the_local_stack_only() {
    let path = "/_fake/stripe/payment_intents/pi_x/confirm";
    assert!(path.starts_with(docare_local::http_gateway::FAKE_STRIPE_PATH));
    for mount in docare_local::mounts::http_functions() {
        assert!(
            mount.router.resolve(&Method::POST, path).is_none(),
            "{} answers {path}",
            mount.function
        );
    }
    let template = std::fs::read_to_string(shared::testing::repo_root().join("template.yaml"))
        .expect("template.yaml");
    assert!(
        !template.contains("_fake"),
        "the template names the fake's route"
    );
}

/// A declined test card over HTTP: Stripe's 402, and the signed
/// `payment_intent.payment_failed` reaches the stack (the payment stays unpaid).
#[tokio::test]
async fn over_http_a_declined_test_card_leaves_the_payment_unpaid() {
    let stack = docare_e2e::TestStack::start().await;
    let app = stack.app().clone();
    let provider = account(&app, "decl-dr@example.com", "Dr Decl", Role::Provider).await;
    let provider_token = token(&app, &provider, Role::Provider, "d", &["pwd", "mfa", "otp"]).await;
    let patient = account(&app, "decl-pt@example.com", "Pat", Role::Patient).await;
    let patient_token = token(&app, &patient, Role::Patient, "p", &["pwd"]).await;
    let appointment =
        docare_e2e::book_any_slot(&app, &provider, &provider_token, &patient_token).await;
    let http = &stack.http;
    let answer = http
        .put(stack.url("/api/v1/providers/me/prices"))
        .bearer_auth(&provider_token)
        .json(&json!({"consultation_type": "video", "amount": 2000, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let created: serde_json::Value = http
        .post(stack.url("/api/v1/payments"))
        .bearer_auth(&patient_token)
        .json(&json!({"appointment_id": appointment}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intent = created["stripe_payment_intent_id"].as_str().unwrap();
    let from = stack.stack.parts.stripe.deliveries().len();
    let declined = http
        .post(stack.url(&format!("/_fake/stripe/payment_intents/{intent}/confirm")))
        .form(&[
            ("client_secret", created["client_secret"].as_str().unwrap()),
            ("payment_method", "pm_card_chargeDeclined"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), 402);
    let deliveries = stack.stack.parts.stripe.deliveries();
    assert_eq!(
        deliveries[from..]
            .iter()
            .map(|d| d.event_type.as_str())
            .collect::<Vec<_>>(),
        ["payment_intent.payment_failed"]
    );
    let read: serde_json::Value = http
        .get(stack.url(&format!(
            "/api/v1/payments/{}",
            created["id"].as_str().unwrap()
        )))
        .bearer_auth(&patient_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "requires_payment_method", "{read}");
}
