//! Lambda entry point of the realtime function (WebSocket API routes).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_realtime::LINKS }>.run_ws(docare_realtime::router())
}
