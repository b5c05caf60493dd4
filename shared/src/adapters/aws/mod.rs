//! The ports on AWS: one adapter per service, each wrapping an SDK client built on its
//! first use (`LazyClient`), so a cold start pays only for the configuration. On Lambda
//! the SDK configuration is read from the variables Lambda sets (`lambda_sdk_config`),
//! without the provider chains; `AWS_ENDPOINT_URL` points every client at an emulator.

mod dynamodb;
pub mod google_health;
mod kms;
mod lazy;
mod messenger;
mod push;
mod s3;
mod secrets;
mod sqs;
pub mod stripe;
pub mod twilio;

pub use dynamodb::DynamoDb;
pub use google_health::GoogleHealthApi;
pub use kms::Kms;
pub use lazy::{LazyClient, LazyHttp};
pub use messenger::SesSns;
pub use push::ManagementApi;
pub use s3::S3Blobs;
pub use secrets::SecretsManager;
pub use sqs::Sqs;
pub use stripe::StripeApi;
pub use twilio::TwilioApi;

use super::links::{self, Links};
use super::unavailable::Unavailable;
use crate::app::Ports;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ports::{BlobStore, HealthApi, Messenger, Payments, Push, Queue, Video};
use crate::{App, AppContext};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use std::sync::Arc;

/// The SDK configuration of the operations tools: on Lambda, what its environment
/// states ([`lambda_sdk_config`]); elsewhere (a workstation) the SDK's default chains
/// (profiles, SSO, instance metadata…). Functions use [`lambda_sdk_config`] alone
/// (`shared::lambda`), so the chains are not linked into them.
pub async fn sdk_config() -> SdkConfig {
    match lambda_sdk_config(|name| std::env::var(name).ok()) {
        Some(config) => config,
        None => aws_config::defaults(BehaviorVersion::latest()).load().await,
    }
}

/// The variables [`lambda_sdk_config`] needs (`AWS_SESSION_TOKEN` and
/// `AWS_ENDPOINT_URL` are read when set).
pub const LAMBDA_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

/// The name the credentials from Lambda's environment are given (in SDK debug output).
pub const LAMBDA_CREDENTIALS: &str = "lambda-environment";

/// The SDK configuration from the variables Lambda sets in every function's environment:
/// the region (`AWS_REGION`) and the execution role's credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), plus `AWS_ENDPOINT_URL` when set (an
/// emulator). Nothing is read from files or the network, and no provider chain is
/// built: the chain would find the same credentials in the same variables, and they stay
/// valid for the life of the execution environment (Lambda does not rotate them under a
/// running process). `None` off Lambda (`AWS_LAMBDA_FUNCTION_NAME` unset) or when one of
/// the variables is missing: a function then stops at init naming them, a tool falls
/// back to the default chain ([`sdk_config`]).
pub fn lambda_sdk_config(env: impl Fn(&str) -> Option<String>) -> Option<SdkConfig> {
    let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    var("AWS_LAMBDA_FUNCTION_NAME")?;
    let region = var("AWS_REGION")?;
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID")?,
        var("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        LAMBDA_CREDENTIALS,
    );
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        // One HTTPS client (one connection pool, one TLS configuration whose trust
        // roots are loaded on the first request) for every SDK client.
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https(),
        );
    if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    Some(builder.build())
}

/// S3 needs path-style addressing behind an emulator's single host name.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The push port on the Management API at `ws_endpoint` (the stage's
/// `https://{api}.execute-api.{region}.amazonaws.com/{stage}`; in tests, the local
/// gateway, which answers the same API).
pub fn management_api(sdk: &SdkConfig, ws_endpoint: &str) -> ManagementApi {
    ManagementApi::new(management_client(sdk, ws_endpoint))
}

fn management_client(sdk: &SdkConfig, ws_endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let push_config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
        .endpoint_url(ws_endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(push_config)
}

/// A client built from `sdk` by `make` on first use.
fn on_first_use<C: Clone + Send + Sync + 'static>(
    sdk: &SdkConfig,
    make: fn(&SdkConfig) -> C,
) -> LazyClient<C> {
    let sdk = sdk.clone();
    LazyClient::on_first_use(move || make(&sdk))
}

/// Every port on its AWS adapter; each SDK client is built on its first use. The
/// operations tools and the tests; a function links only its own services
/// ([`build_app_linking`]).
pub fn build_app(config: Config, sdk: &SdkConfig) -> App {
    build_app_linking::<{ links::ALL }>(config, sdk)
}

/// The ports of the services in `LINKS` on their AWS adapters (each SDK client built on
/// its first use) and every other one [`Unavailable::NotLinked`]. `LINKS` is a constant
/// of the binary, so the adapters it leaves out, and their SDK crates, are not compiled
/// in (`adapters::links`).
pub fn build_app_linking<const LINKS: Links>(config: Config, sdk: &SdkConfig) -> App {
    // Each `LINKS & bit` is a constant of this instance: the branch not taken, and what
    // only it uses, is not compiled in.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Secrets Manager serves the webhook secrets and the three HTTPS APIs' keys.
    let secrets: Arc<dyn crate::ports::SecretStore> =
        if links::effective(LINKS) & links::SECRETS != 0 {
            Arc::new(SecretsManager::new(on_first_use(
                sdk,
                aws_sdk_secretsmanager::Client::new,
            )))
        } else {
            Arc::new(Unavailable::NotLinked("secrets"))
        };
    let recorded_secrets = || -> Arc<dyn crate::ports::SecretStore> {
        Arc::new(crate::ports::recording::RecordedSecrets(secrets.clone()))
    };
    let stage = config.stage.as_str();
    let blobs: Arc<dyn BlobStore> = if LINKS & links::BLOBS != 0 {
        Arc::new(S3Blobs::new(on_first_use(sdk, s3_client)))
    } else {
        Arc::new(Unavailable::NotLinked("blobs"))
    };
    let queue: Arc<dyn Queue> = if LINKS & links::QUEUE != 0 {
        Arc::new(Sqs::new(on_first_use(sdk, aws_sdk_sqs::Client::new)))
    } else {
        Arc::new(Unavailable::NotLinked("queue"))
    };
    let push: Arc<dyn Push> = if LINKS & links::PUSH != 0 {
        let (sdk, ws_endpoint) = (sdk.clone(), config.ws_endpoint.clone());
        Arc::new(ManagementApi::new(LazyClient::on_first_use(move || {
            management_client(&sdk, &ws_endpoint)
        })))
    } else {
        Arc::new(Unavailable::NotLinked("push"))
    };
    let messenger: Arc<dyn Messenger> = if LINKS & links::MESSENGER != 0 {
        Arc::new(SesSns::new(
            on_first_use(sdk, aws_sdk_sesv2::Client::new),
            on_first_use(sdk, aws_sdk_sns::Client::new),
            config.mail_from.clone(),
        ))
    } else {
        Arc::new(Unavailable::NotLinked("messenger"))
    };
    let payments: Arc<dyn Payments> = if LINKS & links::PAYMENTS != 0 {
        Arc::new(StripeApi::new(
            stripe::STRIPE_API,
            recorded_secrets(),
            clock.clone(),
            stage,
        ))
    } else {
        Arc::new(Unavailable::NotLinked("payments"))
    };
    let video: Arc<dyn Video> = if LINKS & links::VIDEO != 0 {
        Arc::new(TwilioApi::new(
            twilio::TWILIO_VIDEO_API,
            recorded_secrets(),
            clock.clone(),
            stage,
        ))
    } else {
        Arc::new(Unavailable::NotLinked("video"))
    };
    let health_api: Arc<dyn HealthApi> = if LINKS & links::HEALTH_API != 0 {
        Arc::new(GoogleHealthApi::new(
            google_health::GOOGLE_OAUTH_API,
            recorded_secrets(),
            clock.clone(),
            stage,
        ))
    } else {
        Arc::new(Unavailable::NotLinked("health_api"))
    };
    let ports = Ports {
        db: Arc::new(DynamoDb::new(
            on_first_use(sdk, aws_sdk_dynamodb::Client::new),
            clock.clone(),
        )),
        keys: Arc::new(Kms::new(on_first_use(sdk, aws_sdk_kms::Client::new))),
        blobs,
        queue,
        push,
        messenger,
        secrets,
        payments,
        video,
        health_api,
        scanner: crate::app::configured_scanner(&config),
        clock,
    };
    Arc::new(AppContext::new(config, ports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::BlobStore;
    use aws_config::{Region, SdkConfig};
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
    use std::time::Duration;

    fn sdk(endpoint: Option<&str>) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKID", "SECRET", None, None, "test",
            )));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }

    async fn presigned_url(sdk: &SdkConfig) -> String {
        S3Blobs::new(s3_client(sdk))
            .presign_get("docs", "u1/f", Duration::from_secs(60))
            .await
            .map(|r| r.url)
            .unwrap_or_else(|e| panic!("presign: {e}"))
    }

    // Virtual-hosted style on AWS (path style is deprecated there); path style only
    // behind an emulator, which serves every bucket from one host.
    #[tokio::test]
    async fn path_style_only_behind_an_endpoint_override() {
        let aws = presigned_url(&sdk(None)).await;
        assert!(
            aws.starts_with("https://docs.s3.us-east-1.amazonaws.com/u1/f?"),
            "{aws}"
        );
        let emulator = presigned_url(&sdk(Some("http://127.0.0.1:4566"))).await;
        assert!(
            emulator.starts_with("http://127.0.0.1:4566/docs/u1/f?"),
            "{emulator}"
        );
    }

    fn lambda_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const LAMBDA: [(&str, &str); 5] = [
        ("AWS_LAMBDA_FUNCTION_NAME", "docare-dev-health"),
        ("AWS_REGION", "eu-west-3"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
    ];

    #[tokio::test]
    async fn on_lambda_the_configuration_is_what_its_environment_states() {
        use aws_sdk_dynamodb::config::ProvideCredentials;
        let sdk = lambda_sdk_config(lambda_env(&LAMBDA))
            .unwrap_or_else(|| panic!("a Lambda environment gives a configuration"));
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert_eq!(sdk.endpoint_url(), None);
        assert!(
            sdk.http_client().is_some(),
            "one HTTPS client for every SDK client"
        );
        let credentials = sdk
            .credentials_provider()
            .unwrap_or_else(|| panic!("credentials"))
            .provide_credentials()
            .await
            .unwrap_or_else(|e| panic!("credentials: {e}"));
        assert_eq!(credentials.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("token"));
        assert_eq!(credentials.expiry(), None);

        let mut with_endpoint = LAMBDA.to_vec();
        with_endpoint.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"));
        let sdk = lambda_sdk_config(lambda_env(&with_endpoint))
            .unwrap_or_else(|| panic!("a Lambda environment gives a configuration"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
    }

    #[test]
    fn off_lambda_or_without_a_variable_the_default_chain_is_used() {
        // Off Lambda: an operator's shell may have region and keys, but profiles and
        // SSO must still work there.
        assert!(lambda_sdk_config(lambda_env(&LAMBDA[1..])).is_none());
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let pairs: Vec<_> = LAMBDA
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            assert!(lambda_sdk_config(lambda_env(&pairs)).is_none(), "{missing}");
            let blank: Vec<_> = LAMBDA
                .iter()
                .map(|&(k, v)| (k, if k == missing { " " } else { v }))
                .collect();
            assert!(
                lambda_sdk_config(lambda_env(&blank)).is_none(),
                "blank {missing}"
            );
        }
        // The session token is optional (long-term keys in an emulator).
        let pairs: Vec<_> = LAMBDA
            .iter()
            .copied()
            .filter(|(k, _)| *k != "AWS_SESSION_TOKEN")
            .collect();
        assert!(lambda_sdk_config(lambda_env(&pairs)).is_some());
    }

    #[test]
    fn build_app_makes_no_call() {
        let config = crate::adapters::local::local_config("https://ws.example/prod", "info");
        let app = build_app(config, &sdk(None));
        assert_eq!(app.config.ws_endpoint, "https://ws.example/prod");
    }
}
