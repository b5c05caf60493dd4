//! The stored form of an audit event and its place in a hash chain.
//!
//! Events live in the audit table at `pk = CHAIN#<shard>`, `sk = <seq, 20 digits>`.
//! Each event stores `prev_hash` (the hash of event `seq - 1` of its shard, or the
//! shard's genesis value) and `hash` = SHA-256 over the canonical encoding below of
//! every other stored field. The head of each shard (last seq, hash, time, event id)
//! is kept in the domain table at `AUDITHEAD#<shard>` / `HEAD`, written in the same
//! transaction as the event, so a deleted tail is visible too.
//!
//! Canonical encoding, version 1: the label `docare-audit\0`, the version byte, then
//! each field in a fixed order as `tag (1 byte) | 0` when absent or
//! `tag | 1 | length (u32 BE) | bytes` when present. Numbers are big-endian; texts are
//! their UTF-8 bytes; ciphertexts their raw bytes. A new field or order is a new version.

use super::event::{Action, Actor, Outcome, Resource};
use crate::ports::db::{Item, Key, Value, PK, SK, TTL};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// Chains per deployment: writers spread over them, so no single key is hot.
pub const CHAIN_SHARDS: u32 = 32;
/// Retention of audit events (DESIGN §6): the TTL is the event time plus this.
pub const RETENTION_DAYS: i64 = 2555;
/// Version of the canonical encoding, stored in `v` on each event.
pub const FORMAT_VERSION: i64 = 1;
const LABEL: &[u8] = b"docare-audit\0";
pub(crate) const SEQ_DIGITS: usize = 20;

/// Attribute names of an audit item.
pub mod attr {
    pub const VERSION: &str = "v";
    pub const EVENT_ID: &str = "event_id";
    pub const TIME: &str = "time";
    pub const ACTOR_USER_ID: &str = "actor_user_id";
    pub const ACTOR_ROLE: &str = "actor_role";
    pub const ACTOR_SESSION_ID: &str = "actor_session_id";
    pub const ACTION: &str = "action";
    pub const RESOURCE_TYPE: &str = "resource_type";
    pub const RESOURCE_ID: &str = "resource_id";
    pub const OUTCOME: &str = "outcome";
    pub const REQUEST_ID: &str = "request_id";
    pub const SOURCE_IP: &str = "source_ip";
    /// Ciphertext (envelope v1) of the client's user agent.
    pub const USER_AGENT: &str = "user_agent";
    /// Ciphertext (envelope v1) of the reason.
    pub const REASON: &str = "reason";
    pub const PREV_ID: &str = "prev_id";
    pub const PREV_TIME: &str = "prev_time";
    pub const PREV_HASH: &str = "prev_hash";
    pub const HASH: &str = "hash";
    /// On the head item (domain table).
    pub const SEQ: &str = "seq";
}

pub fn chain_pk(shard: u32) -> String {
    format!("CHAIN#{shard:02}")
}

pub fn seq_sk(seq: u64) -> String {
    format!("{seq:0width$}", width = SEQ_DIGITS)
}

/// Where a shard's head lives in the domain table.
pub fn head_key(shard: u32) -> Key {
    crate::store::keys::audit_head(shard)
}

/// The `prev_hash` of a shard's first event: distinct per shard, so a chain cannot be
/// moved to another shard.
pub fn genesis_hash(shard: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"docare-audit-genesis\0");
    hasher.update(shard.to_be_bytes());
    hex::encode(hasher.finalize())
}

/// Event times: RFC 3339 UTC with milliseconds, fixed width, so text order is time order.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (format_time(parsed) == text).then_some(parsed)
}

/// True when an event of that time is past retention (its TTL has passed).
pub fn is_past_retention(time: &str, now: DateTime<Utc>) -> bool {
    parse_time(time).is_some_and(|t| t + chrono::Duration::days(RETENTION_DAYS) <= now)
}

/// Index keys, so compliance queries never scan.
pub fn actor_index_pk(user_id: &str) -> String {
    format!("ACTOR#{user_id}")
}

pub fn resource_index_pk(kind: &str, id: &str) -> String {
    format!("RESOURCE#{kind}#{id}")
}

pub fn action_index_pk(action: Action) -> String {
    format!("ACTION#{}", action.as_str())
}

/// An event as stored: every attribute of the audit item, ciphertexts unopened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub shard: u32,
    pub seq: u64,
    pub event_id: String,
    /// [`format_time`] of the app clock at record time.
    pub time: String,
    pub actor: Actor,
    pub action: Action,
    pub resource: Option<Resource>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<Vec<u8>>,
    pub reason: Option<Vec<u8>>,
    pub expires_at: i64,
    pub prev_id: Option<String>,
    pub prev_time: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

fn field(out: &mut Vec<u8>, tag: u8, value: Option<&[u8]>) {
    out.push(tag);
    match value {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

fn text(value: &Option<String>) -> Option<&[u8]> {
    value.as_deref().map(str::as_bytes)
}

/// Why an item is not a well-formed audit event (names attributes, never values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed audit item: {0}")]
pub struct Malformed(pub String);

impl StoredEvent {
    pub fn key(&self) -> Key {
        Key::new(chain_pk(self.shard), seq_sk(self.seq))
    }

    /// The bytes the hash covers (version 1).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(LABEL);
        out.push(FORMAT_VERSION as u8);
        field(&mut out, 1, Some(&self.shard.to_be_bytes()));
        field(&mut out, 2, Some(&self.seq.to_be_bytes()));
        field(&mut out, 3, Some(self.event_id.as_bytes()));
        field(&mut out, 4, Some(self.time.as_bytes()));
        field(&mut out, 5, text(&self.actor.user_id));
        field(&mut out, 6, text(&self.actor.role));
        field(&mut out, 7, text(&self.actor.session_id));
        field(&mut out, 8, Some(self.action.as_str().as_bytes()));
        field(
            &mut out,
            9,
            self.resource.as_ref().map(|r| r.kind.as_bytes()),
        );
        field(
            &mut out,
            10,
            self.resource.as_ref().map(|r| r.id.as_bytes()),
        );
        field(&mut out, 11, Some(self.outcome.as_str().as_bytes()));
        field(&mut out, 12, text(&self.request_id));
        field(&mut out, 13, text(&self.source_ip));
        field(&mut out, 14, self.user_agent.as_deref());
        field(&mut out, 15, self.reason.as_deref());
        field(&mut out, 16, Some(&self.expires_at.to_be_bytes()));
        field(&mut out, 17, text(&self.prev_id));
        field(&mut out, 18, text(&self.prev_time));
        field(&mut out, 19, Some(self.prev_hash.as_bytes()));
        out
    }

    /// SHA-256 of the canonical bytes, lower-case hex.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// The audit item, index keys included.
    pub fn to_item(&self) -> Item {
        let mut item = Item::new();
        let mut put = |name: &str, value: Value| {
            item.insert(name.to_string(), value);
        };
        let key = self.key();
        put(PK, Value::S(key.pk));
        put(SK, Value::S(key.sk));
        put(attr::VERSION, Value::N(FORMAT_VERSION));
        put(attr::EVENT_ID, Value::S(self.event_id.clone()));
        put(attr::TIME, Value::S(self.time.clone()));
        put(attr::ACTION, Value::S(self.action.as_str().into()));
        put(attr::OUTCOME, Value::S(self.outcome.as_str().into()));
        put(attr::PREV_HASH, Value::S(self.prev_hash.clone()));
        put(attr::HASH, Value::S(self.hash.clone()));
        put(TTL, Value::N(self.expires_at));
        let optional = [
            (attr::ACTOR_USER_ID, &self.actor.user_id),
            (attr::ACTOR_ROLE, &self.actor.role),
            (attr::ACTOR_SESSION_ID, &self.actor.session_id),
            (attr::REQUEST_ID, &self.request_id),
            (attr::SOURCE_IP, &self.source_ip),
            (attr::PREV_ID, &self.prev_id),
            (attr::PREV_TIME, &self.prev_time),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                put(name, Value::S(value.clone()));
            }
        }
        for (name, value) in [
            (attr::USER_AGENT, &self.user_agent),
            (attr::REASON, &self.reason),
        ] {
            if let Some(value) = value {
                put(name, Value::B(value.clone()));
            }
        }
        if let Some(resource) = &self.resource {
            put(attr::RESOURCE_TYPE, Value::S(resource.kind.clone()));
            put(attr::RESOURCE_ID, Value::S(resource.id.clone()));
        }
        for (name, value) in self.index_keys() {
            put(name, Value::S(value));
        }
        item
    }

    /// `gsi1` by actor, `gsi2` by resource, `gsi3` by action; sort key `<time>#<event id>`.
    fn index_keys(&self) -> Vec<(&'static str, String)> {
        let sort = format!("{}#{}", self.time, self.event_id);
        let mut keys = Vec::with_capacity(6);
        if let Some(user_id) = &self.actor.user_id {
            keys.push(("gsi1pk", actor_index_pk(user_id)));
            keys.push(("gsi1sk", sort.clone()));
        }
        if let Some(resource) = &self.resource {
            keys.push(("gsi2pk", resource_index_pk(&resource.kind, &resource.id)));
            keys.push(("gsi2sk", sort.clone()));
        }
        keys.push(("gsi3pk", action_index_pk(self.action)));
        keys.push(("gsi3sk", sort));
        keys
    }

    /// Reads an audit item strictly: every attribute known and well typed, the index
    /// keys exactly those the fields imply, nothing extra. The hash is not checked here.
    pub fn from_item(item: &Item) -> Result<Self, Malformed> {
        let bad = |what: &str| Malformed(what.to_string());
        let s = |name: &str| -> Result<Option<String>, Malformed> {
            match item.get(name) {
                None => Ok(None),
                Some(Value::S(v)) if !v.is_empty() => Ok(Some(v.clone())),
                Some(_) => Err(bad(name)),
            }
        };
        let req = |name: &str| s(name)?.ok_or_else(|| bad(name));
        let b = |name: &str| -> Result<Option<Vec<u8>>, Malformed> {
            match item.get(name) {
                None => Ok(None),
                Some(Value::B(v)) => Ok(Some(v.clone())),
                Some(_) => Err(bad(name)),
            }
        };
        if item.get(attr::VERSION) != Some(&Value::N(FORMAT_VERSION)) {
            return Err(bad(attr::VERSION));
        }
        let pk = req(PK)?;
        let shard: u32 = pk
            .strip_prefix("CHAIN#")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(PK))?;
        let sk = req(SK)?;
        let seq: u64 = sk.parse().map_err(|_| bad(SK))?;
        let resource = match (s(attr::RESOURCE_TYPE)?, s(attr::RESOURCE_ID)?) {
            (Some(kind), Some(id)) => Some(Resource { kind, id }),
            (None, None) => None,
            _ => return Err(bad(attr::RESOURCE_ID)),
        };
        let time = req(attr::TIME)?;
        parse_time(&time).ok_or_else(|| bad(attr::TIME))?;
        let event = StoredEvent {
            shard,
            seq,
            event_id: req(attr::EVENT_ID)?,
            time,
            actor: Actor {
                user_id: s(attr::ACTOR_USER_ID)?,
                role: s(attr::ACTOR_ROLE)?,
                session_id: s(attr::ACTOR_SESSION_ID)?,
            },
            action: req(attr::ACTION)?.parse().map_err(|_| bad(attr::ACTION))?,
            resource,
            outcome: req(attr::OUTCOME)?
                .parse()
                .map_err(|_| bad(attr::OUTCOME))?,
            request_id: s(attr::REQUEST_ID)?,
            source_ip: s(attr::SOURCE_IP)?,
            user_agent: b(attr::USER_AGENT)?,
            reason: b(attr::REASON)?,
            expires_at: item
                .get(TTL)
                .and_then(Value::as_i64)
                .ok_or_else(|| bad(TTL))?,
            prev_id: s(attr::PREV_ID)?,
            prev_time: s(attr::PREV_TIME)?,
            prev_hash: req(attr::PREV_HASH)?,
            hash: req(attr::HASH)?,
        };
        // Re-deriving the item must give back exactly what is stored: no extra or
        // edited attribute (an index key pointing elsewhere would hide the event).
        let derived = event.to_item();
        if let Some(name) = item
            .keys()
            .chain(derived.keys())
            .find(|name| item.get(*name) != derived.get(*name))
        {
            return Err(bad(name));
        }
        Ok(event)
    }
}

/// A shard's head as kept in the domain table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub shard: u32,
    pub seq: u64,
    pub hash: String,
    pub time: String,
    pub event_id: String,
}

impl ChainHead {
    pub fn from_item(shard: u32, item: &Item) -> Result<Self, Malformed> {
        let s = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Malformed(format!("head {name}")))
        };
        let seq = item
            .get(attr::SEQ)
            .and_then(Value::as_i64)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| Malformed("head seq".into()))?;
        Ok(Self {
            shard,
            seq,
            hash: s(attr::HASH)?,
            time: s(attr::TIME)?,
            event_id: s(attr::EVENT_ID)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredEvent {
        StoredEvent {
            shard: 3,
            seq: 7,
            event_id: "01JAAAAAAAAAAAAAAAAAAAAAAA".into(),
            time: "2026-11-23T10:00:00.123Z".into(),
            actor: Actor::user("u1", "provider").with_session("s1"),
            action: Action::View,
            resource: Some(Resource::new("note", "n1")),
            outcome: Outcome::Success,
            request_id: Some("r1".into()),
            source_ip: Some("203.0.113.9".into()),
            user_agent: Some(vec![1, 2, 3]),
            reason: None,
            expires_at: 1_900_000_000,
            prev_id: Some("01JBBBBBBBBBBBBBBBBBBBBBBB".into()),
            prev_time: Some("2026-11-23T09:59:59.000Z".into()),
            prev_hash: genesis_hash(3),
            hash: String::new(),
        }
    }

    #[test]
    fn items_round_trip_and_every_field_is_hashed() {
        let mut event = sample();
        event.hash = event.compute_hash();
        let item = event.to_item();
        assert_eq!(StoredEvent::from_item(&item), Ok(event.clone()));
        assert_eq!(item["gsi1pk"], Value::S("ACTOR#u1".into()));
        assert_eq!(item["gsi2pk"], Value::S("RESOURCE#note#n1".into()));
        assert_eq!(item["gsi3pk"], Value::S("ACTION#VIEW".into()));
        assert_eq!(
            item["gsi3sk"],
            Value::S("2026-11-23T10:00:00.123Z#01JAAAAAAAAAAAAAAAAAAAAAAA".into())
        );

        let base = event.compute_hash();
        let edits: Vec<fn(&mut StoredEvent)> = vec![
            |e| e.shard = 4,
            |e| e.seq = 8,
            |e| e.event_id.push('X'),
            |e| e.time = "2026-11-23T10:00:00.124Z".into(),
            |e| e.actor.user_id = None,
            |e| e.actor.role = Some("admin".into()),
            |e| e.actor.session_id = None,
            |e| e.action = Action::Export,
            |e| e.resource = None,
            |e| e.resource = Some(Resource::new("note", "n2")),
            |e| e.outcome = Outcome::Denied,
            |e| e.request_id = None,
            |e| e.source_ip = Some("203.0.113.10".into()),
            |e| e.user_agent = None,
            |e| e.reason = Some(vec![]),
            |e| e.expires_at += 1,
            |e| e.prev_id = None,
            |e| e.prev_time = None,
            |e| e.prev_hash = genesis_hash(4),
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut changed = event.clone();
            edit(&mut changed);
            assert_ne!(changed.compute_hash(), base, "edit {i} changes the hash");
        }
    }

    #[test]
    fn absent_and_empty_fields_encode_differently() {
        let mut a = sample();
        a.reason = None;
        let mut b = sample();
        b.reason = Some(Vec::new());
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        // Moving bytes between adjacent fields changes the encoding.
        let mut c = sample();
        c.resource = Some(Resource::new("no", "ten1"));
        assert_ne!(sample().canonical_bytes(), c.canonical_bytes());
    }

    #[test]
    fn strict_parsing_refuses_extra_or_inconsistent_attributes() {
        let mut event = sample();
        event.hash = event.compute_hash();
        let item = event.to_item();
        let mut extra = item.clone();
        extra.insert("note".into(), Value::S("x".into()));
        assert!(StoredEvent::from_item(&extra).is_err());
        let mut moved = item.clone();
        moved.insert("gsi1pk".into(), Value::S("ACTOR#u2".into()));
        assert!(StoredEvent::from_item(&moved).is_err());
        let mut hidden = item.clone();
        hidden.remove("gsi2pk");
        assert!(StoredEvent::from_item(&hidden).is_err());
        let mut bad_time = item;
        bad_time.insert("time".into(), Value::S("2026-11-23T10:00:00Z".into()));
        assert!(StoredEvent::from_item(&bad_time).is_err());
    }

    #[test]
    fn times_sort_as_text() {
        let a = format_time("2026-01-02T03:04:05Z".parse().expect("t"));
        assert_eq!(a, "2026-01-02T03:04:05.000Z");
        assert_eq!(parse_time(&a).map(format_time), Some(a));
        assert_eq!(seq_sk(42).len(), 20);
        assert!(seq_sk(9) < seq_sk(10));
    }
}
