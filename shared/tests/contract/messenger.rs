//! The messenger port: e-mail and SMS, refused before any call when the recipient is
//! not an address or an E.164 number.

use crate::support;
use aws_sdk_sesv2::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_sesv2::config::{ConfigBag, Intercept};
use aws_sdk_sesv2::error::BoxError;
use shared::adapters::aws::SesSns;
use shared::adapters::local::Outbox;
use shared::ports::messenger::{Messenger, MessengerError, OutboundMessage};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const FROM: &str = "no-reply@docare.example";

pub struct MessengerFixture {
    messenger: Arc<dyn Messenger>,
    sent: Sent,
    _dir: Option<tempfile::TempDir>,
}

/// How many messages reached the provider.
enum Sent {
    /// Files in the local outbox.
    Outbox(PathBuf),
    /// Requests the SDK clients started (counted by an interceptor).
    Calls(Arc<AtomicUsize>),
}

impl MessengerFixture {
    fn sent(&self) -> usize {
        match &self.sent {
            Sent::Outbox(dir) => std::fs::read_dir(dir).expect("outbox").count(),
            Sent::Calls(calls) => calls.load(Ordering::SeqCst),
        }
    }
}

/// Counts every request before it is serialized.
#[derive(Debug, Clone)]
struct CountCalls(Arc<AtomicUsize>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn local_fixture() -> MessengerFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let outbox = dir.path().join("outbox");
    std::fs::create_dir(&outbox).expect("outbox");
    MessengerFixture {
        messenger: Arc::new(Outbox::new(outbox.clone())),
        sent: Sent::Outbox(outbox),
        _dir: Some(dir),
    }
}

async fn aws_fixture() -> Option<MessengerFixture> {
    let sdk = support::aws()?;
    let ses_admin = aws_sdk_sesv2::Client::new(&sdk);
    // SES sends only from a verified identity (the emulator verifies on creation).
    ses_admin
        .create_email_identity()
        .email_identity(FROM)
        .send()
        .await
        .expect("create identity");
    let calls = Arc::new(AtomicUsize::new(0));
    let ses = aws_sdk_sesv2::config::Builder::from(&sdk)
        .interceptor(CountCalls(calls.clone()))
        .build();
    let sns = aws_sdk_sns::config::Builder::from(&sdk)
        .interceptor(CountCalls(calls.clone()))
        .build();
    Some(MessengerFixture {
        messenger: Arc::new(SesSns::new(
            aws_sdk_sesv2::Client::from_conf(ses),
            aws_sdk_sns::Client::from_conf(sns),
            FROM.into(),
        )),
        sent: Sent::Calls(calls),
        _dir: None,
    })
}

contract_suite! {
    local = local_fixture, aws = aws_fixture;
    both: [
        email_send_returns_an_id,
        sms_send_returns_an_id,
        invalid_recipient_is_refused_before_any_call,
    ];
    local_only: [];
}

async fn email_send_returns_an_id(fx: &MessengerFixture) {
    let message =
        OutboundMessage::email("patient@example.com", "Your code", "Your code is 123456.");
    let id = fx.messenger.send(&message).await.expect("send");
    assert!(!id.is_empty());
    assert_eq!(fx.sent(), 1);
}

async fn sms_send_returns_an_id(fx: &MessengerFixture) {
    let id = fx
        .messenger
        .send(&OutboundMessage::sms("+15555550123", "DoCare code: 123456"))
        .await
        .expect("send");
    assert!(!id.is_empty());
    assert_eq!(fx.sent(), 1);
}

async fn invalid_recipient_is_refused_before_any_call(fx: &MessengerFixture) {
    let bad = [
        OutboundMessage::email("not-an-address", "s", "b"),
        OutboundMessage::email("a b@example.com", "s", "b"),
        OutboundMessage::sms("5555550123", "b"),
        OutboundMessage::sms("+1555abc0123", "b"),
        OutboundMessage::sms("+1", "b"),
    ];
    for message in &bad {
        let err = fx.messenger.send(message).await.expect_err("refused");
        assert!(matches!(err, MessengerError::InvalidRecipient), "{err:?}");
    }
    let empty = fx
        .messenger
        .send(&OutboundMessage::email("a@example.com", "s", ""))
        .await;
    assert!(
        matches!(empty, Err(MessengerError::Invalid(_))),
        "an empty body"
    );
    assert_eq!(fx.sent(), 0, "no request left the process");
}
