//! The route table of a REST function: `(method, path pattern) -> handler`. The same
//! table is served by Lambda, mounted by the local stack, and checked against
//! `template.yaml` by the tests, so the three cannot drift apart.

use super::openapi::RouteDoc;
use super::{ApiRequest, ApiResponse};
use crate::ports::recording::{self, Access};
use crate::{ApiError, App};
use futures::future::BoxFuture;
use http::Method;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub type HandlerResult = Result<ApiResponse, ApiError>;

type BoxHandler = Arc<dyn Fn(App, ApiRequest) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

struct Route {
    method: Method,
    pattern: &'static str,
    segments: Vec<Segment>,
    handler: BoxHandler,
    doc: Option<RouteDoc>,
}

/// A function's routes. Patterns look like `/api/v1/users/{id}`.
#[derive(Clone, Default)]
pub struct Router {
    routes: Arc<Vec<Route>>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route. Panics at start-up (never per request) on a malformed or duplicate
    /// pattern, which is a programming error caught by every test that builds the router.
    pub fn route<F, Fut>(mut self, method: Method, pattern: &'static str, handler: F) -> Self
    where
        F: Fn(App, ApiRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let segments = parse_pattern(pattern);
        let routes = Arc::get_mut(&mut self.routes).map(|routes| {
            assert!(
                !routes
                    .iter()
                    .any(|r| r.method == method && same_shape(&r.segments, &segments)),
                "duplicate route {method} {pattern}"
            );
            routes.push(Route {
                method,
                pattern,
                segments,
                handler: Arc::new(move |app, req| Box::pin(handler(app, req))),
                doc: None,
            });
        });
        assert!(
            routes.is_some(),
            "routes are added before the router is shared"
        );
        self
    }

    /// Documents the route added last (its OpenAPI operation): written right after
    /// `.route(…)`, so a route and its contract read together. Panics on a second doc
    /// for the same route or a doc before any route.
    pub fn doc(mut self, doc: RouteDoc) -> Self {
        let routes = Arc::get_mut(&mut self.routes)
            .expect("routes are documented before the router is shared");
        let last = routes
            .last_mut()
            .expect("a doc follows the route it documents");
        assert!(
            last.doc.is_none(),
            "route {} {} is documented twice",
            last.method,
            last.pattern
        );
        last.doc = Some(doc);
        self
    }

    /// `(method, pattern, doc)` of every route, in the order they were added.
    pub fn documented(&self) -> Vec<(Method, &'static str, Option<&RouteDoc>)> {
        self.routes
            .iter()
            .map(|r| (r.method.clone(), r.pattern, r.doc.as_ref()))
            .collect()
    }

    /// `(method, pattern)` of every route, in the order they were added.
    pub fn table(&self) -> Vec<(Method, &'static str)> {
        self.routes
            .iter()
            .map(|r| (r.method.clone(), r.pattern))
            .collect()
    }

    /// Routes the request and turns every outcome, errors included, into a response.
    pub async fn dispatch(&self, app: &App, req: ApiRequest) -> ApiResponse {
        self.dispatch_recorded(app, req).await.0
    }

    /// [`Router::dispatch`], with every call the request made to an outside service
    /// (`ports::recording`). The request's log line carries the counts per service.
    pub async fn dispatch_recorded(
        &self,
        app: &App,
        mut req: ApiRequest,
    ) -> (ApiResponse, Vec<Access>) {
        let started = Instant::now();
        let request_id = req.request_id.clone();
        let method = req.method.clone();
        let ((route, outcome), accesses) = recording::record(async {
            match self.find(&req.method, &req.path) {
                Ok((route, params)) => {
                    req.params = params;
                    (route.pattern, (route.handler)(app.clone(), req).await)
                }
                Err(err) => ("(unmatched)", Err(err)),
            }
        })
        .await;
        let response = match outcome {
            Ok(response) => response,
            Err(err) => ApiResponse::error(&err, &request_id),
        };
        let calls = recording::counts(&accesses);
        tracing::info!(
            request_id,
            method = %method,
            route,
            status = response.status.as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            dynamodb_calls = calls.dynamodb,
            kms_calls = calls.kms,
            s3_calls = calls.s3,
            sqs_calls = calls.sqs,
            "request"
        );
        (response, accesses)
    }

    /// The Lambda entry point of a REST function.
    pub async fn handle_lambda(
        &self,
        app: &App,
        req: lambda_http::Request,
    ) -> lambda_http::Response<lambda_http::Body> {
        self.dispatch(app, ApiRequest::from_lambda(req))
            .await
            .into_lambda()
    }

    /// The route API Gateway would select for this request: its pattern and parameters.
    pub fn resolve(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<(&'static str, HashMap<String, String>)> {
        self.find(method, path)
            .ok()
            .map(|(route, params)| (route.pattern, params))
    }

    fn find(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<(&Route, HashMap<String, String>), ApiError> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let parts = if path == "/" { Vec::new() } else { parts };
        let mut best: Option<(&Route, HashMap<String, String>, usize)> = None;
        for route in self.routes.iter().filter(|route| route.method == *method) {
            let Some((params, literals)) = match_segments(&route.segments, &parts) else {
                continue;
            };
            // Literal segments beat parameters: `/users/me` wins over `/users/{id}`.
            if best.as_ref().is_none_or(|(_, _, score)| literals > *score) {
                best = Some((route, params, literals));
            }
        }
        // API Gateway routes by method and path together: a known path with another
        // method has no route, falls to `$default`, and is a 404 like any unknown path.
        best.map(|(route, params, _)| (route, params))
            .ok_or(ApiError::NotFound)
    }
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    assert!(
        pattern.starts_with('/'),
        "route {pattern} must start with /"
    );
    if pattern == "/" {
        return Vec::new();
    }
    pattern[1..]
        .split('/')
        .map(|part| {
            assert!(!part.is_empty(), "route {pattern} has an empty segment");
            match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(part.to_string()),
            }
        })
        .collect()
}

/// Two patterns that differ only in parameter names match the same requests.
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Param(_), Segment::Param(_)) => true,
            _ => false,
        })
}

fn match_segments(
    segments: &[Segment],
    parts: &[&str],
) -> Option<(HashMap<String, String>, usize)> {
    if segments.len() != parts.len() {
        return None;
    }
    let mut params = HashMap::new();
    let mut literals = 0;
    for (segment, part) in segments.iter().zip(parts) {
        match segment {
            Segment::Literal(text) if text == part => literals += 1,
            Segment::Literal(_) => return None,
            Segment::Param(_) if part.is_empty() => return None,
            Segment::Param(name) => {
                let decoded = percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .ok()?
                    .into_owned();
                params.insert(name.clone(), decoded);
            }
        }
    }
    Some((params, literals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new()
            .route(Method::GET, "/api/v1/users/{id}", |_, _| async {
                Ok(ApiResponse::no_content())
            })
            .route(Method::GET, "/api/v1/users/me", |_, _| async {
                Ok(ApiResponse::no_content())
            })
            .route(Method::DELETE, "/api/v1/users/{id}", |_, _| async {
                Ok(ApiResponse::no_content())
            })
    }

    #[test]
    fn literals_win_and_params_are_decoded() {
        let router = router();
        let (route, params) = router
            .find(&Method::GET, "/api/v1/users/me")
            .expect("match");
        assert_eq!(route.pattern, "/api/v1/users/me");
        assert!(params.is_empty());
        let (route, params) = router
            .find(&Method::GET, "/api/v1/users/a%20b/")
            .expect("match");
        assert_eq!(route.pattern, "/api/v1/users/{id}");
        assert_eq!(params["id"], "a b");
    }

    #[test]
    fn unknown_paths_and_wrong_methods_are_404() {
        let router = router();
        assert!(matches!(
            router.find(&Method::GET, "/api/v1/nope"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            router.find(&Method::GET, "/api/v1/users/"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            router.find(&Method::POST, "/api/v1/users/42"),
            Err(ApiError::NotFound)
        ));
    }

    #[test]
    #[should_panic(expected = "duplicate route")]
    fn duplicate_routes_are_refused_at_build_time() {
        let _ = router().route(Method::GET, "/api/v1/users/{other}", |_, _| async {
            Ok(ApiResponse::no_content())
        });
    }
}
