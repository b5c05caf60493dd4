//! Emergency contacts and SOS through the router on the local adapters.

use http::Method;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use shared::clock::ManualClock;
use shared::http::Router;
use shared::notifications::Notification;
use shared::testing::{
    account, dispatch, drain_notifications, request, token, with_ports, AuditTableDown, Outage,
    TestApp,
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
        let TestApp { app, clock, dir } = TestApp::new();
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
    let down = with_ports(&h.app, |p| p.queue = Arc::new(Outage));

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
