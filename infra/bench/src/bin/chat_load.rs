//! The messaging load benchmark: N clients in N/2 conversations (a patient and their
//! provider each) exchange M messages apiece over the local stack's WebSocket API, on
//! loopback only, bounded in count and time. Reports sent, delivered (received by the
//! other participant), duplicates, and p50/p99 delivery latency (send frame written to
//! `message:received` read), then checks the store: one message per client message id.
//!
//! Usage: `cargo run -p docare-bench --bin chat-load -- [clients] [messages]`
//! (defaults 20 and 50; at most 100 clients and 60 messages, the per-account chat limit
//! per minute).

#[path = "../local_load.rs"]
mod local_load;

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use local_load::{percentile, start_stack, token};
use serde_json::{json, Value};
use shared::auth::{care, Role};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const MAX_CLIENTS: usize = 100;
const MAX_MESSAGES: usize = 60;
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Tally {
    /// Client message id -> when its frame was written.
    sent: HashMap<String, Instant>,
    /// Client message id -> how many times the other participant received it.
    received: HashMap<String, usize>,
    latencies: Vec<Duration>,
    acknowledged: usize,
    /// Sends answered by an error frame and sent again with the same id.
    resends: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("arguments are numbers"))
        .collect::<anyhow::Result<_>>()?;
    let clients = args.first().copied().unwrap_or(20);
    let messages = args.get(1).copied().unwrap_or(50);
    if !(2..=MAX_CLIENTS).contains(&clients)
        || clients % 2 != 0
        || messages == 0
        || messages > MAX_MESSAGES
    {
        bail!("clients: an even number 2..={MAX_CLIENTS}; messages: 1..={MAX_MESSAGES}");
    }
    let (stack, _data) = start_stack().await?;
    let app = stack.parts.app.clone();
    let http = reqwest::Client::new();

    // Pairs: a patient and their provider in one conversation.
    let mut people = Vec::new();
    for pair in 0..clients / 2 {
        let patient = docare_local::accounts::create(
            &app,
            &format!("p{pair}@bench.example"),
            "Bench Patient",
            Role::Patient,
            false,
        )
        .await?;
        let provider = docare_local::accounts::create(
            &app,
            &format!("d{pair}@bench.example"),
            "Bench Provider",
            Role::Provider,
            false,
        )
        .await?;
        care::start(&app, &provider.id, &patient.id, "admin", None)
            .await
            .map_err(|e| anyhow::anyhow!("care: {e}"))?;
        let pt = token(&app, &patient.id, Role::Patient, &["pwd"]).await?;
        let dt = token(&app, &provider.id, Role::Provider, &["pwd", "mfa"]).await?;
        let created: Value = http
            .post(format!("{}/api/v1/conversations", stack.http_url()))
            .bearer_auth(&pt)
            .json(&json!({"participant_ids": [provider.id]}))
            .send()
            .await?
            .json()
            .await?;
        let conversation = created["id"]
            .as_str()
            .context("a conversation")?
            .to_string();
        people.push((format!("p{pair}"), pt, conversation.clone()));
        people.push((format!("d{pair}"), dt, conversation));
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut sockets = Vec::new();
    for (name, token, conversation) in &people {
        let mut request = stack.ws_url().into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        sockets.push((name.clone(), conversation.clone(), socket));
    }

    // Closed loop per client: send, wait for the acknowledgement (an error frame, e.g. a
    // 503 when the conversation was busy, is answered by resending with the same client
    // message id, as a client does), then the next; meanwhile count what the peer sends.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (name, conversation, mut socket) in sockets {
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let mut received_from_peer = 0;
            let mut k = 0;
            let mut pending: Option<String> = None;
            let deadline = Instant::now() + DEADLINE;
            while (k < messages || pending.is_some() || received_from_peer < messages)
                && Instant::now() < deadline
            {
                if pending.is_none() && k < messages {
                    let id = format!("{name}-{k}");
                    k += 1;
                    let frame = json!({"action": "message:send", "conversation_id": conversation,
                        "client_message_id": id, "body": format!("Benchmark message {id}")});
                    tally
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .sent
                        .insert(id.clone(), Instant::now());
                    if socket
                        .send(Message::Text(frame.to_string().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    pending = Some(id);
                }
                let Ok(Some(Ok(frame))) =
                    tokio::time::timeout(Duration::from_secs(20), socket.next()).await
                else {
                    break;
                };
                let Message::Text(text) = frame else { continue };
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let resend = {
                    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                    match frame["type"].as_str() {
                        Some("message:received") => {
                            let id = frame["data"]["client_message_id"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string();
                            if let Some(at) = t.sent.get(&id).copied() {
                                t.latencies.push(at.elapsed());
                            }
                            *t.received.entry(id).or_default() += 1;
                            received_from_peer += 1;
                            false
                        }
                        Some("message:delivered") => {
                            t.acknowledged += 1;
                            pending = None;
                            false
                        }
                        Some("error") => {
                            t.resends += 1;
                            true
                        }
                        _ => false,
                    }
                };
                if let (true, Some(id)) = (resend, &pending) {
                    let frame = json!({"action": "message:send", "conversation_id": conversation,
                        "client_message_id": id, "body": format!("Benchmark message {id}")});
                    if socket
                        .send(Message::Text(frame.to_string().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
            let _ = socket.close(None).await;
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();

    let (sent, acknowledged, resends, delivered, duplicates, latencies) = {
        let t = tally.lock().unwrap_or_else(|e| e.into_inner());
        let delivered = t
            .sent
            .keys()
            .filter(|id| t.received.contains_key(*id))
            .count();
        let duplicates: usize = t.received.values().map(|n| n.saturating_sub(1)).sum();
        let mut latencies = t.latencies.clone();
        latencies.sort();
        (
            t.sent.len(),
            t.acknowledged,
            t.resends,
            delivered,
            duplicates,
            latencies,
        )
    };
    // The store: one message per client message id, in each conversation.
    let mut stored = 0;
    for (_, token, conversation) in people.iter().step_by(2) {
        let mut before: Option<i64> = None;
        loop {
            let mut url = format!(
                "{}/api/v1/conversations/{conversation}/messages?limit=100",
                stack.http_url()
            );
            if let Some(b) = before {
                url.push_str(&format!("&before={b}"));
            }
            let page: Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            stored += page["items"].as_array().map_or(0, Vec::len);
            match page["next_before"].as_i64() {
                Some(b) => before = Some(b),
                None => break,
            }
        }
    }
    println!(
        "clients {clients}, messages per client {messages}, conversations {}",
        clients / 2
    );
    println!("sent {sent}, resent after an error {resends}, acknowledged {}, delivered {delivered} ({:.1}%), duplicates {duplicates}, stored {stored}",
        acknowledged, 100.0 * delivered as f64 / sent.max(1) as f64);
    println!(
        "delivery latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "wall {:.2} s, {:.0} messages/s",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    stack.stop().await;
    if delivered != sent || duplicates != 0 || stored != sent {
        bail!("lost or duplicated messages");
    }
    Ok(())
}
