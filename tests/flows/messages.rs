//! The messages function through its router on a throw-away app with a manual clock:
//! conversations of a patient and their care team, messages that a resend never
//! duplicates (however many race), receipts, unread counts, `sync` that gives each
//! event exactly once and in order, and everyone else refused with nothing learned.

use http::Method;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use shared::ports::db::Value as DbValue;
use shared::store::keys;
use shared::testing::{
    account, dispatch, request, token, with_ports, AuditTableDown, TestApp, OUTAGE,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) struct H {
    pub(crate) t: TestApp,
    router: shared::http::Router,
    pub(crate) patient: String,
    pub(crate) provider: String,
    pub(crate) pt: String,
    pub(crate) dt: String,
}

pub(crate) async fn setup() -> H {
    let t = TestApp::new();
    let patient = account(&t.app, "pat@example.com", "Pat Patient", Role::Patient).await;
    let provider = account(&t.app, "doc@example.com", "Dr Doc", Role::Provider).await;
    care::start(&t.app, &provider, &patient, "admin", None)
        .await
        .unwrap();
    let pt = token(&t.app, &patient, Role::Patient, "s1", &["pwd"]).await;
    let dt = token(&t.app, &provider, Role::Provider, "s2", &["pwd", "mfa"]).await;
    H {
        t,
        router: docare_messages::router(),
        patient,
        provider,
        pt,
        dt,
    }
}

impl H {
    /// Sends a request (a `?a=b&c=d` query in `path` becomes the query parameters:
    /// `shared::testing::request`).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        dispatch(
            &self.router,
            &self.t.app,
            request(method, path, Some(token), body),
        )
        .await
    }

    pub(crate) async fn conversation(&self) -> String {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v1/conversations",
                &self.pt,
                Some(json!({"participant_ids": [self.provider]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    async fn say(&self, token: &str, conversation: &str, cmid: &str, text: &str) -> (u16, Value) {
        self.send(
            Method::POST,
            &format!("/api/v1/conversations/{conversation}/messages"),
            token,
            Some(json!({"client_message_id": cmid, "body": text})),
        )
        .await
    }

    async fn sync(&self, token: &str, since: Option<&str>) -> Value {
        let path = match since {
            Some(since) => format!("/api/v1/sync?since={since}"),
            None => "/api/v1/sync".to_string(),
        };
        let (status, body) = self.send(Method::GET, &path, token, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// How many messages the conversation holds (read by the patient).
    async fn count(&self, conversation: &str) -> usize {
        let (status, page) = self
            .send(
                Method::GET,
                &format!("/api/v1/conversations/{conversation}/messages?limit=100"),
                &self.pt,
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().unwrap().len()
    }
}

#[tokio::test]
async fn two_people_chat_resends_are_not_duplicates_and_sync_gives_each_event_once_in_order() {
    let h = setup().await;
    let start = h.sync(&h.dt, None).await["next_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(start, "0");
    let id = h.conversation().await;
    let (status, first) = h.say(&h.pt, &id, "c-1", "Hello doctor").await;
    assert_eq!((status, first["seq"].as_i64()), (201, Some(1)), "{first}");
    let (status, again) = h.say(&h.pt, &id, "c-1", "Hello doctor").await;
    assert_eq!(status, 200, "a resend answers the stored message");
    assert_eq!(again["id"], first["id"]);
    let (status, reply) = h.say(&h.dt, &id, "d-1", "Hello, how are you?").await;
    assert_eq!((status, reply["seq"].as_i64()), (201, Some(2)));
    // The same client id from another sender is another message.
    assert_eq!(h.say(&h.dt, &id, "c-1", "Another").await.0, 201);
    assert_eq!(h.count(&id).await, 3);

    // Unread counts: the patient has read up to their own message.
    let (_, mine) = h
        .send(Method::GET, "/api/v1/conversations", &h.pt, None)
        .await;
    assert_eq!(mine["items"][0]["unread_count"], 2, "{mine}");
    assert_eq!(mine["items"][0]["last_seq"], 3);
    assert!(mine["items"][0]["last_message_at"].is_string());
    let (status, receipt) = h
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/read"),
            &h.pt,
            Some(json!({"up_to": 3})),
        )
        .await;
    assert_eq!((status, receipt["up_to"].as_i64()), (200, Some(3)));
    let (_, one) = h
        .send(
            Method::GET,
            &format!("/api/v1/conversations/{id}"),
            &h.pt,
            None,
        )
        .await;
    assert_eq!(
        (one["unread_count"].as_i64(), one["read_up_to"].as_i64()),
        (Some(0), Some(3))
    );
    // A marker never moves back; beyond the newest message is a 422.
    let read = format!("/api/v1/conversations/{id}/read");
    let (_, back) = h
        .send(Method::POST, &read, &h.pt, Some(json!({"up_to": 1})))
        .await;
    assert_eq!(back["up_to"], 3);
    assert_eq!(
        h.send(Method::POST, &read, &h.pt, Some(json!({"up_to": 9})))
            .await
            .0,
        422
    );

    // Newest first, paged by `before`.
    let (_, page) = h
        .send(
            Method::GET,
            &format!("/api/v1/conversations/{id}/messages?limit=2"),
            &h.pt,
            None,
        )
        .await;
    let seqs: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!((seqs, page["next_before"].as_i64()), (vec![3, 2], Some(2)));
    let (_, older) = h
        .send(
            Method::GET,
            &format!("/api/v1/conversations/{id}/messages?limit=2&before=2"),
            &h.pt,
            None,
        )
        .await;
    assert_eq!(older["items"][0]["body"], "Hello doctor");
    assert_eq!(older["next_before"], Value::Null);

    // The provider's stream: the conversation, three messages, the patient's receipt.
    let sync = h.sync(&h.dt, Some(&start)).await;
    let items = sync["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["conversation", "message", "message", "message", "read"],
        "{sync}"
    );
    let seqs: Vec<i64> = items.iter().map(|i| i["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(items[1]["message"]["body"], "Hello doctor");
    assert_eq!(items[4]["read"]["user_id"], h.patient.as_str());
    assert_eq!(
        (sync["next_token"].as_str(), sync["has_more"].as_bool()),
        (Some("5"), Some(false))
    );
    // Nothing twice: from the token returned, nothing; pages of one add up to the same.
    assert_eq!(h.sync(&h.dt, Some("5")).await["items"], json!([]));
    let mut token = start.clone();
    let mut paged = Vec::new();
    loop {
        let (_, page) = h
            .send(
                Method::GET,
                &format!("/api/v1/sync?since={token}&limit=2"),
                &h.dt,
                None,
            )
            .await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["seq"].as_i64().unwrap()),
        );
        token = page["next_token"].as_str().unwrap().to_string();
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(paged, [1, 2, 3, 4, 5]);
    // A token from the future or of another shape is a 400.
    for bad in ["99", "abc", "-1"] {
        let (status, _) = h
            .send(
                Method::GET,
                &format!("/api/v1/sync?since={bad}"),
                &h.dt,
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn bodies_are_sealed_at_rest_and_a_client_encrypted_body_is_kept_as_given() {
    let h = setup().await;
    let id = h.conversation().await;
    h.say(&h.pt, &id, "c-1", "My blood sugar is 250").await;
    let sealed = "djEuY2xpZW50LnNlYWxlZA==";
    let (status, m) = h
        .send(
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            &h.pt,
            Some(json!({"client_message_id": "c-2", "body": sealed, "encryption": "client"})),
        )
        .await;
    assert_eq!(
        (status, m["encryption"].as_str()),
        (201, Some("client")),
        "{m}"
    );
    let first =
        h.t.app
            .db
            .get(&h.t.app.config.table, &keys::message(&id, 1))
            .await
            .unwrap()
            .unwrap();
    match first.get("body") {
        Some(DbValue::B(bytes)) => {
            assert!(
                !String::from_utf8_lossy(bytes).contains("blood sugar"),
                "sealed"
            );
        }
        other => panic!("a sealed body: {other:?}"),
    }
    let second =
        h.t.app
            .db
            .get(&h.t.app.config.table, &keys::message(&id, 2))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(second.get("client_body"), Some(&DbValue::S(sealed.into())));
    assert!(!second.contains_key("body"));
    let (_, page) = h
        .send(
            Method::GET,
            &format!("/api/v1/conversations/{id}/messages"),
            &h.dt,
            None,
        )
        .await;
    assert_eq!(page["items"][0]["body"], sealed);
    assert_eq!(page["items"][1]["body"], "My blood sugar is 250");
}

#[tokio::test]
async fn only_participants_see_anything_and_bad_input_changes_nothing() {
    let h = setup().await;
    let id = h.conversation().await;
    h.say(&h.pt, &id, "c-1", "Private").await;
    let other = account(
        &h.t.app,
        "other@example.com",
        "Other Patient",
        Role::Patient,
    )
    .await;
    let stranger = account(&h.t.app, "dr2@example.com", "Dr Stranger", Role::Provider).await;
    let admin = account(&h.t.app, "admin@example.com", "Admin", Role::Admin).await;
    let ot = token(&h.t.app, &other, Role::Patient, "s3", &["pwd"]).await;
    let st = token(&h.t.app, &stranger, Role::Provider, "s4", &["pwd", "mfa"]).await;
    let at = token(&h.t.app, &admin, Role::Admin, "s5", &["pwd", "mfa"]).await;
    let dt_no_mfa = token(&h.t.app, &h.provider, Role::Provider, "s6", &["pwd"]).await;
    let routes = [
        (Method::GET, format!("/api/v1/conversations/{id}"), None),
        (
            Method::GET,
            format!("/api/v1/conversations/{id}/messages"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{id}/messages"),
            Some(json!({"client_message_id": "x-1", "body": "hi"})),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{id}/read"),
            Some(json!({"up_to": 1})),
        ),
    ];
    for (method, path, body) in &routes {
        for t in [&ot, &st] {
            let (status, answer) = h.send(method.clone(), path, t, body.clone()).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
        }
        assert_eq!(h.send(method.clone(), path, &at, body.clone()).await.0, 404);
        assert_eq!(
            h.send(method.clone(), path, &dt_no_mfa, body.clone())
                .await
                .0,
            403
        );
        // An id that does not exist and one that is not an id answer the same.
        for missing in ["01JD5Z6Q8W3M0V7K2R9T4Y6B1C", "not-an-id"] {
            let path = path.replace(&id, missing);
            assert_eq!(
                h.send(method.clone(), &path, &h.pt, body.clone()).await.0,
                404
            );
        }
    }
    // The others' lists and streams are empty.
    let (_, theirs) = h
        .send(Method::GET, "/api/v1/conversations", &ot, None)
        .await;
    assert_eq!(theirs["items"], json!([]));
    assert_eq!(h.sync(&st, Some("0")).await["items"], json!([]));
    // Nobody outside the care team can be added; a provider-only conversation is refused.
    for people in [
        json!([other]),
        json!([stranger]),
        json!([h.provider, stranger]),
        json!([admin]),
    ] {
        let (status, _) = h
            .send(
                Method::POST,
                "/api/v1/conversations",
                &h.pt,
                Some(json!({"participant_ids": people})),
            )
            .await;
        assert_eq!(status, 422, "{people}");
    }
    for bad in [
        json!({}),
        json!({"participant_ids": []}),
        json!({"participant_ids": ["x"]}),
        json!({"participant_ids": [h.provider], "extra": 1}),
    ] {
        let (status, _) = h
            .send(
                Method::POST,
                "/api/v1/conversations",
                &h.pt,
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    // Bad messages are 400s and store nothing.
    let token_before = h.sync(&h.dt, None).await["next_token"].clone();
    let path = format!("/api/v1/conversations/{id}/messages");
    for bad in [
        json!({"client_message_id": "c-9", "body": "   "}),
        json!({"client_message_id": "c-9", "body": "x".repeat(4001)}),
        json!({"client_message_id": "has space", "body": "hi"}),
        json!({"client_message_id": "c-9", "body": "has space", "encryption": "client"}),
        json!({"client_message_id": "c-9", "body": "hi", "encryption": "rot13"}),
        json!({"body": "hi"}),
    ] {
        let (status, _) = h.send(Method::POST, &path, &h.pt, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(h.count(&id).await, 1);
    assert_eq!(h.sync(&h.dt, None).await["next_token"], token_before);
    // The conversation is unchanged for its participants.
    let (_, page) = h.send(Method::GET, &path, &h.dt, None).await;
    assert_eq!(page["items"][0]["body"], "Private");
}

#[tokio::test]
async fn an_ended_relationship_leaves_the_conversation_readable_and_closed_to_new_messages() {
    let h = setup().await;
    let id = h.conversation().await;
    h.say(&h.pt, &id, "c-1", "Before").await;
    let path = format!("/api/v1/conversations/{id}");
    let (status, open) = h.send(Method::GET, &path, &h.pt, None).await;
    assert_eq!(
        (status, open["status"].as_str()),
        (200, Some("open")),
        "{open}"
    );
    let tokens: Vec<String> = {
        let mut tokens = Vec::new();
        for t in [&h.pt, &h.dt] {
            tokens.push(
                h.sync(t, None).await["next_token"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        tokens
    };
    let (rel, _) = care::between(&h.t.app, &h.provider, &h.patient)
        .await
        .unwrap()
        .unwrap();
    let event = shared::audit::AuditEvent::new(
        shared::audit::Action::Update,
        shared::audit::Outcome::Success,
    )
    .actor(shared::audit::Actor::user(&h.patient, "patient"))
    .resource("care_relationship", &rel.id);
    care::end(&h.t.app, &rel, true, event).await.unwrap();
    // Both sides see it closed: on the conversation, in the list, and in sync, where the
    // ending arrives as one `conversation_closed` event each.
    for (t, since) in [&h.pt, &h.dt].into_iter().zip(&tokens) {
        let (status, closed) = h.send(Method::GET, &path, t, None).await;
        assert_eq!(
            (status, closed["status"].as_str()),
            (200, Some("closed")),
            "{closed}"
        );
        let (_, list) = h.send(Method::GET, "/api/v1/conversations", t, None).await;
        assert_eq!(list["items"][0]["status"], "closed", "{list}");
        let sync = h.sync(t, Some(since.as_str())).await;
        let items = sync["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{sync}");
        assert_eq!(items[0]["type"], "conversation_closed", "{sync}");
        assert_eq!(items[0]["conversation_id"], id.as_str(), "{sync}");
        assert_eq!(items[0]["conversation"]["status"], "closed", "{sync}");
    }
    // Ending it again (it moves `ended_at`) closes nothing new.
    let (rel, _) = care::between(&h.t.app, &h.provider, &h.patient)
        .await
        .unwrap()
        .unwrap();
    let again = shared::audit::AuditEvent::new(
        shared::audit::Action::Update,
        shared::audit::Outcome::Success,
    )
    .actor(shared::audit::Actor::user(&h.patient, "patient"))
    .resource("care_relationship", &rel.id);
    care::end(&h.t.app, &rel, true, again).await.unwrap();
    for (t, since) in [&h.pt, &h.dt].into_iter().zip(&tokens) {
        let sync = h.sync(t, Some(since.as_str())).await;
        assert_eq!(sync["items"].as_array().unwrap().len(), 1, "{sync}");
    }
    for t in [&h.pt, &h.dt] {
        let (status, body) = h.say(t, &id, "after", "After").await;
        assert_eq!(status, 409, "{body}");
    }
    assert_eq!(h.count(&id).await, 1);
    let (status, page) = h
        .send(
            Method::GET,
            &format!("/api/v1/conversations/{id}/messages"),
            &h.dt,
            None,
        )
        .await;
    assert_eq!(
        (status, page["items"][0]["body"].as_str()),
        (200, Some("Before"))
    );
    // No new conversation with them either.
    let (status, _) = h
        .send(
            Method::POST,
            "/api/v1/conversations",
            &h.pt,
            Some(json!({"participant_ids": [h.provider]})),
        )
        .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn a_dependency_outage_is_a_503_that_loses_nothing_and_a_resend_stores_it_once() {
    let h = setup().await;
    let id = h.conversation().await;
    let path = format!("/api/v1/conversations/{id}/messages");
    let body = json!({"client_message_id": "c-1", "body": "During the outage"});
    for down in [
        with_ports(&h.t.app, |p| p.keys = Arc::new(OUTAGE)),
        with_ports(&h.t.app, |p| p.db = AuditTableDown::of(&h.t.app)),
    ] {
        let req = request(Method::POST, &path, Some(&h.pt), Some(body.clone()));
        let (status, answer) = dispatch(&h.router, &down, req).await;
        assert_eq!(status, 503, "{answer}");
    }
    assert_eq!(h.count(&id).await, 0, "nothing half-stored");
    let (status, _) = h.say(&h.pt, &id, "c-1", "During the outage").await;
    assert_eq!(status, 201, "the resend stores it");
    assert_eq!(h.say(&h.pt, &id, "c-1", "During the outage").await.0, 200);
    assert_eq!(h.count(&id).await, 1);
    // A read whose audit event cannot be recorded returns nothing.
    let down = with_ports(&h.t.app, |p| p.db = AuditTableDown::of(&h.t.app));
    let req = request(Method::GET, &path, Some(&h.pt), None);
    assert_eq!(dispatch(&h.router, &down, req).await.0, 503);
}

#[tokio::test]
async fn chat_has_its_own_rate_limits() {
    let h = setup().await;
    let id = h.conversation().await;
    // Far more reads than the general 100 per 15 minutes.
    for _ in 0..120 {
        let (status, _) = h
            .send(Method::GET, "/api/v1/conversations", &h.pt, None)
            .await;
        assert_eq!(status, 200);
    }
    let limit = shared::auth::rate_limit::CHAT_MESSAGES.max;
    for i in 0..limit {
        assert_eq!(
            h.say(&h.pt, &id, &format!("m-{i}"), "hi").await.0,
            201,
            "{i}"
        );
    }
    let (status, _) = h.say(&h.pt, &id, "m-over", "hi").await;
    assert_eq!(status, 429);
    assert_eq!(
        h.count(&id).await,
        limit as usize,
        "the refused one is not stored"
    );
    // The next minute has a new budget; the provider's is their own.
    assert_eq!(h.say(&h.dt, &id, "d-1", "hi").await.0, 201);
    h.t.clock.advance(chrono::Duration::seconds(60));
    let pt = token(&h.t.app, &h.patient, Role::Patient, "s1", &["pwd"]).await;
    assert_eq!(h.say(&pt, &id, "m-over", "hi").await.0, 201);
}

#[tokio::test]
async fn fifty_racing_sends_with_one_client_message_id_store_one_message() {
    let h = setup().await;
    let id = h.conversation().await;
    let path = format!("/api/v1/conversations/{id}/messages");
    const RACERS: usize = 50;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let (router, app) = (h.router.clone(), h.t.app.new_instance());
        // Half from a second device of the patient: same sender, same id.
        let token = if i % 2 == 0 {
            h.pt.clone()
        } else {
            token(&h.t.app, &h.patient, Role::Patient, "s9", &["pwd"]).await
        };
        let (path, in_flight, peak, barrier) = (
            path.clone(),
            in_flight.clone(),
            peak.clone(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let req = request(
                Method::POST,
                &path,
                Some(&token),
                Some(json!({"client_message_id": "same", "body": "Once"})),
            );
            barrier.wait().await;
            peak.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let answer = dispatch(&router, &app, req).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(peak.load(Ordering::SeqCst) > 1, "the sends overlapped");
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(
        created,
        1,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|(s, m)| {
            assert!(matches!(s, 200 | 201), "{s} {m}");
            m["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every answer is the one message");
    assert_eq!(h.count(&id).await, 1);
    // One event per participant.
    let sync = h.sync(&h.dt, Some("0")).await;
    assert_eq!(sync["items"].as_array().unwrap().len(), 2, "{sync}");
}
