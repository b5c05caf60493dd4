//! The local HTTP API behaves like the deployed one: routing, errors, limits, headers,
//! and presigned blob URLs.

use docare_e2e::TestStack;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
pub(crate) async fn health_answers_200_with_every_check() {
    let t = TestStack::start().await;
    let response = t.http.get(t.url("/health")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    for check in ["database", "blobs", "keys", "queues"] {
        assert_eq!(body["checks"][check], "ok", "{check}");
    }
    t.stack.stop().await;
}

#[tokio::test]
async fn unknown_routes_get_the_json_404_of_the_default_route() {
    let t = TestStack::start().await;
    let response = t
        .http
        .get(t.url("/api/v1/nowhere?x=1"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    t.stack.stop().await;
}

#[tokio::test]
async fn a_known_path_with_another_method_is_404_as_on_api_gateway() {
    let t = TestStack::start().await;
    let response = t
        .http
        .delete(t.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert!(response.headers().get("allow").is_none());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    t.stack.stop().await;
}

#[tokio::test]
async fn bodies_over_the_lambda_payload_limit_are_413() {
    let t = TestStack::start().await;
    let big = vec![b'x'; docare_local::http_gateway::MAX_EVENT_BODY + 1];
    let response = t
        .http
        .post(t.url("/health"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["message"], "Request Entity Too Large");
    t.stack.stop().await;
}

/// Presigned uploads go to S3, not through API Gateway: a 25 MiB document (the documents
/// upload limit) is accepted where an API request of 6 MB is not.
#[tokio::test]
async fn presigned_uploads_are_not_bound_by_the_lambda_payload_limit() {
    let t = TestStack::start().await;
    let blobs = &t.app().blobs;
    // Not the quarantine bucket: its uploads are announced to the scanner, which
    // removes anything that is not a document's upload.
    let bucket = &t.app().config.documents_bucket;
    let put = blobs
        .presign_put(
            bucket,
            "u1/large",
            "application/pdf",
            None,
            Duration::from_secs(60),
        )
        .await
        .expect("presign put");
    let content = vec![b'%'; 25 << 20];
    let upload = t
        .http
        .put(&put.url)
        .header("content-type", "application/pdf")
        .body(content)
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 200);
    let head = blobs
        .head(bucket, "u1/large")
        .await
        .expect("head")
        .expect("stored");
    assert_eq!(head.size, 25 << 20);
    t.stack.stop().await;
}

#[tokio::test]
async fn presigned_urls_upload_and_download_through_the_stack() {
    let t = TestStack::start().await;
    let blobs = &t.app().blobs;
    // Not the quarantine bucket: its uploads are announced to the scanner, which
    // removes anything that is not a document's upload.
    let bucket = &t.app().config.documents_bucket;
    let put = blobs
        .presign_put(
            bucket,
            "u1/report",
            "application/pdf",
            None,
            Duration::from_secs(60),
        )
        .await
        .expect("presign put");
    let content = b"%PDF-1.7 not really".to_vec();
    let upload = t
        .http
        .put(&put.url)
        .header("content-type", "application/pdf")
        .body(content.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 200);

    let wrong_type = t
        .http
        .put(&put.url)
        .header("content-type", "text/html")
        .body("<script>")
        .send()
        .await
        .expect("upload");
    assert_eq!(
        wrong_type.status(),
        403,
        "the content type is part of the signature"
    );

    let get = blobs
        .presign_get(bucket, "u1/report", Duration::from_secs(60))
        .await
        .expect("presign get");
    let download = t.http.get(&get.url).send().await.expect("download");
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/pdf");
    assert_eq!(download.bytes().await.expect("body").to_vec(), content);

    let forged = get
        .url
        .replace("u1%2Freport", "u2%2Freport")
        .replace("u1/report", "u2/report");
    assert_eq!(
        t.http.get(&forged).send().await.expect("forged").status(),
        403
    );
    let as_put = t.http.put(&get.url).body("x").send().await.expect("method");
    assert_eq!(as_put.status(), 403, "a GET URL cannot upload");

    let meta = blobs
        .head(bucket, "u1/report")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(meta.size, content.len() as u64);
    assert_eq!(meta.metadata, BTreeMap::new());
    t.stack.stop().await;
}

/// Six failed sign-ins on six different accounts from one address: the sixth is refused
/// by the per-IP auth budget (5 per 15 minutes), since every local client is 127.0.0.1.
async fn failed_logins_from_one_address(t: &TestStack) -> Vec<u16> {
    let mut statuses = Vec::new();
    for n in 0..6 {
        let response = t
            .http
            .post(t.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"email": format!("nobody{n}@example.com"), "password": "wrong-password"}))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn the_per_ip_auth_budget_holds_locally_unless_dev_limits_relax_it() {
    let production = TestStack::start().await;
    assert_eq!(
        failed_logins_from_one_address(&production).await,
        [401, 401, 401, 401, 401, 429]
    );
    production.stack.stop().await;

    let relaxed = TestStack::start_with_dev_limits().await;
    assert_eq!(relaxed.app().config.ip_limit_factor, 100);
    assert_eq!(failed_logins_from_one_address(&relaxed).await, [401; 6]);
    relaxed.stack.stop().await;
}

/// The local gateway does what API Gateway's `CorsConfiguration` does: it answers
/// preflights itself and gives CORS headers to every answer (errors included) for an
/// allowed origin only; other origins get none.
#[tokio::test]
async fn cors_is_answered_for_allowed_origins_only_errors_included() {
    use shared::http::cors;
    let t = TestStack::start().await;
    let allowed = "http://localhost:3000";
    let preflight = |origin: &'static str, method: &'static str| {
        t.http
            .request(reqwest::Method::OPTIONS, t.url("/api/v1/auth/login"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let answer = preflight(allowed, "POST").await.expect("preflight");
    assert_eq!(answer.status(), 204);
    let headers = answer.headers();
    assert_eq!(headers["access-control-allow-origin"], allowed);
    assert_eq!(
        headers["access-control-allow-methods"],
        cors::API.methods.join(",")
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        cors::API.headers.join(",")
    );
    assert_eq!(headers["access-control-max-age"], "600");
    assert!(headers.get("access-control-allow-credentials").is_none());
    for (origin, method) in [("https://evil.example", "POST"), (allowed, "TRACE")] {
        let answer = preflight(origin, method).await.expect("preflight");
        assert_eq!(answer.status(), 204);
        assert!(
            answer
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{origin} {method}"
        );
    }
    // Actual answers: a success, the $default route's 404, a 401 and the gateway's 413.
    let big = vec![b'x'; docare_local::http_gateway::MAX_EVENT_BODY + 1];
    let requests = [
        (t.http.get(t.url("/health")), 200),
        (t.http.get(t.url("/api/v1/nowhere")), 404),
        (t.http.get(t.url("/api/v1/users/me")), 401),
        (t.http.post(t.url("/api/v1/auth/login")).body(big), 413),
    ];
    for (request, status) in requests {
        let probe = request.try_clone().expect("clonable");
        let answer = request
            .header("origin", allowed)
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), status);
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            allowed,
            "{status}"
        );
        assert_eq!(
            answer.headers()["access-control-expose-headers"],
            "retry-after"
        );
        let answer = probe
            .header("origin", "https://evil.example")
            .send()
            .await
            .expect("answer");
        assert_eq!(
            answer.status(),
            status,
            "the server answers; the browser withholds it"
        );
        assert!(answer
            .headers()
            .get("access-control-allow-origin")
            .is_none());
    }
    t.stack.stop().await;
}

/// Every function's answer carries the security headers the first seed's Helmet gave:
/// successes, refusals and errors alike; the HTML receipt keeps its own script-free
/// policy (`tests/flows/payments.rs`).
#[tokio::test]
async fn every_function_answer_has_the_security_headers() {
    let t = TestStack::start().await;
    let requests = [
        (t.http.get(t.url("/health")), 200),
        (t.http.get(t.url("/.well-known/jwks.json")), 200),
        (t.http.get(t.url("/api/v1/nowhere")), 404),
        (t.http.get(t.url("/api/v1/users/me")), 401),
        (
            t.http
                .post(t.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body("{"),
            400,
        ),
    ];
    for (request, status) in requests {
        let answer = request.send().await.expect("answer");
        assert_eq!(answer.status(), status);
        for (name, value) in &shared::http::response::SECURITY_HEADERS {
            assert_eq!(
                answer.headers().get(name).and_then(|v| v.to_str().ok()),
                Some(*value),
                "{name} on a {status}"
            );
        }
    }
    // Listed, so a header dropped from the list fails here too.
    let names: Vec<&str> = shared::http::response::SECURITY_HEADERS
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "cache-control",
            "x-content-type-options",
            "strict-transport-security",
            "referrer-policy",
            "content-security-policy"
        ]
    );
    t.stack.stop().await;
}

/// A page uploads to its presigned URL: the local stack's S3 answers the preflight and
/// the PUT with the quarantine bucket's CORS rule (`shared::http::cors::UPLOADS`), for
/// allowed origins only.
#[tokio::test]
async fn presigned_uploads_answer_cors_for_allowed_origins_only() {
    let t = TestStack::start().await;
    let put = t
        .app()
        .blobs
        .presign_put(
            &t.app().config.documents_bucket,
            "u2/scan",
            "application/pdf",
            None,
            Duration::from_secs(60),
        )
        .await
        .expect("presign put");
    let preflight = |origin: &'static str| {
        t.http
            .request(reqwest::Method::OPTIONS, &put.url)
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let answer = preflight("http://localhost:5173").await.expect("preflight");
    assert_eq!(answer.status(), 204);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(answer.headers()["access-control-allow-methods"], "PUT");
    assert_eq!(
        answer.headers()["access-control-allow-headers"],
        "content-type"
    );
    let refused = preflight("https://evil.example").await.expect("preflight");
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let upload = t
        .http
        .put(&put.url)
        .header("origin", "http://localhost:5173")
        .header("content-type", "application/pdf")
        .body(b"%PDF-1.7 from a page".to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 200);
    assert_eq!(
        upload.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    t.stack.stop().await;
}
