//! The provider directory, a provider's listing and availability, and the free slots.
//!
//! A provider publishes (and republishes) their listing with `PUT
//! /api/v1/providers/me/availability`: availability plus the public `specialty` and
//! `consultation_types`; the directory shows their account name. Republishing never
//! touches booked appointments: they stay booked, and the answer counts the upcoming ones
//! the new availability no longer offers (`booked_outside_availability`).
//!
//! The directory and the slots are public scheduling data (no PHI): reading them is not
//! audited. Changing a listing is.

use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::{accounts, audit_event, Role};
use shared::domain::appointment::{
    AvailabilitySpec, ConsultationType, ExceptionSpec, Slot, WeeklyWindowSpec, MAX_SLOT_RANGE_DAYS,
    UNIT_MINUTES,
};
use shared::domain::text::bounded;
use shared::domain::zone::Zone;
use shared::domain::Timestamp;
use shared::http::pagination::PageRequest;
use shared::http::{ApiRequest, ApiResponse, HandlerResult, Page};
use shared::store::appointments::{self as store, Listing};
use shared::{guard, ApiError, App, AppContext};

const RESOURCE: &str = "provider_listing";
/// How far ahead the directory looks for a provider's next open slot.
pub const NEXT_SLOT_DAYS: i64 = 14;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AvailabilityBody {
    time_zone: Zone,
    slot_minutes: i64,
    #[serde(default)]
    buffer_minutes: Option<i64>,
    weekly: Vec<WeeklyWindowSpec>,
    #[serde(default)]
    exceptions: Option<Vec<ExceptionSpec>>,
    /// Shown in the directory (1..=100 characters).
    #[serde(default)]
    specialty: Option<String>,
    /// What the provider offers; default `["video"]`.
    #[serde(default)]
    consultation_types: Option<Vec<ConsultationType>>,
}

/// A provider's listing as they published it.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct ListingView {
    provider_id: String,
    name: String,
    specialty: Option<String>,
    consultation_types: Vec<ConsultationType>,
    availability: AvailabilitySpec,
    updated_at: String,
    /// Upcoming booked appointments the new availability no longer offers: they stay
    /// booked (cancel or move them explicitly).
    booked_outside_availability: usize,
}

/// One provider in the directory.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct ProviderEntry {
    id: String,
    name: String,
    specialty: Option<String>,
    time_zone: Zone,
    consultation_types: Vec<ConsultationType>,
    slot_minutes: i64,
    /// The first free slot within 14 days, if any.
    next_open_slot: Option<SlotView>,
}

#[derive(Serialize, schemars::JsonSchema, Clone)]
pub(crate) struct SlotView {
    /// RFC 3339 UTC.
    start: String,
    end: String,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Slots {
    /// The provider's zone (the times are UTC).
    time_zone: Zone,
    items: Vec<SlotView>,
}

fn view(slot: &Slot) -> SlotView {
    SlotView {
        start: slot.start.to_string(),
        end: slot.end.to_string(),
    }
}

/// The free slots of a listing starting in `[from, to)`: availability minus every slot
/// touching a claimed unit (one query of the provider's claims).
pub(crate) async fn free_slots(
    app: &AppContext,
    listing: &Listing,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Slot>, ApiError> {
    let availability = listing.availability.parse().map_err(ApiError::internal)?;
    let slots = availability.slots(from, to);
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
        return Ok(Vec::new());
    };
    let claimed = store::claimed(app, &listing.provider_id, first.start, last.end).await?;
    Ok(slots
        .into_iter()
        .filter(|s| {
            shared::domain::appointment::units(s.start, s.end)
                .iter()
                .all(|u| !claimed.contains(&u.to_string()))
        })
        .collect())
}

/// `PUT /api/v1/providers/me/availability` (providers): publishes the listing.
pub async fn put_availability(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    if principal.role != Role::Provider {
        let target = (RESOURCE, principal.user_id.as_str());
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let body: AvailabilityBody = req.json()?;
    let spec = AvailabilitySpec {
        time_zone: body.time_zone,
        slot_minutes: body.slot_minutes,
        buffer_minutes: body.buffer_minutes.unwrap_or(0),
        weekly: body.weekly,
        exceptions: body.exceptions.unwrap_or_default(),
    };
    let availability = spec.parse().map_err(ApiError::validation)?;
    let specialty = body
        .specialty
        .as_deref()
        .map(|s| bounded("specialty", s, 100).map(str::to_string))
        .transpose()?;
    let mut consultation_types = body
        .consultation_types
        .unwrap_or_else(|| vec![ConsultationType::Video]);
    consultation_types.dedup();
    if consultation_types.is_empty() {
        return Err(ApiError::validation(
            "consultation_types: offer at least one",
        ));
    }
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let name = account.open(&app, "full_name").await?.unwrap_or_default();
    let listing = Listing {
        provider_id: principal.user_id.clone(),
        display_name: name,
        specialty,
        consultation_types,
        availability: spec,
        version: 0,
        updated_at: app.now().to_string(),
    };
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource(RESOURCE, &principal.user_id);
    store::save_listing(&app, &listing, event).await?;
    let outside = store::upcoming_with(&app, &principal.user_id, app.now())
        .await?
        .iter()
        .filter(|a| availability.offered(a.start).is_none_or(|s| s.end != a.end))
        .count();
    ApiResponse::ok(&ListingView {
        provider_id: listing.provider_id,
        name: listing.display_name,
        specialty: listing.specialty,
        consultation_types: listing.consultation_types,
        availability: listing.availability,
        updated_at: listing.updated_at,
        booked_outside_availability: outside,
    })
}

/// `GET /api/v1/providers`: the directory, paginated.
pub async fn directory(app: App, req: ApiRequest) -> HandlerResult {
    let _principal = guard::signed_in(&app, &req).await?;
    let page = PageRequest::from_request(&req)?;
    let listings = store::directory(&app, &page).await?;
    let now = app.now();
    let horizon = Timestamp::new(now.as_datetime() + chrono::Duration::days(NEXT_SLOT_DAYS));
    let mut items = Vec::with_capacity(listings.items.len());
    for listing in &listings.items {
        let next = free_slots(&app, listing, later(now), horizon).await?;
        items.push(ProviderEntry {
            id: listing.provider_id.clone(),
            name: listing.display_name.clone(),
            specialty: listing.specialty.clone(),
            time_zone: listing.availability.time_zone,
            consultation_types: listing.consultation_types.clone(),
            slot_minutes: listing.availability.slot_minutes,
            next_open_slot: next.first().map(view),
        });
    }
    ApiResponse::ok(&Page {
        items,
        next_cursor: listings.next_cursor,
    })
}

/// The first second a booking may start at (strictly after now).
fn later(now: Timestamp) -> Timestamp {
    Timestamp::new(now.as_datetime() + chrono::Duration::seconds(1))
}

fn time_param(req: &ApiRequest, name: &str) -> Result<Option<Timestamp>, ApiError> {
    req.query_param(name)
        .map(|v| {
            Timestamp::parse(v)
                .ok_or_else(|| ApiError::validation(format!("{name}: must be an RFC 3339 time")))
        })
        .transpose()
}

/// `GET /api/v1/providers/{id}/slots?from=&to=`: free slots starting in `[from, to)`
/// (default: the next 7 days; at most 31 days; past times are left out).
pub async fn slots(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let id = guard::path_id(&app, &req, &principal, "id", RESOURCE).await?;
    let now = app.now();
    let from = time_param(&req, "from")?.unwrap_or(now);
    let to = time_param(&req, "to")?
        .unwrap_or_else(|| Timestamp::new(from.as_datetime() + chrono::Duration::days(7)));
    if to <= from {
        return Err(ApiError::validation("to: must be after from"));
    }
    if to.as_datetime() - from.as_datetime() > chrono::Duration::days(MAX_SLOT_RANGE_DAYS) {
        return Err(ApiError::validation(format!(
            "to: at most {MAX_SLOT_RANGE_DAYS} days after from"
        )));
    }
    let listing = store::listing(&app, id).await?.ok_or(ApiError::NotFound)?;
    let from = from.max(later(now));
    let items = if to > from {
        free_slots(&app, &listing, from, to).await?
    } else {
        Vec::new()
    };
    ApiResponse::ok(&Slots {
        time_zone: listing.availability.time_zone,
        items: items.iter().map(view).collect(),
    })
}

/// A start on the claim grid (seconds and odd minutes are never slots).
pub(crate) fn on_grid(start: Timestamp) -> bool {
    start.epoch_secs() % (UNIT_MINUTES * 60) == 0
}
