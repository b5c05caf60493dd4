//! Cold-start benchmark: a minimal Lambda Runtime API on loopback serves one event to a
//! function binary and measures, from process spawn,
//!   init  = until its first `GET /runtime/invocation/next` (ready to work), and
//!   first = until it posts the response to that event.
//! With `--baseline`, the empty function is measured in the same run, interleaved, and
//! the ratio of medians is printed. `AWS_ENDPOINT_URL` points at the emulator too, so any
//! AWS call the function makes (at init or while answering) is seen and reported.
//!
//! ```text
//! coldstart --event events/health/unknown-route.json --runs 20 \
//!   --baseline target/release/bench-empty target/release/health [--env K=V]... [--json]
//! ```

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

enum Seen {
    Next(Instant),
    Response(Instant, String),
    Error(Instant, String),
    Unexpected(String),
}

struct Args {
    event: String,
    runs: usize,
    baseline: Option<String>,
    function: String,
    env: Vec<(String, String)>,
    json: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut event, mut runs, mut baseline, mut function, mut env, mut json) =
        (None, 20, None, None, Vec::new(), false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--event" => event = args.next(),
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--baseline" => baseline = args.next(),
            "--env" => {
                let pair = args.next().context("--env KEY=VALUE")?;
                let (k, v) = pair.split_once('=').context("--env KEY=VALUE")?;
                env.push((k.to_string(), v.to_string()));
            }
            "--json" => json = true,
            other if !other.starts_with("--") => function = Some(other.to_string()),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        event: std::fs::read_to_string(event.context("--event FILE is required")?)?,
        runs: runs.max(1),
        baseline,
        function: function.context("the function binary is required")?,
        env,
        json,
    })
}

/// Reads one HTTP/1.1 request (head and Content-Length body).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn serve(stream: TcpStream, event: String, seen: mpsc::Sender<Seen>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut served = false;
    while let Some((method, path, body)) = read_request(&mut reader) {
        match (method.as_str(), path.as_str()) {
            ("GET", "/2018-06-01/runtime/invocation/next") => {
                let _ = seen.send(Seen::Next(Instant::now()));
                if served {
                    // The second poll: hold it, as Lambda does between events.
                    std::thread::sleep(TIMEOUT);
                    return;
                }
                served = true;
                let deadline = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() + 30_000)
                    .unwrap_or_default();
                let headers = [
                    ("content-type", "application/json".to_string()),
                    (
                        "lambda-runtime-aws-request-id",
                        "bench-request-1".to_string(),
                    ),
                    ("lambda-runtime-deadline-ms", deadline.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:000000000000:function:bench".to_string(),
                    ),
                    (
                        "lambda-runtime-trace-id",
                        "Root=1-00000000-000000000000000000000000;Sampled=0".to_string(),
                    ),
                ];
                respond(&mut writer, "200 OK", &headers, event.as_bytes());
            }
            ("POST", p) if p.ends_with("/response") => {
                let _ = seen.send(Seen::Response(
                    Instant::now(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                respond(&mut writer, "202 Accepted", &[], b"{}");
            }
            ("POST", p) if p.ends_with("/error") => {
                let _ = seen.send(Seen::Error(
                    Instant::now(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                respond(&mut writer, "202 Accepted", &[], b"{}");
            }
            _ => {
                let _ = seen.send(Seen::Unexpected(format!("{method} {path}")));
                respond(&mut writer, "400 Bad Request", &[], b"{}");
            }
        }
    }
}

struct Sample {
    init: Duration,
    first: Duration,
    /// Requests to the emulator that are not the Runtime API's (AWS calls).
    unexpected: Vec<String>,
    /// How many of those came before the function was ready (network calls at init).
    calls_at_init: usize,
    /// The answer, summarized: an HTTP status, a batch's failures, or an error's type.
    answer: String,
}

fn measure(binary: &str, event: &str, env: &[(String, String)]) -> Result<Sample> {
    measure_with(binary, event, env, false)
}

/// One cold start of `binary` serving `event`. With `error_ends`, an invocation error
/// posted by the function ends the run like a response (the init-only runs of the
/// suite serve one event to functions of every kind).
fn measure_with(
    binary: &str,
    event: &str,
    env: &[(String, String)],
    error_ends: bool,
) -> Result<Sample> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let event = event.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (event, tx) = (event.clone(), tx.clone());
            std::thread::spawn(move || serve(stream, event, tx));
        }
    });
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_ENDPOINT_URL", format!("http://{address}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let (mut init, mut first, mut unexpected) = (None, None, Vec::new());
    let (mut calls_at_init, mut answer) = (0, String::new());
    let outcome = loop {
        match rx.recv_timeout(TIMEOUT) {
            Ok(Seen::Next(at)) if init.is_none() => init = Some(at - started),
            Ok(Seen::Next(_)) => {}
            Ok(Seen::Response(at, body)) => {
                first = Some(at - started);
                answer = summarize(&body);
                break Ok(());
            }
            Ok(Seen::Error(at, body)) if error_ends => {
                first = Some(at - started);
                answer = summarize_error(&body);
                break Ok(());
            }
            Ok(Seen::Error(_, body)) => {
                break Err(anyhow::anyhow!("{binary} reported an error: {body}"))
            }
            Ok(Seen::Unexpected(request)) => {
                if init.is_none() {
                    calls_at_init += 1;
                }
                unexpected.push(request)
            }
            Err(_) => {
                break Err(anyhow::anyhow!(
                    "{binary} did not answer within {TIMEOUT:?}"
                ))
            }
        }
    };
    let _ = child.kill();
    let output = child.wait_with_output()?;
    if let Err(err) = outcome {
        bail!("{err}\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(Sample {
        init: init.context("no init")?,
        first: first.context("no response")?,
        unexpected,
        calls_at_init,
        answer,
    })
}

/// An HTTP response's status code, a batch response's failures, or "ok".
fn summarize(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if let Some(status) = value.get("statusCode").and_then(|s| s.as_u64()) {
        return status.to_string();
    }
    if let Some(failures) = value.get("batchItemFailures").and_then(|f| f.as_array()) {
        return format!("{} failed", failures.len());
    }
    "ok".to_string()
}

fn summarize_error(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let kind = value
        .get("errorType")
        .and_then(|t| t.as_str())
        .unwrap_or("?");
    format!("error ({})", kind.rsplit("::").next().unwrap_or(kind))
}

pub(crate) fn stats(mut values: Vec<Duration>) -> (f64, f64, f64) {
    values.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(values[((values.len() - 1) as f64 * q).round() as usize]);
    (ms(values[0]), at(0.5), at(0.9))
}

struct Report {
    binary: String,
    size: u64,
    init: (f64, f64, f64),
    first: (f64, f64, f64),
    unexpected: Vec<String>,
}

fn report(binary: &str, samples: &[Sample]) -> Result<Report> {
    let mut unexpected: Vec<String> = samples.iter().flat_map(|s| s.unexpected.clone()).collect();
    unexpected.sort();
    unexpected.dedup();
    Ok(Report {
        binary: binary.to_string(),
        size: std::fs::metadata(binary)?.len(),
        init: stats(samples.iter().map(|s| s.init).collect()),
        first: stats(samples.iter().map(|s| s.first).collect()),
        unexpected,
    })
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--suite") {
        return suite::run();
    }
    let args = parse_args()?;
    let binaries: Vec<String> = args
        .baseline
        .iter()
        .cloned()
        .chain([args.function.clone()])
        .collect();
    let mut samples: Vec<Vec<Sample>> = binaries.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.runs {
        // Interleaved, so both binaries share the machine's noise.
        for (i, binary) in binaries.iter().enumerate() {
            samples[i].push(measure(binary, &args.event, &args.env)?);
        }
    }
    let reports = binaries
        .iter()
        .zip(&samples)
        .map(|(b, s)| report(b, s))
        .collect::<Result<Vec<_>>>()?;
    let ratio = (reports.len() == 2).then(|| {
        (
            reports[1].init.1 / reports[0].init.1,
            reports[1].first.1 / reports[0].first.1,
        )
    });
    if args.json {
        let entries: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "binary": r.binary, "size_bytes": r.size,
                    "init_ms": {"min": r.init.0, "median": r.init.1, "p90": r.init.2},
                    "first_response_ms": {"min": r.first.0, "median": r.first.1, "p90": r.first.2},
                    "unexpected_requests": r.unexpected,
                })
            })
            .collect();
        let ratio = ratio.map(|(i, f)| serde_json::json!({"init": i, "first_response": f}));
        println!(
            "{}",
            serde_json::json!({"runs": args.runs, "results": entries, "median_ratio": ratio})
        );
    } else {
        println!("{} runs each", args.runs);
        for r in &reports {
            println!(
                "{}: {:.1} MiB; init min/median/p90 {:.2}/{:.2}/{:.2} ms; first response {:.2}/{:.2}/{:.2} ms",
                r.binary,
                r.size as f64 / 1048576.0,
                r.init.0, r.init.1, r.init.2,
                r.first.0, r.first.1, r.first.2
            );
            if !r.unexpected.is_empty() {
                println!("  unexpected requests (network calls): {:?}", r.unexpected);
            }
        }
        if let Some((init, first)) = ratio {
            println!("median ratio function/baseline: init {init:.2}x, first response {first:.2}x");
        }
    }
    Ok(())
}

#[path = "coldstart/suite.rs"]
mod suite;
