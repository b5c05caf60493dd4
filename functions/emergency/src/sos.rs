//! `POST /api/v1/emergency/sos`: records the alert and answers 202 at once; the
//! fan-out is queued (sealed e-mail/SMS to each contact and e-mail to the care team)
//! plus a WebSocket `notification` push to the care team's open connections.
//!
//! Collapsing: the first SOS opens a window (TTL [`COLLAPSE_SECS`]) in the same
//! transaction that records the alert and its audit event (`shared::store::sos`). A
//! repeat inside the window is recorded on the open alert (count, time, latest
//! location) and not sent again.

use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::{accounts, audit_event, authenticate, care, input};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::notifications::{enqueue_all, Notification};
use shared::store::sos::{self, AlertText};
use shared::{ApiError, App};

/// Repeats within this many seconds join the open alert.
pub const COLLAPSE_SECS: i64 = 5 * 60;
const MAX_MESSAGE_CHARS: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub accuracy_m: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SosBody {
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    message: Option<String>,
}

fn validate(body: &SosBody) -> Result<(), ApiError> {
    if let Some(l) = &body.location {
        let ok = (-90.0..=90.0).contains(&l.latitude)
            && (-180.0..=180.0).contains(&l.longitude)
            && l.accuracy_m.is_none_or(|a| (0.0..=100_000.0).contains(&a));
        if !ok {
            return Err(ApiError::validation(
                "location: latitude -90..90, longitude -180..180, accuracy_m 0..100000",
            ));
        }
    }
    if let Some(m) = &body.message {
        if m.chars().count() > MAX_MESSAGE_CHARS || m.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ApiError::validation(format!(
                "message: at most {MAX_MESSAGE_CHARS} printable characters"
            )));
        }
    }
    Ok(())
}

/// Raises (or joins) an SOS alert.
pub async fn raise(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: SosBody = if req.body.is_empty() {
        SosBody::default()
    } else {
        req.json()?
    };
    validate(&body)?;
    let user = principal.user_id.clone();
    let location = body
        .location
        .as_ref()
        .map(|l| serde_json::to_string(l).map_err(ApiError::internal))
        .transpose()?;
    let message = body
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let text = AlertText {
        location: location.as_deref(),
        message,
    };

    let alert_id = ulid::Ulid::new().to_string();
    let event =
        |id: &str| audit_event(&req, &principal, Action::Sos, Outcome::Success).resource("sos", id);
    if !sos::open(
        &app,
        &user,
        &alert_id,
        COLLAPSE_SECS,
        text,
        event(&alert_id),
    )
    .await?
    {
        let repeat = Repeat {
            coordinates: body.location.as_ref(),
            sealed_location: location.as_deref(),
            message,
        };
        return join_open_alert(&app, &req, &principal, repeat).await;
    }

    // Fan-out. The alert is recorded whatever happens next; a failure to queue is a 503
    // the client retries, and the retry joins this alert and re-queues (ids dedupe).
    let at = app
        .clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let notified = fan_out(&app, &user, &alert_id, &at, body.location.as_ref(), message).await?;
    sos::mark_sent(&app, &user, &alert_id).await?;
    ApiResponse::accepted(&serde_json::json!({
        "sos_id": alert_id,
        "status": "recorded",
        "notified": notified,
    }))
}

/// What a repeated SOS carries.
struct Repeat<'a> {
    coordinates: Option<&'a Location>,
    sealed_location: Option<&'a str>,
    message: Option<&'a str>,
}

async fn join_open_alert(
    app: &App,
    req: &ApiRequest,
    principal: &shared::auth::Principal,
    repeat: Repeat<'_>,
) -> HandlerResult {
    let user = &principal.user_id;
    let changed = || ApiError::conflict("the alert window changed; retry");
    let alert_id = sos::open_alert_id(app, user).await?.ok_or_else(changed)?;
    let event =
        audit_event(req, principal, Action::Sos, Outcome::Success).resource("sos", &alert_id);
    let alert = sos::join(app, user, &alert_id, repeat.sealed_location, event)
        .await?
        .ok_or_else(changed)?;
    // The first attempt recorded the alert but could not queue its messages (it
    // answered 503): this repeat sends them. Ids make the notify worker send each once.
    let mut notified = 0;
    if !alert.sent {
        notified = fan_out(
            app,
            user,
            &alert_id,
            &alert.created_at,
            repeat.coordinates,
            repeat.message,
        )
        .await?;
        sos::mark_sent(app, user, &alert_id).await?;
    }
    ApiResponse::accepted(&serde_json::json!({
        "sos_id": alert_id,
        "status": "collapsed",
        "notified": notified,
    }))
}

/// Queues the contacts' and the care team's notifications and pushes to the care
/// team's connections. Returns how many messages were queued.
async fn fan_out(
    app: &App,
    user: &str,
    alert_id: &str,
    at: &str,
    location: Option<&Location>,
    message: Option<&str>,
) -> Result<usize, ApiError> {
    let account = accounts::get(app, user).await?.ok_or(ApiError::NotFound)?;
    let name = account
        .open(app, "full_name")
        .await?
        .unwrap_or_else(|| "A DoCare user".into());
    let mut text = format!("DoCare emergency alert: {name} raised an SOS at {at}.");
    if let Some(l) = location {
        text.push_str(&format!(" Location: {:.5}, {:.5}", l.latitude, l.longitude));
        if let Some(a) = l.accuracy_m {
            text.push_str(&format!(" (±{a:.0} m)"));
        }
        text.push('.');
    }
    if let Some(m) = message {
        text.push_str(&format!(" Message: {m}"));
    }

    let mut outgoing = Vec::new();
    for (contact_id, phone, email) in shared::store::contacts::reachable(app, user).await? {
        if let Some(phone) = phone {
            outgoing.push(Notification::sms(
                format!("sos:{alert_id}:{contact_id}:sms"),
                &phone,
                text.clone(),
            ));
        }
        if let Some(email) = email {
            outgoing.push(Notification::email(
                format!("sos:{alert_id}:{contact_id}:email"),
                &email,
                "DoCare emergency alert",
                text.clone(),
            ));
        }
    }
    let mut providers = Vec::new();
    for provider_id in care::care_team(app, user).await? {
        if let Some(provider) = accounts::get(app, &provider_id).await? {
            let email = provider.email(app).await?;
            if input::email(&email).is_ok() {
                outgoing.push(Notification::email(
                    format!("sos:{alert_id}:{}:email", provider.id),
                    &email,
                    "DoCare: a patient raised an SOS",
                    text.clone(),
                ));
            }
            providers.push(provider.id);
        }
    }
    let queued = outgoing.len();
    if !outgoing.is_empty() {
        enqueue_all(app, outgoing).await?;
    }
    let push = serde_json::json!({
        "type": "notification",
        "data": {"kind": "sos", "sos_id": alert_id, "patient_id": user, "at": at},
    });
    for provider in providers {
        // Best effort: e-mail is the durable channel; a push is a courtesy.
        if let Err(err) = shared::ws::push_to_user(app, &provider, &push).await {
            tracing::warn!(error = %shared::error::cause_chain(&err), "sos push failed");
        }
    }
    Ok(queued)
}
