//! Lambda entry point of the billing function (HTTP API: `/api/v1/payments…`,
//! `/api/v1/billing…`, `/api/v1/providers/me/prices`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_billing::LINKS }>.run_http(docare_billing::router())
}
