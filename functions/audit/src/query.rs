//! `GET /api/v1/audit`: events by actor, by resource or by action (exactly one, each an
//! index of the audit table), optionally within `from`/`to`, newest first, paginated.
//! Administrators with an MFA session only; a refused attempt is recorded as
//! `ACCESS_DENIED` and every answered query as `VIEW` on `audit_log` (the id says what
//! was looked up), before the answer leaves.

use crate::is_opaque_id;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::audit::{Action, Actor, AuditReader, Outcome, Resource, StoredEvent, TimeRange};
use shared::auth::record;
use shared::http::pagination::{Page, PageRequest};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::{guard, ApiError, App};

/// Resource type of the events that record reads of the trail.
pub const AUDIT_LOG: &str = "audit_log";
const PARAMS: [&str; 8] = [
    "actor",
    "resource_type",
    "resource_id",
    "action",
    "from",
    "to",
    "limit",
    "cursor",
];

/// Which index answers the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Actor(String),
    Resource { kind: String, id: String },
    Action(Action),
}

impl Filter {
    /// The id of the `audit_log` resource in the event recording this query: ids and
    /// names only (filters accept nothing else).
    fn describe(&self) -> String {
        match self {
            Filter::Actor(id) => format!("actor:{id}"),
            Filter::Resource { kind, id } => format!("resource:{kind}:{id}"),
            Filter::Action(action) => format!("action:{action}"),
        }
    }
}

/// One event as the query API shows it: identifiers only. The reason and user agent
/// stay sealed; `has_reason` says whether one was given.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "AuditEvent")]
pub struct EventView {
    pub id: String,
    pub time: String,
    pub actor: Actor,
    pub action: Action,
    pub resource: Option<Resource>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub has_reason: bool,
}

impl From<StoredEvent> for EventView {
    fn from(event: StoredEvent) -> Self {
        EventView {
            has_reason: event.reason.is_some(),
            id: event.event_id,
            time: event.time,
            actor: event.actor,
            action: event.action,
            resource: event.resource,
            outcome: event.outcome,
            request_id: event.request_id,
            source_ip: event.source_ip,
        }
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::validation(message)
}

/// A time bound; 400 names the parameter, never echoes the value.
fn time_param(req: &ApiRequest, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    req.query_param(name)
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    bad(format!(
                        "query parameter `{name}` must be an RFC 3339 time such as 2026-01-31T00:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// An id parameter, canonical (ULIDs upper-case, as stored).
fn id_param(req: &ApiRequest, name: &str, extra: &[&str]) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.query_param(name).map(str::trim) else {
        return Ok(None);
    };
    if extra.contains(&raw) {
        return Ok(Some(raw.to_string()));
    }
    if !is_opaque_id(raw) {
        return Err(bad(format!(
            "query parameter `{name}` must be an id (ULID or UUID)"
        )));
    }
    Ok(Some(match ulid::Ulid::from_string(raw) {
        Ok(ulid) => ulid.to_string(),
        Err(_) => raw.to_ascii_lowercase(),
    }))
}

/// Parses and checks the filters: exactly one of actor, resource, action.
pub fn filters(req: &ApiRequest) -> Result<(Filter, TimeRange), ApiError> {
    if req.query.keys().any(|k| !PARAMS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown query parameter; use {}",
            PARAMS.join(", ")
        )));
    }
    let actor = id_param(req, "actor", &[])?;
    let kind = req.query_param("resource_type").map(str::trim);
    if let Some(kind) = kind {
        let ok = (1..=32).contains(&kind.len())
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(bad(
                "query parameter `resource_type` must be 1 to 32 of a-z, 0-9 and _",
            ));
        }
    }
    // `*` and `all` name collections (every contact of a user, the account list).
    let resource_id = id_param(req, "resource_id", &["*", "all"])?;
    let resource = match (kind, resource_id) {
        (Some(kind), Some(id)) => Some(Filter::Resource {
            kind: kind.to_string(),
            id,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "query parameter `resource_id` is required with `resource_type`",
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "query parameter `resource_type` is required with `resource_id`",
            ))
        }
    };
    let action = req
        .query_param("action")
        .map(|raw| {
            raw.trim()
                .parse::<Action>()
                .map_err(|_| bad("query parameter `action` is not an audit action (e.g. LOGIN)"))
        })
        .transpose()?;
    let mut chosen = [
        actor.map(Filter::Actor),
        resource,
        action.map(Filter::Action),
    ]
    .into_iter()
    .flatten();
    let (Some(filter), None) = (chosen.next(), chosen.next()) else {
        return Err(bad(
            "give exactly one of `actor`, `resource_type` with `resource_id`, or `action`",
        ));
    };
    let range = TimeRange {
        from: time_param(req, "from")?,
        to: time_param(req, "to")?,
    };
    if let (Some(from), Some(to)) = (range.from, range.to) {
        if from > to {
            return Err(bad("query parameter `from` must not be after `to`"));
        }
    }
    Ok((filter, range))
}

/// `GET /api/v1/audit?actor=|resource_type=&resource_id=|action=[&from=&to=&limit=&cursor=]`.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::admin(&app, &req, (AUDIT_LOG, guard::ANY)).await?;
    let (filter, range) = filters(&req)?;
    let page = PageRequest::from_request(&req)?;
    let reader = AuditReader::of(&app);
    let events = match &filter {
        Filter::Actor(id) => reader.by_actor(id, &range, &page).await?,
        Filter::Resource { kind, id } => reader.by_resource(kind, id, &range, &page).await?,
        Filter::Action(action) => reader.by_action(*action, &range, &page).await?,
    };
    let looked_up = filter.describe();
    record(
        &app,
        &req,
        &principal,
        Action::View,
        (AUDIT_LOG, &looked_up),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&Page {
        items: events
            .items
            .into_iter()
            .map(EventView::from)
            .collect::<Vec<_>>(),
        next_cursor: events.next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn req(query: &[(&str, &str)]) -> ApiRequest {
        let mut req = ApiRequest::new(Method::GET, "/api/v1/audit");
        for (k, v) in query {
            req.query.insert((*k).into(), (*v).into());
        }
        req
    }

    fn message(query: &[(&str, &str)]) -> String {
        filters(&req(query)).expect_err("400").to_string()
    }

    #[test]
    fn exactly_one_filter_and_errors_name_the_parameter() {
        let id = "01JD5Z6Q8W3M0V7K2R9T4Y6B1C";
        let (filter, range) = filters(&req(&[("actor", &id.to_lowercase())])).expect("ok");
        assert_eq!(filter, Filter::Actor(id.into()), "canonical ULID");
        assert_eq!(range, TimeRange::default());
        assert_eq!(
            filters(&req(&[("action", "LOGIN_FAILED")])).expect("ok").0,
            Filter::Action(Action::LoginFailed)
        );
        assert!(matches!(
            filters(&req(&[("resource_type", "profile"), ("resource_id", id)]))
                .expect("ok")
                .0,
            Filter::Resource { .. }
        ));
        assert!(message(&[]).contains("exactly one"));
        assert!(message(&[("actor", id), ("action", "LOGIN")]).contains("exactly one"));
        assert!(message(&[("resource_type", "profile")]).contains("`resource_id`"));
        assert!(message(&[("resource_id", id)]).contains("`resource_type`"));
        assert!(message(&[("action", "login")]).contains("`action`"));
        assert!(
            message(&[("resource_type", "Profile!"), ("resource_id", id)])
                .contains("`resource_type`")
        );
        let phi = message(&[("actor", "123-45-6789")]);
        assert!(phi.contains("`actor`") && !phi.contains("6789"), "{phi}");
        let when = message(&[("actor", id), ("from", "yesterday")]);
        assert!(when.contains("`from`") && !when.contains("yesterday"));
        assert!(message(&[("actor", id), ("to", "2026-13-01T00:00:00Z")]).contains("`to`"));
        assert!(message(&[
            ("actor", id),
            ("from", "2026-02-01T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z")
        ])
        .contains("`from`"));
        assert!(message(&[("actor", id), ("user", "x")]).contains("unknown query parameter"));
    }
}
