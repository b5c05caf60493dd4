//! Contract tests of the ports: every case is written once, against the port's trait
//! object, and runs for both adapters (`<port>::local::<case>` and `<port>::aws::<case>`),
//! so the embedded adapters the local stack uses behave exactly like the AWS ones.
//!
//! The AWS half runs against an emulator (moto server) named by
//! `DOCARE_TEST_AWS_ENDPOINT`; `scripts/test` starts it. Without it the AWS cases fail,
//! unless `DOCARE_TEST_SKIP_AWS=1` says to skip them knowingly.

#[macro_use]
mod support;

mod blobs;
mod db;
mod envelope;
mod keys;
mod messenger;
mod payments;
mod push;
mod queue;
mod scanner;
mod secrets;
