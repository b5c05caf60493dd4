//! Lambda entry point of the notes function (HTTP API: `/api/v1/secure-notes…`,
//! `/api/v1/appointments/{id}/secure-notes/access`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_notes::LINKS }>.run_http(docare_notes::router())
}
