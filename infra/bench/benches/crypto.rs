//! Envelope encryption (DESIGN §6) on the local adapters: encrypt and decrypt of one
//! typical field (32 bytes) and of a 1 MiB document with a warm key cache — the
//! steady state of a warm Lambda — and the KMS calls 1,000 writes cost, counted by
//! `MeteredKeys` (KMS latency itself is not measured: the local key ring stands in);
//! the per-field cost on aws-lc-rs (format v2) beside RustCrypto's aes-gcm (format v1)
//! in the same run; the KMS calls of a cold instance reading 100 PHI items written over
//! a simulated month by 100 instances, with branch keys (v2) and with per-instance data
//! keys (v1).
//!
//! `cargo bench -p docare-bench --bench crypto` (release profile, as deployed).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shared::adapters::local::{LocalKeyring, LocalStore};
use shared::clock::{Clock, ManualClock, SystemClock};
use shared::crypto::envelope::Purpose;
use shared::crypto::{format, frames, Binding, CachePolicy, Envelope, KmsCalls, MeteredKeys};
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

/// One field (32 bytes) sealed and opened four ways, in one run: the two formats (HKDF,
/// random message id and nonce, associated data, AES-256-GCM) and raw AES-256-GCM of
/// each library. Criterion's figures, then a table (median of 15 batches of 20,000).
fn fields(c: &mut Criterion) {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let key = [7u8; 32];
    let id = [1u8; 16];
    let place = at("USER#01JBENCH");
    let plain = [0x5au8; 32];
    let v1 = format::seal(&id, &key, &place, &plain).unwrap_or_else(|e| panic!("{e}"));
    let v2 = format::seal_branch(&id, &key, &place, &plain).unwrap_or_else(|e| panic!("{e}"));
    let lc = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key)
            .unwrap_or_else(|e| panic!("key: {e}")),
    );
    let rc = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap_or_else(|e| panic!("{e}"));
    type Op<'a> = Box<dyn Fn() + 'a>;
    fn op<'a>(f: impl Fn() + 'a) -> Op<'a> {
        Box::new(f)
    }
    let ops: Vec<(&str, Op)> = vec![
        (
            "v2 seal (aws-lc-rs)",
            op(|| {
                black_box(format::seal_branch(&id, &key, &place, black_box(&plain)).ok());
            }),
        ),
        (
            "v1 seal (RustCrypto aes-gcm)",
            op(|| {
                black_box(format::seal(&id, &key, &place, black_box(&plain)).ok());
            }),
        ),
        (
            "v2 open (aws-lc-rs)",
            op(|| {
                let parsed = format::parse(black_box(&v2)).ok();
                black_box(parsed.map(|e| format::open(&e, &key, &place)));
            }),
        ),
        (
            "v1 open (RustCrypto aes-gcm)",
            op(|| {
                let parsed = format::parse(black_box(&v1)).ok();
                black_box(parsed.map(|e| format::open(&e, &key, &place)));
            }),
        ),
        (
            "raw AES-256-GCM seal, aws-lc-rs",
            op(|| {
                let mut buf = black_box(plain);
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]);
                black_box(
                    lc.seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), &mut buf)
                        .ok(),
                );
            }),
        ),
        (
            "raw AES-256-GCM seal, RustCrypto aes-gcm",
            op(|| {
                let mut buf = black_box(plain);
                black_box(
                    rc.encrypt_in_place_detached(&aes_gcm::Nonce::default(), b"", &mut buf)
                        .ok(),
                );
            }),
        ),
    ];
    let mut group = c.benchmark_group("field 32 B");
    for (name, op) in &ops {
        group.bench_function(*name, |b| b.iter(op));
    }
    group.finish();
    const BATCH: u32 = 20_000;
    println!("\n| one 32 B field, median of 15 batches | ns |\n|---|---:|");
    for (name, op) in &ops {
        let mut batches: Vec<f64> = (0..15)
            .map(|_| {
                let start = std::time::Instant::now();
                for _ in 0..BATCH {
                    op();
                }
                start.elapsed().as_nanos() as f64 / f64::from(BATCH)
            })
            .collect();
        batches.sort_by(f64::total_cmp);
        println!("| {name} | {:.0} |", batches[batches.len() / 2]);
    }
}

/// Not a timing: the KMS calls a cold instance makes to read 100 items written over a
/// simulated month (from the 16th) by 100 cold instances, one after the other.
fn kms_calls_of_a_cold_read_of_a_month(_: &mut Criterion) {
    let rt = runtime();
    for (purpose, label) in [
        (Purpose::Phi, "branch keys (v2, PHI)"),
        (Purpose::Notification, "data keys (v1, per instance)"),
    ] {
        let bench = bench_stores();
        let start = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 16, 9, 0, 0)
            .single()
            .unwrap_or_else(|| panic!("instant"));
        let clock = Arc::new(ManualClock::new(start));
        let instance = |keys: Arc<dyn KeyService>| {
            Envelope::new(
                keys,
                bench.db.clone(),
                clock.clone(),
                "docare",
                KEY_ID,
                "bench",
                CachePolicy::default(),
            )
            .with_purpose(purpose)
        };
        let mut sealed = Vec::with_capacity(100);
        for i in 0..100 {
            let pk = format!("USER#{i}");
            let value = rt
                .block_on(instance(bench.keys.clone()).encrypt(&at(&pk), b"1980-01-01"))
                .unwrap_or_else(|e| panic!("encrypt: {e}"));
            sealed.push((pk, value));
            clock.advance(chrono::Duration::seconds(30 * 86_400 / 100));
        }
        let metered = MeteredKeys::new(bench.keys.clone());
        let calls = metered.calls();
        let reader = instance(Arc::new(metered));
        for (pk, value) in &sealed {
            rt.block_on(reader.decrypt(&at(pk), value))
                .unwrap_or_else(|e| panic!("decrypt: {e}"));
        }
        println!(
            "KMS calls of a cold instance reading 100 items written over 30 days by 100 instances, {label}: {} (Decrypt {})",
            calls.total(),
            calls.decrypt.load(Ordering::Relaxed),
        );
    }
}

const DOC_LEN: usize = 8 << 20;
const DOC_ID: &str = "01JBENCHDOCUMENT0000000000";

/// The four ways of encrypting 8 MiB, each a closure doing one pass.
struct Contenders {
    plain: Vec<u8>,
    sealed_frames: Vec<u8>,
    lc: aws_lc_rs::aead::LessSafeKey,
    rc: aes_gcm::Aes256Gcm,
}

impl Contenders {
    fn new() -> Self {
        use aes_gcm::KeyInit;
        let plain = vec![0x5a; DOC_LEN];
        let sealed_frames = frames::seal_all([1; 16], &[7; 32], DOC_ID, &plain)
            .unwrap_or_else(|e| panic!("seal: {e}"));
        let lc = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[7; 32])
                .unwrap_or_else(|e| panic!("key: {e}")),
        );
        let rc = aes_gcm::Aes256Gcm::new_from_slice(&[7; 32]).unwrap_or_else(|e| panic!("{e}"));
        Self {
            plain,
            sealed_frames,
            lc,
            rc,
        }
    }

    /// Our framing, streamed in 1 MiB chunks as the scanner feeds it.
    fn framed_seal(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut sealer = frames::Sealer::new([1; 16], &[7; 32], DOC_ID)
            .unwrap_or_else(|e| panic!("sealer: {e}"));
        for chunk in self.plain.chunks(1 << 20) {
            sealer.update(chunk, out);
        }
        sealer.finish(out);
    }

    fn framed_open(&self, out: &mut Vec<u8>) {
        out.clear();
        let header = frames::Header::parse(&self.sealed_frames).unwrap_or_else(|e| panic!("{e}"));
        let mut opener = frames::Opener::new(&header, &[7; 32], DOC_ID)
            .unwrap_or_else(|e| panic!("opener: {e}"));
        for chunk in self.sealed_frames.chunks(1 << 20) {
            opener
                .update(chunk, out)
                .unwrap_or_else(|e| panic!("open: {e}"));
        }
        opener.finish(out).unwrap_or_else(|e| panic!("open: {e}"));
    }

    /// One AES-256-GCM call over the whole buffer, in place: the ceiling.
    fn aws_lc_seal(&self, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&self.plain);
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]);
        let tag = self
            .lc
            .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), buf)
            .unwrap_or_else(|e| panic!("seal: {e}"));
        black_box(tag.as_ref().len());
    }

    fn aes_gcm_seal(&self, buf: &mut Vec<u8>) {
        use aes_gcm::aead::AeadInPlace;
        buf.clear();
        buf.extend_from_slice(&self.plain);
        let tag = self
            .rc
            .encrypt_in_place_detached(&aes_gcm::Nonce::default(), b"", buf)
            .unwrap_or_else(|e| panic!("seal: {e}"));
        black_box(tag.len());
    }
}

/// Framed document encryption beside raw AES-256-GCM (aws-lc-rs, RustCrypto aes-gcm),
/// 8 MiB each, in one run: criterion's throughput per contender, then a side-by-side
/// table (best of 15 passes) with the framing's ratio to raw aws-lc-rs.
fn documents(c: &mut Criterion) {
    let contenders = Contenders::new();
    let mut out = Vec::with_capacity(DOC_LEN + (1 << 20));
    type Pass = fn(&Contenders, &mut Vec<u8>);
    let passes: [(&str, Pass); 4] = [
        ("framed seal (DCF1, 64 KiB frames)", Contenders::framed_seal),
        ("framed open (DCF1, 64 KiB frames)", Contenders::framed_open),
        ("raw aws-lc-rs AES-256-GCM seal", Contenders::aws_lc_seal),
        ("raw RustCrypto aes-gcm seal", Contenders::aes_gcm_seal),
    ];
    let mut group = c.benchmark_group("documents");
    group.throughput(Throughput::Bytes(DOC_LEN as u64));
    group.sample_size(20);
    for (name, pass) in passes {
        group.bench_function(BenchmarkId::new(name, "8 MiB"), |b| {
            b.iter(|| pass(black_box(&contenders), &mut out))
        });
    }
    group.finish();
    let mib_s = |pass: Pass, out: &mut Vec<u8>| {
        let best = (0..15)
            .map(|_| {
                let start = std::time::Instant::now();
                pass(&contenders, out);
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        DOC_LEN as f64 / (1 << 20) as f64 / best.as_secs_f64().max(1e-9)
    };
    let figures: Vec<(&str, f64)> = passes
        .iter()
        .map(|(name, pass)| (*name, mib_s(*pass, &mut out)))
        .collect();
    let raw = figures[2].1;
    println!("\n| 8 MiB, best of 15 | MiB/s | vs raw aws-lc-rs |\n|---|---:|---:|");
    for (name, speed) in &figures {
        println!("| {name} | {speed:.0} | {:.2}x |", speed / raw);
    }
}

criterion_group!(
    benches,
    encrypt_decrypt,
    fields,
    kms_calls_per_thousand_writes,
    kms_calls_of_a_cold_read_of_a_month,
    documents
);
criterion_main!(benches);
