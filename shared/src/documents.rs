//! The documents pipeline over ports: one pass over an uploaded object feeds the
//! SHA-256, the scanner and the framed encryptor ([`crate::crypto::frames`]) at once,
//! chunk by chunk, so memory stays bounded whatever the size and the bytes scanned are
//! the bytes sealed. The caller keeps the sealed output only when the verdict is clean.

use crate::crypto::frames::Sealer;
use crate::domain::document::SNIFF_LEN;
use crate::ports::blobs::BlobError;
use crate::ports::scanner::{ScanError, Scanner, Verdict};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

/// One scan's deadline at clamd (connect, stream, reply); the scanner function's
/// timeout (120 s in the template) leaves room for the read and the upload around it.
pub const SCAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What one pass learned about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub sha256: [u8; 32],
    pub size: u64,
    pub verdict: Verdict,
    /// The first bytes (up to [`SNIFF_LEN`]), for the content-type check.
    pub head: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading the object failed")]
    Read(#[source] BlobError),
    #[error("scanning failed")]
    Scan(#[source] ScanError),
    /// More bytes than allowed: reading stopped there.
    #[error("the object is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("writing the sealed document failed")]
    Write(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the sealed bytes go, in order (a multipart upload, a file, memory).
#[async_trait]
pub trait SealedSink: Send {
    async fn write(&mut self, sealed: &[u8]) -> Result<(), PipelineError>;
}

#[async_trait]
impl SealedSink for Vec<u8> {
    async fn write(&mut self, sealed: &[u8]) -> Result<(), PipelineError> {
        self.extend_from_slice(sealed);
        Ok(())
    }
}

/// Reads `body` once: hashes, scans and seals every chunk, stopping past `max_size`
/// bytes. Holds one chunk and at most one frame at a time.
pub async fn scan_and_seal(
    mut body: BoxStream<'static, Result<Bytes, BlobError>>,
    scanner: &dyn Scanner,
    mut sealer: Sealer,
    max_size: u64,
    sink: &mut dyn SealedSink,
) -> Result<Inspected, PipelineError> {
    let mut session = scanner.start().await.map_err(PipelineError::Scan)?;
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut size = 0u64;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(PipelineError::Read)?;
        size += chunk.len() as u64;
        if size > max_size {
            return Err(PipelineError::TooLarge { limit: max_size });
        }
        hasher.update(&chunk);
        if head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        session.feed(&chunk).await.map_err(PipelineError::Scan)?;
        out.clear();
        sealer.update(&chunk, &mut out);
        if !out.is_empty() {
            sink.write(&out).await?;
        }
    }
    let verdict = session.finish().await.map_err(PipelineError::Scan)?;
    out.clear();
    sealer.finish(&mut out);
    sink.write(&out).await?;
    let digest = hasher.finish();
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest.as_ref());
    Ok(Inspected {
        sha256,
        size,
        verdict,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::scan::BuiltinScanner;
    use crate::crypto::frames;
    use crate::ports::scanner::EICAR;

    fn stream(data: Vec<u8>, chunk: usize) -> BoxStream<'static, Result<Bytes, BlobError>> {
        let chunks: Vec<Result<Bytes, BlobError>> = data
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    #[tokio::test]
    async fn one_pass_hashes_scans_and_seals() {
        let scanner = BuiltinScanner::new(Default::default(), 1 << 30);
        let data: Vec<u8> = b"%PDF-1.7\n"
            .iter()
            .copied()
            .cycle()
            .take(300_000)
            .collect();
        let sealer = frames::Sealer::new([1; 16], &[2; 32], "DOC").expect("sealer");
        let mut sealed = Vec::new();
        let got = scan_and_seal(
            stream(data.clone(), 10_000),
            &scanner,
            sealer,
            1 << 20,
            &mut sealed,
        )
        .await
        .expect("pipeline");
        assert_eq!(got.verdict, Verdict::Clean);
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(
            got.sha256.as_slice(),
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data).as_ref()
        );
        assert_eq!(got.head, data[..SNIFF_LEN]);
        assert_eq!(
            frames::open_all(&[2; 32], "DOC", &sealed)
                .expect("open")
                .as_slice(),
            &data[..]
        );

        let sealer = frames::Sealer::new([1; 16], &[2; 32], "DOC").expect("sealer");
        let mut infected = b"%PDF-1.7\n".to_vec();
        infected.extend_from_slice(EICAR);
        let got = scan_and_seal(
            stream(infected, 5),
            &scanner,
            sealer,
            1 << 20,
            &mut Vec::new(),
        )
        .await
        .expect("pipeline");
        assert!(matches!(got.verdict, Verdict::Infected { .. }));

        let sealer = frames::Sealer::new([1; 16], &[2; 32], "DOC").expect("sealer");
        let err = scan_and_seal(
            stream(data, 10_000),
            &scanner,
            sealer,
            100_000,
            &mut Vec::new(),
        )
        .await
        .expect_err("too large");
        assert!(matches!(err, PipelineError::TooLarge { limit: 100_000 }));
    }
}
