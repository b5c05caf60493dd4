//! Envelope encryption (DESIGN §6) on the local adapters: encrypt and decrypt of one
//! typical field (32 bytes) and of a 1 MiB document with a warm data-key cache — the
//! steady state of a warm Lambda — and the KMS calls 1,000 writes cost, counted by
//! `MeteredKeys` (KMS latency itself is not measured: the local key ring stands in).
//!
//! `cargo bench -p docare-bench --bench crypto` (release profile, as deployed).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::adapters::local::{LocalKeyring, LocalStore};
use shared::clock::{Clock, SystemClock};
use shared::crypto::{Binding, CachePolicy, Envelope, KmsCalls, MeteredKeys};
use shared::ports::{Database, KeyService};
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const KEY_ID: &str = "local/bench";

struct Bench {
    db: Arc<dyn Database>,
    keys: Arc<dyn KeyService>,
    _dir: tempfile::TempDir,
}

fn bench_stores() -> Bench {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = LocalStore::open(&dir.path().join("store.redb"), clock)
        .unwrap_or_else(|e| panic!("store: {e}"));
    let ring = LocalKeyring::open(&dir.path().join("keyring.json"))
        .unwrap_or_else(|e| panic!("key ring: {e}"));
    ring.create_key(KEY_ID)
        .unwrap_or_else(|e| panic!("key: {e}"));
    Bench {
        db: Arc::new(db),
        keys: Arc::new(ring),
        _dir: dir,
    }
}

/// A fresh process's envelope service (empty caches), metered.
fn envelope(bench: &Bench) -> (Envelope, Arc<KmsCalls>) {
    let metered = MeteredKeys::new(bench.keys.clone());
    let calls = metered.calls();
    let envelope = Envelope::new(
        Arc::new(metered),
        bench.db.clone(),
        Arc::new(SystemClock),
        "docare",
        KEY_ID,
        "bench",
        CachePolicy::default(),
    );
    (envelope, calls)
}

fn at(pk: &str) -> Binding<'_> {
    Binding {
        table: "docare",
        pk,
        sk: "PROFILE",
        attribute: "notes",
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn encrypt_decrypt(c: &mut Criterion) {
    let rt = runtime();
    let bench = bench_stores();
    let (envelope, calls) = envelope(&bench);
    let place = at("USER#01JBENCH");
    let mut group = c.benchmark_group("envelope");
    for (name, size) in [("32 B", 32usize), ("1 MiB", 1 << 20)] {
        let plaintext = vec![0x5a; size];
        // Warm the caches: one data key generated, and the same key used to decrypt.
        let sealed = rt
            .block_on(envelope.encrypt(&place, &plaintext))
            .unwrap_or_else(|e| panic!("encrypt: {e}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encrypt", name), &plaintext, |b, p| {
            b.iter(|| rt.block_on(envelope.encrypt(black_box(&place), black_box(p))))
        });
        group.bench_with_input(BenchmarkId::new("decrypt", name), &sealed, |b, s| {
            b.iter(|| rt.block_on(envelope.decrypt(black_box(&place), black_box(s))))
        });
    }
    group.finish();
    let generated = calls.generate_data_key.load(Ordering::Relaxed);
    let unwrapped = calls.decrypt.load(Ordering::Relaxed);
    // Warm means no KMS round trip inside the loops; a rotation after `max_uses`
    // encryptions adds one GenerateDataKey, which is part of the steady state too.
    println!("KMS calls during the timed loops: GenerateDataKey {generated}, Decrypt {unwrapped}");
}

/// Not a timing: the KMS calls 1,000 writes (and 1,000 reads in a fresh process) make.
fn kms_calls_per_thousand_writes(_: &mut Criterion) {
    let rt = runtime();
    let bench = bench_stores();
    let (writer, write_calls) = envelope(&bench);
    let mut sealed = Vec::with_capacity(1000);
    for i in 0..1000 {
        let pk = format!("USER#{i}");
        let value = rt
            .block_on(writer.encrypt(&at(&pk), b"1980-01-01"))
            .unwrap_or_else(|e| panic!("encrypt: {e}"));
        sealed.push((pk, value));
    }
    let (reader, read_calls) = envelope(&bench);
    for (pk, value) in &sealed {
        rt.block_on(reader.decrypt(&at(pk), value))
            .unwrap_or_else(|e| panic!("decrypt: {e}"));
    }
    println!(
        "KMS calls per 1,000 writes: {} (GenerateDataKey {}); per 1,000 reads in a fresh process: {} (Decrypt {})",
        write_calls.total(),
        write_calls.generate_data_key.load(Ordering::Relaxed),
        read_calls.total(),
        read_calls.decrypt.load(Ordering::Relaxed),
    );
}

criterion_group!(benches, encrypt_decrypt, kms_calls_per_thousand_writes);
criterion_main!(benches);
