//! Starting and stopping the whole local stack.

use crate::http_gateway::{self, HttpGateway};
use crate::mounts;
use crate::ws_gateway::{self, WsGateway, WsLimits};
use anyhow::Context;
use shared::adapters::local::{self, LocalParts};
use shared::clock::{Clock, SystemClock};
use shared::config::LocalSettings;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running local stack.
pub struct Stack {
    /// The demo-accounts file, when this start created it (first start on a folder).
    pub seeded: Option<std::path::PathBuf>,
    pub http_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub parts: LocalParts,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stack {
    /// Binds both ports, opens the data folder and starts servers and workers.
    pub async fn start(settings: &LocalSettings) -> anyhow::Result<Stack> {
        Self::start_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(
        settings: &LocalSettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Stack> {
        Self::start_with(settings, clock, WsLimits::API_GATEWAY).await
    }

    /// A stack whose WebSocket gateway keeps other limits than API Gateway's (tests of
    /// the idle and lifetime closes, which would otherwise take minutes).
    pub async fn start_with(
        settings: &LocalSettings,
        clock: Arc<dyn Clock>,
        limits: WsLimits,
    ) -> anyhow::Result<Stack> {
        let http_listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.http_port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{} (HTTP)", settings.http_port))?;
        let ws_listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.ws_port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on 127.0.0.1:{} (WebSocket)",
                    settings.ws_port
                )
            })?;
        let http_addr = http_listener.local_addr()?;
        let ws_addr = ws_listener.local_addr()?;
        let http_url = format!("http://{http_addr}");
        let ws_url = format!("ws://{ws_addr}");

        let mut config = local::local_config(&ws_url, &settings.log_filter);
        config.ip_limit_factor = settings.ip_limit_factor();
        config.allowed_origins = settings.allowed_origins.clone();
        config.access_token_secs = settings.access_token_secs;
        let parts = local::open(&settings.data_dir, config, &http_url, clock)
            .map_err(|e| anyhow::anyhow!("{e} (is another local stack using this folder?)"))?;
        let app = parts.app.clone();
        // The fake Stripe delivers its signed events to the local webhook route.
        parts
            .stripe
            .deliver_to(&format!("{http_url}/api/v1/webhooks/stripe"));
        // The fake Twilio posts its signed status callbacks to the rooms' callback URL,
        // the local webhook route.
        parts.twilio.deliver(true);
        // The fake Google posts its signed deliveries to the local webhook route.
        parts
            .google
            .deliver_to(&format!("{http_url}{}", docare_devices::ingest::PATH));
        let seeded = crate::accounts::seed_demo(&app, &settings.data_dir)
            .await
            .context("cannot seed the demo accounts")?;
        let (shutdown, watcher) = watch::channel(false);
        let mut tasks = Vec::new();

        let http = Arc::new(HttpGateway {
            app: app.clone(),
            mounts: mounts::http_functions()
                .into_iter()
                .map(|mount| (mount, app.new_instance()))
                .collect(),
            blobs: parts.blobs.clone(),
            stripe: parts.stripe.clone(),
            google: parts.google.clone(),
            domain: http_addr.to_string(),
            notifications: mounts::bucket_notifications(&app),
            queue: Arc::new(parts.queue.clone()),
        });
        let router = axum::Router::new()
            .fallback(http_gateway::handle)
            .with_state(http);
        tasks.push(serve(http_listener, router, watcher.clone()));

        let ws = Arc::new(WsGateway {
            app: app.new_instance(),
            router: mounts::websocket_function(),
            connections: parts.gateway.clone(),
            domain: ws_addr.to_string(),
            limits,
        });
        tasks.push(serve(ws_listener, ws_gateway::routes(ws), watcher.clone()));

        let queue: Arc<dyn shared::ports::Queue> = Arc::new(parts.queue.clone());
        for consumer in mounts::consumers(&app) {
            tasks.push(tokio::spawn(consumer.run(
                app.new_instance(),
                queue.clone(),
                watcher.clone(),
            )));
        }
        for schedule in mounts::schedules() {
            tasks.push(tokio::spawn(
                schedule.run(app.new_instance(), watcher.clone()),
            ));
        }
        Ok(Stack {
            seeded,
            http_addr,
            ws_addr,
            parts,
            shutdown,
            tasks,
        })
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// Stops accepting work, lets in-flight requests and batches finish, and returns
    /// once every task has ended. Every write was already committed durably.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // A last anchoring run, so a stopped stack's chains are anchored up to their
        // last event (`docare-audit-verify --data-dir` checks them against the anchors).
        for schedule in mounts::schedules() {
            if schedule.rule == mounts::ANCHOR_RULE {
                schedule.fire(&self.parts.app).await;
            }
        }
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "server stopped with an error");
        }
    })
}
