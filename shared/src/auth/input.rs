//! Validation of identity inputs (auth and users functions). Messages name the field, never the value.

use crate::ApiError;

const MAX_NAME_LEN: usize = 200;
const MAX_TOKEN_LEN: usize = 512;

/// A plausible address (the one rule: [`crate::domain::text::email`]).
pub fn email(value: &str) -> Result<&str, ApiError> {
    crate::domain::text::email(value)
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

/// A phone number in E.164 form ([`crate::domain::text::phone`]).
pub fn phone<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    crate::domain::text::phone(field, value)
}

/// Bounded printable text ([`crate::domain::text::bounded`]).
pub fn text<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    crate::domain::text::bounded(field, value, max)
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
