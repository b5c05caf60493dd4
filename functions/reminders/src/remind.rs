//! Lambda entry point of the reminder worker (reminders queue, partial batch failures).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_reminders::REMIND_LINKS }>.run_sqs(docare_reminders::deliver)
}
