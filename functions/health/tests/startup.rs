//! A deployed function refuses to start on bad configuration, with one line naming the
//! variable (Lambda shows it as the init error), before touching any AWS service.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_health");

fn valid_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DOCARE_ENV", "dev"),
        ("DOCARE_TABLE", "docare-dev"),
        ("DOCARE_AUDIT_TABLE", "docare-dev-audit"),
        ("DOCARE_QUARANTINE_BUCKET", "q"),
        ("DOCARE_DOCUMENTS_BUCKET", "d"),
        ("DOCARE_AUDIT_ARCHIVE_BUCKET", "a"),
        ("DOCARE_KMS_KEY_ID", "alias/docare-dev"),
        (
            "DOCARE_SCANS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/s",
        ),
        (
            "DOCARE_REMINDERS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/r",
        ),
        (
            "DOCARE_NOTIFICATIONS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/n",
        ),
        (
            "DOCARE_WS_ENDPOINT",
            "https://abc.execute-api.eu-west-1.amazonaws.com/dev",
        ),
        ("DOCARE_MAIL_FROM", "no-reply@docare.example"),
    ]
}

fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_missing_variable_stops_the_cold_start_naming_it() {
    for missing in ["DOCARE_TABLE", "DOCARE_KMS_KEY_ID", "DOCARE_WS_ENDPOINT"] {
        let env: Vec<_> = valid_env()
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let (code, stderr) = run(&env);
        assert_eq!(code, Some(1), "{missing}");
        assert_eq!(
            stderr.trim(),
            format!("configuration error: {missing} is not set")
        );
    }
}

#[test]
fn a_bad_variable_stops_the_cold_start_naming_it_but_not_its_value() {
    let mut env = valid_env();
    env.retain(|(k, _)| *k != "DOCARE_ENV");
    env.push(("DOCARE_ENV", "production-ish"));
    let (code, stderr) = run(&env);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("DOCARE_ENV") && !stderr.contains("production-ish"),
        "{stderr}"
    );
}
