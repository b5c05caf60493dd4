//! `POST /api/v1/emergency/sos`: records the alert and answers 202 at once; the
//! fan-out is queued (sealed e-mail/SMS to each contact and e-mail to the care team)
//! plus a WebSocket `notification` push to the care team's open connections.
//!
//! Collapsing: the first SOS opens a window (`USER#<id>` / `SOS#ACTIVE`, TTL
//! [`COLLAPSE_SECS`]) in the same transaction that records the alert
//! (`USER#<id>` / `SOS#<alert id>`). A repeat inside the window is recorded on the open
//! alert (count, time, latest location) and not sent again.

use crate::contacts;
use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome};
use shared::auth::{accounts, authenticate, care, input, record};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::notifications::{enqueue_all, Notification};
use shared::ports::db::{Condition, Item, Key, Update, Value, WriteOp};
use shared::{phi, ApiError, App};

/// Repeats within this many seconds join the open alert.
pub const COLLAPSE_SECS: i64 = 5 * 60;
const MAX_MESSAGE_CHARS: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub accuracy_m: Option<f64>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sos")]
pub struct SosBody {
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    message: Option<String>,
}

fn active_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "SOS#ACTIVE")
}

fn alert_key(user_id: &str, alert_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), format!("SOS#{alert_id}"))
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
    let now = app.clock.now();
    let now_text = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
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

    let alert_id = ulid::Ulid::new().to_string();
    let key = alert_key(&user, &alert_id);
    let mut alert = Item::new();
    alert.insert("pk".into(), Value::S(key.pk.clone()));
    alert.insert("sk".into(), Value::S(key.sk.clone()));
    alert.insert("id".into(), Value::S(alert_id.clone()));
    alert.insert("created_at".into(), Value::S(now_text.clone()));
    alert.insert("last_at".into(), Value::S(now_text.clone()));
    alert.insert("repeats".into(), Value::N(0));
    if let Some(l) = &location {
        alert.insert(
            "location".into(),
            phi::seal(&app, &key, "location", l).await?,
        );
    }
    if let Some(m) = message {
        alert.insert("message".into(), phi::seal(&app, &key, "message", m).await?);
    }
    let active = shared::ports::db::item([
        ("pk", Value::S(active_key(&user).pk)),
        ("sk", Value::S(active_key(&user).sk)),
        ("alert_id", Value::S(alert_id.clone())),
        ("expires_at", Value::N(now.timestamp() + COLLAPSE_SECS)),
    ]);
    let table = app.config.table.clone();
    let opened = app
        .db
        .transact_write(vec![
            WriteOp::Put {
                table: table.clone(),
                item: active,
                condition: Some(Condition::NotExists),
            },
            WriteOp::Put {
                table: table.clone(),
                item: alert,
                condition: Some(Condition::NotExists),
            },
        ])
        .await;
    match opened {
        Ok(()) => {}
        Err(err) if err.is_condition_failed() => {
            let repeat = Repeat {
                coordinates: body.location.as_ref(),
                sealed_location: location.as_deref(),
                message,
            };
            return join_open_alert(&app, &req, &principal, repeat).await;
        }
        Err(err) => return Err(err.into()),
    }
    record(
        &app,
        &req,
        &principal,
        Action::Sos,
        ("sos", &alert_id),
        Outcome::Success,
    )
    .await?;

    // Fan-out. The alert is recorded whatever happens next; a failure to queue is a 503
    // the client retries, and the retry joins this alert and re-queues (ids dedupe).
    let notified = fan_out(
        &app,
        &user,
        &alert_id,
        &now_text,
        body.location.as_ref(),
        message,
    )
    .await?;
    mark_sent(&app, &key).await?;
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

/// Records that the alert's messages are queued, so a repeat does not queue them again.
async fn mark_sent(app: &App, key: &Key) -> Result<(), ApiError> {
    app.db
        .update(
            &app.config.table,
            key,
            Update::new().set("sent", true),
            Some(Condition::Exists),
        )
        .await?;
    Ok(())
}

async fn join_open_alert(
    app: &App,
    req: &ApiRequest,
    principal: &shared::auth::Principal,
    repeat: Repeat<'_>,
) -> HandlerResult {
    let active = app
        .db
        .get(&app.config.table, &active_key(&principal.user_id))
        .await?
        .ok_or_else(|| ApiError::conflict("the alert window changed; retry"))?;
    let alert_id = active
        .get("alert_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let key = alert_key(&principal.user_id, &alert_id);
    let mut update = Update::new().add("repeats", 1).set(
        "last_at",
        app.clock
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    if let Some(l) = repeat.sealed_location {
        update = update.set("location", phi::seal(app, &key, "location", l).await?);
    }
    let alert = app
        .db
        .update(&app.config.table, &key, update, Some(Condition::Exists))
        .await?;
    record(
        app,
        req,
        principal,
        Action::Sos,
        ("sos", &alert_id),
        Outcome::Success,
    )
    .await?;
    // The first attempt recorded the alert but could not queue its messages (it
    // answered 503): this repeat sends them. Ids make the notify worker send each once.
    let mut notified = 0;
    if alert.get("sent").and_then(Value::as_bool) != Some(true) {
        let at = alert
            .get("created_at")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        notified = fan_out(
            app,
            &principal.user_id,
            &alert_id,
            &at,
            repeat.coordinates,
            repeat.message,
        )
        .await?;
        mark_sent(app, &key).await?;
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
    let page = app
        .db
        .query(
            &app.config.table,
            contacts::of_user(user).limit(contacts::MAX_CONTACTS as u32),
        )
        .await?;
    for item in &page.items {
        let contact_id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        if let Some(phone) = phi::open(app, item, "phone").await? {
            outgoing.push(Notification::sms(
                format!("sos:{alert_id}:{contact_id}:sms"),
                &phone,
                text.clone(),
            ));
        }
        if let Some(email) = phi::open(app, item, "email").await? {
            outgoing.push(Notification::email(
                format!("sos:{alert_id}:{contact_id}:email"),
                &email,
                "DoCare emergency alert",
                text.clone(),
            ));
        }
    }
    let team = app
        .db
        .query(&app.config.table, care::of_patient(user).limit(100))
        .await?;
    let mut providers = Vec::new();
    for item in &team.items {
        let rel = care::CareRelationship::parse(item);
        if !rel.active {
            continue;
        }
        if let Some(provider) = accounts::get(app, &rel.provider_id).await? {
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
