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
    ]
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
    vec![Consumer::new(
        "notify",
        app.config.queues.notifications.clone(),
        docare_notify::handle,
    )]
}

/// Scheduled functions (none yet: the reminders scheduler arrives with reminders). Each
/// names its function: `Schedule::new(rule, every, handler).of("<function>")`.
pub fn schedules() -> Vec<Schedule> {
    Vec::new()
}
