//! Lambda entry point of the reminder worker (reminders queue, partial batch failures).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_reminders::REMIND_LINKS }>
        .run_sqs(docare_reminders::deliver)
        .await
}
