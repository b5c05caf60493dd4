//! Creating staff accounts outside the API: the first admin of a deployment, and the
//! demo accounts the local stack seeds on its first start.
//!
//! Passwords are random and shown once (locally, written to a 0600 file in the data
//! folder). Demo staff accounts are enrolled in TOTP so they can read PHI at once; their
//! secrets are in the same file, to add to an authenticator app.

use serde::Serialize;
use shared::auth::accounts::{self, seal, CreateError, NewAccount, Status};
use shared::auth::{care, passwords, secrets, totp, Role};
use shared::{ApiError, AppContext};
use std::path::{Path, PathBuf};

/// The seed file in the local data folder.
pub const SEED_FILE: &str = "seed-accounts.json";

/// An account created here, with what its owner needs to sign in.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub password: String,
    /// Base32 TOTP secret when the account was enrolled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("an account with this e-mail already exists")]
    Exists,
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates an active account with a random password (and TOTP when `with_totp`).
pub async fn create(
    app: &AppContext,
    email: &str,
    full_name: &str,
    role: Role,
    with_totp: bool,
) -> Result<Created, AccountsError> {
    let email = shared::auth::input::email(email)?;
    let full_name = shared::auth::input::full_name(full_name)?;
    let password = secrets::token()[..20].to_string();
    let hash = passwords::hash_blocking(password.clone()).await?;
    let account = match accounts::create(
        app,
        NewAccount {
            email,
            full_name,
            password_hash: hash,
            role,
            status: Status::Active,
        },
    )
    .await
    {
        Ok(account) => account,
        Err(CreateError::EmailTaken) => return Err(AccountsError::Exists),
        Err(CreateError::Api(err)) => return Err(err.into()),
    };
    let mut totp_secret = None;
    if with_totp {
        let encoded = totp::base32(&totp::new_secret());
        let sealed = seal(app, &account.id, "totp_secret", &encoded).await?;
        accounts::change(
            app,
            &account.id,
            accounts::AccountChange::new().enable_totp(sealed),
        )
        .await?;
        totp_secret = Some(encoded);
    }
    Ok(Created {
        id: account.id,
        email: email.to_string(),
        role,
        password,
        totp_secret,
    })
}

/// On a fresh data folder: an admin, a provider and a patient (in a care relationship),
/// written to [`SEED_FILE`]. Returns the file when it was just created.
pub async fn seed_demo(
    app: &AppContext,
    data_dir: &Path,
) -> Result<Option<PathBuf>, AccountsError> {
    let path = data_dir.join(SEED_FILE);
    if path.exists() {
        return Ok(None);
    }
    let admin = create(app, "admin@docare.local", "Demo Admin", Role::Admin, true).await?;
    let provider = create(
        app,
        "provider@docare.local",
        "Demo Provider",
        Role::Provider,
        true,
    )
    .await?;
    let patient = create(
        app,
        "patient@docare.local",
        "Demo Patient",
        Role::Patient,
        false,
    )
    .await?;
    care::start(app, &provider.id, &patient.id, "admin", None).await?;
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "note": "Demo accounts of this local stack. Staff accounts have TOTP on: add totp_secret to an authenticator app.",
        "accounts": [admin, provider, patient],
    }))
    .map_err(|e| AccountsError::Api(ApiError::internal(e)))?;
    write_private(&path, &json).map_err(|source| AccountsError::File {
        path: path.clone(),
        source,
    })?;
    Ok(Some(path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}
