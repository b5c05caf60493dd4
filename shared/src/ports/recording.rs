//! One recording wrapper around every port: each call to an outside service is noted as
//! an [`Access`] — the IAM action it needs, the table, bucket, queue or key it touches,
//! and its scope (the partition-key prefix, the object-key prefix, the KMS context's
//! purpose). The REST router records each request in its own scope and logs its
//! counts, so a request's round trips and KMS calls are visible in production; tests
//! assert per-route budgets with [`record`], and the hardening work proves each
//! function's IAM role against what its routes actually do.
//!
//! Recording is per task (`tokio::task_local!`): work a handler spawns onto another
//! task is not attributed to the request.
//!
//! Each access is also attributed to the function whose handler made it when that
//! handler runs inside [`as_function`] (the local stack's gateways, queue pollers and
//! schedules, and the test tours do this), and collected process-wide in [`observed`]:
//! `tests/e2e/iam.rs` checks every observed access against that function's IAM
//! statements in `template.yaml`. On Lambda nothing sets a function: nothing collects.

use crate::ports::blobs::{BlobBody, BlobError, BlobMeta, BlobObject, BlobStore, PresignedRequest};
use crate::ports::db::{
    Condition, Database, DbError, Item, Key, Query, QueryPage, Update, WriteOp,
};
use crate::ports::health_api::{DataPointPage, DataType, HealthApi, HealthApiError, Tokens};
use crate::ports::keys::{DataKey, EncryptionContext, KeyError, KeyService, Rewrapped, Unwrapped};
use crate::ports::messenger::{Channel, Messenger, MessengerError, OutboundMessage};
use crate::ports::payments::{Intent, NewIntent, NewRefund, PaymentError, Payments, Refund};
use crate::ports::push::{Push, PushError, PushOutcome};
use crate::ports::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use crate::ports::secrets::{SecretError, SecretStore};
use crate::ports::video::{NewRoom, Room, Video, VideoError};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One call to an outside service, as IAM sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    /// `dynamodb:GetItem`, `kms:Decrypt`, `s3:PutObject`, …
    pub action: &'static str,
    /// The table (or `table/index/gsi1`), bucket, queue or KMS key.
    pub resource: String,
    /// The partition-key prefix (`USER#`), object-key prefix, or the KMS context's
    /// `purpose`; empty when the call has none.
    pub scope: String,
    /// The top-level attribute names a put writes (sorted; what IAM's
    /// `dynamodb:Attributes` sees); empty for every other call.
    pub attributes: Vec<String>,
}

impl Access {
    fn new(action: &'static str, resource: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            action,
            resource: resource.into(),
            scope: scope.into(),
            attributes: Vec::new(),
        }
    }

    /// A put of `item`: its attribute names are part of what IAM checks.
    fn put(table: &str, item: &Item) -> Self {
        let pk = Key::of(item).map(|k| key_prefix(&k.pk)).unwrap_or_default();
        let mut access = Self::new("dynamodb:PutItem", table, pk);
        access.attributes = item.keys().cloned().collect();
        access.attributes.sort();
        access
    }

    /// The service part of the action (`dynamodb`, `kms`, …).
    pub fn service(&self) -> &'static str {
        self.action.split(':').next().unwrap_or_default()
    }
}

type Log = Arc<Mutex<Vec<Access>>>;

tokio::task_local! {
    static CURRENT: Log;
    static FUNCTION: &'static str;
}

/// One access made by one function (its name in `template.yaml` without `Function`,
/// lowercase: `users` for `UsersFunction`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Observed {
    pub function: &'static str,
    pub access: Access,
}

/// Every distinct access of every function seen by this process (bounded: distinct
/// tuples of action, resource and prefix, not calls).
static OBSERVED: Mutex<BTreeSet<Observed>> = Mutex::new(BTreeSet::new());

/// Every port (by its `adapters::links` name) each function was seen calling: what its
/// binary must link. The database and the key service are in every binary.
static PORTS_USED: Mutex<BTreeSet<(&'static str, &'static str)>> = Mutex::new(BTreeSet::new());

/// The `adapters::links` name of the port an access goes through.
fn port_of(access: &Access) -> Option<&'static str> {
    match access.service() {
        "s3" => Some("blobs"),
        "sqs" => Some("queue"),
        "execute-api" => Some("push"),
        "ses" | "sns" => Some("messenger"),
        "secretsmanager" => Some("secrets"),
        _ => None,
    }
}

/// Notes a call of a port that makes no AWS access (Stripe, Twilio, Google).
fn note_port(port: &'static str) {
    if let Ok(function) = FUNCTION.try_with(|f| *f) {
        note_port_for(function, port);
    }
}

fn note_port_for(function: &'static str, port: &'static str) {
    PORTS_USED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((function, port));
}

/// Every (function, port) pair seen in this process: `tests/e2e/iam.rs` checks each
/// against the function's `LINKS`.
pub fn ports_used() -> BTreeSet<(&'static str, &'static str)> {
    PORTS_USED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn note(access: Access) {
    if let Ok(function) = FUNCTION.try_with(|f| *f) {
        if let Some(port) = port_of(&access) {
            note_port_for(function, port);
        }
        OBSERVED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Observed {
                function,
                access: access.clone(),
            });
    }
    let _ = CURRENT.try_with(|log| {
        if let Ok(mut log) = log.lock() {
            log.push(access);
        }
    });
}

/// Notes an access of `function` made outside its task (a stream it handed on).
fn note_for(function: &'static str, access: Access) {
    if let Some(port) = port_of(&access) {
        note_port_for(function, port);
    }
    OBSERVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(Observed { function, access });
}

/// Runs `work` as the handler of `function`: what it does is attributed to that
/// function in [`observed`]. Nested calls: the innermost function wins.
pub async fn as_function<F: Future>(function: &'static str, work: F) -> F::Output {
    FUNCTION.scope(function, work).await
}

/// The function the current task runs as, if any.
pub fn current_function() -> Option<&'static str> {
    FUNCTION.try_with(|f| *f).ok()
}

/// Every access attributed to a function so far in this process.
pub fn observed() -> BTreeSet<Observed> {
    OBSERVED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Runs `work` and returns what it returned with every access it made, in order.
pub async fn record<F: Future>(work: F) -> (F::Output, Vec<Access>) {
    let log: Log = Arc::default();
    let output = CURRENT.scope(log.clone(), work).await;
    let accesses = log.lock().map(|log| log.clone()).unwrap_or_default();
    (output, accesses)
}

/// Calls per service, for the request log line and budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// DynamoDB requests (a transaction is one, whatever it holds).
    pub dynamodb: usize,
    pub kms: usize,
    pub s3: usize,
    pub sqs: usize,
    /// Pushes, e-mails and text messages.
    pub notify: usize,
}

/// Counts requests, not items: the writes of one transaction share one request.
pub fn counts(accesses: &[Access]) -> Counts {
    let mut counts = Counts::default();
    let mut items_left = 0usize;
    for access in accesses {
        if items_left > 0 && access.service() == "dynamodb" {
            items_left -= 1;
            continue;
        }
        match access.service() {
            "dynamodb" => {
                counts.dynamodb += 1;
                if let Some(n) = access.scope.strip_prefix(TRANSACTION_MARK) {
                    items_left = n.parse().unwrap_or(0);
                }
            }
            "kms" => counts.kms += 1,
            "s3" => counts.s3 += 1,
            "sqs" => counts.sqs += 1,
            _ => counts.notify += 1,
        }
    }
    counts
}

/// The scope of the access that opens a transaction (its items follow it).
const TRANSACTION_MARK: &str = "transaction:";

/// `USER#01J…` -> `USER#`; a partition without `#` is its own prefix (`SIGNKEYS`).
fn key_prefix(pk: &str) -> String {
    match pk.find('#') {
        Some(i) => pk[..=i].to_string(),
        None => pk.to_string(),
    }
}

fn object_prefix(key: &str) -> String {
    match key.find('/') {
        Some(i) => key[..=i].to_string(),
        None => String::new(),
    }
}

fn purpose(context: &EncryptionContext) -> String {
    context.0.get("purpose").cloned().unwrap_or_default()
}

/// The recording wrapper of a database.
pub struct RecordedDatabase(pub Arc<dyn Database>);

#[async_trait]
impl Database for RecordedDatabase {
    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, DbError> {
        note(Access::new("dynamodb:GetItem", table, key_prefix(&key.pk)));
        self.0.get(table, key).await
    }
    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), DbError> {
        note(Access::put(table, &item));
        self.0.put(table, item, condition).await
    }
    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, DbError> {
        note(Access::new(
            "dynamodb:UpdateItem",
            table,
            key_prefix(&key.pk),
        ));
        self.0.update(table, key, update, condition).await
    }
    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        note(Access::new(
            "dynamodb:DeleteItem",
            table,
            key_prefix(&key.pk),
        ));
        self.0.delete(table, key, condition).await
    }
    async fn query(&self, table: &str, query: Query) -> Result<QueryPage, DbError> {
        let resource = match query.index {
            Some(index) => format!("{table}/index/{}", index.name()),
            None => table.to_string(),
        };
        note(Access::new(
            "dynamodb:Query",
            resource,
            key_prefix(&query.pk),
        ));
        self.0.query(table, query).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), DbError> {
        note_transaction(&ops);
        self.0.transact_write(ops).await
    }
    async fn transact_write_once(&self, ops: Vec<WriteOp>, token: &str) -> Result<(), DbError> {
        note_transaction(&ops);
        self.0.transact_write_once(ops, token).await
    }
    async fn check(&self, table: &str) -> Result<(), DbError> {
        // The probe item's whole key: the health function may read nothing else.
        note(Access::new(
            "dynamodb:GetItem",
            table,
            crate::store::keys::health_probe().pk,
        ));
        self.0.check(table).await
    }
}

/// A transaction is one request; IAM checks each item's own action.
fn note_transaction(ops: &[WriteOp]) {
    note(Access::new(
        "dynamodb:TransactWriteItems",
        "",
        format!("{TRANSACTION_MARK}{}", ops.len()),
    ));
    for op in ops {
        let (table, key) = op.target();
        let action = match op {
            WriteOp::Put { table, item, .. } => {
                note(Access::put(table, item));
                continue;
            }
            WriteOp::Update { .. } => "dynamodb:UpdateItem",
            WriteOp::Delete { .. } => "dynamodb:DeleteItem",
            WriteOp::Check { .. } => "dynamodb:ConditionCheckItem",
        };
        note(Access::new(action, table, key_prefix(&key.pk)));
    }
}

/// The recording wrapper of a key service.
pub struct RecordedKeys(pub Arc<dyn KeyService>);

#[async_trait]
impl KeyService for RecordedKeys {
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        note(Access::new("kms:GenerateDataKey", key_id, purpose(context)));
        self.0.generate_data_key(key_id, context).await
    }
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Unwrapped, KeyError> {
        note(Access::new("kms:Decrypt", "", purpose(context)));
        self.0.decrypt(ciphertext, context).await
    }
    async fn re_encrypt(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<Rewrapped, KeyError> {
        note(Access::new("kms:ReEncryptFrom", "", purpose(context)));
        note(Access::new(
            "kms:ReEncryptTo",
            destination_key_id,
            purpose(destination_context),
        ));
        self.0
            .re_encrypt(ciphertext, context, destination_key_id, destination_context)
            .await
    }
    async fn sign(&self, key_id: &str, message: &[u8]) -> Result<[u8; 64], KeyError> {
        note(Access::new("kms:Sign", key_id, ""));
        self.0.sign(key_id, message).await
    }
    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>, KeyError> {
        note(Access::new("kms:GetPublicKey", key_id, ""));
        self.0.public_key(key_id).await
    }
    async fn resolve_key_id(&self, key_id: &str) -> Result<String, KeyError> {
        note(Access::new("kms:DescribeKey", key_id, ""));
        self.0.resolve_key_id(key_id).await
    }
    async fn check(&self, key_id: &str) -> Result<(), KeyError> {
        note(Access::new("kms:DescribeKey", key_id, ""));
        self.0.check(key_id).await
    }
}

/// The recording wrapper of a blob store.
pub struct RecordedBlobs(pub Arc<dyn BlobStore>);

#[async_trait]
impl BlobStore for RecordedBlobs {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), BlobError> {
        note(Access::new("s3:PutObject", bucket, object_prefix(key)));
        self.0.put(bucket, key, body, content_type, metadata).await
    }
    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, BlobError> {
        note(Access::new("s3:PutObject", bucket, object_prefix(key)));
        self.0.put_new(bucket, key, body, content_type).await
    }
    async fn put_stream(
        &self,
        bucket: &str,
        key: &str,
        body: BlobBody,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<u64, BlobError> {
        // A multipart upload is s3:PutObject; one aborted (the body ended with an error)
        // also needs s3:AbortMultipartUpload, noted when the error passes by.
        note(Access::new("s3:PutObject", bucket, object_prefix(key)));
        let (bucket_name, prefix) = (bucket.to_string(), object_prefix(key));
        let function = current_function();
        let body: BlobBody = Box::pin(futures::StreamExt::inspect(body, move |item| {
            if item.is_err() {
                let access = Access::new(
                    "s3:AbortMultipartUpload",
                    bucket_name.clone(),
                    prefix.clone(),
                );
                match function {
                    Some(function) => note_for(function, access),
                    None => note(access),
                }
            }
        }));
        self.0
            .put_stream(bucket, key, body, content_type, metadata)
            .await
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<BlobObject>, BlobError> {
        note(Access::new("s3:GetObject", bucket, object_prefix(key)));
        self.0.get(bucket, key).await
    }
    async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<BlobObject>, BlobError> {
        let action = if version_id.is_some() {
            "s3:GetObjectVersion"
        } else {
            "s3:GetObject"
        };
        note(Access::new(action, bucket, object_prefix(key)));
        self.0.get_version(bucket, key, version_id).await
    }
    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<BlobObject>, BlobError> {
        note(Access::new("s3:GetObject", bucket, object_prefix(key)));
        self.0.get_range(bucket, key, start, end).await
    }
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        note(Access::new("s3:GetObject", bucket, object_prefix(key)));
        self.0.head(bucket, key).await
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        note(Access::new("s3:DeleteObject", bucket, object_prefix(key)));
        self.0.delete(bucket, key).await
    }
    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), BlobError> {
        let action = if version_id.is_some() {
            "s3:DeleteObjectVersion"
        } else {
            "s3:DeleteObject"
        };
        note(Access::new(action, bucket, object_prefix(key)));
        self.0.delete_version(bucket, key, version_id).await
    }
    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        // Signed locally: no request now, but the URL carries this right.
        note(Access::new("s3:PutObject", bucket, object_prefix(key)));
        self.0
            .presign_put(bucket, key, content_type, content_length, expires_in)
            .await
    }
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        note(Access::new("s3:GetObject", bucket, object_prefix(key)));
        self.0.presign_get(bucket, key, expires_in).await
    }
    async fn check(&self, bucket: &str) -> Result<(), BlobError> {
        note(Access::new("s3:ListBucket", bucket, ""));
        self.0.check(bucket).await
    }
}

/// The recording wrapper of a queue.
pub struct RecordedQueue(pub Arc<dyn Queue>);

#[async_trait]
impl Queue for RecordedQueue {
    async fn send(&self, queue: &str, message: OutgoingMessage) -> Result<String, QueueError> {
        note(Access::new("sqs:SendMessage", queue, ""));
        self.0.send(queue, message).await
    }
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError> {
        for _ in messages.chunks(10) {
            note(Access::new("sqs:SendMessage", queue, ""));
        }
        self.0.send_batch(queue, messages).await
    }
    async fn receive(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        note(Access::new("sqs:ReceiveMessage", queue, ""));
        self.0.receive(queue, max, visibility).await
    }
    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        note(Access::new("sqs:DeleteMessage", queue, ""));
        self.0.delete(queue, receipt_handle).await
    }
    async fn check(&self, queue: &str) -> Result<(), QueueError> {
        note(Access::new("sqs:GetQueueAttributes", queue, ""));
        self.0.check(queue).await
    }
}

/// The recording wrapper of the WebSocket push.
pub struct RecordedPush(pub Arc<dyn Push>);

#[async_trait]
impl Push for RecordedPush {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<PushOutcome, PushError> {
        // The resource is the Management API's method and path (`POST/@connections/<id>`).
        note(Access::new(
            "execute-api:ManageConnections",
            "POST/@connections",
            "",
        ));
        self.0.post(connection_id, data).await
    }
    async fn disconnect(&self, connection_id: &str) -> Result<PushOutcome, PushError> {
        note(Access::new(
            "execute-api:ManageConnections",
            "DELETE/@connections",
            "",
        ));
        self.0.disconnect(connection_id).await
    }
}

/// The recording wrapper of the messenger (no recipient is recorded: it is PHI).
pub struct RecordedMessenger(pub Arc<dyn Messenger>);

#[async_trait]
impl Messenger for RecordedMessenger {
    async fn send(&self, message: &OutboundMessage) -> Result<String, MessengerError> {
        let action = match message.channel {
            Channel::Email => "ses:SendEmail",
            Channel::Sms => "sns:Publish",
        };
        note(Access::new(action, "", ""));
        self.0.send(message).await
    }
}

/// The recording wrapper of the secret store (the name is recorded, never the value).
pub struct RecordedSecrets(pub Arc<dyn SecretStore>);

#[async_trait]
impl SecretStore for RecordedSecrets {
    async fn get(&self, name: &str) -> Result<Option<zeroize::Zeroizing<String>>, SecretError> {
        note(Access::new("secretsmanager:GetSecretValue", name, ""));
        self.0.get(name).await
    }
}

/// The recording wrapper of the payments port: no IAM access, only the port's use.
pub struct RecordedPayments(pub Arc<dyn Payments>);

#[async_trait]
impl Payments for RecordedPayments {
    async fn create_intent(&self, new: &NewIntent) -> Result<Intent, PaymentError> {
        note_port("payments");
        self.0.create_intent(new).await
    }
    async fn retrieve_intent(&self, id: &str) -> Result<Intent, PaymentError> {
        note_port("payments");
        self.0.retrieve_intent(id).await
    }
    async fn confirm_intent(&self, id: &str) -> Result<Intent, PaymentError> {
        note_port("payments");
        self.0.confirm_intent(id).await
    }
    async fn refund(&self, new: &NewRefund) -> Result<Refund, PaymentError> {
        note_port("payments");
        self.0.refund(new).await
    }
    async fn retrieve_refund(&self, id: &str) -> Result<Refund, PaymentError> {
        note_port("payments");
        self.0.retrieve_refund(id).await
    }
}

/// The recording wrapper of the video port: no IAM access, only the port's use.
pub struct RecordedVideo(pub Arc<dyn Video>);

#[async_trait]
impl Video for RecordedVideo {
    async fn create_room(&self, new: &NewRoom) -> Result<Room, VideoError> {
        note_port("video");
        self.0.create_room(new).await
    }
    async fn fetch_room(&self, sid: &str) -> Result<Room, VideoError> {
        note_port("video");
        self.0.fetch_room(sid).await
    }
    async fn complete_room(&self, sid: &str) -> Result<Room, VideoError> {
        note_port("video");
        self.0.complete_room(sid).await
    }
    async fn set_recording(&self, sid: &str, record: bool) -> Result<(), VideoError> {
        note_port("video");
        self.0.set_recording(sid, record).await
    }
}

/// The recording wrapper of the health API port: no IAM access, only the port's use.
pub struct RecordedHealthApi(pub Arc<dyn HealthApi>);

#[async_trait]
impl HealthApi for RecordedHealthApi {
    async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<String, HealthApiError> {
        note_port("health_api");
        self.0
            .authorization_url(redirect_uri, state, challenge)
            .await
    }
    async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, HealthApiError> {
        note_port("health_api");
        self.0.exchange_code(code, verifier, redirect_uri).await
    }
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, HealthApiError> {
        note_port("health_api");
        self.0.refresh(refresh_token).await
    }
    async fn revoke(&self, token: &str) -> Result<(), HealthApiError> {
        note_port("health_api");
        self.0.revoke(token).await
    }
    async fn user_id(&self, access_token: &str) -> Result<String, HealthApiError> {
        note_port("health_api");
        self.0.user_id(access_token).await
    }
    async fn list_data_points(
        &self,
        access_token: &str,
        data_type: DataType,
        from: crate::domain::Timestamp,
        to: crate::domain::Timestamp,
        page_token: Option<&str>,
    ) -> Result<DataPointPage, HealthApiError> {
        note_port("health_api");
        self.0
            .list_data_points(access_token, data_type, from, to, page_token)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_partitions_not_records() {
        assert_eq!(key_prefix("USER#01JD5Z6Q8W3M0V7K2R9T4Y6B1C"), "USER#");
        assert_eq!(key_prefix("RATE#general#user:1#0"), "RATE#");
        assert_eq!(key_prefix("SIGNKEYS"), "SIGNKEYS");
        assert_eq!(object_prefix("uploads/01J/file.pdf"), "uploads/");
    }

    #[test]
    fn a_transaction_is_one_request() {
        let ops = [
            Access::new("dynamodb:GetItem", "t", "USER#"),
            Access::new("dynamodb:TransactWriteItems", "", "transaction:2"),
            Access::new("dynamodb:PutItem", "a", "CHAIN#"),
            Access::new("dynamodb:UpdateItem", "t", "AUDITHEAD#"),
            Access::new("kms:Decrypt", "", "data-key"),
            Access::new("dynamodb:Query", "t", "USER#"),
        ];
        let counts = counts(&ops);
        assert_eq!((counts.dynamodb, counts.kms), (3, 1));
        // An item count beyond what follows cannot hide a later request.
        assert_eq!(super::counts(&ops[5..]).dynamodb, 1);
    }
}
