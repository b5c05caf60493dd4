//! Lambda entry point of the stripe-webhook function (HTTP API:
//! `POST /api/v1/webhooks/stripe`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_stripe_webhook::LINKS }>
        .run_http(docare_stripe_webhook::router())
}
