//! Lambda entry point of the devices function (HTTP API: `/api/v1/observations…`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_devices::LINKS }>.run_http(docare_devices::router())
}
