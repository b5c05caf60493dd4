//! Lambda entry point of the reminder scheduler (EventBridge rule, every minute).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_reminders::LINKS }>.run_schedule(docare_reminders::scheduled)
}
