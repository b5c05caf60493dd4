//! Validation of identity inputs (auth and users functions). Messages name the field, never the value.

use crate::ApiError;

const MAX_EMAIL_LEN: usize = 254;
const MAX_NAME_LEN: usize = 200;
const MAX_TOKEN_LEN: usize = 512;

/// A plausible address: one `@`, a dotted domain, no spaces, RFC 5321 length.
pub fn email(value: &str) -> Result<&str, ApiError> {
    let value = value.trim();
    let valid = value.len() <= MAX_EMAIL_LEN
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(value)
    } else {
        Err(ApiError::validation(
            "email: must be a valid e-mail address",
        ))
    }
}

pub fn full_name(value: &str) -> Result<&str, ApiError> {
    let value = value.trim();
    let len = value.chars().count();
    if len == 0 || len > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "full_name: must be 1 to {MAX_NAME_LEN} printable characters"
        )));
    }
    Ok(value)
}

/// An opaque token or code from a client: bounded, non-empty.
pub fn token<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_TOKEN_LEN {
        return Err(ApiError::validation(format!(
            "{field}: is missing or too long"
        )));
    }
    Ok(value)
}

/// A phone number in E.164 form (`+` and 8 to 15 digits, no leading zero).
pub fn phone<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    let value = value.trim();
    let digits = value.strip_prefix('+').unwrap_or_default();
    let valid = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if valid {
        Ok(value)
    } else {
        Err(ApiError::validation(format!(
            "{field}: must be an E.164 phone number such as +14155550123"
        )))
    }
}

/// Bounded printable text (names, relationships, address lines).
pub fn text<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
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
    fn emails() {
        assert!(email("pat@example.com").is_ok());
        assert!(email(" pat@example.com ").is_ok());
        for bad in [
            "",
            "pat",
            "pat@",
            "@example.com",
            "pat@example",
            "p t@example.com",
            "a@b@c.com",
            "pat@.com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn phones() {
        assert!(phone("phone", "+14155550123").is_ok());
        for bad in [
            "",
            "4155550123",
            "+0123456789",
            "+1415555012a",
            "+1234567",
            "+1234567890123456",
        ] {
            assert!(phone("phone", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_tokens() {
        assert!(full_name("Pat Doe").is_ok());
        assert!(full_name("  ").is_err());
        assert!(full_name(&"x".repeat(201)).is_err());
        assert!(token("token", "").is_err());
        assert!(token("token", &"x".repeat(513)).is_err());
    }
}
