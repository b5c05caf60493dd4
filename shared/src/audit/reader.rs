//! Reading the audit trail: a chain shard in order (verification), and events by
//! actor, resource or action within a time range (compliance queries), each served by
//! one index query per page, never a scan.

use super::chain::{
    action_index_pk, actor_index_pk, attr, chain_pk, format_time, head_key, resource_index_pk,
    seq_sk, ChainHead, StoredEvent,
};
use super::event::Action;
use super::AuditError;
use crate::config::Config;
use crate::crypto::{Binding, Envelope};
use crate::http::pagination::{Page, PageRequest};
use crate::ports::db::{Database, DbError, Index, Item, Query, QueryPage, SortKey};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Inclusive bounds on event time; either may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    pub fn contains(&self, time: &str) -> bool {
        self.from
            .is_none_or(|from| time >= format_time(from).as_str())
            && self.to.is_none_or(|to| time <= format_time(to).as_str())
    }

    /// The index sort-key condition (`<time>#<event id>`): `~` sorts after every id.
    fn sort_key(&self) -> Option<SortKey> {
        let upper = |to: DateTime<Utc>| format!("{}#~", format_time(to));
        match (self.from, self.to) {
            (None, None) => None,
            (Some(from), None) => Some(SortKey::Ge(format_time(from))),
            (None, Some(to)) => Some(SortKey::Le(upper(to))),
            (Some(from), Some(to)) => Some(SortKey::Between(format_time(from), upper(to))),
        }
    }
}

#[derive(Clone)]
pub struct AuditReader {
    db: Arc<dyn Database>,
    table: String,
    audit_table: String,
}

impl std::fmt::Debug for AuditReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditReader")
            .field("audit_table", &self.audit_table)
            .finish_non_exhaustive()
    }
}

fn from_db(err: DbError) -> AuditError {
    match err {
        DbError::InvalidStartKey => AuditError::InvalidCursor,
        other => AuditError::Store(other),
    }
}

impl AuditReader {
    pub fn new(db: Arc<dyn Database>, config: &Config) -> Self {
        Self::with_tables(db, &config.table, &config.audit_table)
    }

    /// The reader of an app's audit table.
    pub fn of(app: &crate::AppContext) -> Self {
        Self::new(app.db.clone(), &app.config)
    }

    /// For tools that know the table names but have no full [`Config`].
    pub fn with_tables(db: Arc<dyn Database>, table: &str, audit_table: &str) -> Self {
        Self {
            db,
            table: table.to_string(),
            audit_table: audit_table.to_string(),
        }
    }

    /// One raw page of a shard from `from_seq` on, in chain order. Items are returned
    /// unparsed: verification judges them.
    pub async fn chain_page(
        &self,
        shard: u32,
        from_seq: u64,
        limit: u32,
        start: Option<Item>,
    ) -> Result<QueryPage, AuditError> {
        let query = Query::partition(chain_pk(shard))
            .sort_key(SortKey::Ge(seq_sk(from_seq)))
            .limit(limit)
            .start(start);
        self.db
            .query(&self.audit_table, query)
            .await
            .map_err(from_db)
    }

    /// Every anchor, oldest first, unparsed (see `anchor.rs`).
    pub async fn anchor_items(&self) -> Result<Vec<Item>, AuditError> {
        super::anchor::anchor_items(self.db.as_ref(), &self.audit_table).await
    }

    /// The first event of a shard at or after `seq`, if any.
    pub async fn first_at_or_after(
        &self,
        shard: u32,
        seq: u64,
    ) -> Result<Option<Item>, AuditError> {
        let mut start = None;
        loop {
            let page = self.chain_page(shard, seq, 16, start).await?;
            if let Some(item) = page.items.into_iter().next() {
                return Ok(Some(item));
            }
            match page.next {
                Some(next) => start = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// The shard's head, from the domain table.
    pub async fn head(&self, shard: u32) -> Result<Option<ChainHead>, AuditError> {
        let item = self
            .db
            .get(&self.table, &head_key(shard))
            .await
            .map_err(AuditError::Store)?;
        item.map(|item| ChainHead::from_item(shard, &item).map_err(AuditError::Corrupt))
            .transpose()
    }

    /// A shard's events in chain order (oldest first), paginated.
    pub async fn chain(
        &self,
        shard: u32,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>, AuditError> {
        let result = self
            .chain_page(shard, 0, page.limit, page.start.clone())
            .await?;
        parse_page(result)
    }

    /// Events of one user, newest first.
    pub async fn by_actor(
        &self,
        user_id: &str,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>, AuditError> {
        self.index_page(Index::Gsi1, actor_index_pk(user_id), range, page)
            .await
    }

    /// Events on one resource, newest first.
    pub async fn by_resource(
        &self,
        kind: &str,
        id: &str,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>, AuditError> {
        self.index_page(Index::Gsi2, resource_index_pk(kind, id), range, page)
            .await
    }

    /// Events of one action, newest first.
    pub async fn by_action(
        &self,
        action: Action,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>, AuditError> {
        self.index_page(Index::Gsi3, action_index_pk(action), range, page)
            .await
    }

    async fn index_page(
        &self,
        index: Index,
        pk: String,
        range: &TimeRange,
        page: &PageRequest,
    ) -> Result<Page<StoredEvent>, AuditError> {
        let mut query = Query::partition(pk)
            .on(index)
            .descending()
            .limit(page.limit)
            .start(page.start.clone());
        if let Some(sort) = range.sort_key() {
            query = query.sort_key(sort);
        }
        let result = self
            .db
            .query(&self.audit_table, query)
            .await
            .map_err(from_db)?;
        parse_page(result)
    }

    /// Decrypts an event's reason, for the audited reveal path of the query API.
    pub async fn reason(
        &self,
        envelope: &Envelope,
        event: &StoredEvent,
    ) -> Result<Option<Zeroizing<String>>, AuditError> {
        self.open(envelope, event, attr::REASON, event.reason.as_deref())
            .await
    }

    /// Decrypts an event's user agent.
    pub async fn user_agent(
        &self,
        envelope: &Envelope,
        event: &StoredEvent,
    ) -> Result<Option<Zeroizing<String>>, AuditError> {
        self.open(
            envelope,
            event,
            attr::USER_AGENT,
            event.user_agent.as_deref(),
        )
        .await
    }

    async fn open(
        &self,
        envelope: &Envelope,
        event: &StoredEvent,
        attribute: &str,
        ciphertext: Option<&[u8]>,
    ) -> Result<Option<Zeroizing<String>>, AuditError> {
        let Some(ciphertext) = ciphertext else {
            return Ok(None);
        };
        let key = event.key();
        let binding = Binding {
            table: &self.audit_table,
            pk: &key.pk,
            sk: &key.sk,
            attribute,
        };
        let plain = envelope
            .decrypt(&binding, ciphertext)
            .await
            .map_err(AuditError::Crypto)?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| AuditError::Corrupt(super::chain::Malformed(attribute.into())))?;
        Ok(Some(Zeroizing::new(text)))
    }
}

fn parse_page(page: QueryPage) -> Result<Page<StoredEvent>, AuditError> {
    Page::from_query(page, |item| {
        StoredEvent::from_item(&item).map_err(AuditError::Corrupt)
    })
}
