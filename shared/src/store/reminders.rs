//! Reminders: what is due, found by time bucket, and each delivery claimed once.
//!
//! - **Due items** live in one partition per UTC minute, `DUE#<YYYYMMDDHHMM>` /
//!   `REMINDER#<reminder id>` (ids and the due time only, never PHI; TTL two days after
//!   the minute). The scheduler reads a minute with one `Query` of that partition: never
//!   a scan. Producers do not write them directly: they append the ops of
//!   [`schedule`]/[`cancel`] (or, for appointments, the one function
//!   [`appointment_ops`]) to their own audited commit, so a reminder exists exactly when
//!   its booking or medication does.
//! - **The cursor** (`DUECURSOR` / `CURSOR`, attribute `through`: the last minute fully
//!   processed, in epoch minutes) moves only forward, with a condition on the value it
//!   was read at, after every reminder of the minute was queued. A failed or skipped run
//!   leaves it behind, and the next run catches up at most [`MAX_MINUTES_PER_RUN`]
//!   minutes (older first); a long outage is caught up over several runs. The first run
//!   ever starts at its own minute.
//! - **Deliveries** are claimed per reminder and channel before anything is sent
//!   (`DELIVERY#<reminder id>` / `CHANNEL#<push|email|sms>`, a conditional put), then
//!   marked sent. A claim that exists unsent was made by a delivery whose outcome is
//!   unknown (it crashed between claiming and marking): it is never sent again and never
//!   forgotten — it stays listed in gsi1 `UNSENT` ([`unresolved`]) and each sighting is
//!   logged as an error with a metric line. A send that fails knowingly releases its
//!   claim, so the retry sends it.
//!
//! Medication doses keep one rolling reminder each (the next dose; see
//! `store::medications::roll_forward`), so nothing is generated ahead unboundedly.

use crate::domain::Timestamp;
use crate::ports::db::{Condition, Index, Item, Query, SortKey, Update, Value, WriteOp, TTL};
use crate::ports::queue::OutgoingMessage;
use crate::store::keys;
use crate::{ApiError, AppContext};
use chrono::{DateTime, Duration};
use serde::{Deserialize, Serialize};

/// How many minutes one scheduler run processes at most (a run behind by more leaves
/// the rest to the next runs, one per minute).
pub const MAX_MINUTES_PER_RUN: i64 = 30;
/// How long a due item is kept after its minute.
pub const DUE_TTL_SECS: i64 = 2 * 24 * 3600;
/// How long a delivery claim is kept (longer than the queue's retention of 4 days, so
/// a redelivered message always finds its claim).
pub const CLAIM_TTL_SECS: i64 = 30 * 24 * 3600;
/// Appointment reminders, this long before the start.
pub const APPOINTMENT_LEADS: [(&str, i64); 2] = [("24h", 24 * 3600), ("1h", 3600)];

/// What a reminder is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// A medication dose (`subject_id` is the medication).
    Dose,
    /// An appointment (`subject_id` is the appointment).
    Appointment,
}

impl ReminderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::Dose => "dose",
            ReminderKind::Appointment => "appointment",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "dose" => Some(ReminderKind::Dose),
            "appointment" => Some(ReminderKind::Appointment),
            _ => None,
        }
    }
}

/// One reminder: also the reminders queue's message body (ids and a time only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reminder {
    /// Stable: the same dose or appointment lead always has the same id.
    pub id: String,
    pub kind: ReminderKind,
    /// Who is reminded.
    pub user_id: String,
    pub subject_id: String,
    /// When it is due (the dose time, or the appointment start minus the lead).
    pub due_at: String,
    /// For appointments: the start it reminds of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
}

impl Reminder {
    /// The reminder of one scheduled dose.
    pub fn dose(patient_id: &str, medication_id: &str, due: Timestamp) -> Self {
        Self {
            id: format!("dose-{medication_id}-{}", due.epoch_secs()),
            kind: ReminderKind::Dose,
            user_id: patient_id.to_string(),
            subject_id: medication_id.to_string(),
            due_at: due.to_string(),
            starts_at: None,
        }
    }

    /// The reminders of an appointment starting at `start` (24 hours and 1 hour before).
    pub fn appointment(appointment_id: &str, patient_id: &str, start: Timestamp) -> Vec<Self> {
        APPOINTMENT_LEADS
            .iter()
            .map(|(lead, secs)| {
                let due = Timestamp::new(start.as_datetime() - Duration::seconds(*secs));
                Self {
                    id: format!("appt-{appointment_id}-{lead}-{}", start.epoch_secs()),
                    kind: ReminderKind::Appointment,
                    user_id: patient_id.to_string(),
                    subject_id: appointment_id.to_string(),
                    due_at: due.to_string(),
                    starts_at: Some(start.to_string()),
                }
            })
            .collect()
    }

    pub fn due(&self) -> Option<Timestamp> {
        Timestamp::parse(&self.due_at)
    }

    /// 1 to 200 bytes of `[A-Za-z0-9-]`: what a message from the queue must carry.
    pub fn valid(&self) -> bool {
        !self.id.is_empty()
            && self.id.len() <= 200
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && crate::guard::is_id(&self.user_id)
            && crate::guard::is_id(&self.subject_id)
            && self.due().is_some()
    }
}

/// Epoch minute of an instant.
pub fn minute_of(at: Timestamp) -> i64 {
    at.epoch_secs().div_euclid(60)
}

/// `YYYYMMDDHHMM` of an epoch minute (UTC).
pub fn bucket_name(minute: i64) -> String {
    DateTime::from_timestamp(minute * 60, 0)
        .map(|t| t.format("%Y%m%d%H%M").to_string())
        .unwrap_or_default()
}

fn due_key(reminder: &Reminder) -> Option<crate::ports::db::Key> {
    let due = reminder.due()?;
    Some(keys::due_reminder(
        &bucket_name(minute_of(due)),
        &reminder.id,
    ))
}

/// The write that schedules a reminder (idempotent: writing it twice keeps one).
pub fn schedule(table: &str, reminder: &Reminder) -> Option<WriteOp> {
    let key = due_key(reminder)?;
    let due = reminder.due()?;
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk));
    item.insert("sk".into(), Value::S(key.sk));
    item.insert("id".into(), Value::S(reminder.id.clone()));
    item.insert("kind".into(), Value::S(reminder.kind.as_str().into()));
    item.insert("user_id".into(), Value::S(reminder.user_id.clone()));
    item.insert("subject_id".into(), Value::S(reminder.subject_id.clone()));
    item.insert("due_at".into(), Value::S(reminder.due_at.clone()));
    if let Some(start) = &reminder.starts_at {
        item.insert("starts_at".into(), Value::S(start.clone()));
    }
    item.insert(TTL.into(), Value::N(due.epoch_secs() + DUE_TTL_SECS));
    Some(WriteOp::Put {
        table: table.to_string(),
        item,
        condition: None,
    })
}

/// The write that cancels a reminder (a no-op when it is not there).
pub fn cancel(table: &str, reminder: &Reminder) -> Option<WriteOp> {
    Some(WriteOp::Delete {
        table: table.to_string(),
        key: due_key(reminder)?,
        condition: None,
    })
}

/// The reminder writes of an appointment change, to append to its commit (at most 4
/// ops): a booking passes `(None, Some(start))`, a reschedule `(Some(old), Some(new))`,
/// a cancellation `(Some(old), None)`. The old start's reminders are always deleted,
/// also those already due: a scheduler that is behind (a failed or skipped run) has not
/// queued them yet, and must not remind of a time that no longer holds (deleting one
/// that fired already is harmless). A new start's reminders whose due time is not after
/// `now` are not written (they would fire late, at once). A reschedule to the same
/// start writes nothing.
pub fn appointment_ops(
    table: &str,
    appointment_id: &str,
    patient_id: &str,
    before: Option<Timestamp>,
    after: Option<Timestamp>,
    now: Timestamp,
) -> Vec<WriteOp> {
    if before == after {
        return Vec::new();
    }
    let mut ops = Vec::new();
    if let Some(start) = before {
        ops.extend(
            Reminder::appointment(appointment_id, patient_id, start)
                .iter()
                .filter_map(|r| cancel(table, r)),
        );
    }
    if let Some(start) = after {
        ops.extend(
            Reminder::appointment(appointment_id, patient_id, start)
                .iter()
                .filter(|r| r.due().is_some_and(|due| due > now))
                .filter_map(|r| schedule(table, r)),
        );
    }
    ops
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Value::as_str).map(str::to_string)
}

fn from_item(item: &Item) -> Option<Reminder> {
    Some(Reminder {
        id: text(item, "id")?,
        kind: ReminderKind::parse(&text(item, "kind")?)?,
        user_id: text(item, "user_id")?,
        subject_id: text(item, "subject_id")?,
        due_at: text(item, "due_at")?,
        starts_at: text(item, "starts_at"),
    })
}

/// Every reminder due in one minute (one `Query` per page of the minute's partition).
pub async fn due_in(app: &AppContext, minute: i64) -> Result<Vec<Reminder>, ApiError> {
    let partition = keys::due_bucket(&bucket_name(minute));
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = app
            .db
            .query(
                &app.config.table,
                Query::partition(partition.clone())
                    .sort_key(SortKey::BeginsWith(keys::REMINDER_SK.into()))
                    .limit(1000)
                    .start(start),
            )
            .await?;
        for item in &page.items {
            match from_item(item) {
                Some(reminder) => out.push(reminder),
                None => tracing::error!("a malformed due reminder item is skipped"),
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(out),
        }
    }
}

/// The last minute fully processed, if any run has finished one.
pub async fn cursor(app: &AppContext) -> Result<Option<i64>, ApiError> {
    Ok(app
        .db
        .get(&app.config.table, &keys::due_cursor())
        .await?
        .and_then(|item| item.get("through").and_then(Value::as_i64)))
}

/// Moves the cursor from `read` (what [`cursor`] said) to `through`; `false` when
/// another run moved it meanwhile (this run then stops).
pub async fn advance(app: &AppContext, read: Option<i64>, through: i64) -> Result<bool, ApiError> {
    let condition = match read {
        Some(value) => Condition::Equals("through".into(), Value::N(value)),
        None => Condition::NotExists,
    };
    match app
        .db
        .update(
            &app.config.table,
            &keys::due_cursor(),
            Update::new()
                .set("through", through)
                .set("updated_at", app.now().to_string()),
            Some(condition),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if err.is_condition_failed() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Queues reminders on the reminders queue (batches of ten).
pub async fn enqueue(app: &AppContext, reminders: &[Reminder]) -> Result<(), ApiError> {
    if reminders.is_empty() {
        return Ok(());
    }
    let messages = reminders
        .iter()
        .map(|r| serde_json::to_string(r).map(OutgoingMessage::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    for chunk in messages.chunks(10) {
        app.queue
            .send_batch(&app.config.queues.reminders, chunk.to_vec())
            .await?;
    }
    Ok(())
}

/// A delivery channel of a reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Push,
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Push, Channel::Email, Channel::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// What claiming a delivery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claimed now: send, then [`mark_sent`] (or [`release`] if the send failed).
    Claimed,
    /// Sent before: nothing to do.
    Sent,
    /// Claimed before and never marked sent: the outcome is unknown. Not sent again.
    Unknown,
}

/// Claims one channel of one reminder (a conditional put).
pub async fn claim(
    app: &AppContext,
    reminder_id: &str,
    channel: Channel,
) -> Result<Claim, ApiError> {
    let key = keys::delivery(reminder_id, channel.as_str());
    let now = app.now();
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    item.insert("reminder_id".into(), Value::S(reminder_id.into()));
    item.insert("channel".into(), Value::S(channel.as_str().into()));
    item.insert("state".into(), Value::S("claimed".into()));
    item.insert("claimed_at".into(), Value::S(now.to_string()));
    item.insert("gsi1pk".into(), Value::S(keys::UNSENT.into()));
    item.insert(
        "gsi1sk".into(),
        Value::S(format!("{now}#{reminder_id}#{}", channel.as_str())),
    );
    item.insert(TTL.into(), Value::N(now.epoch_secs() + CLAIM_TTL_SECS));
    match app
        .db
        .put(&app.config.table, item, Some(Condition::NotExists))
        .await
    {
        Ok(()) => Ok(Claim::Claimed),
        Err(err) if err.is_condition_failed() => {
            let stored = app.db.get(&app.config.table, &key).await?;
            let sent = stored
                .as_ref()
                .and_then(|item| item.get("state"))
                .and_then(Value::as_str)
                == Some("sent");
            Ok(if sent { Claim::Sent } else { Claim::Unknown })
        }
        Err(err) => Err(err.into()),
    }
}

/// Marks a claimed delivery sent (and takes it off the `UNSENT` list).
pub async fn mark_sent(
    app: &AppContext,
    reminder_id: &str,
    channel: Channel,
) -> Result<(), ApiError> {
    app.db
        .update(
            &app.config.table,
            &keys::delivery(reminder_id, channel.as_str()),
            Update::new()
                .set("state", "sent")
                .set("sent_at", app.now().to_string())
                .remove("gsi1pk")
                .remove("gsi1sk"),
            Some(Condition::Exists),
        )
        .await?;
    Ok(())
}

/// Gives a claim back after a send that certainly did not happen, so a retry sends it.
pub async fn release(
    app: &AppContext,
    reminder_id: &str,
    channel: Channel,
) -> Result<(), ApiError> {
    app.db
        .delete(
            &app.config.table,
            &keys::delivery(reminder_id, channel.as_str()),
            Some(Condition::Equals(
                "state".into(),
                Value::S("claimed".into()),
            )),
        )
        .await
        .map(|_| ())
        .or_else(|err| {
            if err.is_condition_failed() {
                Ok(())
            } else {
                Err(err.into())
            }
        })
}

/// A delivery claimed and never marked sent (outcome unknown), oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub reminder_id: String,
    pub channel: String,
    pub claimed_at: String,
}

/// The deliveries whose outcome is unknown (gsi1 `UNSENT`), oldest first; claims
/// being sent right now are listed too, for a moment.
pub async fn unresolved(app: &AppContext, limit: u32) -> Result<Vec<Unresolved>, ApiError> {
    let page = app
        .db
        .query(
            &app.config.table,
            Query::partition(keys::UNSENT).on(Index::Gsi1).limit(limit),
        )
        .await?;
    Ok(page
        .items
        .iter()
        .map(|item| Unresolved {
            reminder_id: text(item, "reminder_id").unwrap_or_default(),
            channel: text(item, "channel").unwrap_or_default(),
            claimed_at: text(item, "claimed_at").unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    const APPT: &str = "01JD5Z6Q8W3M0V7K2R9T4Y6B1C";
    const PATIENT: &str = "01JD5Z6Q8W3M0V7K2R9T4Y6B1D";

    #[test]
    fn buckets_are_utc_minutes() {
        let at = ts("2027-03-14T07:30:59Z");
        assert_eq!(bucket_name(minute_of(at)), "202703140730");
        assert_eq!(minute_of(ts("2027-03-14T07:31:00Z")), minute_of(at) + 1);
    }

    #[test]
    fn appointment_ops_book_move_and_cancel_with_at_most_four_writes() {
        let now = ts("2027-01-01T00:00:00Z");
        let start = ts("2027-01-10T15:00:00Z");
        let moved = ts("2027-01-11T15:00:00Z");
        let book = appointment_ops("t", APPT, PATIENT, None, Some(start), now);
        assert_eq!(book.len(), 2);
        assert!(book.iter().all(|op| matches!(op, WriteOp::Put { .. })));
        let reschedule = appointment_ops("t", APPT, PATIENT, Some(start), Some(moved), now);
        assert_eq!(reschedule.len(), 4);
        let cancel = appointment_ops("t", APPT, PATIENT, Some(moved), None, now);
        assert_eq!(cancel.len(), 2);
        assert!(cancel.iter().all(|op| matches!(op, WriteOp::Delete { .. })));
        assert!(appointment_ops("t", APPT, PATIENT, Some(start), Some(start), now).is_empty());
        // Booked 2 hours ahead: the 24-hour reminder is already past.
        let soon = appointment_ops(
            "t",
            APPT,
            PATIENT,
            None,
            Some(ts("2027-01-01T02:00:00Z")),
            now,
        );
        assert_eq!(soon.len(), 1);
        // Cancelled after both reminders were due: both are still deleted (a scheduler
        // that is behind has not queued them).
        let late = appointment_ops(
            "t",
            APPT,
            PATIENT,
            Some(start),
            None,
            ts("2027-01-10T14:30:00Z"),
        );
        assert_eq!(late.len(), 2);
        assert!(late.iter().all(|op| matches!(op, WriteOp::Delete { .. })));
        let reminders = Reminder::appointment(APPT, PATIENT, start);
        assert_eq!(reminders[1].due_at, "2027-01-10T14:00:00Z");
        assert!(reminders.iter().all(Reminder::valid));
    }
}
