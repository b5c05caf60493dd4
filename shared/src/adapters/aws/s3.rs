//! The blob port on S3. Bodies stream out of `get`; presigned URLs carry SigV4 and,
//! for uploads, the signed content type.

use crate::ports::blobs::{
    validate_expiry, validate_key, validate_range, BlobBody, BlobError, BlobMeta, BlobObject,
    BlobStore, PresignedRequest, STREAM_PART_LEN,
};
use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

pub struct S3Blobs {
    client: super::LazyClient<aws_sdk_s3::Client>,
}

impl S3Blobs {
    pub fn new(client: impl Into<super::LazyClient<aws_sdk_s3::Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
        version_id: Option<&str>,
    ) -> Result<Option<BlobObject>, BlobError> {
        let output = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .set_range(range.map(|(start, end)| format!("bytes={start}-{}", end - 1)))
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if is_missing(&err) => return Ok(None),
            Err(err) if version_id.is_some() && err.code() == Some("NoSuchVersion") => {
                return Ok(None)
            }
            Err(err) if err.code() == Some("InvalidRange") => {
                return Err(BlobError::Invalid("range starts past the object".into()))
            }
            Err(err) => return Err(unavailable(err)),
        };
        // A ranged read's Content-Range ends with the whole size.
        let size = output
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|total| total.parse().ok())
            .unwrap_or(output.content_length().unwrap_or_default().max(0) as u64);
        let meta = BlobMeta {
            size,
            content_type: output.content_type().map(str::to_string),
            metadata: output
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            version_id: output.version_id().map(str::to_string),
        };

        let body = futures::stream::try_unfold(output.body, |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Ok(Some((chunk, body))),
                Ok(None) => Ok(None),
                Err(err) => Err(BlobError::Unavailable(Box::new(err))),
            }
        });
        Ok(Some(BlobObject {
            meta,
            body: Box::pin(body),
        }))
    }
}

impl S3Blobs {
    /// Uploads `first` and the rest of `body` as parts of `upload_id`, one part held at a
    /// time; the size and the completed parts.
    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        first: Vec<u8>,
        mut body: BlobBody,
    ) -> Result<(u64, Vec<CompletedPart>), BlobError> {
        let mut parts = Vec::new();
        let mut size = 0u64;
        let mut part = first;
        loop {
            let mut ended = false;
            while part.len() < STREAM_PART_LEN {
                match body.next().await {
                    Some(chunk) => part.extend_from_slice(&chunk?),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if !part.is_empty() || parts.is_empty() {
                let number = parts.len() as i32 + 1;
                size += part.len() as u64;
                let uploaded = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(std::mem::take(&mut part)))
                    .send()
                    .await
                    .map_err(unavailable)?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(uploaded.e_tag().map(str::to_string))
                        .build(),
                );
                part = Vec::with_capacity(STREAM_PART_LEN);
            }
            if ended {
                return Ok((size, parts));
            }
        }
    }

    /// Abandons a multipart upload (best effort: the bucket's lifecycle rule removes
    /// what an abort could not).
    async fn abort(&self, bucket: &str, key: &str, upload_id: &str) {
        if let Err(err) = self
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(error = %crate::error::cause_chain(&err), "aborting a multipart upload failed");
        }
    }
}

fn unavailable<E, R>(err: SdkError<E, R>) -> BlobError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    BlobError::Unavailable(Box::new(err))
}

/// NoSuchKey (GET) and a bare 404 (HEAD has no body to carry a code).
/// A missing bucket stays an error: it is a deployment fault, not an absent object.
fn is_missing<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err.code() {
        Some("NoSuchKey" | "NotFound") => true,
        Some("NoSuchBucket") => false,
        _ => err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 404),
    }
}

fn presigned(
    request: aws_sdk_s3::presigning::PresignedRequest,
    method: &'static str,
) -> PresignedRequest {
    PresignedRequest {
        method,
        url: request.uri().to_string(),
        headers: request
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), BlobError> {
        validate_key(key)?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata.into_iter().collect()))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn put_new(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, BlobError> {
        validate_key(key)?;
        // A checksum: S3 requires one on a put into a bucket with Object Lock.
        let put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .if_none_match("*")
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            // 412: an object exists; 409: a concurrent conditional put of the key won.
            Err(err)
                if matches!(
                    err.code(),
                    Some("PreconditionFailed" | "ConditionalRequestConflict")
                ) || err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 412) =>
            {
                Ok(false)
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn put_stream(
        &self,
        bucket: &str,
        key: &str,
        mut body: BlobBody,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<u64, BlobError> {
        validate_key(key)?;
        // The first part decides: a body that fits in one part is one PutObject.
        let mut part = Vec::with_capacity(STREAM_PART_LEN);
        let mut ended = false;
        while part.len() < STREAM_PART_LEN {
            match body.next().await {
                Some(chunk) => part.extend_from_slice(&chunk?),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            let size = part.len() as u64;
            self.put(bucket, key, Bytes::from(part), content_type, metadata)
                .await?;
            return Ok(size);
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata.into_iter().collect()))
            .send()
            .await
            .map_err(unavailable)?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| BlobError::Invalid("S3 answered no upload id".into()))?
            .to_string();
        match self.upload_parts(bucket, key, &upload_id, part, body).await {
            Ok((size, parts)) => {
                let completed = self
                    .client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                match completed {
                    Ok(_) => Ok(size),
                    Err(err) => {
                        self.abort(bucket, key, &upload_id).await;
                        Err(unavailable(err))
                    }
                }
            }
            Err(err) => {
                self.abort(bucket, key, &upload_id).await;
                Err(err)
            }
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<BlobObject>, BlobError> {
        validate_key(key)?;
        self.get_object(bucket, key, None, None).await
    }

    async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<BlobObject>, BlobError> {
        validate_key(key)?;
        self.get_object(bucket, key, None, version_id).await
    }

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<BlobObject>, BlobError> {
        validate_key(key)?;
        validate_range(start, end)?;
        self.get_object(bucket, key, Some((start, end)), None).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        validate_key(key)?;
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(BlobMeta {
                size: output.content_length().unwrap_or_default().max(0) as u64,
                content_type: output.content_type().map(str::to_string),
                metadata: output
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                version_id: output.version_id().map(str::to_string),
            })),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(unavailable(err)),
        }
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), BlobError> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_missing(&err) || err.code() == Some("NoSuchVersion") => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        content_length: Option<u64>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        validate_key(key)?;
        validate_expiry(expires_in)?;
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| BlobError::Invalid(e.to_string()))?;
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_content_length(content_length.map(|n| n as i64))
            .presigned(config)
            .await
            .map_err(unavailable)?;
        let mut signed = presigned(request, "PUT");
        signed
            .headers
            .entry("content-type".to_string())
            .or_insert_with(|| content_type.to_string());
        if let Some(length) = content_length {
            signed
                .headers
                .entry("content-length".to_string())
                .or_insert_with(|| length.to_string());
        }
        Ok(signed)
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        validate_key(key)?;
        validate_expiry(expires_in)?;
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| BlobError::Invalid(e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(unavailable)?;
        Ok(presigned(request, "GET"))
    }

    async fn check(&self, bucket: &str) -> Result<(), BlobError> {
        self.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

    fn blobs() -> S3Blobs {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
            .build();
        S3Blobs::new(aws_sdk_s3::Client::from_conf(config))
    }

    // Presigning is local computation: the URL must sign the content type and size, so a
    // client cannot upload something else (or more) under the same URL.
    #[tokio::test]
    async fn presigned_put_signs_the_content_type_and_expiry() {
        let put = blobs()
            .presign_put(
                "docs",
                "u1/f",
                "application/pdf",
                Some(4321),
                Duration::from_secs(300),
            )
            .await
            .expect("presign");
        assert_eq!(put.method, "PUT");
        assert!(
            put.url
                .starts_with("https://docs.s3.eu-west-1.amazonaws.com/u1/f?"),
            "{}",
            put.url
        );
        assert!(put.url.contains("X-Amz-Expires=300"), "{}", put.url);
        assert!(
            put.url
                .contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
            "the size and type are signed: {}",
            put.url
        );
        assert_eq!(
            put.headers.get("content-length").map(String::as_str),
            Some("4321")
        );
        assert_eq!(
            put.headers.get("content-type").map(String::as_str),
            Some("application/pdf")
        );
        let get = blobs()
            .presign_get("docs", "u1/f", Duration::from_secs(60))
            .await
            .expect("presign");
        assert_eq!(get.method, "GET");
        assert!(get.url.contains("X-Amz-Expires=60"), "{}", get.url);
    }
}
