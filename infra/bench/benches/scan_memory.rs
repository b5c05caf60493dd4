//! Peak memory of the scanner's one pass (SHA-256 + scan + framed encryption,
//! `shared::documents::scan_and_seal`) over a 100 MiB upload arriving in 1 MiB chunks,
//! as the S3 body stream delivers it; the sealed bytes go to a sink that only counts
//! them (on AWS they go to the documents bucket part by part). Also the pass's speed.
//!
//! The process's peak resident set (`VmHWM`) is reset just before the pass (Linux
//! `clear_refs`) and read after it, so the figure is the pass's peak, allocator and
//! runtime included. With `DOCARE_CLAMD_ADDR` set, clamd scans instead of the built-in
//! scanner (its own memory is clamd's, not the worker's).
//!
//! `cargo bench -p docare-bench --bench scan_memory`. Fails if the peak exceeds 64 MiB.

use bytes::Bytes;
use futures::StreamExt;
use shared::adapters::scan::{BuiltinScanner, Clamd};
use shared::crypto::frames::Sealer;
use shared::documents::{scan_and_seal, PipelineError, SealedSink};
use shared::ports::scanner::Scanner;
use std::time::{Duration, Instant};

const SIZE: u64 = 100 << 20;
const CHUNK: usize = 1 << 20;
const BOUND_MIB: f64 = 64.0;

struct Counting(u64);

#[async_trait::async_trait]
impl SealedSink for Counting {
    async fn write(&mut self, sealed: &[u8]) -> Result<(), PipelineError> {
        self.0 += sealed.len() as u64;
        Ok(())
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let scanner: Box<dyn Scanner> = match std::env::var("DOCARE_CLAMD_ADDR") {
        Ok(addr) => Box::new(Clamd::new(addr, Duration::from_secs(300))),
        Err(_) => Box::new(BuiltinScanner::new(Default::default(), SIZE + 1)),
    };
    let body = futures::stream::unfold(0u64, |sent| async move {
        (sent < SIZE).then(|| {
            let chunk: Vec<u8> = (0..CHUNK).map(|i| (i as u64 + sent) as u8).collect();
            (Ok(Bytes::from(chunk)), sent + CHUNK as u64)
        })
    })
    .boxed();
    let before = status_kib("VmRSS:");
    // Resets VmHWM to the current RSS (Linux >= 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let mut sink = Counting(0);
    let start = Instant::now();
    let inspected = rt
        .block_on(async {
            let sealer = Sealer::new([1; 16], &[7; 32], "01JBENCHSCAN00000000000000")?;
            Ok::<_, Box<dyn std::error::Error>>(
                scan_and_seal(body, scanner.as_ref(), sealer, SIZE, &mut sink).await?,
            )
        })
        .unwrap_or_else(|e| panic!("pass: {e}"));
    let elapsed = start.elapsed();
    let peak = status_kib("VmHWM:");
    assert_eq!(inspected.size, SIZE);
    let peak_mib = peak as f64 / 1024.0;
    println!(
        "scanner pass over 100 MiB ({}): {:.0} MiB/s; sealed {} bytes; RSS before {:.1} MiB, peak during the pass {:.1} MiB{}",
        scanner.name(),
        SIZE as f64 / (1 << 20) as f64 / elapsed.as_secs_f64(),
        sink.0,
        before as f64 / 1024.0,
        peak_mib,
        if reset { "" } else { " (VmHWM not reset: process peak)" },
    );
    assert!(
        peak_mib < BOUND_MIB,
        "peak {peak_mib:.1} MiB over the {BOUND_MIB} MiB bound"
    );
}
