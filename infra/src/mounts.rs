//! Which function serves what: the local equivalent of the routes, integrations and
//! event sources in `template.yaml` (a test keeps the two in step).

use crate::workers::{Consumer, Schedule};
use shared::http::{ApiRequest, ApiResponse, Router};
use shared::ports::recording::as_function;
use shared::ws::WsRouter;
use shared::App;

/// A REST function and its route table.
pub struct HttpMount {
    /// The function's name in `template.yaml` without the `Function` suffix, lowercase.
    pub function: &'static str,
    pub router: Router,
}

impl HttpMount {
    /// Dispatches a request to the function, its accesses attributed to it
    /// (`shared::ports::recording::as_function`), on a cold instance of `app`
    /// (`AppContext::new_instance`: the same ports, fresh caches), so every request
    /// takes the cold-start path a Lambda instance of this function takes first.
    pub async fn dispatch(&self, app: &App, req: ApiRequest) -> ApiResponse {
        let instance = app.new_instance();
        as_function(self.function, self.router.dispatch(&instance, req)).await
    }
}

/// REST functions, in the order the gateway tries them.
pub fn http_functions() -> Vec<HttpMount> {
    vec![
        HttpMount {
            function: "health",
            router: docare_health::router(),
        },
        HttpMount {
            function: "auth",
            router: docare_auth::router(),
        },
        HttpMount {
            function: "users",
            router: docare_users::router(),
        },
        HttpMount {
            function: "emergency",
            router: docare_emergency::router(),
        },
        HttpMount {
            function: "audit",
            router: docare_audit::router(),
        },
        HttpMount {
            function: "appointments",
            router: docare_appointments::router(),
        },
        HttpMount {
            function: "medications",
            router: docare_medications::router(),
        },
        HttpMount {
            function: "messages",
            router: docare_messages::router(),
        },
        HttpMount {
            function: "billing",
            router: docare_billing::router(),
        },
        HttpMount {
            function: "stripe-webhook",
            router: docare_stripe_webhook::router(),
        },
        HttpMount {
            function: "notes",
            router: docare_notes::router(),
        },
        HttpMount {
            function: "video",
            router: docare_video::router(),
        },
        HttpMount {
            function: "twilio-webhook",
            router: docare_twilio_webhook::router(),
        },
        HttpMount {
            function: "documents",
            router: docare_documents::router(),
        },
        HttpMount {
            function: "devices",
            router: docare_devices::router(),
        },
    ]
}

/// Lambda's timeout of the REST functions (the template's `Globals` `Timeout`, which
/// none overrides): the local gateway answers as API Gateway does when a function runs
/// longer.
pub const FUNCTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The S3 event notifications of the buckets (bucket → queue), as the template's
/// `NotificationConfiguration`: an object created in the quarantine bucket (a presigned
/// upload) is announced on the scans queue.
pub fn bucket_notifications(app: &App) -> Vec<(String, String)> {
    vec![(
        app.config.quarantine_bucket.clone(),
        app.config.queues.scans.clone(),
    )]
}

/// The function behind the HTTP API's `$default` route (requests no route matched).
pub const DEFAULT_ROUTE_FUNCTION: &str = "health";

/// The name of the function behind the WebSocket API (`RealtimeFunction`).
pub const WEBSOCKET_FUNCTION: &str = "realtime";

/// The function behind the WebSocket API.
pub fn websocket_function() -> WsRouter {
    docare_realtime::router()
}

/// SQS consumers (queue → function), as the template's event source mappings.
pub fn consumers(app: &App) -> Vec<Consumer> {
    let mut consumers = vec![
        Consumer::new(
            "notify",
            app.config.queues.notifications.clone(),
            docare_notify::handle,
        ),
        Consumer::new(
            "remind",
            app.config.queues.reminders.clone(),
            docare_reminders::deliver,
        ),
        Consumer::new(
            "scanner",
            app.config.queues.scans.clone(),
            docare_documents::scanner::handle,
        ),
    ];
    // The device sync queue exists where it is configured (the local stack's always).
    if let Some(queue) = &app.config.queues.device_sync {
        consumers.push(Consumer::new(
            "device-sync",
            queue.clone(),
            docare_devices::sync::handle,
        ));
    }
    consumers
}

/// The rule of the audit-anchor schedule (`AuditAnchorFunction`'s `rate(5 minutes)`).
pub const ANCHOR_RULE: &str = "audit-anchor";

/// The rate of the reminder scheduler's rule (`rate(1 minute)` in the template).
pub const REMINDERS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Scheduled functions, as the template's schedule events: the audit anchor every 5
/// minutes, the reminder scheduler every minute. Each names its function:
/// `Schedule::new(rule, every, handler).of("<function>")`.
pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule::new(
            ANCHOR_RULE,
            shared::audit::ANCHOR_INTERVAL,
            docare_audit_guard::anchor,
        )
        .of("audit-anchor"),
        Schedule::new("reminders", REMINDERS_EVERY, docare_reminders::scheduled).of("reminders"),
    ]
}
