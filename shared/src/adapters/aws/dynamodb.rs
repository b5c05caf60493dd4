//! The database port on DynamoDB. Conditions and updates are rendered with placeholder
//! names and values only; expired items (TTL passed, not yet deleted by DynamoDB) are
//! treated as absent by reads and conditions, exactly like the local store.

use crate::clock::Clock;
use crate::ports::db::{
    check_client_request_token, is_expired, validate_item, validate_transaction, Condition,
    Database, DbError, Index, Item, Key, Query, QueryPage, SortKey, Update, Value, WriteOp, PK, SK,
    TTL,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValue, TransactWriteItem,
    Update as DdbUpdate,
};
use std::collections::HashMap;
use std::sync::Arc;

pub struct DynamoDb {
    client: super::LazyClient<aws_sdk_dynamodb::Client>,
    clock: Arc<dyn Clock>,
}

impl DynamoDb {
    pub fn new(
        client: impl Into<super::LazyClient<aws_sdk_dynamodb::Client>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client: client.into(),
            clock,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }
}

fn to_av(value: &Value) -> AttributeValue {
    match value {
        Value::S(s) => AttributeValue::S(s.clone()),
        Value::N(n) => AttributeValue::N(n.to_string()),
        Value::B(b) => AttributeValue::B(Blob::new(b.clone())),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::L(list) => AttributeValue::L(list.iter().map(to_av).collect()),
        Value::M(map) => AttributeValue::M(to_item(map)),
        Value::Null => AttributeValue::Null(true),
    }
}

fn from_av(value: &AttributeValue) -> Result<Value, DbError> {
    Ok(match value {
        AttributeValue::S(s) => Value::S(s.clone()),
        AttributeValue::N(n) => Value::N(
            n.parse()
                .map_err(|_| DbError::Invalid("a stored number is not an integer".into()))?,
        ),
        AttributeValue::B(b) => Value::B(b.clone().into_inner()),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(list) => Value::L(list.iter().map(from_av).collect::<Result<_, _>>()?),
        AttributeValue::M(map) => Value::M(from_item(map)?),
        AttributeValue::Null(_) => Value::Null,
        _ => return Err(DbError::Invalid("unsupported attribute type".into())),
    })
}

fn to_item(item: &Item) -> HashMap<String, AttributeValue> {
    item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Item, DbError> {
    item.iter()
        .map(|(k, v)| Ok((k.clone(), from_av(v)?)))
        .collect()
}

fn key_map(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

/// Placeholder names (`#n0`) and values (`:v0`) of one request.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `live` = the item exists and has not expired.
    fn not_expired(&mut self, now: i64) -> String {
        let ttl = self.name(TTL);
        let now = self.value(AttributeValue::N(now.to_string()));
        format!("(attribute_not_exists({ttl}) OR {ttl} > {now})")
    }

    fn expired(&mut self, now: i64) -> String {
        let ttl = self.name(TTL);
        let now = self.value(AttributeValue::N(now.to_string()));
        format!("{ttl} <= {now}")
    }

    fn condition(&mut self, condition: &Condition, now: i64) -> String {
        match condition {
            Condition::Exists => {
                let pk = self.name(PK);
                format!("(attribute_exists({pk}) AND {})", self.not_expired(now))
            }
            Condition::NotExists => {
                let pk = self.name(PK);
                format!("(attribute_not_exists({pk}) OR {})", self.expired(now))
            }
            Condition::Equals(attr, value) => {
                let (a, v) = (self.name(attr), self.value(to_av(value)));
                format!("({a} = {v} AND {})", self.not_expired(now))
            }
            Condition::AttributeExists(attr) => {
                let a = self.name(attr);
                format!("(attribute_exists({a}) AND {})", self.not_expired(now))
            }
            Condition::AttributeNotExists(attr) => {
                let a = self.name(attr);
                format!("(attribute_not_exists({a}) OR {})", self.expired(now))
            }
            Condition::LessThan(attr, bound) => {
                let (a, v) = (
                    self.name(attr),
                    self.value(AttributeValue::N(bound.to_string())),
                );
                format!("({a} < {v} AND {})", self.not_expired(now))
            }
            Condition::And(all) if all.is_empty() => {
                let pk = self.name(PK);
                format!("(attribute_exists({pk}) OR attribute_not_exists({pk}))")
            }
            Condition::And(all) => {
                let parts: Vec<String> = all.iter().map(|c| self.condition(c, now)).collect();
                format!("({})", parts.join(" AND "))
            }
        }
    }

    fn update(&mut self, update: &Update) -> String {
        let mut clauses = Vec::new();
        if !update.set.is_empty() {
            let sets: Vec<String> = update
                .set
                .iter()
                .map(|(attr, value)| format!("{} = {}", self.name(attr), self.value(to_av(value))))
                .collect();
            clauses.push(format!("SET {}", sets.join(", ")));
        }
        if !update.remove.is_empty() {
            let removes: Vec<String> = update.remove.iter().map(|attr| self.name(attr)).collect();
            clauses.push(format!("REMOVE {}", removes.join(", ")));
        }
        if !update.add.is_empty() {
            let adds: Vec<String> = update
                .add
                .iter()
                .map(|(attr, by)| {
                    format!(
                        "{} {}",
                        self.name(attr),
                        self.value(AttributeValue::N(by.to_string()))
                    )
                })
                .collect();
            clauses.push(format!("ADD {}", adds.join(", ")));
        }
        clauses.join(" ")
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// Maps any DynamoDB error to the port's typed error; the SDK text stays in `source`.
fn map_err<E, R>(err: SdkError<E, R>) -> DbError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("ConditionalCheckFailedException") => DbError::ConditionFailed { op: None },
        Some("TransactionConflictException") => DbError::TransactionConflict,
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => DbError::Throttled,
        Some("ValidationException") => {
            DbError::Invalid("the request was refused by DynamoDB".into())
        }
        _ => DbError::Unavailable(Box::new(err)),
    }
}

/// Refuses an update that would leave a non-string index key, before anything is written
/// (DynamoDB would refuse it only for some key types; the local store always does).
fn validate_index_keys(update: &Update) -> Result<(), DbError> {
    let is_index_key = |name: &str| {
        Index::ALL
            .iter()
            .any(|index| name == index.pk_attr() || name == index.sk_attr())
    };
    let bad_set = update
        .set
        .iter()
        .any(|(name, value)| is_index_key(name) && !matches!(value, Value::S(s) if !s.is_empty()));
    let bad_add = update.add.iter().any(|(name, _)| is_index_key(name));
    if bad_set || bad_add {
        return Err(DbError::Invalid(
            "index keys must be non-empty strings".into(),
        ));
    }
    Ok(())
}

/// A cancelled transaction names its failing write by position: the reasons list has
/// one entry per write, `None` for those that were fine.
fn transaction_error<R>(err: SdkError<TransactWriteItemsError, R>) -> DbError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
        err.as_service_error()
    {
        let reasons = canceled.cancellation_reasons();
        let has = |code: &str| reasons.iter().any(|r| r.code() == Some(code));
        if let Some(i) = reasons
            .iter()
            .position(|r| r.code() == Some("ConditionalCheckFailed"))
        {
            return DbError::ConditionFailed { op: Some(i) };
        }
        if has("TransactionConflict") {
            return DbError::TransactionConflict;
        }
        if has("ThrottlingError") || has("ProvisionedThroughputExceeded") {
            return DbError::Throttled;
        }
    }
    map_err(err)
}

fn put_request(
    table: &str,
    item: &Item,
    condition: Option<&Condition>,
    now: i64,
) -> Result<Put, DbError> {
    let mut expr = Expr::default();
    let condition = condition.map(|c| expr.condition(c, now));
    Put::builder()
        .table_name(table)
        .set_item(Some(to_item(item)))
        .set_condition_expression(condition)
        .set_expression_attribute_names(expr.names())
        .set_expression_attribute_values(expr.values())
        .build()
        .map_err(|_| DbError::Invalid("incomplete put".into()))
}

#[async_trait]
impl Database for DynamoDb {
    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, DbError> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(map_err)?;
        match output.item() {
            Some(item) => {
                let item = from_item(item)?;
                Ok((!is_expired(&item, self.now())).then_some(item))
            }
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), DbError> {
        validate_item(&item)?;
        let mut expr = Expr::default();
        let condition = condition.map(|c| expr.condition(&c, self.now()));
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(to_item(&item)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, DbError> {
        update.validate()?;
        validate_index_keys(&update)?;
        let mut expr = Expr::default();
        let update_expression = expr.update(&update);
        let condition = condition.map(|c| expr.condition(&c, self.now()));
        let output = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(key_map(key)))
            .update_expression(update_expression)
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(map_err)?;
        match output.attributes() {
            Some(item) => from_item(item),
            None => Err(DbError::Invalid("DynamoDB returned no attributes".into())),
        }
    }

    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        let mut expr = Expr::default();
        let condition = condition.map(|c| expr.condition(&c, self.now()));
        let output = self
            .client
            .delete_item()
            .table_name(table)
            .set_key(Some(key_map(key)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(map_err)?;
        match output.attributes() {
            Some(old) if !old.is_empty() => {
                let old = from_item(old)?;
                Ok((!is_expired(&old, self.now())).then_some(old))
            }
            _ => Ok(None),
        }
    }

    async fn query(&self, table: &str, query: Query) -> Result<QueryPage, DbError> {
        query.validate()?;
        let mut expr = Expr::default();
        let (pk_attr, sk_attr) = match query.index {
            Some(index) => (index.pk_attr(), index.sk_attr()),
            None => (PK, SK),
        };
        let pk = expr.name(pk_attr);
        let pk_value = expr.value(AttributeValue::S(query.pk.clone()));
        let mut key_condition = format!("{pk} = {pk_value}");
        if let Some(sort) = &query.sk {
            let sk = expr.name(sk_attr);
            let mut v = |s: &String| expr.value(AttributeValue::S(s.clone()));
            let clause = match sort {
                SortKey::Eq(s) => format!("{sk} = {}", v(s)),
                SortKey::BeginsWith(s) => format!("begins_with({sk}, {})", v(s)),
                SortKey::Between(a, b) => {
                    let (a, b) = (v(a), v(b));
                    format!("{sk} BETWEEN {a} AND {b}")
                }
                SortKey::Lt(s) => format!("{sk} < {}", v(s)),
                SortKey::Le(s) => format!("{sk} <= {}", v(s)),
                SortKey::Gt(s) => format!("{sk} > {}", v(s)),
                SortKey::Ge(s) => format!("{sk} >= {}", v(s)),
            };
            key_condition = format!("{key_condition} AND {clause}");
        }
        let filter = expr.not_expired(self.now());
        let output = self
            .client
            .query()
            .table_name(table)
            .set_index_name(query.index.map(|i| i.name().to_string()))
            .key_condition_expression(key_condition)
            .filter_expression(filter)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .scan_index_forward(query.ascending)
            .limit(query.limit as i32)
            .set_exclusive_start_key(query.start.as_ref().map(to_item))
            .send()
            .await
            .map_err(map_err)?;
        let items = output
            .items()
            .iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match output.last_evaluated_key() {
            Some(key) if !key.is_empty() => Some(from_item(key)?),
            _ => None,
        };
        Ok(QueryPage { items, next })
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), DbError> {
        self.transact(ops, None).await
    }

    async fn transact_write_once(&self, ops: Vec<WriteOp>, token: &str) -> Result<(), DbError> {
        check_client_request_token(token)?;
        self.transact(ops, Some(token)).await
    }

    async fn check(&self, table: &str) -> Result<(), DbError> {
        self.client
            .get_item()
            .table_name(table)
            .set_key(Some(key_map(&crate::store::keys::health_probe())))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

impl DynamoDb {
    /// One `TransactWriteItems`; with a token, the SDK's own retries of it are
    /// idempotent on DynamoDB's side too.
    async fn transact(&self, ops: Vec<WriteOp>, token: Option<&str>) -> Result<(), DbError> {
        validate_transaction(&ops)?;
        let now = self.now();
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let built = match op {
                WriteOp::Put {
                    table,
                    item,
                    condition,
                } => {
                    validate_item(item)?;
                    TransactWriteItem::builder()
                        .put(put_request(table, item, condition.as_ref(), now)?)
                        .build()
                }
                WriteOp::Update {
                    table,
                    key,
                    update,
                    condition,
                } => {
                    validate_index_keys(update)?;
                    let mut expr = Expr::default();
                    let update_expression = expr.update(update);
                    let condition = condition.as_ref().map(|c| expr.condition(c, now));
                    let update = DdbUpdate::builder()
                        .table_name(table)
                        .set_key(Some(key_map(key)))
                        .update_expression(update_expression)
                        .set_condition_expression(condition)
                        .set_expression_attribute_names(expr.names())
                        .set_expression_attribute_values(expr.values())
                        .build()
                        .map_err(|_| DbError::Invalid("incomplete update".into()))?;
                    TransactWriteItem::builder().update(update).build()
                }
                WriteOp::Delete {
                    table,
                    key,
                    condition,
                } => {
                    let mut expr = Expr::default();
                    let condition = condition.as_ref().map(|c| expr.condition(c, now));
                    let delete = Delete::builder()
                        .table_name(table)
                        .set_key(Some(key_map(key)))
                        .set_condition_expression(condition)
                        .set_expression_attribute_names(expr.names())
                        .set_expression_attribute_values(expr.values())
                        .build()
                        .map_err(|_| DbError::Invalid("incomplete delete".into()))?;
                    TransactWriteItem::builder().delete(delete).build()
                }
                WriteOp::Check {
                    table,
                    key,
                    condition,
                } => {
                    let mut expr = Expr::default();
                    let condition = expr.condition(condition, now);
                    let check = ConditionCheck::builder()
                        .table_name(table)
                        .set_key(Some(key_map(key)))
                        .condition_expression(condition)
                        .set_expression_attribute_names(expr.names())
                        .set_expression_attribute_values(expr.values())
                        .build()
                        .map_err(|_| DbError::Invalid("incomplete condition check".into()))?;
                    TransactWriteItem::builder().condition_check(check).build()
                }
            };
            items.push(built);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(token.map(str::to_string))
            .send()
            .await;
        result.map(drop).map_err(transaction_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;

    fn canceled(codes: &[&str]) -> SdkError<TransactWriteItemsError, ()> {
        let reasons = codes
            .iter()
            .map(|code| CancellationReason::builder().code(*code).build())
            .collect();
        let err = TransactionCanceledException::builder()
            .set_cancellation_reasons(Some(reasons))
            .build();
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(err),
            (),
        )
    }

    // The emulator cannot produce conflicts or throttling, so the mapping is proven on
    // hand-built errors.
    #[test]
    fn cancellation_reasons_map_to_typed_errors() {
        let failed = transaction_error(canceled(&["None", "None", "ConditionalCheckFailed"]));
        assert!(matches!(failed, DbError::ConditionFailed { op: Some(2) }));
        let conflict = transaction_error(canceled(&["TransactionConflict", "None"]));
        assert!(matches!(conflict, DbError::TransactionConflict));
        let throttled = transaction_error(canceled(&["None", "ThrottlingError"]));
        assert!(matches!(throttled, DbError::Throttled));
        let timeout: SdkError<TransactWriteItemsError, ()> = SdkError::timeout_error("slow");
        assert!(matches!(
            transaction_error(timeout),
            DbError::Unavailable(_)
        ));
    }

    #[test]
    fn expressions_use_placeholders_only() {
        let mut expr = Expr::default();
        let condition = Condition::And(vec![
            Condition::NotExists,
            Condition::Equals("status".into(), Value::S("open".into())),
            Condition::LessThan("count".into(), 5),
        ]);
        let rendered = expr.condition(&condition, 1_700_000_000);
        for name in ["pk", "status", "count", "expires_at", "open", "1700000000"] {
            assert!(!rendered.contains(name), "{name} is inlined in {rendered}");
        }
        assert!(rendered.starts_with("((attribute_not_exists(#n0) OR #n1 <= :v0) AND"));
        let update = expr.update(&Update::new().set("a", 1).remove("b").add("c", 2));
        assert!(update.starts_with("SET #n"), "{update}");
        assert!(
            update.contains(" REMOVE #n") && update.contains(" ADD #n"),
            "{update}"
        );
    }

    #[test]
    fn values_roundtrip_through_attribute_values() {
        let value = Value::M(crate::ports::db::item([
            ("n", Value::N(i64::MIN)),
            (
                "l",
                Value::L(vec![Value::Null, Value::Bool(true), Value::B(vec![0, 1])]),
            ),
        ]));
        assert_eq!(from_av(&to_av(&value)).ok(), Some(value));
        assert!(
            from_av(&AttributeValue::N("1.5".into())).is_err(),
            "only integers"
        );
        assert!(
            from_av(&AttributeValue::Ss(vec!["a".into()])).is_err(),
            "no sets"
        );
    }
}
