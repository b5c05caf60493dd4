//! Lambda entry point of the twilio-webhook function (HTTP API:
//! `POST /api/v1/webhooks/twilio/video`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_twilio_webhook::LINKS }>
        .run_http(docare_twilio_webhook::router())
}
