//! The audit archive (`docs/audit.md`, "Archive"). `audit-watch` copies every record of
//! the audit table's stream into an S3 bucket with Object Lock in compliance mode that
//! only it may write and no one may delete:
//!
//! - an append (`INSERT`) at [`item_key`]: `archive/chain-<shard>/<seq>.json` for an
//!   event, `archive/anchor/<seq>.json` for an anchor. The put creates new keys only
//!   (`If-None-Match: *`), so the object there is the item as first written; an item
//!   inserted again at an archived place (deleted, then put again) is not copied over
//!   it but flagged;
//! - every other record (`MODIFY`, `REMOVE`, an insert at an archived place, an item
//!   outside the audit key families) also at [`tamper_key`]:
//!   `tamper/<place>/<time ms>-<stream event id>.json`, with both images and the finding.
//!
//! The verifier (`docare-audit-verify --archive-bucket`) compares each event of a chain
//! with its archived first copy ([`event_copy`]): an event rewritten in the table, even
//! with its chain and head rewritten consistently, differs from it.

use super::anchor::ANCHOR_PK;
use super::chain::{attr, SEQ_DIGITS};
use crate::ports::blobs::{BlobError, BlobStore};
use crate::ports::db::{Item, Value};
use serde::{Deserialize, Serialize};

pub const ARCHIVE_PREFIX: &str = "archive/";
pub const TAMPER_PREFIX: &str = "tamper/";
pub const CONTENT_TYPE: &str = "application/json";

/// The archive key of an event's first copy.
pub fn event_key(shard: u32, seq: u64) -> String {
    format!(
        "{ARCHIVE_PREFIX}chain-{shard:02}/{seq:0width$}.json",
        width = SEQ_DIGITS
    )
}

/// The archive folder of an audit item's partition: `chain-07`, `anchor`; `None` for a
/// partition the writers never use.
fn place(pk: &str) -> Option<String> {
    if pk == ANCHOR_PK {
        return Some("anchor".into());
    }
    let shard = pk.strip_prefix("CHAIN#")?;
    (shard.len() == 2 && shard.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("chain-{shard}"))
}

fn is_seq(sk: &str) -> bool {
    sk.len() == SEQ_DIGITS && sk.bytes().all(|b| b.is_ascii_digit())
}

/// Where the first copy of the audit item at (`pk`, `sk`) is kept; `None` for a key no
/// writer makes (such an item is kept under [`tamper_key`] only).
pub fn item_key(pk: &str, sk: &str) -> Option<String> {
    let place = place(pk)?;
    is_seq(sk).then(|| format!("{ARCHIVE_PREFIX}{place}/{sk}.json"))
}

/// Only the characters an object key may carry (`shared::ports::blobs`), at most 64.
fn safe(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "-".into()
    } else {
        cleaned
    }
}

/// Where a record that is not a plain append is kept: one object per stream record.
pub fn tamper_key(pk: &str, sk: &str, at_ms: i64, stream_event_id: &str) -> String {
    let place = match (place(pk), is_seq(sk)) {
        (Some(place), true) => format!("{place}/{sk}"),
        _ => format!("other/{}-{}", safe(pk), safe(sk)),
    };
    format!(
        "{TAMPER_PREFIX}{place}/{at_ms:013}-{}.json",
        safe(stream_event_id)
    )
}

/// One stream record as archived. Images are DynamoDB JSON (`{"hash": {"S": …}}`), as
/// the stream delivers them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedRecord {
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub event_name: String,
    pub stream_event_id: String,
    /// When DynamoDB made the change (RFC 3339, the stream's approximate time).
    pub changed_at: String,
    /// Who made it, when the stream says (`Service` / `dynamodb.amazonaws.com` for TTL).
    pub user_identity: Option<serde_json::Value>,
    pub keys: serde_json::Value,
    pub new_image: Option<serde_json::Value>,
    pub old_image: Option<serde_json::Value>,
    /// Why this record is flagged (`None` for a plain append).
    pub finding: Option<String>,
}

impl ArchivedRecord {
    /// A text attribute of the new image.
    pub fn new_text(&self, name: &str) -> Option<&str> {
        self.new_image.as_ref()?.get(name)?.get("S")?.as_str()
    }

    /// The hash the item had when it was written.
    pub fn new_hash(&self) -> Option<&str> {
        self.new_text(attr::HASH)
    }

    pub fn to_json(&self) -> Result<bytes::Bytes, BlobError> {
        serde_json::to_vec(self)
            .map(bytes::Bytes::from)
            .map_err(|e| BlobError::Invalid(e.to_string()))
    }
}

/// An item in DynamoDB JSON (`{"hash": {"S": …}, "expires_at": {"N": "…"}}`), the form
/// a stream record's images take.
pub fn stream_image(item: &Item) -> serde_json::Value {
    fn value(v: &Value) -> serde_json::Value {
        match v {
            Value::S(s) => serde_json::json!({ "S": s }),
            Value::N(n) => serde_json::json!({ "N": n.to_string() }),
            Value::B(b) => serde_json::json!({ "B": crate::encoding::b64(b) }),
            Value::Bool(b) => serde_json::json!({ "BOOL": b }),
            Value::L(list) => {
                serde_json::json!({ "L": list.iter().map(value).collect::<Vec<_>>() })
            }
            Value::M(map) => serde_json::json!({ "M": stream_image(map) }),
            Value::Null => serde_json::json!({ "NULL": true }),
        }
    }
    serde_json::Value::Object(item.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

/// The archived first copy of the event at (`shard`, `seq`), if any. An object that is
/// not an archived record is an error (`BlobError::Invalid`), never a match.
pub async fn event_copy(
    blobs: &dyn BlobStore,
    bucket: &str,
    shard: u32,
    seq: u64,
) -> Result<Option<ArchivedRecord>, BlobError> {
    let Some(object) = blobs.get(bucket, &event_key(shard, seq)).await? else {
        return Ok(None);
    };
    let body = object.collect().await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|_| BlobError::Invalid("not an archived audit record".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_place_and_stay_valid_object_keys() {
        let sk = "00000000000000000042";
        assert_eq!(
            item_key("CHAIN#07", sk).as_deref(),
            Some("archive/chain-07/00000000000000000042.json")
        );
        assert_eq!(item_key("CHAIN#07", sk), Some(event_key(7, 42)));
        assert_eq!(
            item_key("ANCHOR", sk).as_deref(),
            Some("archive/anchor/00000000000000000042.json")
        );
        for (pk, sk) in [
            ("CHAIN#7", sk),
            ("CHAIN#07", "42"),
            ("USER#1", sk),
            ("CHAIN#../", sk),
        ] {
            assert_eq!(item_key(pk, sk), None, "{pk} {sk}");
        }
        assert_eq!(
            tamper_key("CHAIN#07", sk, 1_700_000_000_000, "c81e728d9d4c2f636f067f89cc14862c"),
            "tamper/chain-07/00000000000000000042/1700000000000-c81e728d9d4c2f636f067f89cc14862c.json"
        );
        let odd = tamper_key("../x#y", "a/b", 5, "e/../1");
        assert_eq!(odd, "tamper/other/xy-ab/0000000000005-e1.json");
        for key in [odd, event_key(31, u64::MAX)] {
            crate::ports::blobs::validate_key(&key).expect("a valid object key");
        }
    }
}
