//! The local database: a crash-safe embedded store (redb, copy-on-write B-trees with
//! fsync on commit) in the local data folder, with DynamoDB's semantics for keys,
//! conditions, TTL, indexes, pagination and transactions.

use crate::clock::Clock;
use crate::ports::db::{
    check_client_request_token, is_expired, validate_item, validate_transaction, Condition,
    Database, DbError, Index, Item, Key, Query, QueryPage, Update, Value, WriteOp,
    CLIENT_REQUEST_TOKEN_SECS, PK, SK,
};
use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");
const INDEXES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("indexes");

/// The embedded store. Cheap to clone; the local queue shares its file.
#[derive(Clone)]
pub struct LocalStore {
    db: Arc<redb::Database>,
    clock: Arc<dyn Clock>,
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> DbError {
    DbError::Unavailable(Box::new(err))
}

/// Appends a length-prefixed part, so composite keys sort by part and never collide.
fn push_part(out: &mut Vec<u8>, part: &str) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part.as_bytes());
}

fn partition_prefix(table: &str, pk: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + pk.len() + 8);
    push_part(&mut out, table);
    push_part(&mut out, pk);
    out
}

fn item_key(table: &str, key: &Key) -> Vec<u8> {
    let mut out = partition_prefix(table, &key.pk);
    out.extend_from_slice(key.sk.as_bytes());
    out
}

fn index_prefix(table: &str, index: Index, pk: &str) -> Vec<u8> {
    let mut out = Vec::new();
    push_part(&mut out, table);
    push_part(&mut out, index.name());
    push_part(&mut out, pk);
    out
}

fn index_key(table: &str, index: Index, item: &Item, key: &Key) -> Option<Vec<u8>> {
    let pk = item.get(index.pk_attr())?.as_str()?;
    let sk = item.get(index.sk_attr())?.as_str()?;
    let mut out = index_prefix(table, index, pk);
    push_part(&mut out, sk);
    push_part(&mut out, &key.pk);
    out.extend_from_slice(key.sk.as_bytes());
    Some(out)
}

fn encode(item: &Item) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(item).map_err(unavailable)
}

fn decode(bytes: &[u8]) -> Result<Item, DbError> {
    serde_json::from_slice(bytes).map_err(unavailable)
}

/// Evaluates a condition; an expired item counts as absent.
fn holds(condition: &Condition, current: Option<&Item>) -> bool {
    let attr = |name: &str| current.and_then(|item| item.get(name));
    match condition {
        Condition::Exists => current.is_some(),
        Condition::NotExists => current.is_none(),
        Condition::Equals(name, value) => attr(name) == Some(value),
        Condition::AttributeExists(name) => attr(name).is_some(),
        Condition::AttributeNotExists(name) => attr(name).is_none(),
        Condition::LessThan(name, bound) => matches!(attr(name), Some(Value::N(n)) if n < bound),
        Condition::And(all) => all.iter().all(|c| holds(c, current)),
    }
}

/// Applies an update to the stored item (expired or not, as DynamoDB does).
fn apply(stored: Option<Item>, key: &Key, update: &Update) -> Result<Item, DbError> {
    let item = update.apply(stored, key)?;
    validate_item(&item)?;
    Ok(item)
}

struct Tx<'a> {
    items: redb::Table<'a, &'static [u8], &'static [u8]>,
    indexes: redb::Table<'a, &'static [u8], &'static [u8]>,
}

impl Tx<'_> {
    fn stored(&self, table: &str, key: &Key) -> Result<Option<Item>, DbError> {
        match self
            .items
            .get(item_key(table, key).as_slice())
            .map_err(unavailable)?
        {
            Some(bytes) => Ok(Some(decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn write(&mut self, table: &str, key: &Key, new: Option<&Item>) -> Result<(), DbError> {
        if let Some(old) = self.stored(table, key)? {
            for index in Index::ALL {
                if let Some(ik) = index_key(table, index, &old, key) {
                    self.indexes.remove(ik.as_slice()).map_err(unavailable)?;
                }
            }
        }
        let ik = item_key(table, key);
        match new {
            Some(item) => {
                self.items
                    .insert(ik.as_slice(), encode(item)?.as_slice())
                    .map_err(unavailable)?;
                for index in Index::ALL {
                    if let Some(idx) = index_key(table, index, item, key) {
                        self.indexes
                            .insert(idx.as_slice(), ik.as_slice())
                            .map_err(unavailable)?;
                    }
                }
            }
            None => {
                self.items.remove(ik.as_slice()).map_err(unavailable)?;
            }
        }
        Ok(())
    }
}

impl LocalStore {
    /// Opens (or creates) the store file.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, DbError> {
        let db = redb::Database::create(path).map_err(unavailable)?;
        let store = Self {
            db: Arc::new(db),
            clock,
        };
        store.write_tx(|_| Ok(()))?;
        Ok(store)
    }

    pub(crate) fn database(&self) -> Arc<redb::Database> {
        self.db.clone()
    }

    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    fn write_tx<T>(
        &self,
        body: impl FnOnce(&mut Tx<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let result = {
            let mut tx = Tx {
                items: txn.open_table(ITEMS).map_err(unavailable)?,
                indexes: txn.open_table(INDEXES).map_err(unavailable)?,
            };
            body(&mut tx)
        };
        match result {
            Ok(value) => {
                txn.commit().map_err(unavailable)?;
                Ok(value)
            }
            Err(err) => {
                txn.abort().map_err(unavailable)?;
                Err(err)
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(LocalStore) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(unavailable)?
    }

    /// Every stored item of a table, expired ones included: for tests that inspect what
    /// is really on disk (e.g. that no plaintext PHI is stored).
    pub fn raw_items(&self, table: &str) -> Result<Vec<Item>, DbError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let items = txn.open_table(ITEMS).map_err(unavailable)?;
        let mut prefix = Vec::new();
        push_part(&mut prefix, table);
        let mut out = Vec::new();
        for entry in items.range(prefix.as_slice()..).map_err(unavailable)? {
            let (k, v) = entry.map_err(unavailable)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn query_sync(&self, table: &str, query: &Query) -> Result<QueryPage, DbError> {
        let now = self.now();
        let txn = self.db.begin_read().map_err(unavailable)?;
        let items = txn.open_table(ITEMS).map_err(unavailable)?;
        // (sort position, item) for the partition, in ascending order.
        let mut rows: Vec<((String, String, String), Item)> = Vec::new();
        match query.index {
            None => {
                let prefix = partition_prefix(table, &query.pk);
                for entry in items.range(prefix.as_slice()..).map_err(unavailable)? {
                    let (k, v) = entry.map_err(unavailable)?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    let item = decode(v.value())?;
                    let sk = item
                        .get(SK)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    rows.push(((sk, String::new(), String::new()), item));
                }
            }
            Some(index) => {
                let indexes = txn.open_table(INDEXES).map_err(unavailable)?;
                let prefix = index_prefix(table, index, &query.pk);
                for entry in indexes.range(prefix.as_slice()..).map_err(unavailable)? {
                    let (k, v) = entry.map_err(unavailable)?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    let Some(bytes) = items.get(v.value()).map_err(unavailable)? else {
                        continue;
                    };
                    let item = decode(bytes.value())?;
                    let key = Key::of(&item)
                        .ok_or_else(|| DbError::Invalid("stored item without key".into()))?;
                    let gsk = item
                        .get(index.sk_attr())
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    rows.push(((gsk, key.pk, key.sk), item));
                }
            }
        }
        // By sort key as DynamoDB orders it (bytes), not as the index's length-prefixed
        // keys happen to sort (a shorter sort key would otherwise come first).
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if !query.ascending {
            rows.reverse();
        }
        let start = query.start.as_ref().map(|start| {
            let s = |name: &str| {
                start
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            match query.index {
                None => (s(SK), String::new(), String::new()),
                Some(index) => (s(index.sk_attr()), s(PK), s(SK)),
            }
        });
        let mut page = QueryPage::default();
        let mut scanned = 0u32;
        for (position, item) in rows {
            let sk_value = &position.0;
            if let Some(start) = &start {
                let after = if query.ascending {
                    position > *start
                } else {
                    position < *start
                };
                if !after {
                    continue;
                }
            }
            if let Some(condition) = &query.sk {
                if !condition.matches(sk_value) {
                    continue;
                }
            }
            scanned += 1;
            let last_key = query
                .key_attrs()
                .into_iter()
                .filter_map(|attr| Some((attr.to_string(), item.get(attr)?.clone())))
                .collect::<Item>();
            if !is_expired(&item, now) {
                page.items.push(item);
            }
            if scanned == query.limit {
                page.next = Some(last_key);
                break;
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl Database for LocalStore {
    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, DbError> {
        let (table, key) = (table.to_string(), key.clone());
        self.blocking(move |store| {
            let now = store.now();
            let txn = store.db.begin_read().map_err(unavailable)?;
            let items = txn.open_table(ITEMS).map_err(unavailable)?;
            let found = match items
                .get(item_key(&table, &key).as_slice())
                .map_err(unavailable)?
            {
                Some(bytes) => Some(decode(bytes.value())?),
                None => None,
            };
            Ok(found.filter(|item| !is_expired(item, now)))
        })
        .await
    }

    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), DbError> {
        let key = validate_item(&item)?;
        let table = table.to_string();
        self.blocking(move |store| {
            let now = store.now();
            store.write_tx(|tx| {
                let current = tx.stored(&table, &key)?.filter(|i| !is_expired(i, now));
                if let Some(condition) = &condition {
                    if !holds(condition, current.as_ref()) {
                        return Err(DbError::ConditionFailed { op: None });
                    }
                }
                tx.write(&table, &key, Some(&item))
            })
        })
        .await
    }

    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, DbError> {
        update.validate()?;
        let (table, key) = (table.to_string(), key.clone());
        self.blocking(move |store| {
            let now = store.now();
            store.write_tx(|tx| {
                let stored = tx.stored(&table, &key)?;
                let live = stored.as_ref().filter(|i| !is_expired(i, now));
                if let Some(condition) = &condition {
                    if !holds(condition, live) {
                        return Err(DbError::ConditionFailed { op: None });
                    }
                }
                let new = apply(stored, &key, &update)?;
                tx.write(&table, &key, Some(&new))?;
                Ok(new)
            })
        })
        .await
    }

    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        let (table, key) = (table.to_string(), key.clone());
        self.blocking(move |store| {
            let now = store.now();
            store.write_tx(|tx| {
                let live = tx.stored(&table, &key)?.filter(|i| !is_expired(i, now));
                if let Some(condition) = &condition {
                    if !holds(condition, live.as_ref()) {
                        return Err(DbError::ConditionFailed { op: None });
                    }
                }
                tx.write(&table, &key, None)?;
                Ok(live)
            })
        })
        .await
    }

    async fn query(&self, table: &str, query: Query) -> Result<QueryPage, DbError> {
        query.validate()?;
        let table = table.to_string();
        self.blocking(move |store| store.query_sync(&table, &query))
            .await
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), DbError> {
        self.transact(ops, None).await
    }

    async fn transact_write_once(&self, ops: Vec<WriteOp>, token: &str) -> Result<(), DbError> {
        check_client_request_token(token)?;
        self.transact(ops, Some(token.to_string())).await
    }

    async fn check(&self, _table: &str) -> Result<(), DbError> {
        self.blocking(|store| {
            store.db.begin_read().map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

/// The internal table of committed `ClientRequestToken`s (not a table of the app).
const TOKENS_TABLE: &str = "#client-request-tokens";

impl LocalStore {
    /// One atomic write transaction. A token is recorded in the same commit with a digest
    /// of the writes, so a repeat within [`CLIENT_REQUEST_TOKEN_SECS`] is answered as
    /// DynamoDB answers it: success without re-applying, or a mismatch error.
    async fn transact(&self, ops: Vec<WriteOp>, token: Option<String>) -> Result<(), DbError> {
        validate_transaction(&ops)?;
        for op in &ops {
            if let WriteOp::Put { item, .. } = op {
                validate_item(item)?;
            }
        }
        let digest = token.as_ref().map(|_| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(format!("{ops:?}").as_bytes()))
        });
        self.blocking(move |store| {
            let now = store.now();
            store.write_tx(|tx| {
                let token_key = token.as_deref().map(|t| Key::new(t, "TOKEN"));
                if let (Some(key), Some(digest)) = (&token_key, &digest) {
                    let seen = tx.stored(TOKENS_TABLE, key)?;
                    if let Some(seen) = seen.filter(|item| !is_expired(item, now)) {
                        return match seen.get("digest").and_then(Value::as_str) {
                            Some(d) if d == digest => Ok(()),
                            _ => Err(DbError::Invalid(
                                "the client request token was used for other writes".into(),
                            )),
                        };
                    }
                }
                // Check every condition against the state before the transaction…
                let mut planned = Vec::with_capacity(ops.len());
                for (i, op) in ops.iter().enumerate() {
                    let (table, key) = op.target();
                    let stored = tx.stored(table, &key)?;
                    let live = stored.as_ref().filter(|item| !is_expired(item, now));
                    let condition = match op {
                        WriteOp::Put { condition, .. }
                        | WriteOp::Update { condition, .. }
                        | WriteOp::Delete { condition, .. } => condition.as_ref(),
                        WriteOp::Check { condition, .. } => Some(condition),
                    };
                    if condition.is_some_and(|c| !holds(c, live)) {
                        return Err(DbError::ConditionFailed { op: Some(i) });
                    }
                    let new = match op {
                        WriteOp::Put { item, .. } => Some(Some(item.clone())),
                        WriteOp::Update { update, .. } => Some(Some(apply(stored, &key, update)?)),
                        WriteOp::Delete { .. } => Some(None),
                        WriteOp::Check { .. } => None,
                    };
                    planned.push((table.to_string(), key, new));
                }
                // …then apply them all in the same commit.
                for (table, key, new) in planned {
                    if let Some(new) = new {
                        tx.write(&table, &key, new.as_ref())?;
                    }
                }
                if let (Some(key), Some(digest)) = (token_key, digest) {
                    let record = crate::ports::db::item([
                        (PK, Value::S(key.pk.clone())),
                        (SK, Value::S(key.sk.clone())),
                        ("digest", Value::S(digest)),
                        ("expires_at", Value::N(now + CLIENT_REQUEST_TOKEN_SECS)),
                    ]);
                    tx.write(TOKENS_TABLE, &key, Some(&record))?;
                }
                Ok(())
            })
        })
        .await
    }
}
