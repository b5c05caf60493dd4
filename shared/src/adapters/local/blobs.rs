//! Local blobs: one file per object under `<data>/blobs/<bucket>/`, written atomically,
//! with metadata beside it. Presigned URLs point at the local stack, which checks the
//! HMAC signature and expiry with [`LocalBlobs::verify_presigned`] before serving.

use super::files::{private_dir, write_private, write_private_new};
use crate::clock::Clock;
use crate::ports::blobs::{
    validate_expiry, validate_key, validate_range, BlobBody, BlobError, BlobMeta, BlobObject,
    BlobStore, PresignedRequest,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Path prefix the local stack serves presigned requests under.
pub const PRESIGN_PATH: &str = "/_local/blobs/";
const CHUNK: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct StoredMeta {
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    /// Every write gets a new version id (S3 versioned buckets do the same); only the
    /// current version is kept.
    #[serde(default)]
    version_id: Option<String>,
}

pub struct LocalBlobs {
    root: PathBuf,
    base_url: String,
    signing_key: [u8; 32],
    clock: Arc<dyn Clock>,
}

/// A verified presigned request: what it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedGrant {
    pub bucket: String,
    pub key: String,
    /// For uploads: the content type the URL was signed for.
    pub content_type: Option<String>,
    /// For uploads: the exact body size the URL was signed for, if any.
    pub content_length: Option<u64>,
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> BlobError {
    BlobError::Unavailable(Box::new(err))
}

impl LocalBlobs {
    pub fn new(
        root: PathBuf,
        base_url: String,
        signing_key: [u8; 32],
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            root,
            base_url: base_url.trim_end_matches('/').to_string(),
            signing_key,
            clock,
        }
    }

    /// Creates a bucket folder (the local stack declares its buckets at start).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), BlobError> {
        validate_key(bucket)?;
        private_dir(&self.root.join(bucket).join("data")).map_err(unavailable)?;
        private_dir(&self.root.join(bucket).join("meta")).map_err(unavailable)
    }

    fn paths(&self, bucket: &str, key: &str) -> Result<(PathBuf, PathBuf), BlobError> {
        validate_key(bucket)?;
        validate_key(key)?;
        let base = self.root.join(bucket);
        if !base.is_dir() {
            return Err(BlobError::Invalid("no such bucket".into()));
        }
        Ok((
            base.join("data").join(key),
            base.join("meta").join(format!("{key}.json")),
        ))
    }

    fn signature(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        expires: i64,
        content_type: &str,
        content_length: &str,
    ) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.signing_key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(
            format!("{method}\n{bucket}\n{key}\n{expires}\n{content_type}\n{content_length}")
                .as_bytes(),
        );
        hex::encode(mac.finalize().into_bytes())
    }

    fn presign(
        &self,
        method: &'static str,
        bucket: &str,
        key: &str,
        content_type: &str,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        validate_key(bucket)?;
        validate_key(key)?;
        validate_expiry(expires_in)?;
        let expires = self.clock.now().timestamp() + expires_in.as_secs() as i64;
        let length = content_length.map(|n| n.to_string()).unwrap_or_default();
        let signature = self.signature(method, bucket, key, expires, content_type, &length);
        let mut url = url::Url::parse(&format!("{}{PRESIGN_PATH}{bucket}/{key}", self.base_url))
            .map_err(|_| BlobError::Invalid("bad local base URL".into()))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("x-method", method)
                .append_pair("x-expires", &expires.to_string())
                .append_pair("x-content-type", content_type);
            if !length.is_empty() {
                query.append_pair("x-content-length", &length);
            }
            query.append_pair("x-signature", &signature);
        }
        let mut headers = BTreeMap::new();
        if !content_type.is_empty() {
            headers.insert("content-type".to_string(), content_type.to_string());
        }
        if !length.is_empty() {
            headers.insert("content-length".to_string(), length);
        }
        Ok(PresignedRequest {
            method,
            url: url.to_string(),
            headers,
        })
    }

    /// Checks a presigned URL as the local stack receives it (path and query).
    /// Refuses a wrong method, a bad signature or an expired URL. (The caller compares
    /// the request's `Content-Type` and body size with the grant, as S3 compares the
    /// signed headers.)
    pub fn verify_presigned(
        &self,
        method: &str,
        path_and_query: &str,
    ) -> Result<PresignedGrant, BlobError> {
        let denied = || BlobError::Invalid("presigned URL is invalid or expired".into());
        let url =
            url::Url::parse(&format!("http://local{path_and_query}")).map_err(|_| denied())?;
        let rest = url.path().strip_prefix(PRESIGN_PATH).ok_or_else(denied)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(denied)?;
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        let get = |name: &str| query.get(name).cloned().ok_or_else(denied);
        let (signed_method, expires, content_type, signature) = (
            get("x-method")?,
            get("x-expires")?,
            get("x-content-type")?,
            get("x-signature")?,
        );
        let length = query.get("x-content-length").cloned().unwrap_or_default();
        let content_length = match length.as_str() {
            "" => None,
            n => Some(n.parse::<u64>().map_err(|_| denied())?),
        };
        let expires: i64 = expires.parse().map_err(|_| denied())?;
        let expected = self.signature(&signed_method, bucket, key, expires, &content_type, &length);
        let valid_signature: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes()).into();
        if !valid_signature || signed_method != method || expires < self.clock.now().timestamp() {
            return Err(denied());
        }
        Ok(PresignedGrant {
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: (!content_type.is_empty()).then_some(content_type),
            content_length,
        })
    }

    /// Stores an object as [`BlobStore::put`] does and answers its new version id (what
    /// the local stack's S3 event names).
    pub async fn put_versioned(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<String, BlobError> {
        let (data, meta) = self.paths(bucket, key)?;
        let version_id = ulid::Ulid::new().to_string();
        let stored = serde_json::to_vec(&StoredMeta {
            content_type: Some(content_type.to_string()),
            metadata,
            version_id: Some(version_id.clone()),
        })
        .map_err(unavailable)?;
        tokio::task::spawn_blocking(move || {
            write_private(&meta, &stored)?;
            write_private(&data, &body)
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        Ok(version_id)
    }

    /// Whether `version_id` (if given) is the object's current version.
    async fn is_current(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<bool, BlobError> {
        let Some(version_id) = version_id else {
            return Ok(true);
        };
        Ok(self
            .head(bucket, key)
            .await?
            .is_some_and(|meta| meta.version_id.as_deref() == Some(version_id)))
    }
}

/// Writes a streamed body to a private temp file beside `data`, then moves it in place.
async fn write_stream(data: &std::path::Path, mut body: BlobBody) -> Result<u64, BlobError> {
    let dir = data.parent().unwrap_or_else(|| std::path::Path::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(unavailable)?;
    let tmp = dir.join(format!(
        ".{}.part-{}",
        data.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object"),
        ulid::Ulid::new()
    ));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let result = async {
        let mut file = options.open(&tmp).await.map_err(unavailable)?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(unavailable)?;
        }
        file.sync_all().await.map_err(unavailable)?;
        tokio::fs::rename(&tmp, data).await.map_err(unavailable)?;
        Ok(size)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), BlobError> {
        self.put_versioned(bucket, key, body, content_type, metadata)
            .await
            .map(|_| ())
    }

    async fn put_stream(
        &self,
        bucket: &str,
        key: &str,
        body: BlobBody,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<u64, BlobError> {
        let (data, meta) = self.paths(bucket, key)?;
        let size = write_stream(&data, body).await?;
        let stored = serde_json::to_vec(&StoredMeta {
            content_type: Some(content_type.to_string()),
            metadata,
            version_id: Some(ulid::Ulid::new().to_string()),
        })
        .map_err(unavailable)?;
        tokio::task::spawn_blocking(move || write_private(&meta, &stored))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        Ok(size)
    }

    async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<BlobObject>, BlobError> {
        let Some(object) = self.get(bucket, key).await? else {
            return Ok(None);
        };
        match version_id {
            Some(v) if object.meta.version_id.as_deref() != Some(v) => Ok(None),
            _ => Ok(Some(object)),
        }
    }

    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), BlobError> {
        if self.is_current(bucket, key, version_id).await? {
            self.delete(bucket, key).await?;
        }
        Ok(())
    }

    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, BlobError> {
        let (data, meta) = self.paths(bucket, key)?;
        let stored = serde_json::to_vec(&StoredMeta {
            content_type: Some(content_type.to_string()),
            metadata: BTreeMap::new(),
            version_id: Some(ulid::Ulid::new().to_string()),
        })
        .map_err(unavailable)?;
        tokio::task::spawn_blocking(move || {
            // The metadata first (no object without it); the body's link decides.
            if data.exists() {
                return Ok(false);
            }
            write_private(&meta, &stored)?;
            write_private_new(&data, &body)
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<BlobObject>, BlobError> {
        let Some(meta) = self.head(bucket, key).await? else {
            return Ok(None);
        };
        let (data, _) = self.paths(bucket, key)?;
        let file = match tokio::fs::File::open(&data).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(unavailable(err)),
        };
        let body = futures::stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).await.map_err(unavailable)?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), file)))
        });
        Ok(Some(BlobObject {
            meta,
            body: Box::pin(body),
        }))
    }

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<BlobObject>, BlobError> {
        validate_range(start, end)?;
        let Some(meta) = self.head(bucket, key).await? else {
            return Ok(None);
        };
        if start >= meta.size {
            return Err(BlobError::Invalid("range starts past the object".into()));
        }
        let (data, _) = self.paths(bucket, key)?;
        let mut file = match tokio::fs::File::open(&data).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(unavailable(err)),
        };
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(unavailable)?;
        let left = end.min(meta.size) - start;
        let body = futures::stream::try_unfold((file, left), |(mut file, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            let n = file.read(&mut buf).await.map_err(unavailable)?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), (file, left - n as u64))))
        });
        Ok(Some(BlobObject {
            meta,
            body: Box::pin(body),
        }))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        let (data, meta) = self.paths(bucket, key)?;
        let size = match tokio::fs::metadata(&data).await {
            Ok(m) => m.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(unavailable(err)),
        };
        let stored: StoredMeta = match tokio::fs::read(&meta).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(unavailable)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => StoredMeta {
                content_type: None,
                metadata: BTreeMap::new(),
                version_id: None,
            },
            Err(err) => return Err(unavailable(err)),
        };
        Ok(Some(BlobMeta {
            size,
            content_type: stored.content_type,
            metadata: stored.metadata,
            version_id: stored.version_id,
        }))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let (data, meta) = self.paths(bucket, key)?;
        for path in [data, meta] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(unavailable(err)),
            }
        }
        Ok(())
    }

    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        self.presign("PUT", bucket, key, content_type, content_length, expires_in)
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        self.presign("GET", bucket, key, "", None, expires_in)
    }

    async fn check(&self, bucket: &str) -> Result<(), BlobError> {
        validate_key(bucket)?;
        if self.root.join(bucket).is_dir() {
            Ok(())
        } else {
            Err(BlobError::Unavailable("bucket folder missing".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn presigned_urls_are_bound_to_method_object_and_time() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let blobs = LocalBlobs::new(
            "/nonexistent".into(),
            "http://127.0.0.1:5000".into(),
            [7; 32],
            clock.clone(),
        );
        let put = blobs
            .presign(
                "PUT",
                "docs",
                "u1/file",
                "application/pdf",
                Some(1234),
                Duration::from_secs(60),
            )
            .expect("presign");
        assert_eq!(
            put.headers.get("content-length").map(String::as_str),
            Some("1234")
        );
        let path = put.url.trim_start_matches("http://127.0.0.1:5000");
        let grant = blobs.verify_presigned("PUT", path).expect("valid");
        assert_eq!(
            (grant.bucket.as_str(), grant.key.as_str()),
            ("docs", "u1/file")
        );
        assert_eq!(grant.content_type.as_deref(), Some("application/pdf"));
        assert_eq!(grant.content_length, Some(1234));
        assert!(
            blobs
                .verify_presigned(
                    "PUT",
                    &path.replace("x-content-length=1234", "x-content-length=99")
                )
                .is_err(),
            "size is signed"
        );

        assert!(
            blobs.verify_presigned("GET", path).is_err(),
            "method is signed"
        );
        assert!(
            blobs
                .verify_presigned("PUT", &path.replace("u1/file", "u2/file"))
                .is_err(),
            "key is signed"
        );
        assert!(
            blobs
                .verify_presigned("PUT", &path.replace("application%2Fpdf", "text%2Fhtml"))
                .is_err(),
            "type is signed"
        );
        clock.advance(chrono::Duration::seconds(61));
        assert!(blobs.verify_presigned("PUT", path).is_err(), "expired");
    }
}
