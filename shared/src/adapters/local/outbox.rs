//! The local messenger: each e-mail or SMS becomes one JSON file in `<data>/outbox/`,
//! where a developer reads verification links and codes. The log line names the file
//! id and channel only, never the recipient or the content.

use super::files::write_private;
use crate::ports::messenger::{Channel, Messenger, MessengerError, OutboundMessage};
use async_trait::async_trait;
use serde::Serialize;
use std::path::PathBuf;

pub struct Outbox {
    dir: PathBuf,
}

#[derive(Serialize)]
struct OutboxFile<'a> {
    id: &'a str,
    channel: Channel,
    to: &'a str,
    subject: Option<&'a str>,
    body: &'a str,
    time: String,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[async_trait]
impl Messenger for Outbox {
    async fn send(&self, message: &OutboundMessage) -> Result<String, MessengerError> {
        message.validate()?;
        let id = ulid::Ulid::new().to_string();
        let file = OutboxFile {
            id: &id,
            channel: message.channel,
            to: &message.to,
            subject: message.subject.as_deref(),
            body: &message.body,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| MessengerError::Unavailable(Box::new(e)))?;
        let path = self.dir.join(format!("{id}.json"));
        tokio::task::spawn_blocking(move || write_private(&path, &json))
            .await
            .map_err(|e| MessengerError::Unavailable(Box::new(e)))?
            .map_err(|e| MessengerError::Unavailable(Box::new(e)))?;
        tracing::info!(message_id = %id, channel = ?message.channel, "outbox: message written");
        Ok(id)
    }
}
