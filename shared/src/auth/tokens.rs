//! Access tokens: ES256 JWTs (15 minutes) with a `kid`, verified by every function.
//!
//! The signing key is a P-256 key pair generated on first use by the auth function and
//! stored in the table with its private half encrypted by the envelope (so it is only
//! ever in plaintext in memory, wrapped by KMS at rest). Public keys are served as a JWKS
//! and cached by verifiers; an unknown `kid` reloads them at most every
//! [`KEY_RELOAD_INTERVAL`]. API Gateway's JWT authorizer accepts only RSA keys, so the
//! verification lives here, in the one extractor, rather than in the gateway.

use super::{Principal, Role};
use crate::crypto::Binding;
use crate::ports::db::{item, Condition, Index, Item, Key, Query, Value, WriteOp};
use crate::store::keys;
use crate::{ApiError, AppContext};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Access-token lifetime.
pub const ACCESS_TTL_SECS: i64 = crate::domain::session::ACCESS_TOKEN_SECS;
/// The JOSE `typ` of access tokens (RFC 9068), so no other JWT passes as one.
pub const TYP: &str = "at+jwt";
pub const AUDIENCE: &str = "docare-api";
/// How often an unknown `kid` may trigger a reload of the public keys.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `iat`.
const LEEWAY_SECS: i64 = 60;

const KEYS_PARTITION: &str = keys::SIGNING_KEYS;
const PRIVATE_ATTR: &str = "private_key";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub role: String,
    pub sid: String,
    /// Authentication methods (RFC 8176; [`super::amr`]): `pwd`; `otp mfa` after TOTP or
    /// a recovery code; `mca` (and `sms`) after a code sent by e-mail (SMS).
    pub amr: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

impl AccessClaims {
    pub fn principal(&self) -> Result<Principal, ApiError> {
        Ok(Principal {
            user_id: self.sub.clone(),
            role: Role::parse(&self.role).ok_or(ApiError::Unauthenticated)?,
            session_id: self.sid.clone(),
            mfa: self.amr.iter().any(|m| m == super::amr::MFA),
            mailed_code: self.amr.iter().any(|m| m == super::amr::MULTI_CHANNEL),
        })
    }
}

/// A public key as published in the JWKS (RFC 7517/7518, EC P-256).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

struct SigningKey {
    kid: String,
    key: EncodingKey,
}

#[derive(Default)]
struct Verifiers {
    keys: HashMap<String, DecodingKey>,
    loaded_at: Option<Instant>,
}

/// Token signing and verification with per-instance key caches.
pub struct TokenKeys {
    issuer: String,
    signing: tokio::sync::Mutex<Option<SigningKey>>,
    verifiers: Mutex<Verifiers>,
    reload: tokio::sync::Mutex<()>,
}

fn key_record(kid: &str) -> Key {
    keys::signing_key(kid)
}

fn current_record() -> Key {
    keys::current_signing_key()
}

fn text(item: &Item, name: &str) -> Result<String, ApiError> {
    item.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::internal(format!("signing key record lacks {name}")))
}

fn jwk_of(item: &Item) -> Result<Jwk, ApiError> {
    Ok(Jwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: text(item, "x")?,
        y: text(item, "y")?,
        kid: text(item, "kid")?,
        use_: "sig".into(),
        alg: "ES256".into(),
    })
}

impl TokenKeys {
    pub fn new(stage: &str) -> Self {
        Self {
            issuer: format!("docare:{stage}"),
            signing: tokio::sync::Mutex::new(None),
            verifiers: Mutex::new(Verifiers::default()),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs an access token; returns it with its lifetime in seconds.
    pub async fn issue(
        &self,
        app: &AppContext,
        user_id: &str,
        role: Role,
        session_id: &str,
        amr: &[&str],
    ) -> Result<(String, i64), ApiError> {
        let now = app.clock.now().timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.into(),
            sub: user_id.into(),
            role: role.as_str().into(),
            sid: session_id.into(),
            amr: amr.iter().map(|m| m.to_string()).collect(),
            exp: now + ACCESS_TTL_SECS,
            iat: now,
            jti: app.new_id(),
        };
        let mut slot = self.signing.lock().await;
        if slot.is_none() {
            *slot = Some(self.load_or_create(app).await?);
        }
        let signing = slot
            .as_ref()
            .ok_or_else(|| ApiError::internal("no signing key"))?;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TYP.into());
        header.kid = Some(signing.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &signing.key).map_err(ApiError::internal)?;
        Ok((token, ACCESS_TTL_SECS))
    }

    /// Verifies signature, algorithm, `typ`, `kid` and every claim; 401 on any failure.
    pub async fn verify(&self, app: &AppContext, token: &str) -> Result<AccessClaims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthenticated)?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(TYP) {
            return Err(ApiError::Unauthenticated);
        }
        let kid = header.kid.ok_or(ApiError::Unauthenticated)?;
        let key = self.decoding_key(app, &kid).await?;
        let mut validation = Validation::new(Algorithm::ES256);
        // Time is checked below against the app's clock (testable, one source of time).
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iat", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[AUDIENCE]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|_| ApiError::Unauthenticated)?
            .claims;
        let now = app.clock.now().timestamp();
        let fresh = now < claims.exp
            && claims.iat <= now + LEEWAY_SECS
            && claims.exp - claims.iat <= ACCESS_TTL_SECS;
        if !fresh {
            return Err(ApiError::Unauthenticated);
        }
        Ok(claims)
    }

    /// The public keys, creating the first signing key if there is none yet.
    pub async fn jwks(&self, app: &AppContext) -> Result<Jwks, ApiError> {
        {
            let mut slot = self.signing.lock().await;
            if slot.is_none() {
                *slot = Some(self.load_or_create(app).await?);
            }
        }
        let items = self.public_keys(app).await?;
        Ok(Jwks {
            keys: items.iter().map(jwk_of).collect::<Result<_, _>>()?,
        })
    }

    async fn public_keys(&self, app: &AppContext) -> Result<Vec<Item>, ApiError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = app
                .db
                .query(
                    &app.config.table,
                    Query::partition(KEYS_PARTITION)
                        .on(Index::Gsi1)
                        .limit(100)
                        .start(start),
                )
                .await?;
            items.extend(page.items);
            match page.next {
                Some(next) => start = Some(next),
                None => return Ok(items),
            }
        }
    }

    async fn decoding_key(&self, app: &AppContext, kid: &str) -> Result<DecodingKey, ApiError> {
        if let Some(key) = self.cached_verifier(kid) {
            return Ok(key);
        }
        let _flight = self.reload.lock().await;
        if let Some(key) = self.cached_verifier(kid) {
            return Ok(key);
        }
        let recently = self
            .lock_verifiers()
            .loaded_at
            .is_some_and(|at| at.elapsed() < KEY_RELOAD_INTERVAL);
        if recently {
            return Err(ApiError::Unauthenticated);
        }
        let mut keys = HashMap::new();
        for item in self.public_keys(app).await? {
            let jwk = jwk_of(&item)?;
            let key =
                DecodingKey::from_ec_components(&jwk.x, &jwk.y).map_err(ApiError::internal)?;
            keys.insert(jwk.kid, key);
        }
        let found = keys.get(kid).cloned();
        *self.lock_verifiers() = Verifiers {
            keys,
            loaded_at: Some(Instant::now()),
        };
        found.ok_or(ApiError::Unauthenticated)
    }

    fn cached_verifier(&self, kid: &str) -> Option<DecodingKey> {
        self.lock_verifiers().keys.get(kid).cloned()
    }

    fn lock_verifiers(&self) -> std::sync::MutexGuard<'_, Verifiers> {
        self.verifiers.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn load_or_create(&self, app: &AppContext) -> Result<SigningKey, ApiError> {
        let table = &app.config.table;
        if let Some(current) = app.db.get(table, &current_record()).await? {
            return self.load(app, &text(&current, "kid")?).await;
        }
        match self.create(app).await {
            Ok(key) => Ok(key),
            // Another instance created the first key at the same moment: use theirs.
            Err(CreateError::Raced) => {
                let current = app
                    .db
                    .get(table, &current_record())
                    .await?
                    .ok_or_else(|| ApiError::internal("signing key vanished"))?;
                self.load(app, &text(&current, "kid")?).await
            }
            Err(CreateError::Api(err)) => Err(err),
        }
    }

    async fn load(&self, app: &AppContext, kid: &str) -> Result<SigningKey, ApiError> {
        let table = &app.config.table;
        let key = key_record(kid);
        let record = app
            .db
            .get(table, &key)
            .await?
            .ok_or_else(|| ApiError::internal("signing key record missing"))?;
        let sealed = record
            .get(PRIVATE_ATTR)
            .and_then(Value::as_bytes)
            .ok_or_else(|| ApiError::internal("signing key record lacks the private key"))?;
        let pkcs8 = app.crypto.decrypt(&binding(table, &key), sealed).await?;
        Ok(SigningKey {
            kid: kid.to_string(),
            key: EncodingKey::from_ec_der(&pkcs8),
        })
    }

    async fn create(&self, app: &AppContext) -> Result<SigningKey, CreateError> {
        let table = &app.config.table;
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| ApiError::internal("cannot generate a signing key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| ApiError::internal("cannot read the generated signing key"))?;
        // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(ApiError::internal("unexpected public key encoding").into());
        }
        let kid = ulid::Ulid::new().to_string();
        let key = key_record(&kid);
        let sealed = app
            .crypto
            .encrypt(&binding(table, &key), pkcs8.as_ref())
            .await
            .map_err(ApiError::from)?;
        let created_at = app.clock.now().to_rfc3339();
        let record = item([
            ("pk", Value::S(key.pk.clone())),
            ("sk", Value::S(key.sk.clone())),
            ("kid", Value::S(kid.clone())),
            ("x", Value::S(URL_SAFE_NO_PAD.encode(&point[1..33]))),
            ("y", Value::S(URL_SAFE_NO_PAD.encode(&point[33..65]))),
            (PRIVATE_ATTR, Value::B(sealed)),
            ("created_at", Value::S(created_at.clone())),
            ("gsi1pk", Value::S(KEYS_PARTITION.into())),
            ("gsi1sk", Value::S(format!("{created_at}#{kid}"))),
        ]);
        let current = item([
            ("pk", Value::S(KEYS_PARTITION.into())),
            ("sk", Value::S("CURRENT".into())),
            ("kid", Value::S(kid.clone())),
        ]);
        let written = app
            .db
            .transact_write(vec![
                WriteOp::Put {
                    table: table.clone(),
                    item: record,
                    condition: Some(Condition::NotExists),
                },
                WriteOp::Put {
                    table: table.clone(),
                    item: current,
                    condition: Some(Condition::NotExists),
                },
            ])
            .await;
        match written {
            Ok(()) => Ok(SigningKey {
                kid,
                key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            }),
            Err(err) if err.is_condition_failed() => Err(CreateError::Raced),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }
}

fn binding<'a>(table: &'a str, key: &'a Key) -> Binding<'a> {
    Binding {
        table,
        pk: &key.pk,
        sk: &key.sk,
        attribute: PRIVATE_ATTR,
    }
}

enum CreateError {
    Raced,
    Api(ApiError),
}

impl From<ApiError> for CreateError {
    fn from(err: ApiError) -> Self {
        CreateError::Api(err)
    }
}
