//! The payments port offline, in process: a fake Stripe for the local stack (its
//! default) and tests. It keeps intents and refunds in memory, honours idempotency keys
//! as Stripe does (same key and parameters: the first answer; other parameters: an
//! error), confirms intents on request, refunds, and emits the events Stripe would
//! (`payment_intent.succeeded`, `refund.created`, `charge.refunded`, …), each signed
//! with its webhook secret (`whsec_…`, kept in the data folder's `secrets.json` under
//! `docare/local/stripe/webhook_secret`, so any client can sign as Stripe would) and,
//! once the local stack has said where ([`FakeStripe::deliver_to`]), POSTed to the
//! local webhook route.

use crate::adapters::aws::stripe::{intent_form, refund_form};
use crate::clock::Clock;
use crate::ports::payments::{
    check_metadata, Intent, NewIntent, NewRefund, PaymentError, Payments, Refund,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One signed event as Stripe would deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_type: String,
    pub body: String,
    pub signature: String,
}

/// Form fields as sent.
type Form = Vec<(String, String)>;

#[derive(Default)]
struct State {
    intents: HashMap<String, (Intent, i64)>,
    refunds: HashMap<String, Refund>,
    /// Idempotency key → (method and path, form, answer).
    keys: HashMap<String, (String, Form, Value)>,
    received: Vec<(String, Form)>,
    deliveries: Vec<Delivery>,
    down: bool,
    unchecked_refunds: bool,
}

pub struct FakeStripe {
    webhook_secret: String,
    /// Where its API key is read on every call, as Stripe requires one (the local stack's
    /// `docare/local/stripe/api_key` in `secrets.json`); `None`: no key needed.
    api_key: Option<(Arc<dyn crate::ports::SecretStore>, String)>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    deliver_to: Mutex<Option<String>>,
}

fn random(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

impl FakeStripe {
    pub fn new(webhook_secret: String, clock: Arc<dyn Clock>) -> Self {
        Self {
            webhook_secret,
            api_key: None,
            clock,
            state: Mutex::default(),
            deliver_to: Mutex::new(None),
        }
    }

    /// Requires an API key from `store` under `name` on every call (missing: the call
    /// fails as Stripe's 401 does, unavailable).
    pub fn with_api_key_from(
        mut self,
        store: Arc<dyn crate::ports::SecretStore>,
        name: String,
    ) -> Self {
        self.api_key = Some((store, name));
        self
    }

    async fn authorize(&self) -> Result<(), PaymentError> {
        let Some((store, name)) = &self.api_key else {
            return Ok(());
        };
        match store.get(name).await {
            Ok(Some(key)) if key.starts_with("sk_test_") => Ok(()),
            Ok(_) => Err(PaymentError::Unavailable(
                "fake Stripe: no test API key".into(),
            )),
            Err(err) => Err(PaymentError::Unavailable(Box::new(err))),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, every event is also POSTed to this URL (the local webhook route).
    pub fn deliver_to(&self, url: &str) {
        *self.deliver_to.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.to_string());
    }

    /// Every request the fake received: (method and path, form fields), in order. Tests
    /// read it to check what reached "Stripe".
    pub fn received(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state().received.clone()
    }

    /// Every signed event so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    /// Simulates an outage: every call fails as a timeout would.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Lets refunds exceed the charge (as localstripe does): tests of the callers' own
    /// bound.
    pub fn set_unchecked_refunds(&self, unchecked: bool) {
        self.state().unchecked_refunds = unchecked;
    }

    /// Signs and records (and delivers, when told where) an event about `object`.
    pub fn emit(&self, event_type: &str, object: Value) -> Delivery {
        let created = self.clock.now().timestamp();
        let event = json!({
            "id": random("evt_"),
            "object": "event",
            "api_version": crate::adapters::aws::stripe::STRIPE_VERSION,
            "created": created,
            "livemode": false,
            "type": event_type,
            "data": { "object": object },
        });
        let body = event.to_string();
        let delivery = Delivery {
            event_type: event_type.to_string(),
            signature: crate::payments::sign(&self.webhook_secret, created, body.as_bytes()),
            body,
        };
        self.state().deliveries.push(delivery.clone());
        let target = self
            .deliver_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(url) = target {
            let delivery = delivery.clone();
            tokio::spawn(async move {
                let sent = reqwest::Client::new()
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(crate::payments::SIGNATURE_HEADER, &delivery.signature)
                    .body(delivery.body.clone())
                    .send()
                    .await;
                if let Err(err) = sent {
                    tracing::warn!(event = %delivery.event_type, error = %err.without_url(), "fake Stripe: webhook not delivered");
                }
            });
        }
        delivery
    }

    /// Confirms an intent as a client does with Stripe.js in test mode: with the intent's
    /// `client_secret` and a test payment method — `pm_card_visa` (the default) succeeds,
    /// `pm_card_chargeDeclined` is declined (`payment_intent.payment_failed`, the intent
    /// back to `requires_payment_method`, [`PaymentError::Invalid`] `402 card_declined`).
    /// Either way the signed event is emitted (and delivered) as
    /// [`Payments::confirm_intent`] does. The local stack serves it at
    /// `POST /_fake/stripe/payment_intents/{id}/confirm`.
    pub async fn confirm_as_client(
        &self,
        id: &str,
        client_secret: &str,
        payment_method: Option<&str>,
    ) -> Result<Intent, PaymentError> {
        let secret = self
            .state()
            .intents
            .get(id)
            .and_then(|(intent, _)| intent.client_secret.clone())
            .ok_or(PaymentError::NotFound)?;
        let matches: bool =
            subtle::ConstantTimeEq::ct_eq(secret.as_bytes(), client_secret.as_bytes()).into();
        if !matches {
            // Stripe answers a wrong secret as if there were no such intent.
            return Err(PaymentError::NotFound);
        }
        match payment_method.unwrap_or("pm_card_visa") {
            "pm_card_visa" => self.confirm_intent(id).await,
            "pm_card_chargeDeclined" => {
                self.authorize().await?;
                self.enter(&format!("POST /v1/payment_intents/{id}/confirm"), &[])?;
                let intent = {
                    let mut state = self.state();
                    let (intent, _) = state.intents.get_mut(id).ok_or(PaymentError::NotFound)?;
                    if intent.status != "requires_payment_method"
                        && intent.status != "requires_confirmation"
                    {
                        return Err(PaymentError::Invalid(
                            "400 payment_intent_unexpected_state".into(),
                        ));
                    }
                    intent.status = "requires_payment_method".into();
                    intent.clone()
                };
                self.emit("payment_intent.payment_failed", intent_object(&intent));
                Err(PaymentError::Invalid("402 card_declined".into()))
            }
            _ => Err(PaymentError::Invalid(
                "400 payment_method: pm_card_visa or pm_card_chargeDeclined".into(),
            )),
        }
    }

    fn enter(&self, what: &str, form: &[(String, String)]) -> Result<(), PaymentError> {
        let mut state = self.state();
        if state.down {
            return Err(PaymentError::Unavailable("fake Stripe is down".into()));
        }
        state.received.push((what.to_string(), form.to_vec()));
        Ok(())
    }

    /// The first answer under `key`, an error for other parameters, or `None`.
    fn replayed(
        &self,
        key: &str,
        what: &str,
        form: &[(String, String)],
    ) -> Result<Option<Value>, PaymentError> {
        match self.state().keys.get(key) {
            Some((w, f, answer)) if w == what && f == form => Ok(Some(answer.clone())),
            Some(_) => Err(PaymentError::KeyReused),
            None => Ok(None),
        }
    }

    fn remember(&self, key: &str, what: &str, form: &[(String, String)], answer: Value) {
        self.state()
            .keys
            .insert(key.to_string(), (what.to_string(), form.to_vec(), answer));
    }
}

pub fn intent_object(intent: &Intent) -> Value {
    json!({
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "currency": intent.currency,
        "status": intent.status,
        "metadata": intent.metadata,
    })
}

pub fn refund_object(refund: &Refund) -> Value {
    json!({
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "status": refund.status,
        "payment_intent": refund.payment_intent,
        "metadata": refund.metadata,
    })
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, PaymentError> {
    serde_json::from_value(value).map_err(|e| PaymentError::Unavailable(Box::new(e)))
}

#[async_trait]
impl Payments for FakeStripe {
    async fn create_intent(&self, new: &NewIntent) -> Result<Intent, PaymentError> {
        self.authorize().await?;
        let what = "POST /v1/payment_intents";
        let form = intent_form(new);
        check_metadata(&new.metadata)?;
        self.enter(what, &form)?;
        if let Some(answer) = self.replayed(&new.idempotency_key, what, &form)? {
            return decode(answer);
        }
        if new.amount < 50 || new.currency.len() != 3 {
            return Err(PaymentError::Invalid("400 invalid_request_error".into()));
        }
        let id = random("pi_");
        let intent = Intent {
            client_secret: Some(format!("{id}_secret_{}", random(""))),
            id: id.clone(),
            amount: new.amount,
            currency: new.currency.clone(),
            status: "requires_payment_method".into(),
            metadata: new.metadata.clone(),
        };
        self.state().intents.insert(id, (intent.clone(), 0));
        let answer =
            serde_json::to_value(&intent).map_err(|e| PaymentError::Unavailable(Box::new(e)))?;
        self.remember(&new.idempotency_key, what, &form, answer);
        Ok(intent)
    }

    async fn retrieve_intent(&self, id: &str) -> Result<Intent, PaymentError> {
        self.authorize().await?;
        self.enter(&format!("GET /v1/payment_intents/{id}"), &[])?;
        self.state()
            .intents
            .get(id)
            .map(|(intent, _)| intent.clone())
            .ok_or(PaymentError::NotFound)
    }

    async fn confirm_intent(&self, id: &str) -> Result<Intent, PaymentError> {
        self.authorize().await?;
        self.enter(&format!("POST /v1/payment_intents/{id}/confirm"), &[])?;
        let intent = {
            let mut state = self.state();
            let (intent, _) = state.intents.get_mut(id).ok_or(PaymentError::NotFound)?;
            if intent.status != "requires_payment_method"
                && intent.status != "requires_confirmation"
            {
                return Err(PaymentError::Invalid(
                    "400 payment_intent_unexpected_state".into(),
                ));
            }
            intent.status = "succeeded".into();
            intent.clone()
        };
        self.emit("payment_intent.succeeded", intent_object(&intent));
        Ok(intent)
    }

    async fn refund(&self, new: &NewRefund) -> Result<Refund, PaymentError> {
        self.authorize().await?;
        let what = "POST /v1/refunds";
        let form = refund_form(new);
        check_metadata(&new.metadata)?;
        self.enter(what, &form)?;
        if let Some(answer) = self.replayed(&new.idempotency_key, what, &form)? {
            return decode(answer);
        }
        let (refund, charge) = {
            let mut state = self.state();
            let unchecked = state.unchecked_refunds;
            let (intent, refunded) = state
                .intents
                .get_mut(&new.payment_intent)
                .ok_or(PaymentError::NotFound)?;
            if intent.status != "succeeded" {
                return Err(PaymentError::Invalid("400 charge_not_refundable".into()));
            }
            if new.amount <= 0 || (!unchecked && *refunded + new.amount > intent.amount) {
                return Err(PaymentError::Invalid("400 amount_too_large".into()));
            }
            *refunded += new.amount;
            let charge = json!({
                "id": format!("ch_{}", &intent.id[3..]),
                "object": "charge",
                "payment_intent": intent.id,
                "amount": intent.amount,
                "amount_refunded": *refunded,
                "refunded": *refunded == intent.amount,
            });
            let refund = Refund {
                id: random("re_"),
                amount: new.amount,
                status: "succeeded".into(),
                payment_intent: Some(new.payment_intent.clone()),
                metadata: new.metadata.clone(),
            };
            state.refunds.insert(refund.id.clone(), refund.clone());
            (refund, charge)
        };
        let answer =
            serde_json::to_value(&refund).map_err(|e| PaymentError::Unavailable(Box::new(e)))?;
        self.remember(&new.idempotency_key, what, &form, answer);
        self.emit("refund.created", refund_object(&refund));
        self.emit("charge.refunded", charge);
        Ok(refund)
    }

    async fn retrieve_refund(&self, id: &str) -> Result<Refund, PaymentError> {
        self.authorize().await?;
        self.enter(&format!("GET /v1/refunds/{id}"), &[])?;
        self.state()
            .refunds
            .get(id)
            .cloned()
            .ok_or(PaymentError::NotFound)
    }
}
