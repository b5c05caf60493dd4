//! Prices, payments, refunds, receipts and the billing history (`docs/payments.md`).
//!
//! Who may do what: a provider sets their own prices; the patient of an appointment
//! pays for it; the patient, the provider (with an MFA session) and an administrator
//! (with an MFA session) read its payments and receipts; the provider or an
//! administrator refunds; a patient reads their own history. Anyone else gets 404.
//! Nothing clinical or identifying reaches Stripe: the amount, the currency and opaque
//! ids only (`shared::ports::payments`).

use serde::Deserialize;
use shared::audit::{Action, Outcome};
use shared::auth::{audit_event, record, Principal, Role};
use shared::domain::appointment::{ConsultationType, Status};
use shared::guard::{Admins, Party};
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::payments::{Metadata, NewIntent, NewRefund, PaymentError};
use shared::store::appointments;
use shared::store::payments::{
    self as store, CreateError, CreationKey, NewPayment, Payment, Price, RefundKey, RefundRecord,
    ReserveError,
};
use shared::{guard, ApiError, App, AppContext};

const PAYMENT: &str = "payment";
const REFUND: &str = "refund";
pub const CREATE_ROUTE: &str = "POST /api/v1/payments";
/// The route refunds are sent to Stripe from (part of their Stripe idempotency keys).
pub const REFUND_ROUTE: &str = "POST /api/v1/payments/{id}/refunds";
/// Currencies prices may be set in (ISO 4217, lowercase).
pub const CURRENCIES: [&str; 5] = ["usd", "eur", "gbp", "cad", "aud"];
/// Stripe's minimum charge (50 cents) and a sanity maximum.
pub const MIN_AMOUNT: i64 = 50;
pub const MAX_AMOUNT: i64 = 1_000_000;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PriceBody")]
pub(crate) struct PriceBody {
    consultation_type: ConsultationType,
    /// In the currency's smallest unit (cents): 50 to 1,000,000.
    amount: i64,
    /// usd, eur, gbp, cad or aud.
    currency: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewPayment")]
pub(crate) struct PaymentBody {
    /// The appointment to pay for (the amount and currency are the provider's price).
    appointment_id: String,
}

/// Stripe's refund reasons (no free text: nothing to leak).
#[derive(Deserialize, schemars::JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RefundReason {
    RequestedByCustomer,
    Duplicate,
    Fraudulent,
}

impl RefundReason {
    fn as_str(self) -> &'static str {
        match self {
            RefundReason::RequestedByCustomer => "requested_by_customer",
            RefundReason::Duplicate => "duplicate",
            RefundReason::Fraudulent => "fraudulent",
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewRefund")]
pub(crate) struct RefundBody {
    /// In the smallest unit; default: everything still refundable.
    #[serde(default)]
    amount: Option<i64>,
    reason: RefundReason,
}

/// The answer to a payment's creation: the payment and the client secret Stripe.js
/// confirms it with (never stored).
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "CreatedPayment")]
pub(crate) struct Created {
    #[serde(flatten)]
    payment: Payment,
    client_secret: Option<String>,
}

/// `PUT /api/v1/providers/me/prices`.
pub async fn put_price(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role != Role::Provider {
        let target = ("price", principal.user_id.as_str());
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: PriceBody = req.json()?;
    if !(MIN_AMOUNT..=MAX_AMOUNT).contains(&body.amount) {
        return Err(ApiError::validation(format!(
            "amount: {MIN_AMOUNT} to {MAX_AMOUNT} (the currency's smallest unit)"
        )));
    }
    let currency = body.currency.trim().to_ascii_lowercase();
    if !CURRENCIES.contains(&currency.as_str()) {
        return Err(ApiError::validation("currency: usd, eur, gbp, cad or aud"));
    }
    let price = Price {
        provider_id: principal.user_id.clone(),
        consultation_type: body.consultation_type.as_str().to_string(),
        amount: body.amount,
        currency,
        updated_at: app.now().to_string(),
    };
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource("price", &principal.user_id);
    store::save_price(&app, &price, event).await?;
    ApiResponse::ok(&price)
}

/// The payment named in the path and the caller's side of it.
async fn payment_in_path(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
) -> Result<(Payment, Party), ApiError> {
    let id = guard::path_id(app, req, principal, "id", PAYMENT).await?;
    let Some(payment) = store::get(app, id).await? else {
        return Err(guard::refuse(app, req, principal, (PAYMENT, id), ApiError::NotFound).await);
    };
    let parties = (payment.patient_id.as_str(), payment.provider_id.as_str());
    let side = guard::party(app, req, principal, (PAYMENT, id), parties, Admins::Allowed).await?;
    Ok((payment, side))
}

/// The payment created earlier under the caller's key: 201 again, with a client secret
/// read back from Stripe (never stored).
async fn replay(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> HandlerResult {
    let payment = store::get(app, id).await?.ok_or(ApiError::NotFound)?;
    let intent = app
        .payments
        .retrieve_intent(&payment.stripe_payment_intent_id)
        .await?;
    record(
        app,
        req,
        principal,
        Action::View,
        (PAYMENT, id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::created(&Created {
        payment,
        client_secret: intent.client_secret,
    })
}

/// `POST /api/v1/payments`: a payment intent for an appointment, at the provider's
/// price for its consultation type.
pub async fn create(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role != Role::Patient {
        let target = (PAYMENT, guard::ANY);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    // The amount and currency are never the client's to say.
    let raw: serde_json::Value = req.json()?;
    if raw.get("amount").is_some() || raw.get("currency").is_some() {
        return Err(ApiError::unprocessable(
            "amount, currency: set by the provider's price, not by the client",
        ));
    }
    let body: PaymentBody = req.json()?;
    let client_key = req.idempotency_key()?;
    let appointment_id = body.appointment_id.trim().to_string();
    let key = client_key.as_ref().map(|key| CreationKey {
        user_id: principal.user_id.clone(),
        key: key.clone(),
        appointment_id: appointment_id.clone(),
    });
    if let Some(key) = &key {
        if let Some(id) = store::replayed(&app, key).await? {
            return replay(&app, &req, &principal, &id).await;
        }
    }
    let target = ("appointment", guard::recorded_id(&appointment_id));
    let appointment = if guard::is_id(&appointment_id) {
        appointments::get(&app, &appointment_id).await?
    } else {
        None
    };
    let Some(appointment) = appointment.filter(|a| a.patient_id == principal.user_id) else {
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::NotFound).await);
    };
    if matches!(appointment.status, Status::Cancelled | Status::NoShow) {
        return Err(ApiError::unprocessable(
            "appointment_id: a cancelled or missed appointment is not paid for",
        ));
    }
    // A look before Stripe makes an intent; the commit below is conditioned on it.
    if store::is_paid(&app, &appointment.id).await? {
        return Err(CreateError::Paid.into());
    }
    let Some(price) = store::price(
        &app,
        &appointment.provider_id,
        appointment.consultation_type.as_str(),
    )
    .await?
    else {
        return Err(ApiError::unprocessable(
            "appointment_id: the provider has set no price for this consultation type",
        ));
    };
    let payment_id = app.new_id();
    // Stripe's key: the user, the route and the client's key (or, without one, this
    // payment's own id, so a retry of the call itself is safe).
    let stripe_key = shared::payments::stripe_idempotency_key(
        &principal.user_id,
        CREATE_ROUTE,
        client_key.as_deref().unwrap_or(&payment_id),
    );
    let metadata: Metadata = [("docare_payment_id".to_string(), payment_id.clone())].into();
    let intent = app
        .payments
        .create_intent(&NewIntent {
            amount: price.amount,
            currency: price.currency.clone(),
            idempotency_key: stripe_key,
            metadata,
        })
        .await?;
    // A retry that Stripe answered with the first intent keeps the first payment's id.
    let id = intent
        .metadata
        .get("docare_payment_id")
        .filter(|id| guard::is_id(id))
        .cloned()
        .unwrap_or(payment_id);
    let new = NewPayment {
        id: id.clone(),
        appointment_id: appointment.id.clone(),
        patient_id: appointment.patient_id.clone(),
        provider_id: appointment.provider_id.clone(),
        intent_id: intent.id.clone(),
        amount: intent.amount,
        currency: intent.currency.clone(),
        status: intent.status.clone(),
    };
    let event =
        audit_event(&req, &principal, Action::Create, Outcome::Success).resource(PAYMENT, &id);
    match store::create(&app, &new, key.as_ref(), event).await {
        Ok(payment) => ApiResponse::created(&Created {
            payment,
            client_secret: intent.client_secret,
        }),
        Err(CreateError::Replay(id)) => replay(&app, &req, &principal, &id).await,
        Err(err) => Err(err.into()),
    }
}

/// `GET /api/v1/payments/{id}`.
pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (payment, _) = payment_in_path(&app, &req, &principal).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (PAYMENT, &payment.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&payment)
}

/// `GET /api/v1/appointments/{id}/payments`.
pub async fn for_appointment(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (appointment, _) =
        guard::appointment_in_path(&app, &req, &principal, Admins::Allowed).await?;
    let page = PageRequest::from_request(&req)?;
    let payments = store::for_appointment(&app, &appointment.id, &page).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        ("appointment_payments", &appointment.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&payments)
}

/// `POST /api/v1/payments/{id}/refunds`: the provider or an administrator refunds part
/// or all of what is still refundable. The amount is reserved on the payment first
/// (a conditional write: racing refunds never exceed what was paid), then Stripe is
/// called; a refusal gives the reservation back. When Stripe cannot be reached or does
/// not answer, the outcome is unknown (Stripe may have made it): the refund stays
/// reserved as `unknown` (503), and a retry under the same `Idempotency-Key` re-sends it
/// with the same Stripe idempotency key, so it is never made twice; Stripe's refund
/// event settles it too.
pub async fn refund(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (payment, side) = payment_in_path(&app, &req, &principal).await?;
    if side == Party::Patient {
        let target = (PAYMENT, payment.id.as_str());
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: RefundBody = req.json()?;
    let key = req.idempotency_key()?.map(|key| RefundKey {
        user_id: principal.user_id.clone(),
        key,
        payment_id: payment.id.clone(),
        fingerprint: format!(
            "{}|{}",
            body.amount.map_or("all".to_string(), |a| a.to_string()),
            body.reason.as_str()
        ),
    });
    if let Some(key) = &key {
        if let Some(id) = store::refund_replayed(&app, key)
            .await
            .map_err(reserve_error)?
        {
            return again(&app, &req, &principal, &payment, &id).await;
        }
    }
    if payment.status != "succeeded" {
        return Err(ApiError::unprocessable("the payment has not succeeded"));
    }
    let amount = body
        .amount
        .unwrap_or(payment.amount - payment.refund_reserved);
    if amount <= 0 {
        return Err(ApiError::unprocessable(
            "amount: must be positive and at most the refundable amount",
        ));
    }
    let refund_id = app.new_id();
    let stripe_key =
        shared::payments::stripe_idempotency_key(&principal.user_id, REFUND_ROUTE, &refund_id);
    let event = audit_event(&req, &principal, Action::Create, Outcome::Success)
        .resource(REFUND, &refund_id);
    let reserved = match store::reserve_refund(
        &app,
        &payment,
        &refund_id,
        amount,
        body.reason.as_str(),
        &stripe_key,
        key.as_ref(),
        event,
    )
    .await
    {
        Ok(reserved) => reserved,
        Err(ReserveError::Replay(id)) => return again(&app, &req, &principal, &payment, &id).await,
        Err(err) => return Err(reserve_error(err)),
    };
    submit(&app, &req, &principal, &payment, &reserved).await
}

fn reserve_error(err: ReserveError) -> ApiError {
    match err {
        ReserveError::Exceeds => ApiError::unprocessable("amount: more than the refundable amount"),
        ReserveError::KeyReused => ApiError::unprocessable(err.to_string()),
        ReserveError::Replay(_) => ApiError::conflict(err.to_string()),
        ReserveError::Api(err) => err,
    }
}

/// A refund requested before under the same `Idempotency-Key`: its outcome when Stripe
/// answered; re-sent (same Stripe idempotency key, same parameters) when its outcome is
/// unknown; a 409 while its first request is still under way.
async fn again(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    payment: &Payment,
    refund_id: &str,
) -> HandlerResult {
    let stored = store::refund(app, &payment.id, refund_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    match stored.status.as_str() {
        "unknown" => submit(app, req, principal, payment, &stored).await,
        "reserved" => Err(ApiError::conflict(
            "this refund is under way: retry shortly with the same Idempotency-Key",
        )),
        _ if stored.released => Err(refused()),
        _ => {
            record(
                app,
                req,
                principal,
                Action::View,
                (REFUND, refund_id),
                Outcome::Success,
            )
            .await?;
            ApiResponse::created(&stored)
        }
    }
}

fn refused() -> ApiError {
    ApiError::unprocessable("the payment provider refused the refund")
}

/// Sends a reserved refund to Stripe under its own Stripe idempotency key and records
/// the outcome: Stripe's answer, a refusal (the reservation given back) or an unknown
/// outcome (kept reserved: 503).
async fn submit(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    payment: &Payment,
    reserved: &RefundRecord,
) -> HandlerResult {
    let metadata: Metadata = [
        ("docare_payment_id".to_string(), payment.id.clone()),
        ("docare_refund_id".to_string(), reserved.id.clone()),
    ]
    .into();
    // Refunds reserved before keys were stored derive it as they did then.
    let idempotency_key = reserved.stripe_key.clone().unwrap_or_else(|| {
        shared::payments::stripe_idempotency_key(&principal.user_id, REFUND_ROUTE, &reserved.id)
    });
    let called = app
        .payments
        .refund(&NewRefund {
            payment_intent: payment.stripe_payment_intent_id.clone(),
            amount: reserved.amount,
            idempotency_key,
            metadata,
        })
        .await;
    let update = |outcome| {
        audit_event(req, principal, Action::Update, outcome).resource(REFUND, &reserved.id)
    };
    match called {
        Ok(answer) => {
            let stored = store::refund_submitted(
                app,
                reserved,
                &answer.id,
                &answer.status,
                update(Outcome::Success),
            )
            .await?;
            ApiResponse::created(&stored)
        }
        Err(err @ PaymentError::Unavailable(_)) => {
            // Stripe may have made it: kept reserved until a retry or its event settles it.
            store::refund_unknown(app, reserved, update(Outcome::Failed)).await?;
            Err(err.into())
        }
        Err(_) => {
            // Refused: nothing was refunded, the reservation is given back.
            store::release_refund(app, reserved, "failed", update(Outcome::Failed)).await?;
            Err(refused())
        }
    }
}

/// A receipt: what was paid, refunded and is disputed, for whom (opaque ids) and when.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Receipt {
    payment_id: String,
    appointment_id: String,
    /// The provider's public directory name.
    provider_name: String,
    description: &'static str,
    amount: i64,
    currency: String,
    status: String,
    refunded_amount: i64,
    disputed: bool,
    refunds: Vec<RefundRecord>,
    created_at: String,
    updated_at: String,
}

fn money(amount: i64, currency: &str) -> String {
    format!(
        "{}.{:02} {}",
        amount / 100,
        amount % 100,
        currency.to_uppercase()
    )
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The printable page: static HTML, inline style only, no script (and a CSP that
/// forbids any).
fn receipt_html(receipt: &Receipt) -> String {
    let mut rows = String::new();
    for refund in &receipt.refunds {
        rows.push_str(&format!(
            "<tr><td>Refund {}</td><td>{}</td><td>{}</td></tr>",
            escape(&refund.created_at),
            escape(&refund.status),
            escape(&money(-refund.amount, &refund.currency)),
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>DoCare receipt</title>\
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}td{{padding:.3em 1em}}@media print{{a{{display:none}}}}</style></head>\
<body><h1>Receipt</h1><p>{description}</p><table>\
<tr><td>Payment</td><td colspan=\"2\">{payment}</td></tr>\
<tr><td>Appointment</td><td colspan=\"2\">{appointment}</td></tr>\
<tr><td>Provider</td><td colspan=\"2\">{provider}</td></tr>\
<tr><td>Paid {created}</td><td>{status}</td><td>{amount}</td></tr>{rows}\
<tr><td>Refunded</td><td></td><td>{refunded}</td></tr></table>{disputed}</body></html>",
        description = escape(receipt.description),
        payment = escape(&receipt.payment_id),
        appointment = escape(&receipt.appointment_id),
        provider = escape(&receipt.provider_name),
        created = escape(&receipt.created_at),
        status = escape(&receipt.status),
        amount = escape(&money(receipt.amount, &receipt.currency)),
        refunded = escape(&money(receipt.refunded_amount, &receipt.currency)),
        disputed = if receipt.disputed {
            "<p>This payment is disputed.</p>"
        } else {
            ""
        },
    )
}

/// The Content-Security-Policy of the printable receipt: nothing runs.
pub const RECEIPT_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /api/v1/payments/{id}/receipt` (JSON; `Accept: text/html` or `?format=html`
/// for the printable page).
pub async fn receipt(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let (payment, _) = payment_in_path(&app, &req, &principal).await?;
    let provider_name = appointments::listing(&app, &payment.provider_id)
        .await?
        .map(|l| l.display_name)
        .unwrap_or_default();
    let refunds = store::refunds(&app, &payment.id).await?;
    let receipt = Receipt {
        payment_id: payment.id.clone(),
        appointment_id: payment.appointment_id.clone(),
        provider_name,
        description: "DoCare telehealth services",
        amount: payment.amount,
        currency: payment.currency.clone(),
        status: payment.status.clone(),
        refunded_amount: payment.refunded_amount,
        disputed: payment.disputed,
        refunds,
        created_at: payment.created_at.clone(),
        updated_at: payment.updated_at.clone(),
    };
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (PAYMENT, &payment.id),
        Outcome::Success,
    )
    .await?;
    let html = req.query_param("format") == Some("html")
        || req
            .header("accept")
            .is_some_and(|a| a.contains("text/html"));
    if !html {
        return ApiResponse::ok(&receipt);
    }
    let mut response = ApiResponse::json(http::StatusCode::OK, &())?;
    response.body = receipt_html(&receipt).into_bytes().into();
    response.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(RECEIPT_CSP),
    );
    Ok(response)
}

/// `GET /api/v1/billing/transactions`: the caller's (a patient's) payments, refunds and
/// disputes, newest first.
pub async fn transactions(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let target = ("billing_history", principal.user_id.as_str());
    if principal.role != Role::Patient {
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let page = PageRequest::from_request(&req)?;
    let history = store::transactions(&app, &principal.user_id, &page).await?;
    record(
        &app,
        &req,
        &principal,
        Action::View,
        target,
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&history)
}
