//! Video consultations through the video and twilio-webhook routers on a throw-away local
//! app whose video port is the offline fake Twilio (manual clock from Monday 2026-11-23
//! 09:00 UTC; the appointment is Tuesday 10:00–10:30): one session per appointment, tokens
//! only for the two participants and only inside the window, in Twilio's format (checked
//! with the official `twilio` library and PyJWT), start and end through the appointment's
//! own transitions, a dropped call's new room, recording only with both consents, signed
//! callbacks (forged, replayed, out of order, signed by `RequestValidator`), an outage.

use http::Method;
use serde_json::{json, Value};
use shared::adapters::local::Callback;
use shared::auth::Role;
use shared::clock::Clock;
use shared::http::ApiRequest;
use shared::testing::{account, dispatch, request, token, with_ports, TestApp, OUTAGE};
use std::sync::Arc;

const TUESDAY_10: &str = "2026-11-24T10:00:00Z";

struct World {
    t: TestApp,
    video: shared::http::Router,
    webhook: shared::http::Router,
    appointments: shared::http::Router,
    provider: String,
    provider_token: String,
    patient: String,
    patient_token: String,
    stranger_token: String,
    other_provider_token: String,
    admin_token: String,
    appointment: String,
    /// (user, role, amr) of each token, re-issued when the clock moves (tokens live 15
    /// minutes, staff sessions 30 idle minutes).
    users: Vec<(String, Role, &'static [&'static str])>,
}

async fn world() -> World {
    let t = TestApp::new();
    let provider = account(&t.app, "dr@example.com", "Dr Gray", Role::Provider).await;
    let provider_token = token(
        &t.app,
        &provider,
        Role::Provider,
        "dr",
        &["pwd", "mfa", "otp"],
    )
    .await;
    let patient = account(&t.app, "pat@example.com", "Pat Doe", Role::Patient).await;
    let patient_token = token(&t.app, &patient, Role::Patient, "pat", &["pwd"]).await;
    let stranger = account(&t.app, "other@example.com", "Other", Role::Patient).await;
    let stranger_token = token(&t.app, &stranger, Role::Patient, "other", &["pwd"]).await;
    let other_provider = account(&t.app, "dr2@example.com", "Dr Else", Role::Provider).await;
    let other_provider_token = token(
        &t.app,
        &other_provider,
        Role::Provider,
        "dr2",
        &["pwd", "mfa", "otp"],
    )
    .await;
    let admin = account(&t.app, "admin@example.com", "Admin", Role::Admin).await;
    let admin_token = token(&t.app, &admin, Role::Admin, "adm", &["pwd", "mfa", "otp"]).await;
    let appointments = docare_appointments::router();
    let weekly: Vec<Value> = ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .map(|d| json!({"day": d, "start": "09:00", "end": "17:00"}))
        .collect();
    let req = request(
        Method::PUT,
        "/api/v1/providers/me/availability",
        Some(&provider_token),
        Some(
            json!({"time_zone": "UTC", "slot_minutes": 30, "weekly": weekly,
            "consultation_types": ["video", "in_person"]}),
        ),
    );
    let (status, body) = dispatch(&appointments, &t.app, req).await;
    assert_eq!(status, 200, "{body}");
    let req = request(
        Method::POST,
        "/api/v1/appointments",
        Some(&patient_token),
        Some(json!({"provider_id": provider, "start": TUESDAY_10, "consultation_type": "video"})),
    );
    let (status, body) = dispatch(&appointments, &t.app, req).await;
    assert_eq!(status, 201, "{body}");
    let appointment = body["id"].as_str().unwrap().to_string();
    let req = request(
        Method::PATCH,
        &format!("/api/v1/appointments/{appointment}"),
        Some(&provider_token),
        Some(json!({"status": "confirmed"})),
    );
    let (status, body) = dispatch(&appointments, &t.app, req).await;
    assert_eq!(status, 200, "{body}");
    World {
        t,
        video: docare_video::router(),
        webhook: docare_twilio_webhook::router(),
        appointments,
        provider: provider.clone(),
        provider_token,
        patient: patient.clone(),
        patient_token,
        stranger_token,
        other_provider_token,
        admin_token,
        appointment,
        users: vec![
            (provider, Role::Provider, &["pwd", "mfa", "otp"]),
            (patient, Role::Patient, &["pwd"]),
            (stranger, Role::Patient, &["pwd"]),
            (other_provider, Role::Provider, &["pwd", "mfa", "otp"]),
            (admin, Role::Admin, &["pwd", "mfa", "otp"]),
        ],
    }
}

impl World {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        dispatch(
            &self.video,
            &self.t.app,
            request(method, path, Some(token), body),
        )
        .await
    }

    async fn create(&self, recording: bool) -> Value {
        let (status, body) = self
            .call(
                &self.provider_token,
                Method::POST,
                "/api/v1/video-calls",
                Some(json!({"appointment_id": self.appointment, "recording_enabled": recording})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn token(&self, who: &str, session: &str) -> (u16, Value) {
        self.call(
            who,
            Method::POST,
            "/api/v1/video-calls/tokens",
            Some(json!({"session_id": session})),
        )
        .await
    }

    async fn session(&self, id: &str) -> Value {
        let (status, body) = self
            .call(
                &self.patient_token,
                Method::GET,
                &format!("/api/v1/video-calls/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn appointment_status(&self) -> String {
        let req = request(
            Method::GET,
            &format!("/api/v1/appointments/{}", self.appointment),
            Some(&self.patient_token),
            None,
        );
        let (status, body) = dispatch(&self.appointments, &self.t.app, req).await;
        assert_eq!(status, 200, "{body}");
        body["status"].as_str().unwrap().to_string()
    }

    /// Moves the clock to `at` (RFC 3339, not earlier than now) and signs everyone in
    /// again.
    async fn at(&mut self, at: &str) {
        let target = chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&chrono::Utc);
        self.t.clock.advance(target - self.t.clock.now());
        let mut fresh = Vec::new();
        for (user, role, amr) in &self.users {
            fresh.push(token(&self.t.app, user, *role, "again", amr).await);
        }
        let mut fresh = fresh.into_iter();
        for slot in [
            &mut self.provider_token,
            &mut self.patient_token,
            &mut self.stranger_token,
            &mut self.other_provider_token,
            &mut self.admin_token,
        ] {
            *slot = fresh.next().unwrap();
        }
    }

    async fn deliver_raw(
        &self,
        body: &str,
        signature: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = ApiRequest::new(Method::POST, shared::video::CALLBACK_PATH);
        req.headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        if let Some(signature) = signature {
            req.headers
                .insert("x-twilio-signature", signature.parse().unwrap());
        }
        if let Some(token) = token {
            req.headers
                .insert("i-twilio-idempotency-token", token.parse().unwrap());
        }
        req.body = body.to_string().into_bytes().into();
        dispatch(&self.webhook, &self.t.app, req).await
    }

    async fn deliver(&self, callback: &Callback) -> (u16, Value) {
        self.deliver_raw(
            &callback.body,
            Some(&callback.signature),
            Some(&callback.idempotency_token),
        )
        .await
    }

    async fn secret(&self, name: fn(&str) -> String) -> String {
        self.t
            .app
            .secrets
            .get(&name("local"))
            .await
            .unwrap()
            .to_string()
    }

    fn room_sid(&self, room_name: &str) -> String {
        let callbacks = self.t.twilio.callbacks();
        let created = callbacks
            .iter()
            .find(|c| c.event == "room-created" && param(c, "RoomName") == room_name)
            .unwrap_or_else(|| panic!("no room {room_name}"));
        param(created, "RoomSid")
    }
}

fn param(callback: &Callback, name: &str) -> String {
    callback
        .params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn rooms_created(w: &World) -> usize {
    w.t.twilio
        .received()
        .iter()
        .filter(|(what, _)| what == "POST /v1/Rooms")
        .count()
}

#[tokio::test]
async fn one_session_per_appointment_and_only_its_participants_see_it() {
    let mut w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "scheduled");
    assert_eq!(created["rooms"], 0);
    // A second one, by either participant, is a conflict; the list still holds one.
    for who in [&w.provider_token, &w.patient_token] {
        let (status, body) = w
            .call(
                who,
                Method::POST,
                "/api/v1/video-calls",
                Some(json!({"appointment_id": w.appointment})),
            )
            .await;
        assert_eq!(status, 409, "{body}");
    }
    let list = format!("/api/v1/appointments/{}/video-calls", w.appointment);
    let (status, body) = w.call(&w.patient_token, Method::GET, &list, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["items"][0]["id"], id);
    // Anyone else: 404 for the session, its list, and no token (admins included).
    w.at("2026-11-24T09:50:00Z").await;
    for who in [&w.stranger_token, &w.other_provider_token, &w.admin_token] {
        let (status, _) = w
            .call(who, Method::GET, &format!("/api/v1/video-calls/{id}"), None)
            .await;
        assert_eq!(status, 404);
        let (status, _) = w.call(who, Method::GET, &list, None).await;
        assert_eq!(status, 404);
    }
    for who in [&w.stranger_token, &w.other_provider_token] {
        let (status, body) = w.token(who, id).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.get("access_token").is_none());
    }
    let (status, _) = w.token(&w.admin_token, id).await;
    assert_eq!(status, 403);
    assert_eq!(rooms_created(&w), 0, "no room for anyone else");
    // Bad input is a 400 that changes nothing; an unknown id a 404.
    let (status, _) = w
        .call(
            &w.patient_token,
            Method::POST,
            "/api/v1/video-calls/tokens",
            Some(json!({"session": id})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = w
        .token(&w.patient_token, "01JD5Z6Q8W3M0V7K2R9T4Y6B1C")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn tokens_only_inside_the_window_and_in_twilios_format() {
    let mut w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    // Monday, and one second before the window opens (09:45): 422, no room, no token.
    for at in ["2026-11-23T09:00:00Z", "2026-11-24T09:44:59Z"] {
        w.at(at).await;
        let (status, body) = w.token(&w.patient_token, id).await;
        assert_eq!(status, 422, "{at}: {body}");
    }
    assert_eq!(rooms_created(&w), 0);
    w.at("2026-11-24T09:45:00Z").await;
    let (status, issued) = w.token(&w.patient_token, id).await;
    assert_eq!(status, 200, "{issued}");
    let room = issued["room_name"].as_str().unwrap();
    assert_eq!(room, format!("{id}-1"));
    assert_eq!(issued["expires_at"], "2026-11-24T10:45:00Z");
    let access = issued["access_token"].as_str().unwrap();
    // Verified with the API key secret: Twilio's header and claims.
    let secret = w.secret(shared::video::api_key_secret_name).await;
    let key_sid = w.secret(shared::video::api_key_sid_name).await;
    let account_sid = w.secret(shared::video::account_sid_name).await;
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.cty.as_deref(), Some("twilio-fpa;v=1"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<Value>(
        access,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .unwrap();
    let c = data.claims;
    assert_eq!(c["iss"], key_sid.as_str());
    assert_eq!(c["sub"], account_sid.as_str());
    assert_eq!(c["jti"], format!("{key_sid}-{}", c["iat"]));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(c["grants"]["video"]["room"], room);
    // The identity is opaque: not the user id, the e-mail or the name.
    let identity = c["grants"]["identity"].as_str().unwrap();
    for personal in [w.patient.as_str(), "pat@example.com", "Pat Doe"] {
        assert!(!identity.contains(personal), "{identity}");
    }
    // The provider joins the same room under another identity; the last second of the
    // appointment still opens it, its end does not.
    w.at("2026-11-24T10:29:59Z").await;
    let (status, other) = w.token(&w.provider_token, id).await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(other["room_name"], room);
    assert_ne!(
        claims(other["access_token"].as_str().unwrap())["grants"]["identity"],
        identity
    );
    assert_eq!(rooms_created(&w), 1, "one room for both");
    w.at("2026-11-24T10:30:00Z").await;
    let (status, _) = w.token(&w.patient_token, id).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_token_and_the_signatures_pass_the_official_twilio_library() {
    let python = std::env::var("DOCARE_TEST_PYTHON")
        .expect("DOCARE_TEST_PYTHON (scripts/test sets it; the venv has the twilio library)");
    let script = shared::testing::repo_root().join("tests/python/twilio_check.py");
    let run = |args: Vec<String>, stdin: String| {
        use std::io::Write;
        let mut child = std::process::Command::new(&python)
            .arg(&script)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().expect("python ends")
    };
    let mut w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    w.at("2026-11-24T09:55:00Z").await;
    let (status, issued) = w.token(&w.patient_token, id).await;
    assert_eq!(status, 200, "{issued}");
    let access = issued["access_token"].as_str().unwrap().to_string();
    let room = issued["room_name"].as_str().unwrap().to_string();
    let identity = claims(&access)["grants"]["identity"]
        .as_str()
        .unwrap()
        .to_string();
    let checked = run(
        vec![
            "token".into(),
            w.secret(shared::video::account_sid_name).await,
            w.secret(shared::video::api_key_sid_name).await,
            w.secret(shared::video::api_key_secret_name).await,
            identity,
            room.clone(),
        ],
        access,
    );
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // The fake's callbacks are Twilio's: RequestValidator accepts them and refuses a
    // changed parameter.
    let auth = w.secret(shared::video::auth_token_name).await;
    let created_cb =
        w.t.twilio
            .callbacks()
            .into_iter()
            .find(|c| c.event == "room-created")
            .unwrap();
    let url = created_cb.url.clone();
    let validated = run(
        vec![
            "validate".into(),
            url.clone(),
            auth.clone(),
            created_cb.signature.clone(),
        ],
        created_cb.body.clone(),
    );
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    let tampered = created_cb.body.replace("room-created", "room-ended");
    let refused = run(
        vec![
            "validate".into(),
            url.clone(),
            auth.clone(),
            created_cb.signature.clone(),
        ],
        tampered,
    );
    assert!(!refused.status.success());

    // A callback signed by RequestValidator (not by our code), for the URL without its
    // port, is accepted, once.
    let no_port = url.replace(":1/", "/");
    assert_ne!(no_port, url);
    let sid = w.room_sid(&room);
    let body = format!(
        "AccountSid={}&RoomName={room}&RoomSid={sid}&RoomStatus=in-progress&RoomType=group&StatusCallbackEvent=participant-connected&Timestamp=2026-11-24T09%3A55%3A01.000Z&SequenceNumber=5&ParticipantSid=PA0123456789abcdef0123456789abcdef&ParticipantIdentity=someone&ParticipantStatus=connected",
        w.secret(shared::video::account_sid_name).await
    );
    let signed = run(vec!["sign".into(), no_port, auth.clone()], body.clone());
    assert!(signed.status.success());
    let signature = String::from_utf8(signed.stdout).unwrap().trim().to_string();
    let (status, answer) = w.deliver_raw(&body, Some(&signature), Some("py-1")).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (status, answer) = w.deliver_raw(&body, Some(&signature), Some("py-1")).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
}

#[tokio::test]
async fn callbacks_forged_replayed_and_out_of_order_change_nothing_more() {
    let mut w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    w.at("2026-11-24T09:58:00Z").await;
    let (_, issued) = w.token(&w.patient_token, id).await;
    let room = issued["room_name"].as_str().unwrap().to_string();
    let identity = claims(issued["access_token"].as_str().unwrap())["grants"]["identity"]
        .as_str()
        .unwrap()
        .to_string();
    let sid = w.room_sid(&room);
    let joined = w.t.twilio.connect(&sid, &identity).unwrap();
    w.t.clock.advance(chrono::Duration::seconds(90));
    let left = w.t.twilio.disconnect(&sid, &identity).unwrap();

    // Forged: another auth token, the Host's URL, no signature, a changed parameter.
    let auth = w.secret(shared::video::auth_token_name).await;
    let wrong_key = shared::video::signature("not-the-auth-token", &joined.url, &joined.params);
    let wrong_url = shared::video::signature(
        &auth,
        "https://attacker.example/api/v1/webhooks/twilio/video",
        &joined.params,
    );
    let changed = joined.body.replace("connected", "disconnected");
    for (body, signature) in [
        (joined.body.as_str(), Some(wrong_key.as_str())),
        (joined.body.as_str(), Some(wrong_url.as_str())),
        (joined.body.as_str(), None),
        (changed.as_str(), Some(joined.signature.as_str())),
    ] {
        let (status, answer) = w.deliver_raw(body, signature, Some("forged-1")).await;
        assert_eq!(status, 403, "{answer}");
    }
    assert_eq!(
        w.session(id).await["participants"],
        json!([]),
        "nothing recorded"
    );

    // The join, once; its replay a duplicate.
    let (status, answer) = w.deliver(&joined).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (status, answer) = w.deliver(&joined).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    let stays = w.session(id).await["participants"].clone();
    assert_eq!(stays.as_array().unwrap().len(), 1, "{stays}");
    assert_eq!(stays[0]["side"], "patient");
    assert_eq!(stays[0]["joined_at"], "2026-11-24T09:58:00Z");
    assert_eq!(stays[0]["left_at"], Value::Null);

    // The leave, without the idempotency header: the signed parameters name it, once.
    let (status, answer) = w.deliver_raw(&left.body, Some(&left.signature), None).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (status, answer) = w.deliver_raw(&left.body, Some(&left.signature), None).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    let after_leave = w.session(id).await;
    assert_eq!(
        after_leave["participants"][0]["left_at"],
        "2026-11-24T09:59:30Z"
    );
    assert_eq!(after_leave["participants"][0]["duration_secs"], 90);

    // Older than the room's state: a second join (sequence 1 < 2) is ignored, nothing changes.
    let mut older = joined.clone();
    older.idempotency_token = "an-older-one".into();
    let (status, answer) = w.deliver(&older).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );
    let unchanged = w.session(id).await;
    assert_eq!(unchanged["participants"], after_leave["participants"]);
    assert_eq!(unchanged["updated_at"], after_leave["updated_at"]);
    // And the room's creation, delivered last, does not revive anything.
    let created_cb =
        w.t.twilio
            .callbacks()
            .into_iter()
            .find(|c| c.event == "room-created")
            .unwrap();
    let (status, answer) = w.deliver(&created_cb).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );
}

#[tokio::test]
async fn start_moves_the_appointment_in_progress_and_end_completes_it() {
    let mut w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    let start = format!("/api/v1/video-calls/{id}/start");
    let end = format!("/api/v1/video-calls/{id}/end");
    // Before the window: refused, nothing changed.
    w.at("2026-11-24T09:30:00Z").await;
    let (status, _) = w.call(&w.provider_token, Method::POST, &start, None).await;
    assert_eq!(status, 422);
    assert_eq!(w.appointment_status().await, "confirmed");
    w.at("2026-11-24T09:50:00Z").await;
    // The patient may not start the call (in_progress is the provider's transition).
    let (status, _) = w.call(&w.patient_token, Method::POST, &start, None).await;
    assert_eq!(status, 403);
    let (status, started) = w.call(&w.provider_token, Method::POST, &start, None).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "in_progress");
    assert_eq!(started["room_status"], "in-progress");
    assert_eq!(started["started_at"], "2026-11-24T09:50:00Z");
    assert_eq!(w.appointment_status().await, "in_progress");
    // Starting again keeps the same room.
    let (status, again) = w.call(&w.provider_token, Method::POST, &start, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["room_name"], started["room_name"]);
    assert_eq!(rooms_created(&w), 1);

    let (status, _) = w.call(&w.patient_token, Method::POST, &end, None).await;
    assert_eq!(status, 403);
    w.at("2026-11-24T10:20:00Z").await;
    let (status, ended) = w.call(&w.provider_token, Method::POST, &end, None).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["ended_at"], "2026-11-24T10:20:00Z");
    assert_eq!(w.appointment_status().await, "completed");
    let sid = w.room_sid(started["room_name"].as_str().unwrap());
    assert_eq!(
        w.t.twilio.room(&sid).unwrap().0.status,
        "completed",
        "Twilio ended the room"
    );
    // The fake told the webhook route: room-ended, signed.
    let ended_cb =
        w.t.twilio
            .callbacks()
            .into_iter()
            .find(|c| c.event == "room-ended")
            .unwrap();
    let (status, answer) = w.deliver(&ended_cb).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (status, _) = w.call(&w.provider_token, Method::POST, &end, None).await;
    assert_eq!(status, 409);
    let (status, _) = w.token(&w.patient_token, id).await;
    assert_eq!(status, 409, "no tokens once ended");
}

#[tokio::test]
async fn a_dropped_call_gets_a_new_room_in_the_same_session() {
    let mut w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    w.at("2026-11-24T09:50:00Z").await;
    let (_, first) = w.token(&w.provider_token, id).await;
    let room1 = first["room_name"].as_str().unwrap().to_string();
    let sid1 = w.room_sid(&room1);
    // Twilio ends the room (everyone dropped; the empty-room timeout): its room-ended
    // arrives, and the next token opens room 2 of the same session.
    let ended = w.t.twilio.end_room(&sid1);
    for callback in &ended {
        let (status, answer) = w.deliver(callback).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(w.session(id).await["room_status"], "completed");
    let (status, second) = w.token(&w.patient_token, id).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["room_name"], format!("{id}-2"));
    // Even when the room-ended callback is lost, Twilio's own answer says the room is gone.
    let sid2 = w.room_sid(&format!("{id}-2"));
    w.t.twilio.end_room(&sid2);
    let (status, third) = w.token(&w.patient_token, id).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(third["room_name"], format!("{id}-3"));
    let session = w.session(id).await;
    assert_eq!(session["rooms"], 3);
    assert_eq!(session["id"], id, "one session throughout");
}

#[tokio::test]
async fn recording_happens_only_while_both_participants_consent() {
    let mut w = world().await;
    let created = w.create(true).await;
    let id = created["id"].as_str().unwrap();
    let consent = format!("/api/v1/video-calls/{id}/consent");
    w.at("2026-11-24T09:50:00Z").await;
    let (_, issued) = w.token(&w.patient_token, id).await;
    let sid = w.room_sid(issued["room_name"].as_str().unwrap());
    let recording = |w: &World| w.t.twilio.room(&sid).unwrap().1;
    assert!(!recording(&w), "no consent yet");
    let (status, body) = w
        .call(
            &w.patient_token,
            Method::POST,
            &consent,
            Some(json!({"recording": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["consent"], json!({"patient": true, "provider": null}));
    assert_eq!(body["recording_active"], false);
    assert!(!recording(&w), "one consent is not enough");
    let (status, body) = w
        .call(
            &w.provider_token,
            Method::POST,
            &consent,
            Some(json!({"recording": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recording_active"], true);
    assert!(recording(&w), "both consented");
    // Twilio down: the withdrawal is a 503 and nothing is stored (the client retries).
    w.t.twilio.set_down(true);
    let (status, _) = w
        .call(
            &w.patient_token,
            Method::POST,
            &consent,
            Some(json!({"recording": false})),
        )
        .await;
    assert_eq!(status, 503);
    w.t.twilio.set_down(false);
    assert_eq!(w.session(id).await["consent"]["patient"], true);
    let (status, body) = w
        .call(
            &w.patient_token,
            Method::POST,
            &consent,
            Some(json!({"recording": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recording_active"], false);
    assert!(!recording(&w), "a withdrawal stops it");
    // Outsiders cannot consent; a session without recording refuses consent.
    let (status, _) = w
        .call(
            &w.stranger_token,
            Method::POST,
            &consent,
            Some(json!({"recording": true})),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn consent_to_a_session_without_recording_is_refused() {
    let w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = w
        .call(
            &w.patient_token,
            Method::POST,
            &format!("/api/v1/video-calls/{id}/consent"),
            Some(json!({"recording": true})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(w.session(id).await["consent"]["patient"], Value::Null);
}

#[tokio::test]
async fn twilio_down_is_a_503_and_nothing_changes() {
    let mut w = world().await;
    let created = w.create(false).await;
    let id = created["id"].as_str().unwrap();
    w.at("2026-11-24T09:50:00Z").await;
    let down = with_ports(&w.t.app, |p| p.video = Arc::new(OUTAGE));
    let (status, _) = dispatch(
        &w.video,
        &down,
        request(
            Method::POST,
            "/api/v1/video-calls/tokens",
            Some(&w.patient_token),
            Some(json!({"session_id": id})),
        ),
    )
    .await;
    assert_eq!(status, 503);
    let (status, _) = dispatch(
        &w.video,
        &down,
        request(
            Method::POST,
            &format!("/api/v1/video-calls/{id}/start"),
            Some(&w.provider_token),
            None,
        ),
    )
    .await;
    assert_eq!(status, 503);
    let session = w.session(id).await;
    assert_eq!(session["rooms"], 0);
    assert_eq!(session["status"], "scheduled");
    assert_eq!(w.appointment_status().await, "confirmed");
}

#[tokio::test]
async fn an_in_person_appointment_gets_no_video_session() {
    let w = world().await;
    let req = request(
        Method::POST,
        "/api/v1/appointments",
        Some(&w.patient_token),
        Some(
            json!({"provider_id": w.provider, "start": "2026-11-25T10:00:00Z", "consultation_type": "in_person"}),
        ),
    );
    let (status, body) = dispatch(&w.appointments, &w.t.app, req).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = w
        .call(
            &w.patient_token,
            Method::POST,
            "/api/v1/video-calls",
            Some(json!({"appointment_id": body["id"]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}
