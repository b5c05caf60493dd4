//! The blob port (S3): object bodies are streamed out, and clients move large files
//! directly with short-lived presigned URLs instead of through a Lambda.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest lifetime of a presigned URL (S3's SigV4 limit is 7 days; ours is far shorter).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(3600);

/// The part size of a streamed upload ([`BlobStore::put_stream`]); S3 takes parts of at
/// least 5 MiB but the last. What a streamed upload holds in memory at most.
pub const STREAM_PART_LEN: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub size: u64,
    pub content_type: Option<String>,
    /// User metadata (never PHI: ids and checksums only).
    pub metadata: BTreeMap<String, String>,
    /// The object's version (S3 versioned buckets; the local store gives every write
    /// one); `None` when the store keeps no versions.
    pub version_id: Option<String>,
}

/// A body streamed into the store by [`BlobStore::put_stream`]: committed only when the
/// stream ends without an error (an error item aborts the upload and leaves nothing).
pub type BlobBody = BoxStream<'static, Result<Bytes, BlobError>>;

/// An object being read: its metadata and a stream of its body.
pub struct BlobObject {
    pub meta: BlobMeta,
    pub body: BoxStream<'static, Result<Bytes, BlobError>>,
}

impl BlobObject {
    /// Collects the whole body; for small objects and tests.
    pub async fn collect(self) -> Result<Vec<u8>, BlobError> {
        use futures::TryStreamExt;
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(chunks.concat())
    }
}

/// A URL the client uses directly, with the headers it must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("blob store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<BlobError> for crate::ApiError {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::Invalid(_) => crate::ApiError::internal(err),
            BlobError::Unavailable(_) => crate::ApiError::unavailable("blobs", err),
        }
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), BlobError>;
    /// Creates the object only if the key holds none (S3 `If-None-Match: *`, atomic):
    /// `Ok(false)` when one exists already, which stays as it was. On a bucket with
    /// Object Lock this is how a first version is kept the only one at its key.
    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, BlobError>;
    /// Streams `body` into one object, holding a bounded part of it at a time (S3: a
    /// multipart upload of [`STREAM_PART_LEN`] parts, or one `PutObject` when it is
    /// smaller). The object appears only when the stream ends cleanly; an error item in
    /// the stream aborts the upload (nothing is left) and is returned. Returns the size.
    async fn put_stream(
        &self,
        bucket: &str,
        key: &str,
        body: BlobBody,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<u64, BlobError>;
    /// `None` when there is no such object.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<BlobObject>, BlobError>;
    /// One exact version of an object (`None`: the current one), so bytes written after
    /// an event named a version cannot be read in its place. `None` when that version
    /// does not exist (any more). The local store keeps only the current version: an
    /// older one answers `None` there, its bytes on S3.
    async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<BlobObject>, BlobError>;
    /// Bytes `start..end` (end exclusive) of an object, streamed; `None` when there is
    /// no such object. A range past the end is cut to the object, as in S3; a range
    /// starting at or past the end is refused ([`BlobError::Invalid`]). `meta.size` is the
    /// whole object's size.
    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<BlobObject>, BlobError>;
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError>;
    /// Deleting a missing object succeeds, as in S3.
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError>;
    /// Deletes one exact version (`None`: the current one, as [`BlobStore::delete`]), so
    /// nothing is left behind in a versioned bucket. A missing version succeeds; a newer
    /// version of the key stays.
    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), BlobError>;
    /// A URL that uploads exactly one object with this content type and, when given,
    /// exactly this many bytes (the `Content-Length` is signed too).
    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError>;
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError>;
    /// Cheap reachability check of a bucket, for `/health`.
    async fn check(&self, bucket: &str) -> Result<(), BlobError>;
}

/// Object keys are ids we generate; refuse anything that could escape a folder locally
/// or be mistaken for a prefix.
pub(crate) fn validate_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BlobError::Invalid(
            "object keys are ASCII ids separated by '/'".into(),
        ))
    }
}

pub(crate) fn validate_range(start: u64, end: u64) -> Result<(), BlobError> {
    if end <= start {
        return Err(BlobError::Invalid(
            "a range is start..end with end > start".into(),
        ));
    }
    Ok(())
}

pub(crate) fn validate_expiry(expires_in: Duration) -> Result<(), BlobError> {
    if expires_in.is_zero() || expires_in > MAX_PRESIGN_EXPIRY {
        return Err(BlobError::Invalid("presigned URLs live 1 s to 1 h".into()));
    }
    Ok(())
}
