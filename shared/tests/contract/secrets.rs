//! The secrets port: the current value of a named secret, `None` for an unknown name,
//! a malformed name refused before any call, and a rotation seen on the next read.

use crate::support;
use shared::adapters::aws::SecretsManager;
use shared::adapters::local::{SecretsFile, SECRETS_FILE};
use shared::ports::secrets::{SecretError, SecretStore};
use std::sync::Arc;

pub struct SecretsFixture {
    store: Arc<dyn SecretStore>,
    /// Stores or replaces a secret the way an operator (or a rotation) would.
    set: Box<dyn Fn(String, String) -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
    prefix: String,
    _dir: Option<tempfile::TempDir>,
}

async fn local_fixture() -> SecretsFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(SECRETS_FILE);
    let writer = Arc::new(SecretsFile::new(path.clone()));
    SecretsFixture {
        store: Arc::new(SecretsFile::new(path)),
        set: Box::new(move |name, value| {
            let writer = writer.clone();
            Box::pin(async move { writer.set(&name, &value).expect("set") })
        }),
        prefix: "docare/local".into(),
        _dir: Some(dir),
    }
}

async fn aws_fixture() -> Option<SecretsFixture> {
    let sdk = support::aws()?;
    let admin = aws_sdk_secretsmanager::Client::new(&sdk);
    Some(SecretsFixture {
        store: Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
            &sdk,
        ))),
        set: Box::new(move |name, value| {
            let admin = admin.clone();
            Box::pin(async move {
                let created = admin
                    .create_secret()
                    .name(&name)
                    .secret_string(&value)
                    .send()
                    .await;
                if created.is_err() {
                    admin
                        .put_secret_value()
                        .secret_id(&name)
                        .secret_string(&value)
                        .send()
                        .await
                        .expect("put secret value");
                }
            })
        }),
        prefix: support::unique("docare/test"),
        _dir: None,
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        a_stored_secret_reads_back_and_an_unknown_one_is_none,
        a_rotation_is_seen_on_the_next_read,
        a_malformed_name_is_refused,
    ];
    local_only: [];
}

async fn a_stored_secret_reads_back_and_an_unknown_one_is_none(fx: &SecretsFixture) {
    let name = format!("{}/stripe/api_key", fx.prefix);
    (fx.set)(name.clone(), "sk_test_123".into()).await;
    let value = fx.store.get(&name).await.expect("get");
    assert_eq!(value.as_deref().map(String::as_str), Some("sk_test_123"));
    let unknown = format!("{}/nothing/here", fx.prefix);
    assert!(fx.store.get(&unknown).await.expect("get").is_none());
}

async fn a_rotation_is_seen_on_the_next_read(fx: &SecretsFixture) {
    let name = format!("{}/twilio/auth_token", fx.prefix);
    (fx.set)(name.clone(), "first".into()).await;
    (fx.set)(name.clone(), "second".into()).await;
    let value = fx.store.get(&name).await.expect("get");
    assert_eq!(value.as_deref().map(String::as_str), Some("second"));
}

async fn a_malformed_name_is_refused(fx: &SecretsFixture) {
    for bad in ["", "spaces are not allowed", "quote\"d"] {
        assert!(
            matches!(fx.store.get(bad).await, Err(SecretError::Invalid(_))),
            "{bad:?}"
        );
    }
}
