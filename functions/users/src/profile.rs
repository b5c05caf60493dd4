//! The encrypted profile: `GET`/`PUT /api/v1/users/me/profile` for the owner, and
//! `GET /api/v1/users/{id}/profile` for a provider with a care relationship or an admin
//! stating a reason (break-glass). Every read is audited before the data is returned; if
//! the audit event cannot be written, nothing is returned (503).
//!
//! Item: `USER#<id>` / `PROFILE`; each of `date_of_birth`, `ssn`, `phone`, `address` is
//! sealed on its own (the full name lives, sealed, on the account).

use crate::audit;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use shared::audit::{Action, Outcome, Reason};
use shared::auth::accounts;
use shared::auth::policy::{self, Basis};
use shared::auth::{audit_event, authenticate, input, rate_limit, Principal};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::db::{Item, Key, Update, Value, WriteOp};
use shared::{phi, ApiError, App, AppContext};

const SEALED: [&str; 4] = ["date_of_birth", "ssn", "phone", "address"];

fn key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "PROFILE")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileBody {
    full_name: String,
    date_of_birth: Option<String>,
    ssn: Option<String>,
    phone: Option<String>,
    address: Option<Address>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "Profile")]
pub(crate) struct ProfileView {
    user_id: String,
    full_name: String,
    date_of_birth: Option<String>,
    /// `***-**-1234` unless the owner asked for `?reveal=ssn`.
    ssn: Option<String>,
    phone: Option<String>,
    address: Option<Address>,
    updated_at: Option<String>,
}

fn date_of_birth(value: &str, today: NaiveDate) -> Result<String, ApiError> {
    let bad =
        || ApiError::validation("date_of_birth: must be a past date YYYY-MM-DD within 150 years");
    let date = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| bad())?;
    if date >= today || today.year() - date.year() > 150 {
        return Err(bad());
    }
    Ok(date.format("%Y-%m-%d").to_string())
}

/// US SSN `AAA-GG-SSSS` (dashes optional), excluding numbers never issued.
fn ssn(value: &str) -> Result<String, ApiError> {
    let digits: String = value.chars().filter(|c| *c != '-').collect();
    let valid = digits.len() == 9
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !["000", "666"].contains(&&digits[..3])
        && !digits.starts_with('9')
        && &digits[3..5] != "00"
        && &digits[5..] != "0000";
    if !valid {
        return Err(ApiError::validation(
            "ssn: must be a valid SSN (AAA-GG-SSSS)",
        ));
    }
    Ok(format!(
        "{}-{}-{}",
        &digits[..3],
        &digits[3..5],
        &digits[5..]
    ))
}

fn mask_ssn(ssn: &str) -> String {
    let last4: String = ssn
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("***-**-{last4}")
}

fn address(value: Address) -> Result<Address, ApiError> {
    let opt = |field: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
        v.filter(|s| !s.trim().is_empty())
            .map(|s| input::text(field, &s, 100).map(str::to_string))
            .transpose()
    };
    let country = value.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::validation(
            "address.country: must be an ISO 3166-1 alpha-2 code",
        ));
    }
    Ok(Address {
        line1: input::text("address.line1", &value.line1, 100)?.to_string(),
        line2: opt("address.line2", value.line2)?,
        city: input::text("address.city", &value.city, 100)?.to_string(),
        region: opt("address.region", value.region)?,
        postal_code: input::text("address.postal_code", &value.postal_code, 16)?.to_string(),
        country,
    })
}

/// `PUT /api/v1/users/me/profile`: replaces the profile (absent fields are removed).
pub async fn put_own(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: ProfileBody = req.json()?;
    let full_name = input::full_name(&body.full_name)?;
    let today = app.clock.now().date_naive();
    let mut plain: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &body.date_of_birth {
        plain.push(("date_of_birth", date_of_birth(v, today)?));
    }
    if let Some(v) = &body.ssn {
        plain.push(("ssn", ssn(v)?));
    }
    if let Some(v) = &body.phone {
        plain.push(("phone", input::phone("phone", v)?.to_string()));
    }
    let valid_address = body.address.map(address).transpose()?;
    if let Some(v) = &valid_address {
        plain.push((
            "address",
            serde_json::to_string(v).map_err(ApiError::internal)?,
        ));
    }
    let key = key(&principal.user_id);
    let now = app
        .clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut item = Item::new();
    item.insert("pk".into(), Value::S(key.pk.clone()));
    item.insert("sk".into(), Value::S(key.sk.clone()));
    item.insert("updated_at".into(), Value::S(now.clone()));
    for (attribute, value) in &plain {
        item.insert(
            (*attribute).into(),
            phi::seal(&app, &key, attribute, value).await?,
        );
    }
    let name = accounts::seal(&app, &principal.user_id, "full_name", full_name).await?;
    let table = app.config.table.clone();
    app.db
        .transact_write(vec![
            WriteOp::Put {
                table: table.clone(),
                item,
                condition: None,
            },
            WriteOp::Update {
                table,
                key: accounts::key(&principal.user_id),
                update: Update::new()
                    .set("full_name", name)
                    .set("updated_at", now.clone()),
                condition: Some(shared::ports::db::Condition::Exists),
            },
        ])
        .await?;
    audit(
        &app,
        &req,
        &principal,
        Action::Update,
        ("profile", &principal.user_id),
        Outcome::Success,
    )
    .await?;
    // The answer is what was just written: no read back, no decryption.
    let value = |name: &str| {
        plain
            .iter()
            .find(|(a, _)| *a == name)
            .map(|(_, v)| v.clone())
    };
    ApiResponse::ok(&ProfileView {
        user_id: principal.user_id.clone(),
        full_name: full_name.to_string(),
        date_of_birth: value("date_of_birth"),
        ssn: value("ssn").map(|s| mask_ssn(&s)),
        phone: value("phone"),
        address: valid_address,
        updated_at: Some(now),
    })
}

/// `GET /api/v1/users/me/profile[?reveal=ssn]`.
/// The one value of `?reveal=`.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)] // the documented parameter; the handler compares the text
pub(crate) enum Reveal {
    #[schemars(rename = "ssn")]
    Ssn,
}

pub async fn get_own(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let reveal = match req.query_param("reveal") {
        None => false,
        Some("ssn") => true,
        Some(_) => {
            return Err(ApiError::validation(
                "query parameter `reveal` may only be `ssn`",
            ))
        }
    };
    if reveal {
        rate_limit::hit(
            &app,
            rate_limit::SENSITIVE,
            &format!("user:{}", principal.user_id),
        )
        .await?;
    }
    let view = read(&app, &req, &principal, &principal.user_id, reveal).await?;
    let action = if reveal { Action::Reveal } else { Action::View };
    audit(
        &app,
        &req,
        &principal,
        action,
        ("profile", &principal.user_id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&view)
}

/// `GET /api/v1/users/{id}/profile`: care team, or an admin with `X-Access-Reason`.
pub async fn get_patient(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let patient_id = req.param("id")?.to_string();
    let basis = match policy::patient_data(&app, &principal, &req, &patient_id).await {
        Ok(basis) => basis,
        Err(err) => {
            // Refusals, a missing break-glass reason included, are audited.
            if matches!(
                err,
                ApiError::NotFound | ApiError::Forbidden | ApiError::Validation(_)
            ) {
                // The id is client text until proven an id: never free text in the trail.
                let recorded = if ulid::Ulid::from_string(&patient_id).is_ok() {
                    patient_id.as_str()
                } else {
                    "invalid"
                };
                audit(
                    &app,
                    &req,
                    &principal,
                    Action::AccessDenied,
                    ("profile", recorded),
                    Outcome::Denied,
                )
                .await?;
            }
            return Err(err);
        }
    };
    let view = read(&app, &req, &principal, &patient_id, false).await?;
    let event = match basis {
        Basis::BreakGlass { reason } => {
            audit_event(&req, &principal, Action::BreakGlass, Outcome::Success)
                .reason(Reason::new(&reason)?)
        }
        Basis::Owner | Basis::CareRelationship => {
            audit_event(&req, &principal, Action::View, Outcome::Success)
        }
    };
    app.audit
        .record(event.resource("profile", &patient_id))
        .await?;
    ApiResponse::ok(&view)
}

/// Decrypts a profile (2 reads: account and profile). A value that fails its integrity
/// check is audited and fails the request: never a wrong answer.
async fn read(
    app: &AppContext,
    req: &ApiRequest,
    principal: &Principal,
    user_id: &str,
    reveal: bool,
) -> Result<ProfileView, ApiError> {
    let account = accounts::get(app, user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let item = app
        .db
        .get(&app.config.table, &key(user_id))
        .await?
        .unwrap_or_default();
    let resource = ("profile", user_id);
    let mut opened = phi::open_audited(app, req, principal, &item, &SEALED, resource).await?;
    opened.extend(
        phi::open_audited(app, req, principal, &account.item, &["full_name"], resource).await?,
    );
    let mut values = opened.into_iter();
    let mut next = || values.next().flatten();
    let (dob, ssn_value, phone, address_json, full_name) = (next(), next(), next(), next(), next());
    let address = address_json
        .map(|json| serde_json::from_str::<Address>(&json).map_err(ApiError::internal))
        .transpose()?;
    let owner = principal.user_id == user_id;
    Ok(ProfileView {
        user_id: user_id.to_string(),
        full_name: full_name.unwrap_or_default(),
        date_of_birth: dob,
        ssn: ssn_value.map(|s| if reveal && owner { s } else { mask_ssn(&s) }),
        phone,
        address,
        updated_at: item
            .get("updated_at")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rules() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(date_of_birth("1980-02-29", today).unwrap(), "1980-02-29");
        for bad in [
            "2026-11-23",
            "2030-01-01",
            "1800-01-01",
            "1981-02-29",
            "23/11/1980",
        ] {
            assert!(date_of_birth(bad, today).is_err(), "{bad}");
        }
        assert_eq!(ssn("123456789").unwrap(), "123-45-6789");
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "12-345-678",
            "abc-de-fghi",
        ] {
            assert!(ssn(bad).is_err(), "{bad}");
        }
        assert_eq!(mask_ssn("123-45-6789"), "***-**-6789");
    }
}
