//! The device sync worker (`docs/devices.md`): consumes the device sync queue the
//! Google Health webhook (`crate::ingest`) fills. For each message (a patient, a data
//! type, a span) it takes the connection's access token (`store::devices::access_token`:
//! refreshed under the connection's lease; `needs_reauth` on `invalid_grant`), lists
//! the data points of the span page by page, turns each into a sample validated as a
//! pushed one (an implausible value is left out), records `CREATE` on `observations`,
//! stores them with the batch push's store function (deterministic keys, plain puts: a
//! repeated delivery stores nothing twice), applies the provider thresholds as a push
//! does, and records the connection's `last_sync_at`. A message that can never be
//! processed fails permanently (to the dead-letter queue, visible); a provider or
//! store outage fails it transiently (SQS retries it); failures are reported per
//! message.

use crate::ingest::SyncMessage;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use shared::audit::{Action, Actor, AuditEvent, Outcome};
use shared::domain::observation::{EffectiveBody, Sample, SampleBody};
use shared::domain::Timestamp;
use shared::ports::health_api::{DataPoint, DataType, GOOGLE_HEALTH};
use shared::store::devices::{self as links, TokenError};
use shared::store::observations::{self as observations, RESOURCE};
use shared::worker::{process_batch, WorkError};
use shared::{guard, ApiError, App, AppContext};

/// The most pages one message lists (31 days of one-minute heart rates are 45 pages of
/// 1,000); a span with more fails permanently, visible in the dead-letter queue.
pub const MAX_PAGES: usize = 100;

/// The source recorded on the observations.
pub const SOURCE: &str = GOOGLE_HEALTH;

/// `DeviceSyncFunction`'s handler: each record on its own, failures reported per record.
pub async fn handle(app: App, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record| {
        let app = app.clone();
        async move { process(&app, record).await }
    })
    .await
}

fn from_api(err: ApiError) -> WorkError {
    if err.is_server_error() {
        WorkError::Transient(Box::new(err))
    } else {
        WorkError::Permanent(err.code().to_string())
    }
}

/// The sample a data point becomes (its id: the type and the instant, so the same point
/// listed again is the same observation), or `None` when it is not plausible.
pub fn sample_of(point: &DataPoint, now: Timestamp) -> Option<Sample> {
    let code = point.data_type.code();
    let body = SampleBody {
        id: format!("{}:{}", point.data_type.as_str(), point.at),
        code: code.loinc().into(),
        value: point.data_type.to_ucum(point.value),
        unit: code.unit().into(),
        effective: EffectiveBody::Instant(point.at.to_string()),
        source: SOURCE.into(),
    };
    Sample::parse(&body, now, 0).ok()
}

async fn process(app: &AppContext, record: SqsMessage) -> Result<(), WorkError> {
    let body = record.body.unwrap_or_default();
    let message: SyncMessage = serde_json::from_str(&body)
        .map_err(|_| WorkError::Permanent("not a device sync message".into()))?;
    let (Some(data_type), Some(from), Some(to)) = (
        DataType::parse(&message.data_type),
        Timestamp::parse(&message.from),
        Timestamp::parse(&message.to),
    ) else {
        return Err(WorkError::Permanent(
            "the message's type or times are malformed".into(),
        ));
    };
    if !guard::is_id(&message.patient_id) || message.provider != GOOGLE_HEALTH || from >= to {
        return Err(WorkError::Permanent(
            "the message's patient, provider or span is malformed".into(),
        ));
    }
    let patient_id = message.patient_id.as_str();
    let token = match links::access_token(app, &*app.health_api, patient_id, GOOGLE_HEALTH).await {
        Ok(token) => token,
        Err(TokenError::NotConnected) => {
            tracing::info!("the connection is gone; nothing to sync");
            return Ok(());
        }
        Err(TokenError::NeedsReauth) => {
            tracing::info!("the connection needs the patient to connect again; not synced");
            return Ok(());
        }
        Err(TokenError::Api(err)) => return Err(from_api(err)),
    };
    let now = app.now();
    let mut samples = Vec::new();
    let mut left_out = 0usize;
    let mut page_token: Option<String> = None;
    for page_number in 1..=MAX_PAGES {
        let page = app
            .health_api
            .list_data_points(&token, data_type, from, to, page_token.as_deref())
            .await
            .map_err(|e| WorkError::Transient(Box::new(e)))?;
        for point in &page.points {
            match sample_of(point, now) {
                Some(sample) => samples.push(sample),
                None => left_out += 1,
            }
        }
        match page.next_page_token {
            None => break,
            Some(_) if page_number == MAX_PAGES => {
                return Err(WorkError::Permanent(format!(
                    "more than {MAX_PAGES} pages of data points in one span"
                )))
            }
            next => page_token = next,
        }
    }
    if left_out > 0 {
        tracing::warn!(
            left_out,
            "data points with implausible values were not stored"
        );
    }
    if !samples.is_empty() {
        // Recorded first: a sync whose event cannot be recorded stores nothing.
        let actor = Actor {
            user_id: None,
            role: Some(GOOGLE_HEALTH.into()),
            session_id: None,
        };
        let event = AuditEvent::new(Action::Create, Outcome::Success)
            .actor(actor)
            .resource(RESOURCE, patient_id);
        app.audit
            .record(event)
            .await
            .map_err(|e| from_api(e.into()))?;
        Box::pin(observations::store(app, patient_id, &samples))
            .await
            .map_err(from_api)?;
        Box::pin(crate::apply_thresholds(app, patient_id, &samples))
            .await
            .map_err(from_api)?;
    }
    links::mark_synced(app, patient_id, GOOGLE_HEALTH, now)
        .await
        .map_err(from_api)?;
    tracing::info!(stored = samples.len(), "synced");
    Ok(())
}
