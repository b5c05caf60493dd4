//! Embedded adapters for the local stack and tests: everything lives in one data folder
//! and survives restarts; nothing needs an AWS account, Docker or a network.
//!
//! ```text
//! <data>/store.redb        tables and queues (redb, crash-safe)
//! <data>/keyring.json      local master and signing keys (0600)
//! <data>/blob-signing.key  presigned-URL signing key (0600)
//! <data>/blobs/<bucket>/   objects
//! <data>/outbox/           one JSON file per e-mail or SMS
//! <data>/secrets.json      outside services' secrets (0600): the fake Stripe's whsec_…,
//!                          the fake Twilio's account SID, API key and auth token,
//!                          the fake Google's OAuth client and webhook secret
//! ```

mod blobs;
mod files;
mod gateway;
mod google_health;
mod keyring;
mod outbox;
mod queue;
mod secrets;
mod store;
mod stripe;
mod twilio;

pub use blobs::{LocalBlobs, PresignedGrant, PRESIGN_PATH};
pub use gateway::{LocalGateway, Outbound};
pub use google_health::{
    FakeGoogleHealth, GoogleDelivery, FAKE_GOOGLE_AUTHORIZE_PATH, FAKE_HEALTH_USER, FAKE_PAGE_SIZE,
    FAKE_TOKEN_SECS,
};
pub use keyring::LocalKeyring;
pub use outbox::Outbox;
pub use queue::{LocalQueue, QueueSpec};
pub use secrets::{SecretsFile, SECRETS_FILE};
pub use store::LocalStore;
pub use stripe::{intent_object, refund_object, Delivery, FakeStripe};
pub use twilio::{Callback, FakeTwilio, FakeTwilioAccount};

use crate::app::Ports;
use crate::clock::Clock;
use crate::config::{Config, Queues, Stage};
use crate::{App, AppContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Receives before a message moves to its dead-letter queue (as in `template.yaml`).
pub const MAX_RECEIVES: u32 = 5;
/// The local KMS key every data key is wrapped under.
pub const LOCAL_KEY_ID: &str = "local/docare";
/// The local signing key of access tokens (`ECC_NIST_P256`, in the key ring).
pub const LOCAL_SIGNING_KEY_ID: &str = "local/docare-signing";
/// The local signing key of audit anchors.
pub const LOCAL_ANCHOR_KEY_ID: &str = "local/docare-audit-anchor";

/// The configuration the local stack runs with: same shape as on AWS, local names.
pub fn local_config(ws_endpoint: &str, log_filter: &str) -> Config {
    Config {
        stage: Stage::Local,
        table: "docare".into(),
        audit_table: "docare-audit".into(),
        quarantine_bucket: "docare-quarantine".into(),
        documents_bucket: "docare-documents".into(),
        audit_archive_bucket: "docare-audit-archive".into(),
        kms_key_id: LOCAL_KEY_ID.into(),
        signing_key_id: LOCAL_SIGNING_KEY_ID.into(),
        previous_signing_key_ids: Vec::new(),
        audit_anchor_key_id: LOCAL_ANCHOR_KEY_ID.into(),
        queues: Queues {
            scans: "scans".into(),
            reminders: "reminders".into(),
            notifications: "notifications".into(),
            device_sync: Some("device-sync".into()),
        },
        ws_endpoint: ws_endpoint.into(),
        mail_from: "no-reply@docare.localhost".into(),
        log_filter: log_filter.into(),
        ip_limit_factor: 1,
        patient_sessions: crate::domain::session::PATIENT_DEFAULT,
        sms_countries: crate::config::SmsCountries::default(),
        allowed_origins: crate::config::AllowedOrigins::default(),
        access_token_secs: crate::domain::session::ACCESS_TOKEN_SECS,
        video: crate::config::VideoSettings::default(),
        document_max_bytes: crate::domain::document::DEFAULT_MAX_BYTES,
        clamd_address: None,
    }
}

/// Why the local data folder could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the local data folder {path}: {reason}")]
pub struct LocalError {
    path: PathBuf,
    reason: String,
}

/// The app and the local handles the stack needs besides the ports.
pub struct LocalParts {
    pub app: App,
    pub store: LocalStore,
    pub blobs: Arc<LocalBlobs>,
    pub queue: LocalQueue,
    pub gateway: Arc<LocalGateway>,
    pub keyring: Arc<LocalKeyring>,
    pub outbox_dir: PathBuf,
    /// The offline Stripe the payments port uses locally.
    pub stripe: Arc<FakeStripe>,
    /// The offline Twilio the video port uses locally.
    pub twilio: Arc<FakeTwilio>,
    /// The offline Google (OAuth) the health API port uses locally.
    pub google: Arc<FakeGoogleHealth>,
}

/// Opens (creating on first run) the data folder and builds every local adapter.
pub fn open(
    data_dir: &Path,
    mut config: Config,
    http_base_url: &str,
    clock: Arc<dyn Clock>,
) -> Result<LocalParts, LocalError> {
    // Twilio calls the local webhook route at the local API's own URL.
    if config.video.public_api_url.is_none() {
        config.video.public_api_url = Some(http_base_url.trim_end_matches('/').to_string());
    }
    let fail = |path: &Path, reason: String| LocalError {
        path: path.to_path_buf(),
        reason,
    };
    files::private_dir(data_dir).map_err(|e| fail(data_dir, e.to_string()))?;
    let store_path = data_dir.join("store.redb");
    let store = LocalStore::open(&store_path, clock.clone())
        .map_err(|e| fail(&store_path, crate::error::cause_chain(&e)))?;

    let keyring_path = data_dir.join("keyring.json");
    let keyring = LocalKeyring::open(&keyring_path)
        .map_err(|e| fail(&keyring_path, crate::error::cause_chain(&e)))?;
    keyring
        .create_key(&config.kms_key_id)
        .map_err(|e| fail(&keyring_path, e.to_string()))?;
    for signing in [&config.signing_key_id, &config.audit_anchor_key_id] {
        keyring
            .create_signing_key(signing)
            .map_err(|e| fail(&keyring_path, e.to_string()))?;
    }

    let signing_path = data_dir.join("blob-signing.key");
    let signing_key =
        files::secret_file(&signing_path).map_err(|e| fail(&signing_path, e.to_string()))?;
    let blobs_root = data_dir.join("blobs");
    let blobs = LocalBlobs::new(
        blobs_root.clone(),
        http_base_url.to_string(),
        signing_key,
        clock.clone(),
    );
    for bucket in [
        &config.quarantine_bucket,
        &config.documents_bucket,
        &config.audit_archive_bucket,
    ] {
        blobs
            .create_bucket(bucket)
            .map_err(|e| fail(&blobs_root, e.to_string()))?;
    }

    let queue = LocalQueue::open(&store);
    let device_sync = config.queues.device_sync.clone().unwrap_or_default();
    for name in [
        &config.queues.scans,
        &config.queues.reminders,
        &config.queues.notifications,
        &device_sync,
    ]
    .into_iter()
    .filter(|name| !name.is_empty())
    {
        let dead_letter = format!("{name}-dlq");
        queue.declare(&dead_letter, QueueSpec::default());
        queue.declare(
            name,
            QueueSpec {
                dead_letter: Some(dead_letter),
                max_receives: MAX_RECEIVES,
            },
        );
    }

    let outbox_dir = data_dir.join("outbox");
    files::private_dir(&outbox_dir).map_err(|e| fail(&outbox_dir, e.to_string()))?;

    // The fake Stripe's webhook secret: made on first run, kept in `secrets.json` where
    // the webhook function reads it through the secrets port (and any client can sign).
    let secrets_path = data_dir.join(SECRETS_FILE);
    let secrets = SecretsFile::new(secrets_path.clone());
    let secret_name = crate::payments::webhook_secret_name(config.stage.as_str());
    let webhook_secret = match secrets.value(&secret_name) {
        Ok(Some(value)) => value,
        Ok(None) => {
            let value = crate::payments::new_webhook_secret();
            secrets
                .set(&secret_name, &value)
                .map_err(|e| fail(&secrets_path, e.to_string()))?;
            value
        }
        Err(e) => return Err(fail(&secrets_path, e.to_string())),
    };
    // And its test API key, read (recorded) on every call as the Stripe adapter reads its own.
    let key_name = crate::payments::api_key_secret(config.stage.as_str());
    match secrets.value(&key_name) {
        Ok(Some(_)) => {}
        Ok(None) => secrets
            .set(&key_name, "sk_test_docare_local_fake")
            .map_err(|e| fail(&secrets_path, e.to_string()))?,
        Err(e) => return Err(fail(&secrets_path, e.to_string())),
    }
    let recorded: Arc<dyn crate::ports::SecretStore> = Arc::new(
        crate::ports::recording::RecordedSecrets(Arc::new(SecretsFile::new(secrets_path.clone()))),
    );
    let stripe = Arc::new(
        FakeStripe::new(webhook_secret, clock.clone())
            .with_api_key_from(recorded.clone(), key_name),
    );
    // The fake Google's OAuth client, read through the secret store as on AWS.
    let client_name = crate::ports::health_api::oauth_client_secret_name(config.stage.as_str());
    match secrets.value(&client_name) {
        Ok(Some(_)) => {}
        Ok(None) => {
            let client = serde_json::json!({
                "client_id": "docare-local.apps.googleusercontent.com",
                "client_secret": crate::auth::secrets::token(),
            });
            secrets
                .set(&client_name, &client.to_string())
                .map_err(|e| fail(&secrets_path, e.to_string()))?
        }
        Err(e) => return Err(fail(&secrets_path, e.to_string())),
    }
    // The subscriber's webhook secret Google sends on every delivery.
    let hook_name = crate::ports::health_api::webhook_secret_name(config.stage.as_str());
    match secrets.value(&hook_name) {
        Ok(Some(_)) => {}
        Ok(None) => secrets
            .set(&hook_name, &crate::auth::secrets::token())
            .map_err(|e| fail(&secrets_path, e.to_string()))?,
        Err(e) => return Err(fail(&secrets_path, e.to_string())),
    }
    let google = Arc::new(
        FakeGoogleHealth::new(http_base_url)
            .with_client_from(recorded.clone(), client_name)
            .with_webhook_secret_from(recorded.clone(), hook_name),
    );
    let twilio = Arc::new(
        fake_twilio(&secrets, &config, recorded, clock.clone())
            .map_err(|e| fail(&secrets_path, e.to_string()))?,
    );

    let gateway = Arc::new(LocalGateway::new());
    let blobs = Arc::new(blobs);
    let keyring = Arc::new(keyring);
    let scanner = crate::app::configured_scanner(&config);
    let app = Arc::new(AppContext::new(
        config,
        Ports {
            db: Arc::new(store.clone()),
            blobs: blobs.clone(),
            keys: keyring.clone(),
            queue: Arc::new(queue.clone()),
            push: gateway.clone(),
            messenger: Arc::new(Outbox::new(outbox_dir.clone())),
            secrets: Arc::new(secrets),
            payments: stripe.clone(),
            video: twilio.clone(),
            health_api: google.clone(),
            scanner,
            clock,
        },
    ));
    Ok(LocalParts {
        app,
        store,
        blobs,
        queue,
        gateway,
        keyring,
        outbox_dir,
        stripe,
        twilio,
        google,
    })
}

/// The fake Twilio's credentials (`account_sid`, `api_key_sid`, `api_key_secret`,
/// `auth_token`): made on first run and kept in `secrets.json` under
/// `docare/<stage>/twilio/…`, where the functions read them through the secrets port
/// and any client can sign or verify as Twilio would.
fn fake_twilio(
    secrets: &SecretsFile,
    config: &Config,
    recorded: Arc<dyn crate::ports::SecretStore>,
    clock: Arc<dyn Clock>,
) -> Result<FakeTwilio, crate::ports::secrets::SecretError> {
    let stage = config.stage.as_str();
    let names = [
        crate::video::account_sid_name(stage),
        crate::video::api_key_sid_name(stage),
        crate::video::api_key_secret_name(stage),
        crate::video::auth_token_name(stage),
    ];
    let fresh = crate::video::new_fake_credentials();
    let mut values = Vec::with_capacity(4);
    for (name, fresh) in names.iter().zip(fresh) {
        let value = match secrets.value(name)? {
            Some(value) => value,
            None => {
                secrets.set(name, &fresh)?;
                fresh
            }
        };
        values.push(value);
    }
    let [account_sid, key_sid, key_secret, auth_token]: [String; 4] = values
        .try_into()
        .map_err(|_| crate::ports::secrets::SecretError::Invalid("four credentials".into()))?;
    let [_, key_sid_name, key_secret_name, _] = names;
    Ok(FakeTwilio::new(
        FakeTwilioAccount {
            account_sid,
            auth_token,
        },
        clock,
    )
    .with_api_key_from(
        recorded,
        (key_sid_name, key_secret_name),
        (key_sid, key_secret),
    ))
}
