//! Lambda entry point of the messages function (HTTP API: `/api/v1/conversations/…`,
//! `/api/v1/sync`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_messages::LINKS }>.run_http(docare_messages::router())
}
