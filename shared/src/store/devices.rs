//! Device connections (`docs/devices.md`): a patient's link to a health data provider
//! (`DEVICE#<patient>` / `LINK#<provider>`: state, times, the OAuth tokens sealed), and
//! the pending OAuth authorizations that create them (`OAUTHFLOW#<SHA-256 of state>` /
//! `FLOW`).
//!
//! A flow is started with a random `state` and PKCE `code_verifier` (256 bits each):
//! only the state's hash is a key, the verifier is sealed (bound to the item), and the
//! item lives [`FLOW_TTL_SECS`]. It is redeemed by one conditional delete that holds only
//! for a live item (as `store::tickets` redeems WebSocket tickets): of any number of
//! callbacks with the same state exactly one gets the flow back, and an expired flow is
//! refused even before DynamoDB's TTL sweep removes it.
//!
//! A connection also records the provider's id of the user (Google's `healthUserId`),
//! indexed at `DEVICEUSER#<provider>#<id>` / `LINK` → the patient: a webhook delivery
//! names only that id.

use crate::auth::secrets;
use crate::domain::Timestamp;
use crate::ports::db::{item, Condition, Item, Key, Query, SortKey, Update, Value};
use crate::ports::health_api::{s256_challenge, HealthApi, HealthApiError, Tokens};
use crate::store::keys;
use crate::{phi, ApiError, AppContext};
use zeroize::Zeroizing;

/// What audit events and refusals name (with the patient's id).
pub const RESOURCE: &str = "device_connection";
/// How long an authorization may be completed after it was started.
pub const FLOW_TTL_SECS: i64 = 600;
/// The refresh lease: held until (epoch seconds; 0 when free), by whom, and the
/// connection's version (raised by every lease and every refresh).
const LEASE_UNTIL: &str = "lease_until";
const LEASE_ID: &str = "lease_id";
const VERSION: &str = "version";
/// How long a refresher holds the lease (a refresher that dies frees it by expiry).
pub const LEASE_SECS: i64 = 30;
/// An access token is refreshed this long before it expires.
pub const REFRESH_MARGIN_SECS: i64 = 300;
/// How often a caller re-reads while another refreshes, and how long it waits between.
const WAITS: u32 = 100;
const WAIT: std::time::Duration = std::time::Duration::from_millis(50);
/// The sealed attributes.
const VERIFIER: &str = "verifier";
const ACCESS_TOKEN: &str = "access_token";
const REFRESH_TOKEN: &str = "refresh_token";
/// The provider's id of the user (in the clear: an opaque id at the provider).
const PROVIDER_USER_ID: &str = "provider_user_id";
/// The longest provider user id accepted (Google's are 1 to 63 characters).
const MAX_PROVIDER_USER_ID: usize = 64;

/// Whether a provider's user id is well formed (letters, digits, `-` and `_`; 1 to 64):
/// checked before it becomes part of a key.
pub fn is_provider_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PROVIDER_USER_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Tokens are held and usable.
    Connected,
    /// The provider refused the refresh token: the patient must connect again.
    NeedsReauth,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::NeedsReauth => "needs_reauth",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "connected" => Some(Self::Connected),
            "needs_reauth" => Some(Self::NeedsReauth),
            _ => None,
        }
    }
}

/// A connection as listed (no token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub provider: String,
    pub state: LinkState,
    pub connected_at: Timestamp,
    pub last_sync_at: Option<Timestamp>,
}

fn link_of(item: &Item) -> Option<Link> {
    let text = |name: &str| item.get(name).and_then(Value::as_str);
    Some(Link {
        provider: text("provider")?.to_string(),
        state: LinkState::parse(text("state")?)?,
        connected_at: Timestamp::parse(text("connected_at")?)?,
        last_sync_at: text("last_sync_at").and_then(Timestamp::parse),
    })
}

/// A started authorization: the `state` and the PKCE challenge for the authorization
/// URL (the verifier stays sealed in the table).
pub struct Started {
    pub state: String,
    pub challenge: String,
}

/// Starts an authorization of `provider` for the user: stores the flow (single use,
/// [`FLOW_TTL_SECS`]) and answers its state and challenge.
pub async fn start_flow(
    app: &AppContext,
    user_id: &str,
    provider: &str,
) -> Result<Started, ApiError> {
    let state = secrets::token();
    let verifier = Zeroizing::new(secrets::token());
    let key = keys::oauth_flow(&secrets::hash(&state));
    let sealed = phi::seal(app, &key, VERIFIER, &verifier).await?;
    let expires = app.clock.now().timestamp() + FLOW_TTL_SECS;
    let record = item([
        ("pk", Value::S(key.pk.clone())),
        ("sk", Value::S(key.sk.clone())),
        ("user_id", Value::S(user_id.into())),
        ("provider", Value::S(provider.into())),
        (VERIFIER, sealed),
        ("expires_at", Value::N(expires)),
    ]);
    app.db
        .put(&app.config.table, record, Some(Condition::NotExists))
        .await?;
    Ok(Started {
        challenge: s256_challenge(&verifier),
        state,
    })
}

/// A redeemed authorization.
pub struct Redeemed {
    pub user_id: String,
    pub provider: String,
    pub verifier: Zeroizing<String>,
}

/// Redeems a flow once: its user, provider and verifier, or `None` when the state is
/// malformed, unknown, expired or already used.
pub async fn redeem_flow(app: &AppContext, state: &str) -> Result<Option<Redeemed>, ApiError> {
    let Some(old) = super::single_use::take(app, state, keys::oauth_flow).await? else {
        return Ok(None);
    };
    let text = |name: &str| old.get(name).and_then(Value::as_str).map(str::to_string);
    let (Some(user_id), Some(provider)) = (text("user_id"), text("provider")) else {
        return Ok(None);
    };
    let Some(verifier) = phi::open(app, &old, VERIFIER).await? else {
        return Ok(None);
    };
    Ok(Some(Redeemed {
        user_id,
        provider,
        verifier: Zeroizing::new(verifier),
    }))
}

/// Stores (or replaces) the user's connection to `provider` with fresh tokens, sealed:
/// state `connected`; and indexes the provider's id of the user to this patient (a
/// later connection of the same provider account by another patient takes the index
/// over).
pub async fn connect(
    app: &AppContext,
    user_id: &str,
    provider: &str,
    provider_user_id: &str,
    tokens: &Tokens,
) -> Result<Link, ApiError> {
    if !is_provider_user_id(provider_user_id) {
        return Err(ApiError::unavailable(
            "health_api",
            ApiError::internal("the provider answered a malformed user id"),
        ));
    }
    let key = keys::device_link(user_id, provider);
    let now = app.now();
    let access = phi::seal(app, &key, ACCESS_TOKEN, &tokens.access_token).await?;
    let mut record = item([
        ("pk", Value::S(key.pk.clone())),
        ("sk", Value::S(key.sk.clone())),
        ("provider", Value::S(provider.into())),
        ("state", Value::S(LinkState::Connected.as_str().into())),
        ("connected_at", Value::S(now.to_string())),
        (
            "token_expires_at",
            Value::N(app.clock.now().timestamp() + tokens.expires_in),
        ),
        (ACCESS_TOKEN, access),
        (PROVIDER_USER_ID, Value::S(provider_user_id.into())),
        // The refresh lease: free (0), at version 0 (`access_token`).
        (LEASE_UNTIL, Value::N(0)),
        (VERSION, Value::N(0)),
    ]);
    if let Some(refresh) = &tokens.refresh_token {
        record.insert(
            REFRESH_TOKEN.into(),
            phi::seal(app, &key, REFRESH_TOKEN, refresh).await?,
        );
    }
    let index = keys::device_user(provider, provider_user_id);
    let pointer = item([
        ("pk", Value::S(index.pk.clone())),
        ("sk", Value::S(index.sk.clone())),
        ("user_id", Value::S(user_id.into())),
    ]);
    // The connection first: an index without it finds nothing to sync.
    app.db.put(&app.config.table, record, None).await?;
    app.db.put(&app.config.table, pointer, None).await?;
    Ok(Link {
        provider: provider.into(),
        state: LinkState::Connected,
        connected_at: now,
        last_sync_at: None,
    })
}

/// The user's connections, by provider.
pub async fn list(app: &AppContext, user_id: &str) -> Result<Vec<Link>, ApiError> {
    let query = Query::partition(keys::device_links(user_id))
        .sort_key(SortKey::BeginsWith(keys::LINK_SK.into()));
    let page = app.db.query(&app.config.table, query).await?;
    Ok(page.items.iter().filter_map(link_of).collect())
}

/// The token to revoke at the provider (the refresh token, which ends the grant, else
/// the access token), or `None` when the user has no connection to `provider`.
pub async fn revocable_token(
    app: &AppContext,
    user_id: &str,
    provider: &str,
) -> Result<Option<Zeroizing<String>>, ApiError> {
    let key = keys::device_link(user_id, provider);
    let Some(found) = app.db.get(&app.config.table, &key).await? else {
        return Ok(None);
    };
    let token = match phi::open(app, &found, REFRESH_TOKEN).await? {
        Some(token) => Some(token),
        None => phi::open(app, &found, ACCESS_TOKEN).await?,
    };
    Ok(Some(Zeroizing::new(token.unwrap_or_default())))
}

/// Deletes our copy of the connection and its tokens (stored observations stay), and
/// its user index while it still names this patient.
pub async fn remove(app: &AppContext, user_id: &str, provider: &str) -> Result<(), ApiError> {
    let key: Key = keys::device_link(user_id, provider);
    let old = app.db.delete(&app.config.table, &key, None).await?;
    let provider_user = old
        .as_ref()
        .and_then(|old| old.get(PROVIDER_USER_ID))
        .and_then(Value::as_str)
        .filter(|id| is_provider_user_id(id));
    if let Some(provider_user) = provider_user {
        let index = keys::device_user(provider, provider_user);
        let ours = Condition::Equals("user_id".into(), Value::S(user_id.into()));
        match app.db.delete(&app.config.table, &index, Some(ours)).await {
            Ok(_) => {}
            Err(err) if err.is_condition_failed() => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The patient connected with the provider's user id, if any (one `GetItem`).
pub async fn patient_of(
    app: &AppContext,
    provider: &str,
    provider_user_id: &str,
) -> Result<Option<String>, ApiError> {
    if !is_provider_user_id(provider_user_id) {
        return Ok(None);
    }
    let index = keys::device_user(provider, provider_user_id);
    let found = app.db.get(&app.config.table, &index).await?;
    Ok(found
        .as_ref()
        .and_then(|item| item.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// Records a finished sync of the connection (`last_sync_at`); a connection deleted
/// meanwhile is not brought back.
pub async fn mark_synced(
    app: &AppContext,
    user_id: &str,
    provider: &str,
    at: Timestamp,
) -> Result<(), ApiError> {
    let key = keys::device_link(user_id, provider);
    let update = Update::new().set("last_sync_at", at.to_string());
    match app
        .db
        .update(&app.config.table, &key, update, Some(Condition::Exists))
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if err.is_condition_failed() => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The user has no connection to the provider.
    #[error("no connection")]
    NotConnected,
    /// The provider refused the refresh token: the connection is `needs_reauth`.
    #[error("the connection needs the patient to connect again")]
    NeedsReauth,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<crate::ports::db::DbError> for TokenError {
    fn from(err: crate::ports::db::DbError) -> Self {
        Self::Api(err.into())
    }
}

impl From<crate::crypto::CryptoError> for TokenError {
    fn from(err: crate::crypto::CryptoError) -> Self {
        Self::Api(err.into())
    }
}

/// A usable access token of the user's connection to `provider`. One that expires
/// within [`REFRESH_MARGIN_SECS`] is refreshed by one refresher at a time: a caller
/// takes the lease with a conditional update (the version it read, and no live lease);
/// the others wait and re-read, and use the token the winner stored, so a race of any
/// number of callers makes one refresh call. `invalid_grant` moves the connection to
/// `needs_reauth`.
pub async fn access_token(
    app: &AppContext,
    health: &dyn HealthApi,
    user_id: &str,
    provider: &str,
) -> Result<Zeroizing<String>, TokenError> {
    let key = keys::device_link(user_id, provider);
    let table = &app.config.table;
    for _ in 0..WAITS {
        let Some(found) = app.db.get(table, &key).await? else {
            return Err(TokenError::NotConnected);
        };
        let number = |name: &str| found.get(name).and_then(Value::as_i64).unwrap_or(0);
        if found.get("state").and_then(Value::as_str) != Some(LinkState::Connected.as_str()) {
            return Err(TokenError::NeedsReauth);
        }
        let now = app.clock.now().timestamp();
        if number("token_expires_at") - now > REFRESH_MARGIN_SECS {
            let token = phi::open(app, &found, ACCESS_TOKEN)
                .await?
                .unwrap_or_default();
            return Ok(Zeroizing::new(token));
        }
        let version = number(VERSION);
        if number(LEASE_UNTIL) <= now {
            let lease = app.new_id();
            let claim = Update::new()
                .set(LEASE_UNTIL, now + LEASE_SECS)
                .set(LEASE_ID, lease.as_str())
                .set(VERSION, version + 1);
            let held = Condition::And(vec![
                Condition::Equals(VERSION.into(), Value::N(version)),
                Condition::LessThan(LEASE_UNTIL.into(), now + 1),
            ]);
            match app.db.update(table, &key, claim, Some(held)).await {
                Ok(_) => return refresh_held(app, health, &key, &found, &lease).await,
                Err(err) if err.is_condition_failed() => {}
                Err(err) => return Err(err.into()),
            }
        }
        // Another caller refreshes: wait for its token.
        tokio::time::sleep(WAIT).await;
    }
    Err(TokenError::Api(ApiError::unavailable(
        "health_api",
        ApiError::internal("the token refresh did not finish in time"),
    )))
}

/// Refreshes under the lease `lease` and stores the new access token (releasing the
/// lease), or marks the connection `needs_reauth` on `invalid_grant`.
async fn refresh_held(
    app: &AppContext,
    health: &dyn HealthApi,
    key: &Key,
    found: &Item,
    lease: &str,
) -> Result<Zeroizing<String>, TokenError> {
    let table = &app.config.table;
    let mine = Condition::Equals(LEASE_ID.into(), Value::S(lease.into()));
    let refresh = phi::open(app, found, REFRESH_TOKEN)
        .await?
        .unwrap_or_default();
    match health.refresh(&refresh).await {
        Ok(tokens) => {
            let access = phi::seal(app, key, ACCESS_TOKEN, &tokens.access_token).await?;
            let mut update = Update::new()
                .set(ACCESS_TOKEN, access)
                .set(
                    "token_expires_at",
                    app.clock.now().timestamp() + tokens.expires_in,
                )
                .set(LEASE_UNTIL, 0)
                .remove(LEASE_ID)
                .add(VERSION, 1);
            if let Some(rotated) = &tokens.refresh_token {
                update = update.set(
                    REFRESH_TOKEN,
                    phi::seal(app, key, REFRESH_TOKEN, rotated).await?,
                );
            }
            app.db.update(table, key, update, Some(mine)).await?;
            Ok(tokens.access_token)
        }
        Err(HealthApiError::InvalidGrant) => {
            let update = Update::new()
                .set("state", LinkState::NeedsReauth.as_str())
                .set(LEASE_UNTIL, 0)
                .remove(LEASE_ID)
                .remove(ACCESS_TOKEN)
                .remove(REFRESH_TOKEN)
                .add(VERSION, 1);
            app.db.update(table, key, update, Some(mine)).await?;
            Err(TokenError::NeedsReauth)
        }
        Err(err) => {
            // Nothing decided: the lease is freed for the next caller.
            let free = Update::new().set(LEASE_UNTIL, 0).remove(LEASE_ID);
            app.db.update(table, key, free, Some(mine)).await?;
            Err(TokenError::Api(err.into()))
        }
    }
}
