//! Anchors: signed checkpoints of every chain head, so that whoever can write the audit
//! table and the heads still cannot rewrite history the verifier would accept.
//!
//! Every [`ANCHOR_INTERVAL`] the `audit-anchor` function (and, locally, the stack's
//! in-process schedule) reads the 32 chain heads, checks that each shard's events since
//! the previous anchor extend what that anchor recorded (same hash at the anchored seq,
//! every link in between), and appends an anchor: the heads, the anchor's own seq and
//! time, and the hash of the previous anchor, signed with a KMS asymmetric key
//! (`ECC_NIST_P256`) that only the anchoring function may use (`kms:Sign`). Anchors live
//! in the audit table under their own partition ([`ANCHOR_PK`]), which the functions'
//! writer policy cannot reach (`dynamodb:LeadingKeys` `CHAIN#*`).
//!
//! The verifier checks every anchor's signature and link, that each anchored head is
//! still in its chain with the same hash, and that the newest anchor is not older than
//! [`ANCHOR_GRACE`] before the newest event. Events newer than the last anchor are not
//! covered yet: they stay rewritable (consistently with the heads) until the next run.

use super::chain::{format_time, seq_sk, ChainHead, StoredEvent, CHAIN_SHARDS};
use super::reader::AuditReader;
use super::AuditError;
use crate::crypto::signing::PublicKey;
use crate::ports::db::{Condition, Database, Item, Query, Value, PK, SK};
use crate::ports::keys::{KeyError, KeyService};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The partition of the anchors in the audit table (`sk` = the anchor's seq, 20 digits).
pub const ANCHOR_PK: &str = "ANCHOR";
/// How often the heads are anchored (the schedule's rate).
pub const ANCHOR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
/// How far the newest anchor may trail the newest event before the verifier reports
/// that anchoring stopped (or anchors were removed): three intervals.
pub const ANCHOR_GRACE: std::time::Duration = std::time::Duration::from_secs(900);
/// The encoding version of an anchor.
pub const ANCHOR_VERSION: i64 = 1;
const LABEL: &[u8] = b"docare-audit-anchor";
/// Events read per page while checking a shard's extension.
const PAGE: u32 = 500;

/// One shard's head as an anchor records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnchoredHead {
    pub shard: u32,
    pub seq: u64,
    pub hash: String,
    pub event_id: String,
    pub time: String,
}

/// A signed checkpoint of the chain heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub time: String,
    /// [`Anchor::hash`] of the previous anchor, or [`anchor_genesis`].
    pub prev_hash: String,
    /// Ascending by shard; shards never written are absent.
    pub heads: Vec<AnchoredHead>,
    /// ECDSA P-256 / SHA-256 over [`Anchor::digest`], `r || s`.
    pub signature: Vec<u8>,
}

/// The `prev_hash` of the first anchor.
pub fn anchor_genesis() -> String {
    hex::encode(Sha256::digest(b"docare-audit-anchor-genesis"))
}

fn part(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Anchor {
    /// The bytes the signature covers: every field but the signature, length-prefixed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.heads.len() * 128);
        part(&mut out, LABEL);
        out.extend_from_slice(&ANCHOR_VERSION.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        part(&mut out, self.time.as_bytes());
        part(&mut out, self.prev_hash.as_bytes());
        out.extend_from_slice(&(self.heads.len() as u32).to_be_bytes());
        for head in &self.heads {
            out.extend_from_slice(&head.shard.to_be_bytes());
            out.extend_from_slice(&head.seq.to_be_bytes());
            part(&mut out, head.hash.as_bytes());
            part(&mut out, head.event_id.as_bytes());
            part(&mut out, head.time.as_bytes());
        }
        out
    }

    /// SHA-256 of the canonical bytes: what is signed (32 bytes, within KMS's limit
    /// however many shards there are).
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// What the next anchor links to (covers the signature too).
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.canonical_bytes());
        hasher.update(&self.signature);
        hex::encode(hasher.finalize())
    }

    pub fn head(&self, shard: u32) -> Option<&AnchoredHead> {
        self.heads.iter().find(|h| h.shard == shard)
    }

    pub fn to_item(&self) -> Result<Item, AuditError> {
        let heads = serde_json::to_string(&self.heads)
            .map_err(|_| AuditError::InvalidEvent("anchor heads"))?;
        let mut item = Item::new();
        item.insert(PK.into(), Value::S(ANCHOR_PK.into()));
        item.insert(SK.into(), Value::S(seq_sk(self.seq)));
        item.insert("v".into(), Value::N(ANCHOR_VERSION));
        item.insert("time".into(), Value::S(self.time.clone()));
        item.insert("prev_hash".into(), Value::S(self.prev_hash.clone()));
        item.insert("heads".into(), Value::S(heads));
        item.insert("signature".into(), Value::B(self.signature.clone()));
        Ok(item)
    }

    /// Parses an anchor item; the error names what is wrong.
    pub fn from_item(item: &Item) -> Result<Self, String> {
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| name.to_string())
        };
        if item.len() != 7 {
            return Err("attributes".into());
        }
        if item.get("v").and_then(Value::as_i64) != Some(ANCHOR_VERSION) {
            return Err("v".into());
        }
        let seq = text(SK)?.parse::<u64>().map_err(|_| SK.to_string())?;
        let heads: Vec<AnchoredHead> =
            serde_json::from_str(&text("heads")?).map_err(|_| "heads".to_string())?;
        let signature = item
            .get("signature")
            .and_then(Value::as_bytes)
            .ok_or_else(|| "signature".to_string())?
            .to_vec();
        Ok(Self {
            seq,
            time: text("time")?,
            prev_hash: text("prev_hash")?,
            heads,
            signature,
        })
    }

    /// Whether one of `keys` signed this anchor.
    pub fn signed_by_any(&self, keys: &[PublicKey]) -> bool {
        let digest = self.digest();
        keys.iter()
            .any(|key| key.verifies(&digest, &self.signature))
    }
}

/// Every anchor in order (oldest first), unparsed: the verifier judges them.
pub async fn anchor_items(db: &dyn Database, audit_table: &str) -> Result<Vec<Item>, AuditError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = db
            .query(
                audit_table,
                Query::partition(ANCHOR_PK).limit(500).start(start),
            )
            .await
            .map_err(AuditError::Store)?;
        items.extend(page.items);
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(items),
        }
    }
}

/// The newest anchor, if any.
pub async fn latest_anchor(
    db: &dyn Database,
    audit_table: &str,
) -> Result<Option<Anchor>, AuditError> {
    let page = db
        .query(
            audit_table,
            Query::partition(ANCHOR_PK).descending().limit(1),
        )
        .await
        .map_err(AuditError::Store)?;
    page.items
        .first()
        .map(|item| {
            Anchor::from_item(item).map_err(|what| AuditError::Corrupt(super::Malformed(what)))
        })
        .transpose()
}

/// What one anchoring run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorRun {
    /// The anchor written, `None` when no head had moved since the last one.
    pub anchor: Option<u64>,
    /// Shards whose events since the last anchor do not extend it: their previous
    /// anchored head is carried forward unchanged, and the run reports an alarm.
    pub broken: Vec<u32>,
}

/// Why an anchoring run failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("anchor signing key unusable")]
    Keys(#[source] KeyError),
}

impl From<AnchorError> for crate::ApiError {
    fn from(err: AnchorError) -> Self {
        match err {
            AnchorError::Audit(err) => err.into(),
            AnchorError::Keys(err) => err.into(),
        }
    }
}

/// The anchoring principal's view: the audit store, the heads, and the signing key.
pub struct Anchorer {
    pub db: Arc<dyn Database>,
    pub keys: Arc<dyn KeyService>,
    pub reader: AuditReader,
    pub audit_table: String,
    pub anchor_key_id: String,
    pub shards: u32,
}

impl Anchorer {
    pub fn of(app: &crate::AppContext) -> Self {
        Self {
            db: app.db.clone(),
            keys: app.keys.clone(),
            reader: AuditReader::of(app),
            audit_table: app.config.audit_table.clone(),
            anchor_key_id: app.config.audit_anchor_key_id.clone(),
            shards: CHAIN_SHARDS,
        }
    }

    /// Anchors the current heads (one `kms:Sign`, one conditional `PutItem`).
    pub async fn run(&self, now: chrono::DateTime<chrono::Utc>) -> Result<AnchorRun, AnchorError> {
        let previous = latest_anchor(self.db.as_ref(), &self.audit_table).await?;
        let mut heads = Vec::new();
        let mut broken = Vec::new();
        let mut moved = false;
        for shard in 0..self.shards {
            let before = previous.as_ref().and_then(|a| a.head(shard)).cloned();
            let head = match self.reader.head(shard).await {
                Ok(head) => head,
                // A malformed head: nothing new can be certified for this shard.
                Err(AuditError::Corrupt(_)) => {
                    if let Some(before) = before {
                        heads.push(before);
                    }
                    broken.push(shard);
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            let Some(head) = head else {
                if let Some(before) = before {
                    // A head that vanished: keep what was anchored, raise the alarm.
                    broken.push(shard);
                    heads.push(before);
                }
                continue;
            };
            let now_head = AnchoredHead {
                shard,
                seq: head.seq,
                hash: head.hash.clone(),
                event_id: head.event_id.clone(),
                time: head.time.clone(),
            };
            match before {
                Some(before) if before == now_head => heads.push(before),
                Some(before) => {
                    if self.extends(&before, &head).await? {
                        moved = true;
                        heads.push(now_head);
                    } else {
                        broken.push(shard);
                        heads.push(before);
                    }
                }
                None => {
                    // The first anchor of a shard certifies the chain as it stands.
                    moved = true;
                    heads.push(now_head);
                }
            }
        }
        if !broken.is_empty() {
            tracing::error!(
                metric = "audit_anchor_broken",
                shards = ?broken,
                "audit chains do not extend their last anchor"
            );
        }
        if !moved {
            return Ok(AnchorRun {
                anchor: None,
                broken,
            });
        }
        let mut anchor = Anchor {
            seq: previous.as_ref().map_or(0, |a| a.seq + 1),
            time: format_time(now),
            prev_hash: previous.as_ref().map_or_else(anchor_genesis, Anchor::hash),
            heads,
            signature: Vec::new(),
        };
        anchor.signature = self
            .keys
            .sign(&self.anchor_key_id, &anchor.digest())
            .await
            .map_err(AnchorError::Keys)?
            .to_vec();
        self.db
            .put(
                &self.audit_table,
                anchor.to_item()?,
                Some(Condition::NotExists),
            )
            .await
            .map_err(AuditError::Store)?;
        Ok(AnchorRun {
            anchor: Some(anchor.seq),
            broken,
        })
    }

    /// Whether the events from the anchored head to the current head link up.
    async fn extends(&self, before: &AnchoredHead, head: &ChainHead) -> Result<bool, AuditError> {
        if head.seq < before.seq {
            return Ok(false);
        }
        let mut expected_seq = before.seq;
        let mut prev_hash: Option<String> = None;
        let mut start = None;
        loop {
            let page = self
                .reader
                .chain_page(before.shard, before.seq, PAGE, start)
                .await?;
            for item in &page.items {
                let Ok(event) = StoredEvent::from_item(item) else {
                    return Ok(false);
                };
                if event.seq != expected_seq || event.compute_hash() != event.hash {
                    return Ok(false);
                }
                match &prev_hash {
                    None if event.hash != before.hash => return Ok(false),
                    Some(prev) if &event.prev_hash != prev => return Ok(false),
                    _ => {}
                }
                if event.seq == head.seq {
                    return Ok(event.hash == head.hash);
                }
                prev_hash = Some(event.hash);
                expected_seq += 1;
            }
            match page.next {
                Some(next) => start = Some(next),
                None => return Ok(false),
            }
        }
    }
}
