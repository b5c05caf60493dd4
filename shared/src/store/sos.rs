//! SOS alerts: `SOS#<id>` / `ALERT#<alert id>` (location and message sealed), and the
//! open collapse window `SOS#<id>` / `ACTIVE` (TTL), created together under
//! `NotExists` so two racing alerts open one window. Each write is committed with its
//! audit event.

use crate::audit::{AuditEvent, CommitError};
use crate::ports::db::{item, Condition, Item, Update, Value, WriteOp};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};

/// What an alert carries besides its id (`location` as JSON text).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertText<'a> {
    pub location: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// An alert already open, as a repeat finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub created_at: String,
    /// Its messages were queued (a repeat need not queue them again).
    pub sent: bool,
}

/// Opens an alert and its collapse window (`window_secs`) with `event` (4 items:
/// window, alert, event, head). `false`, writing nothing, when a window is open already.
pub async fn open(
    app: &AppContext,
    user_id: &str,
    alert_id: &str,
    window_secs: i64,
    text: AlertText<'_>,
    event: AuditEvent,
) -> Result<bool, ApiError> {
    let now = app.clock.now();
    let now_text = crate::domain::Timestamp::new(now).to_string();
    let key = keys::sos_alert(user_id, alert_id);
    let mut alert = Item::new();
    alert.insert("pk".into(), Value::S(key.pk.clone()));
    alert.insert("sk".into(), Value::S(key.sk.clone()));
    alert.insert("id".into(), Value::S(alert_id.into()));
    alert.insert("created_at".into(), Value::S(now_text.clone()));
    alert.insert("last_at".into(), Value::S(now_text));
    alert.insert("repeats".into(), Value::N(0));
    if let Some(location) = text.location {
        alert.insert(
            "location".into(),
            phi::seal(app, &key, "location", location).await?,
        );
    }
    if let Some(message) = text.message {
        alert.insert(
            "message".into(),
            phi::seal(app, &key, "message", message).await?,
        );
    }
    let window = keys::sos_window(user_id);
    let active = item([
        ("pk", Value::S(window.pk)),
        ("sk", Value::S(window.sk)),
        ("alert_id", Value::S(alert_id.into())),
        ("expires_at", Value::N(now.timestamp() + window_secs)),
    ]);
    let table = app.config.table.clone();
    let change = vec![
        WriteOp::Put {
            table: table.clone(),
            item: active,
            condition: Some(Condition::NotExists),
        },
        WriteOp::Put {
            table,
            item: alert,
            condition: Some(Condition::NotExists),
        },
    ];
    match app.audit.commit(event, change).await {
        Ok(()) => Ok(true),
        Err(CommitError::Change { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The alert whose collapse window is open, if any (one read).
pub async fn open_alert_id(app: &AppContext, user_id: &str) -> Result<Option<String>, ApiError> {
    let window = app
        .db
        .get(&app.config.table, &keys::sos_window(user_id))
        .await?;
    Ok(window.and_then(|w| {
        w.get("alert_id")
            .and_then(Value::as_str)
            .map(str::to_string)
    }))
}

/// Records a repeat on an open alert (count, time, latest location) with `event`
/// (3 items); `None` when the alert is gone.
pub async fn join(
    app: &AppContext,
    user_id: &str,
    alert_id: &str,
    location: Option<&str>,
    event: AuditEvent,
) -> Result<Option<OpenAlert>, ApiError> {
    let key = keys::sos_alert(user_id, alert_id);
    let Some(stored) = app.db.get(&app.config.table, &key).await? else {
        return Ok(None);
    };
    let mut update = Update::new()
        .add("repeats", 1)
        .set("last_at", app.now().to_string());
    if let Some(location) = location {
        update = update.set(
            "location",
            phi::seal(app, &key, "location", location).await?,
        );
    }
    let change = vec![WriteOp::Update {
        table: app.config.table.clone(),
        key,
        update,
        condition: Some(Condition::Exists),
    }];
    match app.audit.commit(event, change).await {
        Ok(()) => Ok(Some(OpenAlert {
            created_at: stored
                .get("created_at")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            sent: stored.get("sent").and_then(Value::as_bool) == Some(true),
        })),
        Err(CommitError::Change { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Records that the alert's messages are queued, so a repeat does not queue them again.
pub async fn mark_sent(app: &AppContext, user_id: &str, alert_id: &str) -> Result<(), ApiError> {
    app.db
        .update(
            &app.config.table,
            &keys::sos_alert(user_id, alert_id),
            Update::new().set("sent", true),
            Some(Condition::Exists),
        )
        .await?;
    Ok(())
}
