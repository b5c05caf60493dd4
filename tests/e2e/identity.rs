//! Identity end to end: the Python client flow against a real local stack (pyotp,
//! PyJWT), and the authorization table: every route of every function, for anonymous,
//! patient, another patient, a provider without a relationship and an admin.

use docare_e2e::TestStack;
use docare_local::accounts;
use docare_local::mounts::http_functions;
use http::Method;
use shared::auth::{care, Role};
use shared::http::ApiRequest;
use shared::testing::repo_root;
use std::collections::BTreeSet;

#[tokio::test]
async fn a_client_that_knows_only_the_readme_signs_up_enrols_totp_refreshes_and_is_locked_out() {
    let Ok(python) = std::env::var("DOCARE_TEST_PYTHON") else {
        panic!("DOCARE_TEST_PYTHON is not set: run the tests with scripts/test (it installs pyotp and PyJWT)");
    };
    let stack = TestStack::start().await;
    let script = repo_root().join("tests/python/auth_flow.py");
    let outbox = stack.stack.parts.outbox_dir.clone();
    let url = stack.stack.http_url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .arg(outbox)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    assert!(
        output.status.success(),
        "auth_flow.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Reaches the handler's logic (any status but 401/403/404).
    Allow,
    /// 401.
    Unauthenticated,
    /// 403.
    Forbidden,
    /// 404: someone else's resource is invisible.
    Hidden,
}
use Expect::*;

const ACTORS: [&str; 5] = [
    "anonymous",
    "patient",
    "other_patient",
    "provider_without_relationship",
    "admin",
];

fn public() -> [Expect; 5] {
    [Allow; 5]
}
fn signed_in() -> [Expect; 5] {
    [Unauthenticated, Allow, Allow, Allow, Allow]
}
fn owner_only_and_admin() -> [Expect; 5] {
    [Unauthenticated, Allow, Hidden, Hidden, Allow]
}
fn admin_only() -> [Expect; 5] {
    [Unauthenticated, Forbidden, Forbidden, Forbidden, Allow]
}

#[tokio::test]
pub(crate) async fn every_route_allows_and_denies_as_the_policy_says() {
    let stack = TestStack::start().await;
    let app = stack.app().clone();
    let patient = accounts::create(&app, "p1@example.com", "Patient One", Role::Patient, false)
        .await
        .unwrap();
    let other = accounts::create(&app, "p2@example.com", "Patient Two", Role::Patient, false)
        .await
        .unwrap();
    let stranger = accounts::create(&app, "dr1@example.com", "Dr Stranger", Role::Provider, true)
        .await
        .unwrap();
    let carer = accounts::create(&app, "dr2@example.com", "Dr Carer", Role::Provider, true)
        .await
        .unwrap();
    let admin = accounts::create(&app, "admin1@example.com", "Admin", Role::Admin, true)
        .await
        .unwrap();
    let relationship = care::start(&app, &carer.id, &patient.id, "admin", None)
        .await
        .unwrap();
    let (patient_token, _) = app
        .tokens
        .issue(&app, &patient.id, Role::Patient, &app.new_id(), &["pwd"])
        .await
        .unwrap();
    let mut create = ApiRequest::new(Method::POST, "/api/v1/emergency/contacts");
    create.headers.insert(
        "authorization",
        format!("Bearer {patient_token}").parse().unwrap(),
    );
    create.body = serde_json::to_vec(
        &serde_json::json!({"name": "Sam", "relationship": "sibling", "phone": "+14155550123"}),
    )
    .unwrap()
    .into();
    let created = docare_emergency::router().dispatch(&app, create).await;
    assert_eq!(created.status.as_u16(), 201);
    let contact_id = serde_json::from_slice::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (carer_token, _) = app
        .tokens
        .issue(
            &app,
            &carer.id,
            Role::Provider,
            &app.new_id(),
            &["pwd", "mfa", "otp"],
        )
        .await
        .unwrap();
    let appointment_id =
        docare_e2e::book_any_slot(&app, &carer.id, &carer_token, &patient_token).await;
    let payment_id = docare_e2e::pay_for(&app, &carer_token, &patient_token, &appointment_id).await;
    let (status, video) = shared::testing::dispatch(
        &docare_video::router(),
        &app,
        shared::testing::request(
            Method::POST,
            "/api/v1/video-calls",
            Some(&carer_token),
            Some(serde_json::json!({"appointment_id": appointment_id, "recording_enabled": true})),
        ),
    )
    .await;
    assert_eq!(status, 201, "{video}");
    let video_call = format!("/api/v1/video-calls/{}", video["id"].as_str().unwrap());

    let mut create = ApiRequest::new(Method::POST, "/api/v1/medications");
    create.headers.insert(
        "authorization",
        format!("Bearer {patient_token}").parse().unwrap(),
    );
    create.body = serde_json::to_vec(&serde_json::json!({"name": "Aspirin", "dosage": "75 mg",
        "form": "tablet", "route": "oral", "schedule": {"kind": "times_of_day", "times": ["08:00"]}}))
    .unwrap()
    .into();
    let created = docare_medications::router().dispatch(&app, create).await;
    assert_eq!(created.status.as_u16(), 201);
    let medication_id = serde_json::from_slice::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let ticket = docare_e2e::start_upload(
        &app,
        &patient_token,
        serde_json::json!({"name": "scan.png", "content_type": "image/png", "size": 1000,
            "category": "imaging"}),
    )
    .await;
    let document = format!("/api/v1/documents/{}", ticket["id"].as_str().unwrap());

    let mut create = ApiRequest::new(Method::POST, "/api/v1/conversations");
    create.headers.insert(
        "authorization",
        format!("Bearer {patient_token}").parse().unwrap(),
    );
    create.body = serde_json::to_vec(&serde_json::json!({"participant_ids": [carer.id]}))
        .unwrap()
        .into();
    let created = docare_messages::router().dispatch(&app, create).await;
    assert_eq!(created.status.as_u16(), 201);
    let conversation_id = serde_json::from_slice::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A secure note by the carer for the appointment, shared with the patient.
    let notes = docare_notes::router();
    let mut create = ApiRequest::new(Method::POST, "/api/v1/secure-notes");
    create.headers.insert(
        "authorization",
        format!("Bearer {carer_token}").parse().unwrap(),
    );
    create.body = serde_json::to_vec(&serde_json::json!({"appointment_id": appointment_id,
        "note_type": "progress", "content": "Sleeping better.",
        "access_reason": "Writing the session's progress note"}))
    .unwrap()
    .into();
    let created = notes.dispatch(&app, create).await;
    assert_eq!(created.status.as_u16(), 201);
    let note_id = serde_json::from_slice::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut share = ApiRequest::new(
        Method::PUT,
        &format!("/api/v1/secure-notes/{note_id}/share"),
    );
    share.headers.insert(
        "authorization",
        format!("Bearer {carer_token}").parse().unwrap(),
    );
    share.body = serde_json::to_vec(&serde_json::json!({"shared_with_patient": true,
        "access_reason": "Sharing the progress note with the patient"}))
    .unwrap()
    .into();
    assert_eq!(notes.dispatch(&app, share).await.status.as_u16(), 200);

    // Each request gets a token of a new session: routes such as logout-all or a
    // password change end the sessions before them.
    let mut actors = vec![None];
    for (who, role, amr) in [
        (&patient, Role::Patient, &["pwd"][..]),
        (&other, Role::Patient, &["pwd"][..]),
        (&stranger, Role::Provider, &["pwd", "mfa", "otp"][..]),
        (&admin, Role::Admin, &["pwd", "mfa", "otp"][..]),
    ] {
        actors.push(Some((who.id.clone(), role, amr)));
    }

    let user = format!("/api/v1/users/{}", patient.id);
    let rel = format!("/api/v1/care-relationships/{}", relationship.id);
    let contact = format!("/api/v1/emergency/contacts/{contact_id}");
    let owner_only = [Unauthenticated, Allow, Hidden, Hidden, Hidden];
    let medication = format!("/api/v1/medications/{medication_id}");
    let appointment = format!("/api/v1/appointments/{appointment_id}");
    let conversation = format!("/api/v1/conversations/{conversation_id}");
    // Participants only: anyone else, administrators included, gets a 404.
    let participant = [Unauthenticated, Allow, Hidden, Hidden, Hidden];
    let chat = [Unauthenticated, Allow, Allow, Allow, Forbidden];
    let payment = format!("/api/v1/payments/{payment_id}");
    let note = format!("/api/v1/secure-notes/{note_id}");
    let table: Vec<(Method, &str, String, [Expect; 5])> = vec![
        (Method::GET, "/health", "/health".into(), public()),
        (
            Method::GET,
            "/api/v1/openapi.json",
            "/api/v1/openapi.json".into(),
            public(),
        ),
        (
            Method::GET,
            "/.well-known/jwks.json",
            "/.well-known/jwks.json".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/signup",
            "/api/v1/auth/signup".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/verify-email",
            "/api/v1/auth/verify-email".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/login",
            "/api/v1/auth/login".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/mfa/challenge",
            "/api/v1/auth/mfa/challenge".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/mfa/send-code",
            "/api/v1/auth/mfa/send-code".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/password/reset-request",
            "/api/v1/auth/password/reset-request".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/password/reset",
            "/api/v1/auth/password/reset".into(),
            public(),
        ),
        (
            Method::POST,
            "/api/v1/auth/logout",
            "/api/v1/auth/logout".into(),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/auth/logout-all",
            "/api/v1/auth/logout-all".into(),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/realtime/ticket",
            "/api/v1/realtime/ticket".into(),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/auth/password/change",
            "/api/v1/auth/password/change".into(),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/auth/mfa/totp/enroll",
            "/api/v1/auth/mfa/totp/enroll".into(),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/auth/mfa/totp/confirm",
            "/api/v1/auth/mfa/totp/confirm".into(),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/auth/mfa/totp/disable",
            "/api/v1/auth/mfa/totp/disable".into(),
            signed_in(),
        ),
        (
            Method::GET,
            "/api/v1/users/me",
            "/api/v1/users/me".into(),
            signed_in(),
        ),
        (
            Method::PATCH,
            "/api/v1/users/me",
            "/api/v1/users/me".into(),
            signed_in(),
        ),
        (
            Method::GET,
            "/api/v1/users/me/profile",
            "/api/v1/users/me/profile".into(),
            signed_in(),
        ),
        (
            Method::PUT,
            "/api/v1/users/me/profile",
            "/api/v1/users/me/profile".into(),
            signed_in(),
        ),
        // Admins pass with a stated reason (sent on every request of this table).
        (
            Method::GET,
            "/api/v1/users/{id}/profile",
            format!("{user}/profile"),
            owner_only_and_admin(),
        ),
        (
            Method::GET,
            "/api/v1/emergency/contacts",
            "/api/v1/emergency/contacts".into(),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/emergency/contacts",
            "/api/v1/emergency/contacts".into(),
            signed_in(),
        ),
        (
            Method::GET,
            "/api/v1/emergency/contacts/{id}",
            contact.clone(),
            owner_only,
        ),
        (
            Method::PUT,
            "/api/v1/emergency/contacts/{id}",
            contact.clone(),
            owner_only,
        ),
        (
            Method::POST,
            "/api/v1/emergency/sos",
            "/api/v1/emergency/sos".into(),
            signed_in(),
        ),
        (
            Method::GET,
            "/api/v1/users",
            "/api/v1/users".into(),
            admin_only(),
        ),
        (
            Method::POST,
            "/api/v1/users",
            "/api/v1/users".into(),
            admin_only(),
        ),
        (
            Method::GET,
            "/api/v1/users/{id}",
            user.clone(),
            admin_only(),
        ),
        (
            Method::POST,
            "/api/v1/users/{id}/disable",
            format!("{user}/disable"),
            admin_only(),
        ),
        (
            Method::POST,
            "/api/v1/users/{id}/enable",
            format!("{user}/enable"),
            // The patient was disabled by the row before: their tokens stop working.
            [
                Unauthenticated,
                Unauthenticated,
                Forbidden,
                Forbidden,
                Allow,
            ],
        ),
        (
            Method::PUT,
            "/api/v1/users/{id}/role",
            format!("{user}/role"),
            admin_only(),
        ),
        (
            Method::POST,
            "/api/v1/care-relationships",
            "/api/v1/care-relationships".into(),
            admin_only(),
        ),
        (
            Method::GET,
            "/api/v1/care-relationships",
            "/api/v1/care-relationships".into(),
            signed_in(),
        ),
        (
            Method::DELETE,
            "/api/v1/care-relationships/{id}",
            rel.clone(),
            [Unauthenticated, Allow, Hidden, Hidden, Allow],
        ),
        (
            Method::GET,
            "/api/v1/audit",
            // Without a filter an admin gets 400: past the policy all the same.
            "/api/v1/audit".into(),
            admin_only(),
        ),
        (
            Method::GET,
            "/api/v1/users/me/access-log",
            "/api/v1/users/me/access-log".into(),
            signed_in(),
        ),
        (
            Method::GET,
            "/api/v1/providers",
            "/api/v1/providers".into(),
            signed_in(),
        ),
        (
            Method::PUT,
            "/api/v1/providers/me/availability",
            "/api/v1/providers/me/availability".into(),
            // Providers only (the stranger reaches the body check: 400).
            [Unauthenticated, Forbidden, Forbidden, Allow, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/providers/{id}/slots",
            format!("/api/v1/providers/{}/slots", carer.id),
            signed_in(),
        ),
        (
            Method::POST,
            "/api/v1/appointments",
            "/api/v1/appointments".into(),
            [Unauthenticated, Allow, Allow, Allow, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/appointments",
            "/api/v1/appointments".into(),
            [Unauthenticated, Allow, Allow, Allow, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/appointments/{id}",
            appointment.clone(),
            // The admin passes the policy and is asked for a reason (400).
            owner_only_and_admin(),
        ),
        (
            Method::PATCH,
            "/api/v1/appointments/{id}",
            appointment.clone(),
            owner_only,
        ),
        // Billing: providers price, patients pay, participants and admins read, the
        // provider or an admin refunds; the webhook is Stripe's (its signature, not a
        // token: 400 without one).
        (
            Method::PUT,
            "/api/v1/providers/me/prices",
            "/api/v1/providers/me/prices".into(),
            [Unauthenticated, Forbidden, Forbidden, Allow, Forbidden],
        ),
        (
            Method::POST,
            "/api/v1/payments",
            "/api/v1/payments".into(),
            [Unauthenticated, Allow, Allow, Forbidden, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/payments/{id}",
            payment.clone(),
            owner_only_and_admin(),
        ),
        (
            Method::GET,
            "/api/v1/appointments/{id}/payments",
            format!("{appointment}/payments"),
            owner_only_and_admin(),
        ),
        (
            Method::POST,
            "/api/v1/payments/{id}/refunds",
            format!("{payment}/refunds"),
            [Unauthenticated, Forbidden, Hidden, Hidden, Allow],
        ),
        (
            Method::GET,
            "/api/v1/payments/{id}/receipt",
            format!("{payment}/receipt"),
            owner_only_and_admin(),
        ),
        (
            Method::GET,
            "/api/v1/billing/transactions",
            "/api/v1/billing/transactions".into(),
            [Unauthenticated, Allow, Allow, Forbidden, Forbidden],
        ),
        (
            Method::POST,
            "/api/v1/webhooks/stripe",
            "/api/v1/webhooks/stripe".into(),
            public(),
        ),
        // Video: the appointment's two participants only (administrators too get a 404);
        // the provider starts and ends the call; Twilio's callbacks carry its signature,
        // not a token (403 without a valid one).
        (
            Method::POST,
            "/api/v1/video-calls",
            "/api/v1/video-calls".into(),
            [Unauthenticated, Allow, Allow, Allow, Forbidden],
        ),
        (
            Method::POST,
            "/api/v1/video-calls/tokens",
            "/api/v1/video-calls/tokens".into(),
            [Unauthenticated, Allow, Allow, Allow, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/video-calls/{id}",
            video_call.clone(),
            participant,
        ),
        (
            Method::POST,
            "/api/v1/video-calls/{id}/start",
            format!("{video_call}/start"),
            [Unauthenticated, Forbidden, Hidden, Hidden, Hidden],
        ),
        (
            Method::POST,
            "/api/v1/video-calls/{id}/end",
            format!("{video_call}/end"),
            [Unauthenticated, Forbidden, Hidden, Hidden, Hidden],
        ),
        (
            Method::POST,
            "/api/v1/video-calls/{id}/consent",
            format!("{video_call}/consent"),
            participant,
        ),
        (
            Method::GET,
            "/api/v1/appointments/{id}/video-calls",
            format!("{appointment}/video-calls"),
            participant,
        ),
        (
            Method::POST,
            "/api/v1/webhooks/twilio/video",
            "/api/v1/webhooks/twilio/video".into(),
            [Forbidden; 5],
        ),
        // Patients add their own, providers for a patient in their care; admins never.
        (
            Method::POST,
            "/api/v1/medications",
            "/api/v1/medications".into(),
            [Unauthenticated, Allow, Allow, Allow, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/medications",
            "/api/v1/medications".into(),
            signed_in(),
        ),
        (
            Method::GET,
            "/api/v1/medications/{id}",
            medication.clone(),
            owner_only_and_admin(),
        ),
        (
            Method::PATCH,
            "/api/v1/medications/{id}",
            medication.clone(),
            owner_only_and_admin(),
        ),
        (
            Method::POST,
            "/api/v1/medications/{id}/doses",
            format!("{medication}/doses"),
            owner_only_and_admin(),
        ),
        (
            Method::GET,
            "/api/v1/medications/{id}/adherence",
            format!("{medication}/adherence"),
            owner_only_and_admin(),
        ),
        (
            Method::POST,
            "/api/v1/medications/{id}/discontinue",
            format!("{medication}/discontinue"),
            owner_only_and_admin(),
        ),
        (
            Method::POST,
            "/api/v1/conversations",
            "/api/v1/conversations".into(),
            chat,
        ),
        (
            Method::GET,
            "/api/v1/conversations",
            "/api/v1/conversations".into(),
            chat,
        ),
        (
            Method::GET,
            "/api/v1/conversations/{id}",
            conversation.clone(),
            participant,
        ),
        (
            Method::GET,
            "/api/v1/conversations/{id}/messages",
            format!("{conversation}/messages"),
            participant,
        ),
        (
            Method::POST,
            "/api/v1/conversations/{id}/messages",
            format!("{conversation}/messages"),
            participant,
        ),
        (
            Method::POST,
            "/api/v1/conversations/{id}/read",
            format!("{conversation}/read"),
            participant,
        ),
        (Method::GET, "/api/v1/sync", "/api/v1/sync".into(), chat),
        // Secure notes: providers in the patient's care write and read them (a provider
        // without the relationship and admins: 404), the patient reads those shared with
        // them and changes none (403); the author and admins read a note's trail.
        (
            Method::POST,
            "/api/v1/secure-notes",
            "/api/v1/secure-notes".into(),
            [Unauthenticated, Forbidden, Forbidden, Allow, Forbidden],
        ),
        (
            Method::POST,
            "/api/v1/secure-notes/{id}/access",
            format!("{note}/access"),
            [Unauthenticated, Allow, Hidden, Hidden, Hidden],
        ),
        (
            Method::PUT,
            "/api/v1/secure-notes/{id}",
            note.clone(),
            [Unauthenticated, Forbidden, Hidden, Hidden, Hidden],
        ),
        (
            Method::PUT,
            "/api/v1/secure-notes/{id}/share",
            format!("{note}/share"),
            [Unauthenticated, Forbidden, Hidden, Hidden, Hidden],
        ),
        (
            Method::PUT,
            "/api/v1/secure-notes/{id}/archive",
            format!("{note}/archive"),
            [Unauthenticated, Forbidden, Hidden, Hidden, Hidden],
        ),
        (
            Method::GET,
            "/api/v1/secure-notes/{id}/versions",
            format!("{note}/versions"),
            [Unauthenticated, Forbidden, Hidden, Hidden, Hidden],
        ),
        (
            Method::POST,
            "/api/v1/secure-notes/{id}/versions/{version}/access",
            format!("{note}/versions/1/access"),
            [Unauthenticated, Forbidden, Hidden, Hidden, Hidden],
        ),
        (
            Method::POST,
            "/api/v1/appointments/{id}/secure-notes/access",
            format!("{appointment}/secure-notes/access"),
            [Unauthenticated, Allow, Hidden, Hidden, Hidden],
        ),
        (
            Method::GET,
            "/api/v1/secure-notes/{id}/audit-logs",
            format!("{note}/audit-logs"),
            [Unauthenticated, Hidden, Hidden, Hidden, Allow],
        ),
        // Documents: patients upload their own, providers for a patient in their care;
        // a document is its owner's (and, once shared, a provider's); admins never.
        (
            Method::POST,
            "/api/v1/documents",
            "/api/v1/documents".into(),
            [Unauthenticated, Allow, Allow, Allow, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/documents",
            "/api/v1/documents".into(),
            [Unauthenticated, Allow, Allow, Allow, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/documents/{id}",
            document.clone(),
            owner_only,
        ),
        (
            Method::GET,
            "/api/v1/documents/{id}/content",
            format!("{document}/content"),
            owner_only,
        ),
        (
            Method::POST,
            "/api/v1/documents/{id}/share",
            format!("{document}/share"),
            owner_only,
        ),
        (
            Method::DELETE,
            "/api/v1/documents/{id}",
            document.clone(),
            owner_only,
        ),
        // Observations: patients push their own; staff read with `patient_id` (none
        // here: a 400); providers set thresholds.
        (
            Method::POST,
            "/api/v1/observations/batch",
            "/api/v1/observations/batch".into(),
            [Unauthenticated, Allow, Allow, Forbidden, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/observations",
            "/api/v1/observations".into(),
            signed_in(),
        ),
        (
            Method::PUT,
            "/api/v1/observations/thresholds",
            "/api/v1/observations/thresholds".into(),
            [Unauthenticated, Forbidden, Forbidden, Allow, Forbidden],
        ),
        // Device connections: patients connect; the provider's redirect carries a state,
        // not a token (400 without one); each caller lists and deletes only their own
        // (nobody here has a connection: 404).
        (
            Method::POST,
            "/api/v1/devices/connect/{provider}",
            "/api/v1/devices/connect/google_health".into(),
            [Unauthenticated, Allow, Allow, Forbidden, Forbidden],
        ),
        (
            Method::GET,
            "/api/v1/devices/{provider}/callback",
            "/api/v1/devices/google_health/callback".into(),
            public(),
        ),
        (
            Method::GET,
            "/api/v1/devices",
            "/api/v1/devices".into(),
            signed_in(),
        ),
        (
            Method::DELETE,
            "/api/v1/devices/{provider}",
            "/api/v1/devices/google_health".into(),
            [Unauthenticated, Hidden, Hidden, Hidden, Hidden],
        ),
        // Google's webhook carries the subscriber's secret, not a token: a bearer token
        // is not the secret (401 for everyone).
        (
            Method::POST,
            "/api/v1/webhooks/google-health",
            "/api/v1/webhooks/google-health".into(),
            [Unauthenticated; 5],
        ),
        // Last: the owner deletes the contact.
        (
            Method::DELETE,
            "/api/v1/emergency/contacts/{id}",
            contact.clone(),
            owner_only,
        ),
    ];

    // The table covers every route every function serves, and nothing else.
    let served: BTreeSet<(String, String)> = http_functions()
        .iter()
        .flat_map(|m| m.router.table())
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    let listed: BTreeSet<(String, String)> = table
        .iter()
        .map(|(method, pattern, _, _)| (method.to_string(), pattern.to_string()))
        .collect();
    assert_eq!(served, listed, "add the new routes to this table");

    let mounts = http_functions();
    let mut failures = Vec::new();
    for (method, pattern, path, expected) in &table {
        for (actor, (who, want)) in ACTORS.iter().zip(actors.iter().zip(expected)) {
            let mut req = ApiRequest::new(method.clone(), path);
            req.source_ip = Some(format!("192.0.2.{}", failures.len() % 200 + 1));
            if let Some((id, role, amr)) = who {
                // A session that begins after anything the previous request ended.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                let (token, _) = app
                    .tokens
                    .issue(&app, id, *role, &app.new_id(), amr)
                    .await
                    .unwrap();
                req.headers
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            let mount = mounts
                .iter()
                .find(|m| m.router.resolve(method, path).is_some())
                .unwrap_or_else(|| panic!("no function serves {method} {path}"));
            let status = mount.dispatch(&app, req).await.status.as_u16();
            let ok = match want {
                Allow => !matches!(status, 401 | 403 | 404),
                Unauthenticated => status == 401,
                Forbidden => status == 403,
                Hidden => status == 404,
            };
            if !ok {
                failures.push(format!(
                    "{method} {pattern} as {actor}: got {status}, want {want:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization table:\n{}",
        failures.join("\n")
    );
}
