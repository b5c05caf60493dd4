//! Test support (feature `testing`): a fresh local app in a temporary folder, and an
//! `Outage` that makes any port fail like an unreachable dependency, so every function
//! can prove it answers 503 and changes nothing when a dependency is down.

use crate::adapters::local::{self, LocalParts};
use crate::app::{AppContext, Ports};
use crate::clock::Clock;
use crate::ports::blobs::{BlobError, BlobMeta, BlobObject, BlobStore, PresignedRequest};
use crate::ports::db::{
    Condition, Database, DbError, Item, Key, Query, QueryPage, Update, WriteOp,
};
use crate::ports::keys::{DataKey, EncryptionContext, KeyError, KeyService, Rewrapped, Unwrapped};
use crate::ports::messenger::{Messenger, MessengerError, OutboundMessage};
use crate::ports::push::{Push, PushError, PushOutcome};
use crate::ports::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A local app in its own temporary folder (kept alive by the returned guard).
pub fn local_app(clock: Arc<dyn Clock>) -> (LocalParts, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let config = local::local_config("ws://127.0.0.1:1", "warn");
    let parts = local::open(dir.path(), config, "http://127.0.0.1:1", clock)
        .unwrap_or_else(|e| panic!("local app: {e}"));
    (parts, dir)
}

/// A copy of an app context with some ports swapped (services rebuilt on them).
pub fn with_ports(app: &AppContext, edit: impl FnOnce(&mut Ports)) -> crate::App {
    let mut ports = app.ports();
    edit(&mut ports);
    Arc::new(AppContext::new(app.config.clone(), ports))
}

/// A dependency that does not answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outage;

fn down() -> Box<dyn std::error::Error + Send + Sync> {
    "simulated outage".into()
}

#[async_trait]
impl Database for Outage {
    async fn get(&self, _: &str, _: &Key) -> Result<Option<Item>, DbError> {
        Err(DbError::Unavailable(down()))
    }
    async fn put(&self, _: &str, _: Item, _: Option<Condition>) -> Result<(), DbError> {
        Err(DbError::Unavailable(down()))
    }
    async fn update(
        &self,
        _: &str,
        _: &Key,
        _: Update,
        _: Option<Condition>,
    ) -> Result<Item, DbError> {
        Err(DbError::Unavailable(down()))
    }
    async fn delete(
        &self,
        _: &str,
        _: &Key,
        _: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        Err(DbError::Unavailable(down()))
    }
    async fn query(&self, _: &str, _: Query) -> Result<QueryPage, DbError> {
        Err(DbError::Unavailable(down()))
    }
    async fn transact_write(&self, _: Vec<WriteOp>) -> Result<(), DbError> {
        Err(DbError::Unavailable(down()))
    }
    async fn check(&self, _: &str) -> Result<(), DbError> {
        Err(DbError::Unavailable(down()))
    }
}

#[async_trait]
impl BlobStore for Outage {
    async fn put(
        &self,
        _: &str,
        _: &str,
        _: Bytes,
        _: &str,
        _: BTreeMap<String, String>,
    ) -> Result<(), BlobError> {
        Err(BlobError::Unavailable(down()))
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<BlobObject>, BlobError> {
        Err(BlobError::Unavailable(down()))
    }
    async fn head(&self, _: &str, _: &str) -> Result<Option<BlobMeta>, BlobError> {
        Err(BlobError::Unavailable(down()))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), BlobError> {
        Err(BlobError::Unavailable(down()))
    }
    async fn presign_put(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        Err(BlobError::Unavailable(down()))
    }
    async fn presign_get(
        &self,
        _: &str,
        _: &str,
        _: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        Err(BlobError::Unavailable(down()))
    }
    async fn check(&self, _: &str) -> Result<(), BlobError> {
        Err(BlobError::Unavailable(down()))
    }
}

#[async_trait]
impl KeyService for Outage {
    async fn generate_data_key(&self, _: &str, _: &EncryptionContext) -> Result<DataKey, KeyError> {
        Err(KeyError::Unavailable(down()))
    }
    async fn decrypt(&self, _: &[u8], _: &EncryptionContext) -> Result<Unwrapped, KeyError> {
        Err(KeyError::Unavailable(down()))
    }
    async fn re_encrypt(
        &self,
        _: &[u8],
        _: &EncryptionContext,
        _: &str,
        _: &EncryptionContext,
    ) -> Result<Rewrapped, KeyError> {
        Err(KeyError::Unavailable(down()))
    }
    async fn resolve_key_id(&self, _: &str) -> Result<String, KeyError> {
        Err(KeyError::Unavailable(down()))
    }
    async fn check(&self, _: &str) -> Result<(), KeyError> {
        Err(KeyError::Unavailable(down()))
    }
}

#[async_trait]
impl Queue for Outage {
    async fn send(&self, _: &str, _: OutgoingMessage) -> Result<String, QueueError> {
        Err(QueueError::Unavailable(down()))
    }
    async fn send_batch(&self, _: &str, _: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(down()))
    }
    async fn receive(
        &self,
        _: &str,
        _: u32,
        _: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        Err(QueueError::Unavailable(down()))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(down()))
    }
    async fn check(&self, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(down()))
    }
}

#[async_trait]
impl Push for Outage {
    async fn post(&self, _: &str, _: &[u8]) -> Result<PushOutcome, PushError> {
        Err(PushError::Unavailable(down()))
    }
    async fn disconnect(&self, _: &str) -> Result<PushOutcome, PushError> {
        Err(PushError::Unavailable(down()))
    }
}

#[async_trait]
impl Messenger for Outage {
    async fn send(&self, _: &OutboundMessage) -> Result<String, MessengerError> {
        Err(MessengerError::Unavailable(down()))
    }
}

/// The domain table answers, the audit table does not: proves that a change whose audit
/// event cannot be recorded is not kept, and that nothing is returned unaudited.
pub struct AuditTableDown {
    pub db: Arc<dyn Database>,
    pub audit_table: String,
}

impl AuditTableDown {
    /// `app`'s database with its audit table unreachable.
    pub fn of(app: &AppContext) -> Arc<dyn Database> {
        Arc::new(Self {
            db: app.db.clone(),
            audit_table: app.config.audit_table.clone(),
        })
    }

    fn refuse(&self, table: &str) -> Result<(), DbError> {
        if table == self.audit_table {
            return Err(DbError::Unavailable(down()));
        }
        Ok(())
    }
}

#[async_trait]
impl Database for AuditTableDown {
    async fn get(&self, t: &str, k: &Key) -> Result<Option<Item>, DbError> {
        self.refuse(t)?;
        self.db.get(t, k).await
    }
    async fn put(&self, t: &str, i: Item, c: Option<Condition>) -> Result<(), DbError> {
        self.refuse(t)?;
        self.db.put(t, i, c).await
    }
    async fn update(
        &self,
        t: &str,
        k: &Key,
        u: Update,
        c: Option<Condition>,
    ) -> Result<Item, DbError> {
        self.refuse(t)?;
        self.db.update(t, k, u, c).await
    }
    async fn delete(
        &self,
        t: &str,
        k: &Key,
        c: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        self.refuse(t)?;
        self.db.delete(t, k, c).await
    }
    async fn query(&self, t: &str, q: Query) -> Result<QueryPage, DbError> {
        self.refuse(t)?;
        self.db.query(t, q).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), DbError> {
        for op in &ops {
            self.refuse(op.target().0)?;
        }
        self.db.transact_write(ops).await
    }
    async fn check(&self, t: &str) -> Result<(), DbError> {
        self.refuse(t)?;
        self.db.check(t).await
    }
}
