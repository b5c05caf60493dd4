//! The shape of the code base, enforced: handlers under `functions/` never touch storage.
//! Keys and items live in `shared::store` (DESIGN: "storage only in store/"), so any area
//! can read another area's entity through its repository and no crate copies a key.

use shared::testing::repo_root;
use std::path::{Path, PathBuf};

/// Handler files allowed to touch storage themselves: none. A file may only be listed
/// here on its way into a `shared::store` repository, and the list may only shrink.
const NOT_YET_IN_THE_STORE: &[&str] = &[];

/// What storage code looks like: the database port, key builders, raw items.
const STORAGE_MARKERS: &[&str] = &["ports::db", ".db.", ".db\n", "store::keys", "Key::new("];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `"USER#`, `"CARE#…`: a key prefix spelled out in a string literal.
fn spelled_key_prefix(text: &str) -> Option<String> {
    text.match_indices('"').find_map(|(i, _)| {
        let rest = &text[i + 1..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase())
            .collect();
        (word.len() >= 2 && rest[word.len()..].starts_with('#')).then(|| format!("\"{word}#"))
    })
}

/// Handler sources: `functions/*/src/**.rs` (their tests may build fixtures).
fn handler_sources() -> Vec<(String, String)> {
    let root = repo_root();
    let mut files = Vec::new();
    let Ok(functions) = std::fs::read_dir(root.join("functions")) else {
        panic!("functions/ not found");
    };
    for function in functions.flatten() {
        rust_files(&function.path().join("src"), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable source");
            let relative = path
                .strip_prefix(&root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            (relative, text)
        })
        .collect()
}

#[test]
fn no_handler_spells_out_a_key_prefix() {
    let offenders: Vec<String> = handler_sources()
        .into_iter()
        .filter_map(|(file, text)| spelled_key_prefix(&text).map(|p| format!("{file}: {p}")))
        .collect();
    assert!(
        offenders.is_empty(),
        "key prefixes belong in shared::store::keys:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn handlers_reach_storage_only_through_repositories() {
    let sources = handler_sources();
    let touching: Vec<&str> = sources
        .iter()
        .filter(|(_, text)| STORAGE_MARKERS.iter().any(|m| text.contains(m)))
        .map(|(file, _)| file.as_str())
        .collect();
    let new: Vec<&&str> = touching
        .iter()
        .filter(|file| !NOT_YET_IN_THE_STORE.contains(file))
        .collect();
    assert!(
        new.is_empty(),
        "these handler files touch the database port or keys; use a shared::store repository: {new:?}"
    );
    let moved: Vec<&&str> = NOT_YET_IN_THE_STORE
        .iter()
        .filter(|file| !touching.contains(file))
        .collect();
    assert!(
        moved.is_empty(),
        "these files no longer touch storage: remove them from NOT_YET_IN_THE_STORE: {moved:?}"
    );
}

#[test]
fn the_markers_recognise_storage_code() {
    assert_eq!(
        spelled_key_prefix(r#"Key::new(format!("USER#{id}"), "PROFILE")"#).as_deref(),
        Some("\"USER#")
    );
    assert_eq!(spelled_key_prefix(r#"format!("{a}#{b}")"#), None);
    assert!(STORAGE_MARKERS.iter().any(|m| "app.db.put(".contains(m)));
}

#[test]
fn the_key_schema_in_the_docs_matches_the_store() {
    let doc = std::fs::read_to_string(repo_root().join("docs/design.md")).expect("docs/design.md");
    let section = doc
        .split("Key schema of the domain table")
        .nth(1)
        .expect("docs/design.md has the key schema of the domain table");
    let rows: Vec<(String, String)> = section
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].trim_matches('`').to_string(),
            )
        })
        .collect();
    let schema: Vec<(String, String)> = shared::store::keys::SCHEMA
        .iter()
        .map(|kind| (kind.pk.to_string(), kind.sk.to_string()))
        .collect();
    assert_eq!(
        rows, schema,
        "docs/design.md key schema vs shared::store::keys::SCHEMA"
    );
}

/// An HTTPS client for an outside API builds its TLS configuration (and loads the
/// machine's trust roots, a few milliseconds) when it is built. On Lambda that must
/// happen on the first call, not at cold start: the AWS adapters build their clients
/// only through `LazyHttp` (`shared/src/adapters/aws/lazy.rs`), never directly. The
/// Google adapter once built one at init and doubled every function's cold start.
#[test]
fn aws_adapters_build_https_clients_only_on_first_use() {
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root.join("shared/src/adapters/aws"), &mut files);
    files.push(root.join("shared/src/lambda.rs"));
    let eager: Vec<String> = files
        .iter()
        .filter(|path| !path.ends_with("lazy.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("readable source");
            // The code before the file's tests, which may build what they like.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            [
                "reqwest::Client::new(",
                "reqwest::Client::builder(",
                "ClientBuilder::new(",
            ]
            .iter()
            .any(|marker| code.contains(marker))
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        eager.is_empty(),
        "built at init, not on first use: {eager:?}"
    );
}

/// Release builds compile `debug` and `trace` events out (README, `DOCARE_LOG`): every
/// event site is a static of pointers the loader relocates at each cold start, and the
/// SDK, HTTP and TLS crates have hundreds. `tracing` and `log` are the workspace's
/// dependencies with that feature, and `shared` depends on both, so it reaches every
/// crate that logs through either.
#[test]
fn release_builds_compile_out_debug_and_trace_events() {
    let root = repo_root();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let shared = std::fs::read_to_string(root.join("shared/Cargo.toml")).expect("shared");
    for name in ["tracing", "log"] {
        let line = workspace
            .lines()
            .find(|l| l.starts_with(&format!("{name} =")))
            .unwrap_or_else(|| panic!("{name} is a workspace dependency"));
        assert!(
            line.contains("\"release_max_level_info\""),
            "{name}: {line}"
        );
        assert!(
            shared
                .lines()
                .any(|l| l.trim() == format!("{name}.workspace = true")),
            "shared depends on the workspace's {name}"
        );
    }
}

/// Every Lambda entry point is a plain `fn main` handing its function to
/// `shared::lambda::Linking`, which runs it on the single-threaded runtime: a
/// `#[tokio::main]` around it would start a second runtime inside the first (a panic at
/// the first cold start, which no other test runs) and bring the worker threads back.
#[test]
fn every_lambda_entry_point_runs_through_linking_without_its_own_runtime() {
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root.join("functions"), &mut files);
    let mains: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable source");
            text.contains("fn main()").then_some((path, text))
        })
        .collect();
    assert_eq!(
        mains.len(),
        23,
        "one entry point per function of the template"
    );
    for (path, text) in mains {
        assert!(
            text.contains("shared::lambda::Linking::<") && !text.contains("tokio::main"),
            "{}: `fn main() -> Result<(), lambda_runtime::Error> {{ shared::lambda::Linking::<{{ LINKS }}>.run_…(…) }}`",
            path.display()
        );
    }
}
