//! The video function: one Twilio video session per appointment, access tokens for its
//! two participants inside the appointment's window, start and end (moving the
//! appointment through its own transitions), and recording consent (`docs/video.md`).

/// The outside services the `video` binary links (`shared::adapters::links`): Twilio Video
/// (its credentials through Secrets Manager).
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::VIDEO;

pub mod handlers;

use http::Method;
use shared::http::{Page, RouteDoc, Router};
use shared::store::video::SessionView;

pub fn router() -> Router {
    Router::new()
        .route(Method::POST, "/api/v1/video-calls", handlers::create)
        .doc(
            RouteDoc::new("Create the video session of one of the caller's video appointments")
                .describe("One session per appointment: a second creation is a 409. `recording_enabled` only allows recording; it happens once both participants consented.")
                .bearer()
                .body::<handlers::CreateBody>()
                .response::<SessionView>(201)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::POST, "/api/v1/video-calls/tokens", handlers::token)
        .doc(
            RouteDoc::new("An access token for the caller (a participant) to join the session's room")
                .describe("Made locally in Twilio's format (HS256, `cty: twilio-fpa;v=1`, grants.identity an opaque participant id, grants.video.room), valid 1 hour. Issued from 15 minutes before the appointment's start (`DOCARE_VIDEO_JOIN_EARLY_MINUTES`) until its end; a room that ended (a dropped call) is replaced by a new room of the same session. Audited (`VIDEO_TOKEN`).")
                .bearer()
                .body::<handlers::TokenBody>()
                .response::<handlers::TokenAnswer>(200)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/video-calls/{id}", handlers::get)
        .doc(
            RouteDoc::new("A video session with its participants' join and leave times (its participants only)")
                .bearer()
                .response::<SessionView>(200)
                .errors(&[401, 403, 404, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/video-calls/{id}/start",
            handlers::start,
        )
        .doc(
            RouteDoc::new("Start the call (the provider): a room, and the appointment in progress")
                .describe("Within the join window; the appointment moves to `in_progress` by its own transitions (checked in first when it is confirmed), in the same transaction.")
                .bearer()
                .response::<SessionView>(200)
                .errors(&[401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::POST, "/api/v1/video-calls/{id}/end", handlers::end)
        .doc(
            RouteDoc::new("End the call (the provider): the room completed, the appointment completed")
                .bearer()
                .response::<SessionView>(200)
                .errors(&[401, 403, 404, 409, 429, 503]),
        )
        .route(
            Method::POST,
            "/api/v1/video-calls/{id}/consent",
            handlers::consent,
        )
        .doc(
            RouteDoc::new("Give or withdraw the caller's consent to recording")
                .describe("Recording is on only while recording was enabled for the session and both participants consent; a withdrawal stops it in the live room before it is recorded. Audited (`RECORDING_CONSENT`).")
                .bearer()
                .body::<handlers::ConsentBody>()
                .response::<SessionView>(200)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/appointments/{id}/video-calls",
            handlers::for_appointment,
        )
        .doc(
            RouteDoc::new("An appointment's video sessions (at most one; its participants only)")
                .bearer()
                .paged()
                .response::<Page<SessionView>>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
}
