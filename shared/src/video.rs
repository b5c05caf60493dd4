//! Twilio plumbing shared by the video and twilio-webhook functions and the fake: the
//! names of the Twilio secrets, access tokens made locally in Twilio's format (no network
//! call), and status-callback signatures (`X-Twilio-Signature`) made and validated as
//! Twilio's own libraries do (`docs/video.md`).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The header Twilio signs its callbacks with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The header naming one callback (the same on a retry of it).
pub const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";
/// The route Twilio's room status callbacks are sent to.
pub const CALLBACK_PATH: &str = "/api/v1/webhooks/twilio/video";
/// The access token's lifetime (Twilio's default).
pub const TOKEN_TTL_SECS: i64 = 3600;
/// The longest lifetime Twilio accepts for an access token.
pub const MAX_TOKEN_TTL_SECS: i64 = 24 * 3600;
/// The `cty` header of Twilio access tokens.
pub const TOKEN_CONTENT_TYPE: &str = "twilio-fpa;v=1";

/// The secret-store names of the stage's Twilio credentials (`docare/<stage>/twilio/…`).
/// Each is its own secret, so each function's role reads only what it uses: the video
/// function the account SID and the API key (tokens and REST calls), the webhook the
/// auth token (signatures).
pub fn account_sid_name(stage: &str) -> String {
    format!("docare/{stage}/twilio/account_sid")
}

pub fn api_key_sid_name(stage: &str) -> String {
    format!("docare/{stage}/twilio/api_key_sid")
}

pub fn api_key_secret_name(stage: &str) -> String {
    format!("docare/{stage}/twilio/api_key_secret")
}

pub fn auth_token_name(stage: &str) -> String {
    format!("docare/{stage}/twilio/auth_token")
}

/// What an access token is signed with.
pub struct TokenCredentials<'a> {
    /// `AC…`: the token's `sub`.
    pub account_sid: &'a str,
    /// `SK…`: the token's `iss` and the prefix of its `jti`.
    pub api_key_sid: &'a str,
    /// The API key's secret: the HS256 key.
    pub api_key_secret: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoGrant {
    pub room: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// An opaque participant id: never a name or an e-mail address.
    pub identity: String,
    pub video: VideoGrant,
}

/// The claims of a Twilio access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub jti: String,
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub grants: Grants,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token's lifetime must be 1 second to 24 hours")]
    Lifetime,
    #[error("the token could not be signed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// An access token for `identity` in `room`, valid `ttl_secs` from `now_secs` (at most
/// 24 hours): HS256 under the API key's secret, header `cty: twilio-fpa;v=1`, `iss` the
/// API key SID, `sub` the account SID, `jti` `<key sid>-<now>`. Made locally.
pub fn access_token(
    credentials: &TokenCredentials<'_>,
    identity: &str,
    room: &str,
    now_secs: i64,
    ttl_secs: i64,
) -> Result<String, TokenError> {
    if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl_secs) {
        return Err(TokenError::Lifetime);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("JWT".into());
    header.cty = Some(TOKEN_CONTENT_TYPE.into());
    let claims = AccessClaims {
        jti: format!("{}-{now_secs}", credentials.api_key_sid),
        iss: credentials.api_key_sid.to_string(),
        sub: credentials.account_sid.to_string(),
        iat: now_secs,
        nbf: now_secs,
        exp: now_secs + ttl_secs,
        grants: Grants {
            identity: identity.to_string(),
            video: VideoGrant {
                room: room.to_string(),
            },
        },
    };
    let key = jsonwebtoken::EncodingKey::from_secret(credentials.api_key_secret.as_bytes());
    jsonwebtoken::encode(&header, &claims, &key).map_err(TokenError::Signing)
}

type HmacSha1 = Hmac<Sha1>;

/// Twilio's signature of a callback: base64 of HMAC-SHA1, under the auth token, of the
/// full URL followed by each parameter name (sorted) and its values (sorted; repeated
/// values once), as `RequestValidator.compute_signature` computes it.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut text = url.to_string();
    for name in names {
        let mut values: Vec<&str> = params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        values.sort_unstable();
        values.dedup();
        for value in values {
            text.push_str(name);
            text.push_str(value);
        }
    }
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha1::new_from_slice(auth_token.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL with its scheme's default port spelled out, and without any port: Twilio's
/// libraries accept a signature of either (a proxy may add or drop `:443`).
fn url_forms(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return vec![url.to_string()];
    };
    let mut without = parsed.clone();
    let _ = without.set_port(None);
    let mut with = parsed.clone();
    let port = parsed.port_or_known_default();
    // `Url` drops a scheme's default port when serializing: spliced in by hand.
    let with_text = match (port, parsed.host_str()) {
        (Some(port), Some(host)) => {
            let _ = with.set_port(None);
            let text = with.to_string();
            let authority = format!("{}://{}", parsed.scheme(), host);
            match text.strip_prefix(&authority) {
                Some(rest) => format!("{authority}:{port}{rest}"),
                None => text,
            }
        }
        _ => with.to_string(),
    };
    vec![with_text, without.to_string()]
}

/// Why a callback's signature was refused (each is a 403 that changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Twilio-Signature header")]
    Missing,
    #[error("the signature does not match")]
    Mismatch,
}

/// Validates `X-Twilio-Signature` over `url` (rebuilt from configuration, never from the
/// request's `Host`) and the form parameters, with and without the URL's port, comparing
/// in constant time (both forms are always computed and compared).
pub fn validate(
    header: Option<&str>,
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
) -> Result<(), SignatureError> {
    let given = header.map(str::trim).ok_or(SignatureError::Missing)?;
    let mut matched = subtle::Choice::from(0);
    for form in url_forms(url) {
        let expected = signature(auth_token, &form, params);
        if expected.len() == given.len() {
            matched |= expected.as_bytes().ct_eq(given.as_bytes());
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The form parameters of a callback body (`application/x-www-form-urlencoded`).
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

/// New random Twilio-shaped credentials for the local fake: `AC…`, `SK…`, a secret and
/// an auth token (written once to the local data folder's `secrets.json`).
pub fn new_fake_credentials() -> [String; 4] {
    use rand::RngCore;
    let hex32 = || {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    };
    [
        format!("AC{}", hex32()),
        format!("SK{}", hex32()),
        hex32(),
        hex32(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    // Twilio's documented example request (twilio.com/docs/usage/security); the value is
    // what twilio-python 9.13's `RequestValidator.compute_signature` answers for it.
    #[test]
    fn the_documented_example_signature() {
        assert_eq!(
            signature(TOKEN, URL, &params()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(validate(Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="), TOKEN, URL, &params()).is_ok());
    }

    #[test]
    fn a_signature_with_or_without_the_port_validates() {
        let url = "https://api.example.com/api/v1/webhooks/twilio/video";
        let with_port = "https://api.example.com:443/api/v1/webhooks/twilio/video";
        let p = params();
        for signed in [url, with_port] {
            let sig = signature(TOKEN, signed, &p);
            assert!(validate(Some(&sig), TOKEN, url, &p).is_ok(), "{signed}");
            assert!(
                validate(Some(&sig), TOKEN, with_port, &p).is_ok(),
                "{signed}"
            );
        }
        let local = "http://127.0.0.1:5000/api/v1/webhooks/twilio/video";
        let sig = signature(TOKEN, "http://127.0.0.1/api/v1/webhooks/twilio/video", &p);
        assert!(validate(Some(&sig), TOKEN, local, &p).is_ok());
    }

    #[test]
    fn any_change_is_refused() {
        let sig = signature(TOKEN, URL, &params());
        let mut changed = params();
        changed[2].1 = "1235".into();
        assert_eq!(
            validate(Some(&sig), TOKEN, URL, &changed),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate(Some(&sig), "other", URL, &params()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate(
                Some(&sig),
                TOKEN,
                "https://evil.example/myapp.php?foo=1&bar=2",
                &params()
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate(None, TOKEN, URL, &params()),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            validate(Some(""), TOKEN, URL, &params()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn names_and_values_are_sorted_and_repeats_counted_once() {
        let a: Vec<(String, String)> = [("b", "2"), ("a", "y"), ("a", "x"), ("a", "x")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let b: Vec<(String, String)> = [("a", "x"), ("a", "y"), ("b", "2")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(signature(TOKEN, URL, &a), signature(TOKEN, URL, &b));
    }

    #[test]
    fn tokens_carry_twilios_header_and_claims_and_at_most_a_day() {
        let credentials = TokenCredentials {
            account_sid: "AC00000000000000000000000000000000",
            api_key_sid: "SK00000000000000000000000000000000",
            api_key_secret: "secret",
        };
        let token = access_token(&credentials, "p01", "room-1", 1_700_000_000, 3600).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
        assert_eq!(header.cty.as_deref(), Some(TOKEN_CONTENT_TYPE));
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<AccessClaims>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"secret"),
            &validation,
        )
        .unwrap();
        assert_eq!(
            data.claims.jti,
            "SK00000000000000000000000000000000-1700000000"
        );
        assert_eq!(data.claims.exp - data.claims.iat, 3600);
        assert_eq!(data.claims.grants.identity, "p01");
        assert_eq!(data.claims.grants.video.room, "room-1");
        assert!(access_token(&credentials, "p", "r", 0, MAX_TOKEN_TTL_SECS + 1).is_err());
        assert!(access_token(&credentials, "p", "r", 0, 0).is_err());
    }
}
