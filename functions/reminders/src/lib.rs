//! Reminders: two functions of one crate.
//!
//! - **`reminders`** ([`scheduled`], EventBridge every minute): reads the minutes after
//!   the cursor up to the current one (at most
//!   [`reminders::MAX_MINUTES_PER_RUN`] per run), each with one `Query` of its bucket,
//!   queues every current reminder on the reminders queue, then rolls each
//!   medication's dose reminder to its next dose and moves the cursor past the minute. A failure
//!   stops the run before the cursor moves: the next run starts with that minute again
//!   (queueing twice is harmless: deliveries are claimed per reminder id).
//! - **`remind`** ([`deliver`], the reminders queue): for each reminder, the WebSocket
//!   `notification` (carrying the reminder id, so a client drops a repeat), then e-mail
//!   and SMS through the messenger port. Each channel is claimed before it is sent and
//!   marked sent after (`shared::store::reminders`): a duplicated delivery sends nothing
//!   twice; a claim found unsent is reported (the `ReminderDeliveryUnknown` metric as an
//!   embedded metric format line, which `ReminderDeliveryUnknownAlarm` watches, an error
//!   log line, and listed in gsi1 `UNSENT`) and not sent again; a send
//!   that failed knowingly gives its claim back and the message is retried; a message
//!   that cannot be read fails permanently and reaches the DLQ after 5 receives. An
//!   appointment reminder is delivered only while the appointment still starts at the
//!   time it reminds of and was not cancelled (one `GetItem` of the appointment).
//!
//! What leaves the process (docs/phi.md): ids and times on the queue; the WebSocket
//! event carries ids and times; mail and SMS say that a dose (or an appointment) is due
//! at a local time, never the drug, dosage or reason.

/// The outside services the `reminders` binary links (`shared::adapters::links`): due
/// reminders are queued.
pub const LINKS: shared::adapters::links::Links = shared::adapters::links::QUEUE;
/// The outside services the `remind` binary links (`shared::adapters::links`): a reminder
/// goes out by WebSocket, e-mail or SMS.
pub const REMIND_LINKS: shared::adapters::links::Links =
    shared::adapters::links::PUSH | shared::adapters::links::MESSENGER;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use shared::auth::accounts;
use shared::domain::Timestamp;
use shared::ports::messenger::{MessengerError, OutboundMessage};
use shared::store::reminders::{self, Channel, Claim, Reminder, ReminderKind};
use shared::store::{appointments, medications, profiles};
use shared::worker::{process_batch, WorkError};
use shared::ws::ServerEvent;
use shared::{ApiError, App, AppContext};

/// What one scheduler run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// Minutes processed (the cursor moved past each).
    pub minutes: i64,
    /// Reminders queued.
    pub queued: usize,
    /// Dose reminders skipped as stale (their medication changed).
    pub stale: usize,
    /// Minutes still behind after this run.
    pub behind: i64,
}

/// The scheduler's entry point (EventBridge event).
pub async fn scheduled(app: App, _event: EventBridgeEvent) -> Result<(), ApiError> {
    run(&app).await.map(|_| ())
}

/// One scheduler run at the app clock's current minute.
pub async fn run(app: &AppContext) -> Result<Run, ApiError> {
    let now_minute = reminders::minute_of(app.now());
    let read = reminders::cursor(app).await?;
    let first = read.map_or(now_minute, |through| through + 1);
    let last = now_minute.min(first + reminders::MAX_MINUTES_PER_RUN - 1);
    let mut done = Run::default();
    let mut cursor = read;
    for minute in first..=last {
        let mut current = Vec::new();
        let mut rolls = Vec::new();
        for reminder in reminders::due_in(app, minute).await? {
            match reminder.kind {
                ReminderKind::Dose => match medications::current_dose(app, &reminder).await? {
                    Some(stored) => {
                        rolls.extend(reminder.due().map(|due| (stored, due)));
                        current.push(reminder);
                    }
                    None => done.stale += 1,
                },
                ReminderKind::Appointment => current.push(reminder),
            }
        }
        // Queued first, rolled after: a failure in between repeats, never loses, a dose.
        reminders::enqueue(app, &current).await?;
        for (stored, due) in &rolls {
            medications::roll_forward(app, stored, *due).await?;
        }
        done.queued += current.len();
        if !reminders::advance(app, cursor, minute).await? {
            tracing::info!(minute, "another run moved the reminder cursor; stopping");
            break;
        }
        cursor = Some(minute);
        done.minutes += 1;
    }
    done.behind = now_minute - cursor.unwrap_or(now_minute);
    tracing::info!(
        metric = "reminder_scheduler",
        minutes = done.minutes,
        queued = done.queued,
        stale = done.stale,
        behind = done.behind,
        "reminder run"
    );
    Ok(done)
}

/// The worker's entry point (SQS batch, partial failures reported).
pub async fn deliver(app: App, event: SqsEvent) -> SqsBatchResponse {
    process_batch(event, |record| {
        let app = app.clone();
        async move { process(&app, record).await }
    })
    .await
}

fn from_api(err: ApiError) -> WorkError {
    if err.is_server_error() {
        WorkError::Transient(Box::new(err))
    } else {
        WorkError::Permanent(err.code().to_string())
    }
}

async fn process(app: &AppContext, record: SqsMessage) -> Result<(), WorkError> {
    let body = record.body.unwrap_or_default();
    let reminder: Reminder = serde_json::from_str(&body)
        .map_err(|_| WorkError::Permanent("not a reminder message".into()))?;
    if !reminder.valid() {
        return Err(WorkError::Permanent(
            "the reminder's ids or time are malformed".into(),
        ));
    }
    if !holds(app, &reminder).await? {
        tracing::info!(
            reminder_id = %reminder.id,
            "the appointment moved or ended since the reminder was queued; not sent"
        );
        return Ok(());
    }
    for channel in Channel::ALL {
        deliver_on(app, &reminder, channel).await?;
    }
    Ok(())
}

/// Whether a reminder still holds when it is delivered: an appointment's reminder only
/// while the appointment starts at the start it reminds of, is still reminded (not
/// cancelled, completed or a no-show) and is the recipient's (one `GetItem`, nothing
/// opened). A move or cancel deletes the reminders it has not queued yet in its own
/// commit; this covers the ones already on the queue. Dose reminders are checked by the
/// scheduler against the medication (`medications::current_dose`).
async fn holds(app: &AppContext, reminder: &Reminder) -> Result<bool, WorkError> {
    if reminder.kind != ReminderKind::Appointment {
        return Ok(true);
    }
    let Some(stored) = appointments::get(app, &reminder.subject_id)
        .await
        .map_err(from_api)?
    else {
        return Ok(false);
    };
    let starts = reminder.starts_at.as_deref().and_then(Timestamp::parse);
    Ok(stored.status.is_reminded()
        && stored.patient_id == reminder.user_id
        && starts == Some(stored.start))
}

/// The message of one channel, or `None` when the user has no address for it.
async fn message(
    app: &AppContext,
    reminder: &Reminder,
    channel: Channel,
) -> Result<Option<OutboundMessage>, WorkError> {
    let text = || async {
        let zone = profiles::time_zone(app, &reminder.user_id)
            .await
            .map_err(from_api)?;
        let local = |at: &str| {
            Timestamp::parse(at)
                .map(|t| zone.local(t).format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default()
        };
        Ok::<_, WorkError>(match reminder.kind {
            ReminderKind::Dose => format!(
                "DoCare reminder: a medication dose is due at {} ({zone}). Open the app for details.",
                local(&reminder.due_at)
            ),
            ReminderKind::Appointment => format!(
                "DoCare reminder: you have an appointment at {} ({zone}). Open the app for details.",
                local(reminder.starts_at.as_deref().unwrap_or(&reminder.due_at))
            ),
        })
    };
    match channel {
        Channel::Push => Ok(None),
        Channel::Email => {
            let Some(account) = accounts::get(app, &reminder.user_id)
                .await
                .map_err(from_api)?
            else {
                return Ok(None);
            };
            let to = account.email(app).await.map_err(from_api)?;
            if to.is_empty() {
                return Ok(None);
            }
            Ok(Some(OutboundMessage::email(
                to,
                "DoCare reminder",
                text().await?,
            )))
        }
        Channel::Sms => {
            let Some(phone) = profiles::phone(app, &reminder.user_id)
                .await
                .map_err(|err| from_api(err.into()))?
            else {
                return Ok(None);
            };
            Ok(Some(OutboundMessage::sms(phone, text().await?)))
        }
    }
}

/// The WebSocket event of a reminder (ids and times only).
pub fn push_event(reminder: &Reminder) -> ServerEvent<serde_json::Value> {
    ServerEvent::new(
        "notification",
        serde_json::json!({
            "kind": "reminder",
            "reminder_id": reminder.id,
            "reminder": reminder.kind.as_str(),
            "subject_id": reminder.subject_id,
            "due_at": reminder.due_at,
            "starts_at": reminder.starts_at,
        }),
    )
}

async fn deliver_on(
    app: &AppContext,
    reminder: &Reminder,
    channel: Channel,
) -> Result<(), WorkError> {
    let outbound = match channel {
        Channel::Push => None,
        _ => match message(app, reminder, channel).await? {
            Some(message) => Some(message),
            None => return Ok(()), // no address for this channel: nothing to send
        },
    };
    match reminders::claim(app, &reminder.id, channel)
        .await
        .map_err(from_api)?
    {
        Claim::Sent => {
            tracing::info!(channel = channel.as_str(), "already sent; skipping");
            return Ok(());
        }
        Claim::Unknown => {
            // The metric (an embedded metric format line) is what the alarm watches.
            shared::telemetry::emit_metric(
                app,
                shared::telemetry::metrics::REMINDER_DELIVERY_UNKNOWN,
                1,
            );
            tracing::error!(
                metric = "reminder_delivery_unknown",
                reminder_id = %reminder.id,
                channel = channel.as_str(),
                "a delivery was claimed and never marked sent (outcome unknown); not sending it again"
            );
            return Ok(());
        }
        Claim::Claimed => {}
    }
    let sent = match outbound {
        None => shared::ws::push_to_user(app, &reminder.user_id, &push_event(reminder))
            .await
            .map(|_| ())
            .map_err(from_api),
        Some(message) => match app.messenger.send(&message).await {
            Ok(_) => Ok(()),
            Err(MessengerError::Unavailable(source)) => Err(WorkError::Transient(source)),
            Err(_) => {
                // Refused (a bad address): sending again will not help; keep it marked.
                tracing::warn!(
                    channel = channel.as_str(),
                    "the provider refused the reminder"
                );
                Ok(())
            }
        },
    };
    match sent {
        Ok(()) => reminders::mark_sent(app, &reminder.id, channel)
            .await
            .map_err(from_api),
        Err(err) => {
            // Certainly not sent: give the claim back so the retry sends it.
            reminders::release(app, &reminder.id, channel)
                .await
                .map_err(from_api)?;
            Err(err)
        }
    }
}
