//! Lambda entry point of the auth function (HTTP API: `/api/v1/auth/…`, `/.well-known/jwks.json`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_auth::LINKS }>.run_http(docare_auth::router())
}
