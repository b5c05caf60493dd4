//! Entry points for the AWS host: each function's `main` is one call into this module.
//! Init reads configuration and builds SDK clients (no network call); a bad or missing
//! variable stops the process with one line that names it.

use crate::adapters::aws;
use crate::config::Config;
use crate::http::Router;
use crate::telemetry::{self, LogFormat};
use crate::ws::WsRouter;
use crate::App;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use std::future::Future;

/// Builds the app from the environment, or exits with a one-line message.
async fn boot() -> App {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    };
    telemetry::init(LogFormat::Json, &config.log_filter);
    let sdk = aws::sdk_config().await;
    aws::build_app(config, &sdk)
}

/// Serves a REST function's routes (API Gateway HTTP API, payload 2.0).
pub async fn run_http(router: Router) -> Result<(), lambda_runtime::Error> {
    let app = boot().await;
    lambda_http::run(lambda_http::service_fn(move |req| {
        let (app, router) = (app.clone(), router.clone());
        async move { Ok::<_, std::convert::Infallible>(router.handle_lambda(&app, req).await) }
    }))
    .await
}

/// Serves a WebSocket function's routes (`$connect`, `$disconnect`, `$default`, actions).
pub async fn run_ws(router: WsRouter) -> Result<(), lambda_runtime::Error> {
    let app = boot().await;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest>| {
            let (app, router) = (app.clone(), router.clone());
            async move { Ok::<_, std::convert::Infallible>(router.dispatch(&app, event.payload).await) }
        },
    ))
    .await
}

/// Serves an SQS consumer that reports partial batch failures.
pub async fn run_sqs<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(App, SqsEvent) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = SqsBatchResponse> + Send,
{
    let app = boot().await;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| {
            let (app, handler) = (app.clone(), handler.clone());
            async move { Ok::<_, std::convert::Infallible>(handler(app, event.payload).await) }
        },
    ))
    .await
}
