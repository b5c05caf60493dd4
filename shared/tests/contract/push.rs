//! The push port: frames to WebSocket connections.
//!
//! "Gone" (HTTP 410) is tested on the local adapter only: the emulator keeps no
//! connection registry and accepts any connection id, so it never answers 410. The AWS
//! adapter's mapping of `GoneException` to `PushOutcome::Gone` is unit-tested on a
//! hand-built SDK error in `shared/src/adapters/aws/push.rs`.

use crate::support;
use shared::adapters::aws::ManagementApi;
use shared::adapters::local::{LocalGateway, Outbound};
use shared::ports::push::{Push, PushError, PushOutcome, MAX_FRAME_BYTES};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedReceiver;

pub struct PushFixture {
    push: Arc<dyn Push>,
    /// A connection the gateway considers open.
    open: String,
    /// What the local socket received (the emulator's side is not observable).
    socket: Option<Mutex<UnboundedReceiver<Outbound>>>,
}

impl PushFixture {
    fn received(&self) -> Option<Outbound> {
        let socket = self.socket.as_ref()?;
        socket.lock().expect("socket").try_recv().ok()
    }
}

async fn local_fixture() -> PushFixture {
    let gateway = Arc::new(LocalGateway::new());
    let socket = gateway.connect("conn-open=");
    PushFixture {
        push: gateway,
        open: "conn-open=".into(),
        socket: Some(Mutex::new(socket)),
    }
}

async fn aws_fixture() -> Option<PushFixture> {
    let endpoint = support::aws_endpoint()?;
    // As in `build_app`: the Management API's endpoint is the WebSocket API's URL.
    let config =
        aws_sdk_apigatewaymanagement::config::Builder::from(&support::sdk_config(&endpoint))
            .endpoint_url(&endpoint)
            .build();
    Some(PushFixture {
        push: Arc::new(ManagementApi::new(
            aws_sdk_apigatewaymanagement::Client::from_conf(config),
        )),
        open: support::unique("conn"),
        socket: None,
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        post_to_an_open_connection_is_delivered,
        disconnect_closes_an_open_connection,
        oversized_frame_is_refused,
    ];
    local_only: [unknown_connection_is_gone];
}

async fn post_to_an_open_connection_is_delivered(fx: &PushFixture) {
    let frame = br#"{"type":"notification","id":"n1"}"#;
    let outcome = fx.push.post(&fx.open, frame).await.expect("post");
    assert_eq!(outcome, PushOutcome::Delivered);
    if fx.socket.is_some() {
        let text = String::from_utf8(frame.to_vec()).expect("utf-8");
        assert_eq!(fx.received(), Some(Outbound::Text(text)));
    }
}

async fn disconnect_closes_an_open_connection(fx: &PushFixture) {
    let outcome = fx.push.disconnect(&fx.open).await.expect("disconnect");
    assert_eq!(outcome, PushOutcome::Delivered);
    if fx.socket.is_some() {
        assert_eq!(fx.received(), Some(Outbound::Close));
    }
}

async fn oversized_frame_is_refused(fx: &PushFixture) {
    let frame = vec![b'x'; MAX_FRAME_BYTES + 1];
    let err = fx.push.post(&fx.open, &frame).await.expect_err("too large");
    assert!(matches!(err, PushError::Invalid(_)), "{err:?}");
    assert_eq!(fx.received(), None, "nothing was sent");
}

async fn unknown_connection_is_gone(fx: &PushFixture) {
    let outcome = fx.push.post("conn-never-seen=", b"{}").await.expect("post");
    assert_eq!(outcome, PushOutcome::Gone);
    fx.push.disconnect(&fx.open).await.expect("disconnect");
    assert_eq!(
        fx.push.post(&fx.open, b"{}").await.expect("post"),
        PushOutcome::Gone
    );
    assert_eq!(
        fx.push.disconnect(&fx.open).await.expect("disconnect"),
        PushOutcome::Gone
    );
}
