//! The Google Health API's webhook (`docs/devices.md`): `POST
//! /api/v1/webhooks/google-health`, no bearer token. Every request's `Authorization`
//! header is compared first, in constant time, with the subscriber's secret
//! (`docare/<stage>/google/webhook_secret` from the secret store, cached with a bounded
//! age): missing or different, a 401 and nothing else happens. Google's verification
//! POST (`{"type": "verification"}`) is answered 201. A delivery is a JSON array of 1 to
//! 99 notifications, each naming a Google user (`healthUserId`), a data type and the
//! changed time intervals: each known user's upserts of a type DoCare syncs become one
//! message on the device sync queue (the patient, the type and the span of the
//! intervals), and the delivery is answered at once; the sync worker
//! (`crate::sync`) pulls the data points. An unknown user or an unsynced type is
//! answered the same 200 with nothing queued (the answer names no one).

use serde::{Deserialize, Serialize};
use shared::domain::observation::{FUTURE_SKEW_SECS, MAX_RANGE_DAYS};
use shared::domain::Timestamp;
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::health_api::{webhook_secret_name, DataType, GOOGLE_HEALTH};
use shared::ports::queue::{OutgoingMessage, MAX_BATCH as QUEUE_BATCH};
use shared::store::devices as store;
use shared::{ApiError, App, AppContext};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// The webhook's path.
pub const PATH: &str = "/api/v1/webhooks/google-health";
/// Largest body accepted (99 notifications with a few intervals each are well under).
pub const MAX_BODY: usize = 256 * 1024;
/// Most notifications in one delivery (Google sends 1 to 99).
pub const MAX_NOTIFICATIONS: usize = 99;

/// A sync the worker is asked to do: one patient's data points of one type in
/// `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncMessage {
    pub patient_id: String,
    pub provider: String,
    pub data_type: String,
    pub from: String,
    pub to: String,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "GoogleHealthReceipt")]
pub struct Received {
    /// Always true: the answer does not say whether anything was queued.
    pub received: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "GoogleHealthVerification")]
pub struct Verified {
    pub verified: bool,
}

#[derive(Deserialize)]
struct Notification {
    data: NotificationData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationData {
    health_user_id: String,
    #[serde(default)]
    operation: String,
    data_type: String,
    #[serde(default)]
    intervals: Vec<Interval>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interval {
    physical_time_interval: Option<PhysicalInterval>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalInterval {
    start_time: String,
    end_time: String,
}

/// Whether the request carries the subscriber's secret (constant time over the value).
async fn authorized(app: &AppContext, req: &ApiRequest) -> Result<bool, ApiError> {
    let Some(given) = req.header("authorization") else {
        return Ok(false);
    };
    let secret = app
        .secrets
        .get(&webhook_secret_name(app.config.stage.as_str()))
        .await?;
    Ok(bool::from(secret.as_bytes().ct_eq(given.as_bytes())))
}

/// The span to sync of a notification's intervals, clamped to what a query may read
/// (at most [`MAX_RANGE_DAYS`] back) and to now; `None` when nothing is left. The end
/// is one second past the latest end, so a sample at the end is included.
fn span(intervals: &[Interval], now: Timestamp) -> Option<(Timestamp, Timestamp)> {
    let mut from: Option<Timestamp> = None;
    let mut to: Option<Timestamp> = None;
    for interval in intervals
        .iter()
        .filter_map(|i| i.physical_time_interval.as_ref())
    {
        let (Some(start), Some(end)) = (
            Timestamp::parse(&interval.start_time),
            Timestamp::parse(&interval.end_time),
        ) else {
            continue;
        };
        from = Some(from.map_or(start, |f| f.min(start)));
        to = Some(to.map_or(end, |t| t.max(end)));
    }
    let (from, to) = (from?, to?);
    let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).map(Timestamp::new);
    let earliest = at(now.epoch_secs() - MAX_RANGE_DAYS * 86_400)?;
    let latest = at(now.epoch_secs() + FUTURE_SKEW_SECS)?;
    let from = from.max(earliest);
    let to = at(to.epoch_secs() + 1)?.min(latest);
    (from < to).then_some((from, to))
}

/// `POST /api/v1/webhooks/google-health`.
pub async fn receive(app: App, req: ApiRequest) -> HandlerResult {
    if req.body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    // The secret first, whatever the body says (the verification POST included).
    if !authorized(&app, &req).await? {
        tracing::warn!(request_id = %req.request_id, "Google Health delivery refused: wrong or missing Authorization");
        return Err(ApiError::Unauthenticated);
    }
    let body: serde_json::Value = serde_json::from_slice(&req.body)
        .map_err(|_| ApiError::validation("the body is not JSON"))?;
    if body.get("type").and_then(serde_json::Value::as_str) == Some("verification") {
        return ApiResponse::created(&Verified { verified: true });
    }
    let notifications: Vec<Notification> = serde_json::from_value(body)
        .map_err(|_| ApiError::validation("not a Google Health notification list"))?;
    if notifications.is_empty() || notifications.len() > MAX_NOTIFICATIONS {
        return Err(ApiError::validation(format!(
            "1 to {MAX_NOTIFICATIONS} notifications per delivery"
        )));
    }
    let Some(queue) = app.config.queues.device_sync.clone() else {
        tracing::error!(
            "DOCARE_DEVICE_SYNC_QUEUE_URL is not set: Google Health deliveries cannot be queued"
        );
        return Err(ApiError::unavailable(
            "queue",
            ApiError::internal("the device sync queue is not configured"),
        ));
    };
    let now = app.now();
    // One message per patient and type: the union of the notified spans.
    let mut syncs: BTreeMap<(String, DataType), (Timestamp, Timestamp)> = BTreeMap::new();
    for notification in notifications {
        let data = notification.data;
        if data.operation != "UPSERT" {
            // Deletions at Google do not delete what DoCare stored.
            continue;
        }
        let Some(data_type) = DataType::parse(&data.data_type) else {
            continue;
        };
        let Some((from, to)) = span(&data.intervals, now) else {
            continue;
        };
        let Some(patient_id) = store::patient_of(&app, GOOGLE_HEALTH, &data.health_user_id).await?
        else {
            continue;
        };
        syncs
            .entry((patient_id, data_type))
            .and_modify(|(f, t)| {
                *f = (*f).min(from);
                *t = (*t).max(to);
            })
            .or_insert((from, to));
    }
    let messages = syncs
        .into_iter()
        .map(|((patient_id, data_type), (from, to))| {
            let message = SyncMessage {
                patient_id,
                provider: GOOGLE_HEALTH.into(),
                data_type: data_type.as_str().into(),
                from: from.to_string(),
                to: to.to_string(),
            };
            serde_json::to_string(&message)
                .map(OutgoingMessage::new)
                .map_err(ApiError::internal)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for chunk in messages.chunks(QUEUE_BATCH) {
        app.queue.send_batch(&queue, chunk.to_vec()).await?;
    }
    ApiResponse::ok(&Received { received: true })
}
