//! The ports on AWS: one adapter per service, each wrapping an SDK client built once
//! per cold start. Building clients makes no network call; credentials are resolved on
//! first use. `AWS_ENDPOINT_URL` (honoured by the SDK) points them at an emulator.

mod dynamodb;
pub mod google_health;
mod kms;
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
pub use messenger::SesSns;
pub use push::ManagementApi;
pub use s3::S3Blobs;
pub use secrets::SecretsManager;
pub use sqs::Sqs;
pub use stripe::StripeApi;
pub use twilio::TwilioApi;

use crate::app::Ports;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::{App, AppContext};
use aws_config::BehaviorVersion;
use std::sync::Arc;

/// The SDK configuration from the Lambda environment (region, credentials chain).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// S3 needs path-style addressing behind an emulator's single host name.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The push port on the Management API at `ws_endpoint` (the stage's
/// `https://{api}.execute-api.{region}.amazonaws.com/{stage}`; in tests, the local
/// gateway, which answers the same API).
pub fn management_api(sdk: &aws_config::SdkConfig, ws_endpoint: &str) -> ManagementApi {
    let push_config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
        .endpoint_url(ws_endpoint)
        .build();
    ManagementApi::new(aws_sdk_apigatewaymanagement::Client::from_conf(push_config))
}

/// Every port on its AWS adapter.
pub fn build_app(config: Config, sdk: &aws_config::SdkConfig) -> App {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secrets: Arc<dyn crate::ports::SecretStore> = Arc::new(SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(sdk),
    ));
    let ports = Ports {
        db: Arc::new(DynamoDb::new(
            aws_sdk_dynamodb::Client::new(sdk),
            clock.clone(),
        )),
        blobs: Arc::new(S3Blobs::new(s3_client(sdk))),
        keys: Arc::new(Kms::new(aws_sdk_kms::Client::new(sdk))),
        queue: Arc::new(Sqs::new(aws_sdk_sqs::Client::new(sdk))),
        push: Arc::new(management_api(sdk, &config.ws_endpoint)),
        messenger: Arc::new(SesSns::new(
            aws_sdk_sesv2::Client::new(sdk),
            aws_sdk_sns::Client::new(sdk),
            config.mail_from.clone(),
        )),
        secrets: secrets.clone(),
        payments: Arc::new(
            StripeApi::new(
                stripe::STRIPE_API,
                Arc::new(crate::ports::recording::RecordedSecrets(secrets.clone())),
                clock.clone(),
                config.stage.as_str(),
            )
            .unwrap_or_else(|e| panic!("the HTTP client for Stripe: {e}")),
        ),
        video: Arc::new(
            TwilioApi::new(
                twilio::TWILIO_VIDEO_API,
                Arc::new(crate::ports::recording::RecordedSecrets(secrets.clone())),
                clock.clone(),
                config.stage.as_str(),
            )
            .unwrap_or_else(|e| panic!("the HTTP client for Twilio: {e}")),
        ),
        health_api: Arc::new(
            GoogleHealthApi::new(
                google_health::GOOGLE_OAUTH_API,
                Arc::new(crate::ports::recording::RecordedSecrets(secrets)),
                clock.clone(),
                config.stage.as_str(),
            )
            .unwrap_or_else(|e| panic!("the HTTP client for Google: {e}")),
        ),
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

    #[test]
    fn build_app_makes_no_call() {
        let config = crate::adapters::local::local_config("https://ws.example/prod", "info");
        let app = build_app(config, &sdk(None));
        assert_eq!(app.config.ws_endpoint, "https://ws.example/prod");
    }
}
