//! Lambda entry point of the video function (HTTP API: `/api/v1/video-calls…`,
//! `/api/v1/appointments/{id}/video-calls`).

fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::Linking::<{ docare_video::LINKS }>.run_http(docare_video::router())
}
