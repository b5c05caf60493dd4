//! Emergency contacts and SOS through the router on the local adapters.

use http::Method;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use shared::clock::ManualClock;
use shared::http::Router;
use shared::notifications::Notification;
use shared::testing::{
    account, dispatch, drain_notifications, request, token, with_ports, AuditTableDown, TestApp,
    OUTAGE,
};
use shared::App;
use std::sync::Arc;

struct H {
    app: App,
    clock: Arc<ManualClock>,
    router: Router,
    _dir: tempfile::TempDir,
}

impl H {
    fn new() -> Self {
        let TestApp {
            app, clock, dir, ..
        } = TestApp::new();
        Self {
            app,
            clock,
            router: docare_emergency::router(),
            _dir: dir,
        }
    }

    async fn user(&self, email: &str, role: Role) -> (String, String) {
        let id = account(&self.app, email, "Homer Simpson", role).await;
        let token = token(&self.app, &id, role, "s", &["pwd"]).await;
        (id, token)
    }

    async fn call_on(
        &self,
        app: &App,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        dispatch(&self.router, app, request(method, path, Some(token), body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_on(&self.app, method, path, token, body).await
    }

    /// Queued notifications, opened (and asserted sealed on the queue).
    async fn queued(&self) -> Vec<Notification> {
        let mut out = Vec::new();
        for (body, sealed) in drain_notifications(&self.app).await {
            assert!(
                sealed.sealed.is_some() && sealed.to.is_empty(),
                "sealed on the queue"
            );
            assert!(
                !body.contains("Homer") && !body.contains("+1415"),
                "no PHI on the queue"
            );
            out.push(sealed.open(&self.app).await.unwrap());
        }
        out
    }
}

fn contact(n: usize) -> Value {
    json!({"name": format!("Contact {n}"), "relationship": "friend", "phone": format!("+1415555{n:04}"), "email": format!("c{n}@example.com")})
}

#[tokio::test]
async fn contacts_crud_is_private_validated_and_bounded() {
    let h = H::new();
    let (_, me) = h.user("me@example.com", Role::Patient).await;
    let (_, other) = h.user("other@example.com", Role::Patient).await;
    let (status, created) = h
        .call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(1)),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/emergency/contacts/{id}");
    assert_eq!(
        h.call(Method::GET, &path, &me, None).await.1["phone"],
        "+14155550001"
    );
    assert_eq!(h.call(Method::GET, &path, &other, None).await.0, 404);
    assert_eq!(h.call(Method::DELETE, &path, &other, None).await.0, 404);
    let (status, updated) = h
        .call(
            Method::PUT,
            &path,
            &me,
            Some(json!({"name": "Renamed", "relationship": "sister", "email": "sis@example.com"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["phone"], Value::Null);
    assert_eq!(updated["name"], "Renamed");
    for bad in [
        json!({"name": "X", "relationship": "friend"}),
        json!({"name": "", "relationship": "friend", "phone": "+14155550000"}),
        json!({"name": "X", "relationship": "friend", "phone": "12"}),
    ] {
        assert_eq!(
            h.call(Method::POST, "/api/v1/emergency/contacts", &me, Some(bad))
                .await
                .0,
            400
        );
    }
    for n in 2..=10 {
        assert_eq!(
            h.call(
                Method::POST,
                "/api/v1/emergency/contacts",
                &me,
                Some(contact(n))
            )
            .await
            .0,
            201,
            "contact {n}"
        );
    }
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(11))
        )
        .await
        .0,
        409
    );
    let (_, list) = h
        .call(Method::GET, "/api/v1/emergency/contacts", &me, None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 10);
    assert_eq!(h.call(Method::DELETE, &path, &me, None).await.0, 204);
    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(11))
        )
        .await
        .0,
        201,
        "room again"
    );
    assert_eq!(
        h.call(Method::GET, "/api/v1/emergency/contacts", &other, None)
            .await
            .1["items"],
        json!([])
    );
}

#[tokio::test]
async fn sos_is_accepted_fanned_out_sealed_and_repeats_collapse() {
    let h = H::new();
    let (patient, me) = h.user("homer@example.com", Role::Patient).await;
    let (provider, _) = h.user("dr.hibbert@example.com", Role::Provider).await;
    care::start(&h.app, &provider, &patient, "admin", None)
        .await
        .unwrap();
    h.call(
        Method::POST,
        "/api/v1/emergency/contacts",
        &me,
        Some(contact(1)),
    )
    .await;
    h.call(
        Method::POST,
        "/api/v1/emergency/contacts",
        &me,
        Some(json!({"name": "Bart", "relationship": "son", "phone": "+14155550002"})),
    )
    .await;
    assert_eq!(
        h.queued().await.len(),
        3,
        "each new contact is told, on each channel"
    );

    let body = json!({"location": {"latitude": 44.05, "longitude": -123.09, "accuracy_m": 12.0}, "message": "chest pain"});
    let (status, first) = h
        .call(
            Method::POST,
            "/api/v1/emergency/sos",
            &me,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "recorded");
    assert_eq!(
        first["notified"], 4,
        "2 SMS + 1 e-mail to contacts, 1 e-mail to the provider"
    );
    let sent = h.queued().await;
    assert_eq!(sent.len(), 4);
    assert!(sent.iter().all(|n| n.body.contains("Homer Simpson")
        && n.body.contains("44.05000")
        && n.body.contains("chest pain")));
    assert!(sent.iter().any(|n| n.to == "dr.hibbert@example.com"));
    assert!(sent.iter().any(|n| n.to == "+14155550002"));

    // Within the window: recorded on the same alert, not re-sent.
    h.clock.advance(chrono::Duration::minutes(2));
    let (status, again) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(again["status"], "collapsed");
    assert_eq!(again["sos_id"], first["sos_id"]);
    assert!(h.queued().await.is_empty());
    let key = shared::store::keys::sos_alert(&patient, first["sos_id"].as_str().unwrap());
    let alert = h
        .app
        .db
        .get(&h.app.config.table, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alert["repeats"], shared::ports::db::Value::N(1));

    // After the window a new alert goes out.
    h.clock.advance(chrono::Duration::minutes(4));
    let (_, third) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!(third["status"], "recorded");
    assert_ne!(third["sos_id"], first["sos_id"]);
    assert_eq!(h.queued().await.len(), 4);

    assert_eq!(
        h.call(
            Method::POST,
            "/api/v1/emergency/sos",
            &me,
            Some(json!({"location": {"latitude": 91.0, "longitude": 0.0}}))
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn sos_with_the_queue_down_is_503_and_the_retry_is_sent() {
    let h = H::new();
    let (_, me) = h.user("q@example.com", Role::Patient).await;
    h.call(
        Method::POST,
        "/api/v1/emergency/contacts",
        &me,
        Some(contact(1)),
    )
    .await;
    assert_eq!(h.queued().await.len(), 2, "the new contact was told");
    let down = with_ports(&h.app, |p| p.queue = Arc::new(OUTAGE));

    assert_eq!(
        h.call_on(&down, Method::POST, "/api/v1/emergency/sos", &me, None)
            .await
            .0,
        503
    );
    // The alert was recorded before the outage; the retry joins it and, since its
    // messages never left, sends them now (collapsed, not lost).
    let (status, retry) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(retry["status"], "collapsed");
    assert_eq!(retry["notified"], 2, "{retry}");
    assert_eq!(h.queued().await.len(), 2);
    // A further repeat sends nothing more.
    let (_, again) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!(again["notified"], 0);
    assert!(h.queued().await.is_empty());
}

#[tokio::test]
async fn a_change_whose_audit_event_cannot_be_recorded_is_not_kept() {
    let h = H::new();
    let (_, me) = h.user("unaudited@example.com", Role::Patient).await;
    let (status, kept) = h
        .call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(1)),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(h.queued().await.len(), 2, "the new contact was told");
    let id = kept["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/emergency/contacts/{id}");
    let down = with_ports(&h.app, |p| p.db = AuditTableDown::of(&h.app));

    // Create, replace, delete and SOS: each 503, and none of them happened.
    let create = h
        .call_on(
            &down,
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(2)),
        )
        .await;
    let replace = h
        .call_on(&down, Method::PUT, &path, &me, Some(contact(3)))
        .await;
    let delete = h.call_on(&down, Method::DELETE, &path, &me, None).await;
    let sos = h
        .call_on(&down, Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!([create.0, replace.0, delete.0, sos.0], [503; 4]);

    let (_, list) = h
        .call(Method::GET, "/api/v1/emergency/contacts", &me, None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0], kept, "unchanged");
    assert!(h.queued().await.is_empty(), "no SOS was sent");
    // The count was not raised by the refused create: nine more fit.
    for n in 2..=10 {
        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/emergency/contacts",
                &me,
                Some(contact(n)),
            )
            .await;
        assert_eq!(status, 201, "contact {n}");
    }
    let (status, _) = h
        .call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(11)),
        )
        .await;
    assert_eq!(status, 409);
    // And the refused SOS opened no window: the next one is a new alert.
    let (status, first) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!((status, first["status"].as_str()), (202, Some("recorded")));
}

/// The SMS and e-mails queued, by channel.
fn by_channel(sent: &[Notification]) -> (Vec<&Notification>, Vec<&Notification>) {
    use shared::ports::messenger::Channel;
    sent.iter().partition(|n| n.channel == Channel::Sms)
}

async fn events_on(app: &App, kind: &str, id: &str) -> Vec<shared::audit::StoredEvent> {
    let page = shared::http::pagination::PageRequest {
        limit: 100,
        start: None,
    };
    shared::audit::AuditReader::of(app)
        .by_resource(kind, id, &shared::audit::TimeRange::default(), &page)
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn contacts_are_told_when_added_or_re_pointed_and_not_kept_when_they_cannot_be() {
    let h = H::new();
    let (_, me) = h.user("teller@example.com", Role::Patient).await;
    let (status, created) = h
        .call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(1)),
        )
        .await;
    assert_eq!(status, 201);
    let sent = h.queued().await;
    let (sms, mail) = by_channel(&sent);
    assert_eq!((sms.len(), mail.len()), (1, 1));
    assert_eq!(sms[0].to, "+14155550001");
    assert_eq!(mail[0].to, "c1@example.com");
    for notice in &sent {
        assert!(notice
            .body
            .contains("Homer Simpson added you as an emergency contact"));
        // Nothing beyond who added them: not their relationship, not their own name.
        assert!(!notice.body.contains("friend") && !notice.body.contains("Contact 1"));
    }
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/emergency/contacts/{id}");

    // Same phone and e-mail: nobody new to tell.
    let mut renamed = contact(1);
    renamed["name"] = json!("Renamed");
    assert_eq!(h.call(Method::PUT, &path, &me, Some(renamed)).await.0, 200);
    assert!(h.queued().await.is_empty());
    // A new phone is told; the unchanged e-mail is not.
    let mut moved = contact(1);
    moved["phone"] = json!("+14155559999");
    assert_eq!(h.call(Method::PUT, &path, &me, Some(moved)).await.0, 200);
    let sent = h.queued().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "+14155559999");

    // The queue is down: not told, not kept (create undone, replace rolled back).
    let down = with_ports(&h.app, |p| p.queue = Arc::new(OUTAGE));
    let (status, _) = h
        .call_on(
            &down,
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(2)),
        )
        .await;
    assert_eq!(status, 503);
    let mut elsewhere = contact(1);
    elsewhere["phone"] = json!("+14155558888");
    assert_eq!(
        h.call_on(&down, Method::PUT, &path, &me, Some(elsewhere))
            .await
            .0,
        503
    );
    let (_, list) = h
        .call(Method::GET, "/api/v1/emergency/contacts", &me, None)
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(
        items[0]["phone"], "+14155559999",
        "the previous number is back"
    );
    assert!(h.queued().await.is_empty());
}

#[tokio::test]
async fn sms_go_only_to_the_configured_countries_when_added_and_when_sent() {
    let h = H::new();
    let (_, me) = h.user("abroad@example.com", Role::Patient).await;
    let uk = json!({"name": "Gran", "relationship": "grandmother", "phone": "+442079460000", "email": "gran@example.co.uk"});
    let (status, body) = h
        .call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(uk.clone()),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains("2079460000"), "never echoed");
    assert_eq!(
        h.call(Method::GET, "/api/v1/emergency/contacts", &me, None)
            .await
            .1["items"],
        json!([])
    );
    assert!(h.queued().await.is_empty());

    // A deployment that allows +44 accepts it (and tells the contact by SMS too).
    let mut config = h.app.config.clone();
    config.sms_countries = shared::config::SmsCountries::parse("+1,+44").unwrap();
    let wider: App = Arc::new(shared::AppContext::new(config, h.app.ports()));
    let (status, _) = h
        .call_on(
            &wider,
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(uk),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(h.queued().await.len(), 2);
    // Sending checks again: under the default (+1 only) the SMS is withheld.
    let (status, sos) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        (sos["notified"].as_u64(), sos["withheld"].as_u64()),
        (Some(1), Some(1))
    );
    let sent = h.queued().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "gran@example.co.uk");
}

#[tokio::test]
async fn messages_to_contacts_are_capped_per_day() {
    use shared::domain::emergency::CONTACT_SMS_PER_DAY;
    let h = H::new();
    let (patient, me) = h.user("relay@example.com", Role::Patient).await;
    let (_, created) = h
        .call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(contact(1)),
        )
        .await;
    let path = format!(
        "/api/v1/emergency/contacts/{}",
        created["id"].as_str().unwrap()
    );
    let repoint = |n: i64| {
        let mut body = contact(1);
        body["phone"] = json!(format!("+1415666{n:04}"));
        body
    };
    // One SMS went to the new contact; re-pointing it spends the rest of the day's SMS.
    for n in 1..CONTACT_SMS_PER_DAY {
        let (status, body) = h.call(Method::PUT, &path, &me, Some(repoint(n))).await;
        assert_eq!(status, 200, "{n}: {body}");
    }
    let (status, _) = h
        .call(Method::PUT, &path, &me, Some(repoint(CONTACT_SMS_PER_DAY)))
        .await;
    assert_eq!(status, 429, "the cap is spent");
    let (_, now) = h.call(Method::GET, &path, &me, None).await;
    assert_eq!(
        now["phone"],
        format!("+1415666{:04}", CONTACT_SMS_PER_DAY - 1),
        "nothing changed"
    );
    let (sms, _) = {
        let sent = h.queued().await;
        let (sms, mail) = by_channel(&sent);
        (sms.len(), mail.len())
    };
    assert_eq!(sms as i64, CONTACT_SMS_PER_DAY);

    // An SOS still goes out: the e-mail (within its cap) and the care team; the SMS is
    // withheld and said so.
    let (status, sos) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        (sos["notified"].as_u64(), sos["withheld"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(h.queued().await.len(), 1);
    let counter = h
        .app
        .db
        .get(
            &h.app.config.table,
            &shared::store::keys::contact_messages(&patient, "2026-11-23"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counter["sms"],
        shared::ports::db::Value::N(CONTACT_SMS_PER_DAY)
    );

    // The next UTC day has a fresh budget.
    h.clock.advance(chrono::Duration::hours(15));
    let me = token(&h.app, &patient, Role::Patient, "s2", &["pwd"]).await;
    assert_eq!(
        h.call(Method::PUT, &path, &me, Some(repoint(0))).await.0,
        200
    );
}

#[tokio::test]
async fn an_sos_skips_a_contact_whose_stored_number_fails_to_open_and_records_it() {
    let h = H::new();
    let (patient, me) = h.user("swap@example.com", Role::Patient).await;
    let mut ids = Vec::new();
    for n in 1..=2 {
        let (_, created) = h
            .call(
                Method::POST,
                "/api/v1/emergency/contacts",
                &me,
                Some(contact(n)),
            )
            .await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    h.queued().await;
    // Contact 2's sealed phone copied into contact 1: it no longer opens there.
    let table = h.app.config.table.clone();
    let second = h
        .app
        .db
        .get(&table, &shared::store::keys::contact(&patient, &ids[1]))
        .await
        .unwrap()
        .unwrap();
    h.app
        .db
        .update(
            &table,
            &shared::store::keys::contact(&patient, &ids[0]),
            shared::ports::db::Update::new().set("phone", second["phone"].clone()),
            None,
        )
        .await
        .unwrap();
    let (status, sos) = h
        .call(Method::POST, "/api/v1/emergency/sos", &me, None)
        .await;
    assert_eq!(status, 202, "{sos}");
    assert_eq!(
        (sos["notified"].as_u64(), sos["withheld"].as_u64()),
        (Some(2), Some(1))
    );
    let sent = h.queued().await;
    assert!(sent
        .iter()
        .all(|n| n.to != "+14155550001" && n.to != "c1@example.com"));
    assert!(sent.iter().any(|n| n.to == "+14155550002"));
    let recorded = events_on(&h.app, "emergency_contact", &ids[0]).await;
    assert!(recorded
        .iter()
        .any(|e| e.action == shared::audit::Action::IntegrityFailure));
    // The contact's own read fails the same way, also recorded.
    let path = format!("/api/v1/emergency/contacts/{}", ids[0]);
    assert_eq!(h.call(Method::GET, &path, &me, None).await.0, 500);
}

/// A database that counts the calls in flight at once (proof that requests overlapped).
struct InFlight {
    db: Arc<dyn shared::ports::db::Database>,
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

struct Flight<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> Flight<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(now, SeqCst);
        Flight(self)
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl shared::ports::db::Database for InFlight {
    async fn get(
        &self,
        t: &str,
        k: &shared::ports::db::Key,
    ) -> Result<Option<shared::ports::db::Item>, shared::ports::db::DbError> {
        let _f = self.enter();
        tokio::task::yield_now().await;
        self.db.get(t, k).await
    }
    async fn put(
        &self,
        t: &str,
        i: shared::ports::db::Item,
        c: Option<shared::ports::db::Condition>,
    ) -> Result<(), shared::ports::db::DbError> {
        let _f = self.enter();
        self.db.put(t, i, c).await
    }
    async fn update(
        &self,
        t: &str,
        k: &shared::ports::db::Key,
        u: shared::ports::db::Update,
        c: Option<shared::ports::db::Condition>,
    ) -> Result<shared::ports::db::Item, shared::ports::db::DbError> {
        let _f = self.enter();
        self.db.update(t, k, u, c).await
    }
    async fn delete(
        &self,
        t: &str,
        k: &shared::ports::db::Key,
        c: Option<shared::ports::db::Condition>,
    ) -> Result<Option<shared::ports::db::Item>, shared::ports::db::DbError> {
        let _f = self.enter();
        self.db.delete(t, k, c).await
    }
    async fn query(
        &self,
        t: &str,
        q: shared::ports::db::Query,
    ) -> Result<shared::ports::db::QueryPage, shared::ports::db::DbError> {
        let _f = self.enter();
        self.db.query(t, q).await
    }
    async fn transact_write(
        &self,
        ops: Vec<shared::ports::db::WriteOp>,
    ) -> Result<(), shared::ports::db::DbError> {
        let _f = self.enter();
        tokio::task::yield_now().await;
        self.db.transact_write(ops).await
    }
    async fn transact_write_once(
        &self,
        ops: Vec<shared::ports::db::WriteOp>,
        token: &str,
    ) -> Result<(), shared::ports::db::DbError> {
        let _f = self.enter();
        tokio::task::yield_now().await;
        self.db.transact_write_once(ops, token).await
    }
    async fn check(&self, t: &str) -> Result<(), shared::ports::db::DbError> {
        self.db.check(t).await
    }
}

/// 64 requests at once, spread over 8 app instances (8 Lambda instances: their own audit
/// writers and caches, one table), each re-pointing the contact at a new number: exactly
/// what is left of the day's SMS cap is queued, however they interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_re_pointing_never_queues_more_than_the_daily_cap() {
    use shared::domain::emergency::CONTACT_SMS_PER_DAY;
    const REQUESTS: usize = 64;
    let h = H::new();
    let (patient, me) = h.user("race@example.com", Role::Patient).await;
    let (_, created) = h
        .call(
            Method::POST,
            "/api/v1/emergency/contacts",
            &me,
            Some(json!({"name": "Sam", "relationship": "friend", "phone": "+14155550100"})),
        )
        .await;
    let path = format!(
        "/api/v1/emergency/contacts/{}",
        created["id"].as_str().unwrap()
    );
    assert_eq!(h.queued().await.len(), 1);
    let left = (CONTACT_SMS_PER_DAY - 1) as usize;
    assert!(REQUESTS > left, "more requests than the cap leaves");

    let flight = Arc::new(InFlight {
        db: h.app.ports().db,
        now: Default::default(),
        max: Default::default(),
    });
    let instances: Vec<App> = (0..8)
        .map(|_| {
            let db: Arc<dyn shared::ports::db::Database> = flight.clone();
            with_ports(&h.app, |p| p.db = db)
        })
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let router = Arc::new(docare_emergency::router());
    let mut tasks = Vec::new();
    for n in 0..REQUESTS {
        let (app, barrier, router) = (instances[n % 8].clone(), barrier.clone(), router.clone());
        let (path, me) = (path.clone(), me.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"name": "Sam", "relationship": "friend", "phone": format!("+1415777{n:04}")});
            let req = request(Method::PUT, &path, Some(&me), Some(body));
            barrier.wait().await;
            dispatch(&router, &app, req).await.0
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()).or_insert(0usize) += 1;
    }
    let overlap = flight.max.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        overlap >= 8,
        "the requests overlapped: {overlap} calls in flight at most"
    );
    let sent = h.queued().await;
    assert!(
        sent.len() <= left,
        "{} SMS queued, the cap left {left} ({statuses:?})",
        sent.len()
    );
    assert_eq!(
        sent.len(),
        left,
        "every reservation the cap allowed was used"
    );
    assert_eq!(
        statuses.get(&200).copied().unwrap_or(0),
        sent.len(),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get(&429).copied().unwrap_or(0) + sent.len(),
        REQUESTS,
        "{statuses:?}"
    );
    let counter = h
        .app
        .db
        .get(
            &h.app.config.table,
            &shared::store::keys::contact_messages(&patient, "2026-11-23"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counter["sms"],
        shared::ports::db::Value::N(1 + sent.len() as i64)
    );
}
