//! The one audit writer every function uses.
//!
//! An instance picks a random chain shard at first use and keeps that shard's head in
//! memory, so a warm append is exactly one `TransactWriteItems`: a conditional `Put` of
//! the event in the audit table (new key only) and an `Update` of the shard's head in
//! the domain table, conditioned on the head this instance last saw. When another
//! instance advanced the shard first, the writer re-reads the head (one `GetItem`) and
//! retries, moving to another shard after repeated conflicts, a bounded number of times.
//! The functions therefore need only `PutItem` on the audit table.

use super::chain::{
    attr, chain_pk, format_time, genesis_hash, head_key, seq_sk, ChainHead, StoredEvent,
    CHAIN_SHARDS, RETENTION_DAYS,
};
use super::event::AuditEvent;
use super::AuditError;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::{Binding, Envelope};
use crate::ports::db::{Condition, Database, DbError, Update, Value, WriteOp, MAX_TRANSACTION_OPS};
use rand::Rng;
use std::sync::Arc;

/// Appends tried before giving up (each after a re-read of the head).
pub const MAX_ATTEMPTS: u32 = 8;
/// Conflicts on one shard before the writer moves to another.
const CONFLICTS_BEFORE_MOVING: u32 = 2;
/// Bounds on the identifiers an event carries (they are ids, not text).
const MAX_ID_LEN: usize = 256;
/// Entity writes one [`AuditWriter::commit`] can carry: DynamoDB's 100 items per
/// transaction minus the event and its chain head.
pub const MAX_CHANGE_OPS: usize = MAX_TRANSACTION_OPS - 2;

/// Why a change was not committed. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A condition of the change's own write at this index of the ops did not hold.
    #[error("a condition of the change did not hold")]
    Change { op: usize },
    /// The event could not be recorded, so the change was not kept either.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<CommitError> for crate::ApiError {
    fn from(err: CommitError) -> Self {
        match err {
            CommitError::Change { .. } => {
                crate::ApiError::conflict("the resource was changed by another request; retry")
            }
            CommitError::Audit(err) => err.into(),
        }
    }
}

/// What this instance believes the next append of its shard follows.
#[derive(Debug, Clone)]
struct Tip {
    shard: u32,
    next_seq: u64,
    prev_hash: String,
    prev_time: Option<String>,
    prev_id: Option<String>,
}

impl Tip {
    fn genesis(shard: u32) -> Self {
        Self {
            shard,
            next_seq: 0,
            prev_hash: genesis_hash(shard),
            prev_time: None,
            prev_id: None,
        }
    }

    fn after(event: &StoredEvent) -> Self {
        Self {
            shard: event.shard,
            next_seq: event.seq + 1,
            prev_hash: event.hash.clone(),
            prev_time: Some(event.time.clone()),
            prev_id: Some(event.event_id.clone()),
        }
    }
}

pub struct AuditWriter {
    db: Arc<dyn Database>,
    envelope: Arc<Envelope>,
    clock: Arc<dyn Clock>,
    table: String,
    audit_table: String,
    /// The stage the failure metric is counted under.
    stage: String,
    shards: u32,
    first_shard: Option<u32>,
    /// Held across the append: one instance appends one event at a time (a Lambda
    /// instance serves one request at a time anyway; the local stack shares one writer).
    tip: tokio::sync::Mutex<Option<Tip>>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("audit_table", &self.audit_table)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Cheap: no I/O until the first event. `envelope` encrypts the reason and user
    /// agent: an envelope of [`crate::crypto::envelope::Purpose::Audit`] (the app builds
    /// one), so these fields have data keys of their own.
    pub fn new(
        db: Arc<dyn Database>,
        envelope: Arc<Envelope>,
        clock: Arc<dyn Clock>,
        config: &Config,
    ) -> Self {
        Self {
            db,
            envelope,
            clock,
            table: config.table.clone(),
            audit_table: config.audit_table.clone(),
            stage: config.stage.as_str().to_string(),
            shards: CHAIN_SHARDS,
            first_shard: None,
            tip: tokio::sync::Mutex::new(None),
        }
    }

    /// Starts on this shard instead of a random one (tests; retries may still move).
    pub fn starting_on_shard(mut self, shard: u32) -> Self {
        self.first_shard = Some(shard % self.shards);
        self
    }

    /// Records one event, durably and in its chain, before returning. An error means
    /// the event is not recorded: a handler guarding PHI must fail (503), not proceed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        match self.commit(event, Vec::new()).await {
            Ok(()) => Ok(()),
            Err(CommitError::Audit(err)) => Err(err),
            Err(CommitError::Change { .. }) => Err(AuditError::InvalidEvent("no change")),
        }
    }

    /// The unit of work: commits a change's entity writes (`ops`, at most
    /// [`MAX_CHANGE_OPS`]) together with its event and the chain head in one
    /// `TransactWriteItems` with a `ClientRequestToken`, so a change is kept exactly when
    /// its event is, and an SDK retry of a committed attempt is not a conflict. A chain
    /// conflict retries the whole unit (bounded); a failed condition of `ops` is the
    /// caller's [`CommitError::Change`] and writes nothing.
    pub async fn commit(&self, event: AuditEvent, ops: Vec<WriteOp>) -> Result<(), CommitError> {
        self.commit_all(vec![event], ops).await
    }

    /// [`Self::commit`] for a change that is several audited acts at once (a message that
    /// shares its attachments: the send and one share per document): the events take
    /// consecutive places in one chain, in order, in the same transaction as `ops`, which
    /// may then hold at most `MAX_TRANSACTION_OPS - 1 - events.len()` writes.
    pub async fn commit_all(
        &self,
        events: Vec<AuditEvent>,
        ops: Vec<WriteOp>,
    ) -> Result<(), CommitError> {
        let result = self.try_commit_all(events, ops).await;
        if let Err(CommitError::Audit(
            err @ (AuditError::Store(_)
            | AuditError::Crypto(_)
            | AuditError::Contended { .. }
            | AuditError::Corrupt(_)),
        )) = &result
        {
            // The request fails with a 503 and its change is not kept; an operator
            // hears of it through the AuditWriteFailures alarm.
            tracing::error!(error = %err, "an audit event could not be written");
            crate::telemetry::emit(
                crate::telemetry::metrics::AUDIT_WRITE_FAILED,
                &self.stage,
                1,
                self.clock.now().timestamp_millis(),
            );
        }
        result
    }

    async fn try_commit_all(
        &self,
        events: Vec<AuditEvent>,
        ops: Vec<WriteOp>,
    ) -> Result<(), CommitError> {
        if events.is_empty() {
            return Err(AuditError::InvalidEvent("no event").into());
        }
        for event in &events {
            check(event)?;
        }
        if ops.len() + events.len() + 1 > MAX_TRANSACTION_OPS {
            return Err(AuditError::InvalidEvent("change has too many writes").into());
        }
        let now = self.clock.now();
        let time = format_time(now);
        let expires_at = now.timestamp() + RETENTION_DAYS * 86_400;
        let event_ids: Vec<String> = events
            .iter()
            .map(|_| crate::domain::Id::generate(now).to_string())
            .collect();
        let mut tip = self.tip.lock().await;
        let mut conflicts_here = 0;
        for attempt in 1..=MAX_ATTEMPTS {
            let current = match tip.as_ref() {
                Some(current) => current.clone(),
                None => {
                    let shard = self.first_shard.unwrap_or_else(|| self.random_shard(None));
                    self.load_tip(shard).await?
                }
            };
            let mut sealed = Vec::with_capacity(events.len());
            let mut place = current.clone();
            for (event, event_id) in events.iter().zip(&event_ids) {
                let stored = self
                    .seal(event, &place, event_id, &time, expires_at)
                    .await?;
                place = Tip::after(&stored);
                sealed.push(stored);
            }
            let token = format!("{}-{attempt}", event_ids[0]);
            match self.append(&sealed, &current, &ops, &token).await {
                Ok(()) => {
                    *tip = Some(place);
                    return Ok(());
                }
                Err(DbError::ConditionFailed { op: Some(op) }) if op < ops.len() => {
                    return Err(CommitError::Change { op });
                }
                Err(DbError::ConditionFailed { .. } | DbError::TransactionConflict) => {
                    conflicts_here += 1;
                    tracing::debug!(
                        shard = current.shard,
                        attempt,
                        "audit chain advanced elsewhere"
                    );
                    let shard = if conflicts_here >= CONFLICTS_BEFORE_MOVING {
                        conflicts_here = 0;
                        self.random_shard(Some(current.shard))
                    } else {
                        current.shard
                    };
                    // Forget first: if the re-read fails, the next call starts afresh.
                    *tip = None;
                    *tip = Some(self.load_tip(shard).await?);
                }
                Err(err) => return Err(AuditError::Store(err).into()),
            }
        }
        Err(AuditError::Contended {
            attempts: MAX_ATTEMPTS,
        }
        .into())
    }

    fn random_shard(&self, not: Option<u32>) -> u32 {
        let mut rng = rand::thread_rng();
        loop {
            let shard = rng.gen_range(0..self.shards);
            if Some(shard) != not || self.shards == 1 {
                return shard;
            }
        }
    }

    async fn load_tip(&self, shard: u32) -> Result<Tip, AuditError> {
        let item = self
            .db
            .get(&self.table, &head_key(shard))
            .await
            .map_err(AuditError::Store)?;
        let Some(item) = item else {
            return Ok(Tip::genesis(shard));
        };
        let head = ChainHead::from_item(shard, &item).map_err(AuditError::Corrupt)?;
        Ok(Tip {
            shard,
            next_seq: head.seq + 1,
            prev_hash: head.hash,
            prev_time: Some(head.time),
            prev_id: Some(head.event_id),
        })
    }

    /// Builds the stored event for this place in the chain; the ciphertexts are bound to
    /// the audit item, so they are sealed again for each attempt.
    async fn seal(
        &self,
        event: &AuditEvent,
        tip: &Tip,
        event_id: &str,
        time: &str,
        expires_at: i64,
    ) -> Result<StoredEvent, AuditError> {
        let (pk, sk) = (chain_pk(tip.shard), seq_sk(tip.next_seq));
        let binding = |attribute| Binding {
            table: &self.audit_table,
            pk: &pk,
            sk: &sk,
            attribute,
        };
        let reason = match &event.reason {
            Some(reason) => Some(
                self.envelope
                    .encrypt(&binding(attr::REASON), reason.as_str().as_bytes())
                    .await
                    .map_err(AuditError::Crypto)?,
            ),
            None => None,
        };
        let user_agent = match &event.origin.user_agent {
            Some(ua) => Some(
                self.envelope
                    .encrypt(&binding(attr::USER_AGENT), ua.as_bytes())
                    .await
                    .map_err(AuditError::Crypto)?,
            ),
            None => None,
        };
        let mut stored = StoredEvent {
            shard: tip.shard,
            seq: tip.next_seq,
            event_id: event_id.to_string(),
            time: time.to_string(),
            actor: event.actor.clone(),
            action: event.action,
            resource: event.resource.clone(),
            outcome: event.outcome,
            request_id: event.origin.request_id.clone(),
            source_ip: event.origin.source_ip.map(|ip| ip.to_string()),
            user_agent,
            reason,
            expires_at,
            prev_id: tip.prev_id.clone(),
            prev_time: tip.prev_time.clone(),
            prev_hash: tip.prev_hash.clone(),
            hash: String::new(),
        };
        stored.hash = stored.compute_hash();
        Ok(stored)
    }

    /// One attempt: the change's writes first (so a failed condition's index is the
    /// caller's), then the events and the head, which moves to the last of them.
    async fn append(
        &self,
        sealed: &[StoredEvent],
        tip: &Tip,
        change: &[WriteOp],
        token: &str,
    ) -> Result<(), DbError> {
        let Some(last) = sealed.last() else {
            return Err(DbError::Invalid("an append without an event".into()));
        };
        let head_condition = if tip.next_seq == 0 {
            Condition::NotExists
        } else {
            Condition::And(vec![
                Condition::Equals(attr::SEQ.into(), Value::N(tip.next_seq as i64 - 1)),
                Condition::Equals(attr::HASH.into(), Value::S(tip.prev_hash.clone())),
            ])
        };
        let head = Update::new()
            .set(attr::SEQ, Value::N(last.seq as i64))
            .set(attr::HASH, last.hash.clone())
            .set(attr::TIME, last.time.clone())
            .set(attr::EVENT_ID, last.event_id.clone());
        let mut ops = change.to_vec();
        ops.extend(sealed.iter().map(|stored| WriteOp::Put {
            table: self.audit_table.clone(),
            item: stored.to_item(),
            condition: Some(Condition::NotExists),
        }));
        ops.push(WriteOp::Update {
            table: self.table.clone(),
            key: head_key(last.shard),
            update: head,
            condition: Some(head_condition),
        });
        self.db.transact_write_once(ops, token).await
    }
}

/// Refuses events that would break the index keys or smuggle text into id fields: a
/// handler bug, caught before anything is written.
fn check(event: &AuditEvent) -> Result<(), AuditError> {
    let id_ok = |value: &str| {
        !value.is_empty() && value.len() <= MAX_ID_LEN && !value.chars().any(char::is_control)
    };
    let actor = &event.actor;
    for (name, value) in [
        ("actor.user_id", &actor.user_id),
        ("actor.role", &actor.role),
        ("actor.session_id", &actor.session_id),
    ] {
        if value.as_deref().is_some_and(|v| !id_ok(v)) {
            return Err(AuditError::InvalidEvent(name));
        }
    }
    if let Some(resource) = &event.resource {
        let kind_ok = !resource.kind.is_empty()
            && resource.kind.len() <= 32
            && resource
                .kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !kind_ok {
            return Err(AuditError::InvalidEvent("resource.type"));
        }
        if !id_ok(&resource.id) {
            return Err(AuditError::InvalidEvent("resource.id"));
        }
    }
    Ok(())
}
