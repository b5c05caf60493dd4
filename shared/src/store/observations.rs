//! Health observations (`docs/devices.md`): `OBS#<patient>#<LOINC>` /
//! `<effective start>#<digest>`, one partition per patient and code sorted by time, so
//! a range is one `Query` per page (never a scan). The digest is a SHA-256 of the
//! source and the source's sample id: a sample sent again is the same key, written with
//! a plain put (harmless), so a repeated batch stores nothing twice and a duplicate
//! never fails a batch. The value is sealed (PHI), bound to its item; the code, times,
//! source and sample id are in the clear.
//!
//! Thresholds and episodes: `OBSRULE#<patient>` / `LIMIT#<LOINC>#<provider>` (a
//! provider's threshold) and `EPISODE#<LOINC>#<provider>` (an open episode). An
//! episode is opened by a conditional put (`attribute_not_exists`): of any number of
//! batches crossing at once exactly one opens it, and only that one notifies.

use crate::domain::observation::{Code, Range, Sample, Threshold};
use crate::domain::Timestamp;
use crate::ports::db::{Condition, DbError, Item, Key, Query, SortKey, Update, Value};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};
use futures::stream::{self, TryStreamExt};
use sha2::{Digest, Sha256};

/// What audit events and refusals name (with the patient's id).
pub const RESOURCE: &str = "observations";
/// What a threshold change is recorded on (with the patient's id).
pub const THRESHOLD_RESOURCE: &str = "observation_threshold";
/// The sealed attribute.
pub const VALUE: &str = "value";
/// Puts in flight at once while storing a batch.
const PUTS_IN_FLIGHT: usize = 16;
/// Items read per query page (DynamoDB's page limit; ~250 bytes each, well under 1 MB).
pub const PAGE_ITEMS: u32 = 1000;

/// The deterministic part of a sample's key: its source and id.
pub fn digest(source: &str, sample_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(source.as_bytes());
    hash.update([0]);
    hash.update(sample_id.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

fn key_of(patient_id: &str, sample: &Sample) -> Key {
    keys::observation(
        patient_id,
        sample.code.loinc(),
        &sample.start.to_string(),
        &digest(&sample.source, &sample.id),
    )
}

/// Stores a batch with plain puts (a sample already stored is written again, the same
/// item). Returns how many samples were written.
pub async fn store(
    app: &AppContext,
    patient_id: &str,
    samples: &[Sample],
) -> Result<usize, ApiError> {
    let now = app.now().to_string();
    stream::iter(samples.iter().map(Ok::<_, ApiError>))
        .try_for_each_concurrent(PUTS_IN_FLIGHT, |sample| {
            let now = now.clone();
            async move {
                let key = key_of(patient_id, sample);
                let sealed = phi::seal(app, &key, VALUE, &sample.value.to_string()).await?;
                let mut item = Item::new();
                item.insert("pk".into(), Value::S(key.pk.clone()));
                item.insert("sk".into(), Value::S(key.sk.clone()));
                item.insert("code".into(), Value::S(sample.code.loinc().into()));
                item.insert("start".into(), Value::S(sample.start.to_string()));
                if let Some(end) = sample.end {
                    item.insert("end".into(), Value::S(end.to_string()));
                }
                item.insert("source".into(), Value::S(sample.source.clone()));
                item.insert("sample_id".into(), Value::S(sample.id.clone()));
                item.insert("received_at".into(), Value::S(now));
                item.insert(VALUE.into(), sealed);
                app.db.put(&app.config.table, item, None).await?;
                Ok(())
            }
        })
        .await?;
    Ok(samples.len())
}

/// One stored observation, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub code: Code,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub source: String,
    pub sample_id: String,
    pub value: f64,
}

fn point(item: &Item, value: Option<String>) -> Result<Point, ApiError> {
    let bad = || ApiError::internal("an observation item is malformed");
    let text = |name: &str| item.get(name).and_then(Value::as_str);
    Ok(Point {
        code: text("code").and_then(Code::parse).ok_or_else(bad)?,
        start: text("start").and_then(Timestamp::parse).ok_or_else(bad)?,
        end: text("end").and_then(Timestamp::parse),
        source: text("source").ok_or_else(bad)?.to_string(),
        sample_id: text("sample_id").ok_or_else(bad)?.to_string(),
        value: value.and_then(|v| v.parse().ok()).ok_or_else(bad)?,
    })
}

fn range_query(patient_id: &str, code: Code, range: &Range) -> Query {
    // `<from>` sorts before every key at `from` (`<from>#…`), `<to>` before every key
    // at `to`: `Between` is the half-open range [from, to).
    Query::partition(keys::observations(patient_id, code.loinc())).sort_key(SortKey::Between(
        range.from.to_string(),
        range.to.to_string(),
    ))
}

/// Opens one page's items; an integrity failure is the caller's to record.
async fn open_all(app: &AppContext, items: &[Item]) -> Result<Vec<Point>, OpenError> {
    let mut points = Vec::with_capacity(items.len());
    for item in items {
        let value = phi::open(app, item, VALUE)
            .await
            .map_err(OpenError::Crypto)?;
        points.push(point(item, value).map_err(OpenError::Api)?);
    }
    Ok(points)
}

/// Why a page could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// A value that failed its integrity check (record `INTEGRITY_FAILURE`), or KMS.
    Crypto(crate::crypto::CryptoError),
    Api(ApiError),
}

impl From<DbError> for OpenError {
    fn from(err: DbError) -> Self {
        OpenError::Api(err.into())
    }
}

/// One page of raw points in `[from, to)`, oldest first, from `start` (a cursor's key).
pub async fn page(
    app: &AppContext,
    patient_id: &str,
    code: Code,
    range: &Range,
    limit: u32,
    start: Option<Item>,
) -> Result<(Vec<Point>, Option<Item>), OpenError> {
    let query = range_query(patient_id, code, range)
        .limit(limit)
        .start(start);
    let page = app.db.query(&app.config.table, query).await?;
    Ok((open_all(app, &page.items).await?, page.next))
}

/// Every point in `[from, to)`, oldest first, `(epoch seconds, value)`: one `Query` per
/// page of [`PAGE_ITEMS`] (a week of one-minute samples is 11 round trips).
pub async fn series(
    app: &AppContext,
    patient_id: &str,
    code: Code,
    range: &Range,
) -> Result<Vec<(i64, f64)>, OpenError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let query = range_query(patient_id, code, range)
            .limit(PAGE_ITEMS)
            .start(start.take());
        let page = app.db.query(&app.config.table, query).await?;
        for p in open_all(app, &page.items).await? {
            out.push((p.start.epoch_secs(), p.value));
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(out),
        }
    }
}

// --- thresholds and episodes ---------------------------------------------------------

/// A stored threshold and the provider who set it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredThreshold {
    pub provider_id: String,
    pub threshold: Threshold,
}

fn number(item: &Item, name: &str) -> Option<f64> {
    item.get(name)
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

/// Sets (or replaces) a provider's threshold on one code of a patient.
pub async fn set_threshold(
    app: &AppContext,
    patient_id: &str,
    provider_id: &str,
    threshold: &Threshold,
    event: crate::audit::AuditEvent,
) -> Result<(), ApiError> {
    let key = keys::observation_limit(patient_id, threshold.code.loinc(), provider_id);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("provider_id".into(), Value::S(provider_id.into()));
    item.insert("code".into(), Value::S(threshold.code.loinc().into()));
    if let Some(above) = threshold.above {
        item.insert("above".into(), Value::S(above.to_string()));
    }
    if let Some(below) = threshold.below {
        item.insert("below".into(), Value::S(below.to_string()));
    }
    item.insert(
        "clear_after_minutes".into(),
        Value::N(threshold.clear_after_minutes),
    );
    item.insert("updated_at".into(), Value::S(app.now().to_string()));
    let op = crate::ports::db::WriteOp::Put {
        table: app.config.table.clone(),
        item,
        condition: None,
    };
    app.audit
        .commit(event, vec![op])
        .await
        .map_err(ApiError::from)
}

/// The thresholds set on one code of a patient (one query).
pub async fn thresholds(
    app: &AppContext,
    patient_id: &str,
    code: Code,
) -> Result<Vec<StoredThreshold>, ApiError> {
    let query = Query::partition(keys::observation_rules(patient_id))
        .sort_key(SortKey::BeginsWith(format!(
            "{}{}#",
            keys::LIMIT_SK,
            code.loinc()
        )))
        .limit(100);
    let page = app.db.query(&app.config.table, query).await?;
    let mut out = Vec::with_capacity(page.items.len());
    for item in page.items {
        let Some(provider_id) = item.get("provider_id").and_then(Value::as_str) else {
            continue;
        };
        let minutes = item
            .get("clear_after_minutes")
            .and_then(Value::as_i64)
            .unwrap_or(60);
        if let Ok(threshold) = Threshold::new(
            code,
            number(&item, "above"),
            number(&item, "below"),
            minutes,
        ) {
            out.push(StoredThreshold {
                provider_id: provider_id.to_string(),
                threshold,
            });
        }
    }
    Ok(out)
}

/// An episode that was just opened (its opener notifies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub episode_id: String,
}

/// Opens the provider's episode on this code unless one is open: `Some` for exactly
/// one of any number of concurrent callers (a conditional put). When one is open
/// already, its last out-of-range time moves forward.
pub async fn open_episode(
    app: &AppContext,
    patient_id: &str,
    provider_id: &str,
    code: Code,
    last_out: i64,
) -> Result<Option<Opened>, ApiError> {
    let key = keys::observation_episode(patient_id, code.loinc(), provider_id);
    let episode_id = app.new_id();
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    item.insert("episode_id".into(), Value::S(episode_id.clone()));
    item.insert("provider_id".into(), Value::S(provider_id.into()));
    item.insert("opened_at".into(), Value::S(app.now().to_string()));
    item.insert("last_out".into(), Value::N(last_out));
    match app
        .db
        .put(
            &app.config.table,
            item,
            Some(Condition::AttributeNotExists("pk".into())),
        )
        .await
    {
        Ok(()) => Ok(Some(Opened { episode_id })),
        Err(err) if err.is_condition_failed() => {
            // Open already: only move its last out-of-range time forward.
            let moved = app
                .db
                .update(
                    &app.config.table,
                    &key,
                    Update::new().set("last_out", last_out),
                    Some(Condition::And(vec![
                        Condition::Exists,
                        Condition::LessThan("last_out".into(), last_out),
                    ])),
                )
                .await;
            match moved {
                Ok(_) => Ok(None),
                Err(err) if err.is_condition_failed() => Ok(None),
                Err(err) => Err(err.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// Removes an episode that was just opened (its notification could not be queued, so
/// the next crossing opens it again and notifies).
pub async fn forget_episode(
    app: &AppContext,
    patient_id: &str,
    provider_id: &str,
    code: Code,
    episode_id: &str,
) -> Result<(), ApiError> {
    let key = keys::observation_episode(patient_id, code.loinc(), provider_id);
    match app
        .db
        .delete(
            &app.config.table,
            &key,
            Some(Condition::Equals(
                "episode_id".into(),
                Value::S(episode_id.into()),
            )),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if err.is_condition_failed() => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The open episode's last out-of-range time, if one is open.
pub async fn episode_last_out(
    app: &AppContext,
    patient_id: &str,
    provider_id: &str,
    code: Code,
) -> Result<Option<i64>, ApiError> {
    let key = keys::observation_episode(patient_id, code.loinc(), provider_id);
    Ok(app
        .db
        .get(&app.config.table, &key)
        .await?
        .and_then(|item| item.get("last_out").and_then(Value::as_i64)))
}

/// Closes the episode if its last out-of-range time is still `last_out` (a batch
/// crossing meanwhile keeps it open).
pub async fn close_episode(
    app: &AppContext,
    patient_id: &str,
    provider_id: &str,
    code: Code,
    last_out: i64,
) -> Result<bool, ApiError> {
    let key = keys::observation_episode(patient_id, code.loinc(), provider_id);
    match app
        .db
        .delete(
            &app.config.table,
            &key,
            Some(Condition::Equals("last_out".into(), Value::N(last_out))),
        )
        .await
    {
        Ok(old) => Ok(old.is_some()),
        Err(err) if err.is_condition_failed() => Ok(false),
        Err(err) => Err(err.into()),
    }
}
