//! `GET /api/v1/users/me/access-log`: who else acted on the caller's records (their
//! account, profile and clinical notes), newest first — the accounting of disclosures a patient may
//! ask for. Events the caller caused themselves are left out.
//!
//! The events come from one resource-index partition per record, merged by their index
//! sort key (`<time>#<event id>`). The cursor is that key of the last position served
//! (`{"before": …}` in the usual opaque `v1.` form), so a page never repeats or skips
//! an event however the partitions interleave.

use serde::Serialize;
use shared::audit::{parse_time, Action, AuditReader, Outcome, Resource, StoredEvent, TimeRange};
use shared::auth::{authenticate, record};
use shared::http::pagination::{cursor_position, position_cursor, Page, PageRequest, MAX_LIMIT};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::{ApiError, App};

/// The caller's records whose events are listed (type; the id is the caller's id).
/// `clinical_notes`: each access to one of the patient's secure notes by someone else
/// (the notes function records it there as well as on the note).
pub const OWN_RECORDS: [&str; 3] = ["profile", "account", "clinical_notes"];
/// Resource type of the event recording that a user read their access log.
pub const ACCESS_LOG: &str = "access_log";
/// Index pages read per record and request: bounds the work when the caller's own
/// events crowd out others' (a short page with a cursor is then answered).
const MAX_READS_PER_RECORD: usize = 3;

/// One access, as its subject sees it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AccessView {
    pub id: String,
    pub time: String,
    pub actor: ActorView,
    pub action: Action,
    pub resource: Option<Resource>,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "AccessActor")]
pub struct ActorView {
    pub user_id: Option<String>,
    pub role: Option<String>,
}

impl From<StoredEvent> for AccessView {
    fn from(event: StoredEvent) -> Self {
        AccessView {
            id: event.event_id,
            time: event.time,
            actor: ActorView {
                user_id: event.actor.user_id,
                role: event.actor.role,
            },
            action: event.action,
            resource: event.resource,
            outcome: event.outcome,
        }
    }
}

/// The index sort key of an event: merging on it gives one total, stable order.
fn position(event: &StoredEvent) -> String {
    format!("{}#{}", event.time, event.event_id)
}

fn invalid_cursor() -> ApiError {
    ApiError::validation("the cursor is not valid for this list")
}

/// `before` of a cursor of this list; anything else is a 400.
fn before(req: &ApiRequest) -> Result<Option<String>, ApiError> {
    let Some(cursor) = req.query_param("cursor") else {
        return Ok(None);
    };
    let value = cursor_position(cursor)?;
    let (time, id) = value.split_once('#').ok_or_else(invalid_cursor)?;
    if parse_time(time).is_none() || !crate::is_opaque_id(id) {
        return Err(invalid_cursor());
    }
    Ok(Some(value))
}

/// What one record's partition gave: others' events after the cursor, and how far it
/// was read (`None` when it was read to its end).
struct Scan {
    found: Vec<(String, StoredEvent)>,
    frontier: Option<String>,
}

async fn scan_record(
    reader: &AuditReader,
    kind: &str,
    me: &str,
    before: Option<&str>,
    want: usize,
) -> Result<Scan, ApiError> {
    let range = TimeRange {
        from: None,
        to: before
            .and_then(|b| b.split_once('#'))
            .and_then(|(time, _)| parse_time(time)),
    };
    let mut next_cursor: Option<String> = None;
    let mut found = Vec::new();
    let mut frontier = None;
    for _ in 0..MAX_READS_PER_RECORD {
        let request = PageRequest::resume(MAX_LIMIT, next_cursor.take().as_deref())?;
        let page = reader.by_resource(kind, me, &range, &request).await?;
        for event in page.items {
            let at = position(&event);
            // The time bound is inclusive to the millisecond: drop what was served.
            if before.is_some_and(|b| at.as_str() >= b) {
                continue;
            }
            frontier = Some(at.clone());
            if event.actor.user_id.as_deref() != Some(me) {
                found.push((at, event));
            }
        }
        match page.next_cursor {
            None => {
                return Ok(Scan {
                    found,
                    frontier: None,
                })
            }
            Some(next) => next_cursor = Some(next),
        }
        if found.len() >= want {
            break;
        }
    }
    Ok(Scan {
        found,
        frontier: frontier.or_else(|| before.map(str::to_string)),
    })
}

/// `GET /api/v1/users/me/access-log[?limit=&cursor=]`: any signed-in user.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let limit = PageRequest::from_request(&req)?.limit as usize;
    let before = before(&req)?;
    let reader = AuditReader::of(&app);
    let me = principal.user_id.as_str();
    let mut found = Vec::new();
    let mut frontier: Option<String> = None;
    for kind in OWN_RECORDS {
        let scan = scan_record(&reader, kind, me, before.as_deref(), limit).await?;
        found.extend(scan.found);
        // Above the highest frontier every partition has been read.
        frontier = frontier.max(scan.frontier);
    }
    if let Some(floor) = &frontier {
        found.retain(|(at, _)| at >= floor);
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    let more = found.len() > limit;
    found.truncate(limit);
    let next = if more {
        found.last().map(|(at, _)| at.clone())
    } else {
        frontier
    };
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (ACCESS_LOG, me),
        Outcome::Success,
    )
    .await?;
    let items: Vec<AccessView> = found.into_iter().map(|(_, e)| e.into()).collect();
    let next = next.map(|at| position_cursor(&at));
    ApiResponse::ok(&Page {
        items,
        next_cursor: next,
    })
}
