//! The e-mails the auth function sends (through the notification queue). They carry
//! single-use tokens or codes and nothing else about the account.

use shared::notifications::{enqueue, Notification};
use shared::{ApiError, AppContext};

pub async fn verification(app: &AppContext, to: &str, token: &str) -> Result<(), ApiError> {
    send(
        app,
        to,
        "Confirm your DoCare e-mail address",
        format!(
            "Welcome to DoCare.\n\nYour verification token: {token}\n\nIt expires in 24 hours."
        ),
    )
    .await
}

pub async fn already_registered(app: &AppContext, to: &str) -> Result<(), ApiError> {
    send(
        app,
        to,
        "DoCare sign-up attempt",
        "Someone tried to sign up with this address, which already has a DoCare account. \
         If it was you, log in or reset your password."
            .to_string(),
    )
    .await
}

pub async fn password_reset(app: &AppContext, to: &str, token: &str) -> Result<(), ApiError> {
    send(
        app,
        to,
        "Reset your DoCare password",
        format!("Your password reset token: {token}\n\nIt expires in 30 minutes. If you did not ask for it, ignore this message."),
    )
    .await
}

pub async fn login_code(app: &AppContext, to: &str, code: &str) -> Result<(), ApiError> {
    send(
        app,
        to,
        "Your DoCare sign-in code",
        format!("Your sign-in code: {code}\n\nIt expires in 5 minutes."),
    )
    .await
}

pub async fn account_locked(app: &AppContext, to: &str) -> Result<(), ApiError> {
    send(
        app,
        to,
        "Your DoCare account was locked",
        "After repeated failed sign-in attempts your account is locked for 30 minutes. \
         If this was not you, reset your password."
            .to_string(),
    )
    .await
}

/// Tells the owner about a change to how the account signs in
/// ([`shared::notifications::security_change`]).
pub async fn security_change(app: &AppContext, to: &str, what: &str) -> Result<(), ApiError> {
    shared::notifications::security_change(app, to, what).await
}

pub async fn login_code_sms(app: &AppContext, to: &str, code: &str) -> Result<(), ApiError> {
    let id = format!("auth:{}", app.new_id());
    let body = format!("Your DoCare sign-in code: {code}. It expires in 5 minutes.");
    enqueue(app, Notification::sms(id, to, body)).await
}

async fn send(app: &AppContext, to: &str, subject: &str, body: String) -> Result<(), ApiError> {
    let id = format!("auth:{}", app.new_id());
    enqueue(app, Notification::email(id, to, subject, body)).await
}
