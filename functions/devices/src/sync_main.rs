//! Lambda entry point of the device sync worker (device sync queue, partial batch
//! failures): pulls the data points a Google Health delivery announced.

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_devices::SYNC_LINKS }>.run_sqs(docare_devices::sync::handle)
}
