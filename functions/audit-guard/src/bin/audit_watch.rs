//! Lambda entry point of `audit-watch` (DynamoDB Streams of the audit table).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_audit_guard::WATCH_LINKS }>
        .run_dynamodb_stream(docare_audit_guard::watch)
}
