//! Device connections (`docs/devices.md`): a patient connects their Google Health
//! account with OAuth 2.0 authorization code and PKCE (S256). `POST
//! /api/v1/devices/connect/{provider}` starts a flow (random `state` and verifier, stored
//! single-use for 10 minutes, the verifier sealed) and answers the provider's
//! authorization URL; the provider redirects the browser to `GET
//! /api/v1/devices/{provider}/callback?state=&code=` (no bearer token: the state names
//! the flow and is redeemed once by a conditional delete), which exchanges the code and
//! verifier for tokens and stores them sealed. `GET /api/v1/devices` lists the caller's
//! connections; `DELETE /api/v1/devices/{provider}` revokes the grant at the provider and
//! deletes our copy of the tokens (stored observations stay).

use serde::Serialize;
use shared::audit::{Action, Actor, AuditEvent, Outcome};
use shared::auth::{audit_event, Role};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::ports::health_api::GOOGLE_HEALTH;
use shared::store::devices::{self as store, Link, RESOURCE};
use shared::{guard, ApiError, App, AppContext};

/// The callback path of a provider (the OAuth redirect URI under the public API URL):
/// `/api/v1/devices/<provider>/callback`.
pub fn callback_path(provider: &str) -> String {
    format!("/api/v1/devices/{provider}/callback")
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "DeviceAuthorization")]
pub struct AuthorizationAnswer {
    /// Where to send the patient's browser for consent (valid 10 minutes, once).
    pub authorization_url: String,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "DeviceConnection")]
pub struct LinkView {
    /// `google_health`.
    pub provider: String,
    /// `connected`, or `needs_reauth` once the provider refused our refresh token.
    pub state: String,
    pub connected_at: String,
    pub last_sync_at: Option<String>,
}

impl From<Link> for LinkView {
    fn from(link: Link) -> Self {
        Self {
            provider: link.provider,
            state: link.state.as_str().into(),
            connected_at: link.connected_at.to_string(),
            last_sync_at: link.last_sync_at.map(|t| t.to_string()),
        }
    }
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "DeviceConnections")]
pub struct LinkList {
    pub items: Vec<LinkView>,
}

/// The provider of the path: only `google_health` is known (anything else: 404).
fn provider(req: &ApiRequest) -> Result<&'static str, ApiError> {
    match req.param("provider")? {
        GOOGLE_HEALTH => Ok(GOOGLE_HEALTH),
        _ => Err(ApiError::NotFound),
    }
}

/// The OAuth redirect URI of a provider: under the public API URL, as registered with
/// the provider (never the request's `Host`).
fn redirect_uri(app: &AppContext, provider: &str) -> Result<String, ApiError> {
    match &app.config.video.public_api_url {
        Some(base) => Ok(format!("{base}{}", callback_path(provider))),
        None => {
            tracing::error!("DOCARE_PUBLIC_API_URL is not set: no device connections");
            Err(ApiError::unavailable(
                "health_api",
                ApiError::internal("the public API URL is not configured"),
            ))
        }
    }
}

/// `POST /api/v1/devices/connect/{provider}`.
pub async fn connect(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    // An unknown provider names nothing, for every caller (404 before the role check).
    let provider = provider(&req)?;
    if principal.role != Role::Patient {
        let target = (RESOURCE, guard::ANY);
        return Err(guard::refuse(&app, &req, &principal, target, ApiError::Forbidden).await);
    }
    let redirect = redirect_uri(&app, provider)?;
    let started = Box::pin(store::start_flow(&app, &principal.user_id, provider)).await?;
    let authorization_url = app
        .health_api
        .authorization_url(&redirect, &started.state, &started.challenge)
        .await?;
    ApiResponse::ok(&AuthorizationAnswer { authorization_url })
}

/// `GET /api/v1/devices/{provider}/callback?state=&code=` (no bearer token).
pub async fn callback(app: App, req: ApiRequest) -> HandlerResult {
    let provider = provider(&req)?;
    let state = req.query_param("state").unwrap_or_default();
    // Redeemed first, whatever else the request says: a state works once.
    let Some(flow) = Box::pin(store::redeem_flow(&app, state)).await? else {
        return Err(ApiError::validation(
            "state: unknown, expired or already used; connect again",
        ));
    };
    if flow.provider != provider {
        return Err(ApiError::validation("state: issued for another provider"));
    }
    if req.query_param("error").is_some() {
        return Err(ApiError::validation("the authorization was not granted"));
    }
    let code = req
        .query_param("code")
        .filter(|c| !c.is_empty() && c.len() <= 512)
        .ok_or_else(|| ApiError::validation("code: required"))?;
    let redirect = redirect_uri(&app, provider)?;
    let tokens = app
        .health_api
        .exchange_code(code, &flow.verifier, &redirect)
        .await?;
    // The provider's id of the patient: what its webhook deliveries name.
    let provider_user_id = app.health_api.user_id(&tokens.access_token).await?;
    let actor = Actor::user(&flow.user_id, Role::Patient.as_str());
    let event = AuditEvent::from_request(&req, Action::Create, Outcome::Success)
        .actor(actor)
        .resource(RESOURCE, &flow.user_id);
    Box::pin(app.audit.record(event)).await?;
    let link = Box::pin(store::connect(
        &app,
        &flow.user_id,
        provider,
        &provider_user_id,
        &tokens,
    ))
    .await?;
    ApiResponse::ok(&LinkView::from(link))
}

/// `GET /api/v1/devices`.
pub async fn list(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let items = Box::pin(store::list(&app, &principal.user_id))
        .await?
        .into_iter()
        .map(LinkView::from)
        .collect();
    ApiResponse::ok(&LinkList { items })
}

/// `DELETE /api/v1/devices/{provider}`.
pub async fn disconnect(app: App, req: ApiRequest) -> HandlerResult {
    let principal = guard::signed_in(&app, &req).await?;
    let provider = provider(&req)?;
    let Some(token) = Box::pin(store::revocable_token(&app, &principal.user_id, provider)).await?
    else {
        return Err(ApiError::NotFound);
    };
    // Revoked at the provider first: if it cannot be reached, our copy stays and the
    // patient may retry (a 503).
    if !token.is_empty() {
        app.health_api.revoke(&token).await?;
    }
    let event = audit_event(&req, &principal, Action::Delete, Outcome::Success)
        .resource(RESOURCE, &principal.user_id);
    Box::pin(app.audit.record(event)).await?;
    Box::pin(store::remove(&app, &principal.user_id, provider)).await?;
    Ok(ApiResponse::no_content())
}
