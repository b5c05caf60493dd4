//! `GET`/`PATCH /api/v1/users/me`. The e-mail and name are opened with the integrity
//! check audited (`INTEGRITY_FAILURE` on `account/<id>`, then 500).

use crate::audit;
use serde::Deserialize;
use shared::audit::{Action, Outcome};
use shared::auth::accounts::{self, seal};
use shared::auth::{audit_event, authenticate};
use shared::http::{ApiRequest, ApiResponse, HandlerResult};
use shared::{ApiError, App};

pub async fn get(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let view = account.view(&app, &req, &principal).await?;
    audit(
        &app,
        &req,
        &principal,
        Action::View,
        ("account", &account.id),
        Outcome::Success,
    )
    .await?;
    ApiResponse::ok(&view)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    full_name: Option<String>,
}

/// Changes the caller's own display fields (e-mail and role change elsewhere).
pub async fn patch(app: App, req: ApiRequest) -> HandlerResult {
    let principal = authenticate(&app, &req).await?;
    let body: PatchBody = req.json()?;
    let Some(full_name) = body.full_name else {
        return Err(ApiError::validation("nothing to change: send `full_name`"));
    };
    let full_name = full_name.trim();
    let len = full_name.chars().count();
    if len == 0 || len > 200 || full_name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "full_name: must be 1 to 200 printable characters",
        ));
    }
    let account = accounts::get(&app, &principal.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let sealed = seal(&app, &principal.user_id, "full_name", full_name).await?;
    let event = audit_event(&req, &principal, Action::Update, Outcome::Success)
        .resource("account", &account.id);
    let account = accounts::change_audited(
        &app,
        &account,
        accounts::AccountChange::new().sealed("full_name", sealed),
        event,
    )
    .await?;
    ApiResponse::ok(&account.view(&app, &req, &principal).await?)
}
