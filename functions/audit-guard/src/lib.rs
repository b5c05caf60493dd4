//! The audit trail's guards (see `docs/audit.md`, "Anchors" and "Change watch"):
//!
//! - [`anchor`], scheduled every [`ANCHOR_INTERVAL`]: signs a checkpoint of every chain
//!   head with the anchor key, which only this function may use (`kms:Sign`).
//! - [`watch`], on the audit table's stream: every append is copied to the audit
//!   archive (S3 Object Lock, compliance mode; new keys only), and every record that is
//!   not an append is flagged (an error log line and the `AuditTamper` metric, which an
//!   alarm watches) and archived with both images under `tamper/`: a `MODIFY`, a
//!   `REMOVE` not made by TTL, a TTL `REMOVE` before the retention ended (a past
//!   `expires_at` written over an event), and an insert at a place already archived.
//!
//! [`ANCHOR_INTERVAL`]: shared::audit::ANCHOR_INTERVAL

/// The outside services the `audit-anchor` binary links (`shared::adapters::links`): the
/// audit table and the anchor key only.
pub const ANCHOR_LINKS: shared::adapters::links::Links = shared::adapters::links::NONE;
/// The outside services the `audit-watch` binary links (`shared::adapters::links`): the
/// archive bucket; tampering alerts are queued.
pub const WATCH_LINKS: shared::adapters::links::Links =
    shared::adapters::links::BLOBS | shared::adapters::links::QUEUE;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use shared::audit::archive::{self, ArchivedRecord};
use shared::audit::{Anchorer, RETENTION_DAYS};
use shared::telemetry::{emit_metric, metrics};
use shared::{ApiError, App};

/// One scheduled anchoring run. A shard that no longer extends its last anchor is
/// reported (error log, metric) and fails the run after the others are anchored.
pub async fn anchor(app: App, _event: EventBridgeEvent) -> Result<(), ApiError> {
    let run = Anchorer::of(&app).run(app.clock.now()).await?;
    tracing::info!(anchor = ?run.anchor, "audit heads anchored");
    if run.broken.is_empty() {
        Ok(())
    } else {
        emit_metric(&app, metrics::AUDIT_ANCHOR_BROKEN, run.broken.len());
        Err(ApiError::internal(format!(
            "audit shards {:?} do not extend their last anchor",
            run.broken
        )))
    }
}

/// The principal DynamoDB names for its own TTL deletions.
pub const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// A stream record that is not an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub event_id: String,
    pub pk: String,
    pub sk: String,
    pub what: &'static str,
}

fn image_text(image: &serde_json::Value, name: &str) -> Option<String> {
    image.get(name)?.get("S")?.as_str().map(str::to_string)
}

fn is_ttl_removal(record: &EventRecord) -> bool {
    record
        .user_identity
        .as_ref()
        .is_some_and(|who| who.type_ == "Service" && who.principal_id == TTL_PRINCIPAL)
}

/// Judges one batch of stream records (pure: the handler logs and counts).
pub fn inspect(event: &Event) -> Vec<Finding> {
    let mut findings = Vec::new();
    for record in &event.records {
        let keys = serde_json::to_value(&record.change.keys).unwrap_or_default();
        let old = serde_json::to_value(&record.change.old_image).unwrap_or_default();
        let finding = |what| Finding {
            event_id: record.event_id.clone(),
            pk: image_text(&keys, "pk").unwrap_or_default(),
            sk: image_text(&keys, "sk").unwrap_or_default(),
            what,
        };
        match record.event_name.as_str() {
            "INSERT" => {}
            "MODIFY" => findings.push(finding("modified")),
            "REMOVE" if is_ttl_removal(record) => {
                // TTL may remove an event only once its retention is over, counted from
                // the event's own (hashed) time, not from the `expires_at` it carried.
                let written = image_text(&old, "time")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
                let due = written.map(|t| t + chrono::Duration::days(RETENTION_DAYS));
                let removed = record.change.approximate_creation_date_time;
                if due.is_none_or(|due| removed < due) {
                    findings.push(finding("expired by TTL before the retention ended"));
                }
            }
            "REMOVE" => findings.push(finding("deleted")),
            _ => findings.push(finding("unknown stream event")),
        }
    }
    findings
}

/// The stream handler: every record is copied to the audit archive ([`archive`]), and
/// every finding is an error line (keys only, never contents) and one `AuditTamper`
/// metric count. Findings are logged and counted before anything can fail; a copy that
/// cannot be written fails the batch, which the mapping retries (and after its retries
/// sends to `AuditWatchDeadLetterQueue`), so no record is left out of the archive
/// silently.
pub async fn watch(app: App, event: Event) -> Result<(), ApiError> {
    let mut findings = inspect(&event);
    let archived = archive(&app, &event, &findings).await;
    let (more, failed) = match archived {
        Ok(more) => (more, None),
        Err((more, err)) => (more, Some(err)),
    };
    findings.extend(more);
    for finding in &findings {
        tracing::error!(
            stream_event = %finding.event_id,
            pk = %finding.pk,
            sk = %finding.sk,
            what = finding.what,
            "audit table changed other than by an append"
        );
    }
    if !findings.is_empty() {
        emit_metric(&app, metrics::AUDIT_TAMPER, findings.len());
    }
    match failed {
        None => Ok(()),
        Some(err) => Err(err),
    }
}

/// What an archive run found besides [`inspect`]'s findings, and the error that stopped it.
type ArchiveFailure = (Vec<Finding>, ApiError);

fn image(value: &impl serde::Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(value)
        .ok()
        .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
}

/// Copies each record of the batch to the audit archive (`shared::audit::archive`):
/// an append at its place, new keys only; every flagged record (and an append at a place
/// already archived by another record, or outside the audit key families, which this
/// adds as findings) under `tamper/`. A due TTL removal is not copied: the first copy
/// stays. Returns the added findings.
pub async fn archive(
    app: &App,
    event: &Event,
    findings: &[Finding],
) -> Result<Vec<Finding>, ArchiveFailure> {
    let bucket = app.config.audit_archive_bucket.as_str();
    let mut added = Vec::new();
    for record in &event.records {
        let keys = image(&record.change.keys).unwrap_or_default();
        let pk = image_text(&keys, "pk").unwrap_or_default();
        let sk = image_text(&keys, "sk").unwrap_or_default();
        let flagged = findings.iter().find(|f| f.event_id == record.event_id);
        let changed_at = record.change.approximate_creation_date_time;
        let mut copy = ArchivedRecord {
            event_name: record.event_name.clone(),
            stream_event_id: record.event_id.clone(),
            changed_at: changed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user_identity: image(&record.user_identity),
            keys,
            new_image: image(&record.change.new_image),
            old_image: image(&record.change.old_image),
            finding: flagged.map(|f| f.what.to_string()),
        };
        let finding = |what: &'static str| Finding {
            event_id: record.event_id.clone(),
            pk: pk.clone(),
            sk: sk.clone(),
            what,
        };
        let mut flag = flagged.is_some();
        if record.event_name == "INSERT" && flagged.is_none() {
            match archive::item_key(&pk, &sk) {
                Some(key) => match first_copy(app, bucket, &key, &copy).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let found = finding("inserted again at a place already archived");
                        copy.finding = Some(found.what.into());
                        added.push(found);
                        flag = true;
                    }
                    Err(err) => return Err((added, err)),
                },
                None => {
                    let found = finding("an item outside the audit key families");
                    copy.finding = Some(found.what.into());
                    added.push(found);
                    flag = true;
                }
            }
        }
        if flag {
            let key =
                archive::tamper_key(&pk, &sk, changed_at.timestamp_millis(), &record.event_id);
            let stored = put_new(app, bucket, &key, &copy).await;
            if let Err(err) = stored {
                return Err((added, err));
            }
        }
    }
    Ok(added)
}

/// Puts `copy` at `key` unless something is there; `Ok(true)` when the object there is
/// this record's (written now, or by an earlier try of this batch).
async fn first_copy(
    app: &App,
    bucket: &str,
    key: &str,
    copy: &ArchivedRecord,
) -> Result<bool, ApiError> {
    if put_new(app, bucket, key, copy).await? {
        return Ok(true);
    }
    let Some(object) = app.blobs.get(bucket, key).await? else {
        return Ok(false);
    };
    let body = object.collect().await?;
    let earlier: Option<ArchivedRecord> = serde_json::from_slice(&body).ok();
    Ok(earlier.is_some_and(|e| e.stream_event_id == copy.stream_event_id))
}

/// `Ok(false)` when the key holds an object already (left as it is).
async fn put_new(
    app: &App,
    bucket: &str,
    key: &str,
    copy: &ArchivedRecord,
) -> Result<bool, ApiError> {
    let body = copy.to_json()?;
    Ok(app
        .blobs
        .put_new(bucket, key, body, archive::CONTENT_TYPE)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        name: &str,
        identity: Option<(&str, &str)>,
        time: &str,
        at: &str,
    ) -> serde_json::Value {
        let pk = shared::audit::chain_pk(3);
        let mut record = serde_json::json!({
            "awsRegion": "eu-west-1",
            "eventID": format!("e-{name}"),
            "eventName": name,
            "eventSource": "aws:dynamodb",
            "eventVersion": "1.1",
            "dynamodb": {
                "ApproximateCreationDateTime": chrono::DateTime::parse_from_rfc3339(at).unwrap().timestamp(),
                "Keys": {"pk": {"S": pk}, "sk": {"S": "00000000000000000007"}},
                "OldImage": {"pk": {"S": pk}, "sk": {"S": "00000000000000000007"}, "time": {"S": time}},
                "SequenceNumber": "1",
                "SizeBytes": 10,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        });
        if let Some((kind, principal)) = identity {
            record["userIdentity"] = serde_json::json!({"type": kind, "principalId": principal});
        }
        record
    }

    fn inspect_json(records: Vec<serde_json::Value>) -> Vec<&'static str> {
        let event: Event = serde_json::from_value(serde_json::json!({"Records": records})).unwrap();
        inspect(&event).into_iter().map(|f| f.what).collect()
    }

    #[test]
    fn appends_and_due_ttl_removals_pass_everything_else_is_flagged() {
        let old = "2019-01-01T00:00:00.000Z";
        let young = "2026-11-01T00:00:00.000Z";
        let ttl = Some(("Service", TTL_PRINCIPAL));
        let now = "2026-12-02T00:00:00Z";
        assert!(inspect_json(vec![record("INSERT", None, young, now)]).is_empty());
        assert!(
            inspect_json(vec![record("REMOVE", ttl, old, now)]).is_empty(),
            "past retention"
        );
        assert_eq!(
            inspect_json(vec![
                record("MODIFY", None, young, now),
                record("REMOVE", None, young, now),
                record("REMOVE", ttl, young, now),
                record("REMOVE", Some(("Service", "someone.else")), old, now),
            ]),
            vec![
                "modified",
                "deleted",
                "expired by TTL before the retention ended",
                "deleted",
            ]
        );
    }

    fn inserted(stream_id: &str, seq: &str, hash: &str) -> serde_json::Value {
        let pk = shared::audit::chain_pk(3);
        serde_json::json!({
            "awsRegion": "eu-west-1",
            "eventID": stream_id,
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "eventVersion": "1.1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_796_000_000,
                "Keys": {"pk": {"S": pk}, "sk": {"S": seq}},
                "NewImage": {"pk": {"S": pk}, "sk": {"S": seq}, "hash": {"S": hash}},
                "SequenceNumber": "1",
                "SizeBytes": 10,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        })
    }

    async fn copy_at(app: &App, key: &str) -> Option<ArchivedRecord> {
        let object = app
            .blobs
            .get(&app.config.audit_archive_bucket, key)
            .await
            .unwrap()?;
        Some(serde_json::from_slice(&object.collect().await.unwrap()).unwrap())
    }

    /// Objects under `tamper/` in the local archive bucket of the data folder `dir`.
    fn tamper_copies(dir: &std::path::Path, bucket: &str) -> usize {
        walk_files(&dir.join("blobs").join(bucket).join("data").join("tamper"))
    }

    fn walk_files(dir: &std::path::Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }

    #[tokio::test]
    async fn every_append_is_archived_once_and_every_change_is_kept_flagged() {
        let clock = std::sync::Arc::new(shared::clock::SystemClock);
        let (parts, dir) = shared::testing::local_app(clock);
        let app = parts.app.clone();
        let bucket = app.config.audit_archive_bucket.clone();
        let tampered = || tamper_copies(dir.path(), &bucket);
        let seq = "00000000000000000007";
        let batch = |records: Vec<serde_json::Value>| -> Event {
            serde_json::from_value(serde_json::json!({"Records": records})).unwrap()
        };
        let first = batch(vec![inserted("s-1", seq, "h1")]);
        watch(app.clone(), first.clone()).await.expect("archived");
        let key = archive::event_key(3, 7);
        let copy = copy_at(&app, &key).await.expect("the first copy");
        assert_eq!(
            (copy.event_name.as_str(), copy.new_hash()),
            ("INSERT", Some("h1"))
        );
        assert_eq!(copy.finding, None);
        // The same batch again (a retry): nothing flagged, nothing replaced.
        assert!(archive(&app, &first, &[]).await.unwrap().is_empty());
        assert_eq!(tampered(), 0);

        // Deleted and put again with other contents: the first copy stays, the insert
        // is flagged and kept under tamper/.
        let again = batch(vec![inserted("s-2", seq, "h2")]);
        let found = archive(&app, &again, &[]).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].what, "inserted again at a place already archived");
        assert_eq!(copy_at(&app, &key).await.unwrap().new_hash(), Some("h1"));
        assert_eq!(tampered(), 1);

        // An overwrite (MODIFY): both images kept, flagged.
        let mut modified = record(
            "MODIFY",
            None,
            "2026-11-01T00:00:00.000Z",
            "2026-12-02T00:00:00Z",
        );
        modified["dynamodb"]["NewImage"] = serde_json::json!({"hash": {"S": "h3"}});
        let event = batch(vec![modified]);
        watch(app.clone(), event.clone()).await.expect("archived");
        assert_eq!(tampered(), 2);
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z").unwrap();
        let tamper = archive::tamper_key(
            &shared::audit::chain_pk(3),
            seq,
            at.timestamp_millis(),
            "e-MODIFY",
        );
        let kept = copy_at(&app, &tamper).await.expect("the overwrite's copy");
        assert_eq!(kept.finding.as_deref(), Some("modified"));
        assert_eq!(kept.new_hash(), Some("h3"));
        assert!(kept.old_image.is_some());

        // A due TTL removal changes nothing in the archive.
        let ttl = Some(("Service", TTL_PRINCIPAL));
        let due = batch(vec![record(
            "REMOVE",
            ttl,
            "2019-01-01T00:00:00.000Z",
            "2026-12-02T00:00:00Z",
        )]);
        watch(app.clone(), due).await.expect("nothing to archive");
        assert_eq!(tampered(), 2);

        // An archive that cannot be written fails the batch (retried, then the DLQ).
        let down = shared::testing::with_ports(&app, |p| {
            p.blobs = std::sync::Arc::new(shared::testing::OUTAGE)
        });
        let other = batch(vec![inserted("s-4", "00000000000000000008", "h4")]);
        assert!(watch(down, other).await.is_err());
    }
}
