//! The appointments function: the provider directory, providers' availability and free
//! slots, and appointments that never overlap for one provider (claimed 15-minute units
//! in one transaction with the appointment and its audit event; `docs/appointments.md`).

/// The outside services the `appointments` binary links (`shared::adapters::links`): the
/// table and the keys only.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::NONE;

pub mod appointments;
pub mod providers;

use http::Method;
use shared::http::{Page, RouteDoc, Router};
use shared::store::appointments::Appointment;

pub fn router() -> Router {
    Router::new()
        .route(Method::GET, "/api/v1/providers", providers::directory)
        .doc(
            RouteDoc::new("The provider directory: name, specialty, time zone, consultation types, next open slot")
                .bearer()
                .paged()
                .response::<Page<providers::ProviderEntry>>(200)
                .errors(&[400, 401, 429, 503]),
        )
        .route(
            Method::PUT,
            "/api/v1/providers/me/availability",
            providers::put_availability,
        )
        .doc(
            RouteDoc::new("Publish the caller's (a provider's) availability and directory listing")
                .describe("Replaces the weekly windows, exceptions, slot length and buffer, specialty and consultation types. Booked appointments are never dropped: they stay, and `booked_outside_availability` counts the upcoming ones the new availability no longer offers.")
                .bearer()
                .body::<providers::AvailabilityBody>()
                .response::<providers::ListingView>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(
            Method::GET,
            "/api/v1/providers/{id}/slots",
            providers::slots,
        )
        .doc(
            RouteDoc::new("A provider's free slots in [from, to) (at most 31 days; default the next 7)")
                .bearer()
                .query::<String>("from", "RFC 3339 start of the range (default: now).")
                .query::<String>("to", "RFC 3339 end of the range (default: from + 7 days).")
                .response::<providers::Slots>(200)
                .errors(&[400, 401, 404, 429, 503]),
        )
        .route(Method::POST, "/api/v1/appointments", appointments::book)
        .doc(
            RouteDoc::new("Book an appointment (a patient for themself, or a provider for a patient in their care)")
                .describe("The start must be one of the provider's free slots. Of concurrent bookings of overlapping time exactly one wins; the others get 409 `conflict`. With an `Idempotency-Key`, a repeated booking answers the first answer; the same key with another body is a 422.")
                .bearer()
                .header("idempotency-key", "Makes a retried booking return the first answer (1 to 64 of A-Z a-z 0-9 - _ . :; kept 24 hours).")
                .body::<appointments::BookBody>()
                .response::<Appointment>(201)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
        .route(Method::GET, "/api/v1/appointments", appointments::list)
        .doc(
            RouteDoc::new("The caller's appointments by start time")
                .bearer()
                .paged()
                .query::<String>("role", "`patient` or `provider` (default: the caller's role).")
                .query::<shared::domain::appointment::Status>("status", "Only appointments in this status.")
                .query::<String>("from", "RFC 3339: starting at or after.")
                .query::<String>("to", "RFC 3339: starting before.")
                .response::<Page<Appointment>>(200)
                .errors(&[400, 401, 403, 429, 503]),
        )
        .route(Method::GET, "/api/v1/appointments/{id}", appointments::get)
        .doc(
            RouteDoc::new("One appointment (its participants; an administrator with a reason)")
                .bearer()
                .header("x-access-reason", "An administrator's reason for reading PHI (10..=500 characters).")
                .response::<Appointment>(200)
                .errors(&[400, 401, 403, 404, 429, 503]),
        )
        .route(Method::PATCH, "/api/v1/appointments/{id}", appointments::patch)
        .doc(
            RouteDoc::new("Change an appointment's status, time, reason or notes")
                .describe("Transitions: requested → confirmed | cancelled; confirmed → checked_in | cancelled | no_show; checked_in → in_progress; in_progress → completed (others: 422). Patients cancel or reschedule at least 2 hours before the start; a patient's reschedule makes a confirmed appointment requested again. Confirming a patient's booking starts the care relationship (source `appointment`) unless the patient ended it.")
                .bearer()
                .body::<appointments::PatchBody>()
                .response::<Appointment>(200)
                .errors(&[400, 401, 403, 404, 409, 422, 429, 503]),
        )
}
