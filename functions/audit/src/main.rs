//! Lambda entry point of the audit function (HTTP API: `/api/v1/audit`,
//! `/api/v1/users/me/access-log`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_audit::LINKS }>.run_http(docare_audit::router())
}
