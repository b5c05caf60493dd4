//! Accounts in the single table. The e-mail and full name are encrypted; the e-mail is
//! found through its blind index, whose claim item also makes it unique (a conditional
//! write in the same transaction as the account, never read-then-write).
//!
//! | item | pk | sk |
//! |---|---|---|
//! | account | `USER#<id>` | `ACCOUNT` (gsi1: `USERS` / `<created_at>#<id>`) |
//! | e-mail claim | `EMAIL#<blind index>` | `EMAIL` (`user_id`) |

use super::revocation::Ended;
use super::Role;
use crate::crypto::blind_index::{normalize_email, IndexName};
use crate::ports::db::{Condition, Item, Key, Update, Value, WriteOp};
use crate::store::keys;
use crate::{ApiError, AppContext};
use serde::Serialize;

/// Consecutive failures that lock an account, and for how long.
pub use crate::domain::account::{LOCK_AFTER_FAILURES, LOCK_SECS};
/// The partition that lists every account for administrators (newest last).
pub const LIST_PARTITION: &str = "USERS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "AccountStatus")]
pub enum Status {
    /// Signed up; the e-mail is not confirmed yet, login is refused.
    Unverified,
    Active,
    /// Disabled by an administrator: no login, no refresh.
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unverified => "unverified",
            Status::Active => "active",
            Status::Disabled => "disabled",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "unverified" => Some(Status::Unverified),
            "active" => Some(Status::Active),
            "disabled" => Some(Status::Disabled),
            _ => None,
        }
    }
}

/// An account as stored (PHI fields still sealed).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub role: Role,
    pub status: Status,
    pub password_hash: String,
    pub failed_logins: i64,
    pub locked_until: i64,
    pub mfa_enabled: bool,
    pub totp_last_step: Option<i64>,
    /// Refresh tokens of sessions opened before this moment are dead (logout-all, reset).
    pub sessions_valid_after: i64,
    /// Password-reset tokens and MFA challenges carry the epoch they were issued in; a
    /// password reset or change moves it on, which ends every one still pending.
    pub pending_epoch: i64,
    pub created_at: String,
    pub item: Item,
}

/// What an account looks like in API answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(rename = "Account")]
pub struct AccountView {
    pub id: String,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub status: Status,
    pub mfa_enabled: bool,
    pub created_at: String,
}

pub fn key(id: &str) -> Key {
    keys::account(id)
}

fn email_claim(index: &str) -> Key {
    keys::email_claim(index)
}

fn str_of<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Value::as_str)
}

fn int_of(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(Value::as_i64)
}

impl Account {
    /// Reads a stored account item (from a get or a query of the list index).
    pub fn from_item(item: Item) -> Result<Self, ApiError> {
        let bad = || ApiError::internal("malformed account record");
        Ok(Self {
            id: str_of(&item, "id").ok_or_else(bad)?.to_string(),
            role: str_of(&item, "role")
                .and_then(Role::parse)
                .ok_or_else(bad)?,
            status: str_of(&item, "status")
                .and_then(Status::parse)
                .ok_or_else(bad)?,
            password_hash: str_of(&item, "password_hash")
                .unwrap_or_default()
                .to_string(),
            failed_logins: int_of(&item, "failed_logins").unwrap_or(0),
            locked_until: int_of(&item, "locked_until").unwrap_or(0),
            mfa_enabled: item
                .get("mfa_enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            totp_last_step: int_of(&item, "totp_last_step"),
            sessions_valid_after: int_of(&item, "sessions_valid_after").unwrap_or(0),
            pending_epoch: int_of(&item, "pending_epoch").unwrap_or(0),
            created_at: str_of(&item, "created_at").unwrap_or_default().to_string(),
            item,
        })
    }

    /// Decrypts one sealed attribute of the account.
    pub async fn open(
        &self,
        app: &AppContext,
        attribute: &str,
    ) -> Result<Option<String>, ApiError> {
        Ok(crate::phi::open(app, &self.item, attribute).await?)
    }

    pub async fn email(&self, app: &AppContext) -> Result<String, ApiError> {
        Ok(self.open(app, "email").await?.unwrap_or_default())
    }

    /// The e-mail and full name, opened for a principal's request. A value failing its
    /// integrity check (moved or altered) is audited as `INTEGRITY_FAILURE` on
    /// `account/<id>` and fails the request (500): never a wrong answer.
    pub async fn identity(
        &self,
        app: &AppContext,
        req: &crate::http::ApiRequest,
        principal: &super::Principal,
    ) -> Result<(String, String), ApiError> {
        let mut opened = crate::phi::open_audited(
            app,
            req,
            principal,
            &self.item,
            &["email", "full_name"],
            ("account", &self.id),
        )
        .await?
        .into_iter();
        let email = opened.next().flatten().unwrap_or_default();
        let full_name = opened.next().flatten().unwrap_or_default();
        Ok((email, full_name))
    }

    /// The account as answered to a principal's request ([`Account::identity`] opened).
    pub async fn view(
        &self,
        app: &AppContext,
        req: &crate::http::ApiRequest,
        principal: &super::Principal,
    ) -> Result<AccountView, ApiError> {
        let (email, full_name) = self.identity(app, req, principal).await?;
        Ok(AccountView {
            id: self.id.clone(),
            email,
            full_name,
            role: self.role,
            status: self.status,
            mfa_enabled: self.mfa_enabled,
            created_at: self.created_at.clone(),
        })
    }

    pub fn locked(&self, now: i64) -> bool {
        crate::domain::account::is_locked(self.locked_until, now)
    }

    /// A condition that holds while the pending epoch is still the one read here (a
    /// password reset or change since then fails it).
    pub fn same_pending_epoch(&self) -> Condition {
        if self.item.contains_key("pending_epoch") {
            Condition::Equals("pending_epoch".into(), Value::N(self.pending_epoch))
        } else {
            Condition::AttributeNotExists("pending_epoch".into())
        }
    }

    /// A condition that holds while the account exists and is still unverified (a
    /// login's change to an account that must verify its address first).
    pub fn still_unverified(&self) -> Condition {
        Condition::And(vec![Condition::Exists, only_unverified()])
    }

    /// A check, for a unit of work, that the account is still active and no password
    /// reset or change happened since it was read.
    pub fn still_active(&self, app: &AppContext) -> WriteOp {
        WriteOp::Check {
            table: app.config.table.clone(),
            key: key(&self.id),
            condition: self.active_unchanged(),
        }
    }

    /// The condition of [`Account::still_active`], for a write to the account itself.
    pub fn active_unchanged(&self) -> Condition {
        Condition::And(vec![
            Condition::Equals("status".into(), Value::S(Status::Active.as_str().into())),
            self.same_pending_epoch(),
        ])
    }
}

/// A new account's fields, already validated; the password already hashed.
pub struct NewAccount<'a> {
    pub email: &'a str,
    pub full_name: &'a str,
    pub password_hash: String,
    pub role: Role,
    pub status: Status,
}

/// Why an account could not be created.
#[derive(Debug)]
pub enum CreateError {
    EmailTaken,
    Api(ApiError),
}

impl From<ApiError> for CreateError {
    fn from(err: ApiError) -> Self {
        CreateError::Api(err)
    }
}

/// Seals a text attribute of an account item.
pub async fn seal(
    app: &AppContext,
    id: &str,
    attribute: &str,
    plain: &str,
) -> Result<Value, ApiError> {
    crate::phi::seal(app, &key(id), attribute, plain).await
}

/// The blind index of an e-mail address.
pub async fn email_index(app: &AppContext, email: &str) -> Result<String, ApiError> {
    Ok(app
        .index
        .compute(IndexName::Email, &normalize_email(email))
        .await?)
}

/// Creates an account and claims its e-mail atomically.
pub async fn create(app: &AppContext, new: NewAccount<'_>) -> Result<Account, CreateError> {
    let (account, ops) = create_ops(app, new, None).await?;
    match app.db.transact_write(ops).await {
        Ok(()) => Ok(account),
        Err(err) if err.is_condition_failed() => Err(CreateError::EmailTaken),
        Err(err) => Err(ApiError::from(err).into()),
    }
}

/// The writes that create an account and claim its e-mail (both conditional: a taken
/// address fails op 0 or 1), for a unit of work; `pending_signup` binds a self sign-up
/// to its verification token (see [`restart_signup`]).
pub async fn create_ops(
    app: &AppContext,
    new: NewAccount<'_>,
    pending_signup: Option<&str>,
) -> Result<(Account, Vec<WriteOp>), ApiError> {
    let id = app.new_id();
    let index = email_index(app, new.email).await?;
    let created_at = app.now().to_string();
    let account_key = key(&id);
    let mut record = Item::new();
    record.insert("pk".into(), Value::S(account_key.pk.clone()));
    record.insert("sk".into(), Value::S(account_key.sk.clone()));
    record.insert("id".into(), Value::S(id.clone()));
    record.insert("role".into(), Value::S(new.role.as_str().into()));
    record.insert("status".into(), Value::S(new.status.as_str().into()));
    record.insert(
        "email".into(),
        seal(app, &id, "email", &normalize_email(new.email)).await?,
    );
    record.insert(
        "full_name".into(),
        seal(app, &id, "full_name", new.full_name).await?,
    );
    record.insert("email_index".into(), Value::S(index.clone()));
    record.insert("password_hash".into(), Value::S(new.password_hash));
    record.insert("mfa_enabled".into(), Value::Bool(false));
    // The lockout counters exist from the start: their reservations are conditions
    // on them.
    record.insert("failed_logins".into(), Value::N(0));
    record.insert("locked_until".into(), Value::N(0));
    if let Some(pending) = pending_signup {
        record.insert("pending_signup".into(), Value::S(pending.into()));
    }
    record.insert("created_at".into(), Value::S(created_at.clone()));
    record.insert("gsi1pk".into(), Value::S(LIST_PARTITION.into()));
    record.insert("gsi1sk".into(), Value::S(format!("{created_at}#{id}")));
    let claim_key = email_claim(&index);
    let mut claim = Item::new();
    claim.insert("pk".into(), Value::S(claim_key.pk));
    claim.insert("sk".into(), Value::S(claim_key.sk));
    claim.insert("user_id".into(), Value::S(id.clone()));
    let table = app.config.table.clone();
    let ops = vec![
        WriteOp::Put {
            table: table.clone(),
            item: record.clone(),
            condition: Some(Condition::NotExists),
        },
        WriteOp::Put {
            table,
            item: claim,
            condition: Some(Condition::NotExists),
        },
    ];
    Ok((Account::from_item(record)?, ops))
}

/// A verification token carrying a sign-up's password hash and (sealed) name: what
/// verifying it activates.
pub async fn signup_token(
    app: &AppContext,
    user_id: &str,
    password_hash: &str,
    full_name: &str,
    ttl_secs: i64,
) -> Result<super::one_time::Issued, ApiError> {
    let name = seal(app, user_id, "full_name", full_name).await?;
    Ok(super::one_time::prepare(
        app,
        super::one_time::Purpose::VerifyEmail,
        user_id,
        ttl_secs,
        vec![
            ("password_hash", Value::S(password_hash.to_string())),
            ("full_name", name),
        ],
    ))
}

/// A self sign-up: the writes that create the unverified account bound to its first
/// verification token (for one unit of work with its event), and that token.
pub async fn new_signup(
    app: &AppContext,
    new: NewAccount<'_>,
    ttl_secs: i64,
) -> Result<(Account, super::one_time::Issued, Vec<WriteOp>), ApiError> {
    let (password_hash, full_name) = (new.password_hash.clone(), new.full_name);
    let (account, mut ops) = create_ops(app, new, None).await?;
    let issued = signup_token(app, &account.id, &password_hash, full_name, ttl_secs).await?;
    if let Some(WriteOp::Put { item, .. }) = ops.first_mut() {
        item.insert("pending_signup".into(), Value::S(issued.hash.clone()));
    }
    ops.push(issued.write.clone());
    Ok((account, issued, ops))
}

/// A repeat sign-up of an unverified account: a fresh token with these credentials and
/// the writes that make every earlier one stop working, for one unit of work with its
/// event (a failed condition: the account is not unverified any more).
pub async fn repeat_signup(
    app: &AppContext,
    id: &str,
    password_hash: &str,
    full_name: &str,
    ttl_secs: i64,
) -> Result<(super::one_time::Issued, Vec<WriteOp>), ApiError> {
    let issued = signup_token(app, id, password_hash, full_name, ttl_secs).await?;
    let ops = vec![restart_signup(app, id, &issued.hash), issued.write.clone()];
    Ok((issued, ops))
}

/// A password-reset token of the account's current pending epoch (the next reset or
/// password change ends it), for a unit of work.
pub fn reset_token(app: &AppContext, account: &Account, ttl_secs: i64) -> super::one_time::Issued {
    super::one_time::prepare(
        app,
        super::one_time::Purpose::PasswordReset,
        &account.id,
        ttl_secs,
        vec![("epoch", Value::N(account.pending_epoch))],
    )
}

/// The write of a password reset: `change`, only while no other reset or password
/// change happened since `account` was read.
pub fn reset_op(
    app: &AppContext,
    account: &Account,
    change: AccountChange,
) -> Result<WriteOp, ApiError> {
    let condition = Condition::And(vec![Condition::Exists, account.same_pending_epoch()]);
    Ok(change_op(app, account, change, condition)?.0)
}

fn only_unverified() -> Condition {
    Condition::Equals(
        "status".into(),
        Value::S(Status::Unverified.as_str().into()),
    )
}

/// A repeat sign-up of an unverified account: only the newest verification token
/// (`pending`, its hash) can activate it from now on, with the credentials it carries.
pub fn restart_signup(app: &AppContext, id: &str, pending: &str) -> WriteOp {
    WriteOp::Update {
        table: app.config.table.clone(),
        key: key(id),
        update: Update::new()
            .set("pending_signup", pending)
            .set("updated_at", app.now().to_string()),
        condition: Some(Condition::And(vec![Condition::Exists, only_unverified()])),
    }
}

/// Activates an unverified account with the credentials bound to its newest
/// verification token (`pending`, its hash): the password (and name) of the person who
/// received that token, never those of an earlier sign-up with the same address.
pub fn activate_signup(
    app: &AppContext,
    id: &str,
    pending: &str,
    password_hash: &str,
    full_name: Option<Value>,
) -> WriteOp {
    let mut update = Update::new()
        .set("status", Status::Active.as_str())
        .set("password_hash", password_hash)
        .remove("pending_signup")
        .set("updated_at", app.now().to_string());
    if let Some(name) = full_name {
        update = update.set("full_name", name);
    }
    WriteOp::Update {
        table: app.config.table.clone(),
        key: key(id),
        update,
        condition: Some(Condition::And(vec![
            Condition::Exists,
            only_unverified(),
            Condition::Equals("pending_signup".into(), Value::S(pending.into())),
        ])),
    }
}

/// The account with this id, if any.
pub async fn get(app: &AppContext, id: &str) -> Result<Option<Account>, ApiError> {
    match app.db.get(&app.config.table, &key(id)).await? {
        Some(item) => Ok(Some(Account::from_item(item)?)),
        None => Ok(None),
    }
}

/// The account with this e-mail (two reads: the claim, then the account).
pub async fn find_by_email(app: &AppContext, email: &str) -> Result<Option<Account>, ApiError> {
    let index = email_index(app, email).await?;
    let Some(claim) = app.db.get(&app.config.table, &email_claim(&index)).await? else {
        return Ok(None);
    };
    match str_of(&claim, "user_id") {
        Some(id) => get(app, id).await,
        None => Ok(None),
    }
}

/// A change to an account's own attributes, by name: the one way code outside this
/// module changes an account (no handler assembles an update expression). It knows
/// which sessions it ends, so applying it also closes their WebSocket connections and
/// forgets this instance's cached revocation state (`auth::revocation::ended`).
#[derive(Debug, Clone, Default)]
pub struct AccountChange(Update);

impl AccountChange {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sealed attribute (from [`seal`]): `full_name`, `totp_secret`, `totp_pending`.
    pub fn sealed(self, attribute: &str, value: Value) -> Self {
        Self(self.0.set(attribute, value))
    }

    /// A new status (disabling callers also end every session: [`Self::end_sessions`]).
    pub fn status(self, status: Status) -> Self {
        Self(self.0.set("status", status.as_str()))
    }

    pub fn role(self, role: Role) -> Self {
        Self(self.0.set("role", role.as_str()))
    }

    pub fn password_hash(self, hash: String) -> Self {
        Self(self.0.set("password_hash", hash))
    }

    /// Ends every session opened until `at_ms`: their access tokens stop working (at
    /// once on this instance, within the revocation cache's bound elsewhere) and their
    /// refresh tokens too. The list of sessions ended one by one is no longer needed.
    pub fn end_sessions(self, at_ms: i64) -> Self {
        Self(
            self.0
                .set("sessions_valid_after", at_ms)
                .remove("revoked_sessions")
                .add(SESSION_REV, 1),
        )
    }

    /// Ends one session of `account` (ending at `ends`, epoch s) at `now_ms`: listed in
    /// the account's revoked sessions, whose ended entries are dropped; when the list is
    /// full, every session of the account ends instead. Apply it with
    /// [`unchanged_sessions`] as the condition (the list was read).
    pub fn end_session(self, account: &Account, session_id: &str, ends: i64, now_ms: i64) -> Self {
        let state = crate::auth::revocation::revocation_of(&account.item);
        match crate::domain::session::with_revoked(&state.revoked, session_id, ends, now_ms / 1000)
        {
            Some(list) => {
                let map: Item = list
                    .into_iter()
                    .map(|(id, end)| (id, Value::N(end)))
                    .collect();
                Self(
                    self.0
                        .set("revoked_sessions", Value::M(map))
                        .add(SESSION_REV, 1),
                )
            }
            None => self.end_sessions(now_ms),
        }
    }

    /// Which sessions this change ends: every one when it sets `sessions_valid_after`
    /// ([`Self::end_session`]'s callers know their session).
    pub fn ended(&self) -> Ended {
        if self
            .0
            .set
            .iter()
            .any(|(name, _)| name == "sessions_valid_after")
        {
            Ended::All
        } else {
            Ended::Nothing
        }
    }

    /// Forgets failed passwords and any lock.
    pub fn clear_lockout(self) -> Self {
        Self(self.0.set("failed_logins", 0i64).set("locked_until", 0i64))
    }

    /// Ends every pending password-reset token and MFA challenge.
    pub fn end_pending(self) -> Self {
        Self(self.0.add("pending_epoch", 1))
    }

    /// TOTP on, with its secret (sealed) and no step used yet.
    pub fn enable_totp(self, sealed_secret: Value) -> Self {
        Self(
            self.0
                .set("totp_secret", sealed_secret)
                .set("mfa_enabled", true)
                .set("totp_last_step", 0i64),
        )
    }

    /// TOTP off: secret and recovery set forgotten.
    pub fn disable_totp(self) -> Self {
        Self(
            self.0
                .set("mfa_enabled", false)
                .remove("totp_secret")
                .remove("recovery_set"),
        )
    }
}

/// A counter bumped by every change to the account's session revocation state.
const SESSION_REV: &str = "session_rev";

/// The condition that the account's session revocation state is as read in `account`
/// (compare-and-set on its revision counter).
pub fn unchanged_sessions(account: &Account) -> Condition {
    match account.item.get(SESSION_REV).and_then(Value::as_i64) {
        Some(rev) => Condition::Equals(SESSION_REV.into(), Value::N(rev)),
        None => Condition::AttributeNotExists(SESSION_REV.into()),
    }
}

/// A condition check, for a refresh's transaction, that the account is still as read:
/// active, the same role, and no "end every session" since (logout-all, password
/// change or reset, disable, role change). Ending another single session is not a
/// conflict (the session item carries that).
pub fn still_usable(app: &AppContext, account: &Account) -> WriteOp {
    let valid_after = match account.item.get("sessions_valid_after") {
        Some(value) => Condition::Equals("sessions_valid_after".into(), value.clone()),
        None => Condition::AttributeNotExists("sessions_valid_after".into()),
    };
    WriteOp::Check {
        table: app.config.table.clone(),
        key: key(&account.id),
        condition: Condition::And(vec![
            Condition::Exists,
            Condition::Equals("status".into(), Value::S(Status::Active.as_str().into())),
            Condition::Equals("role".into(), Value::S(account.role.as_str().into())),
            valid_after,
        ]),
    }
}

/// Applies a change to an existing account and returns the account after it.
pub async fn change(
    app: &AppContext,
    id: &str,
    change: AccountChange,
) -> Result<Account, ApiError> {
    let ended = change.ended();
    let account = update(app, id, change.0, None).await?;
    crate::auth::revocation::ended(app, id, &ended).await;
    Ok(account)
}

/// Applies a change to `account` committed with its audit event (3 items: the account,
/// the event, the chain head): without the event nothing is kept. Answers the account
/// as committed, computed without reading it back.
pub async fn change_audited(
    app: &AppContext,
    account: &Account,
    change: AccountChange,
    event: crate::audit::AuditEvent,
) -> Result<Account, ApiError> {
    let ended = change.ended();
    let (write, after) = change_op(app, account, change, Condition::Exists)?;
    match app.audit.commit(event, vec![write]).await {
        Ok(()) => {
            crate::auth::revocation::ended(app, &account.id, &ended).await;
            Account::from_item(after)
        }
        Err(crate::audit::CommitError::Change { .. }) => Err(ApiError::NotFound),
        Err(err) => Err(err.into()),
    }
}

/// The write of a change to `account` under `condition`, for a unit of work, and the
/// account as it will be once committed (computed, not read back). A change that ends
/// sessions: call [`crate::auth::revocation::ended`] once it is committed.
pub fn change_op(
    app: &AppContext,
    account: &Account,
    change: AccountChange,
    condition: Condition,
) -> Result<(WriteOp, Item), ApiError> {
    let update = change.0.set("updated_at", app.now().to_string());
    let key = key(&account.id);
    let after = update.apply(Some(account.item.clone()), &key)?;
    let write = WriteOp::Update {
        table: app.config.table.clone(),
        key,
        update,
        condition: Some(condition),
    };
    Ok((write, after))
}

/// Claims a TOTP time step for the account: `false` when it (or a later one) was used
/// already, so a code works once even when two requests race (one conditional write).
pub async fn claim_totp_step(app: &AppContext, id: &str, step: i64) -> Result<bool, ApiError> {
    let claimed = update(
        app,
        id,
        Update::new().set("totp_last_step", step),
        Some(Condition::LessThan("totp_last_step".into(), step)),
    )
    .await;
    match claimed {
        Ok(_) => Ok(true),
        Err(ApiError::Conflict(_)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Every account, oldest first, one page (one query on gsi1, which projects whole
/// accounts: no read per item).
pub async fn list(
    app: &AppContext,
    page: &crate::http::pagination::PageRequest,
) -> Result<(Vec<Account>, Option<Item>), ApiError> {
    let result = app
        .db
        .query(
            &app.config.table,
            crate::ports::db::Query::partition(LIST_PARTITION)
                .on(crate::ports::db::Index::Gsi1)
                .limit(page.limit)
                .start(page.start.clone()),
        )
        .await?;
    let accounts = result
        .items
        .into_iter()
        .map(Account::from_item)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((accounts, result.next))
}

/// Applies an update to an account, optionally under a condition (the building block
/// of the typed changes above).
async fn update(
    app: &AppContext,
    id: &str,
    update: Update,
    condition: Option<Condition>,
) -> Result<Account, ApiError> {
    let update = update.set("updated_at", app.now().to_string());
    let condition = match condition {
        Some(c) => Condition::And(vec![Condition::Exists, c]),
        None => Condition::Exists,
    };
    let item = app
        .db
        .update(&app.config.table, &key(id), update, Some(condition))
        .await?;
    Account::from_item(item)
}

/// The outcome of reserving a password attempt on an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Reserved: this is the `n`th attempt since the last success or lock (counted as
    /// a failure until [`login_succeeded`] clears it).
    Reserved(i64),
    /// Locked (or as many attempts as the lockout allows are already in flight):
    /// nothing may be checked.
    Locked,
}

/// Reserves a password attempt on the account BEFORE the password is checked: one
/// conditional write (`ADD failed_logins 1` only while it is below
/// [`LOCK_AFTER_FAILURES`] and the account is not locked), so parallel guesses cannot
/// all pass a read of the counter. A counter that cannot be written is a 503.
pub async fn reserve_login(app: &AppContext, account: &Account) -> Result<LoginAttempt, ApiError> {
    let now = app.clock.now().timestamp();
    let account_key = key(&account.id);
    let reserve = || {
        app.db.update(
            &app.config.table,
            &account_key,
            Update::new().add("failed_logins", 1),
            Some(Condition::And(vec![
                Condition::Exists,
                Condition::LessThan("failed_logins".into(), LOCK_AFTER_FAILURES),
                Condition::LessThan("locked_until".into(), now + 1),
            ])),
        )
    };
    for first in [true, false] {
        match reserve().await {
            Ok(item) => {
                let n = int_of(&item, "failed_logins").unwrap_or(LOCK_AFTER_FAILURES);
                return Ok(LoginAttempt::Reserved(n));
            }
            Err(err) if err.is_condition_failed() => {}
            Err(err) => return Err(err.into()),
        }
        // Why not: counters missing (an account from before they existed), locked, or
        // the last allowed attempts in flight or lost (then lock now: never stuck).
        let Some(current) = get(app, &account.id).await? else {
            return Ok(LoginAttempt::Locked);
        };
        let missing: Vec<&str> = ["failed_logins", "locked_until"]
            .into_iter()
            .filter(|name| !current.item.contains_key(*name))
            .collect();
        if missing.is_empty() || !first {
            if !current.locked(now) && current.failed_logins >= LOCK_AFTER_FAILURES {
                lock(app, &account.id, now).await?;
            }
            return Ok(LoginAttempt::Locked);
        }
        for name in missing {
            let init = app
                .db
                .update(
                    &app.config.table,
                    &key(&account.id),
                    Update::new().set(name, 0i64),
                    Some(Condition::And(vec![
                        Condition::Exists,
                        Condition::AttributeNotExists(name.into()),
                    ])),
                )
                .await;
            match init {
                Ok(_) => {}
                Err(err) if err.is_condition_failed() => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(LoginAttempt::Locked)
}

/// Locks the account for [`LOCK_SECS`] (the count starts again); `true` when this call
/// locked it (a lock already in force is left alone).
async fn lock(app: &AppContext, id: &str, now: i64) -> Result<bool, ApiError> {
    let locked = app
        .db
        .update(
            &app.config.table,
            &key(id),
            Update::new()
                .set("locked_until", now + LOCK_SECS)
                .set("failed_logins", 0i64)
                .set("updated_at", app.now().to_string()),
            Some(Condition::And(vec![
                Condition::Exists,
                Condition::LessThan("locked_until".into(), now + 1),
            ])),
        )
        .await;
    match locked {
        Ok(_) => Ok(true),
        Err(err) if err.is_condition_failed() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// After a wrong password whose reservation was the `attempt`th: the
/// [`LOCK_AFTER_FAILURES`]th locks the account. Returns true when this failure locked it.
pub async fn login_failed(app: &AppContext, id: &str, attempt: i64) -> Result<bool, ApiError> {
    use crate::domain::account::{after_failure, AfterFailure};
    let now = app.clock.now().timestamp();
    match after_failure(attempt, now) {
        AfterFailure::Lock { .. } => lock(app, id, now).await,
        AfterFailure::Counted => Ok(false),
    }
}
