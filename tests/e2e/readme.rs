//! The README's API reference is a claim about the route tables: every REST route a
//! function serves has a row, and every row names a route that exists.

use shared::testing::repo_root;
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The `### REST` table of README.md, one `(METHOD, /path)` per route a row names.
/// A row's first cell names routes as `` `GET /path` ``, as `` `GET`/`PUT`/`DELETE /path` ``
/// (several methods, one path) or as `` `POST /a/x`, `…/y` `` (a sibling path).
fn readme_rest_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = text.find("### REST").expect("a ### REST section");
    let section = &text[start..];
    let end = section[1..].find("\n#").map_or(section.len(), |i| i + 1);
    let mut routes = BTreeSet::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split(" | ").next().unwrap_or_default();
        let mut pending: Vec<String> = Vec::new();
        let mut last: Option<(String, String)> = None;
        for span in cell.split('`').skip(1).step_by(2) {
            if METHODS.contains(&span) {
                pending.push(span.to_string());
                continue;
            }
            if let Some(rest) = span.strip_prefix("…/") {
                let (method, path) = last.clone().expect("a sibling path follows a route");
                let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                let route = (method, format!("{parent}/{}", path_of(rest)));
                routes.insert(route.clone());
                last = Some(route);
                continue;
            }
            let Some((method, rest)) = span.split_once(' ') else {
                continue;
            };
            if !METHODS.contains(&method) {
                continue;
            }
            let path = path_of(rest);
            for m in pending.drain(..).chain([method.to_string()]) {
                routes.insert((m.clone(), path.clone()));
                last = Some((m, path.clone()));
            }
        }
    }
    routes
}

/// `/api/v1/x[?reveal=ssn] {body}` -> `/api/v1/x`.
fn path_of(text: &str) -> String {
    text.split([' ', '[', '?'])
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_readme_rest_table_lists_exactly_the_served_routes() {
    let in_readme = readme_rest_routes();
    let served: BTreeSet<(String, String)> = docare_local::mounts::http_functions()
        .iter()
        .flat_map(|mount| mount.router.table())
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&in_readme).collect();
    let extra: Vec<_> = in_readme.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README REST table vs route tables:\n  served but not in the README: {missing:?}\n  in the README but not served: {extra:?}"
    );
}

#[test]
fn the_readme_table_parser_reads_every_row_form() {
    assert_eq!(
        path_of("/api/v1/users/me/profile[?reveal=ssn] 🔒"),
        "/api/v1/users/me/profile"
    );
    assert_eq!(path_of("/api/v1/audit"), "/api/v1/audit");
}
