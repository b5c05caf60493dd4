//! The audit trail's guards (see `docs/audit.md`, "Anchors" and "Change watch"):
//!
//! - [`anchor`], scheduled every [`ANCHOR_INTERVAL`]: signs a checkpoint of every chain
//!   head with the anchor key, which only this function may use (`kms:Sign`).
//! - [`watch`], on the audit table's stream: every record that is not an append is
//!   flagged (an error log line and the `AuditTamper` metric, which an alarm watches):
//!   a `MODIFY`, a `REMOVE` not made by TTL, and a TTL `REMOVE` before the retention
//!   ended (a past `expires_at` written over an event).
//!
//! [`ANCHOR_INTERVAL`]: shared::audit::ANCHOR_INTERVAL

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::eventbridge::EventBridgeEvent;
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

/// The stream handler: every finding is an error line (keys only, never contents) and
/// one `AuditTamper` metric count. It never fails the batch: detection must not stall
/// the stream.
pub async fn watch(app: App, event: Event) -> Result<(), ApiError> {
    let findings = inspect(&event);
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
    Ok(())
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
}
