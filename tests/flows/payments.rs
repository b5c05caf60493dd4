//! Billing and Stripe webhooks through the billing and stripe-webhook routers on a
//! throw-away local app whose payments port is the offline fake Stripe (manual clock at
//! Monday 2026-11-23 09:00 UTC): prices, payments at the provider's price only, what
//! reaches Stripe, idempotent creation, an outage, signed webhooks (forged, stale,
//! replayed, out of order, signed by the official `stripe` library), receipts, history,
//! and refunds that never exceed what was paid however many race.

use http::Method;
use serde_json::{json, Value};
use shared::adapters::local::{intent_object, refund_object, Delivery};
use shared::auth::Role;
use shared::ports::payments::{PaymentError, Refund};
use shared::testing::{account, dispatch, request, token, with_ports, TestApp, OUTAGE};
use shared::App;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const TUESDAY_10: &str = "2026-11-24T10:00:00Z";

pub struct World {
    pub t: TestApp,
    billing: shared::http::Router,
    webhook: shared::http::Router,
    pub provider_token: String,
    pub patient: String,
    pub patient_token: String,
    pub stranger_token: String,
    pub admin_token: String,
    pub appointment: String,
}

pub async fn world() -> World {
    let t = TestApp::new();
    let provider = account(&t.app, "dr@example.com", "Dr Gray", Role::Provider).await;
    let provider_token = token(
        &t.app,
        &provider,
        Role::Provider,
        "dr",
        &["pwd", "mfa", "otp"],
    )
    .await;
    let patient = account(&t.app, "pat@example.com", "Pat Doe", Role::Patient).await;
    let patient_token = token(&t.app, &patient, Role::Patient, "pat", &["pwd"]).await;
    let stranger = account(&t.app, "other@example.com", "Other", Role::Patient).await;
    let stranger_token = token(&t.app, &stranger, Role::Patient, "other", &["pwd"]).await;
    let admin = account(&t.app, "admin@example.com", "Admin", Role::Admin).await;
    let admin_token = token(&t.app, &admin, Role::Admin, "adm", &["pwd", "mfa", "otp"]).await;
    let appointments = docare_appointments::router();
    let weekly: Vec<Value> = ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .map(|d| json!({"day": d, "start": "09:00", "end": "17:00"}))
        .collect();
    let req = request(
        Method::PUT,
        "/api/v1/providers/me/availability",
        Some(&provider_token),
        Some(
            json!({"time_zone": "UTC", "slot_minutes": 30, "weekly": weekly,
            "specialty": "Psychiatry", "consultation_types": ["video"]}),
        ),
    );
    let (status, body) = dispatch(&appointments, &t.app, req).await;
    assert_eq!(status, 200, "{body}");
    let req = request(
        Method::POST,
        "/api/v1/appointments",
        Some(&patient_token),
        Some(
            json!({"provider_id": provider, "start": TUESDAY_10, "consultation_type": "video",
            "reason": "Mental health consultation: anxiety"}),
        ),
    );
    let (status, body) = dispatch(&appointments, &t.app, req).await;
    assert_eq!(status, 201, "{body}");
    let appointment = body["id"].as_str().unwrap().to_string();
    let w = World {
        t,
        billing: docare_billing::router(),
        webhook: docare_stripe_webhook::router(),
        provider_token,
        patient,
        patient_token,
        stranger_token,
        admin_token,
        appointment,
    };
    let (status, body) = w
        .call(
            &w.provider_token,
            Method::PUT,
            "/api/v1/providers/me/prices",
            Some(json!({"consultation_type": "video", "amount": 5000, "currency": "usd"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    w
}

fn secs(w: &World) -> i64 {
    use shared::clock::Clock;
    w.t.clock.now().timestamp()
}

impl World {
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = request(method, path, Some(token), body);
        dispatch(&self.billing, &self.t.app, req).await
    }

    pub async fn pay(&self) -> Value {
        let (status, body) = self
            .call(
                &self.patient_token,
                Method::POST,
                "/api/v1/payments",
                Some(json!({"appointment_id": self.appointment})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Delivers a signed event to the webhook route.
    pub async fn deliver(&self, delivery: &Delivery) -> (u16, Value) {
        self.post_webhook(delivery.body.as_bytes(), Some(&delivery.signature))
            .await
    }

    pub async fn post_webhook(&self, body: &[u8], signature: Option<&str>) -> (u16, Value) {
        let mut req = shared::http::ApiRequest::new(Method::POST, "/api/v1/webhooks/stripe");
        req.body = body.to_vec().into();
        if let Some(signature) = signature {
            req.headers
                .insert("stripe-signature", signature.parse().unwrap());
        }
        dispatch(&self.webhook, &self.t.app, req).await
    }

    /// Delivers every event the fake signed since `from`; returns how many.
    pub async fn deliver_since(&self, from: usize) -> usize {
        let all = self.t.stripe.deliveries();
        for delivery in &all[from..] {
            let (status, body) = self.deliver(delivery).await;
            assert_eq!(status, 200, "{} {body}", delivery.event_type);
        }
        all.len() - from
    }

    pub async fn payment(&self, id: &str) -> Value {
        let (status, body) = self
            .call(
                &self.patient_token,
                Method::GET,
                &format!("/api/v1/payments/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Pays and confirms: the payment has succeeded (through its webhook).
    pub async fn paid(&self) -> String {
        let created = self.pay().await;
        let id = created["id"].as_str().unwrap().to_string();
        let intent = created["stripe_payment_intent_id"].as_str().unwrap();
        let from = self.t.stripe.deliveries().len();
        self.t.app.payments.confirm_intent(intent).await.unwrap();
        self.deliver_since(from).await;
        assert_eq!(self.payment(&id).await["status"], "succeeded");
        id
    }

    async fn secret(&self) -> String {
        let name = shared::payments::webhook_secret_name("local");
        self.t.app.secrets.get(&name).await.unwrap().to_string()
    }
}

#[tokio::test]
async fn a_payment_is_made_at_the_providers_price_and_only_opaque_ids_reach_stripe() {
    let w = world().await;
    // The client never names the amount or the currency.
    for body in [
        json!({"appointment_id": w.appointment, "amount": 1}),
        json!({"appointment_id": w.appointment, "currency": "eur"}),
    ] {
        let (status, _) = w
            .call(
                &w.patient_token,
                Method::POST,
                "/api/v1/payments",
                Some(body),
            )
            .await;
        assert_eq!(status, 422);
    }
    // Strangers see nothing (404); the provider does not pay (403).
    let body = Some(json!({"appointment_id": w.appointment}));
    let (status, _) = w
        .call(
            &w.stranger_token,
            Method::POST,
            "/api/v1/payments",
            body.clone(),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .call(&w.provider_token, Method::POST, "/api/v1/payments", body)
        .await;
    assert_eq!(status, 403);
    assert!(w.t.stripe.received().is_empty(), "nothing reached Stripe");

    let created = w.pay().await;
    assert_eq!(created["amount"], 5000);
    assert_eq!(created["currency"], "usd");
    assert_eq!(created["status"], "requires_payment_method");
    assert!(created["client_secret"]
        .as_str()
        .unwrap()
        .contains("_secret_"));
    let id = created["id"].as_str().unwrap();
    // What Stripe received: the amount, the currency and our opaque payment id.
    let received = w.t.stripe.received();
    assert_eq!(received.len(), 1);
    let (what, form) = &received[0];
    assert_eq!(what, "POST /v1/payment_intents");
    let expected: Vec<(String, String)> = vec![
        ("amount".into(), "5000".into()),
        ("currency".into(), "usd".into()),
        ("metadata[docare_payment_id]".into(), id.into()),
    ];
    assert_eq!(form, &expected);
    let sent = format!("{received:?}");
    for secret in [
        "Mental",
        "anxiety",
        "Pat",
        "Doe",
        "Psychiatry",
        "Gray",
        &w.patient,
        &w.appointment,
    ] {
        assert!(!sent.contains(secret), "{secret} reached Stripe: {sent}");
    }
    // Stored: no client secret.
    let read = w.payment(id).await;
    assert!(read.get("client_secret").is_none(), "{read}");
    let (status, listed) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/appointments/{}/payments", w.appointment),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["id"], id);
    let (status, _) = w
        .call(
            &w.stranger_token,
            Method::GET,
            &format!("/api/v1/payments/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .call(
            &w.stranger_token,
            Method::GET,
            &format!("/api/v1/appointments/{}/payments", w.appointment),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_retry_under_its_idempotency_key_returns_the_same_payment() {
    let w = world().await;
    let send = |key: &'static str, appointment: String| {
        let mut req = request(
            Method::POST,
            "/api/v1/payments",
            Some(&w.patient_token),
            Some(json!({"appointment_id": appointment})),
        );
        req.headers.insert("idempotency-key", key.parse().unwrap());
        dispatch(&w.billing, &w.t.app, req)
    };
    let (status, first) = send("pay-1", w.appointment.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = send("pay-1", w.appointment.clone()).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        first["stripe_payment_intent_id"],
        again["stripe_payment_intent_id"]
    );
    assert_eq!(first["client_secret"], again["client_secret"]);
    let (status, _) = send("pay-1", "01JABCDEFGHJKMNPQRSTVWXYZ0".to_string()).await;
    assert_eq!(status, 422, "the same key for another appointment");
    let (_, listed) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/appointments/{}/payments", w.appointment),
            None,
        )
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn a_stripe_outage_is_a_503_and_records_nothing() {
    let w = world().await;
    let down = with_ports(&w.t.app, |p| p.payments = Arc::new(OUTAGE));
    let req = request(
        Method::POST,
        "/api/v1/payments",
        Some(&w.patient_token),
        Some(json!({"appointment_id": w.appointment})),
    );
    let (status, body) = dispatch(&w.billing, &down, req).await;
    assert_eq!(status, 503, "{body}");
    let (_, listed) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/appointments/{}/payments", w.appointment),
            None,
        )
        .await;
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
    // And a payment made afterwards goes through.
    w.pay().await;
}

#[tokio::test]
async fn the_signed_success_marks_it_paid_and_the_receipt_shows_it() {
    let w = world().await;
    let id = w.paid().await;
    let (status, receipt) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/payments/{id}/receipt"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(receipt["status"], "succeeded");
    assert_eq!(receipt["amount"], 5000);
    assert_eq!(receipt["provider_name"], "Dr Gray");
    let mut req = request(
        Method::GET,
        &format!("/api/v1/payments/{id}/receipt"),
        Some(&w.patient_token),
        None,
    );
    req.headers.insert("accept", "text/html".parse().unwrap());
    let response = w.billing.dispatch(&w.t.app, req).await;
    assert_eq!(response.status, 200);
    let csp = response.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(response.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(response.body.to_vec()).unwrap();
    assert!(
        html.contains("50.00 USD") && html.contains("succeeded"),
        "{html}"
    );
    assert!(!html.to_lowercase().contains("<script"), "{html}");
    // The patient's history.
    let (status, history) = w
        .call(
            &w.patient_token,
            Method::GET,
            "/api/v1/billing/transactions",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(history["items"][0]["kind"], "payment");
    assert_eq!(history["items"][0]["status"], "succeeded");
    let (_, other) = w
        .call(
            &w.stranger_token,
            Method::GET,
            "/api/v1/billing/transactions",
            None,
        )
        .await;
    assert!(other["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn forged_stale_replayed_and_older_events_change_nothing() {
    let w = world().await;
    let created = w.pay().await;
    let id = created["id"].as_str().unwrap().to_string();
    let intent = created["stripe_payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A failure Stripe sends now, delivered only after the later success.
    let mut failed = intent_object(&w.t.app.payments.retrieve_intent(&intent).await.unwrap());
    failed["status"] = json!("requires_payment_method");
    let late = w.t.stripe.emit("payment_intent.payment_failed", failed);
    w.t.clock.advance(chrono::Duration::seconds(5));
    let from = w.t.stripe.deliveries().len();
    w.t.app.payments.confirm_intent(&intent).await.unwrap();
    let success = w.t.stripe.deliveries()[from].clone();
    assert_eq!(success.event_type, "payment_intent.succeeded");

    // Forged: another secret, a changed body, no signature, a stale one.
    let forged = shared::payments::sign("whsec_forged", secs(&w), success.body.as_bytes());
    let tampered = success.body.replace("succeeded", "canceled");
    let stale_at = secs(&w) - 301;
    let stale = shared::payments::sign(&w.secret().await, stale_at, success.body.as_bytes());
    for (body, signature) in [
        (success.body.as_str(), Some(forged.as_str())),
        (tampered.as_str(), Some(success.signature.as_str())),
        (success.body.as_str(), None),
        (success.body.as_str(), Some(stale.as_str())),
    ] {
        let (status, answer) = w.post_webhook(body.as_bytes(), signature).await;
        assert_eq!(status, 400, "{answer}");
    }
    assert_eq!(
        w.payment(&id).await["status"],
        "requires_payment_method",
        "nothing changed"
    );

    // Delivered: applied once; replayed: processed once.
    let (status, answer) = w.deliver(&success).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (status, answer) = w.deliver(&success).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    assert_eq!(w.payment(&id).await["status"], "succeeded");

    // The older failure, delivered late, changes nothing.
    let (status, answer) = w.deliver(&late).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );
    let after = w.payment(&id).await;
    assert_eq!(after["status"], "succeeded", "{after}");
}

#[tokio::test]
async fn a_webhook_signed_by_the_official_stripe_library_is_accepted_and_ours_verify_there() {
    let python = std::env::var("DOCARE_TEST_PYTHON")
        .expect("DOCARE_TEST_PYTHON (scripts/test sets it; the venv has the stripe library)");
    let script = shared::testing::repo_root().join("tests/python/stripe_sign.py");
    let run = |args: Vec<String>, stdin: String| {
        use std::io::Write;
        let mut child = std::process::Command::new(&python)
            .arg(&script)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().expect("python ends")
    };
    let w = world().await;
    let created = w.pay().await;
    let id = created["id"].as_str().unwrap();
    let intent = created["stripe_payment_intent_id"].as_str().unwrap();
    let secret = w.secret().await;
    let event = json!({
        "id": "evt_1PythonSigned0000000000",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": secs(&w),
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": 5000,
            "currency": "usd", "status": "succeeded", "metadata": {"docare_payment_id": id}}},
    })
    .to_string();
    let signed = run(
        vec!["sign".into(), secret.clone(), secs(&w).to_string()],
        event.clone(),
    );
    assert!(signed.status.success());
    let header = String::from_utf8(signed.stdout).unwrap().trim().to_string();
    assert!(
        header.starts_with("t=") && header.contains(",v1="),
        "{header}"
    );
    let (status, answer) = w.post_webhook(event.as_bytes(), Some(&header)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    assert_eq!(w.payment(id).await["status"], "succeeded");
    // The fake's signatures are Stripe's: the library accepts them, and refuses a forgery.
    let delivery =
        w.t.stripe
            .emit("payment_intent.created", json!({"id": intent}));
    let verified = run(
        vec!["verify".into(), secret.clone(), delivery.signature.clone()],
        delivery.body.clone(),
    );
    assert!(
        verified.status.success(),
        "the stripe library accepts the fake's signature"
    );
    let forged = shared::payments::sign("whsec_forged", secs(&w), delivery.body.as_bytes());
    let refused = run(vec!["verify".into(), secret, forged], delivery.body);
    assert!(!refused.status.success());
}

#[tokio::test]
async fn refunds_are_partial_bounded_by_the_payment_and_only_for_its_provider_or_an_admin() {
    let w = world().await;
    let id = w.paid().await;
    let path = format!("/api/v1/payments/{id}/refunds");
    let body = |amount: i64| Some(json!({"amount": amount, "reason": "requested_by_customer"}));
    let (status, _) = w
        .call(&w.patient_token, Method::POST, &path, body(100))
        .await;
    assert_eq!(status, 403, "the patient does not refund");
    let (status, _) = w
        .call(&w.stranger_token, Method::POST, &path, body(100))
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .call(&w.provider_token, Method::POST, &path, body(5001))
        .await;
    assert_eq!(status, 422, "above the paid amount");
    let from = w.t.stripe.deliveries().len();
    let (status, first) = w
        .call(&w.provider_token, Method::POST, &path, body(2000))
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "succeeded");
    assert!(first["stripe_refund_id"]
        .as_str()
        .unwrap()
        .starts_with("re_"));
    let (status, _) = w
        .call(&w.admin_token, Method::POST, &path, body(3001))
        .await;
    assert_eq!(status, 422, "above what is left");
    let (status, rest) = w
        .call(
            &w.admin_token,
            Method::POST,
            &path,
            Some(json!({"reason": "duplicate"})),
        )
        .await;
    assert_eq!(status, 201, "{rest}");
    assert_eq!(rest["amount"], 3000, "the default is what is left");
    let (status, _) = w
        .call(&w.provider_token, Method::POST, &path, body(1))
        .await;
    assert_eq!(status, 422, "nothing left");
    // The refund events (replays of what the answers said) change nothing more.
    w.deliver_since(from).await;
    let read = w.payment(&id).await;
    assert_eq!(
        (
            read["refunded_amount"].as_i64(),
            read["refundable_amount"].as_i64()
        ),
        (Some(5000), Some(0)),
        "{read}"
    );
    // What reached Stripe for refunds: the intent, the amount, opaque ids.
    for (what, form) in w.t.stripe.received() {
        if what == "POST /v1/refunds" {
            let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "payment_intent",
                    "amount",
                    "metadata[docare_payment_id]",
                    "metadata[docare_refund_id]"
                ]
            );
        }
    }
    let (_, history) = w
        .call(
            &w.patient_token,
            Method::GET,
            "/api/v1/billing/transactions",
            None,
        )
        .await;
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "refund").count(),
        2,
        "{history}"
    );
}

#[tokio::test]
async fn a_refused_refund_and_a_failed_one_give_their_reservation_back() {
    let w = world().await;
    let id = w.paid().await;
    let path = format!("/api/v1/payments/{id}/refunds");
    // Stripe refuses: 422, and the amount is refundable again.
    let refusing = with_ports(&w.t.app, |p| {
        p.payments = Twisted::new(&w, None, RefundTwist::Refuse)
    });
    let (status, answer) = refund_with_key(&w, &refusing, &id, 1000, None).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(w.payment(&id).await["refundable_amount"], 5000);
    // A refund that Stripe later reports failed (`refund.failed`) is given back once.
    let (status, refund) = w
        .call(
            &w.provider_token,
            Method::POST,
            &path,
            Some(json!({"amount": 1500, "reason": "duplicate"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(refund["status"], "succeeded", "{refund}");
    let read = w.payment(&id).await;
    assert_eq!(
        (
            read["refundable_amount"].as_i64(),
            read["refunded_amount"].as_i64()
        ),
        (Some(3500), Some(1500)),
        "{read}"
    );
    let failed = Refund {
        id: refund["stripe_refund_id"].as_str().unwrap().into(),
        amount: 1500,
        status: "failed".into(),
        payment_intent: None,
        metadata: [
            ("docare_payment_id".to_string(), id.clone()),
            (
                "docare_refund_id".to_string(),
                refund["id"].as_str().unwrap().to_string(),
            ),
        ]
        .into(),
    };
    let event = w.t.stripe.emit("refund.failed", refund_object(&failed));
    let (status, answer) = w.deliver(&event).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let again = w.t.stripe.emit("refund.failed", refund_object(&failed));
    let (_, answer) = w.deliver(&again).await;
    assert_eq!(
        answer["outcome"], "ignored",
        "a second failure gives nothing back"
    );
    // Nothing was refunded after all: neither the payment nor its receipt says so.
    let read = w.payment(&id).await;
    assert_eq!(
        (
            read["refundable_amount"].as_i64(),
            read["refunded_amount"].as_i64()
        ),
        (Some(5000), Some(0)),
        "{read}"
    );
    let receipt_path = format!("/api/v1/payments/{id}/receipt");
    let (status, receipt) = w
        .call(&w.patient_token, Method::GET, &receipt_path, None)
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["refunded_amount"], 0, "{receipt}");
    assert_eq!(receipt["refunds"][0]["status"], "failed", "{receipt}");
    let mut req = request(Method::GET, &receipt_path, Some(&w.patient_token), None);
    req.headers.insert("accept", "text/html".parse().unwrap());
    let html = String::from_utf8(w.billing.dispatch(&w.t.app, req).await.body.to_vec()).unwrap();
    assert!(
        html.contains("<td>Refunded</td><td></td><td>0.00 USD</td>"),
        "{html}"
    );
}

#[tokio::test]
async fn a_dispute_is_recorded_in_the_history() {
    let w = world().await;
    let id = w.paid().await;
    let intent = w.payment(&id).await["stripe_payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = w.t.stripe.emit(
        "charge.dispute.created",
        json!({"id": "dp_1Dispute00000", "object": "dispute", "payment_intent": intent, "amount": 5000, "status": "needs_response"}),
    );
    let (status, answer) = w.deliver(&event).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    assert_eq!(w.payment(&id).await["disputed"], true);
    let (_, history) = w
        .call(
            &w.patient_token,
            Method::GET,
            "/api/v1/billing/transactions",
            None,
        )
        .await;
    assert_eq!(history["items"][0]["kind"], "dispute", "{history}");
}

/// Fires `n` refunds of `amount` at once, each through its own app instance, and
/// returns the statuses and the most that were in flight together.
pub async fn refund_race(
    apps: Vec<App>,
    token: &str,
    payment: &str,
    amount: i64,
) -> (Vec<u16>, usize) {
    let n = apps.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for app in apps {
        let (barrier, in_flight, most) = (barrier.clone(), in_flight.clone(), most.clone());
        let req = request(
            Method::POST,
            &format!("/api/v1/payments/{payment}/refunds"),
            Some(token),
            Some(json!({"amount": amount, "reason": "requested_by_customer"})),
        );
        tasks.push(tokio::spawn(async move {
            let router = docare_billing::router();
            barrier.wait().await;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let (status, _) = dispatch(&router, &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    (statuses, most.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_five_racing_refunds_never_exceed_the_paid_amount() {
    let w = world().await;
    let id = w.paid().await;
    // Stripe does not stop over-refunds here (as localstripe does not): the bound is ours.
    w.t.stripe.set_unchecked_refunds(true);
    let apps: Vec<App> = (0..45).map(|_| with_ports(&w.t.app, |_| {})).collect();
    // 45 refunds of 200 against 5000 paid: at most 25 fit.
    let (statuses, most) = refund_race(apps, &w.provider_token, &id, 200).await;
    assert!(
        most >= 20,
        "the refunds overlapped in time: at most {most} in flight"
    );
    let won = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 422).count();
    assert_eq!((won, refused), (25, 20), "{statuses:?}");
    let refunded: i64 =
        w.t.stripe
            .received()
            .iter()
            .filter(|(what, _)| what == "POST /v1/refunds")
            .map(|(_, form)| form[1].1.parse::<i64>().unwrap())
            .sum();
    assert_eq!(refunded, 5000, "what Stripe was asked to refund");
    let read = w.payment(&id).await;
    assert_eq!(read["refundable_amount"], 0, "{read}");
}

/// What [`Twisted`] does with a refund.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RefundTwist {
    /// Stripe makes it and answers.
    Pass,
    /// Stripe refuses it (a 4xx).
    Refuse,
    /// Stripe makes it, but its answer is lost (a timeout): the caller sees an outage.
    LoseAnswer,
}

/// The fake Stripe with a twist: when asked for an intent it may first let an earlier
/// payment of the same appointment succeed (its signed success delivered to the webhook
/// route: the appointment is paid between the billing function's look and its commit),
/// and refunds may be refused or their answers lost.
struct Twisted {
    stripe: Arc<shared::adapters::local::FakeStripe>,
    app: App,
    success: std::sync::Mutex<Option<Delivery>>,
    refund: RefundTwist,
}

impl Twisted {
    fn new(w: &World, success: Option<Delivery>, refund: RefundTwist) -> Arc<Self> {
        Arc::new(Self {
            stripe: w.t.stripe.clone(),
            app: w.t.app.clone(),
            success: std::sync::Mutex::new(success),
            refund,
        })
    }
}

#[async_trait::async_trait]
impl shared::ports::Payments for Twisted {
    async fn create_intent(
        &self,
        new: &shared::ports::payments::NewIntent,
    ) -> Result<shared::ports::payments::Intent, PaymentError> {
        let success = self.success.lock().unwrap().take();
        if let Some(success) = success {
            let mut hook = shared::http::ApiRequest::new(Method::POST, "/api/v1/webhooks/stripe");
            hook.body = success.body.clone().into_bytes().into();
            hook.headers
                .insert("stripe-signature", success.signature.parse().unwrap());
            let (status, answer) =
                dispatch(&docare_stripe_webhook::router(), &self.app, hook).await;
            assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")));
        }
        self.stripe.create_intent(new).await
    }
    async fn retrieve_intent(
        &self,
        id: &str,
    ) -> Result<shared::ports::payments::Intent, PaymentError> {
        self.stripe.retrieve_intent(id).await
    }
    async fn confirm_intent(
        &self,
        id: &str,
    ) -> Result<shared::ports::payments::Intent, PaymentError> {
        self.stripe.confirm_intent(id).await
    }
    async fn refund(
        &self,
        new: &shared::ports::payments::NewRefund,
    ) -> Result<Refund, PaymentError> {
        match self.refund {
            RefundTwist::Pass => self.stripe.refund(new).await,
            RefundTwist::Refuse => Err(PaymentError::Invalid("400 charge_disputed".into())),
            RefundTwist::LoseAnswer => {
                self.stripe.refund(new).await?;
                Err(PaymentError::Unavailable("timed out".into()))
            }
        }
    }
    async fn retrieve_refund(&self, id: &str) -> Result<Refund, PaymentError> {
        self.stripe.retrieve_refund(id).await
    }
}

#[tokio::test]
async fn a_paid_appointment_is_not_paid_again() {
    let w = world().await;
    // Paid: a second payment is a 409, and Stripe is not asked for another intent.
    let id = w.paid().await;
    let intents = |w: &World| {
        w.t.stripe
            .received()
            .iter()
            .filter(|(what, _)| what == "POST /v1/payment_intents")
            .count()
    };
    let before = intents(&w);
    let body = Some(json!({"appointment_id": w.appointment}));
    let (status, answer) = w
        .call(
            &w.patient_token,
            Method::POST,
            "/api/v1/payments",
            body.clone(),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(intents(&w), before, "no second intent");
    let (_, listed) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/appointments/{}/payments", w.appointment),
            None,
        )
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["items"][0]["id"], id.as_str());
}

#[tokio::test]
async fn an_appointment_paid_while_a_second_payment_is_made_refuses_it_at_the_commit() {
    let w = world().await;
    // A first payment, confirmed at Stripe; its success not delivered yet.
    let first = w.pay().await;
    let intent = first["stripe_payment_intent_id"].as_str().unwrap();
    let from = w.t.stripe.deliveries().len();
    w.t.app.payments.confirm_intent(intent).await.unwrap();
    let success = w.t.stripe.deliveries()[from].clone();
    // The second payment looks (not paid), then the success lands while Stripe makes its
    // intent: the commit is conditioned on the appointment being unpaid, so it is a 409.
    let port = Twisted::new(&w, Some(success), RefundTwist::Pass);
    let racing = with_ports(&w.t.app, |p| p.payments = port.clone());
    let req = request(
        Method::POST,
        "/api/v1/payments",
        Some(&w.patient_token),
        Some(json!({"appointment_id": w.appointment})),
    );
    let (status, answer) = dispatch(&w.billing, &racing, req).await;
    assert_eq!(status, 409, "{answer}");
    assert!(port.success.lock().unwrap().is_none(), "the success landed");
    let (_, listed) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/appointments/{}/payments", w.appointment),
            None,
        )
        .await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["status"], "succeeded");
}

/// Sends a refund of `amount` by the provider through `app`, with an `Idempotency-Key`.
async fn refund_with_key(
    w: &World,
    app: &App,
    payment: &str,
    amount: i64,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = request(
        Method::POST,
        &format!("/api/v1/payments/{payment}/refunds"),
        Some(&w.provider_token),
        Some(json!({"amount": amount, "reason": "duplicate"})),
    );
    if let Some(key) = key {
        req.headers.insert("idempotency-key", key.parse().unwrap());
    }
    dispatch(&w.billing, app, req).await
}

/// The refunds Stripe made (one `refund.created` each).
fn refunds_made(w: &World) -> usize {
    w.t.stripe
        .deliveries()
        .iter()
        .filter(|d| d.event_type == "refund.created")
        .count()
}

#[tokio::test]
async fn a_refund_whose_answer_was_lost_stays_reserved_and_its_retry_does_not_refund_twice() {
    let w = world().await;
    let id = w.paid().await;
    let from = w.t.stripe.deliveries().len();
    // Stripe makes the refund, but its answer never arrives: 503, the outcome unknown.
    let lost = with_ports(&w.t.app, |p| {
        p.payments = Twisted::new(&w, None, RefundTwist::LoseAnswer)
    });
    let (status, answer) = refund_with_key(&w, &lost, &id, 1000, Some("refund-1")).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(refunds_made(&w), 1);
    // The amount stays reserved (it may have been refunded), not refunded yet.
    let read = w.payment(&id).await;
    assert_eq!(
        (
            read["refundable_amount"].as_i64(),
            read["refunded_amount"].as_i64()
        ),
        (Some(4000), Some(0)),
        "{read}"
    );
    let (_, receipt) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/payments/{id}/receipt"),
            None,
        )
        .await;
    assert_eq!(receipt["refunds"][0]["status"], "unknown", "{receipt}");
    // The retry under the same key re-sends with the same Stripe idempotency key: Stripe
    // answers the refund it made, and no second one is made.
    let (status, retried) = refund_with_key(&w, &w.t.app, &id, 1000, Some("refund-1")).await;
    assert_eq!(status, 201, "{retried}");
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(
        retried["id"], receipt["refunds"][0]["id"],
        "the same refund"
    );
    assert_eq!(refunds_made(&w), 1, "Stripe refunded once");
    let keys: Vec<String> =
        w.t.stripe
            .received()
            .iter()
            .filter(|(what, _)| what == "POST /v1/refunds")
            .map(|(_, form)| format!("{form:?}"))
            .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the same request re-sent");
    // Again: the same refund, nothing sent. The key for another amount is a 422.
    let (status, again) = refund_with_key(&w, &w.t.app, &id, 1000, Some("refund-1")).await;
    assert_eq!((status, again["id"].clone()), (201, retried["id"].clone()));
    let (status, _) = refund_with_key(&w, &w.t.app, &id, 999, Some("refund-1")).await;
    assert_eq!(status, 422, "the key for another refund");
    // Stripe's events for it change nothing more.
    w.deliver_since(from).await;
    let read = w.payment(&id).await;
    assert_eq!(
        (
            read["refundable_amount"].as_i64(),
            read["refunded_amount"].as_i64()
        ),
        (Some(4000), Some(1000)),
        "{read}"
    );

    // Without a key, an unknown outcome is settled by Stripe's event.
    let from = w.t.stripe.deliveries().len();
    let (status, _) = refund_with_key(&w, &lost, &id, 500, None).await;
    assert_eq!(status, 503);
    assert_eq!(
        w.payment(&id).await["refundable_amount"],
        3500,
        "still reserved"
    );
    w.deliver_since(from).await;
    let read = w.payment(&id).await;
    assert_eq!(
        (
            read["refundable_amount"].as_i64(),
            read["refunded_amount"].as_i64()
        ),
        (Some(3500), Some(1500)),
        "{read}"
    );
    assert_eq!(refunds_made(&w), 2);

    // Stripe unreachable (it never got the request): 503, kept reserved; the retry under
    // the same key, once Stripe is back, makes it once.
    let down = with_ports(&w.t.app, |p| p.payments = Arc::new(OUTAGE));
    let (status, _) = refund_with_key(&w, &down, &id, 700, Some("refund-2")).await;
    assert_eq!(status, 503);
    assert_eq!(
        w.payment(&id).await["refundable_amount"],
        2800,
        "still reserved"
    );
    let (status, made) = refund_with_key(&w, &w.t.app, &id, 700, Some("refund-2")).await;
    assert_eq!(
        (status, made["status"].as_str()),
        (201, Some("succeeded")),
        "{made}"
    );
    assert_eq!(refunds_made(&w), 3);
    let read = w.payment(&id).await;
    assert_eq!(
        (
            read["refundable_amount"].as_i64(),
            read["refunded_amount"].as_i64()
        ),
        (Some(2800), Some(2200)),
        "{read}"
    );
}

#[tokio::test]
async fn a_refund_made_in_stripes_dashboard_reaches_the_payment_once() {
    let w = world().await;
    let id = w.paid().await;
    let intent = w.payment(&id).await["stripe_payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Made in the dashboard: Stripe's refund events carry the intent, none of our ids.
    let dashboard = |status: &str| Refund {
        id: "re_1Dashboard000000".into(),
        amount: 1200,
        status: status.into(),
        payment_intent: Some(intent.clone()),
        metadata: Default::default(),
    };
    let created =
        w.t.stripe
            .emit("refund.created", refund_object(&dashboard("succeeded")));
    let (status, answer) = w.deliver(&created).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let amounts = |read: &Value| {
        (
            read["refunded_amount"].as_i64(),
            read["refundable_amount"].as_i64(),
        )
    };
    assert_eq!(amounts(&w.payment(&id).await), (Some(1200), Some(3800)));
    // Replayed, or told again by another event about it: counted once.
    let (_, answer) = w.deliver(&created).await;
    assert_eq!(answer["outcome"], "duplicate");
    let updated =
        w.t.stripe
            .emit("refund.updated", refund_object(&dashboard("succeeded")));
    let (_, answer) = w.deliver(&updated).await;
    assert_eq!(answer["outcome"], "ignored", "{answer}");
    assert_eq!(amounts(&w.payment(&id).await), (Some(1200), Some(3800)));
    // It is in the receipt and the history, and what is left is all that can be refunded.
    let (_, receipt) = w
        .call(
            &w.patient_token,
            Method::GET,
            &format!("/api/v1/payments/{id}/receipt"),
            None,
        )
        .await;
    assert_eq!(receipt["refunded_amount"], 1200, "{receipt}");
    assert_eq!(
        receipt["refunds"][0]["stripe_refund_id"],
        "re_1Dashboard000000"
    );
    let path = format!("/api/v1/payments/{id}/refunds");
    let (status, _) = w
        .call(
            &w.provider_token,
            Method::POST,
            &path,
            Some(json!({"amount": 3801, "reason": "duplicate"})),
        )
        .await;
    assert_eq!(status, 422, "beyond what the dashboard refund left");
    // Should it fail after all, it is given back.
    let failed =
        w.t.stripe
            .emit("refund.failed", refund_object(&dashboard("failed")));
    let (_, answer) = w.deliver(&failed).await;
    assert_eq!(answer["outcome"], "applied", "{answer}");
    assert_eq!(amounts(&w.payment(&id).await), (Some(0), Some(5000)));
    // A refund of an intent that is not ours changes nothing.
    let stranger = Refund {
        payment_intent: Some("pi_1NotOurs0000".into()),
        ..dashboard("succeeded")
    };
    let other = w.t.stripe.emit("refund.created", refund_object(&stranger));
    let (_, answer) = w.deliver(&other).await;
    assert_eq!(answer["outcome"], "ignored");
}
