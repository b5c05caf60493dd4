//! Sent markers of the notification worker: `NOTIFY#<id>` / `SENT`, kept one day, so a
//! redelivered queue message is not sent twice.

use crate::ports::db::{item, Condition, DbError, Value};
use crate::store::keys;
use crate::AppContext;

/// How long a sent marker is kept (longer than any SQS redelivery).
pub const SENT_MARKER_TTL_SECS: i64 = 24 * 60 * 60;

/// Whether a notification with this idempotency key was sent already.
pub async fn was_sent(app: &AppContext, id: &str) -> Result<bool, DbError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::notification_sent(id))
        .await?
        .is_some())
}

/// Records that it was sent. A concurrent delivery that recorded it first is fine.
pub async fn mark_sent(app: &AppContext, id: &str) -> Result<(), DbError> {
    let marker = keys::notification_sent(id);
    let now = app.clock.now().timestamp();
    let record = item([
        ("pk", Value::S(marker.pk)),
        ("sk", Value::S(marker.sk)),
        ("sent_at", Value::N(now)),
        ("expires_at", Value::N(now + SENT_MARKER_TTL_SECS)),
    ]);
    match app
        .db
        .put(&app.config.table, record, Some(Condition::NotExists))
        .await
    {
        Ok(()) | Err(DbError::ConditionFailed { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}
