//! The stripe-webhook function: `POST /api/v1/webhooks/stripe`. The `Stripe-Signature`
//! is verified over the raw body before anything else (HMAC-SHA256 under the endpoint
//! secret from the secret store, constant time, 300 seconds' tolerance): anything else
//! is a 400 that changes nothing. Each event's id is recorded in the same transaction
//! as the change it causes, so a replay is processed once and a crash loses nothing;
//! statuses only move forward, so an older event delivered late changes nothing
//! (`docs/payments.md`).

/// The outside services the `stripe-webhook` binary links (`shared::adapters::links`): the
/// webhook secret.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::SECRETS;

use http::Method;
use serde::Serialize;
use serde_json::Value;
use shared::audit::{Action, Actor, AuditEvent, Outcome};
use shared::http::{ApiRequest, ApiResponse, HandlerResult, RouteDoc, Router};
use shared::store::payments::{self as store, Processed, StripeEvent};
use shared::{ApiError, App, AppContext};

/// Largest body accepted (Stripe's events are a few kilobytes).
pub const MAX_BODY: usize = 256 * 1024;

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "WebhookReceipt")]
pub struct Received {
    received: bool,
    /// `applied`, `ignored` (nothing of ours, or older news) or `duplicate`.
    outcome: &'static str,
}

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, "/api/v1/webhooks/stripe", receive)
        .doc(
            RouteDoc::new("Stripe's webhook deliveries (signed with the endpoint secret)")
                .describe("Verified over the raw body (`Stripe-Signature: t=…,v1=…`, HMAC-SHA256, 300 seconds' tolerance) before anything else: a missing, forged or stale signature is a 400 and changes nothing. Each event is processed once.")
                .header("stripe-signature", "Stripe's signature of the raw body.")
                .body::<Value>()
                .response::<Received>(200)
                .errors(&[400, 413, 503]),
        )
}

fn bad(message: &str) -> ApiError {
    ApiError::validation(message.to_string())
}

/// Stripe ids: a prefix, then letters, digits and `_`.
fn stripe_id<'a>(value: &'a Value, prefix: &str) -> Option<&'a str> {
    value.as_str().filter(|id| {
        id.starts_with(prefix)
            && id.len() <= 255
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

fn our_id(object: &Value, name: &str) -> Option<String> {
    object["metadata"][name]
        .as_str()
        .filter(|id| shared::guard::is_id(id))
        .map(str::to_string)
}

/// The audit event of a change Stripe reported (the actor is Stripe, no user).
fn stripe_event(req: &ApiRequest, kind: &str, id: &str) -> AuditEvent {
    let actor = Actor {
        user_id: None,
        role: Some("stripe".into()),
        session_id: None,
    };
    AuditEvent::from_request(req, Action::Update, Outcome::Success)
        .actor(actor)
        .resource(kind, id)
}

/// `POST /api/v1/webhooks/stripe`.
pub async fn receive(app: App, req: ApiRequest) -> HandlerResult {
    if req.body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    let name = shared::payments::webhook_secret_name(app.config.stage.as_str());
    let secret = app.secrets.get(&name).await?;
    let now = app.clock.now().timestamp();
    if let Err(err) = shared::payments::verify(
        req.header(shared::payments::SIGNATURE_HEADER),
        &req.body,
        &secret,
        now,
    ) {
        tracing::warn!(request_id = %req.request_id, refusal = %err, "Stripe webhook refused");
        return Err(bad("Stripe-Signature: not a valid signature of this body"));
    }
    let event: Value =
        serde_json::from_slice(&req.body).map_err(|_| bad("the body is not a Stripe event"))?;
    let (Some(id), Some(kind), Some(created)) = (
        stripe_id(&event["id"], "evt_"),
        event["type"].as_str(),
        event["created"].as_i64(),
    ) else {
        return Err(bad("the body is not a Stripe event"));
    };
    let event_info = StripeEvent {
        id: id.to_string(),
        kind: kind.to_string(),
        created,
    };
    if store::seen(&app, id).await? {
        return answer(Processed::Duplicate);
    }
    let object = &event["data"]["object"];
    let done = process(&app, &req, &event_info, object).await?;
    answer(done)
}

fn answer(done: Processed) -> HandlerResult {
    let outcome = match done {
        Processed::Applied => "applied",
        Processed::Ignored => "ignored",
        Processed::Duplicate => "duplicate",
    };
    ApiResponse::ok(&Received {
        received: true,
        outcome,
    })
}

/// The payment an event's object belongs to: our id in its metadata, else the intent's.
async fn payment_of(
    app: &AppContext,
    object: &Value,
    intent: &Value,
) -> Result<Option<String>, ApiError> {
    if let Some(id) = our_id(object, "docare_payment_id") {
        return Ok(Some(id));
    }
    match stripe_id(intent, "pi_") {
        Some(intent) => store::by_intent(app, intent).await,
        None => Ok(None),
    }
}

async fn process(
    app: &AppContext,
    req: &ApiRequest,
    event: &StripeEvent,
    object: &Value,
) -> Result<Processed, ApiError> {
    let ignore = || stripe_event(req, "stripe_event", &event.id);
    match event.kind.as_str() {
        "payment_intent.succeeded"
        | "payment_intent.payment_failed"
        | "payment_intent.canceled" => {
            let Some(payment_id) = payment_of(app, object, &object["id"]).await? else {
                return store::ignore(app, event, ignore()).await;
            };
            let Some(status) = object["status"]
                .as_str()
                .filter(|s| store::status_rank(s) > 0)
            else {
                return Err(bad("the event's intent has no known status"));
            };
            if store::get(app, &payment_id).await?.is_none() {
                // Ours, but not recorded yet (the creation's commit is under way or
                // failed): Stripe retries later.
                return Err(ApiError::unavailable(
                    "payments",
                    ApiError::conflict("the payment is not recorded yet"),
                ));
            }
            store::apply_intent_status(app, event, &payment_id, status, || {
                stripe_event(req, "payment", &payment_id)
            })
            .await
        }
        "refund.created" | "refund.updated" | "refund.failed" => {
            let (Some(payment_id), Some(refund_id), Some(stripe_refund), Some(status)) = (
                our_id(object, "docare_payment_id"),
                our_id(object, "docare_refund_id"),
                stripe_id(&object["id"], "re_"),
                object["status"].as_str(),
            ) else {
                return outside_refund(app, req, event, object).await;
            };
            let status = if event.kind == "refund.failed" {
                "failed"
            } else {
                status
            };
            store::apply_refund_status(
                app,
                event,
                &payment_id,
                &refund_id,
                stripe_refund,
                status,
                || stripe_event(req, "refund", &refund_id),
            )
            .await
        }
        "charge.dispute.created" => {
            let (Some(dispute_id), Some(payment_id)) = (
                stripe_id(&object["id"], "dp_").or_else(|| stripe_id(&object["id"], "du_")),
                payment_of(app, object, &object["payment_intent"]).await?,
            ) else {
                return store::ignore(app, event, ignore()).await;
            };
            let Some(payment) = store::get(app, &payment_id).await? else {
                return store::ignore(app, event, ignore()).await;
            };
            let amount = object["amount"].as_i64().unwrap_or(payment.amount);
            let status = object["status"].as_str().unwrap_or("needs_response");
            let status = if status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                status
            } else {
                "needs_response"
            };
            store::record_dispute(
                app,
                event,
                &payment,
                dispute_id,
                amount,
                status,
                stripe_event(req, "payment", &payment.id),
            )
            .await
        }
        // `charge.refunded` repeats what the refund events say, ours and those made in the
        // dashboard alike (each refund's own status is what counts, and a charge's running
        // total would count a refund twice when it overtakes our recording of Stripe's
        // answer); anything else is not ours. Both are recorded so a replay is recognised.
        _ => store::ignore(app, event, ignore()).await,
    }
}

/// A refund event without our ids: a refund made in Stripe's dashboard. Its payment is
/// found by its intent; one that is not ours is recorded and ignored.
async fn outside_refund(
    app: &AppContext,
    req: &ApiRequest,
    event: &StripeEvent,
    object: &Value,
) -> Result<Processed, ApiError> {
    let ignore = || stripe_event(req, "stripe_event", &event.id);
    let (Some(stripe_refund), Some(status)) = (
        stripe_id(&object["id"], "re_"),
        object["status"]
            .as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')),
    ) else {
        return store::ignore(app, event, ignore()).await;
    };
    let Some(payment_id) = payment_of(app, object, &object["payment_intent"]).await? else {
        return store::ignore(app, event, ignore()).await;
    };
    let Some(payment) = store::get(app, &payment_id).await? else {
        return store::ignore(app, event, ignore()).await;
    };
    let reason = object["reason"]
        .as_str()
        .filter(|r| matches!(*r, "requested_by_customer" | "duplicate" | "fraudulent"))
        .unwrap_or("unspecified");
    let outside = store::OutsideRefund {
        stripe_refund_id: stripe_refund,
        amount: object["amount"].as_i64().unwrap_or(0),
        reason,
        status: if event.kind == "refund.failed" {
            "failed"
        } else {
            status
        },
    };
    store::apply_outside_refund(app, event, &payment, &outside, || {
        stripe_event(req, "refund", stripe_refund)
    })
    .await
}
