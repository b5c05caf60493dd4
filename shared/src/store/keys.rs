//! Every key of the domain table, in one place.
//!
//! The table is a single-table design (`pk`, `sk`, plus `gsi1pk/gsi1sk` and
//! `gsi2pk/gsi2sk` overloaded indexes). Each builder here names one item kind; nothing
//! else in the code base spells a key prefix, so the key schema in `docs/design.md` is
//! checked against [`SCHEMA`] by a test, and each function's IAM can later be scoped to
//! the partition prefixes it uses (`dynamodb:LeadingKeys` sees only partition keys).
//!
//! Code under `functions/` goes through the repositories of [`crate::store`]; the few
//! handler files that still build keys themselves (listed in `tests/e2e/architecture.rs`,
//! a list that may only shrink) use these builders, never a spelled-out prefix.

use crate::ports::db::Key;

/// One item kind of the domain table: its partition-key prefix, its sort key (or sort
/// key prefix, ending in `#`) and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemKind {
    pub pk: &'static str,
    pub sk: &'static str,
    pub holds: &'static str,
}

/// The key schema, for docs and the tests that keep docs and code in step. Each
/// partition prefix has one owner (the function that writes it), so a function's IAM
/// can be scoped to the prefixes it writes and reads with `dynamodb:LeadingKeys`.
pub const SCHEMA: &[ItemKind] = &[
    ItemKind {
        pk: USER,
        sk: "ACCOUNT",
        holds: "account (role, status, sealed e-mail and name, password hash, TOTP)",
    },
    ItemKind {
        pk: PROFILE,
        sk: "PROFILE",
        holds: "profile (sealed PHI fields)",
    },
    ItemKind {
        pk: SESSION,
        sk: "SESSION#",
        holds: "session (one login: amr, revoked, expiry)",
    },
    ItemKind {
        pk: RECOVERY,
        sk: "RECOVERY#",
        holds: "MFA recovery code by hash (one set at a time)",
    },
    ItemKind {
        pk: CARE,
        sk: "PATIENT#",
        holds: "care relationship, provider side (gsi1 CAREOF#patient, gsi2 CAREID#id)",
    },
    ItemKind {
        pk: CONTACTS,
        sk: "CONTACT#",
        holds: "emergency contact (sealed fields)",
    },
    ItemKind {
        pk: CONTACTS,
        sk: "COUNT",
        holds: "emergency contact count (limit kept by a condition)",
    },
    ItemKind {
        pk: CONTACTS,
        sk: "SENT#",
        holds:
            "messages to emergency contacts on one UTC day (daily caps kept by a condition; TTL)",
    },
    ItemKind {
        pk: SOS,
        sk: "ALERT#",
        holds: "SOS alert (sealed location and message)",
    },
    ItemKind {
        pk: SOS,
        sk: "ACTIVE",
        holds: "the open SOS collapse window (TTL)",
    },
    ItemKind {
        pk: PROVIDER,
        sk: "LISTING",
        holds: "provider listing and availability (gsi1 DIRECTORY; version kept by bookings)",
    },
    ItemKind {
        pk: APPOINTMENT,
        sk: "APPT",
        holds:
            "appointment (sealed reason and notes; gsi1 APPTSOF#patient, gsi2 APPTSWITH#provider)",
    },
    ItemKind {
        pk: CLAIM,
        sk: "UNIT#",
        holds: "one 15-minute unit of a provider's time held by an appointment",
    },
    ItemKind {
        pk: IDEMPOTENCY,
        sk: "IDEMP",
        holds: "idempotency record of a booking (fingerprint, appointment id; TTL)",
    },
    ItemKind {
        pk: PRICE,
        sk: "TYPE#",
        holds: "a provider's price of one consultation type (amount, currency)",
    },
    ItemKind {
        pk: PAYMENT,
        sk: "PAYMENT",
        holds: "payment (intent id, amount, status, refund reservations; gsi1 TXNSOF#patient, gsi2 PAYSFOR#appointment)",
    },
    ItemKind {
        pk: PAYMENT,
        sk: "REFUND#",
        holds: "refund of a payment (reserved amount, status; gsi1 TXNSOF#patient)",
    },
    ItemKind {
        pk: PAYMENT,
        sk: "DISPUTE#",
        holds: "dispute of a payment (gsi1 TXNSOF#patient)",
    },
    ItemKind {
        pk: PAYMENT,
        sk: "PAID",
        holds: "an appointment's paid mark (pk: the appointment's id; the payment that succeeded)",
    },
    ItemKind {
        pk: PAYMENT_KEY,
        sk: "PAYKEY",
        holds: "idempotency record of a payment creation (appointment, payment id; TTL)",
    },
    ItemKind {
        pk: PAYMENT_KEY,
        sk: "REFUNDKEY",
        holds: "idempotency record of a refund (payment, amount and reason, refund id; TTL)",
    },
    ItemKind {
        pk: STRIPE_INTENT,
        sk: "PI",
        holds: "payment id of a Stripe payment intent (webhooks about charges and disputes)",
    },
    ItemKind {
        pk: STRIPE_EVENT,
        sk: "EVENT",
        holds: "a processed Stripe webhook event (once only; TTL)",
    },
    // --- video (the video and twilio-webhook functions) ---
    ItemKind {
        pk: VIDEO_CALL,
        sk: "SESSION",
        holds: "video session (appointment, participants' opaque ids, status, consents, current room; gsi2 VIDEOSFOR#appointment)",
    },
    ItemKind {
        pk: VIDEO_CALL,
        sk: "ROOM#",
        holds: "one Twilio room of a session (SID, status, newest callback sequence number applied)",
    },
    ItemKind {
        pk: VIDEO_CALL,
        sk: "PART#",
        holds: "a participant's stay in a room (side, joined and left times, duration)",
    },
    ItemKind {
        pk: VIDEO_CALL,
        sk: "REC#",
        holds: "a recording of a room as Twilio reported it (SID, status)",
    },
    ItemKind {
        pk: APPT_VIDEO,
        sk: "VIDEO",
        holds: "the video session of an appointment (one per appointment, kept by a condition)",
    },
    ItemKind {
        pk: TWILIO_CALLBACK,
        sk: "CALLBACK",
        holds: "a processed Twilio status callback (once only; TTL)",
    },
    ItemKind {
        pk: MEDICATION,
        sk: "MEDICATION",
        holds: "medication (sealed name, dosage, form, route, instructions; gsi1 MEDSOF#patient)",
    },
    ItemKind {
        pk: MEDICATION,
        sk: "DOSE#",
        holds: "recorded dose by scheduled time (taken or skipped; one per dose)",
    },
    // --- secure clinical notes (notes) ---
    ItemKind {
        pk: NOTE,
        sk: "NOTE",
        holds: "secure note head (patient, appointment, author, type, current version, status, shared; gsi1 NOTESFOR#appointment)",
    },
    ItemKind {
        pk: NOTE,
        sk: "VERSION#",
        holds: "note version by number (author, kind, sealed text with its SHA-256; never overwritten)",
    },
    ItemKind {
        pk: DOCUMENT,
        sk: "DOCUMENT",
        holds: "document (status, type, size, sealed name and checksum, sealed object; gsi1 DOCSOF#owner, gsi2 DOCSOF#owner#category; TTL until scanned)",
    },
    ItemKind {
        pk: DOCUMENT,
        sk: "SHARE#",
        holds: "a document shared with a provider (gsi1 DOCSHARED#provider, gsi2 DOCSHARED#provider#category)",
    },
    ItemKind {
        pk: DOCUMENT_CONTENT,
        sk: "CONTENT#",
        holds: "an owner's stored content by keyed HMAC of its SHA-256 (the sealed object duplicates link to)",
    },
    ItemKind {
        pk: CONVERSATION,
        sk: "CONV",
        holds: "conversation (patient, participants, last message seq and time)",
    },
    ItemKind {
        pk: CONVERSATION,
        sk: "MEMBER#",
        holds: "participant of a conversation (read-up-to; gsi1 CONVSOF#user)",
    },
    ItemKind {
        pk: CONVERSATION,
        sk: "MSG#",
        holds: "message by conversation seq (sealed body, or a client-encrypted body as given)",
    },
    ItemKind {
        pk: CONVERSATION,
        sk: "CMID#",
        holds: "client message id claim per sender (one message per id)",
    },
    ItemKind {
        pk: SYNC,
        sk: "SEQ",
        holds: "a user's event sequence counter (advanced by a condition)",
    },
    ItemKind {
        pk: SYNC,
        sk: "EVT#",
        holds: "a user's event by sequence number (ids only; TTL)",
    },
    ItemKind {
        pk: PRESENCE,
        sk: "PRESENCE",
        holds: "a user's presence state and last-seen (TTL)",
    },
    ItemKind {
        pk: DUE,
        sk: "REMINDER#",
        holds: "reminder due in one UTC minute (ids only; TTL)",
    },
    ItemKind {
        pk: DUE_CURSOR,
        sk: "CURSOR",
        holds: "the reminder scheduler's processed-up-to minute",
    },
    ItemKind {
        pk: DELIVERY,
        sk: "CHANNEL#",
        holds: "reminder delivery claim per channel (gsi1 UNSENT until sent; TTL)",
    },
    ItemKind {
        pk: EMAIL,
        sk: "EMAIL",
        holds: "e-mail uniqueness claim (blind index)",
    },
    ItemKind {
        pk: REFRESH,
        sk: "REFRESH",
        holds: "refresh token by hash (used once, TTL)",
    },
    ItemKind {
        pk: MFA,
        sk: "MFA",
        holds: "MFA challenge by token hash (attempts, mailed code, TTL)",
    },
    ItemKind {
        pk: OTT,
        sk: "OTT",
        holds: "one-time token by hash (verify e-mail, reset, invite; TTL)",
    },
    ItemKind {
        pk: RATE,
        sk: "RATE",
        holds: "rate-limit window counter (TTL)",
    },
    ItemKind {
        pk: CONN,
        sk: "CONN",
        holds: "WebSocket connection (gsi1 CONNS#user; TTL)",
    },
    ItemKind {
        pk: WSTICKET,
        sk: "TICKET",
        holds: "WebSocket ticket by hash (user, role, session; single use; TTL 30 s)",
    },
    ItemKind {
        pk: NOTIFY,
        sk: "SENT",
        holds: "notification sent marker (TTL)",
    },
    ItemKind {
        pk: DATAKEY,
        sk: "DATAKEY",
        holds: "KMS-wrapped data key (gsi1 DATAKEYS)",
    },
    ItemKind {
        pk: DATAKEY,
        sk: "BRANCHKEY",
        holds: "KMS-wrapped branch key, one per purpose and month (`DATAKEY#branch.<purpose>.<id>`; gsi1 BRANCHKEYS)",
    },
    ItemKind {
        pk: INDEXKEY,
        sk: "INDEXKEY",
        holds: "KMS-wrapped blind-index key",
    },
    ItemKind {
        pk: AUDITHEAD,
        sk: "HEAD",
        holds: "audit chain head of one shard",
    },
    ItemKind {
        pk: HEALTH,
        sk: "HEALTH",
        holds: "health probe (read only)",
    },
    ItemKind {
        pk: OBSERVATION,
        sk: "<effective>#",
        holds: "health observation (pk: patient and LOINC code; sk: effective time and a digest of source and sample id; sealed value)",
    },
    ItemKind {
        pk: OBSERVATION_RULE,
        sk: "LIMIT#",
        holds: "a provider's threshold on one code of a patient's observations",
    },
    ItemKind {
        pk: OBSERVATION_RULE,
        sk: "EPISODE#",
        holds: "an open threshold episode (opened by a condition: one notification per episode)",
    },
    ItemKind {
        pk: DEVICE,
        sk: "LINK#",
        holds: "a patient's connection to a health data provider (state, times, sealed OAuth tokens)",
    },
    ItemKind {
        pk: DEVICE_USER,
        sk: "LINK",
        holds: "a provider's user id (Google's healthUserId) to the patient connected with it: how a webhook delivery finds its connection",
    },
    ItemKind {
        pk: OAUTH_FLOW,
        sk: "FLOW",
        holds: "a pending OAuth authorization by hash of its state (user, provider, sealed PKCE verifier; single use; TTL 10 min)",
    },
];

pub const USER: &str = "USER#";
pub const PROFILE: &str = "PROFILE#";
pub const SESSION: &str = "SESSION#";
pub const RECOVERY: &str = "RECOVERY#";
pub const CARE: &str = "CARE#";
pub const CONTACTS: &str = "ECONTACTS#";
pub const SOS: &str = "SOS#";
pub const PROVIDER: &str = "PROVIDER#";
pub const APPOINTMENT: &str = "APPT#";
pub const CLAIM: &str = "CLAIM#";
pub const IDEMPOTENCY: &str = "IDEMP#";
pub const MEDICATION: &str = "MED#";
/// Secure clinical notes (the notes function).
pub const NOTE: &str = "NOTE#";
pub const CONVERSATION: &str = "CONV#";
pub const DOCUMENT: &str = "DOC#";
pub const DOCUMENT_CONTENT: &str = "DOCCONTENT#";
pub const SYNC: &str = "SYNC#";
pub const PRESENCE: &str = "PRESENCE#";
pub const PRICE: &str = "PRICE#";
pub const PAYMENT: &str = "PAYMENT#";
pub const PAYMENT_KEY: &str = "PAYKEY#";
pub const STRIPE_INTENT: &str = "STRIPEPI#";
pub const STRIPE_EVENT: &str = "STRIPEEVT#";
pub const VIDEO_CALL: &str = "VIDEOCALL#";
pub const APPT_VIDEO: &str = "APPTVIDEO#";
pub const TWILIO_CALLBACK: &str = "TWILIOCB#";
pub const DUE: &str = "DUE#";
pub const DUE_CURSOR: &str = "DUECURSOR";
pub const DELIVERY: &str = "DELIVERY#";
pub const EMAIL: &str = "EMAIL#";
pub const REFRESH: &str = "REFRESH#";
pub const MFA: &str = "MFA#";
pub const OTT: &str = "OTT#";
pub const RATE: &str = "RATE#";
pub const CONN: &str = "CONN#";
pub const WSTICKET: &str = "WSTICKET#";
pub const NOTIFY: &str = "NOTIFY#";
pub const DATAKEY: &str = "DATAKEY#";
pub const INDEXKEY: &str = "INDEXKEY#";
pub const AUDITHEAD: &str = "AUDITHEAD#";
pub const HEALTH: &str = "HEALTH#";
pub const OBSERVATION: &str = "OBS#";
pub const OBSERVATION_RULE: &str = "OBSRULE#";
pub const DEVICE: &str = "DEVICE#";
pub const OAUTH_FLOW: &str = "OAUTHFLOW#";
pub const DEVICE_USER: &str = "DEVICEUSER#";

/// gsi1 partition of a patient's providers.
pub const CARE_OF: &str = "CAREOF#";
/// gsi2 partition of one care relationship by id.
pub const CARE_BY_ID: &str = "CAREID#";
/// gsi1 partition of every provider listing (the directory).
pub const DIRECTORY: &str = "DIRECTORY";
/// gsi1 partition of a patient's appointments (sort key `<start>#<id>`).
pub const APPTS_OF: &str = "APPTSOF#";
/// gsi2 partition of a provider's appointments (sort key `<start>#<id>`).
pub const APPTS_WITH: &str = "APPTSWITH#";
/// gsi1 partition of a patient's payments, refunds and disputes (`<created>#<id>`).
pub const TXNS_OF: &str = "TXNSOF#";
/// gsi2 partition of an appointment's payments (`<created>#<id>`).
pub const PAYS_FOR: &str = "PAYSFOR#";
/// gsi2 partition of an appointment's video sessions (`<created>#<id>`).
pub const VIDEOS_FOR: &str = "VIDEOSFOR#";
/// gsi1 partition of a patient's medications.
pub const MEDS_OF: &str = "MEDSOF#";
/// gsi1 partition of an appointment's secure notes (`<created>#<id>`).
pub const NOTES_FOR: &str = "NOTESFOR#";
/// gsi1 partition of a user's conversations (their participant items).
pub const CONVS_OF: &str = "CONVSOF#";
/// gsi1 `DOCSOF#<owner>`, gsi2 `DOCSOF#<owner>#<category>`: an owner's documents.
pub const DOCS_OF: &str = "DOCSOF#";
/// gsi1 `DOCSHARED#<provider>`, gsi2 `DOCSHARED#<provider>#<category>`: documents shared
/// with a provider.
pub const DOCS_SHARED: &str = "DOCSHARED#";
/// gsi1 partition of reminder deliveries claimed and not (yet) marked sent.
pub const UNSENT: &str = "UNSENT";
/// gsi1 partition of a user's open WebSocket connections.
pub const CONNS_OF: &str = "CONNS#";

/// `<prefix><user id>`: one owner's partition of one user's items.
fn of(prefix: &str, user_id: &str) -> String {
    format!("{prefix}{user_id}")
}

pub fn account(user_id: &str) -> Key {
    Key::new(of(USER, user_id), "ACCOUNT")
}

pub fn profile(user_id: &str) -> Key {
    Key::new(of(PROFILE, user_id), "PROFILE")
}

pub fn session(user_id: &str, session_id: &str) -> Key {
    Key::new(of(SESSION, user_id), format!("SESSION#{session_id}"))
}

pub fn recovery_code(user_id: &str, hash: &str) -> Key {
    Key::new(of(RECOVERY, user_id), format!("RECOVERY#{hash}"))
}

pub const CARE_SK: &str = "PATIENT#";

pub fn care(provider_id: &str, patient_id: &str) -> Key {
    Key::new(of(CARE, provider_id), format!("{CARE_SK}{patient_id}"))
}

/// The partition of a provider's care relationships.
pub fn care_of_provider(provider_id: &str) -> String {
    of(CARE, provider_id)
}

pub fn care_of(patient_id: &str) -> String {
    format!("{CARE_OF}{patient_id}")
}

pub fn care_by_id(id: &str) -> String {
    format!("{CARE_BY_ID}{id}")
}

pub const CONTACT_SK: &str = "CONTACT#";

pub fn contact(user_id: &str, contact_id: &str) -> Key {
    Key::new(of(CONTACTS, user_id), format!("{CONTACT_SK}{contact_id}"))
}

/// The partition of a user's emergency contacts.
pub fn contacts_of(user_id: &str) -> String {
    of(CONTACTS, user_id)
}

pub fn contact_count(user_id: &str) -> Key {
    Key::new(of(CONTACTS, user_id), "COUNT")
}

/// Messages queued to a user's emergency contacts on one UTC day (`YYYY-MM-DD`).
pub fn contact_messages(user_id: &str, day: &str) -> Key {
    Key::new(of(CONTACTS, user_id), format!("SENT#{day}"))
}

pub fn sos_window(user_id: &str) -> Key {
    Key::new(of(SOS, user_id), "ACTIVE")
}

pub fn sos_alert(user_id: &str, alert_id: &str) -> Key {
    Key::new(of(SOS, user_id), format!("ALERT#{alert_id}"))
}

pub fn provider_listing(provider_id: &str) -> Key {
    Key::new(of(PROVIDER, provider_id), "LISTING")
}

pub fn appointment(id: &str) -> Key {
    Key::new(of(APPOINTMENT, id), "APPT")
}

pub fn appointments_of(patient_id: &str) -> String {
    of(APPTS_OF, patient_id)
}

pub fn appointments_with(provider_id: &str) -> String {
    of(APPTS_WITH, provider_id)
}

pub const UNIT_SK: &str = "UNIT#";

/// One claim unit (`unit` is its RFC 3339 UTC start) of a provider's time.
pub fn claim(provider_id: &str, unit: &str) -> Key {
    Key::new(of(CLAIM, provider_id), format!("{UNIT_SK}{unit}"))
}

/// The partition of a provider's claims.
pub fn claims_of(provider_id: &str) -> String {
    of(CLAIM, provider_id)
}

/// A booking's idempotency record: per caller and client key.
pub fn idempotency(user_id: &str, client_key: &str) -> Key {
    Key::new(format!("{IDEMPOTENCY}{user_id}#{client_key}"), "IDEMP")
}

pub fn medication(id: &str) -> Key {
    Key::new(format!("{MEDICATION}{id}"), "MEDICATION")
}

/// The partition of one medication (the item and its doses).
pub fn medication_partition(id: &str) -> String {
    format!("{MEDICATION}{id}")
}

pub const DOSE_SK: &str = "DOSE#";

/// A recorded dose, by its scheduled time (RFC 3339 UTC, which sorts as time).
pub fn dose(medication_id: &str, scheduled_for: &str) -> Key {
    Key::new(
        format!("{MEDICATION}{medication_id}"),
        format!("{DOSE_SK}{scheduled_for}"),
    )
}

pub fn medications_of(patient_id: &str) -> String {
    format!("{MEDS_OF}{patient_id}")
}

// --- secure clinical notes (notes) ---

/// A secure note's head item: who, what, the current version and its state.
pub fn note(id: &str) -> Key {
    Key::new(format!("{NOTE}{id}"), "NOTE")
}

/// The partition of one note (its head and every version).
pub fn note_partition(id: &str) -> String {
    format!("{NOTE}{id}")
}

pub const NOTE_VERSION_SK: &str = "VERSION#";

/// The sort key of a note version: its number, zero-padded so string order is number
/// order.
pub fn note_version_sk(version: i64) -> String {
    format!("{NOTE_VERSION_SK}{version:010}")
}

pub fn note_version(note_id: &str, version: i64) -> Key {
    Key::new(format!("{NOTE}{note_id}"), note_version_sk(version))
}

/// gsi1 partition of an appointment's notes.
pub fn notes_for(appointment_id: &str) -> String {
    format!("{NOTES_FOR}{appointment_id}")
}

pub fn document(id: &str) -> Key {
    Key::new(format!("{DOCUMENT}{id}"), "DOCUMENT")
}

pub const SHARE_SK: &str = "SHARE#";

/// A document shared with a provider.
pub fn document_share(document_id: &str, provider_id: &str) -> Key {
    Key::new(
        format!("{DOCUMENT}{document_id}"),
        format!("{SHARE_SK}{provider_id}"),
    )
}

/// The gsi1 partition of an owner's documents.
pub fn documents_of(owner_id: &str) -> String {
    format!("{DOCS_OF}{owner_id}")
}

/// The gsi2 partition of an owner's documents in one category.
pub fn documents_of_in(owner_id: &str, category: &str) -> String {
    format!("{DOCS_OF}{owner_id}#{category}")
}

/// The gsi1 partition of the documents shared with a provider.
pub fn documents_shared_with(provider_id: &str) -> String {
    format!("{DOCS_SHARED}{provider_id}")
}

/// The gsi2 partition of the documents of one category shared with a provider.
pub fn documents_shared_with_in(provider_id: &str, category: &str) -> String {
    format!("{DOCS_SHARED}{provider_id}#{category}")
}

/// An owner's stored content, by the keyed HMAC of its SHA-256 (hex).
pub fn document_content(owner_id: &str, content_mac: &str) -> Key {
    Key::new(
        format!("{DOCUMENT_CONTENT}{owner_id}"),
        format!("CONTENT#{content_mac}"),
    )
}

pub fn conversation(id: &str) -> Key {
    Key::new(format!("{CONVERSATION}{id}"), "CONV")
}

/// The partition of one conversation (the item, its participants, messages, claims).
pub fn conversation_partition(id: &str) -> String {
    format!("{CONVERSATION}{id}")
}

pub fn participant(conversation_id: &str, user_id: &str) -> Key {
    Key::new(
        format!("{CONVERSATION}{conversation_id}"),
        format!("MEMBER#{user_id}"),
    )
}

pub fn conversations_of(user_id: &str) -> String {
    format!("{CONVS_OF}{user_id}")
}

pub const MESSAGE_SK: &str = "MSG#";

/// The sort key of a message: its conversation sequence number, zero-padded so string
/// order is number order.
pub fn message_sk(seq: i64) -> String {
    format!("{MESSAGE_SK}{seq:020}")
}

pub fn message(conversation_id: &str, seq: i64) -> Key {
    Key::new(format!("{CONVERSATION}{conversation_id}"), message_sk(seq))
}

/// The claim of a client message id by its sender in a conversation.
pub fn client_message(conversation_id: &str, sender_id: &str, client_message_id: &str) -> Key {
    Key::new(
        format!("{CONVERSATION}{conversation_id}"),
        format!("CMID#{sender_id}#{client_message_id}"),
    )
}

pub fn sync_counter(user_id: &str) -> Key {
    Key::new(of(SYNC, user_id), "SEQ")
}

pub fn sync_partition(user_id: &str) -> String {
    of(SYNC, user_id)
}

pub const EVENT_SK: &str = "EVT#";

pub fn event_sk(seq: i64) -> String {
    format!("{EVENT_SK}{seq:020}")
}

pub fn sync_event(user_id: &str, seq: i64) -> Key {
    Key::new(of(SYNC, user_id), event_sk(seq))
}

pub fn presence(user_id: &str) -> Key {
    Key::new(of(PRESENCE, user_id), "PRESENCE")
}

pub const REMINDER_SK: &str = "REMINDER#";

/// The partition of the reminders due in one UTC minute (`YYYYMMDDHHMM`).
pub fn due_bucket(minute: &str) -> String {
    format!("{DUE}{minute}")
}

pub fn due_reminder(minute: &str, reminder_id: &str) -> Key {
    Key::new(due_bucket(minute), format!("{REMINDER_SK}{reminder_id}"))
}

pub fn due_cursor() -> Key {
    Key::new(DUE_CURSOR, "CURSOR")
}

pub fn delivery(reminder_id: &str, channel: &str) -> Key {
    Key::new(
        format!("{DELIVERY}{reminder_id}"),
        format!("CHANNEL#{channel}"),
    )
}

pub fn email_claim(index: &str) -> Key {
    Key::new(format!("{EMAIL}{index}"), "EMAIL")
}

pub fn refresh_token(hash: &str) -> Key {
    Key::new(format!("{REFRESH}{hash}"), "REFRESH")
}

pub fn price(provider_id: &str, consultation_type: &str) -> Key {
    Key::new(of(PRICE, provider_id), format!("TYPE#{consultation_type}"))
}

pub fn payment(id: &str) -> Key {
    Key::new(of(PAYMENT, id), "PAYMENT")
}

pub fn refund(payment_id: &str, refund_id: &str) -> Key {
    Key::new(of(PAYMENT, payment_id), format!("REFUND#{refund_id}"))
}

pub fn dispute(payment_id: &str, dispute_id: &str) -> Key {
    Key::new(of(PAYMENT, payment_id), format!("DISPUTE#{dispute_id}"))
}

/// An appointment's paid mark: in the payments' partition space, under the appointment's
/// id (ids are unique across kinds, so it never meets a payment's own partition).
pub fn appointment_paid(appointment_id: &str) -> Key {
    Key::new(of(PAYMENT, appointment_id), "PAID")
}

pub fn payment_key(user_id: &str, client_key: &str) -> Key {
    Key::new(format!("{PAYMENT_KEY}{user_id}#{client_key}"), "PAYKEY")
}

/// A refund's idempotency record: per caller and client key (beside a creation's).
pub fn refund_key(user_id: &str, client_key: &str) -> Key {
    Key::new(format!("{PAYMENT_KEY}{user_id}#{client_key}"), "REFUNDKEY")
}

pub fn stripe_intent(intent_id: &str) -> Key {
    Key::new(of(STRIPE_INTENT, intent_id), "PI")
}

pub fn stripe_event(event_id: &str) -> Key {
    Key::new(of(STRIPE_EVENT, event_id), "EVENT")
}

pub fn video_session(id: &str) -> Key {
    Key::new(of(VIDEO_CALL, id), "SESSION")
}

pub fn video_room(session_id: &str, seq: i64) -> Key {
    Key::new(of(VIDEO_CALL, session_id), format!("ROOM#{seq:06}"))
}

pub fn video_participant(session_id: &str, seq: i64, participant_sid: &str) -> Key {
    Key::new(
        of(VIDEO_CALL, session_id),
        format!("PART#{seq:06}#{participant_sid}"),
    )
}

pub fn video_recording(session_id: &str, recording_sid: &str) -> Key {
    Key::new(of(VIDEO_CALL, session_id), format!("REC#{recording_sid}"))
}

/// The sort-key prefix of a session's participant items.
pub const VIDEO_PARTICIPANTS: &str = "PART#";

pub fn appointment_video(appointment_id: &str) -> Key {
    Key::new(of(APPT_VIDEO, appointment_id), "VIDEO")
}

pub fn twilio_callback(token: &str) -> Key {
    Key::new(of(TWILIO_CALLBACK, token), "CALLBACK")
}

pub fn videos_for(appointment_id: &str) -> String {
    of(VIDEOS_FOR, appointment_id)
}

pub fn transactions_of(patient_id: &str) -> String {
    of(TXNS_OF, patient_id)
}

pub fn payments_for(appointment_id: &str) -> String {
    of(PAYS_FOR, appointment_id)
}

pub fn mfa_challenge(hash: &str) -> Key {
    Key::new(format!("{MFA}{hash}"), "MFA")
}

pub fn one_time_token(hash: &str) -> Key {
    Key::new(format!("{OTT}{hash}"), "OTT")
}

pub fn rate_window(limit: &str, subject: &str, start: i64) -> Key {
    Key::new(format!("{RATE}{limit}#{subject}#{start}"), "RATE")
}

pub fn connection(connection_id: &str) -> Key {
    Key::new(format!("{CONN}{connection_id}"), "CONN")
}

pub fn ws_ticket(hash: &str) -> Key {
    Key::new(format!("{WSTICKET}{hash}"), "TICKET")
}

pub fn connections_of(user_id: &str) -> String {
    format!("{CONNS_OF}{user_id}")
}

pub fn notification_sent(id: &str) -> Key {
    Key::new(format!("{NOTIFY}{id}"), "SENT")
}

pub fn data_key(id: &str) -> Key {
    Key::new(format!("{DATAKEY}{id}"), "DATAKEY")
}

pub fn index_key(name: &str) -> Key {
    Key::new(format!("{INDEXKEY}{name}"), "INDEXKEY")
}

pub fn health_probe() -> Key {
    Key::new(format!("{HEALTH}probe"), "HEALTH")
}

/// The partition of one patient's observations of one LOINC code (sorted by time).
pub fn observations(patient_id: &str, loinc: &str) -> String {
    format!("{OBSERVATION}{patient_id}#{loinc}")
}

/// One observation: its effective start (RFC 3339, so the sort key orders by time),
/// then a digest of its source and the source's sample id (deterministic: a sample
/// sent again is the same item).
pub fn observation(patient_id: &str, loinc: &str, effective: &str, digest: &str) -> Key {
    Key::new(
        observations(patient_id, loinc),
        format!("{effective}#{digest}"),
    )
}

/// A patient's observation rules (thresholds and their open episodes).
pub fn observation_rules(patient_id: &str) -> String {
    format!("{OBSERVATION_RULE}{patient_id}")
}

/// A patient's device connections (one partition per patient).
pub fn device_links(user_id: &str) -> String {
    format!("{DEVICE}{user_id}")
}

pub const LINK_SK: &str = "LINK#";

/// A patient's connection to one provider (`google_health`).
pub fn device_link(user_id: &str, provider: &str) -> Key {
    Key::new(device_links(user_id), format!("{LINK_SK}{provider}"))
}

/// The patient connected with a provider's user id (`DEVICEUSER#<provider>#<id>`).
pub fn device_user(provider: &str, provider_user_id: &str) -> Key {
    Key::new(
        format!("{DEVICE_USER}{provider}#{provider_user_id}"),
        "LINK",
    )
}

/// A pending OAuth authorization, by the SHA-256 of its `state`.
pub fn oauth_flow(state_hash: &str) -> Key {
    Key::new(format!("{OAUTH_FLOW}{state_hash}"), "FLOW")
}

pub const LIMIT_SK: &str = "LIMIT#";
pub const EPISODE_SK: &str = "EPISODE#";

pub fn observation_limit(patient_id: &str, loinc: &str, provider_id: &str) -> Key {
    Key::new(
        observation_rules(patient_id),
        format!("{LIMIT_SK}{loinc}#{provider_id}"),
    )
}

pub fn observation_episode(patient_id: &str, loinc: &str, provider_id: &str) -> Key {
    Key::new(
        observation_rules(patient_id),
        format!("{EPISODE_SK}{loinc}#{provider_id}"),
    )
}

pub fn audit_head(shard: u32) -> Key {
    Key::new(format!("{AUDITHEAD}{shard:02}"), "HEAD")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_prefix_is_distinct_and_in_the_schema() {
        let prefixes = [
            USER,
            PROVIDER,
            APPOINTMENT,
            CLAIM,
            IDEMPOTENCY,
            PRICE,
            PAYMENT,
            PAYMENT_KEY,
            STRIPE_INTENT,
            STRIPE_EVENT,
            VIDEO_CALL,
            APPT_VIDEO,
            TWILIO_CALLBACK,
            EMAIL,
            REFRESH,
            MFA,
            OTT,
            RATE,
            CONN,
            WSTICKET,
            CONVERSATION,
            NOTE,
            DOCUMENT,
            DOCUMENT_CONTENT,
            SYNC,
            PRESENCE,
            NOTIFY,
            DATAKEY,
            INDEXKEY,
            AUDITHEAD,
            HEALTH,
            OBSERVATION,
            OBSERVATION_RULE,
            DEVICE,
            OAUTH_FLOW,
            DEVICE_USER,
        ];
        for (i, a) in prefixes.iter().enumerate() {
            assert!(SCHEMA.iter().any(|kind| kind.pk == *a), "{a} not in SCHEMA");
            for b in &prefixes[i + 1..] {
                assert!(!a.starts_with(b) && !b.starts_with(a), "{a} overlaps {b}");
            }
        }
    }

    #[test]
    fn each_owner_has_its_own_partition_of_a_users_items() {
        let partitions = [
            account("u1").pk,            // auth, users
            profile("u1").pk,            // users
            session("u1", "s").pk,       // auth
            recovery_code("u1", "h").pk, // auth
            care("u1", "p").pk,          // users, appointments
            provider_listing("u1").pk,   // appointments
            claim("u1", "t").pk,         // appointments
            contact("u1", "c").pk,       // emergency
            sos_alert("u1", "a").pk,     // emergency
        ];
        for (i, a) in partitions.iter().enumerate() {
            assert!(a.ends_with("#u1"), "{a}");
            for b in &partitions[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(contact_count("u1").pk, contact("u1", "c").pk);
        assert_eq!(
            contact_messages("u1", "2026-12-02").pk,
            contact("u1", "c").pk
        );
        assert_eq!(sos_window("u1").pk, sos_alert("u1", "a").pk);
    }
}
