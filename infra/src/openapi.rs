//! The OpenAPI document of every mounted REST function, as committed in
//! `docs/openapi.json` (served by the health function with `include_str!`, since one
//! Lambda cannot link every router). Regenerate with [`REGENERATE`]; a test fails when
//! the committed file is stale.

use crate::mounts::http_functions;
use std::path::PathBuf;

/// The command that rewrites `docs/openapi.json` from the route tables.
pub const REGENERATE: &str = "cargo run -p docare-local --bin docare-openapi -- --write";

/// The committed document's path.
pub fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join("openapi.json")
}

/// The document generated from the route tables, as the committed file's text.
pub fn document_text() -> String {
    let mounts = http_functions();
    let routers: Vec<&shared::http::Router> = mounts.iter().map(|m| &m.router).collect();
    shared::http::openapi::document_text(&routers, env!("CARGO_PKG_VERSION"))
}
