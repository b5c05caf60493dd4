//! The local queue: durable (stored in the local store's file), with SQS's visibility
//! timeout, delays, receive counts and a dead-letter queue after `max_receives`.

use super::store::LocalStore;
use crate::clock::Clock;
use crate::ports::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_BATCH};
use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queue_messages");

/// How a local queue behaves; mirrors the template's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueSpec {
    pub dead_letter: Option<String>,
    /// Receives after which a message moves to the dead-letter queue (0: never).
    pub max_receives: u32,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    body: String,
    visible_at_ms: i64,
    receive_count: u32,
    sent_at_ms: i64,
}

#[derive(Clone)]
pub struct LocalQueue {
    db: Arc<redb::Database>,
    clock: Arc<dyn Clock>,
    specs: Arc<RwLock<HashMap<String, QueueSpec>>>,
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError::Unavailable(Box::new(err))
}

fn prefix(queue: &str) -> Vec<u8> {
    let mut out = (queue.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(queue.as_bytes());
    out
}

fn message_key(queue: &str, id: &str) -> Vec<u8> {
    let mut out = prefix(queue);
    out.extend_from_slice(id.as_bytes());
    out
}

impl LocalQueue {
    /// Shares the store's file (one redb database per data folder).
    pub fn open(store: &LocalStore) -> Self {
        Self {
            db: store.database(),
            clock: store.clock(),
            specs: Arc::default(),
        }
    }

    /// Declares a queue (idempotent). Sending to an undeclared queue fails like SQS.
    pub fn declare(&self, name: &str, spec: QueueSpec) {
        if let Ok(mut specs) = self.specs.write() {
            specs.insert(name.to_string(), spec);
        }
    }

    fn spec(&self, queue: &str) -> Result<QueueSpec, QueueError> {
        self.specs
            .read()
            .map_err(|_| QueueError::QueueNotFound)?
            .get(queue)
            .cloned()
            .ok_or(QueueError::QueueNotFound)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn insert_all(
        &self,
        queue: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<String>, QueueError> {
        let now = self.now_ms();
        let txn = self.db.begin_write().map_err(unavailable)?;
        let mut ids = Vec::with_capacity(messages.len());
        {
            let mut table = txn.open_table(MESSAGES).map_err(unavailable)?;
            for message in messages {
                let id = ulid::Ulid::new().to_string();
                let stored = Stored {
                    body: message.body.clone(),
                    visible_at_ms: now + message.delay.map_or(0, |d| d.as_millis() as i64),
                    receive_count: 0,
                    sent_at_ms: now,
                };
                let bytes = serde_json::to_vec(&stored).map_err(unavailable)?;
                table
                    .insert(message_key(queue, &id).as_slice(), bytes.as_slice())
                    .map_err(unavailable)?;
                ids.push(id);
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(ids)
    }

    /// Messages currently in a queue, visible or not (for tests and `docare-local` ops).
    pub fn depth(&self, queue: &str) -> Result<usize, QueueError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(MESSAGES).map_err(unavailable)?;
        let prefix = prefix(queue);
        let mut count = 0;
        for entry in table.range(prefix.as_slice()..).map_err(unavailable)? {
            let (k, _) = entry.map_err(unavailable)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    fn receive_sync(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let spec = self.spec(queue)?;
        let now = self.now_ms();
        let txn = self.db.begin_write().map_err(unavailable)?;
        let mut received = Vec::new();
        {
            let mut table = txn.open_table(MESSAGES).map_err(unavailable)?;
            let prefix = prefix(queue);
            let mut visible: Vec<(Vec<u8>, Stored)> = Vec::new();
            for entry in table.range(prefix.as_slice()..).map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                let stored: Stored = serde_json::from_slice(v.value()).map_err(unavailable)?;
                if stored.visible_at_ms <= now {
                    visible.push((k.value().to_vec(), stored));
                }
            }
            for (key, mut stored) in visible {
                if received.len() >= max as usize {
                    break;
                }
                let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                if let Some(dlq) = spec.dead_letter.as_deref() {
                    if spec.max_receives > 0 && stored.receive_count >= spec.max_receives {
                        // SQS moves the message on the receive that would exceed the limit.
                        table.remove(key.as_slice()).map_err(unavailable)?;
                        let moved = Stored {
                            visible_at_ms: now,
                            receive_count: 0,
                            ..stored
                        };
                        let bytes = serde_json::to_vec(&moved).map_err(unavailable)?;
                        table
                            .insert(message_key(dlq, &id).as_slice(), bytes.as_slice())
                            .map_err(unavailable)?;
                        tracing::warn!(message_id = %id, "message moved to the dead-letter queue");
                        continue;
                    }
                }
                stored.receive_count += 1;
                stored.visible_at_ms = now + visibility.as_millis() as i64;
                let bytes = serde_json::to_vec(&stored).map_err(unavailable)?;
                table
                    .insert(key.as_slice(), bytes.as_slice())
                    .map_err(unavailable)?;
                received.push(ReceivedMessage {
                    receipt_handle: format!("{id}.{}", stored.receive_count),
                    message_id: id,
                    body: stored.body,
                    receive_count: stored.receive_count,
                    sent_at_ms: stored.sent_at_ms,
                });
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(received)
    }

    fn delete_sync(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        self.spec(queue)?;
        let (id, count) = receipt_handle
            .rsplit_once('.')
            .and_then(|(id, count)| Some((id, count.parse::<u32>().ok()?)))
            .ok_or_else(|| QueueError::Invalid("malformed receipt handle".into()))?;
        let txn = self.db.begin_write().map_err(unavailable)?;
        {
            let mut table = txn.open_table(MESSAGES).map_err(unavailable)?;
            let key = message_key(queue, id);
            let current = match table.get(key.as_slice()).map_err(unavailable)? {
                Some(v) => Some(serde_json::from_slice::<Stored>(v.value()).map_err(unavailable)?),
                None => None,
            };
            // A stale handle (the message was received again since) deletes nothing.
            if current.is_some_and(|stored| stored.receive_count == count) {
                table.remove(key.as_slice()).map_err(unavailable)?;
            }
        }
        txn.commit().map_err(unavailable)
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, queue: &str, message: OutgoingMessage) -> Result<String, QueueError> {
        message.validate()?;
        self.spec(queue)?;
        let (this, queue) = (self.clone(), queue.to_string());
        let ids = tokio::task::spawn_blocking(move || this.insert_all(&queue, &[message]))
            .await
            .map_err(unavailable)??;
        ids.into_iter()
            .next()
            .ok_or_else(|| QueueError::Invalid("nothing sent".into()))
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError> {
        self.spec(queue)?;
        let failed: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.validate().is_err())
            .map(|(i, _)| i)
            .collect();
        let valid: Vec<OutgoingMessage> = messages
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains(i))
            .map(|(_, m)| m)
            .collect();
        for chunk in valid.chunks(MAX_BATCH) {
            let (this, queue, chunk) = (self.clone(), queue.to_string(), chunk.to_vec());
            tokio::task::spawn_blocking(move || this.insert_all(&queue, &chunk))
                .await
                .map_err(unavailable)??;
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::PartialBatch { failed })
        }
    }

    async fn receive(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if max == 0 || max as usize > MAX_BATCH {
            return Err(QueueError::Invalid("receive 1 to 10 messages".into()));
        }
        let (this, queue) = (self.clone(), queue.to_string());
        tokio::task::spawn_blocking(move || this.receive_sync(&queue, max, visibility))
            .await
            .map_err(unavailable)?
    }

    async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<(), QueueError> {
        let (this, queue, handle) = (self.clone(), queue.to_string(), receipt_handle.to_string());
        tokio::task::spawn_blocking(move || this.delete_sync(&queue, &handle))
            .await
            .map_err(unavailable)?
    }

    async fn check(&self, queue: &str) -> Result<(), QueueError> {
        self.spec(queue).map(|_| ())
    }
}
