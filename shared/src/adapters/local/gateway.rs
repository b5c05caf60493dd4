//! The local WebSocket gateway's connection registry: the push port delivers to the
//! sockets the local stack holds open, and reports a closed one as gone.

use crate::ports::push::{Push, PushError, PushOutcome, MAX_FRAME_BYTES};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

/// What the local stack forwards to a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Text(String),
    Close,
}

#[derive(Default)]
pub struct LocalGateway {
    connections: Mutex<HashMap<String, mpsc::UnboundedSender<Outbound>>>,
    posts: AtomicUsize,
}

impl LocalGateway {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an open socket; the local stack relays what arrives on the receiver.
    pub fn connect(&self, connection_id: &str) -> mpsc::UnboundedReceiver<Outbound> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(connection_id.to_string(), tx);
        rx
    }

    /// Forgets a socket that closed.
    pub fn disconnected(&self, connection_id: &str) {
        self.lock().remove(connection_id);
    }

    pub fn open_connections(&self) -> usize {
        self.lock().len()
    }

    /// How many posts (in-process or through the Management API route) were attempted,
    /// delivered or not: what shows that a gone connection is not retried.
    pub fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Outbound>>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn deliver(&self, connection_id: &str, message: Outbound) -> PushOutcome {
        let mut connections = self.lock();
        match connections.get(connection_id) {
            Some(tx) if tx.send(message).is_ok() => PushOutcome::Delivered,
            Some(_) => {
                connections.remove(connection_id);
                PushOutcome::Gone
            }
            None => PushOutcome::Gone,
        }
    }
}

#[async_trait]
impl Push for LocalGateway {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<PushOutcome, PushError> {
        self.posts.fetch_add(1, Ordering::SeqCst);
        if data.len() > MAX_FRAME_BYTES {
            return Err(PushError::Invalid("frames are at most 128 KiB".into()));
        }
        let text = String::from_utf8(data.to_vec())
            .map_err(|_| PushError::Invalid("local frames are UTF-8 text".into()))?;
        Ok(self.deliver(connection_id, Outbound::Text(text)))
    }

    async fn disconnect(&self, connection_id: &str) -> Result<PushOutcome, PushError> {
        let outcome = self.deliver(connection_id, Outbound::Close);
        self.disconnected(connection_id);
        Ok(outcome)
    }
}
