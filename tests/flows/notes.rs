//! Secure clinical notes through the notes router (and the audit router for the
//! patient's access log) on a throw-away app with a manual clock: a provider writes,
//! reads with a reason, updates; both versions stay readable; the patient's access log
//! shows the reads; a read without a reason is a 400 that changes nothing; strangers get
//! 404 and change nothing; racing updates from one version keep exactly one; a text
//! whose ciphertext or digest does not check out is an audited integrity failure; and
//! nothing is kept or shown when the audit trail is down.

use http::Method;
use serde_json::{json, Value};
use shared::audit::{Action, AuditReader, StoredEvent, TimeRange};
use shared::auth::{care, Role};
use shared::http::pagination::PageRequest;
use shared::ports::db::Value as DbValue;
use shared::store::notes;
use shared::testing::{account, dispatch, request, token, with_ports, AuditTableDown, TestApp};

const REASON: &str = "Reviewing the session before follow-up";
const FIRST: &str = "Patient reports fewer panic attacks; continue CBT weekly.";
const SECOND: &str = "Patient reports fewer panic attacks; CBT every two weeks from now.";

struct H {
    t: TestApp,
    notes: shared::http::Router,
    audit: shared::http::Router,
    provider: String,
    patient: String,
    colleague: String,
    appointment: String,
}

async fn setup() -> H {
    let t = TestApp::new();
    let provider = account(&t.app, "dr@example.com", "Dr Dana", Role::Provider).await;
    let colleague = account(&t.app, "dr2@example.com", "Dr Colm", Role::Provider).await;
    let patient = account(&t.app, "pat@example.com", "Pat Doe", Role::Patient).await;
    let dt = token(
        &t.app,
        &provider,
        Role::Provider,
        "d",
        &["pwd", "mfa", "otp"],
    )
    .await;
    let pt = token(&t.app, &patient, Role::Patient, "p", &["pwd"]).await;
    let appointment = docare_e2e::book_any_slot(&t.app, &provider, &dt, &pt).await;
    for who in [&provider, &colleague] {
        if !care::is_active(&t.app, who, &patient).await.unwrap() {
            care::start(&t.app, who, &patient, "admin", None)
                .await
                .unwrap();
        }
    }
    H {
        t,
        notes: docare_notes::router(),
        audit: docare_audit::router(),
        provider,
        patient,
        colleague,
        appointment,
    }
}

impl H {
    async fn tok(&self, user: &str, role: Role) -> String {
        let amr: &[&str] = match role {
            Role::Patient => &["pwd"],
            _ => &["pwd", "mfa", "otp"],
        };
        token(&self.t.app, user, role, "s", amr).await
    }

    async fn dt(&self) -> String {
        self.tok(&self.provider, Role::Provider).await
    }

    async fn ct(&self) -> String {
        self.tok(&self.colleague, Role::Provider).await
    }

    async fn pt(&self) -> String {
        self.tok(&self.patient, Role::Patient).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        dispatch(
            &self.notes,
            &self.t.app,
            request(method, path, Some(token), body),
        )
        .await
    }

    /// A note by the provider for the appointment; its id.
    async fn write(&self, content: &str) -> String {
        let (status, note) = self
            .send(
                Method::POST,
                "/api/v1/secure-notes",
                &self.dt().await,
                Some(
                    json!({"appointment_id": self.appointment, "note_type": "progress",
                    "content": content, "access_reason": REASON}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{note}");
        note["id"].as_str().unwrap().to_string()
    }

    async fn events(&self, note_id: &str) -> Vec<StoredEvent> {
        AuditReader::of(&self.t.app)
            .by_resource(
                notes::RESOURCE,
                note_id,
                &TimeRange::default(),
                &PageRequest::resume(100, None).unwrap(),
            )
            .await
            .unwrap()
            .items
    }

    async fn stored(&self, note_id: &str) -> notes::Stored {
        notes::get(&self.t.app, note_id).await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn a_provider_writes_reads_and_updates_a_note_both_versions_stay_readable_and_the_patient_sees_the_reads(
) {
    let h = setup().await;
    let dt = h.dt().await;
    let id = h.write(FIRST).await;
    let path = format!("/api/v1/secure-notes/{id}");

    let (status, read) = h
        .send(
            Method::POST,
            &format!("{path}/access"),
            &dt,
            Some(json!({"access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["content"], FIRST);
    assert_eq!(read["version"], 1);
    assert_eq!(read["author_id"], h.provider.as_str());
    assert_eq!(read["patient_id"], h.patient.as_str());
    assert!(read.get("access_reason").is_none() && read.get("sha256").is_none());

    let (status, updated) = h
        .send(
            Method::PUT,
            &path,
            &dt,
            Some(
                json!({"content": SECOND, "expected_version": 1, "access_reason": REASON,
                "note_type": "treatment_plan"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["note_type"], "treatment_plan");

    // Both versions: listed (author, time, whether a reason was given) and readable.
    let (status, versions) = h
        .send(Method::GET, &format!("{path}/versions"), &dt, None)
        .await;
    assert_eq!(status, 200, "{versions}");
    let items = versions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{versions}");
    for (item, (n, kind)) in items.iter().zip([(1, "original"), (2, "revision")]) {
        assert_eq!(item["version"], n);
        assert_eq!(item["kind"], kind);
        assert_eq!(item["author_id"], h.provider.as_str());
        assert_eq!(item["has_reason"], true);
        assert!(item["created_at"].is_string());
        assert!(item.get("content").is_none() && item.get("access_reason").is_none());
    }
    for (n, text) in [(1, FIRST), (2, SECOND)] {
        let (status, version) = h
            .send(
                Method::POST,
                &format!("{path}/versions/{n}/access"),
                &dt,
                Some(json!({"access_reason": REASON})),
            )
            .await;
        assert_eq!(status, 200, "{version}");
        assert_eq!(version["content"], text);
        assert_eq!(version["version"], n);
    }
    let (status, current) = h
        .send(
            Method::POST,
            &format!("{path}/access"),
            &dt,
            Some(json!({"access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(current["content"], SECOND);
    assert_eq!(current["content_version"], 2);
    let (status, _) = h
        .send(
            Method::POST,
            &format!("{path}/versions/3/access"),
            &dt,
            Some(json!({"access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 404);

    // The note's trail holds every access with its reason sealed.
    let events = h.events(&id).await;
    let actions: Vec<Action> = events.iter().map(|e| e.action).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == Action::View).count(),
        5,
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Create) && actions.contains(&Action::Update));
    // Every change and every text read carries its reason, sealed; the version list is
    // a read without text and without a reason.
    let with_reason = events.iter().filter(|e| e.reason.is_some()).count();
    assert_eq!(with_reason, events.len() - 1, "{actions:?}");

    // The patient's access log shows the provider's reads (and writes) of the note.
    let pt = h.pt().await;
    let mut log_request = request(Method::GET, "/api/v1/users/me/access-log", Some(&pt), None);
    log_request.query.insert("limit".into(), "100".into());
    let (status, log) = dispatch(&h.audit, &h.t.app, log_request).await;
    assert_eq!(status, 200, "{log}");
    let on_notes: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["resource"]["type"] == notes::PATIENT_RECORD)
        .collect();
    let views = on_notes.iter().filter(|i| i["action"] == "VIEW").count();
    assert!(
        views >= 4,
        "the provider's reads are in the access log: {log}"
    );
    assert!(on_notes
        .iter()
        .all(|i| i["actor"]["user_id"] == h.provider.as_str()));
    assert!(on_notes.iter().any(|i| i["action"] == "UPDATE"));

    // The text is sealed at rest, and its digest with it: neither is in the clear.
    let raw =
        h.t.app
            .db
            .get(&h.t.app.config.table, &notes::version_key(&id, 2))
            .await
            .unwrap()
            .unwrap();
    let digest = shared::domain::note::digest(SECOND);
    for (name, value) in &raw {
        let shown = format!("{value:?}");
        assert!(!shown.contains("CBT") && !shown.contains(&digest), "{name}");
    }
    assert!(matches!(raw.get(notes::CONTENT), Some(DbValue::B(_))));
}

#[tokio::test]
async fn a_read_without_a_reason_is_a_400_and_changes_nothing() {
    let h = setup().await;
    let dt = h.dt().await;
    let id = h.write(FIRST).await;
    let path = format!("/api/v1/secure-notes/{id}");
    let before_events = h.events(&id).await.len();
    let before = h.stored(&id).await;
    for body in [
        None,
        Some(json!({})),
        Some(json!({"access_reason": ""})),
        Some(json!({"access_reason": "why"})),
        Some(json!({"access_reason": "x".repeat(501)})),
        Some(json!({"access_reason": "ok reason\u{7} with a bell"})),
    ] {
        let (status, answer) = h
            .send(Method::POST, &format!("{path}/access"), &dt, body.clone())
            .await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        assert!(answer.get("content").is_none());
        let (status, _) = h
            .send(
                Method::POST,
                &format!("{path}/versions/1/access"),
                &dt,
                body.clone(),
            )
            .await;
        assert_eq!(status, 400, "{body:?}");
    }
    // Nor a change, a share, an archive or a list without one.
    let (status, _) = h
        .send(
            Method::PUT,
            &path,
            &dt,
            Some(json!({"content": SECOND, "expected_version": 1})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .send(
            Method::PUT,
            &format!("{path}/archive"),
            &dt,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .send(
            Method::PUT,
            &format!("{path}/share"),
            &dt,
            Some(json!({"shared_with_patient": true})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .send(
            Method::POST,
            &format!("/api/v1/appointments/{}/secure-notes/access", h.appointment),
            &dt,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .send(
            Method::POST,
            "/api/v1/secure-notes",
            &dt,
            Some(
                json!({"appointment_id": h.appointment, "note_type": "progress", "content": FIRST}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(h.events(&id).await.len(), before_events, "nothing recorded");
    assert_eq!(h.stored(&id).await, before, "nothing changed");

    // Bad input is named, never echoed: an unknown type, empty text, a stale version.
    let (status, answer) = h
        .send(
            Method::POST,
            "/api/v1/secure-notes",
            &dt,
            Some(
                json!({"appointment_id": h.appointment, "note_type": "gossip",
                "content": FIRST, "access_reason": REASON}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(!answer.to_string().contains("panic attacks"));
    let (status, _) = h
        .send(
            Method::POST,
            "/api/v1/secure-notes",
            &dt,
            Some(
                json!({"appointment_id": h.appointment, "note_type": "intake",
                "content": "   ", "access_reason": REASON}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .send(
            Method::PUT,
            &path,
            &dt,
            Some(json!({"content": SECOND, "expected_version": 0, "access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .send(
            Method::PUT,
            &path,
            &dt,
            Some(json!({"content": SECOND, "expected_version": 7, "access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(h.stored(&id).await, before, "nothing changed");
}

#[tokio::test]
async fn strangers_and_other_patients_get_404_and_change_nothing() {
    let h = setup().await;
    let id = h.write(FIRST).await;
    let path = format!("/api/v1/secure-notes/{id}");
    let stranger = account(&h.t.app, "dr3@example.com", "Dr Out", Role::Provider).await;
    let other = account(&h.t.app, "p2@example.com", "Other Pat", Role::Patient).await;
    let admin = account(&h.t.app, "root@example.com", "Root", Role::Admin).await;
    let st = h.tok(&stranger, Role::Provider).await;
    let ot = h.tok(&other, Role::Patient).await;
    let at = h.tok(&admin, Role::Admin).await;
    let pt = h.pt().await;
    let before = h.stored(&id).await;
    let reason = json!({"access_reason": REASON});
    let update = json!({"content": "rewritten", "expected_version": 1, "access_reason": REASON});
    for (who, token) in [("stranger", &st), ("other patient", &ot), ("admin", &at)] {
        for (method, route, body) in [
            (Method::POST, format!("{path}/access"), reason.clone()),
            (Method::PUT, path.clone(), update.clone()),
            (Method::PUT, format!("{path}/archive"), reason.clone()),
            (
                Method::PUT,
                format!("{path}/share"),
                json!({"shared_with_patient": true, "access_reason": REASON}),
            ),
            (
                Method::POST,
                format!("{path}/versions/1/access"),
                reason.clone(),
            ),
            (
                Method::POST,
                format!("/api/v1/appointments/{}/secure-notes/access", h.appointment),
                reason.clone(),
            ),
        ] {
            let (status, answer) = h.send(method.clone(), &route, token, Some(body)).await;
            assert_eq!(status, 404, "{who}: {method} {route}: {answer}");
            assert!(!answer.to_string().contains("panic"));
        }
        let (status, _) = h
            .send(Method::GET, &format!("{path}/versions"), token, None)
            .await;
        assert_eq!(status, 404, "{who}");
    }
    // The note's own patient does not see it before it is shared.
    let (status, _) = h
        .send(
            Method::POST,
            &format!("{path}/access"),
            &pt,
            Some(reason.clone()),
        )
        .await;
    assert_eq!(status, 404);
    // A provider without the relationship cannot write for the appointment either.
    let (status, _) = h
        .send(
            Method::POST,
            "/api/v1/secure-notes",
            &st,
            Some(
                json!({"appointment_id": h.appointment, "note_type": "progress",
                "content": "not mine", "access_reason": REASON}),
            ),
        )
        .await;
    assert_eq!(status, 404);
    // The audit trail of the note: its author and admins only.
    for (token, want) in [
        (&st, 404),
        (&ot, 404),
        (&pt, 404),
        (&h.ct().await, 404),
        (&at, 200),
        (&h.dt().await, 200),
    ] {
        let (status, answer) = h
            .send(Method::GET, &format!("{path}/audit-logs"), token, None)
            .await;
        assert_eq!(status, want, "{answer}");
    }
    assert_eq!(h.stored(&id).await, before, "nothing changed");
    let denied = h
        .events(&id)
        .await
        .iter()
        .filter(|e| e.action == Action::AccessDenied)
        .count();
    assert!(denied >= 18, "each refusal is recorded: {denied}");
}

#[tokio::test]
async fn an_addendum_sharing_and_archiving() {
    let h = setup().await;
    let (dt, ct, pt) = (h.dt().await, h.ct().await, h.pt().await);
    let id = h.write(FIRST).await;
    let path = format!("/api/v1/secure-notes/{id}");
    // Another provider in the patient's care adds an addendum: a version with its author.
    let (status, added) = h
        .send(
            Method::PUT,
            &path,
            &ct,
            Some(
                json!({"content": "Addendum: seen in crisis clinic on Friday.",
                "expected_version": 1, "access_reason": "Adding the crisis clinic visit"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(
        added["author_id"],
        h.provider.as_str(),
        "the note keeps its author"
    );
    assert_eq!(added["content_author_id"], h.colleague.as_str());
    let (_, versions) = h
        .send(Method::GET, &format!("{path}/versions"), &dt, None)
        .await;
    assert_eq!(versions["items"][1]["kind"], "addendum");
    assert_eq!(versions["items"][1]["author_id"], h.colleague.as_str());
    // Only the author shares or archives.
    let share =
        json!({"shared_with_patient": true, "access_reason": "Sharing the note with the patient"});
    let (status, _) = h
        .send(
            Method::PUT,
            &format!("{path}/share"),
            &ct,
            Some(share.clone()),
        )
        .await;
    assert_eq!(status, 403);
    let (status, shared) = h
        .send(Method::PUT, &format!("{path}/share"), &dt, Some(share))
        .await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(shared["shared_with_patient"], true);
    // The patient reads the current version, lists the appointment's shared notes, and
    // changes nothing.
    let mine = json!({"access_reason": "Reading my own session note"});
    let (status, read) = h
        .send(
            Method::POST,
            &format!("{path}/access"),
            &pt,
            Some(mine.clone()),
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        read["content"],
        "Addendum: seen in crisis clinic on Friday."
    );
    let second = h.write("Unshared draft: rule out bipolar II").await;
    let list = format!("/api/v1/appointments/{}/secure-notes/access", h.appointment);
    let (status, listed) = h.send(Method::POST, &list, &pt, Some(mine.clone())).await;
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()], "only the shared note");
    assert!(!listed.to_string().contains("bipolar"));
    let (status, listed) = h.send(Method::POST, &list, &dt, Some(mine.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(listed["items"][0].get("content").is_none());
    let (status, _) = h
        .send(
            Method::PUT,
            &path,
            &pt,
            Some(json!({"content": "mine now", "expected_version": 2, "access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .send(Method::GET, &format!("{path}/versions"), &pt, None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .send(
            Method::POST,
            &format!("/api/v1/secure-notes/{second}/access"),
            &pt,
            Some(mine.clone()),
        )
        .await;
    assert_eq!(status, 404);
    // Archived: never deleted, no longer changed, still readable by the care team, no
    // longer by the patient.
    let archive = json!({"access_reason": "Superseded by the intake assessment"});
    let (status, _) = h
        .send(
            Method::PUT,
            &format!("{path}/archive"),
            &ct,
            Some(archive.clone()),
        )
        .await;
    assert_eq!(status, 403);
    let (status, archived) = h
        .send(
            Method::PUT,
            &format!("{path}/archive"),
            &dt,
            Some(archive.clone()),
        )
        .await;
    assert_eq!(status, 200, "{archived}");
    assert_eq!(archived["status"], "archived");
    let (status, _) = h
        .send(Method::PUT, &format!("{path}/archive"), &dt, Some(archive))
        .await;
    assert_eq!(status, 409);
    let (status, _) = h
        .send(
            Method::PUT,
            &path,
            &dt,
            Some(json!({"content": SECOND, "expected_version": 2, "access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, read) = h
        .send(
            Method::POST,
            &format!("{path}/versions/1/access"),
            &dt,
            Some(json!({"access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(read["content"], FIRST);
    let (status, _) = h
        .send(Method::POST, &format!("{path}/access"), &pt, Some(mine))
        .await;
    assert_eq!(status, 404);
    let actions: Vec<Action> = h.events(&id).await.iter().map(|e| e.action).collect();
    assert!(actions.contains(&Action::Archive), "{actions:?}");
    // A provider whose care relationship ended sees nothing more.
    let (rel, _) = care::between(&h.t.app, &h.colleague, &h.patient)
        .await
        .unwrap()
        .unwrap();
    let event = shared::audit::AuditEvent::new(Action::Delete, shared::audit::Outcome::Success)
        .resource("care_relationship", &rel.id);
    care::end(&h.t.app, &rel, false, event).await.unwrap();
    let (status, _) = h
        .send(
            Method::POST,
            &format!("{path}/versions/2/access"),
            &h.ct().await,
            Some(json!({"access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 404, "no longer in the patient's care");
}

/// 48 updates from the same version at once, each on its own app instance (its own
/// caches and audit writer): exactly one new version, every other answer a 409, one
/// update event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_eight_parallel_updates_from_one_version_make_exactly_one_new_version() {
    const RACERS: usize = 48;
    let h = setup().await;
    let id = h.write(FIRST).await;
    let apps: Vec<shared::App> = (0..RACERS).map(|_| with_ports(&h.t.app, |_| {})).collect();
    let (answers, most) = docare_e2e::race_identical(
        h.notes.clone(),
        apps,
        Method::PUT,
        &format!("/api/v1/secure-notes/{id}"),
        &h.dt().await,
        json!({"content": SECOND, "expected_version": 1, "access_reason": REASON}),
    )
    .await;
    eprintln!("{most} of {RACERS} updates in flight together");
    assert!(
        most >= 12,
        "the requests overlapped: at most {most} in flight"
    );
    let won = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(won, 1, "exactly one update is kept: {answers:?}");
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 409), "{status} {body}");
    }
    let stored = h.stored(&id).await;
    assert_eq!(stored.version, 2);
    let versions = notes::versions(&h.t.app, &id, &PageRequest::resume(100, None).unwrap())
        .await
        .unwrap();
    assert_eq!(versions.items.len(), 2, "one new version");
    let updates = h
        .events(&id)
        .await
        .iter()
        .filter(|e| e.action == Action::Update)
        .count();
    assert_eq!(updates, 1, "one update recorded");
}

#[tokio::test]
async fn a_text_that_fails_its_checks_is_an_audited_integrity_failure_never_a_wrong_answer() {
    let h = setup().await;
    let dt = h.dt().await;
    let id = h.write(FIRST).await;
    let path = format!("/api/v1/secure-notes/{id}");
    let (status, _) = h
        .send(
            Method::PUT,
            &path,
            &dt,
            Some(json!({"content": SECOND, "expected_version": 1, "access_reason": REASON})),
        )
        .await;
    assert_eq!(status, 200);
    let table = h.t.app.config.table.clone();
    let db = h.t.app.db.clone();
    let v1 = db
        .get(&table, &notes::version_key(&id, 1))
        .await
        .unwrap()
        .unwrap();
    let mut v2 = db
        .get(&table, &notes::version_key(&id, 2))
        .await
        .unwrap()
        .unwrap();
    // Version 2's ciphertext moved onto version 1: bound to its own key, it fails to open.
    let mut moved = v1.clone();
    moved.insert(notes::CONTENT.into(), v2[notes::CONTENT].clone());
    db.put(&table, moved, None).await.unwrap();
    // Version 2 re-sealed (correctly, at its own key) with a text whose digest is not
    // the one sealed with it: opens, then fails the digest check.
    let forged = format!(
        "{{\"v\":1,\"sha256\":\"{}\",\"content\":\"Patient is fine, discharge.\"}}",
        shared::domain::note::digest(SECOND)
    );
    let sealed = shared::phi::seal(
        &h.t.app,
        &notes::version_key(&id, 2),
        notes::CONTENT,
        &forged,
    )
    .await
    .unwrap();
    v2.insert(notes::CONTENT.into(), sealed);
    db.put(&table, v2, None).await.unwrap();
    for route in [
        format!("{path}/versions/1/access"),
        format!("{path}/access"),
    ] {
        let (status, answer) = h
            .send(
                Method::POST,
                &route,
                &dt,
                Some(json!({"access_reason": REASON})),
            )
            .await;
        assert_eq!(status, 500, "{route}: {answer}");
        let shown = answer.to_string();
        assert!(
            !shown.contains("discharge") && !shown.contains("panic"),
            "{shown}"
        );
    }
    let failures = h
        .events(&id)
        .await
        .iter()
        .filter(|e| e.action == Action::IntegrityFailure)
        .count();
    assert_eq!(failures, 2, "each failure is recorded on the note");
}

#[tokio::test]
async fn with_the_audit_trail_down_nothing_is_written_and_nothing_is_shown() {
    let h = setup().await;
    let dt = h.dt().await;
    let id = h.write(FIRST).await;
    let before = h.stored(&id).await;
    let down = with_ports(&h.t.app, |p| p.db = AuditTableDown::of(&h.t.app));
    let path = format!("/api/v1/secure-notes/{id}");
    let send = |method: Method, route: String, body: Value| {
        let down = down.clone();
        let notes = h.notes.clone();
        let dt = dt.clone();
        async move {
            dispatch(
                &notes,
                &down,
                request(method, &route, Some(&dt), Some(body)),
            )
            .await
        }
    };
    let (status, answer) = send(
        Method::POST,
        format!("{path}/access"),
        json!({"access_reason": REASON}),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.get("content").is_none());
    let (status, _) = send(
        Method::PUT,
        path.clone(),
        json!({"content": SECOND, "expected_version": 1, "access_reason": REASON}),
    )
    .await;
    assert_eq!(status, 503);
    let (status, _) = send(
        Method::POST,
        "/api/v1/secure-notes".into(),
        json!({"appointment_id": h.appointment, "note_type": "progress", "content": SECOND,
            "access_reason": REASON}),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(
        h.stored(&id).await,
        before,
        "no version was kept without its event"
    );
    let (_, listed) = h
        .send(
            Method::POST,
            &format!("/api/v1/appointments/{}/secure-notes/access", h.appointment),
            &dt,
            Some(json!({"access_reason": REASON})),
        )
        .await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "no note was kept without its event"
    );
}
