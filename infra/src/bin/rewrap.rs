//! `docare-rewrap`: re-wraps every data key and index key under a new KMS key (key
//! rotation). See `docare_local::rewrap` and `docare-rewrap --help`.

use docare_local::rewrap::{self, RewrapSettings, USAGE};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let settings = match RewrapSettings::parse(&args, |name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    let (summary, status) = match rewrap::run(&settings).await {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("docare-rewrap: {}", rewrap::describe(&err));
            std::process::exit(1);
        }
    };
    match serde_json::to_string(&summary) {
        Ok(json) => println!("{json}"),
        Err(err) => {
            eprintln!("docare-rewrap: cannot write the summary: {err}");
            std::process::exit(1);
        }
    }
    if let Some(error) = &summary.error {
        eprintln!("docare-rewrap: stopped: {error}");
    }
    std::process::exit(status);
}
