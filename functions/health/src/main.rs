//! Lambda entry point of the health function (HTTP API: `GET /health` and `$default`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_health::LINKS }>.run_http(docare_health::router())
}
