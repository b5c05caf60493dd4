//! The profile repository: `PROFILE#<id>` / `PROFILE`, each PHI field sealed on its own and
//! bound to the item and the attribute; the (sealed) full name lives on the account.
//! Fields are written and opened by name, never by position.

use crate::audit::{AuditEvent, CommitError};
use crate::auth::{accounts, Principal};
use crate::crypto::CryptoError;
use crate::domain::zone::Zone;
use crate::http::ApiRequest;
use crate::ports::db::{Condition, Item, Update, Value, WriteOp};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};

/// The sealed attributes of a profile item.
pub const SEALED: [&str; 4] = ["date_of_birth", "ssn", "phone", "address"];

/// A profile as stored, opened. `address` is the JSON text the handler wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub full_name: String,
    pub date_of_birth: Option<String>,
    pub ssn: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    /// IANA zone (plain: not PHI); [`Zone::UTC`] when unset. Medication schedules and
    /// reminders use it.
    pub time_zone: Option<Zone>,
    pub updated_at: Option<String>,
}

impl Profile {
    fn field(&self, name: &str) -> Option<&String> {
        match name {
            "date_of_birth" => self.date_of_birth.as_ref(),
            "ssn" => self.ssn.as_ref(),
            "phone" => self.phone.as_ref(),
            "address" => self.address.as_ref(),
            _ => None,
        }
    }

    fn set(&mut self, name: &str, value: Option<String>) {
        match name {
            "date_of_birth" => self.date_of_birth = value,
            "ssn" => self.ssn = value,
            "phone" => self.phone = value,
            "address" => self.address = value,
            _ => {}
        }
    }
}

/// Replaces the whole profile (absent fields are cleared) and the account's name,
/// committed with `event` as one unit of work (worst case 4 items: profile, account,
/// event, chain head): without the event nothing is kept. `profile.updated_at` is the
/// time written. The account must exist.
pub async fn replace(
    app: &AppContext,
    user_id: &str,
    profile: &Profile,
    event: AuditEvent,
) -> Result<(), ApiError> {
    let key = keys::profile(user_id);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    let updated_at = profile.updated_at.clone().unwrap_or_default();
    item.insert("updated_at".into(), Value::S(updated_at.clone()));
    if let Some(zone) = profile.time_zone {
        item.insert("time_zone".into(), Value::S(zone.name().into()));
    }
    for attribute in SEALED {
        if let Some(value) = profile.field(attribute) {
            item.insert(
                attribute.into(),
                phi::seal(app, &key, attribute, value).await?,
            );
        }
    }
    let name = accounts::seal(app, user_id, "full_name", &profile.full_name).await?;
    let table = app.config.table.clone();
    let change = vec![
        WriteOp::Put {
            table: table.clone(),
            item,
            condition: None,
        },
        WriteOp::Update {
            table,
            key: accounts::key(user_id),
            update: Update::new()
                .set("full_name", name)
                .set("updated_at", updated_at),
            condition: Some(Condition::Exists),
        },
    ];
    match app.audit.commit(event, change).await {
        Ok(()) => Ok(()),
        // The account is gone (deleted between authentication and now).
        Err(CommitError::Change { .. }) => Err(ApiError::NotFound),
        Err(err) => Err(err.into()),
    }
}

/// Opens a user's profile for a principal's request (two reads: account and profile);
/// `None` when there is no such account. A value that fails its integrity check is
/// audited on `profile/<user_id>` and fails the request.
pub async fn read(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    user_id: &str,
) -> Result<Option<Profile>, ApiError> {
    let Some(account) = accounts::get(app, user_id).await? else {
        return Ok(None);
    };
    let item = app
        .db
        .get(&app.config.table, &keys::profile(user_id))
        .await?
        .unwrap_or_default();
    let resource = ("profile", user_id);
    let opened = phi::open_audited(app, req, principal, &item, &SEALED, resource).await?;
    let mut profile = Profile {
        updated_at: item
            .get("updated_at")
            .and_then(Value::as_str)
            .map(str::to_string),
        time_zone: zone_of(&item),
        ..Profile::default()
    };
    for (attribute, value) in SEALED.iter().zip(opened) {
        profile.set(attribute, value);
    }
    let mut name =
        phi::open_audited(app, req, principal, &account.item, &["full_name"], resource).await?;
    profile.full_name = name.pop().flatten().unwrap_or_default();
    Ok(Some(profile))
}

/// The profile's phone number, for sending a sign-in code by SMS (no principal yet:
/// the caller is half-way through signing in). An integrity failure is the caller's to
/// record (`CryptoError::Integrity`).
pub async fn phone(app: &AppContext, user_id: &str) -> Result<Option<String>, CryptoError> {
    let item = app
        .db
        .get(&app.config.table, &keys::profile(user_id))
        .await
        .map_err(CryptoError::StoreUnavailable)?
        .unwrap_or_default();
    phi::open(app, &item, "phone").await
}

fn zone_of(item: &Item) -> Option<Zone> {
    item.get("time_zone")
        .and_then(Value::as_str)
        .and_then(Zone::parse)
}

/// The user's time zone ([`Zone::UTC`] when the profile has none): one read, nothing
/// decrypted.
pub async fn time_zone(app: &AppContext, user_id: &str) -> Result<Zone, ApiError> {
    let item = app
        .db
        .get(&app.config.table, &keys::profile(user_id))
        .await?
        .unwrap_or_default();
    Ok(zone_of(&item).unwrap_or(Zone::UTC))
}
