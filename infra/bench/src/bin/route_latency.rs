//! Warm latency per route: a bounded loopback load run against a fresh local stack.
//! Every read route a patient uses day to day is called by many patients, each with
//! their own data (a profile, a contact, a conversation with a message from their
//! provider, a day of heart rates), first once to warm, then `rounds` times measured,
//! with `concurrency` requests in flight. Reports requests, p50 and p99 per route, and
//! exits non-zero on any answer that is not a 2xx.
//!
//! Accounts, not rounds, carry the load: the general rate limit (100 requests per 15
//! minutes per account) is never lifted, so each patient makes at most 2 + 2 x routes
//! requests. Bounded at 100 patients and 5 rounds.
//!
//! Usage: `cargo run --release -p docare-bench --features local-stack --bin route-latency --
//! [patients] [rounds] [concurrency]` (defaults 40, 2, 4).

#[path = "../local_load.rs"]
mod local_load;

use anyhow::{bail, Context};
use futures::StreamExt;
use local_load::{percentile, start_stack, token};
use serde_json::{json, Value};
use shared::auth::{care, Role};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MAX_PATIENTS: usize = 100;
const MAX_ROUNDS: usize = 5;

/// One patient: their token and the paths of their own data.
struct Patient {
    token: String,
    conversation: String,
}

/// The routes measured: (label, path) for a patient.
fn routes(p: &Patient, from: &str, to: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GET /health", "/health".into()),
        ("GET /api/v1/users/me", "/api/v1/users/me".into()),
        (
            "GET /api/v1/users/me/profile",
            "/api/v1/users/me/profile".into(),
        ),
        (
            "GET /api/v1/emergency/contacts",
            "/api/v1/emergency/contacts".into(),
        ),
        ("GET /api/v1/medications", "/api/v1/medications".into()),
        ("GET /api/v1/appointments", "/api/v1/appointments".into()),
        (
            "GET /api/v1/care-relationships",
            "/api/v1/care-relationships".into(),
        ),
        ("GET /api/v1/providers", "/api/v1/providers".into()),
        ("GET /api/v1/conversations", "/api/v1/conversations".into()),
        (
            "GET /api/v1/conversations/{id}/messages",
            format!("/api/v1/conversations/{}/messages", p.conversation),
        ),
        ("GET /api/v1/sync", "/api/v1/sync?since=0".into()),
        ("GET /api/v1/documents", "/api/v1/documents".into()),
        (
            "GET /api/v1/observations",
            format!("/api/v1/observations?code=8867-4&from={from}&to={to}&resolution=1h"),
        ),
    ]
}

async fn ok(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{what}: {status} {body}");
    }
    Ok(body)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("arguments are numbers"))
        .collect::<anyhow::Result<_>>()?;
    let patients = args.first().copied().unwrap_or(40);
    let rounds = args.get(1).copied().unwrap_or(2);
    let concurrency = args.get(2).copied().unwrap_or(4);
    if !(1..=MAX_PATIENTS).contains(&patients)
        || !(1..=MAX_ROUNDS).contains(&rounds)
        || !(1..=64).contains(&concurrency)
    {
        bail!("patients: 1..={MAX_PATIENTS}; rounds: 1..={MAX_ROUNDS}; concurrency: 1..=64");
    }
    let (stack, _data) = start_stack().await?;
    let app = stack.parts.app.clone();
    let base = stack.http_url();
    let http = reqwest::Client::new();
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(24))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let to = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();

    // Each patient with their own data, as the routes read it.
    let mut people = Vec::new();
    for n in 0..patients {
        let patient = docare_local::accounts::create(
            &app,
            &format!("p{n}@latency.example"),
            "Latency Patient",
            Role::Patient,
            false,
        )
        .await?;
        let provider = docare_local::accounts::create(
            &app,
            &format!("d{n}@latency.example"),
            "Latency Provider",
            Role::Provider,
            false,
        )
        .await?;
        care::start(&app, &provider.id, &patient.id, "admin", None)
            .await
            .map_err(|e| anyhow::anyhow!("care: {e}"))?;
        let pt = token(&app, &patient.id, Role::Patient, &["pwd"]).await?;
        let dt = token(&app, &provider.id, Role::Provider, &["pwd", "mfa"]).await?;
        let url = |path: &str| format!("{base}{path}");
        ok(
            http.post(url("/api/v1/emergency/contacts"))
                .bearer_auth(&pt)
                .json(&json!({"name": "Sam Sibling", "relationship": "brother", "phone": "+14155550199"}))
                .send()
                .await?,
            "contact",
        )
        .await?;
        let conversation = ok(
            http.post(url("/api/v1/conversations"))
                .bearer_auth(&pt)
                .json(&json!({"participant_ids": [provider.id]}))
                .send()
                .await?,
            "conversation",
        )
        .await?["id"]
            .as_str()
            .context("a conversation id")?
            .to_string();
        ok(
            http.post(url(&format!(
                "/api/v1/conversations/{conversation}/messages"
            )))
            .bearer_auth(&dt)
            .json(&json!({"client_message_id": "hello", "body": "How are you feeling today?"}))
            .send()
            .await?,
            "message",
        )
        .await?;
        let samples: Vec<Value> = (0..24 * 12)
            .map(|i| {
                let at = now - chrono::Duration::minutes(5 * i);
                json!({"id": format!("hr-{i}"), "code": "8867-4", "value": 60 + (i % 30),
                    "unit": "/min", "effective": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "source": "bench"})
            })
            .collect();
        ok(
            http.post(url("/api/v1/observations/batch"))
                .bearer_auth(&pt)
                .json(&json!({"samples": samples}))
                .send()
                .await?,
            "observations",
        )
        .await?;
        people.push(Patient {
            token: pt,
            conversation,
        });
    }

    // One warm-up call per patient and route, then the measured rounds.
    let mut calls = Vec::new();
    for round in 0..=rounds {
        for p in &people {
            for (label, path) in routes(p, &from, &to) {
                calls.push((round, label, format!("{base}{path}"), p.token.clone()));
            }
        }
    }
    let started = Instant::now();
    let results: Vec<(usize, &str, u16, Duration)> = futures::stream::iter(calls)
        .map(|(round, label, url, token)| {
            let http = http.clone();
            async move {
                let sent = Instant::now();
                let status = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                (round, label, status, sent.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut by_route: BTreeMap<&str, (Vec<Duration>, usize)> = BTreeMap::new();
    let mut failed = 0;
    for (round, label, status, took) in results {
        let entry = by_route.entry(label).or_default();
        if !(200..300).contains(&status) {
            entry.1 += 1;
            failed += 1;
        } else if round > 0 {
            entry.0.push(took);
        }
    }
    println!(
        "{patients} patients, {rounds} measured rounds after one warm-up, {concurrency} in flight, {:.1} s in all\n",
        elapsed.as_secs_f64()
    );
    println!("| route | requests | p50 ms | p99 ms | not 2xx |");
    println!("|---|---:|---:|---:|---:|");
    for (label, (mut took, errors)) in by_route {
        took.sort();
        println!(
            "| `{label}` | {} | {:.2} | {:.2} | {errors} |",
            took.len(),
            percentile(&took, 50.0).as_secs_f64() * 1000.0,
            percentile(&took, 99.0).as_secs_f64() * 1000.0,
        );
    }
    if failed > 0 {
        bail!("{failed} answers were not 2xx");
    }
    Ok(())
}
