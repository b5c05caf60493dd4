//! Lambda entry point of the notification worker (SQS, partial batch failures).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_notify::LINKS }>.run_sqs(docare_notify::handle)
}
