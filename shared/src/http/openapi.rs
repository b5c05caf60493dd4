//! The OpenAPI 3.1 document of the REST API, generated from the route tables: each
//! route declares its contract next to its handler (`.route(…).doc(RouteDoc::new(…)…)`)
//! and [`document`] turns the routers into paths, parameters, security and schemas.
//! Schemas are derived from the Rust request and response types (`schemars`, JSON
//! Schema 2020-12, which OpenAPI 3.1 uses as is), so the document cannot describe a
//! body the handlers do not parse or answer.

use super::Router;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The error body every failure answers with (DESIGN §4).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[schemars(title = "Error")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct ErrorDetail {
    /// A stable machine-readable code, e.g. `validation_failed`.
    pub code: String,
    /// A human-readable message; never echoes submitted values.
    pub message: String,
    /// The request id, also in the logs.
    pub request_id: String,
}

/// Who may call a route, as its handler enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials.
    Public,
    /// A valid access token (`Authorization: Bearer …`); per-account rate limit.
    Bearer,
    /// A valid access token of an administrator whose session used a second factor.
    AdminMfa,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Bearer => "bearer",
            Access::AdminMfa => "bearer+admin-mfa",
        }
    }
}

/// What parsing a JSON body can answer: invalid (400), too large (413), not JSON (415).
pub const BODY_ERRORS: [u16; 3] = [400, 413, 415];

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// A query string or header parameter.
#[derive(Clone)]
pub struct Param {
    pub name: &'static str,
    pub location: &'static str,
    pub description: &'static str,
    pub required: bool,
    schema: SchemaFn,
}

/// One route's contract: summary, access, parameters, body, answers and errors.
#[derive(Clone)]
pub struct RouteDoc {
    pub summary: &'static str,
    pub description: Option<&'static str>,
    pub access: Access,
    pub params: Vec<Param>,
    body: Option<SchemaFn>,
    body_required: bool,
    /// `(status, schema)`; `None` is an empty body (204).
    responses: Vec<(u16, Option<SchemaFn>)>,
    /// Statuses answered with raw bytes (a file), with the media types it may have.
    binary: Vec<(u16, &'static [&'static str])>,
    pub errors: Vec<u16>,
}

impl RouteDoc {
    /// A public route; `.bearer()` / `.admin_mfa()` narrow it.
    pub fn new(summary: &'static str) -> Self {
        RouteDoc {
            summary,
            description: None,
            access: Access::Public,
            params: Vec::new(),
            body: None,
            body_required: false,
            responses: Vec::new(),
            binary: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    /// Needs an access token (401 without one, 429 past the per-account budget).
    pub fn bearer(mut self) -> Self {
        self.access = Access::Bearer;
        self
    }

    /// Needs an administrator's access token from a session that used MFA (403 otherwise).
    pub fn admin_mfa(mut self) -> Self {
        self.access = Access::AdminMfa;
        self
    }

    /// A JSON request body of type `T`, parsed with `ApiRequest::json`, so the route
    /// also answers 400 (invalid), 413 (too large) and 415 (not JSON).
    pub fn body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self.body_required = true;
        self.errors(&BODY_ERRORS)
    }

    /// A JSON request body of type `T` that may be left out (an empty body).
    pub fn optional_body<T: JsonSchema>(mut self) -> Self {
        self.body = Some(schema_of::<T>);
        self.body_required = false;
        self.errors(&BODY_ERRORS)
    }

    /// A JSON answer of type `T` with this status.
    pub fn response<T: JsonSchema>(mut self, status: u16) -> Self {
        self.responses.push((status, Some(schema_of::<T>)));
        self
    }

    /// An answer of raw bytes with this status: a file of one of these media types.
    pub fn binary_response(mut self, status: u16, media_types: &'static [&'static str]) -> Self {
        self.binary.push((status, media_types));
        self
    }

    /// An answer without a body (204).
    pub fn no_content(mut self) -> Self {
        self.responses.push((204, None));
        self
    }

    /// The error statuses the route may answer (each with the shared error body).
    pub fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// An optional query parameter of type `T`.
    pub fn query<T: JsonSchema>(mut self, name: &'static str, description: &'static str) -> Self {
        self.params.push(Param {
            name,
            location: "query",
            description,
            required: false,
            schema: schema_of::<T>,
        });
        self
    }

    /// An optional request header (a string).
    pub fn header(mut self, name: &'static str, description: &'static str) -> Self {
        self.params.push(Param {
            name,
            location: "header",
            description,
            required: false,
            schema: schema_of::<String>,
        });
        self
    }

    /// The pagination parameters of a list (`?limit=&cursor=`).
    pub fn paged(mut self) -> Self {
        self.params.push(Param {
            name: "limit",
            location: "query",
            description: "Page size, 1..=100 (default 25).",
            required: false,
            schema: limit_schema,
        });
        self.query::<String>("cursor", "The `next_cursor` of the previous page.")
    }

    /// True when the doc says what the route answers.
    pub fn is_complete(&self) -> bool {
        let answers = !self.responses.is_empty() || !self.binary.is_empty();
        !self.summary.trim().is_empty() && answers
    }

    pub fn statuses(&self) -> Vec<u16> {
        self.responses
            .iter()
            .map(|(status, _)| *status)
            .chain(self.binary.iter().map(|(status, _)| *status))
            .chain(self.errors.iter().copied())
            .collect()
    }
}

fn limit_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({ "type": "integer", "minimum": 1, "maximum": 100 })
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "The request is not valid (body, parameter or cursor).",
        401 => "Missing, invalid or expired credentials.",
        403 => "The caller's role or session does not allow this.",
        404 => "No such resource (or not one the caller may see).",
        409 => "Conflicts with the current state.",
        413 => "The body is too large.",
        415 => "The body is not `application/json`.",
        416 => "The range starts past the end (`Content-Range: bytes */size`).",
        422 => "Understood but refused in the current state.",
        429 => "Rate limited; see `Retry-After`.",
        500 => "An internal error.",
        503 => "A dependency is unavailable.",
        _ => "An error.",
    }
}

fn success_description(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No content",
        206 => "Partial content (see `Content-Range`)",
        503 => "Unavailable (the body says which dependency)",
        _ => "Answer",
    }
}

/// Route paths' `{name}` segments.
fn path_params(pattern: &str) -> Vec<&str> {
    pattern
        .split('/')
        .filter_map(|part| part.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
        .collect()
}

fn operation_id(method: &http::Method, pattern: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let part = part.trim_matches(|c| c == '{' || c == '}');
        id.push('_');
        id.extend(
            part.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

fn json_content(schema: Schema) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// Every route without a complete doc, as `METHOD /pattern`.
pub fn undocumented(routers: &[&Router]) -> Vec<String> {
    routers
        .iter()
        .flat_map(|router| router.documented())
        .filter(|(_, _, doc)| !doc.is_some_and(RouteDoc::is_complete))
        .map(|(method, pattern, _)| format!("{method} {pattern}"))
        .collect()
}

/// The OpenAPI 3.1 document of these routers. Deterministic (sorted maps), so the
/// committed `docs/openapi.json` can be compared byte for byte. Panics on a route
/// without a doc (a test keeps every route documented).
pub fn document(routers: &[&Router], version: &str) -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    let error_schema = generator.subschema_for::<ErrorBody>();
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (method, pattern, doc) in routers.iter().flat_map(|router| router.documented()) {
        let doc = doc.unwrap_or_else(|| panic!("route {method} {pattern} has no doc"));
        let mut parameters: Vec<Value> = path_params(pattern)
            .into_iter()
            .map(|name| {
                json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "schema": { "type": "string", "minLength": 1 },
                })
            })
            .collect();
        for param in &doc.params {
            parameters.push(json!({
                "name": param.name,
                "in": param.location,
                "required": param.required,
                "description": param.description,
                "schema": (param.schema)(&mut generator),
            }));
        }
        let mut responses = Map::new();
        for (status, schema) in &doc.responses {
            let mut response = json!({ "description": success_description(*status) });
            if let Some(schema) = schema {
                response["content"] = json_content(schema(&mut generator));
            }
            responses.insert(status.to_string(), response);
        }
        for (status, media_types) in &doc.binary {
            let content: Map<String, Value> = media_types
                .iter()
                .map(|media| {
                    (
                        media.to_string(),
                        json!({ "schema": { "type": "string", "contentMediaType": media } }),
                    )
                })
                .collect();
            responses.insert(
                status.to_string(),
                json!({
                    "description": success_description(*status),
                    "content": content,
                }),
            );
        }
        let mut errors = doc.errors.clone();
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            if responses.contains_key(&status.to_string()) {
                continue;
            }
            let mut response = json!({
                "description": error_description(status),
                "content": json_content(error_schema.clone()),
            });
            if status == 429 {
                response["headers"] = json!({
                    "Retry-After": {
                        "description": "Seconds until the budget refills.",
                        "schema": { "type": "integer", "minimum": 0 },
                    }
                });
            }
            responses.insert(status.to_string(), response);
        }
        let mut operation = json!({
            "operationId": operation_id(&method, pattern),
            "summary": doc.summary,
            "x-docare-access": doc.access.as_str(),
            "responses": responses,
        });
        let description = match (doc.access, doc.description) {
            (Access::AdminMfa, Some(text)) => Some(format!(
                "Administrators only, from a session that used a second factor. {text}"
            )),
            (Access::AdminMfa, None) => {
                Some("Administrators only, from a session that used a second factor.".to_string())
            }
            (_, text) => text.map(str::to_string),
        };
        if let Some(text) = description {
            operation["description"] = json!(text);
        }
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        operation["security"] = match doc.access {
            Access::Public => json!([]),
            Access::Bearer | Access::AdminMfa => json!([{ "bearerAuth": [] }]),
        };
        if let Some(body) = doc.body {
            operation["requestBody"] = json!({
                "required": doc.body_required,
                "content": json_content(body(&mut generator)),
            });
        }
        let previous = paths
            .entry(pattern)
            .or_default()
            .insert(method.as_str().to_ascii_lowercase(), operation);
        assert!(previous.is_none(), "{method} {pattern} is served twice");
    }
    let schemas: BTreeMap<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "DoCare API",
            "version": version,
            "description": "Generated from the route tables (`cargo run -p docare-local --bin docare-openapi -- --write`); do not edit by hand.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            },
            "schemas": schemas,
        },
    })
}

/// [`document`] as the committed file's text (pretty, with a final newline).
pub fn document_text(routers: &[&Router], version: &str) -> String {
    let mut text =
        serde_json::to_string_pretty(&document(routers, version)).expect("a JSON value prints");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ApiResponse;
    use http::Method;

    #[derive(JsonSchema, Deserialize)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
    }

    #[test]
    fn a_route_becomes_an_operation_with_params_security_and_errors() {
        let router = Router::new()
            .route(Method::PUT, "/api/v1/things/{id}", |_, _| async {
                Ok(ApiResponse::no_content())
            })
            .doc(
                RouteDoc::new("Replace a thing")
                    .bearer()
                    .body::<Thing>()
                    .response::<Thing>(200)
                    .errors(&[400, 401, 404, 429]),
            );
        let doc = document(&[&router], "0");
        let op = &doc["paths"]["/api/v1/things/{id}"]["put"];
        assert_eq!(op["parameters"][0]["name"], "id");
        assert_eq!(op["parameters"][0]["in"], "path");
        assert_eq!(op["security"][0]["bearerAuth"], json!([]));
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Thing"
        );
        assert_eq!(
            op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object());
        assert!(doc["components"]["schemas"]["Thing"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        assert!(undocumented(&[&router]).is_empty());
    }

    #[test]
    #[should_panic(expected = "documented twice")]
    fn a_route_has_one_doc() {
        let _ = Router::new()
            .route(Method::GET, "/x", |_, _| async {
                Ok(ApiResponse::no_content())
            })
            .doc(RouteDoc::new("x").no_content())
            .doc(RouteDoc::new("x again").no_content());
    }

    #[test]
    #[should_panic(expected = "a doc follows the route it documents")]
    fn a_doc_needs_a_route() {
        let _ = Router::new().doc(RouteDoc::new("nothing").no_content());
    }

    #[test]
    fn the_error_body_is_the_one_answered() {
        let response = ApiResponse::error(&crate::ApiError::NotFound, "req-9");
        let body: ErrorBody = serde_json::from_slice(&response.body).expect("an ErrorBody");
        assert_eq!(body.error.code, "not_found");
        assert_eq!(body.error.request_id, "req-9");
    }

    #[test]
    fn undocumented_routes_are_named() {
        let router = Router::new().route(Method::GET, "/x", |_, _| async {
            Ok(ApiResponse::no_content())
        });
        assert_eq!(undocumented(&[&router]), vec!["GET /x".to_string()]);
    }
}
