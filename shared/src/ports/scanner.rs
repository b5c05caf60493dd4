//! The malware scanner port. A scan is a session fed the bytes of one object as they
//! stream past (the same stream feeds the SHA-256 and the encryptor), so nothing is held
//! whole in memory and the bytes scanned are the bytes stored.
//!
//! Adapters: `adapters::scan::Clamd` (clamd's INSTREAM over TCP, used when an address is
//! configured) and `adapters::scan::BuiltinScanner` (EICAR and a list of SHA-256 hashes:
//! the local default, not a production scanner). `shared/tests/contract/scanner.rs`
//! runs one suite on both.

use async_trait::async_trait;

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// A signature matched (clamd's name, e.g. `Eicar-Signature` or a custom
    /// `….UNOFFICIAL`). Signatures name malware families, never file contents.
    Infected {
        signature: String,
    },
}

/// clamd's heuristic names for a file it did not scan completely (`AlertExceedsMax yes`
/// turns "too large to scan" into these instead of a silent `OK`).
pub const LIMITS_EXCEEDED_PREFIX: &str = "Heuristics.Limits.Exceeded";

impl Verdict {
    /// A file rejected because it exceeded the scanner's limits, not for a signature.
    pub fn is_limits_exceeded(&self) -> bool {
        matches!(self, Verdict::Infected { signature } if signature.starts_with(LIMITS_EXCEEDED_PREFIX))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The stream is longer than the scanner accepts (clamd's `StreamMaxLength`): the
    /// file was not scanned, so it must not be treated as clean.
    #[error("stream exceeds the scanner's size limit")]
    TooLarge,
    /// The scanner could not be reached, or failed while scanning (retry later).
    #[error("scanner unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The scanner answered something this client does not understand.
    #[error("unexpected scanner reply")]
    Protocol(String),
    /// The scanner took longer than its timeout.
    #[error("scan timed out")]
    Timeout,
}

/// One scan in progress.
#[async_trait]
pub trait ScanSession: Send {
    /// Feeds the next bytes of the object.
    async fn feed(&mut self, chunk: &[u8]) -> Result<(), ScanError>;
    /// Ends the stream and returns the verdict.
    async fn finish(self: Box<Self>) -> Result<Verdict, ScanError>;
}

#[async_trait]
pub trait Scanner: Send + Sync {
    /// The name logged and recorded with a verdict (`clamd`, `builtin`).
    fn name(&self) -> &'static str;
    async fn start(&self) -> Result<Box<dyn ScanSession>, ScanError>;
    /// Reachability (clamd `PING`), for `/health` and start-up.
    async fn check(&self) -> Result<(), ScanError>;

    /// Scans bytes held in memory (small inputs and tests).
    async fn scan_bytes(&self, bytes: &[u8]) -> Result<Verdict, ScanError> {
        let mut session = self.start().await?;
        for chunk in bytes.chunks(64 * 1024) {
            session.feed(chunk).await?;
        }
        session.finish().await
    }
}

/// The EICAR anti-virus test file (68 bytes), which every scanner must detect.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
