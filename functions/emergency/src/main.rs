//! Lambda entry point of the emergency function (HTTP API: `/api/v1/emergency/…`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_emergency::LINKS }>.run_http(docare_emergency::router())
}
