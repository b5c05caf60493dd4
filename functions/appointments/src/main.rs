//! Lambda entry point of the appointments function (HTTP API: `/api/v1/providers…`,
//! `/api/v1/appointments…`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_appointments::LINKS }>
        .run_http(docare_appointments::router())
}
