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
use shared::domain::emergency::sos_input;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::notifications::{enqueue_all, Notification};
use shared::store::sos::{self, AlertText};
use shared::ws::ServerEvent;
use shared::{ApiError, App};

pub use shared::domain::emergency::{Location, COLLAPSE_SECS};

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sos")]
pub struct SosBody {
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    message: Option<String>,
}

/// Raises (or joins) an SOS alert.
pub async fn raise(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: SosBody = if req.body.is_empty() {
        SosBody::default()
    } else {
        req.json()?
    };
    let message = sos_input(body.location.as_ref(), body.message.as_deref())?;
    let user = principal.user_id.clone();
    let location = body
        .location
        .as_ref()
        .map(|l| serde_json::to_string(l).map_err(ApiError::internal))
        .transpose()?;
    let text = AlertText {
        location: location.as_deref(),
        message,
    };

    let alert_id = app.new_id();
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
    let at = app.now().to_string();
    let notified = fan_out(&app, &user, &alert_id, &at, body.location.as_ref(), message).await?;
    sos::mark_sent(&app, &user, &alert_id).await?;
    ApiResponse::accepted(&SosAccepted {
        sos_id: alert_id,
        status: "recorded",
        notified,
    })
}

/// The answer to an SOS: `recorded` (sent now) or `collapsed` (joined the open alert).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SosAccepted {
    /// How many notifications were queued or pushed.
    pub notified: usize,
    pub sos_id: String,
    /// `recorded` or `collapsed`.
    pub status: &'static str,
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
    ApiResponse::accepted(&SosAccepted {
        sos_id: alert_id,
        status: "collapsed",
        notified,
    })
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
    let push = ServerEvent::new(
        "notification",
        serde_json::json!({"kind": "sos", "sos_id": alert_id, "patient_id": user, "at": at}),
    );
    for provider in providers {
        // Best effort: e-mail is the durable channel; a push is a courtesy.
        if let Err(err) = shared::ws::push_to_user(app, &provider, &push).await {
            tracing::warn!(error = %shared::error::cause_chain(&err), "sos push failed");
        }
    }
    Ok(queued)
}
