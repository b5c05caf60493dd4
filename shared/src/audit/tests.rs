//! The writer, reader and verifier on the local adapters.

use super::*;
use crate::adapters::local::LocalParts;
use crate::clock::{Clock, ManualClock};
use crate::crypto::{CachePolicy, Envelope};
use crate::http::pagination::{decode_cursor, PageRequest};
use crate::http::ApiRequest;
use crate::ports::db::{Database, Item, Key, Value};
use crate::ApiError;
use chrono::{Duration, Utc};
use std::sync::Arc;

use crate::testing::OUTAGE as Down;

struct Fixture {
    parts: LocalParts,
    clock: Arc<ManualClock>,
    envelope: Arc<Envelope>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    // Whole milliseconds, as stored, so time arithmetic in tests is exact.
    let start =
        chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
    let clock = Arc::new(ManualClock::new(start));
    let (parts, dir) = crate::testing::local_app(clock.clone());
    let app = &parts.app;
    let envelope = Arc::new(
        Envelope::new(
            app.keys.clone(),
            app.db.clone(),
            app.clock.clone(),
            &app.config.table,
            &app.config.kms_key_id,
            app.config.stage.as_str(),
            CachePolicy::default(),
        )
        .with_purpose(crate::crypto::envelope::Purpose::Audit),
    );
    Fixture {
        parts,
        clock,
        envelope,
        _dir: dir,
    }
}

impl Fixture {
    fn writer(&self) -> AuditWriter {
        let app = &self.parts.app;
        AuditWriter::new(
            app.db.clone(),
            self.envelope.clone(),
            app.clock.clone(),
            &app.config,
        )
    }

    fn reader(&self) -> AuditReader {
        AuditReader::new(self.parts.app.db.clone(), &self.parts.app.config)
    }

    fn audit_table(&self) -> &str {
        &self.parts.app.config.audit_table
    }

    async fn verify(&self) -> VerifyReport {
        verify(&self.reader(), self.clock.now(), &VerifyOptions::default())
            .await
            .expect("verify")
    }

    async fn event(&self, shard: u32, seq: u64) -> Item {
        self.parts
            .store
            .get(self.audit_table(), &Key::new(chain_pk(shard), seq_sk(seq)))
            .await
            .expect("get")
            .expect("event exists")
    }

    async fn put_raw(&self, item: Item) {
        self.parts
            .store
            .put(self.audit_table(), item, None)
            .await
            .expect("put");
    }

    /// Records `n` events on `shard` through one writer; returns their event ids.
    async fn chain_of(&self, shard: u32, n: u64) -> Vec<String> {
        let writer = self.writer().starting_on_shard(shard);
        for i in 0..n {
            writer.record(sample(i)).await.expect("record");
            self.clock.advance(Duration::milliseconds(10));
        }
        let mut ids = Vec::new();
        for seq in 0..n {
            let item = self.event(shard, seq).await;
            ids.push(item["event_id"].as_str().expect("id").to_string());
        }
        ids
    }
}

fn sample(i: u64) -> AuditEvent {
    let mut req = ApiRequest::new(http::Method::GET, "/api/v1/notes/n1");
    req.source_ip = Some("203.0.113.9".into());
    req.user_agent = Some("DoCareApp/1.0".into());
    let action = if i % 2 == 0 {
        Action::View
    } else {
        Action::Update
    };
    AuditEvent::from_request(&req, action, Outcome::Success)
        .actor(Actor::user(format!("u{}", i % 3), "provider").with_session("s1"))
        .resource("note", format!("n{}", i % 2))
}

fn broken(report: &VerifyReport) -> &ChainBreak {
    report.first_break.as_ref().expect("a break is reported")
}

#[tokio::test]
async fn appended_events_verify_and_fill_every_field() {
    let fx = fixture();
    let writer = fx.writer();
    let mut req = ApiRequest::new(http::Method::POST, "/api/v1/auth/login");
    req.request_id = "req-1".into();
    req.source_ip = Some("2001:db8::1".into());
    writer
        .record(AuditEvent::from_request(
            &req,
            Action::LoginFailed,
            Outcome::Denied,
        ))
        .await
        .expect("anonymous event");
    for i in 0..9 {
        writer.record(sample(i)).await.expect("record");
    }
    let report = fx.verify().await;
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!((report.events, report.chains), (10, 1));

    // One shard, seq 0..=9, each linked to the one before, head at 9.
    let items = fx.parts.store.raw_items(fx.audit_table()).expect("raw");
    assert_eq!(items.len(), 10);
    let events: Vec<StoredEvent> = items
        .iter()
        .map(|i| StoredEvent::from_item(i).expect("well formed"))
        .collect();
    let shard = events[0].shard;
    assert!(shard < CHAIN_SHARDS);
    assert_eq!(events[0].prev_hash, genesis_hash(shard));
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].prev_id.as_deref(), Some(pair[0].event_id.as_str()));
    }
    let first = &events[0];
    assert_eq!(first.action, Action::LoginFailed);
    assert_eq!(first.outcome, Outcome::Denied);
    assert_eq!(first.actor, Actor::anonymous());
    assert_eq!(first.request_id.as_deref(), Some("req-1"));
    assert_eq!(first.source_ip.as_deref(), Some("2001:db8::1"));
    let time = parse_time(&first.time).expect("RFC 3339");
    assert_eq!(time.timestamp_millis(), fx.clock.now().timestamp_millis());
    assert_eq!(
        first.expires_at,
        time.timestamp() + RETENTION_DAYS * 86_400,
        "TTL is 2555 days"
    );
    let head = fx
        .reader()
        .head(shard)
        .await
        .expect("head")
        .expect("exists");
    assert_eq!((head.seq, &head.hash), (9, &events[9].hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_shard_both_succeed_in_one_chain() {
    let fx = fixture();
    let (a, b) = (
        Arc::new(fx.writer().starting_on_shard(5)),
        Arc::new(fx.writer().starting_on_shard(5)),
    );
    // Both learn the shard's head first, so every later append races the other's.
    a.record(sample(0)).await.expect("a");
    b.record(sample(1)).await.expect("b");
    let run = |writer: Arc<AuditWriter>| {
        tokio::spawn(async move {
            for i in 0..20 {
                writer
                    .record(sample(i))
                    .await
                    .expect("record under contention");
            }
        })
    };
    let (ra, rb) = tokio::join!(run(a), run(b));
    ra.expect("task a");
    rb.expect("task b");
    let report = fx.verify().await;
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.events, 42);
    let on_five = fx.reader().head(5).await.expect("head").expect("shard 5");
    assert!(on_five.seq >= 2, "shard 5 was shared");
}

#[tokio::test]
async fn several_events_commit_with_their_change_in_consecutive_places_or_not_at_all() {
    let fx = fixture();
    let writer = Arc::new(fx.writer().starting_on_shard(3));
    writer.record(sample(0)).await.expect("first");
    let change = |n: &str| crate::ports::db::WriteOp::Put {
        table: fx.parts.app.config.table.clone(),
        item: Item::from([
            ("pk".to_string(), Value::S(format!("T#{n}"))),
            ("sk".to_string(), Value::S("T".into())),
        ]),
        condition: Some(crate::ports::db::Condition::NotExists),
    };
    writer
        .commit_all(vec![sample(1), sample(2), sample(3)], vec![change("a")])
        .await
        .expect("three events with one change");
    let head = fx.reader().head(3).await.expect("head").expect("shard 3");
    assert_eq!(
        head.seq, 3,
        "the three took places 1, 2 and 3 after the first"
    );
    // A failed condition of the change writes neither it nor any of the events.
    let refused = writer
        .commit_all(vec![sample(4), sample(5)], vec![change("a")])
        .await;
    assert!(matches!(refused, Err(CommitError::Change { op: 0 })));
    let head = fx.reader().head(3).await.expect("head").expect("shard 3");
    assert_eq!(head.seq, 3, "a refused change appends nothing");
    // Racing another writer on the same shard, both keep one intact chain.
    let other = Arc::new(fx.writer().starting_on_shard(3));
    other.record(sample(6)).await.expect("other");
    let run = |writer: Arc<AuditWriter>, several: bool| {
        tokio::spawn(async move {
            for i in 0..10 {
                let events = if several {
                    vec![sample(i), sample(i + 1)]
                } else {
                    vec![sample(i)]
                };
                writer.commit_all(events, Vec::new()).await.expect("append");
            }
        })
    };
    let (ra, rb) = tokio::join!(run(writer.clone(), true), run(other, false));
    ra.expect("several");
    rb.expect("single");
    let report = fx.verify().await;
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.events, 1 + 3 + 1 + 20 + 10);
    // Too many writes for one transaction with the events is refused up front.
    let too_many: Vec<_> = (0..98).map(|i| change(&format!("m{i}"))).collect();
    assert!(matches!(
        writer
            .commit_all(vec![sample(7), sample(8)], too_many)
            .await,
        Err(CommitError::Audit(AuditError::InvalidEvent(_)))
    ));
    assert!(matches!(
        writer.commit_all(Vec::new(), Vec::new()).await,
        Err(CommitError::Audit(AuditError::InvalidEvent(_)))
    ));
}

#[tokio::test]
async fn a_deleted_middle_event_is_named() {
    let fx = fixture();
    let ids = fx.chain_of(3, 6).await;
    fx.parts
        .store
        .delete(fx.audit_table(), &Key::new(chain_pk(3), seq_sk(2)), None)
        .await
        .expect("delete");
    let report = fx.verify().await;
    assert_eq!(
        broken(&report),
        &ChainBreak {
            shard: 3,
            seq: 2,
            event_id: Some(ids[2].clone()),
            kind: BreakKind::Missing
        }
    );
}

#[tokio::test]
async fn an_edited_field_is_detected_even_with_a_recomputed_hash() {
    let fx = fixture();
    let ids = fx.chain_of(0, 5).await;
    let original = fx.event(0, 1).await;

    let mut edited = original.clone();
    edited.insert("outcome".into(), Value::S("denied".into()));
    fx.put_raw(edited).await;
    let report = fx.verify().await;
    assert_eq!(broken(&report).kind, BreakKind::Altered);
    assert_eq!(
        (broken(&report).seq, broken(&report).event_id.as_deref()),
        (1, Some(ids[1].as_str()))
    );

    // Whoever rewrites the hash too breaks the next event's link.
    let mut event = StoredEvent::from_item(&original).expect("parse");
    event.outcome = Outcome::Denied;
    event.hash = event.compute_hash();
    fx.put_raw(event.to_item()).await;
    let report = fx.verify().await;
    assert_eq!(
        (broken(&report).seq, &broken(&report).kind),
        (2, &BreakKind::BrokenLink)
    );

    // An edited indexed field (or index key) is caught before the hash.
    let mut moved = original.clone();
    moved.insert("action".into(), Value::S("EXPORT".into()));
    fx.put_raw(moved).await;
    assert!(matches!(
        broken(&fx.verify().await).kind,
        BreakKind::Malformed(_)
    ));
    let mut extra = original;
    extra.insert("note".into(), Value::S("x".into()));
    fx.put_raw(extra).await;
    assert!(matches!(
        broken(&fx.verify().await).kind,
        BreakKind::Malformed(_)
    ));
}

#[tokio::test]
async fn swapped_events_are_detected() {
    let fx = fixture();
    fx.chain_of(7, 5).await;
    let (two, three) = (fx.event(7, 2).await, fx.event(7, 3).await);
    let at = |mut item: Item, seq: u64| {
        item.insert("sk".into(), Value::S(seq_sk(seq)));
        item
    };
    fx.put_raw(at(two, 3)).await;
    fx.put_raw(at(three, 2)).await;
    let report = fx.verify().await;
    let found = broken(&report);
    assert_eq!((found.shard, found.seq), (7, 2));
    assert_eq!(found.kind, BreakKind::Altered);
}

#[tokio::test]
async fn a_deleted_tail_is_detected_through_the_head() {
    let fx = fixture();
    let ids = fx.chain_of(9, 4).await;
    fx.parts
        .store
        .delete(fx.audit_table(), &Key::new(chain_pk(9), seq_sk(3)), None)
        .await
        .expect("delete");
    let report = fx.verify().await;
    assert_eq!(
        broken(&report),
        &ChainBreak {
            shard: 9,
            seq: 3,
            event_id: Some(ids[3].clone()),
            kind: BreakKind::Truncated
        }
    );

    // Without the head, events are unanchored.
    let fx = fixture();
    fx.chain_of(9, 2).await;
    fx.parts
        .store
        .delete(&fx.parts.app.config.table, &head_key(9), None)
        .await
        .expect("delete head");
    assert_eq!(broken(&fx.verify().await).kind, BreakKind::HeadMissing);
}

#[tokio::test]
async fn events_past_retention_may_go_but_young_ones_may_not() {
    let fx = fixture();
    fx.chain_of(4, 3).await;
    fx.clock.advance(Duration::days(RETENTION_DAYS + 1));
    let writer = fx.writer().starting_on_shard(4);
    writer.record(sample(9)).await.expect("record");
    writer.record(sample(10)).await.expect("record");
    // The first three are past their TTL: invisible, and that is no break.
    let report = fx.verify().await;
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.events, 2);

    // A young first event deleted is a break.
    let fx = fixture();
    let ids = fx.chain_of(4, 3).await;
    fx.parts
        .store
        .delete(fx.audit_table(), &Key::new(chain_pk(4), seq_sk(0)), None)
        .await
        .expect("delete");
    let report = fx.verify().await;
    assert_eq!(
        (broken(&report).seq, broken(&report).event_id.as_deref()),
        (0, Some(ids[0].as_str()))
    );
    assert_eq!(broken(&report).kind, BreakKind::Missing);
}

#[tokio::test]
async fn a_time_range_checks_only_its_part_of_the_chain() {
    let fx = fixture();
    let writer = fx.writer().starting_on_shard(2);
    let start = fx.clock.now();
    for i in 0..30 {
        writer.record(sample(i)).await.expect("record");
        fx.clock.advance(Duration::hours(1));
    }
    let range = TimeRange {
        from: Some(start + Duration::hours(10)),
        to: Some(start + Duration::hours(19)),
    };
    let options = VerifyOptions {
        range,
        ..VerifyOptions::default()
    };
    let report = verify(&fx.reader(), fx.clock.now(), &options)
        .await
        .expect("verify");
    assert!(report.is_intact(), "{:?}", report.first_break);
    assert_eq!(report.events, 10);

    // A break outside the range is not this range's business; inside, it is.
    fx.parts
        .store
        .delete(fx.audit_table(), &Key::new(chain_pk(2), seq_sk(25)), None)
        .await
        .expect("delete");
    let report = verify(&fx.reader(), fx.clock.now(), &options)
        .await
        .expect("verify");
    assert!(report.is_intact());
    fx.parts
        .store
        .delete(fx.audit_table(), &Key::new(chain_pk(2), seq_sk(15)), None)
        .await
        .expect("delete");
    let report = verify(&fx.reader(), fx.clock.now(), &options)
        .await
        .expect("verify");
    assert_eq!(
        (broken(&report).seq, &broken(&report).kind),
        (15, &BreakKind::Missing)
    );
}

#[tokio::test]
async fn reasons_and_user_agents_are_stored_encrypted_and_bound() {
    let fx = fixture();
    let writer = fx.writer().starting_on_shard(1);
    let mut req = ApiRequest::new(http::Method::GET, "/x");
    req.user_agent = Some("PeculiarBrowser/9".into());
    let reason = Reason::new("Patient Jane Roe unconscious in ER").expect("reason");
    writer
        .record(
            AuditEvent::from_request(&req, Action::BreakGlass, Outcome::Success)
                .actor(Actor::user("u1", "provider"))
                .resource("patient", "p1")
                .reason(reason),
        )
        .await
        .expect("record");
    writer.record(sample(0)).await.expect("record");

    let raw = serde_json::to_string(&fx.parts.store.raw_items(fx.audit_table()).expect("raw"))
        .expect("json");
    for plain in ["Jane", "unconscious", "PeculiarBrowser", "DoCareApp"] {
        assert!(!raw.contains(plain), "{plain} is stored in the clear");
    }

    let reader = fx.reader();
    let page = reader
        .chain(
            1,
            &PageRequest {
                limit: 10,
                start: None,
            },
        )
        .await
        .expect("chain");
    let first = &page.items[0];
    let reason = reader.reason(&fx.envelope, first).await.expect("decrypt");
    assert_eq!(
        reason.as_deref().map(String::as_str),
        Some("Patient Jane Roe unconscious in ER")
    );
    let ua = reader
        .user_agent(&fx.envelope, first)
        .await
        .expect("decrypt");
    assert_eq!(ua.as_deref().map(String::as_str), Some("PeculiarBrowser/9"));

    // A reason copied onto another event does not open there.
    let mut second = page.items[1].clone();
    second.reason = first.reason.clone();
    assert!(matches!(
        reader.reason(&fx.envelope, &second).await,
        Err(AuditError::Crypto(_))
    ));
}

#[tokio::test]
async fn compliance_queries_use_the_indexes_with_time_ranges_and_cursors() {
    let fx = fixture();
    let writer = fx.writer();
    let start = fx.clock.now();
    for i in 0..12 {
        writer.record(sample(i)).await.expect("record");
        fx.clock.advance(Duration::minutes(1));
    }
    let reader = fx.reader();
    let all = TimeRange::default();
    let first_page = PageRequest {
        limit: 3,
        start: None,
    };

    // u0 acted at i = 0, 3, 6, 9: newest first, in pages.
    let page = reader
        .by_actor("u0", &all, &first_page)
        .await
        .expect("actor");
    assert_eq!(page.items.len(), 3);
    assert!(page.items.windows(2).all(|w| w[0].time > w[1].time));
    let cursor = page.next_cursor.expect("more");
    let next = PageRequest {
        limit: 3,
        start: Some(decode_cursor(&cursor).expect("cursor")),
    };
    let rest = reader.by_actor("u0", &all, &next).await.expect("page 2");
    assert_eq!(rest.items.len(), 1);
    assert!(rest
        .items
        .iter()
        .all(|e| e.actor.user_id.as_deref() == Some("u0")));

    // A cursor from another list is the caller's 400.
    let err = reader
        .by_action(Action::View, &all, &next)
        .await
        .expect_err("foreign cursor");
    assert_eq!(ApiError::from(err).status(), 400);

    let window = TimeRange {
        from: Some(start + Duration::minutes(4)),
        to: Some(start + Duration::minutes(7)),
    };
    let big = PageRequest {
        limit: 100,
        start: None,
    };
    let views = reader
        .by_action(Action::View, &window, &big)
        .await
        .expect("action");
    let times: Vec<i64> = views
        .items
        .iter()
        .map(|e| (parse_time(&e.time).expect("t") - start).num_minutes())
        .collect();
    assert_eq!(times, [6, 4]);
    let on_n1 = reader
        .by_resource("note", "n1", &all, &big)
        .await
        .expect("resource");
    assert_eq!(on_n1.items.len(), 6);
    assert!(on_n1.items.iter().all(|e| e.action == Action::Update));
}

#[tokio::test]
async fn failures_to_record_are_503_and_bad_events_are_refused() {
    let fx = fixture();
    let app = &fx.parts.app;
    let down = AuditWriter::new(
        Arc::new(Down),
        fx.envelope.clone(),
        app.clock.clone(),
        &app.config,
    );
    let failed = crate::telemetry::emitted(crate::telemetry::metrics::AUDIT_WRITE_FAILED);
    let err = down.record(sample(0)).await.expect_err("store down");
    assert!(matches!(err, AuditError::Store(_)));
    assert!(
        crate::telemetry::emitted(crate::telemetry::metrics::AUDIT_WRITE_FAILED) > failed,
        "the failure is counted for its alarm"
    );
    let api = ApiError::from(err);
    assert_eq!(api.status(), 503);
    assert_eq!(api.code(), "service_unavailable");

    let no_keys = Arc::new(Envelope::new(
        Arc::new(Down),
        app.db.clone(),
        app.clock.clone(),
        &app.config.table,
        &app.config.kms_key_id,
        "local",
        CachePolicy::default(),
    ));
    let writer = AuditWriter::new(app.db.clone(), no_keys, app.clock.clone(), &app.config);
    let err = writer.record(sample(0)).await.expect_err("keys down");
    assert_eq!(ApiError::from(err).status(), 503);
    assert!(fx
        .parts
        .store
        .raw_items(fx.audit_table())
        .expect("raw")
        .is_empty());

    let bad = sample(0).resource("Note#x", "n1");
    let err = fx
        .writer()
        .record(bad)
        .await
        .expect_err("bad resource type");
    assert!(matches!(err, AuditError::InvalidEvent("resource.type")));
    assert_eq!(ApiError::from(err).status(), 500);
}

// ---- anchors ------------------------------------------------------------------------

impl Fixture {
    fn anchorer(&self) -> Anchorer {
        Anchorer::of(&self.parts.app)
    }

    async fn trusted(&self) -> Vec<crate::crypto::signing::PublicKey> {
        let app = &self.parts.app;
        let der = app
            .keys
            .public_key(&app.config.audit_anchor_key_id)
            .await
            .expect("anchor public key");
        vec![crate::crypto::signing::PublicKey::from_spki_der(&der).expect("spki")]
    }

    async fn verify_anchored(&self) -> VerifyReport {
        verify_with_anchors(
            &self.reader(),
            &self.trusted().await,
            self.clock.now(),
            &VerifyOptions::default(),
        )
        .await
        .expect("verify")
    }

    /// What `audit-watch` does with each append's stream record (`functions/audit-guard`):
    /// the item as first written, at its archive key, never replaced.
    async fn archive_all(&self) {
        let app = &self.parts.app;
        for shard in 0..CHAIN_SHARDS {
            let page = self
                .reader()
                .chain_page(shard, 0, 500, None)
                .await
                .expect("chain");
            for item in page.items {
                let event = StoredEvent::from_item(&item).expect("parse");
                let copy = archive::ArchivedRecord {
                    event_name: "INSERT".into(),
                    stream_event_id: format!("s-{shard}-{}", event.seq),
                    changed_at: event.time.clone(),
                    user_identity: None,
                    keys: serde_json::json!({}),
                    new_image: Some(archive::stream_image(&item)),
                    old_image: None,
                    finding: None,
                };
                app.blobs
                    .put_new(
                        &app.config.audit_archive_bucket,
                        &archive::event_key(shard, event.seq),
                        copy.to_json().expect("json"),
                        archive::CONTENT_TYPE,
                    )
                    .await
                    .expect("archived");
            }
        }
    }

    async fn verify_archived(&self) -> VerifyReport {
        let app = &self.parts.app;
        let archive = Archive {
            blobs: app.blobs.as_ref(),
            bucket: &app.config.audit_archive_bucket,
        };
        verify_with_archive(
            &self.reader(),
            &self.trusted().await,
            archive,
            self.clock.now(),
            &VerifyOptions::default(),
        )
        .await
        .expect("verify")
    }

    async fn anchor(&self) -> AnchorRun {
        self.anchorer()
            .run(self.clock.now())
            .await
            .expect("anchor run")
    }

    /// What someone holding a function's credentials can do: rewrite every event of a
    /// shard from `from_seq` on (here: turn outcomes into `denied`) with valid hashes
    /// and links, and move the head along, so the chain alone verifies.
    async fn rewrite_consistently(&self, shard: u32, from_seq: u64) {
        let head = self
            .reader()
            .head(shard)
            .await
            .expect("head")
            .expect("a head");
        let mut prev_hash = if from_seq == 0 {
            genesis_hash(shard)
        } else {
            StoredEvent::from_item(&self.event(shard, from_seq - 1).await)
                .expect("parse")
                .hash
        };
        let mut last = None;
        for seq in from_seq..=head.seq {
            let mut event = StoredEvent::from_item(&self.event(shard, seq).await).expect("parse");
            event.outcome = Outcome::Denied;
            event.prev_hash = prev_hash.clone();
            event.hash = event.compute_hash();
            prev_hash = event.hash.clone();
            self.put_raw(event.to_item()).await;
            last = Some(event);
        }
        let last = last.expect("rewrote something");
        let mut head_item = self
            .parts
            .store
            .get(&self.parts.app.config.table, &head_key(shard))
            .await
            .expect("get")
            .expect("head");
        head_item.insert("hash".into(), Value::S(last.hash.clone()));
        self.parts
            .store
            .put(&self.parts.app.config.table, head_item, None)
            .await
            .expect("put head");
    }
}

#[tokio::test]
async fn a_shard_rewritten_with_its_head_is_caught_by_the_anchors() {
    let fx = fixture();
    let ids = fx.chain_of(3, 6).await;
    fx.chain_of(5, 2).await;
    let run = fx.anchor().await;
    assert_eq!(
        run,
        AnchorRun {
            anchor: Some(0),
            broken: vec![]
        }
    );
    let intact = fx.verify_anchored().await;
    assert!(intact.is_intact(), "{:?}", intact.first_break);
    assert_eq!((intact.events, intact.anchors), (8, 1));

    fx.rewrite_consistently(3, 2).await;
    // The chain alone cannot tell: every hash, link and the head agree.
    assert!(
        fx.verify().await.is_intact(),
        "a consistent rewrite passes the chain check"
    );
    // The anchor signed the original head: the event at its seq is no longer that one.
    let report = fx.verify_anchored().await;
    assert_eq!(
        broken(&report),
        &ChainBreak {
            shard: 3,
            seq: 5,
            event_id: Some(ids[5].clone()),
            kind: BreakKind::AnchorMismatch { anchor: 0 },
        }
    );
    // The next anchoring run refuses to certify the rewritten shard and says so.
    let run = fx.anchor().await;
    assert_eq!(run.broken, vec![3]);
}

/// Events newer than the last anchor: a consistent rewrite (chain and head) passes the
/// chain and the anchors, but not the archive's first copies.
#[tokio::test]
async fn an_event_rewritten_with_its_chain_and_head_is_caught_by_the_archive() {
    let fx = fixture();
    let ids = fx.chain_of(3, 6).await;
    fx.chain_of(5, 2).await;
    fx.archive_all().await;
    let intact = fx.verify_archived().await;
    assert!(intact.is_intact(), "{:?}", intact.first_break);
    assert_eq!(intact.events, 8);

    fx.rewrite_consistently(3, 2).await;
    assert!(fx.verify().await.is_intact(), "the chain alone passes");
    assert!(
        fx.verify_anchored().await.is_intact(),
        "no anchor covers these events yet"
    );
    assert_eq!(
        broken(&fx.verify_archived().await),
        &ChainBreak {
            shard: 3,
            seq: 2,
            event_id: Some(ids[2].clone()),
            kind: BreakKind::ArchiveMismatch,
        }
    );

    // An event without an archived copy is a break once the stream had time to copy it.
    let fx = fixture();
    fx.chain_of(1, 2).await;
    assert!(
        fx.verify_archived().await.is_intact(),
        "too young to be archived"
    );
    fx.clock.advance(Duration::minutes(16));
    let report = fx.verify_archived().await;
    assert_eq!(
        (
            broken(&report).shard,
            broken(&report).seq,
            &broken(&report).kind
        ),
        (1, 0, &BreakKind::ArchiveMissing)
    );
}

#[tokio::test]
async fn anchors_extend_rolled_back_tails_and_forged_or_removed_anchors_are_caught() {
    let fx = fixture();
    fx.chain_of(1, 3).await;
    fx.anchor().await;
    fx.chain_of_more(1, 2).await;
    assert_eq!(
        fx.anchor().await.anchor,
        Some(1),
        "a moved head is anchored again"
    );
    assert_eq!(
        fx.anchor().await.anchor,
        None,
        "nothing moved: no new anchor"
    );
    assert!(fx.verify_anchored().await.is_intact());

    // Deleting the newest events and rolling the head back consistently: the anchor
    // still names seq 4.
    let store = &fx.parts.store;
    for seq in [3, 4] {
        store
            .delete(fx.audit_table(), &Key::new(chain_pk(1), seq_sk(seq)), None)
            .await
            .expect("delete");
    }
    let two = StoredEvent::from_item(&fx.event(1, 2).await).expect("parse");
    let mut head_item = store
        .get(&fx.parts.app.config.table, &head_key(1))
        .await
        .expect("get")
        .expect("head");
    head_item.insert("seq".into(), Value::N(2));
    head_item.insert("hash".into(), Value::S(two.hash.clone()));
    head_item.insert("event_id".into(), Value::S(two.event_id.clone()));
    head_item.insert("time".into(), Value::S(two.time.clone()));
    store
        .put(&fx.parts.app.config.table, head_item, None)
        .await
        .expect("put head");
    assert!(fx.verify().await.is_intact(), "the chain alone passes");
    let report = fx.verify_anchored().await;
    assert_eq!(
        (broken(&report).seq, &broken(&report).kind),
        (4, &BreakKind::AnchorMismatch { anchor: 1 })
    );

    // A forged anchor (signed by another key) is refused.
    let fx = fixture();
    fx.chain_of(2, 2).await;
    fx.anchor().await;
    let mut forged = Anchor::from_item(
        &fx.parts
            .store
            .get(fx.audit_table(), &Key::new(ANCHOR_PK, seq_sk(0)))
            .await
            .expect("get")
            .expect("anchor"),
    )
    .expect("parse");
    forged.heads[0].hash = "00".repeat(32);
    fx.put_raw(forged.to_item().expect("item")).await;
    assert_eq!(
        broken(&fx.verify_anchored().await).kind,
        BreakKind::AnchorInvalid {
            anchor: 0,
            what: "signature".into()
        }
    );

    // Removing the anchors while the chain grows shows as stale anchoring.
    let fx = fixture();
    fx.chain_of(2, 2).await;
    fx.anchor().await;
    fx.clock.advance(Duration::minutes(20));
    fx.chain_of_more(2, 1).await;
    let report = fx.verify_anchored().await;
    assert_eq!(
        broken(&report).kind,
        BreakKind::AnchorsStale { newest: Some(0) }
    );
    fx.anchor().await;
    assert!(fx.verify_anchored().await.is_intact());
    fx.parts
        .store
        .delete(fx.audit_table(), &Key::new(ANCHOR_PK, seq_sk(0)), None)
        .await
        .expect("delete anchor 0");
    assert_eq!(
        broken(&fx.verify_anchored().await).kind,
        BreakKind::AnchorUnlinked { anchor: 1 }
    );
}

impl Fixture {
    /// Appends `n` more events to `shard` (after what is there).
    async fn chain_of_more(&self, shard: u32, n: u64) {
        let writer = self.writer().starting_on_shard(shard);
        for i in 0..n {
            writer.record(sample(i)).await.expect("record");
            self.clock.advance(Duration::milliseconds(10));
        }
    }
}
