//! MFA storage: login challenges (`MFA#<sha256 of the token>`, TTL) and recovery codes
//! (`RECOVERY#<user>` / `RECOVERY#<sha256>`, one set at a time, single use).

use crate::auth::accounts::{self, Account};
use crate::auth::secrets;
use crate::ports::db::{item, Condition, Update, Value, WriteOp};
use crate::store::keys;
use crate::{ApiError, AppContext};

/// A pending login challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub user_id: String,
    pub attempts: i64,
    /// The account's pending epoch when the challenge started (a password reset or
    /// change since then ends it).
    pub epoch: i64,
    otp_hash: Option<String>,
    otp_expires: i64,
    /// How the sent code went out: `email` or `sms`.
    pub sent_channel: Option<String>,
}

impl Challenge {
    /// Whether `code` is the code sent for this challenge and still valid at `now`.
    /// Digests are compared, not codes: timing reveals nothing about the code.
    pub fn sent_code_matches(&self, code: &str, now: i64) -> bool {
        self.otp_hash
            .as_deref()
            .is_some_and(|hash| hash == secrets::hash(code))
            && self.otp_expires > now
    }
}

/// Starts a challenge for a user whose account is in pending `epoch`, valid
/// `ttl_secs`: the write (for a unit of work with its event) and the token (stored
/// hashed).
pub fn start_op(app: &AppContext, user_id: &str, epoch: i64, ttl_secs: i64) -> (String, WriteOp) {
    let token = secrets::token();
    let key = keys::mfa_challenge(&secrets::hash(&token));
    let record = item([
        ("pk", Value::S(key.pk)),
        ("sk", Value::S(key.sk)),
        ("user_id", Value::S(user_id.into())),
        ("attempts", Value::N(0)),
        ("epoch", Value::N(epoch)),
        (
            "expires_at",
            Value::N(app.clock.now().timestamp() + ttl_secs),
        ),
    ]);
    let write = WriteOp::Put {
        table: app.config.table.clone(),
        item: record,
        condition: Some(Condition::NotExists),
    };
    (token, write)
}

/// The challenge with this token, if it is pending (one read).
pub async fn challenge(app: &AppContext, token: &str) -> Result<Option<Challenge>, ApiError> {
    let key = keys::mfa_challenge(&secrets::hash(token));
    let Some(record) = app.db.get(&app.config.table, &key).await? else {
        return Ok(None);
    };
    Ok(Some(Challenge {
        user_id: record
            .get("user_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        attempts: record.get("attempts").and_then(Value::as_i64).unwrap_or(0),
        epoch: record.get("epoch").and_then(Value::as_i64).unwrap_or(0),
        otp_hash: record
            .get("otp_hash")
            .and_then(Value::as_str)
            .map(str::to_string),
        otp_expires: record
            .get("otp_expires")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        sent_channel: record
            .get("otp_channel")
            .and_then(Value::as_str)
            .map(str::to_string),
    }))
}

/// Reserves one code attempt on the challenge BEFORE the code is checked: one
/// conditional write (`ADD attempts 1` only while below `max`), so parallel guesses
/// cannot all pass a read of the count; `false` once `max` attempts were made (or the
/// challenge is gone). A counter that cannot be written is a 503.
pub async fn reserve_attempt(app: &AppContext, token: &str, max: i64) -> Result<bool, ApiError> {
    let reserved = app
        .db
        .update(
            &app.config.table,
            &keys::mfa_challenge(&secrets::hash(token)),
            Update::new().add("attempts", 1),
            Some(Condition::And(vec![
                Condition::Exists,
                Condition::LessThan("attempts".into(), max),
            ])),
        )
        .await;
    match reserved {
        Ok(_) => Ok(true),
        Err(err) if err.is_condition_failed() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The write that ends the challenge, for the unit of work that opens its session:
/// it fails (the change's condition) when another request ended it first.
pub fn spend_op(app: &AppContext, token: &str) -> WriteOp {
    WriteOp::Delete {
        table: app.config.table.clone(),
        key: keys::mfa_challenge(&secrets::hash(token)),
        condition: Some(Condition::Exists),
    }
}

/// Ends the challenge; `false` when another request ended it first (single use: only
/// the request whose delete succeeds gets a session).
pub async fn spend(app: &AppContext, token: &str) -> Result<bool, ApiError> {
    let key = keys::mfa_challenge(&secrets::hash(token));
    match app
        .db
        .delete(&app.config.table, &key, Some(Condition::Exists))
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if err.is_condition_failed() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Records the code sent for a challenge (as a digest) and its channel (`email`,
/// `sms`), valid until `expires`.
pub async fn set_sent_code(
    app: &AppContext,
    token: &str,
    code: &str,
    channel: &str,
    expires: i64,
) -> Result<(), ApiError> {
    app.db
        .update(
            &app.config.table,
            &keys::mfa_challenge(&secrets::hash(token)),
            Update::new()
                .set("otp_hash", secrets::hash(code))
                .set("otp_expires", expires)
                .set("otp_channel", channel),
            Some(Condition::Exists),
        )
        .await?;
    Ok(())
}

fn recovery_key(user_id: &str, code: &str) -> crate::ports::db::Key {
    keys::recovery_code(
        user_id,
        &secrets::hash(&secrets::normalize_recovery_code(code)),
    )
}

/// Uses a recovery code of the account's current set (deleted on use: single use even
/// when two requests race); `false` when it is not one.
pub async fn use_recovery_code(
    app: &AppContext,
    account: &Account,
    code: &str,
) -> Result<bool, ApiError> {
    let Some(set) = account.item.get("recovery_set").and_then(Value::as_str) else {
        return Ok(false);
    };
    let used = app
        .db
        .delete(
            &app.config.table,
            &recovery_key(&account.id, code),
            Some(Condition::Equals("set_id".into(), Value::S(set.into()))),
        )
        .await;
    match used {
        Ok(_) => Ok(true),
        Err(err) if err.is_condition_failed() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The writes that turn TOTP on with the pending secret (sealed again as the account's
/// secret), its first used `step`, and a new set of recovery codes, for one unit of
/// work; its op 0 fails when there is no pending enrolment any more.
pub async fn confirm_totp_ops(
    app: &AppContext,
    account_id: &str,
    pending_secret: &str,
    step: i64,
    codes: &[String],
) -> Result<Vec<WriteOp>, ApiError> {
    let set_id = app.new_id();
    let table = app.config.table.clone();
    let mut ops = vec![WriteOp::Update {
        table: table.clone(),
        key: accounts::key(account_id),
        update: Update::new()
            .set(
                "totp_secret",
                accounts::seal(app, account_id, "totp_secret", pending_secret).await?,
            )
            .remove("totp_pending")
            .set("mfa_enabled", true)
            .set("totp_last_step", step)
            .set("recovery_set", set_id.clone()),
        condition: Some(Condition::AttributeExists("totp_pending".into())),
    }];
    for code in codes {
        let key = recovery_key(account_id, code);
        ops.push(WriteOp::Put {
            table: table.clone(),
            item: item([
                ("pk", Value::S(key.pk)),
                ("sk", Value::S(key.sk)),
                ("set_id", Value::S(set_id.clone())),
            ]),
            condition: None,
        });
    }
    Ok(ops)
}
