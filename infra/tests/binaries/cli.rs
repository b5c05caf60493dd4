//! The `docare-local` binary as a developer uses it: one command starts it, bad
//! settings stop it with one line, and a signal stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_docare-local");

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_them() {
    /// (arguments, environment, the setting the message must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (&["--port", "abc"], &[], "--port"),
        (
            &[],
            &[("DOCARE_LOCAL_WS_PORT", "70000")],
            "DOCARE_LOCAL_WS_PORT",
        ),
        (&["--colour"], &[], "--colour"),
    ];
    for (args, env, name) in cases {
        let output = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn starts_serves_health_and_stops_cleanly_on_sigterm() {
    let data = tempfile::tempdir().expect("dir");
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--ws-port", "0", "--data-dir"])
        .arg(data.path())
        .env("DOCARE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut rest_url = None;
    let mut ws_url = None;
    let started = Instant::now();
    while rest_url.is_none() || ws_url.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prints its URLs"
        );
        let line = lines.next().expect("a line").expect("utf8");
        if let Some(url) = line.trim().strip_prefix("REST API:") {
            rest_url = Some(url.trim().to_string());
        }
        if let Some(url) = line.trim().strip_prefix("WebSocket:") {
            ws_url = Some(url.trim().to_string());
        }
    }
    let rest_url = rest_url.expect("rest url");
    assert!(ws_url.expect("ws url").starts_with("ws://127.0.0.1:"));

    let body = http_get(&rest_url, "/health");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "clean exit: {status:?}");
    let tail: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        tail.iter().any(|l| l.starts_with("stopped; data kept")),
        "{tail:?}"
    );
    assert!(data.path().join("store.redb").exists());
    assert!(data.path().join("keyring.json").exists());
}

/// A minimal HTTP/1.1 GET, so this test needs no client library.
fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    response
}

/// A WebSocket ticket travels in the handshake's query string: neither the local
/// gateway nor the function logs it (or any query string), at the most verbose level,
/// for a refused ticket, a refused origin or a handshake without a credential.
#[test]
fn websocket_tickets_in_query_strings_never_reach_the_logs() {
    let data = tempfile::tempdir().expect("dir");
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--ws-port", "0", "--data-dir"])
        .arg(data.path())
        .env("DOCARE_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let ws_url = loop {
        let line = lines.next().expect("a line").expect("utf8");
        seen.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("WebSocket:") {
            break url.trim().to_string();
        }
    };
    let addr = ws_url.trim_start_matches("ws://").to_string();
    let marker = "TicketMarker0123456789abcdefghijklmnopqrstu";
    for (query, origin, status) in [
        (format!("ticket={marker}"), None, "401"),
        (
            format!("ticket={marker}&x=QueryMarker"),
            Some("https://evil.example"),
            "403",
        ),
        (format!("other={marker}"), None, "401"),
    ] {
        let answer = handshake(&addr, &format!("/?{query}"), origin);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(!answer.contains(marker), "{answer}");
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(child.wait().expect("exits").success());
    seen.extend(lines.map_while(Result::ok));
    let logs = format!("{}\n{}", seen.join("\n"), errors.join().expect("stderr"));
    assert!(
        logs.contains("websocket event"),
        "the handshakes were logged at all: {logs}"
    );
    assert!(!logs.contains(marker), "a ticket reached the logs:\n{logs}");
    assert!(
        !logs.contains("QueryMarker"),
        "a query string reached the logs"
    );
}

/// A WebSocket opening handshake over a plain TCP stream; the response head.
fn handshake(addr: &str, path: &str, origin: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
    .expect("writes");
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}
