//! What every suite shares: the macro that instantiates each case for both adapters,
//! and access to the AWS emulator.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

/// Instantiates each case (an `async fn(&Fixture)`) once per adapter:
/// `local::<case>` with the fixture from `local = <fn>`, `aws::<case>` with the one from
/// `aws = <fn>` (which returns `None` when the AWS half is knowingly skipped).
/// `local_only` cases exercise something the emulator cannot produce.
macro_rules! contract_suite {
    (
        local = $local:ident, aws = $aws:ident;
        both: [$($case:ident),* $(,)?];
        local_only: [$($local_case:ident),* $(,)?] $(;)?
    ) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = super::$local().await;
                    super::$case(&fixture).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $local_case() {
                    let fixture = super::$local().await;
                    super::$local_case(&fixture).await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(fixture) = super::$aws().await else {
                        return;
                    };
                    super::$case(&fixture).await;
                }
            )*
        }
    };
}

pub const ENV_ENDPOINT: &str = "DOCARE_TEST_AWS_ENDPOINT";
pub const ENV_SKIP: &str = "DOCARE_TEST_SKIP_AWS";

/// The emulator's URL; `None` (after saying so) when the AWS half is skipped knowingly.
/// Panics when neither is set: a silently skipped suite proves nothing.
pub fn aws_endpoint() -> Option<String> {
    match std::env::var(ENV_ENDPOINT) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_string()),
        _ if std::env::var(ENV_SKIP).as_deref() == Ok("1") => {
            eprintln!("skipped: {ENV_SKIP}=1 (AWS adapter not tested)");
            None
        }
        _ => panic!(
            "AWS emulator not running: run scripts/test, or set {ENV_SKIP}=1 to skip knowingly \
             ({ENV_ENDPOINT} is unset)"
        ),
    }
}

/// SDK configuration for the emulator: fixed region and dummy credentials, nothing read
/// from the process environment.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "docare-contract-tests",
        )))
        .build()
}

/// The emulator's SDK configuration, or `None` when skipped.
pub fn aws() -> Option<SdkConfig> {
    aws_endpoint().map(|endpoint| sdk_config(&endpoint))
}

/// A name no other test uses (lower case: valid for buckets, tables and queues).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}
