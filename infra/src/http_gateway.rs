//! The local HTTP API: matches the route like API Gateway does (an explicit route, else
//! `$default`), builds the payload 2.0 event, and invokes the function in-process. It
//! also serves the local blob store's presigned URLs and, under [`FAKE_STRIPE_PATH`],
//! the offline fake Stripe's client-side confirmation of a payment intent (what
//! Stripe.js does in test mode), and at [`FAKE_GOOGLE_AUTHORIZE_PATH`] the offline fake
//! Google's consent page (it consents at once and redirects to the callback): local
//! only, outside `/api/v1`, no function and no template route behind them.

use crate::events::{http_api_event, s3_object_created};
use crate::mounts::{HttpMount, DEFAULT_ROUTE_FUNCTION, FUNCTION_TIMEOUT};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use shared::adapters::local::{
    intent_object, FakeGoogleHealth, FakeStripe, LocalBlobs, FAKE_GOOGLE_AUTHORIZE_PATH,
    PRESIGN_PATH,
};
use shared::http::cors;
use shared::ports::payments::PaymentError;
use shared::ports::queue::OutgoingMessage;
use shared::ports::{BlobStore, Queue};
use shared::App;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Lambda's synchronous invocation payload limit: API Gateway cannot deliver more.
pub const MAX_EVENT_BODY: usize = 6 * 1024 * 1024;
/// Lambda's synchronous response payload limit. A binary body travels base64-encoded in
/// the response, so a binary body over 4.5 MiB already exceeds it (hence documents'
/// ranged reads of at most 4 MiB).
pub const MAX_RESPONSE_PAYLOAD: usize = 6 * 1024 * 1024;
/// Presigned requests go to S3, not through API Gateway or a Lambda: S3's single PUT
/// takes up to 5 GB. The local store holds an upload in memory, so it takes up to this.
pub const MAX_PRESIGNED_PUT: usize = 64 * 1024 * 1024;
/// The fake Stripe's own routes on the local stack (never on AWS):
/// `POST /_fake/stripe/payment_intents/{id}/confirm` with `client_secret` (and optionally
/// `payment_method`: `pm_card_visa`, `pm_card_chargeDeclined`), form-encoded as Stripe.js
/// sends it or JSON.
pub const FAKE_STRIPE_PATH: &str = "/_fake/stripe/";
/// Largest body the fake Stripe's routes read.
const MAX_FAKE_STRIPE_BODY: usize = 16 * 1024;
/// API Gateway's HTTP API waits at most this long for an integration, whatever the
/// function's own timeout.
pub const INTEGRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The size of a function's response body as Lambda carries it (binary bodies are
/// base64-encoded in the response payload).
pub fn response_payload_len(body: &lambda_http::Body) -> usize {
    match body {
        lambda_http::Body::Empty => 0,
        lambda_http::Body::Text(text) => text.len(),
        lambda_http::Body::Binary(bytes) => bytes.len().div_ceil(3) * 4,
        _ => 0,
    }
}

pub struct HttpGateway {
    pub app: App,
    /// Each function with its own instance of the app (`AppContext::new_instance`), as
    /// each has its own Lambda processes.
    pub mounts: Vec<(HttpMount, App)>,
    pub blobs: Arc<LocalBlobs>,
    /// The offline Stripe behind the payments port (its client-side routes).
    pub stripe: Arc<FakeStripe>,
    /// The offline Google behind the health API port (its consent page).
    pub google: Arc<FakeGoogleHealth>,
    pub domain: String,
    /// S3's event notifications: an object created in a bucket is announced on its queue
    /// (`mounts::bucket_notifications`), sent as S3 sends them (not as a function).
    pub notifications: Vec<(String, String)>,
    pub queue: Arc<dyn Queue>,
}

/// API Gateway's own answers (not a function's) have this shape.
fn gateway_answer(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub async fn handle(
    State(gateway): State<Arc<HttpGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let origins = &gateway.app.config.allowed_origins;
    if parts.uri.path().starts_with(PRESIGN_PATH) {
        // S3's side of the stack: not bound by API Gateway's or Lambda's limits, with
        // the quarantine bucket's CORS rule (a page uploads to its presigned URL).
        if cors::is_preflight(&parts.method, &parts.headers) {
            return preflight(&cors::UPLOADS, origins, &parts.headers);
        }
        let mut response = match axum::body::to_bytes(body, MAX_PRESIGNED_PUT).await {
            Ok(body) => serve_presigned(&gateway, &parts, body).await,
            Err(_) => s3_error(StatusCode::PAYLOAD_TOO_LARGE, "EntityTooLarge"),
        };
        cors::apply(
            &cors::UPLOADS,
            origins,
            &parts.headers,
            response.headers_mut(),
        );
        return response;
    }
    if parts.uri.path().starts_with(FAKE_STRIPE_PATH) {
        // Stripe's side of the stack, as a browser reaches Stripe in test mode.
        let body = match axum::body::to_bytes(body, MAX_FAKE_STRIPE_BODY).await {
            Ok(body) => body,
            Err(_) => {
                return stripe_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    "request too large",
                )
            }
        };
        return serve_fake_stripe(&gateway.stripe, &parts, &body).await;
    }
    if parts.uri.path() == FAKE_GOOGLE_AUTHORIZE_PATH {
        // Google's side of the stack: the patient consents at once.
        return serve_fake_google(&gateway, &parts).await;
    }
    // API Gateway's CORS: it answers preflights itself and sets the CORS headers of
    // every answer, its own included (`shared::http::cors`, the template's
    // `CorsConfiguration`).
    if cors::is_preflight(&parts.method, &parts.headers) {
        return preflight(&cors::API, origins, &parts.headers);
    }
    let mut response = route(&gateway, &peer, parts.clone(), body).await;
    cors::apply(&cors::API, origins, &parts.headers, response.headers_mut());
    response
}

/// The answer to a CORS preflight, as API Gateway (or S3) gives it.
fn preflight(
    policy: &cors::Policy,
    origins: &shared::config::AllowedOrigins,
    request: &http::HeaderMap,
) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    *response.headers_mut() = cors::preflight_headers(policy, origins, request);
    response
}

/// Routes one API request to its function (or answers as API Gateway would).
async fn route(
    gateway: &HttpGateway,
    peer: &SocketAddr,
    parts: http::request::Parts,
    body: Body,
) -> Response {
    let body = match axum::body::to_bytes(body, MAX_EVENT_BODY).await {
        Ok(body) => body,
        Err(_) => return gateway_answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or_default();
    let method = parts.method.as_str();

    // API Gateway picks the most specific route across all integrations, else `$default`.
    let matched = gateway.mounts.iter().find_map(|mount| {
        mount
            .0
            .router
            .resolve(&parts.method, path)
            .map(|(pattern, params)| (mount, pattern, params))
    });
    let (entry, route) = match &matched {
        Some((mount, pattern, params)) => (*mount, Some((*pattern, params))),
        None => match gateway
            .mounts
            .iter()
            .find(|m| m.0.function == DEFAULT_ROUTE_FUNCTION)
        {
            Some(mount) => (mount, None),
            None => return gateway_answer(StatusCode::NOT_FOUND, "Not Found"),
        },
    };
    let (mount, instance) = (&entry.0, &entry.1);
    let event = http_api_event(
        method,
        path,
        raw_query,
        &parts.headers,
        &body,
        &peer.ip().to_string(),
        &gateway.domain,
        route,
    );
    let lambda_request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(err) => {
            tracing::error!(error = %err, "the local gateway built an event Lambda would not parse");
            return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    // Lambda stops a function at its timeout; API Gateway stops waiting at 30 s. Either
    // way the client gets API Gateway's own answer, not the function's.
    let limit = FUNCTION_TIMEOUT.min(INTEGRATION_TIMEOUT);
    let response = match tokio::time::timeout(
        limit,
        shared::ports::recording::as_function(
            mount.function,
            mount.router.handle_lambda(instance, lambda_request),
        ),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(
                function = mount.function,
                seconds = limit.as_secs(),
                "the function exceeded its timeout"
            );
            return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let (parts, body) = response.into_parts();
    if response_payload_len(&body) > MAX_RESPONSE_PAYLOAD {
        // Lambda refuses the response; API Gateway answers with its own 500.
        tracing::error!(
            function = mount.function,
            bytes = response_payload_len(&body),
            "the response exceeds Lambda's 6 MB payload limit"
        );
        return gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    let body = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    Response::from_parts(parts, Body::from(body))
}

async fn serve_presigned(
    gateway: &HttpGateway,
    parts: &http::request::Parts,
    body: Bytes,
) -> Response {
    let blobs = gateway.blobs.as_ref();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or_default();
    let grant = match blobs.verify_presigned(parts.method.as_str(), path_and_query) {
        Ok(grant) => grant,
        Err(_) => return s3_error(StatusCode::FORBIDDEN, "AccessDenied"),
    };
    match parts.method {
        Method::PUT => {
            let sent_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            if grant.content_type.as_deref() != sent_type {
                return s3_error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch");
            }
            // A signed Content-Length must be the size sent (S3: the signature fails).
            if grant.content_length.is_some_and(|n| n != body.len() as u64) {
                return s3_error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch");
            }
            let content_type = sent_type.unwrap_or("application/octet-stream");
            let size = body.len() as u64;
            match blobs
                .put_versioned(
                    &grant.bucket,
                    &grant.key,
                    body,
                    content_type,
                    BTreeMap::new(),
                )
                .await
            {
                Ok(version_id) => {
                    announce(gateway, &grant.bucket, &grant.key, size, &version_id).await;
                    let mut response = StatusCode::OK.into_response();
                    if let Ok(value) = HeaderValue::from_str(&version_id) {
                        response.headers_mut().insert("x-amz-version-id", value);
                    }
                    response
                }
                Err(_) => s3_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            }
        }
        Method::GET => match blobs.get(&grant.bucket, &grant.key).await {
            Ok(Some(object)) => {
                let content_type = object
                    .meta
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into());
                let mut response = Response::new(Body::from_stream(object.body));
                if let Ok(value) = HeaderValue::from_str(&content_type) {
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, value);
                }
                response.headers_mut().insert(
                    http::header::CONTENT_LENGTH,
                    HeaderValue::from(object.meta.size),
                );
                response
            }
            Ok(None) => s3_error(StatusCode::NOT_FOUND, "NoSuchKey"),
            Err(_) => s3_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        },
        _ => s3_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
    }
}

/// `POST /_fake/stripe/payment_intents/{id}/confirm`: the fake confirms the intent when
/// the `client_secret` is its own, and then signs its event and POSTs it to the local
/// webhook route, exactly as for an in-process confirmation. Answers are Stripe's shapes:
/// the intent, or `{"error": {type, code, message}}`.
async fn serve_fake_stripe(
    stripe: &FakeStripe,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response {
    let rest = &parts.uri.path()[FAKE_STRIPE_PATH.len()..];
    let id = rest
        .strip_prefix("payment_intents/")
        .and_then(|rest| rest.strip_suffix("/confirm"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let Some(id) = id else {
        return stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "Unrecognized request URL: the fake serves POST /_fake/stripe/payment_intents/{id}/confirm",
        );
    };
    if parts.method != Method::POST {
        return stripe_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "POST only",
        );
    }
    let json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let fields: BTreeMap<String, String> = if json {
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) {
            Ok(map) => map
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect(),
            Err(_) => {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "the body is not a JSON object",
                )
            }
        }
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    };
    let Some(secret) = fields.get("client_secret") else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Missing required param: client_secret.",
        );
    };
    let method = fields.get("payment_method").map(String::as_str);
    match stripe.confirm_as_client(id, secret, method).await {
        Ok(intent) => {
            let mut response = (StatusCode::OK, intent_object(&intent).to_string()).into_response();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(PaymentError::NotFound) => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "No such payment_intent (or not its client_secret)",
        ),
        Err(PaymentError::Invalid(message)) if message.starts_with("402") => stripe_error(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            "Your card was declined.",
        ),
        Err(PaymentError::Invalid(message)) => {
            stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", &message)
        }
        Err(_) => stripe_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "the fake Stripe is unavailable",
        ),
    }
}

/// `GET /_fake/google-health/authorize?…`: the fake Google consents to a PKCE S256
/// request of our client and redirects (302) to its redirect URI with `state` and
/// `code`, as Google does after the user's consent; anything else is a 400.
async fn serve_fake_google(gateway: &HttpGateway, parts: &http::request::Parts) -> Response {
    if parts.method != Method::GET {
        return gateway_answer(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    let url = format!("http://{}{}", gateway.domain, parts.uri);
    match gateway.google.consent(&url).await {
        Some(callback) => match HeaderValue::from_str(&callback) {
            Ok(location) => {
                let mut response = StatusCode::FOUND.into_response();
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location);
                response
            }
            Err(_) => gateway_answer(StatusCode::BAD_REQUEST, "invalid_request"),
        },
        None => gateway_answer(StatusCode::BAD_REQUEST, "invalid_request"),
    }
}

/// Stripe's error shape.
fn stripe_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"type": kind, "message": message}}).to_string();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Sends the `ObjectCreated:Put` event of a stored object to the queue its bucket's
/// notification names (S3 delivers events asynchronously: a failure does not fail the
/// upload, it is logged).
async fn announce(gateway: &HttpGateway, bucket: &str, key: &str, size: u64, version_id: &str) {
    for (notified, queue) in &gateway.notifications {
        if notified != bucket {
            continue;
        }
        let event = s3_object_created(bucket, key, size, version_id, "scan-uploads");
        if let Err(err) = gateway
            .queue
            .send(queue, OutgoingMessage::new(event.to_string()))
            .await
        {
            tracing::error!(error = %err, queue, "the S3 event could not be queued");
        }
    }
}

/// S3 answers presigned requests with XML errors; clients only read the code.
fn s3_error(status: StatusCode, code: &str) -> Response {
    let body =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code></Error>");
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_responses_count_base64_encoded() {
        let four_mib = lambda_http::Body::Binary(vec![0; 4 << 20]);
        assert!(response_payload_len(&four_mib) <= MAX_RESPONSE_PAYLOAD);
        let five_mib = lambda_http::Body::Binary(vec![0; 5 << 20]);
        assert!(response_payload_len(&five_mib) > MAX_RESPONSE_PAYLOAD);
        let text = lambda_http::Body::Text("x".repeat(MAX_RESPONSE_PAYLOAD + 1));
        assert!(response_payload_len(&text) > MAX_RESPONSE_PAYLOAD);
        assert_eq!(response_payload_len(&lambda_http::Body::Empty), 0);
    }
}
