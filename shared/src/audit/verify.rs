//! Verification of the audit chains: walks every shard in order and checks that each
//! event is well formed, that its hash is the hash of its fields, that it links to the
//! hash of the event before it with no gap in `seq`, and that the last event is the
//! head recorded in the domain table. Reports the first break.
//!
//! Events past retention disappear by TTL from the oldest end of a chain. Each event
//! stores its predecessor's time, so a missing predecessor is accepted only when that
//! time is past retention; a younger gap is a deletion.
//!
//! The hashes are not keyed, so whoever can write the audit table and the heads could
//! rewrite a shard consistently. [`verify_with_anchors`] therefore also checks the
//! signed anchors (`anchor.rs`): each anchor's signature (a key the functions cannot
//! use) and its link to the previous one, that every anchored head is still in its
//! chain with the same hash, and that anchoring has not stopped. Between anchors,
//! [`verify_with_archive`] also compares every event with its first copy in the audit
//! archive (`archive.rs`: S3 Object Lock, written only by `audit-watch`), which a
//! rewrite of the table cannot reach.

use super::anchor::{anchor_genesis, Anchor, ANCHOR_GRACE};
use super::archive;
use super::chain::{
    format_time, genesis_hash, is_past_retention, parse_time, ChainHead, Malformed, StoredEvent,
    CHAIN_SHARDS,
};
use super::reader::{AuditReader, TimeRange};
use super::AuditError;
use crate::crypto::signing::PublicKey;
use crate::ports::blobs::{BlobError, BlobStore};
use crate::ports::db::{Item, Value, SK};
use chrono::{DateTime, Duration, Utc};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Events read per query page while walking a chain.
const PAGE: u32 = 500;
/// Clock difference tolerated between writer instances when cutting a time range.
const SKEW_MINUTES: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    pub shards: u32,
    pub range: TimeRange,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            shards: CHAIN_SHARDS,
            range: TimeRange::default(),
        }
    }
}

/// What is wrong at the break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// No event at this seq, but later events exist (deleted).
    Missing,
    /// The stored hash is not the hash of the stored fields (edited, or moved/swapped).
    Altered,
    /// `prev_hash` is not the hash of the event before it (replaced or reordered).
    BrokenLink,
    /// Not a well-formed audit item (unknown, missing or inconsistent attribute).
    Malformed(String),
    /// The head records events after the last one present (tail deleted).
    Truncated,
    /// The last event is not the one the head records.
    HeadMismatch,
    /// Events exist but the shard has no head.
    HeadMissing,
    /// The head is not a well-formed head item.
    HeadMalformed(String),
    /// The event at an anchored seq is not the one the anchor recorded: the shard was
    /// rewritten after it was anchored (with its head, or the links would show it).
    AnchorMismatch { anchor: u64 },
    /// An anchor is malformed or not signed by a trusted anchor key (forged).
    AnchorInvalid { anchor: u64, what: String },
    /// An anchor is missing or does not link to the one before it.
    AnchorUnlinked { anchor: u64 },
    /// Events were appended long after the newest anchor (anchoring stopped, or the
    /// newest anchors were removed).
    AnchorsStale { newest: Option<u64> },
    /// The event is not the one first written at its place, as the audit archive kept
    /// it (rewritten in the table, with its chain and head or not).
    ArchiveMismatch,
    /// An event older than [`ANCHOR_GRACE`] has no archived copy (its stream record was
    /// never archived, or it was written before the archive existed).
    ArchiveMissing,
}

impl BreakKind {
    /// A break of the anchors themselves rather than of one shard's chain.
    pub fn is_anchor_level(&self) -> bool {
        matches!(
            self,
            BreakKind::AnchorInvalid { .. } | BreakKind::AnchorUnlinked { .. }
        )
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakKind::Missing => f.write_str("missing event (deleted)"),
            BreakKind::Altered => f.write_str("hash mismatch (event altered)"),
            BreakKind::BrokenLink => f.write_str("prev_hash does not link to the previous event"),
            BreakKind::Malformed(what) => write!(f, "malformed event ({what})"),
            BreakKind::Truncated => {
                f.write_str("events after the last one are missing (tail deleted)")
            }
            BreakKind::HeadMismatch => f.write_str("last event does not match the chain head"),
            BreakKind::HeadMissing => f.write_str("chain head missing"),
            BreakKind::HeadMalformed(what) => write!(f, "malformed chain head ({what})"),
            BreakKind::AnchorMismatch { anchor } => write!(
                f,
                "event differs from the one anchor {anchor} signed (shard rewritten)"
            ),
            BreakKind::AnchorInvalid { anchor, what } => {
                write!(f, "anchor {anchor} is not valid ({what})")
            }
            BreakKind::AnchorUnlinked { anchor } => {
                write!(f, "anchor {anchor} does not link to the anchor before it")
            }
            BreakKind::AnchorsStale { newest: Some(anchor) } => write!(
                f,
                "events appended more than {} minutes after the newest anchor ({anchor}): anchoring stopped or anchors were removed",
                ANCHOR_GRACE.as_secs() / 60
            ),
            BreakKind::ArchiveMismatch => {
                f.write_str("event differs from its first archived copy (rewritten in the table)")
            }
            BreakKind::ArchiveMissing => f.write_str(
                "event has no archived copy (its stream record was not archived, or it predates the archive)",
            ),
            BreakKind::AnchorsStale { newest: None } => write!(
                f,
                "events older than {} minutes and no anchor",
                ANCHOR_GRACE.as_secs() / 60
            ),
        }
    }
}

/// Where the chain breaks first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub shard: u32,
    pub seq: u64,
    /// The event at that place, when known (from the event, its successor or the head).
    pub event_id: Option<String>,
    pub kind: BreakKind,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain {} seq {} event {}: {}",
            self.shard,
            self.seq,
            self.event_id.as_deref().unwrap_or("-"),
            self.kind
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked (those in the time range).
    pub events: u64,
    /// Anchors checked (signature and link); 0 when verified without anchors.
    pub anchors: u64,
    /// Shards holding at least one event or a head.
    pub chains: u32,
    pub first_break: Option<ChainBreak>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Walks every shard; stops at the first break. Checks the chains only: an actor who
/// can write both tables can rewrite a shard this accepts; see [`verify_with_anchors`].
pub async fn verify(
    reader: &AuditReader,
    now: DateTime<Utc>,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    walk(reader, &Anchored::default(), None, now, options).await
}

/// The audit archive a verification compares events with.
#[derive(Clone, Copy)]
pub struct Archive<'a> {
    pub blobs: &'a dyn BlobStore,
    pub bucket: &'a str,
}

/// What one anchor recorded of one shard's head.
struct Point {
    hash: String,
    event_id: String,
    time: String,
    anchor: u64,
}

/// Anchored heads of one shard, by seq.
type Points = BTreeMap<u64, Point>;

/// What the anchors recorded, per shard.
#[derive(Default)]
struct Anchored {
    shards: HashMap<u32, Points>,
}

/// [`verify`] plus the anchors: every anchor must be signed by one of `trusted` (the
/// anchor key's public halves) and link to the previous one; every anchored head must
/// still be in its chain with the same hash; and no shard's head may be more than
/// [`ANCHOR_GRACE`] newer than the newest anchor (nor, without any anchor, older than
/// that at `now`).
pub async fn verify_with_anchors(
    reader: &AuditReader,
    trusted: &[PublicKey],
    now: DateTime<Utc>,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    verify_anchored(reader, trusted, None, now, options).await
}

/// [`verify_with_anchors`] plus the audit archive: every event of the range must be
/// its first archived copy (same event id and hash; the hash covers every field), and
/// every event older than [`ANCHOR_GRACE`] must have one. Catches a rewrite that the
/// anchors cannot (events newer than the last anchor) as well as older ones.
pub async fn verify_with_archive(
    reader: &AuditReader,
    trusted: &[PublicKey],
    archive: Archive<'_>,
    now: DateTime<Utc>,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    verify_anchored(reader, trusted, Some(archive), now, options).await
}

async fn verify_anchored(
    reader: &AuditReader,
    trusted: &[PublicKey],
    archive: Option<Archive<'_>>,
    now: DateTime<Utc>,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let items = reader.anchor_items().await?;
    let mut anchored = Anchored::default();
    let mut previous: Option<Anchor> = None;
    let mut checked = 0;
    let invalid = |anchor: u64, kind: BreakKind, checked: u64| VerifyReport {
        anchors: checked,
        first_break: Some(ChainBreak {
            shard: 0,
            seq: anchor,
            event_id: None,
            kind,
        }),
        ..VerifyReport::default()
    };
    for item in &items {
        let seq = sk_seq(item).unwrap_or_default();
        let anchor = match Anchor::from_item(item) {
            Ok(anchor) => anchor,
            Err(what) => {
                return Ok(invalid(
                    seq,
                    BreakKind::AnchorInvalid { anchor: seq, what },
                    checked,
                ))
            }
        };
        if !anchor.signed_by_any(trusted) {
            let what = "signature".to_string();
            return Ok(invalid(
                seq,
                BreakKind::AnchorInvalid { anchor: seq, what },
                checked,
            ));
        }
        let (expected_seq, expected_prev) = match &previous {
            Some(prev) => (prev.seq + 1, prev.hash()),
            None => (0, anchor_genesis()),
        };
        if anchor.seq != expected_seq || anchor.prev_hash != expected_prev {
            return Ok(invalid(
                seq,
                BreakKind::AnchorUnlinked { anchor: seq },
                checked,
            ));
        }
        for head in &anchor.heads {
            anchored.shards.entry(head.shard).or_default().insert(
                head.seq,
                Point {
                    hash: head.hash.clone(),
                    event_id: head.event_id.clone(),
                    time: head.time.clone(),
                    anchor: anchor.seq,
                },
            );
        }
        checked += 1;
        previous = Some(anchor);
    }
    let mut report = walk(reader, &anchored, archive, now, options).await?;
    report.anchors = checked;
    if report.first_break.is_some() {
        return Ok(report);
    }
    let grace = Duration::from_std(ANCHOR_GRACE).unwrap_or_else(|_| Duration::minutes(15));
    for shard in 0..options.shards {
        let Some(head) = reader.head(shard).await? else {
            continue;
        };
        let Some(head_time) = parse_time(&head.time) else {
            continue;
        };
        let stale = match &previous {
            Some(newest) => {
                let covered = newest.head(shard).is_some_and(|a| a.seq >= head.seq);
                !covered
                    && parse_time(&newest.time).is_some_and(|anchored| head_time > anchored + grace)
            }
            None => head_time + grace < now,
        };
        if stale {
            report.first_break = Some(ChainBreak {
                shard,
                seq: head.seq,
                event_id: Some(head.event_id.clone()),
                kind: BreakKind::AnchorsStale {
                    newest: previous.as_ref().map(|a| a.seq),
                },
            });
            break;
        }
    }
    Ok(report)
}

async fn walk(
    reader: &AuditReader,
    anchored: &Anchored,
    archive: Option<Archive<'_>>,
    now: DateTime<Utc>,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport::default();
    let none = BTreeMap::new();
    for shard in 0..options.shards {
        let points = anchored.shards.get(&shard).unwrap_or(&none);
        let outcome = verify_shard(reader, shard, points, archive, now, &options.range).await?;
        report.events += outcome.events;
        if outcome.used {
            report.chains += 1;
        }
        if let Some(found) = outcome.first_break {
            report.first_break = Some(found);
            break;
        }
    }
    Ok(report)
}

#[derive(Default)]
struct ShardOutcome {
    events: u64,
    used: bool,
    first_break: Option<ChainBreak>,
}

/// The last event seen while walking.
struct Seen {
    seq: u64,
    hash: String,
    event_id: String,
}

fn sk_seq(item: &Item) -> Option<u64> {
    item.get(SK).and_then(Value::as_str)?.parse().ok()
}

/// The event against its first archived copy: `None` when it matches (or is too young
/// to be archived yet), else what is wrong.
async fn against_archive(
    archive: Archive<'_>,
    shard: u32,
    event: &StoredEvent,
    now: DateTime<Utc>,
) -> Result<Option<BreakKind>, AuditError> {
    let copy = match archive::event_copy(archive.blobs, archive.bucket, shard, event.seq).await {
        Ok(copy) => copy,
        // An object there that is not an archived record is not the event.
        Err(BlobError::Invalid(_)) => return Ok(Some(BreakKind::ArchiveMismatch)),
        Err(err) => return Err(AuditError::Archive(err)),
    };
    Ok(match copy {
        Some(copy) => {
            let same = copy.new_hash() == Some(event.hash.as_str())
                && copy.new_text(super::chain::attr::EVENT_ID) == Some(event.event_id.as_str());
            (!same).then_some(BreakKind::ArchiveMismatch)
        }
        None => {
            // The stream delivers within seconds; an older event must have its copy.
            let grace = Duration::from_std(ANCHOR_GRACE).unwrap_or_else(|_| Duration::minutes(15));
            let old = parse_time(&event.time).is_none_or(|t| t + grace < now);
            old.then_some(BreakKind::ArchiveMissing)
        }
    })
}

async fn verify_shard(
    reader: &AuditReader,
    shard: u32,
    anchored: &Points,
    archive: Option<Archive<'_>>,
    now: DateTime<Utc>,
    range: &TimeRange,
) -> Result<ShardOutcome, AuditError> {
    let mut out = ShardOutcome::default();
    let broken = |seq: u64, event_id: Option<String>, kind: BreakKind| ChainBreak {
        shard,
        seq,
        event_id,
        kind,
    };
    let head = match reader.head(shard).await {
        Ok(head) => head,
        Err(AuditError::Corrupt(Malformed(what))) => {
            out.used = true;
            out.first_break = Some(broken(0, None, BreakKind::HeadMalformed(what)));
            return Ok(out);
        }
        Err(err) => return Err(err),
    };
    out.used = head.is_some();
    let start = match (&range.from, &head) {
        (Some(from), Some(head)) => start_seq(reader, shard, *from, head.seq).await?,
        _ => 0,
    };
    let stop_after = range
        .to
        .map(|to| format_time(to + Duration::minutes(SKEW_MINUTES)));

    let mut last: Option<Seen> = None;
    let mut reached_end = true;
    let mut page_start = None;
    'pages: loop {
        let page = reader.chain_page(shard, start, PAGE, page_start).await?;
        for item in &page.items {
            out.used = true;
            let event = match StoredEvent::from_item(item) {
                Ok(event) => event,
                Err(Malformed(what)) => {
                    let seq = sk_seq(item).unwrap_or_default();
                    let id = item
                        .get("event_id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    out.first_break = Some(broken(seq, id, BreakKind::Malformed(what)));
                    return Ok(out);
                }
            };
            if stop_after
                .as_deref()
                .is_some_and(|stop| event.time.as_str() > stop)
            {
                reached_end = false;
                break 'pages;
            }
            let id = Some(event.event_id.clone());
            // An event that is not what was written at its place (edited, swapped,
            // moved) is named first; then its place in the chain is checked.
            if event.compute_hash() != event.hash {
                out.first_break = Some(broken(event.seq, id, BreakKind::Altered));
                return Ok(out);
            }
            // A consistent rewrite keeps every hash and link valid; only a signed
            // anchor of this place tells it from the original.
            if let Some(point) = anchored.get(&event.seq) {
                if point.hash != event.hash {
                    let kind = BreakKind::AnchorMismatch {
                        anchor: point.anchor,
                    };
                    out.first_break = Some(broken(event.seq, id, kind));
                    return Ok(out);
                }
            }
            // Newer than the last anchor too: the copy the table's writers cannot reach.
            if let Some(archive) = archive {
                if let Some(kind) = against_archive(archive, shard, &event, now).await? {
                    out.first_break = Some(broken(event.seq, id, kind));
                    return Ok(out);
                }
            }
            // The link to the predecessor: the event read just before, or genesis.
            let expected = last.as_ref().map_or(start, |seen| seen.seq + 1);
            if event.seq != expected || (last.is_none() && event.seq > 0) {
                let predecessor_expired = event
                    .prev_time
                    .as_deref()
                    .is_some_and(|t| is_past_retention(t, now));
                // Reading from `start > 0` (a time range) the first event has no
                // predecessor in hand: its link is checked by a run without `--from`.
                let range_cut = last.is_none() && event.seq == start && start > 0;
                if !predecessor_expired && !range_cut {
                    let missing = event.seq - 1;
                    out.first_break = Some(broken(missing, event.prev_id, BreakKind::Missing));
                    return Ok(out);
                }
            } else {
                let prev_hash = match &last {
                    Some(seen) => seen.hash.clone(),
                    None => genesis_hash(shard),
                };
                if event.prev_hash != prev_hash {
                    out.first_break = Some(broken(event.seq, id, BreakKind::BrokenLink));
                    return Ok(out);
                }
            }
            if range.contains(&event.time) {
                out.events += 1;
            }
            last = Some(Seen {
                seq: event.seq,
                hash: event.hash,
                event_id: event.event_id,
            });
        }
        match page.next {
            Some(next) => page_start = Some(next),
            None => break,
        }
    }
    if reached_end {
        out.first_break = check_head(shard, head.as_ref(), last.as_ref(), now);
        if out.first_break.is_none() {
            // An anchored event beyond the end: the tail was deleted and the head
            // rolled back to match (unless it has simply expired).
            let end = last.as_ref().map(|seen| seen.seq);
            if let Some((seq, point)) = anchored.iter().next_back() {
                let beyond = end.is_none_or(|end| *seq > end);
                if beyond && *seq >= start && !is_past_retention(&point.time, now) {
                    out.used = true;
                    let kind = BreakKind::AnchorMismatch {
                        anchor: point.anchor,
                    };
                    out.first_break = Some(broken(*seq, Some(point.event_id.clone()), kind));
                }
            }
        }
    }
    Ok(out)
}

/// The end of the chain against its head.
fn check_head(
    shard: u32,
    head: Option<&ChainHead>,
    last: Option<&Seen>,
    now: DateTime<Utc>,
) -> Option<ChainBreak> {
    let broken = |seq: u64, event_id: Option<String>, kind: BreakKind| {
        Some(ChainBreak {
            shard,
            seq,
            event_id,
            kind,
        })
    };
    match (head, last) {
        (None, None) => None,
        (None, Some(last)) => broken(
            last.seq,
            Some(last.event_id.clone()),
            BreakKind::HeadMissing,
        ),
        (Some(head), None) => {
            // Every event gone: fine only if the newest one is past retention.
            if is_past_retention(&head.time, now) {
                None
            } else {
                broken(head.seq, Some(head.event_id.clone()), BreakKind::Truncated)
            }
        }
        (Some(head), Some(last)) => {
            if head.seq > last.seq {
                broken(head.seq, Some(head.event_id.clone()), BreakKind::Truncated)
            } else if head.seq < last.seq
                || head.hash != last.hash
                || head.event_id != last.event_id
            {
                broken(
                    last.seq,
                    Some(last.event_id.clone()),
                    BreakKind::HeadMismatch,
                )
            } else {
                None
            }
        }
    }
}

/// The first seq worth reading for events from `from` on: a binary search over seq
/// (events are appended in time order, up to the writers' clock skew), minus one so the
/// link into the range is checked too.
async fn start_seq(
    reader: &AuditReader,
    shard: u32,
    from: DateTime<Utc>,
    head_seq: u64,
) -> Result<u64, AuditError> {
    let bound = format_time(from - Duration::minutes(SKEW_MINUTES));
    let (mut lo, mut hi) = (0u64, head_seq + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let found = reader.first_at_or_after(shard, mid).await?;
        let (seq, time) = match found.as_ref() {
            Some(item) => (
                sk_seq(item).unwrap_or(mid),
                item.get("time").and_then(Value::as_str).unwrap_or_default(),
            ),
            None => {
                hi = mid;
                continue;
            }
        };
        if time >= bound.as_str() {
            hi = mid;
        } else {
            lo = seq.max(mid) + 1;
        }
    }
    Ok(lo.saturating_sub(1))
}
