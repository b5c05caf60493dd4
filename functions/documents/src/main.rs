//! Lambda entry point of the documents function (HTTP API: `/api/v1/documents/…`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::run_http(docare_documents::router()).await
}
