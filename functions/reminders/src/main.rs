//! Lambda entry point of the reminder scheduler (EventBridge rule, every minute).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::run_schedule(docare_reminders::scheduled).await
}
