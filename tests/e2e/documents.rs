//! Documents end to end, issue 15's "done when": over HTTP against the running local
//! stack (presigned upload into the local quarantine, the S3 event on the scans queue,
//! the scanner worker, ranged decrypted reads), and the same flow through the AWS
//! adapters against the emulator (moto: a versioned quarantine bucket whose uploads are
//! announced on an SQS queue, S3 multipart uploads, DynamoDB, KMS): a PDF uploaded
//! becomes `available` and reads back byte for byte; the EICAR file is `rejected`; the
//! stored object holds no plaintext; a flipped byte, a dropped last frame or two swapped
//! frames make the read fail with an integrity error.

use docare_e2e::{pdf, TestStack};
use docare_local::accounts;
use futures::StreamExt;
use http::Method;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use shared::crypto::frames::{HEADER_LEN, SEALED_FRAME_LEN};
use shared::ports::scanner::EICAR;
use shared::ports::BlobStore;
use shared::testing::{dispatch, request};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What the tampering cases do to a sealed object (at least three frames).
fn tampered(sealed: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut flipped = sealed.to_vec();
    flipped[HEADER_LEN + SEALED_FRAME_LEN + 100] ^= 0x01;
    let last_start =
        HEADER_LEN + (sealed.len() - HEADER_LEN - 1) / SEALED_FRAME_LEN * SEALED_FRAME_LEN;
    let dropped = sealed[..last_start].to_vec();
    let mut swapped = sealed[..HEADER_LEN].to_vec();
    let frame = |i: usize| {
        &sealed[HEADER_LEN + i * SEALED_FRAME_LEN..HEADER_LEN + (i + 1) * SEALED_FRAME_LEN]
    };
    swapped.extend_from_slice(frame(1));
    swapped.extend_from_slice(frame(0));
    swapped.extend_from_slice(&sealed[HEADER_LEN + 2 * SEALED_FRAME_LEN..]);
    vec![
        ("a flipped byte", flipped),
        ("a dropped last frame", dropped),
        ("two swapped frames", swapped),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The document's record as its owner reads it, once it left pending/scanning (or the
/// last answer when the wait runs out).
async fn decided(t: &TestStack, token: &str, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        let response = t
            .http
            .get(t.url(&format!("/api/v1/documents/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        last = response.json().await.expect("json");
        if !matches!(last["status"].as_str(), Some("pending_upload" | "scanning")) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

/// POST /api/v1/documents, then the PUT a browser would send to the upload URL.
async fn upload(t: &TestStack, token: &str, body: Value, bytes: &[u8]) -> String {
    let response = t
        .http
        .post(t.url("/api/v1/documents"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), 201);
    let ticket: Value = response.json().await.expect("json");
    assert_eq!(ticket["status"], "pending_upload");
    assert_eq!(ticket["upload_method"], "PUT");
    let url = ticket["upload_url"].as_str().expect("url");
    assert!(
        url.starts_with(&t.stack.http_url()),
        "the local stack: {url}"
    );
    let mut put = t.http.put(url).body(bytes.to_vec());
    for (name, value) in ticket["upload_headers"].as_object().expect("headers") {
        if name != "content-length" {
            put = put.header(name, value.as_str().expect("value"));
        }
    }
    let stored = put.send().await.expect("put");
    assert_eq!(stored.status(), 200, "{:?}", stored.text().await);
    ticket["id"].as_str().expect("id").to_string()
}

async fn read(
    t: &TestStack,
    token: &str,
    id: &str,
    range: Option<&str>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut get = t
        .http
        .get(t.url(&format!("/api/v1/documents/{id}/content")))
        .bearer_auth(token);
    if let Some(range) = range {
        get = get.header("range", range);
    }
    let response = get.send().await.expect("content");
    let status = response.status().as_u16();
    let content_range = response
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        status,
        content_range,
        response.bytes().await.expect("body").to_vec(),
    )
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next `document` event pushed to the owner.
async fn notice(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a notice in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let event: Value = serde_json::from_str(text.as_str()).unwrap();
            if event["type"] == "document" {
                return event["data"].clone();
            }
        }
    }
}

#[tokio::test]
pub(crate) async fn a_pdf_and_the_eicar_file_through_the_local_stack_over_http() {
    let t = TestStack::start().await;
    let app = t.app().clone();
    let patient = accounts::create(
        &app,
        "doc-patient@example.com",
        "Dana Docs",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    let provider = accounts::create(
        &app,
        "doc-dr@example.com",
        "Dr Fil Files",
        Role::Provider,
        true,
    )
    .await
    .unwrap();
    care::start(&app, &provider.id, &patient.id, "admin", None)
        .await
        .unwrap();
    let token = |id: String, role| {
        let app = app.clone();
        async move {
            app.tokens
                .issue(&app, &id, role, &app.new_id(), &["pwd", "mfa", "otp"])
                .await
                .unwrap()
                .0
        }
    };
    let patient_token = token(patient.id.clone(), Role::Patient).await;
    let provider_token = token(provider.id.clone(), Role::Provider).await;

    // The owner's WebSocket hears about each decision.
    let mut ws = t.stack.ws_url().into_client_request().unwrap();
    ws.headers_mut().insert(
        "authorization",
        format!("Bearer {patient_token}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws)
        .await
        .expect("connects");
    // And a connection the gateway no longer has: the notice finds it gone and forgets it.
    shared::store::connections::open(&app, "gone-connection", &patient.id, Role::Patient, "s1")
        .await
        .expect("a stale connection");

    // A 5 MiB PDF: more than one read can carry (the HTTP API's payload limit).
    let marker = "Dana Docs: thyroid panel, TSH 2.1 mIU/L";
    let document = pdf((5 << 20) + 12_345, marker);
    let id = upload(
        &t,
        &patient_token,
        json!({"name": "thyroid panel.pdf", "content_type": "application/pdf",
            "size": document.len(), "category": "lab_result"}),
        &document,
    )
    .await;
    let record = decided(&t, &patient_token, &id).await;
    assert_eq!(record["status"], "available", "{record}");
    assert_eq!(record["size"], document.len());
    assert_eq!(record["name"], "thyroid panel.pdf");
    let sha = <sha2::Sha256 as sha2::Digest>::digest(&document);
    assert_eq!(record["sha256"], hex::encode(sha));
    let heard = notice(&mut socket).await;
    assert_eq!(
        (heard["id"].as_str(), heard["status"].as_str()),
        (Some(id.as_str()), Some("available"))
    );
    // The quarantine copy is gone.
    let parts = &t.stack.parts;
    let upload_key = shared::store::documents::upload_key(&id);
    assert!(parts
        .blobs
        .head(&app.config.quarantine_bucket, &upload_key)
        .await
        .unwrap()
        .is_none());

    // Read back in 4 MiB pieces: byte for byte.
    let (status, range, first) = read(&t, &patient_token, &id, None).await;
    assert_eq!(status, 206, "a document over 4 MiB comes in pieces");
    assert_eq!(
        range.as_deref(),
        Some(format!("bytes 0-{}/{}", (4 << 20) - 1, document.len()).as_str())
    );
    let (status, _, rest) = read(
        &t,
        &patient_token,
        &id,
        Some(&format!("bytes={}-", 4 << 20)),
    )
    .await;
    assert_eq!(status, 206);
    let mut whole = first;
    whole.extend_from_slice(&rest);
    assert!(
        whole == document,
        "the download matches the upload byte for byte"
    );
    let (status, _, middle) = read(&t, &patient_token, &id, Some("bytes=65530-131080")).await;
    assert_eq!(status, 206);
    assert!(middle == document[65_530..131_081], "a range across frames");
    let (status, range, _) = read(&t, &patient_token, &id, Some("bytes=99999999-")).await;
    assert_eq!(
        (status, range.as_deref()),
        (416, Some(format!("bytes */{}", document.len()).as_str()))
    );

    // The stored object is sealed: none of the upload's text is in it.
    let sealed_key = shared::store::documents::sealed_key(&id);
    let sealed = parts
        .blobs
        .get(&app.config.documents_bucket, &sealed_key)
        .await
        .unwrap()
        .expect("sealed object")
        .collect()
        .await
        .unwrap();
    assert!(!contains(&sealed, marker.as_bytes()) && !contains(&sealed, b"%PDF-"));

    // Tampering fails the download (its pieces, read in turn) with an integrity error.
    for (what, bytes) in tampered(&sealed) {
        parts
            .blobs
            .put(
                &app.config.documents_bucket,
                &sealed_key,
                bytes.into(),
                "application/octet-stream",
                Default::default(),
            )
            .await
            .unwrap();
        let mut failed = None;
        for piece in [
            format!("bytes=0-{}", (4 << 20) - 1),
            format!("bytes={}-", 4 << 20),
        ] {
            let (status, _, body) = read(&t, &patient_token, &id, Some(&piece)).await;
            if status != 206 {
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                failed = Some((status, body["error"]["code"].as_str().map(str::to_string)));
                break;
            }
        }
        assert_eq!(
            failed,
            Some((500, Some("integrity_failure".to_string()))),
            "{what}"
        );
    }
    parts
        .blobs
        .put(
            &app.config.documents_bucket,
            &sealed_key,
            sealed.clone().into(),
            "application/octet-stream",
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        read(&t, &patient_token, &id, Some("bytes=0-9")).await.2,
        &document[..10]
    );

    // The same content again is linked, not stored twice.
    let again = upload(
        &t,
        &patient_token,
        json!({"name": "thyroid panel (copy).pdf", "content_type": "application/pdf",
            "size": document.len(), "category": "lab_result"}),
        &document,
    )
    .await;
    let record = decided(&t, &patient_token, &again).await;
    assert_eq!(
        (record["status"].as_str(), record["duplicate_of"].as_str()),
        (Some("available"), Some(id.as_str())),
        "{record}"
    );
    assert!(
        parts
            .blobs
            .head(
                &app.config.documents_bucket,
                &shared::store::documents::sealed_key(&again)
            )
            .await
            .unwrap()
            .is_none(),
        "no second sealed object"
    );
    let (_, _, head) = read(&t, &patient_token, &again, Some("bytes=0-99")).await;
    assert_eq!(head, &document[..100]);
    assert_eq!(notice(&mut socket).await["status"], "available");

    // The EICAR test file is rejected, and nothing of it is kept.
    let eicar = upload(
        &t,
        &patient_token,
        json!({"name": "notes.txt", "content_type": "text/plain", "size": EICAR.len(),
            "category": "other"}),
        EICAR,
    )
    .await;
    let record = decided(&t, &patient_token, &eicar).await;
    assert_eq!(
        (record["status"].as_str(), record["reason"].as_str()),
        (Some("rejected"), Some("malware")),
        "{record}"
    );
    let heard = notice(&mut socket).await;
    assert_eq!(
        (heard["status"].as_str(), heard["reason"].as_str()),
        (Some("rejected"), Some("malware"))
    );
    assert_eq!(read(&t, &patient_token, &eicar, None).await.0, 409);
    for (bucket, key) in [
        (
            &app.config.quarantine_bucket,
            shared::store::documents::upload_key(&eicar),
        ),
        (
            &app.config.documents_bucket,
            shared::store::documents::sealed_key(&eicar),
        ),
    ] {
        assert!(
            parts.blobs.head(bucket, &key).await.unwrap().is_none(),
            "{bucket}/{key}"
        );
    }

    // Not what was declared: a PNG sent as a PDF.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not a pdf at all".to_vec();
    let fake = upload(
        &t,
        &patient_token,
        json!({"name": "scan.pdf", "content_type": "application/pdf", "size": png.len(),
            "category": "imaging"}),
        &png,
    )
    .await;
    let record = decided(&t, &patient_token, &fake).await;
    assert_eq!(record["reason"], "type_mismatch", "{record}");

    // The upload URL is bound to the declared size and type, and expires.
    let response = t
        .http
        .post(t.url("/api/v1/documents"))
        .bearer_auth(&patient_token)
        .json(
            &json!({"name": "x.txt", "content_type": "text/plain", "size": 5, "category": "other"}),
        )
        .send()
        .await
        .unwrap();
    let ticket: Value = response.json().await.unwrap();
    let url = ticket["upload_url"].as_str().unwrap();
    let refused = t
        .http
        .put(url)
        .header("content-type", "text/plain")
        .body("123456")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "another size");
    let refused = t
        .http
        .put(url)
        .header("content-type", "text/html")
        .body("12345")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "another type");

    // Lists: the owner's (every category), a provider's (what is shared with them).
    let list = |token: String, query: &'static str| {
        let t = &t;
        async move {
            let response = t
                .http
                .get(t.url(&format!("/api/v1/documents{query}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let page: Value = response.json().await.unwrap();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let owned = list(patient_token.clone(), "").await;
    assert_eq!(owned.len(), 5, "{owned:?}");
    assert_eq!(owned.last(), Some(&id), "newest first");
    assert!(list(provider_token.clone(), "?category=lab_result")
        .await
        .is_empty());

    // A provider in the care team reads only what is shared with them.
    let (status, _, _) = read(&t, &provider_token, &id, Some("bytes=0-9")).await;
    assert_eq!(status, 404);
    let shared = t
        .http
        .post(t.url(&format!("/api/v1/documents/{id}/share")))
        .bearer_auth(&patient_token)
        .json(&json!({"provider_id": provider.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(shared.status(), 200);
    let (status, _, bytes) = read(&t, &provider_token, &id, Some("bytes=0-9")).await;
    assert_eq!((status, bytes.as_slice()), (206, &document[..10]));
    assert_eq!(
        list(provider_token.clone(), "?category=lab_result").await,
        vec![id.clone()]
    );
    t.stack.stop().await;
}

/// A flow test of the rules on a throw-away app: a provider uploads for a patient in
/// their care (shared with them), sharing needs a care relationship, uploads count
/// against 20 an hour, deleting hides the document.
#[tokio::test]
async fn uploads_shares_limits_and_deletes() {
    let t = shared::testing::TestApp::new();
    let app = &t.app;
    let router = docare_documents::router();
    let patient = shared::testing::account(app, "p@example.com", "Pat", Role::Patient).await;
    let carer = shared::testing::account(app, "c@example.com", "Dr Care", Role::Provider).await;
    let stranger =
        shared::testing::account(app, "s@example.com", "Dr Strange", Role::Provider).await;
    care::start(app, &carer, &patient, "admin", None)
        .await
        .unwrap();
    let pt = shared::testing::token(app, &patient, Role::Patient, "p", &["pwd"]).await;
    let ct = shared::testing::token(app, &carer, Role::Provider, "c", &["pwd", "mfa", "otp"]).await;
    let st =
        shared::testing::token(app, &stranger, Role::Provider, "s", &["pwd", "mfa", "otp"]).await;
    let body = |size: usize| json!({"name": "a.pdf", "content_type": "application/pdf", "size": size, "category": "referral"});

    // The carer uploads for the patient: the patient owns it, the carer reads it.
    let mut for_patient = body(1000);
    for_patient["patient_id"] = json!(patient);
    let ticket = docare_e2e::start_upload(app, &ct, for_patient.clone()).await;
    let bytes = pdf(1000, "referral letter");
    docare_e2e::upload_and_scan(app, &ticket, &bytes).await;
    let id = ticket["id"].as_str().unwrap();
    for token in [&pt, &ct] {
        let (status, doc) = dispatch(
            &router,
            app,
            request(
                Method::GET,
                &format!("/api/v1/documents/{id}"),
                Some(token),
                None,
            ),
        )
        .await;
        assert_eq!(
            (
                status,
                doc["owner_id"].as_str(),
                doc["uploaded_by"].as_str()
            ),
            (200, Some(patient.as_str()), Some(carer.as_str()))
        );
    }
    let mut req = request(Method::GET, "/api/v1/documents", Some(&ct), None);
    req.query.insert("category".into(), "referral".into());
    let (status, list) = dispatch(&router, app, req).await;
    assert_eq!(
        (status, list["items"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{list}"
    );
    let mut req = request(Method::GET, "/api/v1/documents", Some(&pt), None);
    req.query.insert("category".into(), "imaging".into());
    let (_, list) = dispatch(&router, app, req).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    // Not a provider outside the care team.
    let (status, _) = dispatch(
        &router,
        app,
        request(
            Method::POST,
            "/api/v1/documents",
            Some(&st),
            Some(for_patient),
        ),
    )
    .await;
    assert_eq!(status, 404);
    let share = |token: &str, provider: &str| {
        request(
            Method::POST,
            &format!("/api/v1/documents/{id}/share"),
            Some(token),
            Some(json!({"provider_id": provider})),
        )
    };
    let (status, answer) = dispatch(&router, app, share(&pt, &stranger)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("unprocessable"))
    );
    let (status, _) = dispatch(&router, app, share(&ct, &carer)).await;
    assert_eq!(status, 403, "the owner shares");
    let (status, _) = dispatch(&router, app, share(&pt, &carer)).await;
    assert_eq!(status, 200);
    // Declared types and sizes are checked up front.
    for (bad, code) in [
        (
            json!({"name": "a.exe", "content_type": "application/x-msdownload", "size": 10, "category": "other"}),
            400,
        ),
        (
            json!({"name": "a.pdf", "content_type": "application/pdf", "size": 0, "category": "other"}),
            400,
        ),
        (
            json!({"name": "a.pdf", "content_type": "application/pdf", "size": (25 << 20) + 1, "category": "other"}),
            422,
        ),
        (
            json!({"name": "../a.pdf", "content_type": "application/pdf", "size": 10, "category": "other"}),
            400,
        ),
        (
            json!({"name": "a.pdf", "content_type": "application/pdf", "size": 10, "category": "secrets"}),
            400,
        ),
    ] {
        let (status, _) = dispatch(
            &router,
            app,
            request(
                Method::POST,
                "/api/v1/documents",
                Some(&pt),
                Some(bad.clone()),
            ),
        )
        .await;
        assert_eq!(status, code, "{bad}");
    }
    // 20 uploads an hour per account: the carer spent one.
    for n in 1..20 {
        let (status, _) = dispatch(
            &router,
            app,
            request(Method::POST, "/api/v1/documents", Some(&pt), Some(body(10))),
        )
        .await;
        assert_eq!(status, 201, "upload {n}");
    }
    let (status, _) = dispatch(
        &router,
        app,
        request(Method::POST, "/api/v1/documents", Some(&pt), Some(body(10))),
    )
    .await;
    assert_eq!(status, 201, "the patient's 20th");
    let (status, _) = dispatch(
        &router,
        app,
        request(Method::POST, "/api/v1/documents", Some(&pt), Some(body(10))),
    )
    .await;
    assert_eq!(status, 429, "the 21st within the hour");
    // Deleting: the owner only; then it is gone for everyone.
    let (status, _) = dispatch(
        &router,
        app,
        request(
            Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            Some(&ct),
            None,
        ),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = dispatch(
        &router,
        app,
        request(
            Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            Some(&pt),
            None,
        ),
    )
    .await;
    assert_eq!(status, 204);
    for token in [&pt, &ct] {
        let (status, _) = dispatch(
            &router,
            app,
            request(
                Method::GET,
                &format!("/api/v1/documents/{id}/content"),
                Some(token),
                None,
            ),
        )
        .await;
        assert_eq!(status, 404);
    }
    let (_, list) = dispatch(
        &router,
        app,
        request(Method::GET, "/api/v1/documents", Some(&ct), None),
    )
    .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}

/// Issue 14's attachments: a message refers to documents by id; sending it shares them
/// with the conversation's providers in the send's one commit, with a share event per
/// document beside the message's. Only the patient attaches, only their own available
/// documents; anything else is refused and stores nothing; a document deleted between
/// the check and the commit makes the send a 409 that stores nothing.
#[tokio::test]
async fn attaching_documents_to_a_message_shares_them_with_the_conversation() {
    use shared::audit::{Action, AuditReader, TimeRange};
    use shared::http::pagination::PageRequest;
    let t = shared::testing::TestApp::new();
    let app = &t.app;
    let documents = docare_documents::router();
    let messages = docare_messages::router();
    let patient = shared::testing::account(app, "p@example.com", "Pat", Role::Patient).await;
    let other = shared::testing::account(app, "o@example.com", "Olga", Role::Patient).await;
    let carer = shared::testing::account(app, "c@example.com", "Dr Care", Role::Provider).await;
    let second = shared::testing::account(app, "d@example.com", "Dr Two", Role::Provider).await;
    let stranger =
        shared::testing::account(app, "s@example.com", "Dr Strange", Role::Provider).await;
    for provider in [&carer, &second] {
        care::start(app, provider, &patient, "admin", None)
            .await
            .unwrap();
    }
    care::start(app, &carer, &other, "admin", None)
        .await
        .unwrap();
    let staff = ["pwd", "mfa", "otp"];
    let pt = shared::testing::token(app, &patient, Role::Patient, "p", &["pwd"]).await;
    let ot = shared::testing::token(app, &other, Role::Patient, "o", &["pwd"]).await;
    let ct = shared::testing::token(app, &carer, Role::Provider, "c", &staff).await;
    let dt = shared::testing::token(app, &second, Role::Provider, "d", &staff).await;
    let st = shared::testing::token(app, &stranger, Role::Provider, "s", &staff).await;
    let body = json!({"name": "lab.pdf", "content_type": "application/pdf", "size": 900, "category": "lab_result"});
    let mut ids = Vec::new();
    for token in [&pt, &pt, &ot] {
        let ticket = docare_e2e::start_upload(app, token, body.clone()).await;
        docare_e2e::upload_and_scan(app, &ticket, &pdf(900, "lab result")).await;
        ids.push(ticket["id"].as_str().unwrap().to_string());
    }
    let (mine, also_mine, theirs) = (&ids[0], &ids[1], &ids[2]);
    let pending = docare_e2e::start_upload(app, &pt, body.clone()).await;
    let pending = pending["id"].as_str().unwrap().to_string();
    let get = |token: &str, id: &str| {
        request(
            Method::GET,
            &format!("/api/v1/documents/{id}"),
            Some(token),
            None,
        )
    };
    let (status, conversation) = dispatch(
        &messages,
        app,
        request(
            Method::POST,
            "/api/v1/conversations",
            Some(&pt),
            Some(json!({"participant_ids": [carer, second]})),
        ),
    )
    .await;
    assert_eq!(status, 201, "{conversation}");
    let path = format!(
        "/api/v1/conversations/{}/messages",
        conversation["id"].as_str().unwrap()
    );
    let send = |token: &str, cmid: &str, attachments: Value| {
        request(
            Method::POST,
            &path,
            Some(token),
            Some(
                json!({"client_message_id": cmid, "body": "my results", "attachments": attachments}),
            ),
        )
    };
    let stored = || async {
        let (status, page) =
            dispatch(&messages, app, request(Method::GET, &path, Some(&pt), None)).await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().unwrap().len()
    };
    for token in [&ct, &dt] {
        let (status, _) = dispatch(&documents, app, get(token, mine)).await;
        assert_eq!(status, 404, "not shared yet");
    }

    // Refused, and nothing stored or shared: someone else's document, a pending one, a
    // provider attaching (sharing is the owner's right, even of one shared with them),
    // a malformed id, a repeat, too many.
    let unknown = app.new_id();
    let refusals = [
        (&pt, json!([theirs]), 422),
        (&pt, json!([pending]), 422),
        (&pt, json!([unknown]), 422),
        (&ct, json!([mine]), 422),
        (&pt, json!(["../etc"]), 400),
        (&pt, json!([mine, mine]), 400),
        (
            &pt,
            json!([mine, also_mine, mine, also_mine, mine, also_mine]),
            400,
        ),
    ];
    for (n, (token, attachments, code)) in refusals.iter().enumerate() {
        let (status, answer) = dispatch(
            &messages,
            app,
            send(token, &format!("bad-{n}"), attachments.clone()),
        )
        .await;
        assert_eq!(status, *code, "{attachments}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("attachments"), "{message}");
    }
    assert_eq!(stored().await, 0, "a refused send stores nothing");
    for token in [&ct, &dt] {
        let (status, _) = dispatch(&documents, app, get(token, mine)).await;
        assert_eq!(status, 404, "a refused send shares nothing");
    }

    // Sent: the message names them, every provider in the conversation reads them,
    // nobody else does; a resend is the same message.
    let (status, message) = dispatch(
        &messages,
        app,
        send(&pt, "with-results", json!([mine, also_mine])),
    )
    .await;
    assert_eq!(status, 201, "{message}");
    assert_eq!(message["attachments"], json!([mine, also_mine]));
    let (status, again) = dispatch(
        &messages,
        app,
        send(&pt, "with-results", json!([mine, also_mine])),
    )
    .await;
    assert_eq!((status, &again["id"]), (200, &message["id"]));
    for token in [&ct, &dt] {
        for id in [mine, also_mine] {
            let (status, doc) = dispatch(&documents, app, get(token, id)).await;
            assert_eq!(
                (status, doc["owner_id"].as_str()),
                (200, Some(patient.as_str()))
            );
        }
        let (status, page) = dispatch(
            &messages,
            app,
            request(Method::GET, &path, Some(token), None),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            page["items"][0]["attachments"],
            json!([mine, also_mine]),
            "{page}"
        );
    }
    for (token, id) in [(&st, mine), (&ot, mine), (&ct, theirs)] {
        let (status, _) = dispatch(&documents, app, get(token, id)).await;
        assert_eq!(status, 404, "{id}");
    }
    assert_eq!(stored().await, 1);

    // Each share is audited on its document, beside the message's own event.
    let page = PageRequest {
        limit: 100,
        start: None,
    };
    for id in [mine, also_mine] {
        let events = AuditReader::of(app)
            .by_resource("document", id, &TimeRange::default(), &page)
            .await
            .unwrap()
            .items;
        let shares: Vec<_> = events
            .iter()
            .filter(|e| {
                e.action == Action::Update && e.actor.user_id.as_deref() == Some(patient.as_str())
            })
            .collect();
        assert_eq!(shares.len(), 1, "one share event for {id}: {events:?}");
    }
    let report = shared::audit::verify(
        &AuditReader::of(app),
        app.clock.now(),
        &shared::audit::VerifyOptions::default(),
    )
    .await
    .unwrap();
    assert!(report.is_intact(), "{:?}", report.first_break);

    // Deleted between the send's check and its commit: the transaction's own check
    // refuses it, and nothing is stored or shared.
    let late = docare_e2e::start_upload(app, &pt, body.clone()).await;
    docare_e2e::upload_and_scan(app, &late, &pdf(900, "late")).await;
    let late = late["id"].as_str().unwrap().to_string();
    let checked = shared::store::documents::stored(app, &late)
        .await
        .unwrap()
        .unwrap();
    let (status, _) = dispatch(
        &documents,
        app,
        request(
            Method::DELETE,
            &format!("/api/v1/documents/{late}"),
            Some(&pt),
            None,
        ),
    )
    .await;
    assert_eq!(status, 204);
    let conversation = shared::store::messages::stored(app, conversation["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let principal = shared::auth::authenticate(app, &send(&pt, "x", json!([])))
        .await
        .unwrap();
    let req = send(&pt, "late", json!([late]));
    let outcome = shared::store::messages::send(
        app,
        &req,
        &principal,
        &conversation,
        shared::store::messages::Outgoing {
            sender_id: &patient,
            client_message_id: "late",
            body: shared::domain::conversation::Body::parse(
                "late",
                shared::domain::conversation::Encryption::Server,
            )
            .unwrap(),
            attachments: vec![shared::store::messages::Attachment {
                document: &checked,
                event: shared::auth::audit_event(
                    &req,
                    &principal,
                    Action::Update,
                    shared::audit::Outcome::Success,
                )
                .resource("document", &late),
            }],
        },
        |id| {
            shared::auth::audit_event(
                &req,
                &principal,
                Action::Create,
                shared::audit::Outcome::Success,
            )
            .resource("conversation", id)
        },
    )
    .await;
    assert!(
        matches!(outcome, Err(shared::ApiError::Conflict(_))),
        "{outcome:?}"
    );
    assert_eq!(stored().await, 1, "the late send stored nothing");
    assert!(
        !shared::store::documents::is_shared_with(app, &late, &carer)
            .await
            .unwrap()
    );
}

/// Redelivery and a second PUT: an event for a document already decided only removes
/// the upload; a malformed or foreign event fails (the dead-letter queue's business).
#[tokio::test]
async fn the_scanner_is_idempotent_and_keeps_nothing_unscanned() {
    let t = shared::testing::TestApp::new();
    let app = &t.app;
    let patient = shared::testing::account(app, "p@example.com", "Pat", Role::Patient).await;
    let pt = shared::testing::token(app, &patient, Role::Patient, "p", &["pwd"]).await;
    let bytes = pdf(70_000, "x-ray report");
    let ticket = docare_e2e::start_upload(app, &pt, json!({"name": "a.pdf", "content_type": "application/pdf", "size": bytes.len(), "category": "imaging"})).await;
    docare_e2e::upload_and_scan(app, &ticket, &bytes).await;
    let id = ticket["id"].as_str().unwrap();
    let before = shared::store::documents::stored(app, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.status, shared::domain::document::Status::Available);
    // The same event again (a redelivery), and a second PUT of other bytes afterwards.
    docare_e2e::upload_and_scan(app, &ticket, &pdf(70_000, "swapped bytes")).await;
    let after = shared::store::documents::stored(app, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.item.get("sha256"),
        before.item.get("sha256"),
        "decided once"
    );
    assert!(app
        .blobs
        .head(
            &app.config.quarantine_bucket,
            &shared::store::documents::upload_key(id)
        )
        .await
        .unwrap()
        .is_none());
    // An object nobody asked for is removed from quarantine.
    let stray = "uploads/not-a-document";
    app.blobs
        .put(
            &app.config.quarantine_bucket,
            stray,
            b"?".to_vec().into(),
            "text/plain",
            Default::default(),
        )
        .await
        .unwrap();
    let object = shared::worker::S3Object {
        event_name: "ObjectCreated:Put".into(),
        bucket: app.config.quarantine_bucket.clone(),
        key: stray.into(),
        version_id: None,
        size: Some(1),
    };
    docare_documents::scanner::scan(app.clone(), object.clone())
        .await
        .unwrap();
    assert!(app
        .blobs
        .head(&app.config.quarantine_bucket, stray)
        .await
        .unwrap()
        .is_none());
    let foreign = shared::worker::S3Object {
        bucket: "someone-elses".into(),
        ..object
    };
    assert!(matches!(
        docare_documents::scanner::scan(app.clone(), foreign).await,
        Err(shared::worker::WorkError::Permanent(_))
    ));
    // Declared 70,000 bytes, 69,999 arrive: a size mismatch (checked on the object).
    let short = docare_e2e::start_upload(app, &pt, json!({"name": "b.pdf", "content_type": "application/pdf", "size": 70_000, "category": "imaging"})).await;
    docare_e2e::upload_and_scan(app, &short, &bytes[..69_999]).await;
    let record = shared::store::documents::stored(app, short["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.item.get("reason").and_then(|v| v.as_str()),
        Some("size_mismatch")
    );
}

// ---------------------------------------------------------------------------------
// The same flow through the AWS adapters, on the emulator
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_pdf_and_the_eicar_file_through_the_aws_adapters_on_the_emulator() {
    use aws_sdk_s3::types::{
        BucketVersioningStatus, Event, NotificationConfiguration, QueueConfiguration,
        VersioningConfiguration,
    };
    let Some(endpoint) = shared::testing::aws::endpoint() else {
        return;
    };
    let sdk = shared::testing::aws::sdk_config(&endpoint);
    let s3 = shared::adapters::aws::s3_client(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (quarantine, documents) = (
        shared::testing::aws::unique("quarantine"),
        shared::testing::aws::unique("documents"),
    );
    for bucket in [&quarantine, &documents] {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("versioning");
    }
    let scans_url = sqs
        .create_queue()
        .queue_name(shared::testing::aws::unique("scans"))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_string();
    let scans_arn = sqs
        .get_queue_attributes()
        .queue_url(&scans_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("arn");
    // As the template wires it: uploads to the quarantine are announced on the queue.
    s3.put_bucket_notification_configuration()
        .bucket(&quarantine)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .id("scan-uploads")
                        .queue_arn(&scans_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("notification");
    let stage = shared::testing::aws::stage(
        &sdk,
        &endpoint,
        "docs",
        &[
            ("DOCARE_QUARANTINE_BUCKET", &quarantine),
            ("DOCARE_DOCUMENTS_BUCKET", &documents),
            ("DOCARE_SCANS_QUEUE_URL", &scans_url),
        ],
    )
    .await;
    let app = shared::adapters::aws::build_app(stage.config.clone(), &sdk);
    // Drain the emulator's test event, if any, before the uploads.
    let consumer = docare_local::workers::Consumer::new(
        "scanner",
        scans_url.clone(),
        docare_documents::scanner::handle,
    );
    consumer
        .poll_once(&app, app.queue.as_ref(), Duration::from_secs(30))
        .await;

    let patient = accounts::create(
        &app,
        "aws-doc@example.com",
        "Avery Ws",
        Role::Patient,
        false,
    )
    .await
    .unwrap();
    let token = app
        .tokens
        .issue(&app, &patient.id, Role::Patient, &app.new_id(), &["pwd"])
        .await
        .unwrap()
        .0;
    let router = docare_documents::router();
    let http = reqwest::Client::new();
    // S3 takes the upload, announces it, the scanner consumes the queue.
    let upload = |body: Value, bytes: Vec<u8>| {
        let (app, router, http, token, consumer) = (
            app.clone(),
            router.clone(),
            http.clone(),
            token.clone(),
            consumer.clone(),
        );
        async move {
            let (status, ticket) = dispatch(
                &router,
                &app,
                request(Method::POST, "/api/v1/documents", Some(&token), Some(body)),
            )
            .await;
            assert_eq!(status, 201, "{ticket}");
            let mut put = http.put(ticket["upload_url"].as_str().unwrap()).body(bytes);
            for (name, value) in ticket["upload_headers"].as_object().unwrap() {
                if name != "content-length" {
                    put = put.header(name, value.as_str().unwrap());
                }
            }
            let stored = put.send().await.expect("PUT to the emulator");
            assert!(stored.status().is_success(), "{:?}", stored.text().await);
            let id = ticket["id"].as_str().unwrap().to_string();
            let mut record = Value::Null;
            for _ in 0..100 {
                consumer
                    .poll_once(&app, app.queue.as_ref(), Duration::from_secs(30))
                    .await;
                let (_, got) = dispatch(
                    &router,
                    &app,
                    request(
                        Method::GET,
                        &format!("/api/v1/documents/{id}"),
                        Some(&token),
                        None,
                    ),
                )
                .await;
                record = got;
                if !matches!(
                    record["status"].as_str(),
                    Some("pending_upload" | "scanning")
                ) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (id, record)
        }
    };
    let read = |id: String, range: &'static str| {
        let (app, router, token) = (app.clone(), router.clone(), token.clone());
        async move {
            let mut req = request(
                Method::GET,
                &format!("/api/v1/documents/{id}/content"),
                Some(&token),
                None,
            );
            req.headers.insert("range", range.parse().unwrap());
            let response = router.dispatch(&app, req).await;
            (response.status.as_u16(), response.body.to_vec())
        }
    };

    // 9 MiB and a bit: the sealed object goes up as a multipart upload.
    let marker = "Avery Ws: lipid panel, LDL 96 mg/dL";
    let document = pdf((9 << 20) + 777, marker);
    let (id, record) = upload(json!({"name": "lipids.pdf", "content_type": "application/pdf", "size": document.len(), "category": "lab_result"}), document.clone()).await;
    assert_eq!(record["status"], "available", "{record}");
    let mut whole = Vec::new();
    for range in ["bytes=0-4194303", "bytes=4194304-8388607", "bytes=8388608-"] {
        let (status, bytes) = read(id.clone(), range).await;
        assert_eq!(status, 206, "{range}");
        whole.extend_from_slice(&bytes);
    }
    assert!(
        whole == document,
        "the download matches the upload byte for byte"
    );
    let sealed_key = shared::store::documents::sealed_key(&id);
    let sealed = s3
        .get_object()
        .bucket(&documents)
        .key(&sealed_key)
        .send()
        .await
        .expect("sealed")
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec();
    assert!(
        !contains(&sealed, marker.as_bytes()) && !contains(&sealed, b"%PDF-"),
        "no plaintext stored"
    );
    let listed = s3
        .list_object_versions()
        .bucket(&quarantine)
        .send()
        .await
        .expect("versions");
    assert!(
        listed.versions().is_empty(),
        "the upload's version is deleted from quarantine"
    );
    for (what, bytes) in tampered(&sealed) {
        s3.put_object()
            .bucket(&documents)
            .key(&sealed_key)
            .body(bytes.into())
            .send()
            .await
            .unwrap();
        let mut failed = None;
        for range in ["bytes=0-4194303", "bytes=4194304-8388607", "bytes=8388608-"] {
            let (status, body) = read(id.clone(), range).await;
            if status != 206 {
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                failed = Some((status, body["error"]["code"].as_str().map(str::to_string)));
                break;
            }
        }
        assert_eq!(
            failed,
            Some((500, Some("integrity_failure".to_string()))),
            "{what}"
        );
    }

    let (eicar, record) = upload(json!({"name": "notes.txt", "content_type": "text/plain", "size": EICAR.len(), "category": "other"}), EICAR.to_vec()).await;
    assert_eq!(
        (record["status"].as_str(), record["reason"].as_str()),
        (Some("rejected"), Some("malware")),
        "{record}"
    );
    let kept = s3
        .list_objects_v2()
        .bucket(&documents)
        .prefix(shared::store::documents::sealed_key(&eicar))
        .send()
        .await
        .unwrap();
    assert!(
        kept.contents().is_empty(),
        "nothing of the EICAR upload is stored"
    );
}
