//! The billing function: providers' prices, payments of appointments through Stripe,
//! refunds that never exceed what was paid, receipts and the patient's billing history
//! (`docs/payments.md`).

/// The outside services the `billing` binary links (`shared::adapters::links`): Stripe (its
/// key through Secrets Manager).
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::PAYMENTS;

pub mod handlers;

use http::Method;
use shared::http::{Page, RouteDoc, Router};
use shared::store::payments::{Payment, Price, RefundRecord, Transaction};

pub fn router() -> Router {
    Router::new()
        .route(Method::PUT, "/api/v1/providers/me/prices", handlers::put_price)
        .doc(
            RouteDoc::new("Set the caller's (a provider's) price of one consultation type")
                .describe("Payments of appointments of this type are made at this price; the client never names an amount.")
                .bearer()
                .body::<handlers::PriceBody>()
                .response::<Price>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
        .route(Method::POST, "/api/v1/payments", handlers::create)
        .doc(
            RouteDoc::new("Create the payment (a Stripe payment intent) of one of the caller's appointments")
                .describe("The amount and currency are the provider's price for the appointment's consultation type: a body that names an amount or a currency is a 422. With an `Idempotency-Key`, a retry answers the same payment and intent. An appointment already paid is a 409 (decided by a conditional write). Only the amount, the currency and opaque ids reach Stripe.")
                .bearer()
                .header("idempotency-key", "Makes a retry return the same payment and intent (1 to 64 of A-Z a-z 0-9 - _ . :; kept 24 hours).")
                .body::<handlers::PaymentBody>()
                .response::<handlers::Created>(201)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/payments/{id}", handlers::get)
        .doc(
            RouteDoc::new("One payment (its patient, its provider, an administrator)")
                .bearer()
                .response::<Payment>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/appointments/{id}/payments",
            handlers::for_appointment,
        )
        .doc(
            RouteDoc::new("An appointment's payments, oldest first")
                .bearer()
                .paged()
                .response::<Page<Payment>>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/payments/{id}/refunds",
            handlers::refund,
        )
        .doc(
            RouteDoc::new("Refund part or all of a payment (its provider or an administrator)")
                .describe("The amount (default: all that is still refundable) is reserved before Stripe is called, so refunds never exceed what was paid, however many race; a refusal (422) gives it back. When Stripe cannot be reached or does not answer (503), Stripe may have made the refund: it stays reserved with status `unknown`, and a retry with the same `Idempotency-Key` re-sends it under the same Stripe idempotency key (never refunded twice); Stripe's refund event settles it too.")
                .bearer()
                .header("idempotency-key", "Makes a retry answer (or, when its outcome is unknown, re-send) the same refund (1 to 64 of A-Z a-z 0-9 - _ . :; kept 24 hours; the same key for another amount or reason is a 422).")
                .body::<handlers::RefundBody>()
                .response::<RefundRecord>(201)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/payments/{id}/receipt",
            handlers::receipt,
        )
        .doc(
            RouteDoc::new("A payment's receipt: JSON, or a printable HTML page with `Accept: text/html` or `?format=html`")
                .bearer()
                .query::<String>("format", "`html` for the printable page.")
                .response::<handlers::Receipt>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/billing/transactions",
            handlers::transactions,
        )
        .doc(
            RouteDoc::new("The caller's (a patient's) payments, refunds and disputes, newest first")
                .bearer()
                .paged()
                .response::<Page<Transaction>>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
}
