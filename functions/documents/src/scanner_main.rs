//! Lambda entry point of the scanner worker (SQS: S3 upload events of the quarantine
//! bucket, `ScansQueue`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_documents::SCANNER_LINKS }>
        .run_s3_queue(docare_documents::scanner::scan)
}
