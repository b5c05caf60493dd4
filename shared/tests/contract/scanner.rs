//! The scanner port: the built-in scanner and a real clamd (Debian's `clamav-daemon`,
//! which `scripts/test` installs when missing) answer the same cases. The clamd is
//! started here, offline, with a signature database this suite writes: an `.hdb` line
//! for EICAR and an `.hsb` line for the block-list case (clamd refuses to start on an
//! empty database and reports custom signatures with an `.UNOFFICIAL` suffix), and the
//! limits of `clamd_limits` for a 25 MiB upload limit.
//!
//! Without clamd the clamd cases fail, unless `DOCARE_TEST_SKIP_CLAMD=1` says to skip
//! them knowingly (refused when `CI=true`).

use sha2::{Digest, Sha256};
use shared::adapters::scan::{clamd_limits, BuiltinScanner, Clamd};
use shared::ports::scanner::{ScanError, Scanner, Verdict, EICAR};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The upload limit the limits are set for (the documents default).
const UPLOAD_LIMIT: u64 = 25 << 20;
/// MD5 of the 68-byte EICAR file (what an `.hdb` signature names).
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
const BLOCKED: &[u8] = b"docare contract: content on the block list\n";
const BLOCKED_NAME: &str = "Docare.Test.Blocked";

fn blocked_sha256() -> [u8; 32] {
    Sha256::digest(BLOCKED).into()
}

pub struct ScanFixture {
    scanner: Arc<dyn Scanner>,
    /// The signature name the block-list case must report.
    blocked_name: String,
}

async fn builtin() -> ScanFixture {
    let mut list = HashMap::new();
    list.insert(blocked_sha256(), BLOCKED_NAME.to_string());
    ScanFixture {
        scanner: Arc::new(BuiltinScanner::new(list, UPLOAD_LIMIT + (1 << 20))),
        blocked_name: BLOCKED_NAME.into(),
    }
}

fn clamd_binary() -> Option<std::path::PathBuf> {
    if let Ok(path) = std::env::var("DOCARE_TEST_CLAMD_BIN") {
        return Some(path.into());
    }
    ["/usr/sbin/clamd", "/usr/bin/clamd", "/usr/local/sbin/clamd"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// One clamd for the whole test process, on a free port. It runs under a shell that
/// reads our end of a pipe and kills it when the pipe closes: when this process exits,
/// however it exits, clamd goes with it.
static CLAMD: OnceCell<Option<String>> = OnceCell::const_new();

async fn start_clamd() -> Option<String> {
    let Some(binary) = clamd_binary() else {
        if std::env::var("DOCARE_TEST_SKIP_CLAMD").as_deref() == Ok("1") {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "DOCARE_TEST_SKIP_CLAMD is not allowed in CI"
            );
            eprintln!("SKIPPING the clamd cases (DOCARE_TEST_SKIP_CLAMD=1)");
            return None;
        }
        panic!("clamd is not installed (Debian: apt-get install clamav-daemon; scripts/test does it), or set DOCARE_TEST_SKIP_CLAMD=1 outside CI");
    };
    let dir = tempfile::tempdir().expect("clamd dir").keep();
    let db = dir.join("db");
    std::fs::create_dir_all(&db).expect("db dir");
    // EICAR by MD5 (an .hdb line: md5:size:name), the block-list case by SHA-256 (.hsb).
    std::fs::write(
        db.join("docare-test.hdb"),
        format!("{EICAR_MD5}:{}:Docare.Test.EICAR\n", EICAR.len()),
    )
    .expect("hdb");
    std::fs::write(
        db.join("docare-test.hsb"),
        format!(
            "{}:{}:{BLOCKED_NAME}\n",
            hex::encode(blocked_sha256()),
            BLOCKED.len()
        ),
    )
    .expect("hsb");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let conf = dir.join("clamd.conf");
    let mut file = std::fs::File::create(&conf).expect("conf");
    write!(
        file,
        "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLogFile {}\nLogTime yes\n{}",
        db.display(),
        dir.join("clamd.log").display(),
        clamd_limits(UPLOAD_LIMIT)
    )
    .expect("conf");
    drop(file);
    // Never waited on: it lives as long as this process, which init then reaps.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -c "$1" & c=$!; read _ignored; kill "$c""#)
        .arg(&binary)
        .arg(&conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn clamd");
    // Our end of its stdin stays open for the life of the process.
    std::mem::forget(child.stdin);
    let addr = format!("127.0.0.1:{port}");
    let client = Clamd::new(addr.clone(), Duration::from_secs(30));
    for _ in 0..600 {
        if client.check().await.is_ok() {
            return Some(addr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.join("clamd.log")).unwrap_or_default();
    panic!("clamd did not answer PING within 60 s; its log:\n{log}");
}

async fn clamd() -> Option<ScanFixture> {
    let addr = CLAMD.get_or_init(start_clamd).await.clone()?;
    Some(ScanFixture {
        scanner: Arc::new(Clamd::new(addr, Duration::from_secs(60))),
        blocked_name: format!("{BLOCKED_NAME}.UNOFFICIAL"),
    })
}

fn pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    bytes.extend((0..len).map(|i| b"lorem ipsum dolor "[i % 18]));
    bytes
}

async fn clean_files_are_clean(f: &ScanFixture) {
    assert_eq!(
        f.scanner.scan_bytes(&pdf(200_000)).await.expect("scan"),
        Verdict::Clean
    );
    assert_eq!(
        f.scanner.scan_bytes(b"").await.expect("scan"),
        Verdict::Clean
    );
    f.scanner.check().await.expect("reachable");
}

async fn eicar_is_found(f: &ScanFixture) {
    let verdict = f.scanner.scan_bytes(EICAR).await.expect("scan");
    assert!(
        matches!(&verdict, Verdict::Infected { signature } if signature.contains("EICAR") || signature.contains("Eicar")),
        "{verdict:?}"
    );
    assert!(!verdict.is_limits_exceeded());
}

/// The same stream in chunks of 1 byte, 7 bytes and whole: the verdict cannot depend on
/// how the worker's reads happen to be cut.
async fn eicar_split_across_chunks_is_found(f: &ScanFixture) {
    for size in [1usize, 7, 64] {
        let mut session = f.scanner.start().await.expect("start");
        for chunk in EICAR.chunks(size) {
            session.feed(chunk).await.expect("feed");
        }
        let verdict = session.finish().await.expect("verdict");
        assert!(
            matches!(verdict, Verdict::Infected { .. }),
            "chunks of {size}: {verdict:?}"
        );
    }
}

async fn a_blocklisted_hash_is_found(f: &ScanFixture) {
    let verdict = f.scanner.scan_bytes(BLOCKED).await.expect("scan");
    assert_eq!(
        verdict,
        Verdict::Infected {
            signature: f.blocked_name.clone()
        }
    );
    // One byte more is another hash.
    let mut other = BLOCKED.to_vec();
    other.push(b'!');
    assert_eq!(
        f.scanner.scan_bytes(&other).await.expect("scan"),
        Verdict::Clean
    );
}

/// A file at the upload limit is scanned; a stream past the scanner's stream limit is
/// refused with a typed error, never reported clean.
async fn a_stream_over_the_limit_is_refused(f: &ScanFixture) {
    let at_limit = pdf(UPLOAD_LIMIT as usize - 20);
    assert!(at_limit.len() as u64 <= UPLOAD_LIMIT);
    assert_eq!(
        f.scanner.scan_bytes(&at_limit).await.expect("scan"),
        Verdict::Clean
    );
    let over = vec![b'a'; (UPLOAD_LIMIT + (2 << 20)) as usize];
    match f.scanner.scan_bytes(&over).await {
        Err(ScanError::TooLarge) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// clamd only: between `MaxFileSize` and `StreamMaxLength` clamd cannot scan the whole
/// file; with `AlertExceedsMax yes` it says so instead of answering `OK`.
async fn a_file_over_the_scan_limits_is_not_clean(f: &ScanFixture) {
    let over = vec![b'a'; (UPLOAD_LIMIT + (512 << 10)) as usize];
    let verdict = f.scanner.scan_bytes(&over).await.expect("scan");
    assert!(verdict.is_limits_exceeded(), "{verdict:?}");
}

async fn an_unreachable_clamd_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dead = Clamd::new(format!("127.0.0.1:{port}"), Duration::from_secs(2));
    assert!(matches!(dead.check().await, Err(ScanError::Unavailable(_))));
    assert!(matches!(
        dead.scan_bytes(b"x").await,
        Err(ScanError::Unavailable(_))
    ));
}

/// A server that accepts and never answers: the scan times out, typed.
async fn a_silent_clamd_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (_socket, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let slow = Clamd::new(addr.to_string(), Duration::from_millis(300));
    assert!(matches!(
        slow.scan_bytes(b"x").await,
        Err(ScanError::Timeout)
    ));
    server.abort();
}

macro_rules! scanner_cases {
    ($fixture:ident => $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(fixture) = super::$fixture().await else {
                    return;
                };
                super::$case(&fixture).await;
            }
        )*
    };
}

mod builtin {
    scanner_cases!(builtin_fixture =>
        clean_files_are_clean,
        eicar_is_found,
        eicar_split_across_chunks_is_found,
        a_blocklisted_hash_is_found,
        a_stream_over_the_limit_is_refused,
    );
}

mod clamd {
    scanner_cases!(clamd =>
        clean_files_are_clean,
        eicar_is_found,
        eicar_split_across_chunks_is_found,
        a_blocklisted_hash_is_found,
        a_stream_over_the_limit_is_refused,
        a_file_over_the_scan_limits_is_not_clean,
    );

    #[tokio::test]
    async fn an_unreachable_clamd_is_unavailable() {
        super::an_unreachable_clamd_is_unavailable().await;
    }

    #[tokio::test]
    async fn a_silent_clamd_times_out() {
        super::a_silent_clamd_times_out().await;
    }
}

async fn builtin_fixture() -> Option<ScanFixture> {
    Some(builtin().await)
}
