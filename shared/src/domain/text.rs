//! Client text: e-mail addresses, E.164 phone numbers and bounded printable text. One
//! rule each; a refusal names the field, never the value (it may be PHI).

use crate::ApiError;

pub const MAX_EMAIL_LEN: usize = 254;

/// A plausible address: one `@`, a dotted domain, no spaces, RFC 5321 length.
pub fn is_email(value: &str) -> bool {
    value.len() <= MAX_EMAIL_LEN
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
}

/// `+` and 8 to 15 digits, no leading zero.
pub fn is_e164(value: &str) -> bool {
    let digits = value.strip_prefix('+').unwrap_or_default();
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// An e-mail address, trimmed.
pub fn email(value: &str) -> Result<&str, ApiError> {
    let value = value.trim();
    if is_email(value) {
        Ok(value)
    } else {
        Err(ApiError::validation(
            "email: must be a valid e-mail address",
        ))
    }
}

/// A phone number in E.164 form, trimmed.
pub fn phone<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    let value = value.trim();
    if is_e164(value) {
        Ok(value)
    } else {
        Err(ApiError::validation(format!(
            "{field}: must be an E.164 phone number such as +14155550123"
        )))
    }
}

/// 1 to `max` printable characters, trimmed (names, relationships, address lines).
pub fn bounded<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    let value = value.trim();
    let len = value.chars().count();
    if len == 0 || len > max || value.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{field}: must be 1 to {max} printable characters"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_e164() {
        assert!(is_e164("+14155550123"));
        for bad in [
            "14155550123",
            "+0123456789",
            "+1415",
            "+1415555012345678",
            "+1 415 555",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_field_not_the_value() {
        let err = bounded("name", "\u{7}secret", 10).unwrap_err().to_string();
        assert!(err.contains("name") && !err.contains("secret"));
        let err = phone("phone", "555-SECRET").unwrap_err().to_string();
        assert!(!err.contains("SECRET"));
    }
}
