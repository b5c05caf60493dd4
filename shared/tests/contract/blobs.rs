//! The blob port: objects with metadata, streaming, presigned URLs.

use crate::support;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use shared::adapters::aws::S3Blobs;
use shared::adapters::local::LocalBlobs;
use shared::clock::ManualClock;
use shared::ports::blobs::{BlobError, BlobStore, PresignedRequest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How a client's presigned request reaches the store.
enum Transport {
    /// Plain HTTP to the emulator, as a browser would upload to S3.
    Http(reqwest::Client),
    /// The local stack's side of a presigned URL: verify it, then serve it through the
    /// port (what the local router does under `PRESIGN_PATH`).
    Local(Arc<LocalBlobs>),
}

pub struct BlobFixture {
    blobs: Arc<dyn BlobStore>,
    bucket: String,
    transport: Transport,
    _dir: Option<tempfile::TempDir>,
}

impl BlobFixture {
    /// Sends a presigned request; `Ok(body)` on success, `Err(status)` when refused.
    async fn send(
        &self,
        request: &PresignedRequest,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, u16> {
        match &self.transport {
            Transport::Http(client) => {
                let method =
                    reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
                let mut builder = client.request(method, &request.url);
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                if let Some(body) = body {
                    builder = builder.body(body);
                }
                let response = builder.send().await.expect("HTTP request to the emulator");
                let status = response.status();
                let bytes = response.bytes().await.expect("body").to_vec();
                if status.is_success() {
                    Ok(bytes)
                } else {
                    Err(status.as_u16())
                }
            }
            Transport::Local(local) => {
                let url = url::Url::parse(&request.url).expect("url");
                let path_and_query = format!("{}?{}", url.path(), url.query().unwrap_or_default());
                let grant = local
                    .verify_presigned(request.method, &path_and_query)
                    .map_err(|_| 403u16)?;
                match request.method {
                    "PUT" => {
                        let content_type = request
                            .headers
                            .get("content-type")
                            .cloned()
                            .unwrap_or_default();
                        if grant.content_type.as_deref() != Some(content_type.as_str()) {
                            return Err(403);
                        }
                        let body = Bytes::from(body.unwrap_or_default());
                        if grant.content_length.is_some_and(|n| n != body.len() as u64) {
                            return Err(403);
                        }
                        local
                            .put(
                                &grant.bucket,
                                &grant.key,
                                body,
                                &content_type,
                                BTreeMap::new(),
                            )
                            .await
                            .map_err(|_| 500u16)?;
                        Ok(Vec::new())
                    }
                    _ => match local
                        .get(&grant.bucket, &grant.key)
                        .await
                        .map_err(|_| 500u16)?
                    {
                        Some(object) => Ok(object.collect().await.map_err(|_| 500u16)?),
                        None => Err(404),
                    },
                }
            }
        }
    }
}

async fn local_fixture() -> BlobFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let blobs = Arc::new(LocalBlobs::new(
        dir.path().join("blobs"),
        "http://127.0.0.1:1".into(),
        [9; 32],
        clock,
    ));
    blobs.create_bucket("docs").expect("bucket");
    BlobFixture {
        blobs: blobs.clone(),
        bucket: "docs".into(),
        transport: Transport::Local(blobs),
        _dir: Some(dir),
    }
}

async fn aws_fixture() -> Option<BlobFixture> {
    let sdk = support::aws()?;
    let client = shared::adapters::aws::s3_client(&sdk);
    let bucket = support::unique("docare-docs");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    // Versioned, as the template's buckets are.
    client
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
    Some(BlobFixture {
        blobs: Arc::new(S3Blobs::new(client)),
        bucket,
        transport: Transport::Http(reqwest::Client::new()),
        _dir: None,
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        ranged_reads,
        put_get_head_delete_roundtrip,
        put_new_never_replaces_an_object,
        missing_objects_are_none,
        streams_a_5_mib_object,
        presigned_put_then_get,
        invalid_keys_and_expiries_are_refused,
        check_reaches_the_bucket,
        streams_into_an_object,
        exact_versions,
    ];
    local_only: [a_presigned_put_of_another_size_is_refused, an_older_version_is_gone_locally];
}

fn metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("owner-id".to_string(), "01hzy".to_string()),
        ("sha256".to_string(), "ab12".to_string()),
    ])
}

async fn put_get_head_delete_roundtrip(fx: &BlobFixture) {
    let (b, key) = (&fx.bucket, "users/u1/doc-1");
    let body = Bytes::from_static(b"%PDF-1.7 not really");
    fx.blobs
        .put(b, key, body.clone(), "application/pdf", metadata())
        .await
        .expect("put");
    let head = fx.blobs.head(b, key).await.expect("head").expect("exists");
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(head.metadata, metadata());

    let object = fx.blobs.get(b, key).await.expect("get").expect("exists");
    assert_eq!(object.meta, head);
    assert_eq!(object.collect().await.expect("body"), body);

    // A second put replaces body, content type and metadata.
    fx.blobs
        .put(
            b,
            key,
            Bytes::from_static(b"v2"),
            "text/plain",
            BTreeMap::new(),
        )
        .await
        .expect("overwrite");
    let head = fx.blobs.head(b, key).await.expect("head").expect("exists");
    assert_eq!(
        (head.size, head.content_type.as_deref()),
        (2, Some("text/plain"))
    );
    assert!(head.metadata.is_empty());

    fx.blobs.delete(b, key).await.expect("delete");
    assert!(fx.blobs.head(b, key).await.expect("head").is_none());
    assert!(fx.blobs.get(b, key).await.expect("get").is_none());
}

async fn put_new_never_replaces_an_object(fx: &BlobFixture) {
    let (b, key) = (&fx.bucket, "archive/07/00000000000000000001.json");
    let first = Bytes::from_static(b"{\"v\":1}");
    assert!(fx
        .blobs
        .put_new(b, key, first.clone(), "application/json")
        .await
        .expect("put_new"));
    assert!(
        !fx.blobs
            .put_new(b, key, Bytes::from_static(b"{\"v\":2}"), "application/json")
            .await
            .expect("second put_new"),
        "an existing object is not replaced"
    );
    let object = fx.blobs.get(b, key).await.expect("get").expect("exists");
    assert_eq!(
        object.meta.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(object.collect().await.expect("body"), first);
}

async fn missing_objects_are_none(fx: &BlobFixture) {
    assert!(fx
        .blobs
        .get(&fx.bucket, "no/such")
        .await
        .expect("get")
        .is_none());
    assert!(fx
        .blobs
        .head(&fx.bucket, "no/such")
        .await
        .expect("head")
        .is_none());
    fx.blobs
        .delete(&fx.bucket, "no/such")
        .await
        .expect("deleting a missing object succeeds");
}

async fn streams_a_5_mib_object(fx: &BlobFixture) {
    let size = 5 * 1024 * 1024 + 17;
    let body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    fx.blobs
        .put(
            &fx.bucket,
            "big/object",
            Bytes::from(body.clone()),
            "application/octet-stream",
            BTreeMap::new(),
        )
        .await
        .expect("put");
    let object = fx
        .blobs
        .get(&fx.bucket, "big/object")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(object.meta.size, size as u64);
    let mut chunks = 0;
    let mut received = Vec::with_capacity(size);
    let mut stream = object.body;
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.expect("chunk"));
        chunks += 1;
    }
    assert!(chunks > 1, "the body arrives as a stream, not one buffer");
    assert!(received == body, "the streamed body equals what was stored");
}

async fn presigned_put_then_get(fx: &BlobFixture) {
    let (b, key) = (&fx.bucket, "uploads/u1/scan-1");
    let body = b"\x89PNG fake image".to_vec();
    let put = fx
        .blobs
        .presign_put(
            b,
            key,
            "image/png",
            Some(body.len() as u64),
            Duration::from_secs(300),
        )
        .await
        .expect("presign put");
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some("image/png")
    );
    assert!(
        put.url.starts_with("http"),
        "a URL the client can use: {}",
        put.url
    );

    fx.send(&put, Some(body.clone()))
        .await
        .expect("upload accepted");
    let head = fx
        .blobs
        .head(b, key)
        .await
        .expect("head")
        .expect("uploaded");
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.content_type.as_deref(), Some("image/png"));

    let get = fx
        .blobs
        .presign_get(b, key, Duration::from_secs(60))
        .await
        .expect("presign get");
    assert_eq!(get.method, "GET");
    assert_eq!(fx.send(&get, None).await.expect("download"), body);
    // A download URL is not an upload URL.
    let as_put = PresignedRequest {
        method: "PUT",
        ..get
    };
    if let Transport::Local(_) = fx.transport {
        // The emulator does not verify SigV4 signatures of presigned URLs, so the refusal of
        // a URL used with another method is only observable locally (S3 answers 403).
        assert_eq!(fx.send(&as_put, Some(b"x".to_vec())).await, Err(403));
    }
}

async fn invalid_keys_and_expiries_are_refused(fx: &BlobFixture) {
    let b = &fx.bucket;
    for key in ["", "/abs", "a/../b", "a//b", "./a", "a b", "a?b", "ü"] {
        let put = fx
            .blobs
            .put(
                b,
                key,
                Bytes::from_static(b"x"),
                "text/plain",
                BTreeMap::new(),
            )
            .await;
        assert!(matches!(put, Err(BlobError::Invalid(_))), "put {key:?}");
        assert!(
            matches!(fx.blobs.get(b, key).await, Err(BlobError::Invalid(_))),
            "get {key:?}"
        );
        assert!(
            matches!(fx.blobs.head(b, key).await, Err(BlobError::Invalid(_))),
            "head {key:?}"
        );
        assert!(
            matches!(fx.blobs.delete(b, key).await, Err(BlobError::Invalid(_))),
            "delete {key:?}"
        );
        let presign = fx.blobs.presign_get(b, key, Duration::from_secs(60)).await;
        assert!(
            matches!(presign, Err(BlobError::Invalid(_))),
            "presign {key:?}"
        );
    }
    for expiry in [Duration::ZERO, Duration::from_secs(3601)] {
        let put = fx
            .blobs
            .presign_put(b, "ok/key", "text/plain", None, expiry)
            .await;
        assert!(
            matches!(put, Err(BlobError::Invalid(_))),
            "expiry {expiry:?}"
        );
        let get = fx.blobs.presign_get(b, "ok/key", expiry).await;
        assert!(
            matches!(get, Err(BlobError::Invalid(_))),
            "expiry {expiry:?}"
        );
    }
}

async fn check_reaches_the_bucket(fx: &BlobFixture) {
    fx.blobs.check(&fx.bucket).await.expect("check");
}

/// Ranged reads (what a large download is served by): exact bytes, a range past the end
/// cut to the object, the whole size reported, a start past the end refused.
async fn ranged_reads(fx: &BlobFixture) {
    let key = support::unique("range");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fx.blobs
        .put(
            &fx.bucket,
            &key,
            Bytes::from(body.clone()),
            "application/octet-stream",
            BTreeMap::new(),
        )
        .await
        .expect("put");
    for (start, end) in [
        (0u64, 1u64),
        (10, 70_000),
        (299_999, 300_000),
        (250_000, 400_000),
    ] {
        let object = fx
            .blobs
            .get_range(&fx.bucket, &key, start, end)
            .await
            .expect("get_range")
            .expect("exists");
        assert_eq!(object.meta.size, 300_000, "{start}..{end}");
        let bytes = object.collect().await.expect("body");
        assert_eq!(
            bytes,
            body[start as usize..end.min(300_000) as usize],
            "{start}..{end}"
        );
    }
    assert!(matches!(
        fx.blobs.get_range(&fx.bucket, &key, 300_000, 300_010).await,
        Err(BlobError::Invalid(_))
    ));
    assert!(matches!(
        fx.blobs.get_range(&fx.bucket, &key, 5, 5).await,
        Err(BlobError::Invalid(_))
    ));
    assert!(fx
        .blobs
        .get_range(&fx.bucket, &support::unique("nothing"), 0, 10)
        .await
        .expect("missing")
        .is_none());
}

/// A streamed upload: several parts (a multipart upload on S3), one part, and a stream
/// that fails, which leaves nothing behind.
async fn streams_into_an_object(fx: &BlobFixture) {
    use shared::ports::blobs::{BlobBody, STREAM_PART_LEN};
    let chunks = |data: Vec<u8>, fail: bool| -> BlobBody {
        let mut items: Vec<Result<Bytes, BlobError>> = data
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        if fail {
            items.push(Err(BlobError::Invalid("the producer gave up".into())));
        }
        futures::stream::iter(items).boxed()
    };
    for size in [2 * STREAM_PART_LEN + 12_345, 1_000, 0] {
        let key = format!("sealed/{}", support::unique("stream"));
        let body: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
        let written = fx
            .blobs
            .put_stream(
                &fx.bucket,
                &key,
                chunks(body.clone(), false),
                "application/octet-stream",
                metadata(),
            )
            .await
            .expect("put_stream");
        assert_eq!(written, size as u64);
        let object = fx
            .blobs
            .get(&fx.bucket, &key)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(object.meta.metadata, metadata());
        assert!(
            object.collect().await.expect("body") == body,
            "{size} bytes"
        );
    }
    for size in [2 * STREAM_PART_LEN + 1, 10] {
        let key = format!("sealed/{}", support::unique("aborted"));
        let failed = fx
            .blobs
            .put_stream(
                &fx.bucket,
                &key,
                chunks(vec![1; size], true),
                "application/octet-stream",
                BTreeMap::new(),
            )
            .await;
        assert!(failed.is_err(), "a failing stream fails the upload");
        assert!(
            fx.blobs
                .head(&fx.bucket, &key)
                .await
                .expect("head")
                .is_none(),
            "nothing is left of an aborted upload ({size} bytes)"
        );
    }
}

/// Every write has a version; an exact version is read and deleted, and deleting one
/// version leaves a newer one in place.
async fn exact_versions(fx: &BlobFixture) {
    let (b, key) = (&fx.bucket, "uploads/versioned");
    let put = |body: &'static [u8]| async move {
        fx.blobs
            .put(
                b,
                key,
                Bytes::from_static(body),
                "text/plain",
                BTreeMap::new(),
            )
            .await
            .expect("put");
        fx.blobs
            .head(b, key)
            .await
            .expect("head")
            .expect("exists")
            .version_id
            .expect("a version id")
    };
    let first = put(b"first").await;
    let object = fx
        .blobs
        .get_version(b, key, Some(&first))
        .await
        .expect("get_version")
        .expect("that version");
    assert_eq!(object.meta.version_id.as_deref(), Some(first.as_str()));
    assert_eq!(object.collect().await.expect("body"), b"first");

    let second = put(b"second").await;
    assert_ne!(first, second);
    let current = fx
        .blobs
        .get_version(b, key, None)
        .await
        .expect("get_version")
        .expect("current");
    assert_eq!(current.collect().await.expect("body"), b"second");
    // Deleting the older version keeps the newer one.
    fx.blobs
        .delete_version(b, key, Some(&first))
        .await
        .expect("delete the first version");
    let head = fx.blobs.head(b, key).await.expect("head").expect("kept");
    assert_eq!(head.version_id.as_deref(), Some(second.as_str()));
    fx.blobs
        .delete_version(b, key, Some(&second))
        .await
        .expect("delete the second version");
    assert!(fx.blobs.head(b, key).await.expect("head").is_none());
    fx.blobs
        .delete_version(b, key, Some(&second))
        .await
        .expect("deleting a missing version succeeds");
}

/// The local stack checks a presigned upload's signed size, as S3 checks the signed
/// `Content-Length` (the emulator checks no signature).
async fn a_presigned_put_of_another_size_is_refused(fx: &BlobFixture) {
    let put = fx
        .blobs
        .presign_put(
            &fx.bucket,
            "uploads/sized",
            "text/plain",
            Some(5),
            Duration::from_secs(60),
        )
        .await
        .expect("presign");
    assert_eq!(fx.send(&put, Some(b"123456".to_vec())).await, Err(403));
    assert_eq!(fx.send(&put, Some(b"12345".to_vec())).await, Ok(Vec::new()));
}

/// The local store keeps only the current version (S3 keeps older ones).
async fn an_older_version_is_gone_locally(fx: &BlobFixture) {
    let (b, key) = (&fx.bucket, "uploads/replaced");
    let mut versions = Vec::new();
    for body in [&b"one"[..], b"two"] {
        fx.blobs
            .put(
                b,
                key,
                Bytes::from_static(body),
                "text/plain",
                BTreeMap::new(),
            )
            .await
            .expect("put");
        versions.push(
            fx.blobs
                .head(b, key)
                .await
                .expect("head")
                .expect("exists")
                .version_id,
        );
    }
    assert!(fx
        .blobs
        .get_version(b, key, versions[0].as_deref())
        .await
        .expect("get_version")
        .is_none());
}
