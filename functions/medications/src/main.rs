//! Lambda entry point of the medications function (HTTP API: `/api/v1/medications/…`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_medications::LINKS }>.run_http(docare_medications::router())
}
