//! Lambda entry point of `audit-anchor` (EventBridge schedule, every 5 minutes).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_audit_guard::ANCHOR_LINKS }>
        .run_schedule(docare_audit_guard::anchor)
}
