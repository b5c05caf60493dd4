//! The payments port: intents created with an amount, a currency and opaque metadata
//! only, read back, confirmed (test mode), refunded in parts, refunds read back, unknown
//! ids not found. `local` is the in-process fake; `aws` is the Stripe REST adapter
//! against localstripe (a fake Stripe server from PyPI that `scripts/test` starts on
//! loopback and names in `DOCARE_TEST_STRIPE_ENDPOINT`). localstripe ignores
//! `Idempotency-Key` and lets a refund exceed the charge, so those cases are the fake's
//! only (`local_only`); the billing function never relies on Stripe for either (it
//! reserves refunds itself).

use shared::adapters::aws::StripeApi;
use shared::adapters::local::{FakeStripe, SecretsFile};
use shared::clock::SystemClock;
use shared::ports::payments::{Metadata, NewIntent, NewRefund, PaymentError, Payments};
use std::sync::Arc;

pub struct PaymentsFixture {
    payments: Arc<dyn Payments>,
    fake: Option<Arc<FakeStripe>>,
    _dir: Option<tempfile::TempDir>,
}

async fn local_fixture() -> PaymentsFixture {
    let fake = Arc::new(FakeStripe::new(
        "whsec_contract".into(),
        Arc::new(SystemClock),
    ));
    PaymentsFixture {
        payments: fake.clone(),
        fake: Some(fake),
        _dir: None,
    }
}

/// The Stripe adapter against localstripe, its key in a secrets file.
pub fn stripe_on_localstripe(key: Option<&str>) -> Option<(StripeApi, tempfile::TempDir)> {
    let endpoint = match std::env::var("DOCARE_TEST_STRIPE_ENDPOINT") {
        Ok(endpoint) => endpoint,
        Err(_) if std::env::var("DOCARE_TEST_SKIP_AWS").as_deref() == Ok("1") => return None,
        Err(_) => panic!(
            "DOCARE_TEST_STRIPE_ENDPOINT is not set (scripts/test starts localstripe); \
             set DOCARE_TEST_SKIP_AWS=1 to skip knowingly"
        ),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = SecretsFile::new(dir.path().join("secrets.json"));
    if let Some(key) = key {
        secrets
            .set(&shared::payments::api_key_secret("test"), key)
            .expect("set");
    }
    let api = StripeApi::new(&endpoint, Arc::new(secrets), Arc::new(SystemClock), "test");
    Some((api, dir))
}

async fn aws_fixture() -> Option<PaymentsFixture> {
    let (api, dir) = stripe_on_localstripe(Some("sk_test_docare_contract"))?;
    Some(PaymentsFixture {
        payments: Arc::new(api),
        fake: None,
        _dir: Some(dir),
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        an_intent_carries_amount_currency_and_opaque_metadata,
        a_confirmed_intent_succeeds_and_refunds_in_parts,
        unknown_ids_are_not_found,
    ];
    local_only: [
        a_retry_under_the_same_key_returns_the_same_intent,
        a_key_reused_with_other_parameters_is_refused,
        a_refund_beyond_the_charge_is_refused,
        an_outage_is_unavailable_and_records_nothing,
    ];
}

fn ids(payment: &str) -> Metadata {
    [("docare_payment_id".to_string(), payment.to_string())].into()
}

fn intent(key: &str, amount: i64) -> NewIntent {
    NewIntent {
        amount,
        currency: "usd".into(),
        idempotency_key: key.into(),
        metadata: ids("01JPAYMENT0000000000000001"),
    }
}

fn unique_key() -> String {
    shared::testing::aws::unique("key")
}

async fn an_intent_carries_amount_currency_and_opaque_metadata(fx: &PaymentsFixture) {
    let created = fx
        .payments
        .create_intent(&intent(&unique_key(), 5000))
        .await
        .expect("create");
    assert!(created.id.starts_with("pi_"), "{}", created.id);
    assert_eq!((created.amount, created.currency.as_str()), (5000, "usd"));
    assert_eq!(created.status, "requires_payment_method");
    assert!(created
        .client_secret
        .as_deref()
        .is_some_and(|s| s.starts_with(&created.id)));
    let read = fx
        .payments
        .retrieve_intent(&created.id)
        .await
        .expect("read");
    assert_eq!(read.metadata, ids("01JPAYMENT0000000000000001"));
    assert_eq!(read.amount, 5000);
    // Free text is refused before anything is sent.
    let mut bad = intent(&unique_key(), 5000);
    bad.metadata
        .insert("description".into(), "Mental health consultation".into());
    assert!(matches!(
        fx.payments.create_intent(&bad).await,
        Err(PaymentError::Invalid(_))
    ));
}

async fn a_confirmed_intent_succeeds_and_refunds_in_parts(fx: &PaymentsFixture) {
    let created = fx
        .payments
        .create_intent(&intent(&unique_key(), 5000))
        .await
        .expect("create");
    let confirmed = fx
        .payments
        .confirm_intent(&created.id)
        .await
        .expect("confirm");
    assert_eq!(confirmed.status, "succeeded");
    let refund = |amount| NewRefund {
        payment_intent: created.id.clone(),
        amount,
        idempotency_key: unique_key(),
        metadata: [
            (
                "docare_payment_id".to_string(),
                "01JPAYMENT0000000000000001".to_string(),
            ),
            (
                "docare_refund_id".to_string(),
                "01JREFUND00000000000000001".to_string(),
            ),
        ]
        .into(),
    };
    let first = fx.payments.refund(&refund(2000)).await.expect("refund");
    assert!(first.id.starts_with("re_"), "{}", first.id);
    assert_eq!((first.amount, first.status.as_str()), (2000, "succeeded"));
    assert_eq!(first.payment_intent.as_deref(), Some(created.id.as_str()));
    let second = fx.payments.refund(&refund(3000)).await.expect("refund");
    assert_ne!(first.id, second.id);
    let read = fx
        .payments
        .retrieve_refund(&first.id)
        .await
        .expect("read refund");
    assert_eq!(read.amount, 2000);
    assert_eq!(
        read.metadata.get("docare_refund_id").map(String::as_str),
        Some("01JREFUND00000000000000001")
    );
}

async fn unknown_ids_are_not_found(fx: &PaymentsFixture) {
    assert!(matches!(
        fx.payments.retrieve_intent("pi_doesnotexist0000").await,
        Err(PaymentError::NotFound)
    ));
    assert!(matches!(
        fx.payments.retrieve_refund("re_doesnotexist0000").await,
        Err(PaymentError::NotFound)
    ));
}

async fn a_retry_under_the_same_key_returns_the_same_intent(fx: &PaymentsFixture) {
    let key = unique_key();
    let first = fx
        .payments
        .create_intent(&intent(&key, 5000))
        .await
        .unwrap();
    let again = fx
        .payments
        .create_intent(&intent(&key, 5000))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    let other = fx
        .payments
        .create_intent(&intent(&unique_key(), 5000))
        .await
        .unwrap();
    assert_ne!(first.id, other.id);
}

async fn a_key_reused_with_other_parameters_is_refused(fx: &PaymentsFixture) {
    let key = unique_key();
    fx.payments
        .create_intent(&intent(&key, 5000))
        .await
        .unwrap();
    assert!(matches!(
        fx.payments.create_intent(&intent(&key, 6000)).await,
        Err(PaymentError::KeyReused)
    ));
}

async fn a_refund_beyond_the_charge_is_refused(fx: &PaymentsFixture) {
    let created = fx
        .payments
        .create_intent(&intent(&unique_key(), 5000))
        .await
        .unwrap();
    fx.payments.confirm_intent(&created.id).await.unwrap();
    let refund = NewRefund {
        payment_intent: created.id.clone(),
        amount: 5001,
        idempotency_key: unique_key(),
        metadata: Metadata::new(),
    };
    assert!(matches!(
        fx.payments.refund(&refund).await,
        Err(PaymentError::Invalid(_))
    ));
}

async fn an_outage_is_unavailable_and_records_nothing(fx: &PaymentsFixture) {
    let fake = fx.fake.as_ref().expect("the fake");
    let before = fake.received().len();
    fake.set_down(true);
    assert!(matches!(
        fx.payments
            .create_intent(&intent(&unique_key(), 5000))
            .await,
        Err(PaymentError::Unavailable(_))
    ));
    fake.set_down(false);
    assert_eq!(fake.received().len(), before);
}

/// The Stripe adapter: a missing key and an unreachable Stripe are both "unavailable"
/// (503 to the client), and what it sends is form-encoded with the pinned API version.
#[tokio::test]
async fn the_stripe_adapter_fails_unavailable_without_a_key_or_a_server() {
    let Some((without_key, _dir)) = stripe_on_localstripe(None) else {
        return;
    };
    assert!(matches!(
        without_key
            .create_intent(&intent(&unique_key(), 5000))
            .await,
        Err(PaymentError::Unavailable(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let secrets = SecretsFile::new(dir.path().join("secrets.json"));
    secrets
        .set(&shared::payments::api_key_secret("test"), "sk_test_x")
        .unwrap();
    let unreachable = StripeApi::new(
        "http://127.0.0.1:1",
        Arc::new(secrets),
        Arc::new(SystemClock),
        "test",
    );
    assert!(matches!(
        unreachable
            .create_intent(&intent(&unique_key(), 5000))
            .await,
        Err(PaymentError::Unavailable(_))
    ));
}
