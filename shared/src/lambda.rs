//! Entry points for the AWS host: each function's `main` is one call into this module,
//! `Linking::<{ LINKS }>.run_http(router)` and the like, where `LINKS` names the outside
//! services the function uses (`adapters::links`): only those are compiled into it.
//! Init reads configuration and builds the app (no network call: SDK clients are built
//! on first use); a bad or missing variable stops the process with one line naming it.

use crate::adapters::aws;
use crate::adapters::links::Links;
use crate::config::Config;
use crate::http::Router;
use crate::telemetry::{self, LogFormat};
use crate::ws::WsRouter;
use crate::App;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use std::future::Future;

/// Builds the app from the environment, or exits with a one-line message.
fn boot<const LINKS: Links>() -> App {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    };
    telemetry::init(LogFormat::Json, &config.log_filter);
    // Only what Lambda's environment states: the SDK's provider chains (profiles, SSO,
    // STS, instance metadata) are for the operations tools, and a function that does
    // not call them does not link them.
    let Some(sdk) = aws::lambda_sdk_config(|name| std::env::var(name).ok()) else {
        eprintln!(
            "configuration error: not a Lambda environment ({} are needed)",
            aws::LAMBDA_VARIABLES.join(", ")
        );
        std::process::exit(1);
    };
    aws::build_app_linking::<LINKS>(config, &sdk)
}

/// Runs a function on a single-threaded runtime. Lambda hands an instance one event at a
/// time, so worker threads would only add their start to every cold start: with them
/// `health`'s init was 1.27x to 1.30x the empty `lambda_runtime` function's (which
/// uses `#[tokio::main]`), without them 1.00x to 1.03x, in back-to-back runs (README,
/// Benchmarks). Requests still wait on DynamoDB, KMS and the rest concurrently, and the
/// CPU-heavy steps (password hashing) run on the blocking pool.
fn serve<F: Future<Output = Result<(), lambda_runtime::Error>>>(
    function: F,
) -> Result<(), lambda_runtime::Error> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("configuration error: no async runtime: {err}");
            std::process::exit(1);
        }
    };
    runtime.block_on(function)
}

/// A function's entry points, with the services it links (`adapters::links`), from a
/// plain `fn main`: `Linking::<{ docare_health::LINKS }>.run_http(docare_health::router())`.
#[derive(Debug, Clone, Copy)]
pub struct Linking<const LINKS: Links>;

impl<const LINKS: Links> Linking<LINKS> {
    /// Serves a REST function's routes (API Gateway HTTP API, payload 2.0).
    pub fn run_http(self, router: Router) -> Result<(), lambda_runtime::Error> {
        serve(async move {
            let app = boot::<LINKS>();
            lambda_http::run(lambda_http::service_fn(move |req| {
                let (app, router) = (app.clone(), router.clone());
                async move { Ok::<_, std::convert::Infallible>(router.handle_lambda(&app, req).await) }
            }))
            .await
        })
    }

    /// Serves a WebSocket function's routes (`$connect`, `$disconnect`, `$default`, actions).
    pub fn run_ws(self, router: WsRouter) -> Result<(), lambda_runtime::Error> {
        serve(async move {
            let app = boot::<LINKS>();
            lambda_runtime::run(lambda_runtime::service_fn(
                move |event: LambdaEvent<
                    aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
                >| {
                    let (app, router) = (app.clone(), router.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            router.dispatch(&app, event.payload).await,
                        )
                    }
                },
            ))
            .await
        })
    }

    /// Serves an SQS consumer that reports partial batch failures.
    pub fn run_sqs<F, Fut>(self, handler: F) -> Result<(), lambda_runtime::Error>
    where
        F: Fn(App, SqsEvent) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = SqsBatchResponse> + Send,
    {
        serve(async move {
            let app = boot::<LINKS>();
            lambda_runtime::run(lambda_runtime::service_fn(
                move |event: LambdaEvent<SqsEvent>| {
                    let (app, handler) = (app.clone(), handler.clone());
                    async move { Ok::<_, std::convert::Infallible>(handler(app, event.payload).await) }
                },
            ))
            .await
        })
    }

    /// Serves a consumer of a queue fed by S3 event notifications (S3 → SQS → function):
    /// records are unwrapped into objects, `s3:TestEvent` is acknowledged, and failures
    /// are reported per message.
    pub fn run_s3_queue<F, Fut>(self, handler: F) -> Result<(), lambda_runtime::Error>
    where
        F: Fn(App, crate::worker::S3Object) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<(), crate::worker::WorkError>> + Send,
    {
        self.run_sqs(move |app: App, event: SqsEvent| {
            let handler = handler.clone();
            async move {
                crate::worker::process_s3_batch(event, |object| handler(app.clone(), object)).await
            }
        })
    }

    /// Serves a scheduled function (EventBridge rule). An error fails the invocation, so
    /// Lambda's asynchronous retries and the function's failure destination see it;
    /// scheduled work must therefore be idempotent and catch up on what a failed run left.
    pub fn run_schedule<F, Fut>(self, handler: F) -> Result<(), lambda_runtime::Error>
    where
        F: Fn(App, aws_lambda_events::eventbridge::EventBridgeEvent) -> Fut
            + Send
            + Sync
            + Clone
            + 'static,
        Fut: Future<Output = Result<(), crate::ApiError>> + Send,
    {
        serve(async move {
            let app = boot::<LINKS>();
            lambda_runtime::run(lambda_runtime::service_fn(
                move |event: LambdaEvent<aws_lambda_events::eventbridge::EventBridgeEvent>| {
                    let (app, handler) = (app.clone(), handler.clone());
                    async move {
                        handler(app, event.payload).await.map_err(|err| {
                            tracing::error!(cause = %crate::error::cause_chain(&err), "scheduled run failed");
                            lambda_runtime::Error::from(err.to_string())
                        })
                    }
                },
            ))
            .await
        })
    }

    /// Serves a consumer of a DynamoDB stream (the audit table's). An error fails the batch,
    /// which Lambda retries and then sends to the mapping's failure destination.
    pub fn run_dynamodb_stream<F, Fut>(self, handler: F) -> Result<(), lambda_runtime::Error>
    where
        F: Fn(App, aws_lambda_events::dynamodb::Event) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<(), crate::ApiError>> + Send,
    {
        serve(async move {
            let app = boot::<LINKS>();
            lambda_runtime::run(lambda_runtime::service_fn(
                move |event: LambdaEvent<aws_lambda_events::dynamodb::Event>| {
                    let (app, handler) = (app.clone(), handler.clone());
                    async move {
                        handler(app, event.payload).await.map_err(|err| {
                            tracing::error!(cause = %crate::error::cause_chain(&err), "stream batch failed");
                            lambda_runtime::Error::from(err.to_string())
                        })
                    }
                },
            ))
            .await
        })
    }
}
