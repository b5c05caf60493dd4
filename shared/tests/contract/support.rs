//! What every suite shares: the macro that instantiates each case for both adapters,
//! and access to the AWS emulator (from `shared::testing::aws`).

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

// The emulator's access is the one test harness's (`shared::testing::aws`).
pub use shared::testing::aws::{
    config as aws, create_table, endpoint as aws_endpoint, sdk_config, unique,
};
