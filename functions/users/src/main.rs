//! Lambda entry point of the users function (HTTP API: `/api/v1/users…`, `/api/v1/care-relationships…`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_users::LINKS }>.run_http(docare_users::router())
}
