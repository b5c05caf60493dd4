//! Lambda entry point of the documents function (HTTP API: `/api/v1/documents/…`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_documents::LINKS }>.run_http(docare_documents::router())
}
