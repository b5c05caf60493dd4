//! Profile rules: date of birth, SSN (and how it is shown), postal address.

use super::text::bounded;
use crate::ApiError;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// A postal address, as sent and as shown.
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

/// A past date `YYYY-MM-DD` within 150 years of `today`.
pub fn date_of_birth(value: &str, today: NaiveDate) -> Result<String, ApiError> {
    let bad =
        || ApiError::validation("date_of_birth: must be a past date YYYY-MM-DD within 150 years");
    let date = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| bad())?;
    if date >= today || today.year() - date.year() > 150 {
        return Err(bad());
    }
    Ok(date.format("%Y-%m-%d").to_string())
}

/// A US SSN `AAA-GG-SSSS` (dashes optional), excluding numbers never issued; answered
/// in the dashed form.
pub fn ssn(value: &str) -> Result<String, ApiError> {
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

/// How an SSN is shown unless its owner asks for it: the last four digits only.
pub fn mask_ssn(ssn: &str) -> String {
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

/// The SSN as a viewer may see it: in full only to its owner who asked to reveal it.
pub fn ssn_for_viewer(ssn: String, owner: bool, reveal: bool) -> String {
    if owner && reveal {
        ssn
    } else {
        mask_ssn(&ssn)
    }
}

/// A postal address with bounded fields and an ISO 3166-1 alpha-2 country.
pub fn address(value: Address) -> Result<Address, ApiError> {
    let opt = |field: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
        v.filter(|s| !s.trim().is_empty())
            .map(|s| bounded(field, &s, 100).map(str::to_string))
            .transpose()
    };
    let country = value.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::validation(
            "address.country: must be an ISO 3166-1 alpha-2 code",
        ));
    }
    Ok(Address {
        line1: bounded("address.line1", &value.line1, 100)?.to_string(),
        line2: opt("address.line2", value.line2)?,
        city: bounded("address.city", &value.city, 100)?.to_string(),
        region: opt("address.region", value.region)?,
        postal_code: bounded("address.postal_code", &value.postal_code, 16)?.to_string(),
        country,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_birth_are_past_and_real() {
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
    }

    #[test]
    fn ssns_are_issued_numbers_and_masked_unless_revealed_to_the_owner() {
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
        let shown = |owner, reveal| ssn_for_viewer("123-45-6789".into(), owner, reveal);
        assert_eq!(shown(true, true), "123-45-6789");
        assert_eq!(shown(true, false), "***-**-6789");
        assert_eq!(
            shown(false, true),
            "***-**-6789",
            "never revealed to others"
        );
    }

    #[test]
    fn addresses_need_a_country_code() {
        let address_in = |country: &str| Address {
            line1: "742 Evergreen Terrace".into(),
            line2: Some("  ".into()),
            city: "Springfield".into(),
            region: None,
            postal_code: "49007".into(),
            country: country.into(),
        };
        let ok = address(address_in("us")).unwrap();
        assert_eq!((ok.country.as_str(), ok.line2), ("US", None));
        assert!(address(address_in("USA")).is_err());
    }
}
