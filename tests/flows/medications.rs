//! The medications function and the reminder pipeline through their routers on a
//! throw-away app with a manual clock: recording a dose once however many requests
//! race, care-team access, the scheduler's cursor and bounded catch-up, and deliveries
//! that are claimed once (an unknown outcome is reported, a failed send retried).

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use http::Method;
use serde_json::{json, Value};
use shared::auth::{care, Role};
use shared::store::reminders::{self, Channel, Claim, Reminder};
use shared::testing::{account, dispatch, request, token, with_ports, TestApp, OUTAGE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct H {
    t: TestApp,
    router: shared::http::Router,
    patient: String,
    pt: String,
}

async fn setup() -> H {
    let t = TestApp::new();
    let patient = account(&t.app, "pat@example.com", "Pat Patient", Role::Patient).await;
    let pt = token(&t.app, &patient, Role::Patient, "s1", &["pwd"]).await;
    H {
        t,
        router: docare_medications::router(),
        patient,
        pt,
    }
}

impl H {
    /// Sends a request (a `?a=b&c=d` query in `path` becomes the query parameters:
    /// `shared::testing::request`).
    async fn send(
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

    /// A fresh patient token (access tokens live 15 minutes on the manual clock).
    async fn fresh(&self) -> String {
        token(&self.t.app, &self.patient, Role::Patient, "s1", &["pwd"]).await
    }

    /// A medication at 08:00 and 20:00 UTC from the test start's day (2026-11-23).
    async fn medication(&self) -> String {
        let (status, med) = self
            .send(
                Method::POST,
                "/api/v1/medications",
                &self.pt.clone(),
                Some(json!({"name": "Metformin", "dosage": "500 mg", "form": "tablet", "route": "oral",
                    "schedule": {"kind": "times_of_day", "times": ["08:00", "20:00"]}, "starts_on": "2026-11-20"})),
            )
            .await;
        assert_eq!(status, 201, "{med}");
        med["id"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn fifty_racing_records_of_one_dose_store_one_answer() {
    let h = setup().await;
    let id = h.medication().await;
    let path = format!("/api/v1/medications/{id}/doses");
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (router, app) = (h.router.clone(), h.t.app.clone());
        let (path, pt) = (path.clone(), h.pt.clone());
        let (in_flight, peak, barrier) = (in_flight.clone(), peak.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let status = if i % 2 == 0 { "taken" } else { "skipped" };
            let body = json!({"scheduled_for": "2026-11-22T20:00:00Z", "status": status,
                "at": "2026-11-22T20:05:00Z"});
            barrier.wait().await;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let answer = dispatch(
                &router,
                &app,
                request(Method::POST, &path, Some(&pt), Some(body)),
            )
            .await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            (status, answer)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(peak.load(Ordering::SeqCst) > 1, "the requests overlapped");
    let created: Vec<_> = results.iter().filter(|(_, (s, _))| *s == 201).collect();
    assert_eq!(created.len(), 1, "exactly one first answer");
    let winner = created[0].0;
    for (status, (code, body)) in &results {
        match *code {
            201 => {}
            200 => {
                assert_eq!(*status, winner, "a repeat of the same answer");
                assert_eq!(body["status"], winner);
            }
            409 => assert_ne!(*status, winner, "another answer is a conflict"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let adherence = h
        .send(
            Method::GET,
            &format!("/api/v1/medications/{id}/adherence?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z"),
            &h.pt.clone(),
            None,
        )
        .await
        .1;
    assert_eq!(adherence["due"], 2);
    assert_eq!(
        adherence["taken"].as_u64().unwrap() + adherence["skipped"].as_u64().unwrap(),
        1,
        "one dose stored: {adherence}"
    );
}

/// Events recorded on a medication (its creation, doses, reads), oldest last.
async fn events(app: &shared::App, medication: &str) -> Vec<shared::audit::Action> {
    use shared::audit::{AuditReader, TimeRange};
    use shared::http::pagination::PageRequest;
    let page = PageRequest {
        limit: 200,
        start: None,
    };
    AuditReader::of(app)
        .by_resource("medication", medication, &TimeRange::default(), &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// 48 identical records of one dose at once, on 48 app instances: one `201` and 47
/// repeats answering the same record, one dose stored, one creation event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_eight_identical_records_of_one_dose_on_separate_instances_store_one() {
    use shared::audit::Action;
    const RACERS: usize = 48;
    let h = setup().await;
    let id = h.medication().await;
    let created_before = events(&h.t.app, &id)
        .await
        .iter()
        .filter(|a| **a == Action::Create)
        .count();
    let apps: Vec<shared::App> = (0..RACERS).map(|_| with_ports(&h.t.app, |_| {})).collect();
    let body = json!({"scheduled_for": "2026-11-22T08:00:00Z", "status": "taken",
        "at": "2026-11-22T08:10:00Z"});
    let (answers, most) = docare_e2e::race_identical(
        h.router.clone(),
        apps,
        Method::POST,
        &format!("/api/v1/medications/{id}/doses"),
        &h.pt,
        body,
    )
    .await;
    eprintln!("{most} of {RACERS} records in flight together");
    assert!(
        most >= 12,
        "the requests overlapped: at most {most} in flight"
    );
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "exactly one first record: {answers:?}");
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 201), "{status} {body}");
        assert_eq!(body, created[0], "every repeat answers the first record");
    }
    let stored = shared::store::medications::doses(
        &h.t.app,
        &id,
        shared::domain::Timestamp::parse("2026-11-22T00:00:00Z").unwrap(),
        shared::domain::Timestamp::parse("2026-11-23T00:00:00Z").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), 1, "one dose stored");
    let created_after = events(&h.t.app, &id)
        .await
        .iter()
        .filter(|a| **a == Action::Create)
        .count();
    assert_eq!(created_after - created_before, 1, "one creation recorded");
}

#[tokio::test]
async fn doses_must_be_of_the_schedule_and_providers_see_only_their_patients() {
    let h = setup().await;
    let id = h.medication().await;
    let doses = format!("/api/v1/medications/{id}/doses");
    let pt = h.pt.clone();
    for (body, want) in [
        (
            json!({"scheduled_for": "2026-11-22T09:00:00Z", "status": "taken"}),
            422,
        ),
        (
            json!({"scheduled_for": "2026-11-19T08:00:00Z", "status": "taken"}),
            422,
        ), // before the course
        (
            json!({"scheduled_for": "2026-11-22T08:00:00Z", "status": "taken", "at": "2026-11-24T08:00:00Z"}),
            422,
        ),
        (
            json!({"scheduled_for": "2026-11-22T08:00:00Z", "status": "maybe"}),
            400,
        ),
        (
            json!({"scheduled_for": "2026-11-22T08:00:00Z", "status": "taken", "extra": 1}),
            400,
        ),
    ] {
        let (status, answer) = h.send(Method::POST, &doses, &pt, Some(body.clone())).await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let carer = account(&h.t.app, "carer@example.com", "Dr Carer", Role::Provider).await;
    let stranger = account(
        &h.t.app,
        "stranger@example.com",
        "Dr Stranger",
        Role::Provider,
    )
    .await;
    care::start(&h.t.app, &carer, &h.patient, "admin", None)
        .await
        .unwrap();
    let ct = token(&h.t.app, &carer, Role::Provider, "s2", &["pwd", "mfa"]).await;
    let ct_no_mfa = token(&h.t.app, &carer, Role::Provider, "s3", &["pwd"]).await;
    let st = token(&h.t.app, &stranger, Role::Provider, "s4", &["pwd", "mfa"]).await;
    let path = format!("/api/v1/medications/{id}");
    assert_eq!(h.send(Method::GET, &path, &ct, None).await.0, 200);
    assert_eq!(h.send(Method::GET, &path, &ct_no_mfa, None).await.0, 403);
    assert_eq!(h.send(Method::GET, &path, &st, None).await.0, 404);
    let list = format!("/api/v1/medications?patient_id={}", h.patient);
    let (status, page) = h.send(Method::GET, &list, &ct, None).await;
    assert_eq!(
        (status, page["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    assert_eq!(page["items"][0]["name"], "Metformin");
    assert_eq!(h.send(Method::GET, &list, &st, None).await.0, 404);
    // Providers prescribe for their patients only; the patient records the doses.
    let rx = json!({"patient_id": h.patient, "name": "Atorvastatin", "dosage": "20 mg", "form": "tablet",
        "route": "oral", "schedule": {"kind": "every_hours", "hours": 24, "first_dose": "2026-11-23T21:00:00Z"}});
    let (status, med) = h
        .send(Method::POST, "/api/v1/medications", &ct, Some(rx.clone()))
        .await;
    assert_eq!(
        (
            status,
            med["source"].as_str(),
            med["prescribed_by"].as_str()
        ),
        (201, Some("prescribed"), Some(carer.as_str()))
    );
    assert_eq!(
        h.send(Method::POST, "/api/v1/medications", &st, Some(rx))
            .await
            .0,
        404
    );
    let dose = json!({"scheduled_for": "2026-11-22T08:00:00Z", "status": "taken"});
    assert_eq!(h.send(Method::POST, &doses, &ct, Some(dose)).await.0, 403);
    // The stranger's changes are refused and change nothing.
    let (status, _) = h
        .send(Method::PATCH, &path, &st, Some(json!({"dosage": "1 g"})))
        .await;
    assert_eq!(status, 404);
    let (_, med) = h.send(Method::GET, &path, &pt, None).await;
    assert_eq!(med["dosage"], "500 mg");
}

fn sqs(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{i}"));
        record.body = Some(body.clone());
        event.records.push(record);
    }
    event
}

fn outbox(t: &TestApp) -> usize {
    std::fs::read_dir(t.dir.path().join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_claim_without_an_outcome_is_reported_and_not_sent_again_and_a_failed_send_is_retried() {
    let h = setup().await;
    let users = docare_users::router();
    let profile = json!({"full_name": "Pat Patient", "phone": "+14155550100", "current_password": shared::testing::PASSWORD});
    let put = request(
        Method::PUT,
        "/api/v1/users/me/profile",
        Some(&h.pt),
        Some(profile),
    );
    assert_eq!(dispatch(&users, &h.t.app, put).await.0, 200);
    let id = h.medication().await;
    let due = shared::domain::Timestamp::parse("2026-11-23T20:00:00Z").unwrap();
    let reminder = Reminder::dose(&h.patient, &id, due);
    let body = serde_json::to_string(&reminder).unwrap();
    // A crash after claiming the e-mail and before marking it: the outcome is unknown.
    assert_eq!(
        reminders::claim(&h.t.app, &reminder.id, Channel::Email)
            .await
            .unwrap(),
        Claim::Claimed
    );
    let response =
        docare_reminders::deliver(h.t.app.clone(), sqs(std::slice::from_ref(&body))).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        outbox(&h.t),
        1,
        "the SMS only: the e-mail is not sent again"
    );
    let unresolved = reminders::unresolved(&h.t.app, 10).await.unwrap();
    assert_eq!(unresolved.len(), 1, "listed for an operator");
    assert_eq!(
        (
            unresolved[0].reminder_id.as_str(),
            unresolved[0].channel.as_str()
        ),
        (reminder.id.as_str(), "email")
    );

    // The messenger is down: the claim is given back and the message fails (retried).
    let other = Reminder::dose(
        &h.patient,
        &id,
        shared::domain::Timestamp::parse("2026-11-24T08:00:00Z").unwrap(),
    );
    let body = serde_json::to_string(&other).unwrap();
    let down = with_ports(&h.t.app, |p| p.messenger = Arc::new(OUTAGE));
    let response = docare_reminders::deliver(down, sqs(&[body.clone(), "junk".into()])).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m0", "m1"]);
    assert_eq!(outbox(&h.t), 1);
    // Redelivered once the messenger is back: sent, once, and nothing left unresolved.
    for _ in 0..2 {
        let response =
            docare_reminders::deliver(h.t.app.clone(), sqs(std::slice::from_ref(&body))).await;
        assert!(response.batch_item_failures.is_empty());
    }
    assert_eq!(outbox(&h.t), 3);
    assert_eq!(reminders::unresolved(&h.t.app, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_scheduler_catches_up_a_missed_hour_thirty_minutes_per_run_and_sends_each_once() {
    let h = setup().await; // 2026-11-23 09:00 UTC
    let id = h.medication().await; // next dose 20:00 UTC
    let run = docare_reminders::run(&h.t.app).await.unwrap();
    assert_eq!((run.minutes, run.queued), (1, 0));
    // 11 hours without a run (every run failed or none was scheduled).
    h.t.clock.advance(chrono::Duration::hours(11)); // 20:00
    let mut runs = Vec::new();
    loop {
        let run = docare_reminders::run(&h.t.app).await.unwrap();
        runs.push(run.clone());
        if run.behind == 0 {
            break;
        }
    }
    assert!(runs.iter().all(|r| r.minutes <= 30));
    assert_eq!(runs.len(), 22, "660 minutes, 30 per run");
    assert_eq!(
        runs.iter().map(|r| r.queued).sum::<usize>(),
        1,
        "the 20:00 dose, once"
    );
    let queued =
        h.t.app
            .queue
            .receive(
                &h.t.app.config.queues.reminders,
                10,
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap();
    assert_eq!(queued.len(), 1);
    let message: Value = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(message["subject_id"], id.as_str());
    assert_eq!(message["due_at"], "2026-11-23T20:00:00Z");
    assert!(!queued[0].body.contains("Metformin"), "ids and times only");
    // A run again in the same minute finds nothing new; the next dose is tomorrow 08:00.
    assert_eq!(docare_reminders::run(&h.t.app).await.unwrap().queued, 0);
    let (_, med) = h
        .send(
            Method::GET,
            &format!("/api/v1/medications/{id}"),
            &h.fresh().await,
            None,
        )
        .await;
    assert_eq!(med["next_dose_at"], "2026-11-24T08:00:00Z");
    // The queue is down: the run fails and the cursor stays; the next run sends it.
    h.t.clock.advance(chrono::Duration::hours(12));
    let down = with_ports(&h.t.app, |p| p.queue = Arc::new(OUTAGE));
    while docare_reminders::run(&down).await.is_ok() {}
    let mut queued = 0;
    loop {
        let run = docare_reminders::run(&h.t.app).await.unwrap();
        queued += run.queued;
        if run.behind == 0 {
            break;
        }
    }
    assert_eq!(queued, 1, "the 08:00 dose, not lost");
}
