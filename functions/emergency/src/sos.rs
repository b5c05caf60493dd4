//! `POST /api/v1/emergency/sos`: records the alert and answers 202 at once; the
//! fan-out is queued (sealed e-mail/SMS to each contact and e-mail to the care team)
//! plus a WebSocket `notification` push to the care team's open connections.
//!
//! Collapsing: the first SOS opens a window (TTL [`COLLAPSE_SECS`]) in the same
//! transaction that records the alert and its audit event (`shared::store::sos`). A
//! repeat inside the window is recorded on the open alert (count, time, latest
//! location) and not sent again.
//!
//! Messages to contacts spend the account's daily caps (`shared::store::contacts::reserve_up_to`,
//! reserved before anything is queued); SMS go only to the configured countries
//! (`DOCARE_SMS_COUNTRY_CODES`), and a contact whose stored phone or e-mail fails its
//! integrity check is skipped (recorded as `INTEGRITY_FAILURE`): an alert still reaches
//! everyone else, and the answer says how many messages were `withheld`. The care team's
//! e-mails and pushes are not capped.

use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::{accounts, audit_event, authenticate, care, input, Principal};
use shared::domain::emergency::sos_input;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::notifications::{enqueue_all, Notification};
use shared::store::contacts::{self, Channel};
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
    let sent = fan_out(
        &app,
        &req,
        &principal,
        &alert_id,
        &at,
        body.location.as_ref(),
        message,
    )
    .await?;
    sos::mark_sent(&app, &user, &alert_id).await?;
    ApiResponse::accepted(&SosAccepted {
        sos_id: alert_id,
        status: "recorded",
        notified: sent.queued,
        withheld: sent.withheld,
    })
}

/// The answer to an SOS: `recorded` (sent now) or `collapsed` (joined the open alert).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SosAccepted {
    /// How many notifications were queued.
    pub notified: usize,
    /// Messages to contacts not sent: today's cap spent, an SMS country not allowed, or a
    /// stored address that failed its integrity check.
    pub withheld: usize,
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
    let mut sent = Sent::default();
    if !alert.sent {
        sent = fan_out(
            app,
            req,
            principal,
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
        notified: sent.queued,
        withheld: sent.withheld,
    })
}

/// What a fan-out did.
#[derive(Debug, Default)]
struct Sent {
    queued: usize,
    withheld: usize,
}

/// Queues the contacts' and the care team's notifications and pushes to the care
/// team's connections.
async fn fan_out(
    app: &App,
    req: &ApiRequest,
    principal: &Principal,
    alert_id: &str,
    at: &str,
    location: Option<&Location>,
    message: Option<&str>,
) -> Result<Sent, ApiError> {
    let user = principal.user_id.as_str();
    let account = accounts::get(app, user).await?.ok_or(ApiError::NotFound)?;
    // A name that fails its integrity check is recorded; the alert goes out without it.
    let name = shared::phi::open_or_report(
        app,
        req,
        principal,
        &account.item,
        &["full_name"],
        ("account", user),
    )
    .await?
    .and_then(|mut opened| opened.pop().flatten())
    .filter(|name| !name.is_empty())
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

    let (reachable, broken) = contacts::reachable(app, req, principal, user).await?;
    let mut withheld = broken;
    let mut sms = Vec::new();
    let mut emails = Vec::new();
    for contact in reachable {
        if let Some(phone) = contact.phone {
            if app.config.sms_countries.allows(&phone) {
                sms.push(Notification::sms(
                    format!("sos:{alert_id}:{}:sms", contact.id),
                    &phone,
                    text.clone(),
                ));
            } else {
                withheld += 1;
            }
        }
        if let Some(email) = contact.email {
            emails.push(Notification::email(
                format!("sos:{alert_id}:{}:email", contact.id),
                &email,
                "DoCare emergency alert",
                text.clone(),
            ));
        }
    }
    // Reserved before anything is queued: at most the day's cap leaves the account.
    let mut outgoing = Vec::new();
    for (channel, mut messages) in [(Channel::Sms, sms), (Channel::Email, emails)] {
        let allowed = contacts::reserve_up_to(app, user, channel, messages.len()).await?;
        withheld += messages.len() - allowed;
        messages.truncate(allowed);
        outgoing.extend(messages);
    }
    let mut providers = Vec::new();
    for provider_id in care::care_team(app, user).await? {
        if let Some(provider) = accounts::get(app, &provider_id).await? {
            let email = shared::phi::open_or_report(
                app,
                req,
                principal,
                &provider.item,
                &["email"],
                ("account", &provider.id),
            )
            .await?
            .and_then(|mut opened| opened.pop().flatten())
            .unwrap_or_default();
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
    Ok(Sent { queued, withheld })
}
