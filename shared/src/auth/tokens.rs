//! Access tokens: ES256 JWTs (15 minutes) with a `kid`, verified by every function.
//!
//! The signing key is a KMS asymmetric key (`ECC_NIST_P256`, `SIGN_VERIFY`): its private
//! half never leaves KMS (locally: the key ring), so no function ever holds it. Each
//! login and refresh is one `kms:Sign` (`ECDSA_SHA_256`) of the JWS signing input; KMS's
//! DER signature becomes JWS's `r || s` in the key port. The public keys (the signing
//! key and any earlier ones still in their rotation overlap, from [`Config`]) are
//! fetched once per instance with `kms:GetPublicKey` and cached for verification and
//! the JWKS. A `kid` is the key's RFC 7638 thumbprint. API Gateway's JWT authorizer
//! accepts only RSA keys, so the verification lives here, in the one extractor, rather
//! than in the gateway.
//!
//! [`Config`]: crate::config::Config

use super::{Principal, Role};
use crate::crypto::signing::PublicKey;
use crate::{ApiError, AppContext};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Access-token lifetime.
pub const ACCESS_TTL_SECS: i64 = crate::domain::session::ACCESS_TOKEN_SECS;
/// The JOSE `typ` of access tokens (RFC 9068), so no other JWT passes as one.
pub const TYP: &str = "at+jwt";
pub const AUDIENCE: &str = "docare-api";
/// Clock skew tolerated on `iat`.
const LEEWAY_SECS: i64 = 60;

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

/// A public key as loaded: its JWK and the verifier built from it.
struct Published {
    jwk: Jwk,
    key: DecodingKey,
}

/// The keys of this deployment, fetched once per instance.
struct KeySet {
    /// The `kid` of the current signing key.
    signing_kid: String,
    /// The current key first, then the earlier ones still accepted.
    keys: Vec<Published>,
}

/// Token signing and verification with a per-instance public-key cache.
pub struct TokenKeys {
    issuer: String,
    signing_key_id: String,
    previous_key_ids: Vec<String>,
    /// Lifetime of the tokens issued, and the most a verified one may claim.
    access_secs: i64,
    /// Single flight: the first use fetches the public keys; a failed fetch is not
    /// cached, so the next request tries again.
    set: tokio::sync::OnceCell<KeySet>,
}

impl TokenKeys {
    /// No I/O: the public keys are fetched on first use.
    pub fn new(
        stage: &str,
        signing_key_id: &str,
        previous_key_ids: &[String],
        access_secs: i64,
    ) -> Self {
        Self {
            access_secs: access_secs.min(ACCESS_TTL_SECS),
            issuer: format!("docare:{stage}"),
            signing_key_id: signing_key_id.to_string(),
            previous_key_ids: previous_key_ids.to_vec(),
            set: tokio::sync::OnceCell::new(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs an access token (one `kms:Sign`); returns it with its lifetime in seconds.
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
            exp: now + self.access_secs,
            iat: now,
            jti: app.new_id(),
        };
        let set = self.key_set(app).await?;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TYP.into());
        header.kid = Some(set.signing_kid.clone());
        let encode = |value: &[u8]| URL_SAFE_NO_PAD.encode(value);
        let signing_input = format!(
            "{}.{}",
            encode(&serde_json::to_vec(&header).map_err(ApiError::internal)?),
            encode(&serde_json::to_vec(&claims).map_err(ApiError::internal)?)
        );
        let signature = app
            .keys
            .sign(&self.signing_key_id, signing_input.as_bytes())
            .await?;
        Ok((
            format!("{signing_input}.{}", encode(&signature)),
            self.access_secs,
        ))
    }

    /// Verifies signature, algorithm, `typ`, `kid` and every claim; 401 on any failure.
    pub async fn verify(&self, app: &AppContext, token: &str) -> Result<AccessClaims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthenticated)?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(TYP) {
            return Err(ApiError::Unauthenticated);
        }
        let kid = header.kid.ok_or(ApiError::Unauthenticated)?;
        let set = self.key_set(app).await?;
        let key = &set
            .keys
            .iter()
            .find(|k| k.jwk.kid == kid)
            .ok_or(ApiError::Unauthenticated)?
            .key;
        let mut validation = Validation::new(Algorithm::ES256);
        // Time is checked below against the app's clock (testable, one source of time).
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iat", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[AUDIENCE]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| ApiError::Unauthenticated)?
            .claims;
        let now = app.clock.now().timestamp();
        let fresh = now < claims.exp
            && claims.iat <= now + LEEWAY_SECS
            && claims.exp - claims.iat <= self.access_secs;
        if !fresh {
            return Err(ApiError::Unauthenticated);
        }
        Ok(claims)
    }

    /// The public keys: the current signing key first, then those still in overlap.
    pub async fn jwks(&self, app: &AppContext) -> Result<Jwks, ApiError> {
        let set = self.key_set(app).await?;
        Ok(Jwks {
            keys: set.keys.iter().map(|k| k.jwk.clone()).collect(),
        })
    }

    async fn key_set(&self, app: &AppContext) -> Result<&KeySet, ApiError> {
        self.set
            .get_or_try_init(|| async {
                let mut keys = Vec::new();
                for key_id in std::iter::once(&self.signing_key_id).chain(&self.previous_key_ids) {
                    let der = app.keys.public_key(key_id).await?;
                    let public = PublicKey::from_spki_der(&der).map_err(ApiError::internal)?;
                    let (x, y) = public.jwk_coordinates();
                    let key =
                        DecodingKey::from_ec_components(&x, &y).map_err(ApiError::internal)?;
                    keys.push(Published {
                        jwk: Jwk {
                            kty: "EC".into(),
                            crv: "P-256".into(),
                            x,
                            y,
                            kid: public.thumbprint(),
                            use_: "sig".into(),
                            alg: "ES256".into(),
                        },
                        key,
                    });
                }
                let signing_kid = keys
                    .first()
                    .map(|k| k.jwk.kid.clone())
                    .ok_or_else(|| ApiError::internal("no signing key"))?;
                Ok(KeySet { signing_kid, keys })
            })
            .await
    }
}
