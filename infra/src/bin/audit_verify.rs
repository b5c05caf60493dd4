//! `docare-audit-verify`: see `docare_local::audit_verify`.

use docare_local::audit_verify::{self, EXIT_USAGE, USAGE};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let parsed = match audit_verify::parse_args(&args, |name| std::env::var(name).ok()) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("docare-audit-verify: {err}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let outcome = audit_verify::run(&parsed).await;
    if outcome.code == audit_verify::EXIT_INTACT {
        println!("{}", outcome.message);
    } else {
        eprintln!("{}", outcome.message);
    }
    std::process::exit(outcome.code);
}
