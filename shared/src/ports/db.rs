//! The database port: a small, typed subset of DynamoDB that both adapters implement
//! with the same semantics (see the contract tests in `shared/tests/contract`).
//!
//! Every table has string keys `pk`/`sk`; items may carry sparse index keys
//! `gsi1pk`/`gsi1sk`, `gsi2pk`/`gsi2sk` and `gsi3pk`/`gsi3sk` (the domain table has
//! `gsi1` and `gsi2`; the audit table has all three), and a TTL attribute `expires_at` (epoch
//! seconds). Items whose TTL has passed are invisible: reads skip them and conditions
//! treat them as absent, so callers never depend on when DynamoDB actually deletes them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// TTL attribute (epoch seconds) on every table.
pub const TTL: &str = "expires_at";
/// DynamoDB's transaction limit.
pub const MAX_TRANSACTION_OPS: usize = 100;
/// DynamoDB's bound on a `ClientRequestToken`.
pub const MAX_CLIENT_REQUEST_TOKEN_LEN: usize = 36;
/// How long DynamoDB remembers a `ClientRequestToken`.
pub const CLIENT_REQUEST_TOKEN_SECS: i64 = 10 * 60;

/// A token DynamoDB accepts: 1 to 36 printable ASCII characters.
pub fn check_client_request_token(token: &str) -> Result<(), DbError> {
    if token.is_empty()
        || token.len() > MAX_CLIENT_REQUEST_TOKEN_LEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(DbError::Invalid(
            "a client request token has 1 to 36 printable characters".into(),
        ));
    }
    Ok(())
}
/// Upper bound of one query page, whatever the caller asks for.
pub const MAX_QUERY_LIMIT: u32 = 1000;

/// An attribute value. Numbers are integers: amounts are kept in cents and times in
/// epoch seconds, so no decimal arithmetic is ever needed in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    S(String),
    N(i64),
    B(#[serde(with = "crate::encoding::base64_bytes")] Vec<u8>),
    Bool(bool),
    L(Vec<Value>),
    M(Item),
    Null,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::S(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::N(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::B(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::S(value.to_string())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::S(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::N(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Value::B(value)
    }
}

pub type Item = BTreeMap<String, Value>;

/// Builds an item from `(name, value)` pairs.
pub fn item<const N: usize>(pairs: [(&str, Value); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    /// Reads the key out of an item; `None` when either key attribute is missing.
    pub fn of(item: &Item) -> Option<Self> {
        Some(Self::new(item.get(PK)?.as_str()?, item.get(SK)?.as_str()?))
    }
}

/// Global secondary indexes of the tables (sparse: items without the keys are not indexed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    Gsi1,
    Gsi2,
    /// On the audit table only (events by action).
    Gsi3,
}

impl Index {
    pub const ALL: [Index; 3] = [Index::Gsi1, Index::Gsi2, Index::Gsi3];

    pub fn name(self) -> &'static str {
        match self {
            Index::Gsi1 => "gsi1",
            Index::Gsi2 => "gsi2",
            Index::Gsi3 => "gsi3",
        }
    }

    pub fn pk_attr(self) -> &'static str {
        match self {
            Index::Gsi1 => "gsi1pk",
            Index::Gsi2 => "gsi2pk",
            Index::Gsi3 => "gsi3pk",
        }
    }

    pub fn sk_attr(self) -> &'static str {
        match self {
            Index::Gsi1 => "gsi1sk",
            Index::Gsi2 => "gsi2sk",
            Index::Gsi3 => "gsi3sk",
        }
    }
}

/// A condition on the current item, checked atomically with the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The item exists (and has not expired).
    Exists,
    /// No live item has this key: how uniqueness is enforced.
    NotExists,
    /// The attribute exists and equals the value (optimistic locking, state machines).
    Equals(String, Value),
    AttributeExists(String),
    AttributeNotExists(String),
    /// The numeric attribute is below the value (bounded counters).
    LessThan(String, i64),
    And(Vec<Condition>),
}

/// An update expression: `SET` values, `REMOVE` attributes, `ADD` to numeric counters
/// (a missing counter starts at zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub set: Vec<(String, Value)>,
    pub remove: Vec<String>,
    pub add: Vec<(String, i64)>,
}

impl Update {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set.push((name.to_string(), value.into()));
        self
    }

    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_string());
        self
    }

    pub fn add(mut self, name: &str, by: i64) -> Self {
        self.add.push((name.to_string(), by));
        self
    }

    /// The item after this update, as DynamoDB computes it (`set`, then `remove`, then
    /// `add`; an absent item starts as its key): what a transaction commits, computed
    /// without reading it back.
    pub fn apply(&self, stored: Option<Item>, key: &Key) -> Result<Item, DbError> {
        let mut item = stored.unwrap_or_else(|| {
            Item::from([
                (PK.to_string(), Value::S(key.pk.clone())),
                (SK.to_string(), Value::S(key.sk.clone())),
            ])
        });
        for (name, value) in &self.set {
            item.insert(name.clone(), value.clone());
        }
        for name in &self.remove {
            item.remove(name);
        }
        for (name, by) in &self.add {
            let current = match item.get(name) {
                None => 0,
                Some(Value::N(n)) => *n,
                Some(_) => return Err(DbError::Invalid(format!("{name} is not a number"))),
            };
            let next = current
                .checked_add(*by)
                .ok_or_else(|| DbError::Invalid(format!("{name} overflows")))?;
            item.insert(name.clone(), Value::N(next));
        }
        Ok(item)
    }

    pub(crate) fn validate(&self) -> Result<(), DbError> {
        let mut names: Vec<&str> = self
            .set
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.remove.iter().map(String::as_str))
            .chain(self.add.iter().map(|(n, _)| n.as_str()))
            .collect();
        if names.is_empty() {
            return Err(DbError::Invalid(
                "an update needs at least one action".into(),
            ));
        }
        if names.iter().any(|n| *n == PK || *n == SK) {
            return Err(DbError::Invalid("key attributes cannot be updated".into()));
        }
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        if names.len() != total {
            return Err(DbError::Invalid(
                "an attribute appears twice in one update".into(),
            ));
        }
        Ok(())
    }
}

/// A sort-key condition for queries (string order is UTF-8 byte order, as in DynamoDB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Eq(String),
    BeginsWith(String),
    /// Inclusive on both ends.
    Between(String, String),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
}

impl SortKey {
    pub fn matches(&self, sk: &str) -> bool {
        match self {
            SortKey::Eq(v) => sk == v,
            SortKey::BeginsWith(p) => sk.starts_with(p.as_str()),
            SortKey::Between(a, b) => sk >= a.as_str() && sk <= b.as_str(),
            SortKey::Lt(v) => sk < v.as_str(),
            SortKey::Le(v) => sk <= v.as_str(),
            SortKey::Gt(v) => sk > v.as_str(),
            SortKey::Ge(v) => sk >= v.as_str(),
        }
    }
}

/// A query within one partition of the table or of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub index: Option<Index>,
    pub pk: String,
    pub sk: Option<SortKey>,
    pub ascending: bool,
    /// Items examined per page (as DynamoDB's `Limit`): expired items count but are not
    /// returned, so a page may hold fewer items and still have a `next` key.
    pub limit: u32,
    /// Where to resume: the `next` of the previous page.
    pub start: Option<Item>,
}

impl Query {
    pub fn partition(pk: impl Into<String>) -> Self {
        Self {
            index: None,
            pk: pk.into(),
            sk: None,
            ascending: true,
            limit: 100,
            start: None,
        }
    }

    pub fn on(mut self, index: Index) -> Self {
        self.index = Some(index);
        self
    }

    pub fn sort_key(mut self, condition: SortKey) -> Self {
        self.sk = Some(condition);
        self
    }

    pub fn descending(mut self) -> Self {
        self.ascending = false;
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    pub fn start(mut self, start: Option<Item>) -> Self {
        self.start = start;
        self
    }

    /// The key attributes a `next`/`start` key holds for this query.
    pub fn key_attrs(&self) -> Vec<&'static str> {
        match self.index {
            None => vec![PK, SK],
            Some(index) => vec![PK, SK, index.pk_attr(), index.sk_attr()],
        }
    }

    pub(crate) fn validate(&self) -> Result<(), DbError> {
        if self.limit == 0 || self.limit > MAX_QUERY_LIMIT {
            return Err(DbError::Invalid(format!(
                "query limit must be 1..={MAX_QUERY_LIMIT}"
            )));
        }
        if let Some(start) = &self.start {
            let attrs = self.key_attrs();
            let well_formed = start.len() == attrs.len()
                && attrs
                    .iter()
                    .all(|a| matches!(start.get(*a), Some(Value::S(_))));
            let pk_attr = self.index.map_or(PK, Index::pk_attr);
            let same_partition = start.get(pk_attr).and_then(Value::as_str) == Some(&self.pk);
            if !well_formed || !same_partition {
                return Err(DbError::InvalidStartKey);
            }
        }
        Ok(())
    }
}

/// One page of a query. `next` is DynamoDB's `LastEvaluatedKey`: present whenever the
/// page stopped at the limit, even if nothing follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPage {
    pub items: Vec<Item>,
    pub next: Option<Item>,
}

/// One write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        table: String,
        item: Item,
        condition: Option<Condition>,
    },
    Update {
        table: String,
        key: Key,
        update: Update,
        condition: Option<Condition>,
    },
    Delete {
        table: String,
        key: Key,
        condition: Option<Condition>,
    },
    /// Writes nothing; fails the transaction if the condition does not hold.
    Check {
        table: String,
        key: Key,
        condition: Condition,
    },
}

impl WriteOp {
    pub fn target(&self) -> (&str, Key) {
        match self {
            WriteOp::Put { table, item, .. } => (table, Key::of(item).unwrap_or(Key::new("", ""))),
            WriteOp::Update { table, key, .. }
            | WriteOp::Delete { table, key, .. }
            | WriteOp::Check { table, key, .. } => (table, key.clone()),
        }
    }
}

/// Database failures, identical across adapters.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A condition did not hold. In a transaction, `op` is the index of the failing write.
    #[error("condition failed")]
    ConditionFailed { op: Option<usize> },
    /// Another transaction touched the same items; retrying may succeed.
    #[error("transaction conflict")]
    TransactionConflict,
    /// The pagination key does not belong to this query.
    #[error("invalid start key")]
    InvalidStartKey,
    /// A request the store refuses (a programming error, not bad user input).
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("throttled")]
    Throttled,
    /// The store could not be reached or failed.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DbError {
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, DbError::ConditionFailed { .. })
    }
}

impl From<DbError> for crate::ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::InvalidStartKey => {
                crate::ApiError::validation("the cursor is not valid for this list")
            }
            DbError::ConditionFailed { .. } | DbError::TransactionConflict => {
                crate::ApiError::conflict("the resource was changed by another request; retry")
            }
            DbError::Throttled | DbError::Unavailable(_) => {
                crate::ApiError::unavailable("database", err)
            }
            DbError::Invalid(_) => crate::ApiError::internal(err),
        }
    }
}

/// The database port.
#[async_trait]
pub trait Database: Send + Sync {
    /// Strongly consistent read of one item.
    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, DbError>;
    /// Creates or replaces an item.
    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), DbError>;
    /// Updates (or creates) an item and returns it as it is after the update.
    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, DbError>;
    /// Deletes an item and returns what it held, if it existed.
    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, DbError>;
    /// Queries one partition of the table or an index.
    async fn query(&self, table: &str, query: Query) -> Result<QueryPage, DbError>;
    /// All writes succeed or none does (at most [`MAX_TRANSACTION_OPS`], distinct items).
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), DbError>;
    /// [`Database::transact_write`] with DynamoDB's `ClientRequestToken` (1 to
    /// [`MAX_CLIENT_REQUEST_TOKEN_LEN`] characters): the same token with the same writes
    /// within [`CLIENT_REQUEST_TOKEN_SECS`] of a commit succeeds without applying them
    /// again, so a retry of a commit whose answer was lost is not a conflict; the same
    /// token with other writes is refused ([`DbError::Invalid`]). Both adapters honour
    /// it; doubles may ignore it.
    async fn transact_write_once(&self, ops: Vec<WriteOp>, token: &str) -> Result<(), DbError> {
        check_client_request_token(token)?;
        self.transact_write(ops).await
    }
    /// Cheap reachability check of a table, for `/health`.
    async fn check(&self, table: &str) -> Result<(), DbError>;
}

/// Adds `by` to a counter and returns the new value; sets the TTL when given.
/// The building block of rate limits and sequence numbers.
pub async fn increment(
    db: &dyn Database,
    table: &str,
    key: &Key,
    attr: &str,
    by: i64,
    expires_at: Option<i64>,
) -> Result<i64, DbError> {
    let mut update = Update::new().add(attr, by);
    if let Some(ttl) = expires_at {
        update = update.set(TTL, ttl);
    }
    let item = db.update(table, key, update, None).await?;
    item.get(attr)
        .and_then(Value::as_i64)
        .ok_or_else(|| DbError::Invalid(format!("{attr} is not a number")))
}

/// True when the item carries a TTL at or before `now` (epoch seconds).
pub fn is_expired(item: &Item, now: i64) -> bool {
    matches!(item.get(TTL), Some(Value::N(ttl)) if *ttl <= now)
}

/// Checks a transaction's shape the same way for both adapters.
pub(crate) fn validate_transaction(ops: &[WriteOp]) -> Result<(), DbError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
        return Err(DbError::Invalid(format!(
            "a transaction holds 1..={MAX_TRANSACTION_OPS} writes"
        )));
    }
    let mut targets: Vec<(String, Key)> = Vec::with_capacity(ops.len());
    for op in ops {
        let (table, key) = op.target();
        if key.pk.is_empty() || key.sk.is_empty() {
            return Err(DbError::Invalid("every write needs a full key".into()));
        }
        if let WriteOp::Update { update, .. } = op {
            update.validate()?;
        }
        if targets.iter().any(|(t, k)| t == table && *k == key) {
            return Err(DbError::Invalid(
                "a transaction touches an item twice".into(),
            ));
        }
        targets.push((table.to_string(), key));
    }
    Ok(())
}

/// Checks an item before a put: full string keys, string index keys.
pub(crate) fn validate_item(item: &Item) -> Result<Key, DbError> {
    let key =
        Key::of(item).ok_or_else(|| DbError::Invalid("an item needs string pk and sk".into()))?;
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(DbError::Invalid("key attributes must not be empty".into()));
    }
    for index in Index::ALL {
        for attr in [index.pk_attr(), index.sk_attr()] {
            if let Some(value) = item.get(attr) {
                if !matches!(value, Value::S(s) if !s.is_empty()) {
                    return Err(DbError::Invalid(format!(
                        "{attr} must be a non-empty string"
                    )));
                }
            }
        }
    }
    Ok(key)
}
