//! `docare-openapi`: prints the OpenAPI 3.1 document generated from the route tables,
//! or with `--write` rewrites `docs/openapi.json` (then rebuild: the health function
//! embeds that file).

use docare_local::openapi::{committed_path, document_text};

fn main() {
    let text = document_text();
    if std::env::args().skip(1).any(|a| a == "--write") {
        let path = committed_path();
        if let Err(err) = std::fs::write(&path, &text) {
            eprintln!("docare-openapi: cannot write {}: {err}", path.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}", path.display());
    } else {
        print!("{text}");
    }
}
