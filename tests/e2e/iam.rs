//! Least privilege, proven: every access a function makes is allowed by that function's
//! IAM role in `template.yaml`, conditions included, and every function of the template
//! is seen doing something.
//!
//! How: the recording wrapper (`shared::ports::recording`) notes every port call as its
//! IAM action, resource and scope (partition-key prefix, object prefix, KMS context
//! purpose), attributed to the function whose handler made it (`as_function`: the local
//! stack's gateways, pollers and schedules, and `HttpMount::dispatch`). The [`tour`]
//! runs, once per process, the scenarios below (every route of every REST function as
//! each actor, every sample event, the WebSocket and worker flows over a real local
//! stack, every schedule once), then [`check`] evaluates each observed access — and the
//! accesses the platform makes with the function's role (logs, traces, the encrypted
//! environment, the SQS event source, the KMS calls DynamoDB and SQS make on the
//! caller's behalf) — against the role's statements: `template.yaml` parsed, `!Ref`,
//! `!Sub`, `!GetAtt`, `!Select`, `!Split` and `!Join` resolved, `Action`, `Resource` and
//! `Condition` (`dynamodb:LeadingKeys`, `kms:EncryptionContext:*`, `kms:ViaService`, …)
//! evaluated as IAM does (explicit deny wins, `ForAllValues` / `ForAnyValue`,
//! `IfExists`, negated operators).
//!
//! Adding a function: its routes are driven by `audit_events.rs` and `identity.rs`
//! (both already fail on a route they do not cover), its samples by `events.rs`; a
//! worker or schedule comes through `mounts.rs` (a schedule names its function with
//! `.of("<name>")`). A new configuration variable naming a resource gets a line in
//! [`config_resources`]. Nothing else: a function in the template that the tour never
//! sees fails the check.

use docare_local::mounts;
use serde_yaml::{Mapping, Value};
use shared::adapters::links;
use shared::config::{self, Config};
use shared::ports::recording::{self, Access, Observed};
use shared::testing::repo_root;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const STAGE: &str = "dev";
const MAIL_FROM: &str = "no-reply@example.com";

// ---------------------------------------------------------------------------------
// The tour
// ---------------------------------------------------------------------------------

/// The scenarios the tour runs (each is a test of its own too; here its accesses are
/// what matters). Each sets its function through the mounts or the local stack.
const SCENARIOS: &[(&str, fn())] = &[
    (
        "audit_events: every route as every actor",
        super::audit_events::every_route_writes_the_audit_events_a_compliance_officer_expects_and_no_phi,
    ),
    (
        "identity: the authorization table",
        super::identity::every_route_allows_and_denies_as_the_policy_says,
    ),
    ("events: health", super::events::health_samples),
    ("events: realtime", super::events::realtime_samples),
    ("events: notify", super::events::notify_samples),
    ("events: auth", super::events::auth_samples),
    ("events: users", super::events::users_samples),
    ("events: emergency", super::events::emergency_samples),
    ("events: audit", super::events::audit_samples),
    ("events: medications", super::events::medications_samples),
    ("events: devices", super::events::devices_samples),
    ("events: device-sync", super::events::device_sync_samples),
    ("events: messages", super::events::messages_samples),
    ("events: billing", super::events::billing_samples),
    ("events: notes", super::events::notes_samples),
    ("events: stripe-webhook", super::events::stripe_webhook_samples),
    ("events: video", super::events::video_samples),
    ("events: twilio-webhook", super::events::twilio_webhook_samples),
    ("events: reminders", super::events::reminder_scheduler_sample),
    ("events: remind", super::events::remind_samples),
    ("events: documents", super::events::documents_samples),
    ("events: scanner", super::events::scanner_samples),
    (
        "documents: a PDF and the EICAR file over HTTP, scanned by the worker",
        super::documents::a_pdf_and_the_eicar_file_through_the_local_stack_over_http,
    ),
    (
        "reminders: a dose reminder over HTTP and WebSocket",
        super::reminders::a_dose_reminder_arrives_once_at_eight_local_across_spring_forward_in_new_york,
    ),
    (
        "reminders: Berlin and a discontinued medication",
        super::reminders::berlin_doses_on_fall_back_day_and_a_discontinued_medication_stops_reminding,
    ),
    (
        "reminders: appointment reminders, a move and a duplicate",
        super::reminders::an_appointment_reminds_24_hours_and_1_hour_before_across_spring_forward_in_new_york_and_a_move_follows,
    ),
    (
        "gateway: health over HTTP",
        super::gateway::health_answers_200_with_every_check,
    ),
    (
        "websocket: ping, push, disconnect",
        super::websocket::ping_pong_push_and_disconnect,
    ),
    (
        "websocket: the server closes a connection",
        super::websocket::the_server_can_close_a_connection,
    ),
    (
        "websocket: a refused handshake",
        super::websocket::a_handshake_without_a_valid_token_is_refused,
    ),
    (
        "workers: a notification through the stack",
        super::workers::a_queued_notification_reaches_the_outbox_through_the_running_stack,
    ),
    (
        "emergency: SOS to contacts and the care team",
        super::emergency::an_sos_reaches_contacts_by_outbox_and_the_care_team_by_websocket,
    ),
    (
        "messaging: two people chat over WebSockets, sync after a reconnect",
        super::messaging::two_people_chat_over_websockets_and_a_reconnecting_client_misses_nothing,
    ),
    ("iam: paths the others do not take", paths_the_other_scenarios_miss),
];

/// Paths whose rights the template grants but no other scenario takes: a sign-in code
/// by SMS (auth reads the profile's phone), a push that finds a provider's connection
/// gone (emergency removes it), the audit archive written by audit-watch (a stream
/// batch), and the trail queried by actor (the actor index).
fn paths_the_other_scenarios_miss() {
    use http::Method;
    use serde_json::json;
    use shared::auth::{care, Role};
    use shared::testing::request;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (parts, _dir) =
            shared::testing::local_app(std::sync::Arc::new(shared::clock::SystemClock));
        let app = &parts.app;
        let functions = mounts::http_functions();
        let function = |name: &str| {
            functions
                .iter()
                .find(|m| m.function == name)
                .unwrap_or_else(|| panic!("no {name} mount"))
        };
        let send = |name: &'static str, req: shared::http::ApiRequest| {
            let app = app.clone();
            let mount = function(name);
            async move {
                let response = mount.dispatch(&app, req).await;
                let body: serde_json::Value =
                    serde_json::from_slice(&response.body).unwrap_or_default();
                (response.status.as_u16(), body)
            }
        };
        let patient = docare_local::accounts::create(
            app,
            "sam.sms@example.org",
            "Sam Sms",
            Role::Patient,
            true,
        )
        .await
        .expect("patient");
        let token = |user: &str, role: Role| {
            let (app, user) = (app.clone(), user.to_string());
            async move {
                app.tokens
                    .issue(&app, &user, role, &ulid::Ulid::new().to_string(), &["pwd"])
                    .await
                    .expect("token")
                    .0
            }
        };
        let patient_token = token(&patient.id, Role::Patient).await;
        let profile = json!({"full_name": "Sam Sms", "phone": "+14155550177", "current_password": patient.password});
        let put = request(
            Method::PUT,
            "/api/v1/users/me/profile",
            Some(&patient_token),
            Some(profile),
        );
        assert_eq!(send("users", put).await.0, 200, "profile with a phone");
        let login = json!({"email": patient.email, "password": patient.password});
        let (status, body) = send(
            "auth",
            request(Method::POST, "/api/v1/auth/login", None, Some(login)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let challenge = json!({"mfa_token": body["mfa_token"], "channel": "sms"});
        let (status, body) = send(
            "auth",
            request(
                Method::POST,
                "/api/v1/auth/mfa/send-code",
                None,
                Some(challenge),
            ),
        )
        .await;
        assert_eq!(status, 202, "a code by SMS: {body}");

        let carer =
            shared::testing::account(app, "gone@example.org", "Dr Gone", Role::Provider).await;
        care::start(app, &carer, &patient.id, "admin", None)
            .await
            .expect("care");
        shared::store::connections::open(
            app,
            "gone-connection",
            &carer,
            Role::Provider,
            &app.new_id(),
        )
        .await
        .expect("connection");
        let (status, body) = send(
            "emergency",
            request(
                Method::POST,
                "/api/v1/emergency/sos",
                Some(&patient_token),
                None,
            ),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        // A threshold crossing: the provider is e-mailed (the notifications queue) and
        // pushed to, and the push finds the connection gone (devices removes it).
        let (carer_token, _) = app
            .tokens
            .issue(app, &carer, Role::Provider, &app.new_id(), &["pwd", "otp", "mfa"])
            .await
            .expect("token");
        let threshold = json!({"patient_id": patient.id, "code": "40443-4", "above": 120.0});
        let (status, body) = send(
            "devices",
            request(
                Method::PUT,
                "/api/v1/observations/thresholds",
                Some(&carer_token),
                Some(threshold),
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        shared::store::connections::open(
            app,
            "gone-threshold",
            &carer,
            Role::Provider,
            &app.new_id(),
        )
        .await
        .expect("connection");
        let at = app.now().to_string();
        let batch = json!({"samples": [{"id": "iam-rhr-1", "code": "40443-4", "value": 135.0,
            "unit": "/min", "effective": at, "source": "apple_health"}]});
        let (status, body) = send(
            "devices",
            request(
                Method::POST,
                "/api/v1/observations/batch",
                Some(&patient_token),
                Some(batch),
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // Google Health: the patient connects through the fake, a signed delivery
        // queues a sync, and the sync worker stores the heart rates, crosses the
        // carer's threshold (e-mail queued, the push finds the connection gone) and
        // records the sync.
        let threshold = json!({"patient_id": patient.id, "code": "8867-4", "above": 120.0});
        let (status, body) = send(
            "devices",
            request(
                Method::PUT,
                "/api/v1/observations/thresholds",
                Some(&carer_token),
                Some(threshold),
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = send(
            "devices",
            request(
                Method::POST,
                "/api/v1/devices/connect/google_health",
                Some(&patient_token),
                None,
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let authorize = body["authorization_url"].as_str().expect("url").to_string();
        let callback = parts.google.consent(&authorize).await.expect("consent");
        let callback = url::Url::parse(&callback).expect("callback");
        let mut arrive = request(Method::GET, callback.path(), None, None);
        for (name, value) in callback.query_pairs() {
            arrive.query.insert(name.into_owned(), value.into_owned());
        }
        let (status, body) = send("devices", arrive).await;
        assert_eq!(status, 200, "{body}");
        let now = app.now();
        let before = shared::domain::Timestamp::new(now.as_datetime() - chrono::Duration::minutes(2));
        parts.google.add_points(
            shared::adapters::local::FAKE_HEALTH_USER,
            [shared::ports::health_api::DataPoint {
                data_type: shared::ports::health_api::DataType::HeartRate,
                at: before,
                value: 135.0,
            }],
        );
        let delivery = parts
            .google
            .delivery(
                shared::adapters::local::FAKE_HEALTH_USER,
                shared::ports::health_api::DataType::HeartRate,
                before,
                now,
                false,
            )
            .await
            .expect("a delivery");
        let mut hook = request(Method::POST, "/api/v1/webhooks/google-health", None, None);
        hook.headers.insert(
            "authorization",
            delivery.authorization.parse().expect("header"),
        );
        hook.body = delivery.body.into_bytes().into();
        let (status, body) = send("devices", hook).await;
        assert_eq!(status, 200, "{body}");
        let sync_queue = app.config.queues.device_sync.clone().expect("the sync queue");
        let queued = app
            .queue
            .receive(&sync_queue, 10, std::time::Duration::from_secs(30))
            .await
            .expect("receive");
        assert_eq!(queued.len(), 1, "one sync queued");
        let mut event = aws_lambda_events::sqs::SqsEvent::default();
        let mut record = aws_lambda_events::sqs::SqsMessage::default();
        record.message_id = Some(queued[0].message_id.clone());
        record.body = Some(queued[0].body.clone());
        event.records.push(record);
        // The carer's connection the worker's push finds gone.
        shared::store::connections::open(app, "gone-sync", &carer, Role::Provider, &app.new_id())
            .await
            .expect("connection");
        // A cold instance, as a Lambda's: its own data keys.
        let response = recording::as_function(
            "device-sync",
            docare_devices::sync::handle(app.new_instance(), event),
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "the sync worked");
        // A reminder whose push finds the patient's connection gone (remind removes it).
        shared::store::connections::open(
            app,
            "gone-reminder",
            &patient.id,
            Role::Patient,
            &app.new_id(),
        )
        .await
        .expect("connection");
        let reminder = shared::store::reminders::Reminder::dose(
            &patient.id,
            &ulid::Ulid::new().to_string(),
            shared::domain::Timestamp::parse("2026-12-01T08:00:00Z").expect("time"),
        );
        let mut event = aws_lambda_events::sqs::SqsEvent::default();
        let mut record = aws_lambda_events::sqs::SqsMessage::default();
        record.message_id = Some("gone-reminder".into());
        record.body = Some(serde_json::to_string(&reminder).expect("json"));
        event.records.push(record);
        let response =
            recording::as_function("remind", docare_reminders::deliver(app.clone(), event)).await;
        assert!(response.batch_item_failures.is_empty());
        // audit-watch on a stream batch (the local stack has no streams): an append is
        // archived (PutObject archive/), a retry of it reads the copy back (GetObject),
        // and an overwrite is kept flagged (PutObject tamper/).
        let pk = shared::audit::chain_pk(3);
        let stream_record = |name: &str, id: &str| {
            json!({
                "awsRegion": "eu-west-1", "eventID": id, "eventName": name,
                "eventSource": "aws:dynamodb", "eventVersion": "1.1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_796_000_000,
                    "Keys": {"pk": {"S": pk}, "sk": {"S": "00000000000000000001"}},
                    "NewImage": {"pk": {"S": pk}, "sk": {"S": "00000000000000000001"}, "hash": {"S": id}},
                    "SequenceNumber": "1", "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"
                }
            })
        };
        for records in [
            vec![stream_record("INSERT", "s-1")],
            vec![stream_record("INSERT", "s-1"), stream_record("MODIFY", "s-2")],
        ] {
            let event: aws_lambda_events::dynamodb::Event =
                serde_json::from_value(json!({ "Records": records })).expect("stream event");
            recording::as_function("audit-watch", docare_audit_guard::watch(app.clone(), event))
                .await
                .expect("archived");
        }
        // The trail by actor (the one index the audit walk does not query).
        let admin =
            shared::testing::account(app, "aud@example.org", "Ada Audit", Role::Admin).await;
        let admin_token = app
            .tokens
            .issue(
                app,
                &admin,
                Role::Admin,
                &app.new_id(),
                &["pwd", "mfa", "otp"],
            )
            .await
            .expect("token")
            .0;
        let mut by_actor = request(Method::GET, "/api/v1/audit", Some(&admin_token), None);
        by_actor.query.insert("actor".into(), patient.id.clone());
        let (status, body) = send("audit", by_actor).await;
        assert_eq!(status, 200, "{body}");
        // Ending sessions closes their WebSocket connections: a logout (auth) and a
        // disable (users), each with a stored connection of the session it ends.
        for (function, ends) in [("auth", "logout"), ("users", "disable")] {
            let email = format!("ws-{ends}@example.org");
            let user = shared::testing::account(app, &email, "Ws User", Role::Patient).await;
            let s = shared::testing::session(app, &user, Role::Patient, &["pwd"]).await;
            shared::store::connections::open(
                app,
                &format!("conn-{ends}"),
                &user,
                Role::Patient,
                &s.id,
            )
            .await
            .expect("connection");
            let req = if ends == "logout" {
                request(Method::POST, "/api/v1/auth/logout", Some(&s.access), None)
            } else {
                request(
                    Method::POST,
                    &format!("/api/v1/users/{user}/disable"),
                    Some(&admin_token),
                    None,
                )
            };
            let (status, body) = send(function, req).await;
            assert!(status == 204 || status == 200, "{ends}: {status} {body}");
        }
        let left = parts.store.raw_items(&app.config.table).expect("items");
        assert!(
            !left.iter().any(|item| item.get("connection_id").is_some()),
            "the gone connection was removed"
        );
        // A WebSocket resend on another realtime instance than the one that stored the
        // message opens its body with a data key of that instance (read from DATAKEY#).
        let chatter =
            shared::testing::account(app, "chat@example.org", "Chat Patient", Role::Patient).await;
        care::start(app, &carer, &chatter, "admin", None)
            .await
            .expect("care");
        let s = shared::testing::session(app, &chatter, Role::Patient, &["pwd"]).await;
        let (status, conversation) = send(
            "messages",
            request(
                Method::POST,
                "/api/v1/conversations",
                Some(&s.access),
                Some(json!({"participant_ids": [carer]})),
            ),
        )
        .await;
        assert_eq!(status, 201, "{conversation}");
        // Each send attaches a document of the patient's (read, checked and shared with
        // the carer in the send's transaction).
        let mut attachments = Vec::new();
        for name in ["rest.pdf", "ws.pdf"] {
            let ticket = docare_e2e::start_upload(
                app,
                &s.access,
                json!({"name": name, "content_type": "application/pdf", "size": 300, "category": "lab_result"}),
            )
            .await;
            docare_e2e::upload_and_scan(app, &ticket, &docare_e2e::pdf(300, name)).await;
            attachments.push(ticket["id"].as_str().expect("id").to_string());
        }
        // A REST send and receipt push to the carer's connection, found gone (removed).
        let path = format!(
            "/api/v1/conversations/{}",
            conversation["id"].as_str().unwrap()
        );
        for (suffix, body) in [
            (
                "messages",
                json!({"client_message_id": "rest", "body": "Over REST",
                    "attachments": [attachments[0]]}),
            ),
            ("read", json!({"up_to": 1})),
        ] {
            shared::store::connections::open(
                app,
                "conn-carer",
                &carer,
                Role::Provider,
                &app.new_id(),
            )
            .await
            .expect("connection");
            let req = request(
                Method::POST,
                &format!("{path}/{suffix}"),
                Some(&s.access),
                Some(body),
            );
            let (status, answer) = send("messages", req).await;
            assert!(
                status == 200 || status == 201,
                "{suffix}: {status} {answer}"
            );
        }
        let frame = json!({"action": "message:send", "conversation_id": conversation["id"],
            "client_message_id": "twice", "body": "Hello", "attachments": [attachments[1]]});
        for _ in 0..2 {
            // Stored again each time: the local gateway knows no socket of this id, so
            // the acknowledgement finds it gone and removes it.
            shared::store::connections::open(app, "conn-chat", &chatter, Role::Patient, &s.id)
                .await
                .expect("connection");
            let mut event = aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest::default();
            event.request_context.route_key = Some("message:send".into());
            event.request_context.connection_id = Some("conn-chat".into());
            event.body = Some(frame.to_string());
            let response = recording::as_function(
                mounts::WEBSOCKET_FUNCTION,
                mounts::websocket_function().dispatch(&app.new_instance(), event),
            )
            .await;
            assert_eq!(response.status_code, 200);
        }
    });
}

/// Runs every scenario once per process (on its own thread: each builds its runtime),
/// fires every schedule once, and returns what every function was seen doing.
fn tour() -> &'static BTreeSet<Observed> {
    static TOUR: OnceLock<BTreeSet<Observed>> = OnceLock::new();
    TOUR.get_or_init(|| {
        std::thread::spawn(|| {
            for (name, scenario) in SCENARIOS {
                if std::panic::catch_unwind(scenario).is_err() {
                    panic!("tour scenario `{name}` failed (its own test names the cause)");
                }
            }
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async {
                let (parts, _dir) =
                    shared::testing::local_app(std::sync::Arc::new(shared::clock::SystemClock));
                // Twice, with an (unattributed) audit event before each run, so the
                // anchoring schedule anchors a first head and then extends it.
                for _ in 0..2 {
                    parts
                        .app
                        .audit
                        .record(shared::audit::AuditEvent::new(
                            shared::audit::Action::View,
                            shared::audit::Outcome::Success,
                        ))
                        .await
                        .expect("an audit event");
                    for schedule in mounts::schedules() {
                        assert!(
                            schedule.function.is_some(),
                            "schedule `{}` names no function: Schedule::new(..).of(\"<function>\")",
                            schedule.rule
                        );
                        schedule.fire(&parts.app).await;
                    }
                }
            });
            recording::observed()
        })
        .join()
        .unwrap_or_else(|_| panic!("the IAM tour failed"))
    })
}

/// The resources the app's configuration names, by the variable that names them on
/// Lambda (`template.yaml` sets each from a resource: `DOCARE_TABLE: !Ref DocareTable`).
fn config_resources(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        (config::ENV_TABLE, config.table.clone()),
        (config::ENV_AUDIT_TABLE, config.audit_table.clone()),
        (
            config::ENV_QUARANTINE_BUCKET,
            config.quarantine_bucket.clone(),
        ),
        (
            config::ENV_DOCUMENTS_BUCKET,
            config.documents_bucket.clone(),
        ),
        (
            config::ENV_AUDIT_ARCHIVE_BUCKET,
            config.audit_archive_bucket.clone(),
        ),
        (config::ENV_KMS_KEY_ID, config.kms_key_id.clone()),
        (config::ENV_SIGNING_KEY_ID, config.signing_key_id.clone()),
        (
            config::ENV_AUDIT_ANCHOR_KEY_ID,
            config.audit_anchor_key_id.clone(),
        ),
        (config::ENV_SCANS_QUEUE, config.queues.scans.clone()),
        (config::ENV_REMINDERS_QUEUE, config.queues.reminders.clone()),
        (
            config::ENV_NOTIFICATIONS_QUEUE,
            config.queues.notifications.clone(),
        ),
        (
            config::ENV_DEVICE_SYNC_QUEUE,
            config.queues.device_sync.clone().unwrap_or_default(),
        ),
    ]
}

// ---------------------------------------------------------------------------------
// The template, resolved
// ---------------------------------------------------------------------------------

fn load_template() -> Value {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

struct Resolver<'a> {
    resources: &'a Mapping,
    params: BTreeMap<&'static str, String>,
}

impl<'a> Resolver<'a> {
    fn new(template: &'a Value) -> Self {
        let params = BTreeMap::from([
            ("Stage", STAGE.to_string()),
            ("MailFrom", MAIL_FROM.to_string()),
            ("CreateApiGatewayAccountSettings", "true".to_string()),
            ("ClamdAddress", String::new()),
            ("AWS::Region", REGION.to_string()),
            ("AWS::AccountId", ACCOUNT.to_string()),
            ("AWS::Partition", "aws".to_string()),
            ("AWS::URLSuffix", "amazonaws.com".to_string()),
            ("AWS::StackName", format!("docare-{STAGE}")),
        ]);
        Self {
            resources: template["Resources"].as_mapping().expect("Resources"),
            params,
        }
    }

    fn resource(&self, name: &str) -> &'a Value {
        self.resources
            .get(name)
            .unwrap_or_else(|| panic!("template: no resource `{name}`"))
    }

    fn kind(&self, name: &str) -> &'a str {
        self.resource(name)["Type"].as_str().unwrap_or_default()
    }

    /// A property resolved to one string.
    fn prop(&self, name: &str, property: &str) -> String {
        self.one(&self.resource(name)["Properties"][property])
    }

    /// `Ref` of a parameter or a resource (the value CloudFormation returns).
    fn reference(&self, name: &str) -> String {
        if let Some(value) = self.params.get(name) {
            return value.clone();
        }
        match self.kind(name) {
            "AWS::DynamoDB::Table" => self.prop(name, "TableName"),
            "AWS::S3::Bucket" => self.prop(name, "BucketName"),
            "AWS::SQS::Queue" => format!(
                "https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{}",
                self.prop(name, "QueueName")
            ),
            "AWS::KMS::Key" => format!("key-{}", name.to_lowercase()),
            "AWS::IAM::ManagedPolicy" => format!(
                "arn:aws:iam::{ACCOUNT}:policy/{}",
                self.prop(name, "ManagedPolicyName")
            ),
            "AWS::Logs::LogGroup" => self.prop(name, "LogGroupName"),
            "AWS::Serverless::Function" => self.prop(name, "FunctionName"),
            _ => name.to_lowercase(),
        }
    }

    /// `GetAtt <name>.<attribute>`.
    fn attribute(&self, name: &str, attribute: &str) -> String {
        assert_eq!(
            attribute, "Arn",
            "only .Arn is resolved ({name}.{attribute})"
        );
        match self.kind(name) {
            "AWS::DynamoDB::Table" => format!(
                "arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}",
                self.reference(name)
            ),
            "AWS::S3::Bucket" => format!("arn:aws:s3:::{}", self.reference(name)),
            "AWS::SQS::Queue" => format!(
                "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
                self.prop(name, "QueueName")
            ),
            "AWS::KMS::Key" => format!(
                "arn:aws:kms:{REGION}:{ACCOUNT}:key/{}",
                self.reference(name)
            ),
            "AWS::Logs::LogGroup" => format!(
                "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{}:*",
                self.reference(name)
            ),
            "AWS::Serverless::Function" => format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
                self.reference(name)
            ),
            "AWS::IAM::Role" => format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
            other => panic!("GetAtt {name}.Arn of a {other} is not resolved"),
        }
    }

    fn sub(&self, text: &str, vars: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text}"))
                + start;
            let name = &rest[start + 2..end];
            let value = if let Some(value) = vars.get(name) {
                value.clone()
            } else if let Some((resource, attribute)) = name.split_once('.') {
                self.attribute(resource, attribute)
            } else {
                self.reference(name)
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A value resolved to its strings (a list for lists, one for a scalar).
    fn strings(&self, value: &Value) -> Vec<String> {
        match value {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items.iter().flat_map(|v| self.strings(v)).collect(),
            _ => vec![self.one(value)],
        }
    }

    fn one(&self, value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Tagged(tagged) => self.intrinsic(&tagged.tag.to_string(), &tagged.value),
            Value::Mapping(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one entry");
                let key = key.as_str().unwrap_or_default();
                let tag = match key {
                    "Ref" => "!Ref".to_string(),
                    _ => format!("!{}", key.trim_start_matches("Fn::")),
                };
                self.intrinsic(&tag, arg)
            }
            other => panic!("cannot resolve {other:?} to a string"),
        }
    }

    fn intrinsic(&self, tag: &str, arg: &Value) -> String {
        match tag {
            "!Ref" => self.reference(arg.as_str().expect("Ref name")),
            "!GetAtt" => {
                let (name, attribute) = match arg {
                    Value::String(s) => s.split_once('.').expect("GetAtt X.Attr"),
                    Value::Sequence(parts) => (
                        parts[0].as_str().expect("name"),
                        parts[1].as_str().expect("attribute"),
                    ),
                    other => panic!("GetAtt {other:?}"),
                };
                self.attribute(name, attribute)
            }
            "!Sub" => match arg {
                Value::String(text) => self.sub(text, &BTreeMap::new()),
                Value::Sequence(parts) => {
                    let text = parts[0].as_str().expect("Sub text");
                    let vars = parts[1]
                        .as_mapping()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.as_str().unwrap_or_default().to_string(), self.one(v))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    self.sub(text, &vars)
                }
                other => panic!("Sub {other:?}"),
            },
            "!Select" => {
                let parts = arg.as_sequence().expect("Select [i, list]");
                let index: usize = self.one(&parts[0]).parse().expect("index");
                split_list(self.strings(&parts[1]))
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| panic!("Select {index} out of range"))
            }
            "!Join" => {
                let parts = arg.as_sequence().expect("Join [sep, list]");
                split_list(self.strings(&parts[1])).join(&self.one(&parts[0]))
            }
            "!Split" => {
                // Only as the list argument of Select/Join; joined back by `\u{0}`.
                let parts = arg.as_sequence().expect("Split [sep, text]");
                let sep = self.one(&parts[0]);
                self.one(&parts[1])
                    .split(sep.as_str())
                    .collect::<Vec<_>>()
                    .join("\u{0}")
            }
            other => panic!("intrinsic {other} is not resolved"),
        }
    }
}

// `!Split` resolves to one `\u{0}`-joined string; a list argument splits it again.
fn split_list(values: Vec<String>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split('\u{0}').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The logical id a `!Ref X` / `!GetAtt X.Arn` names, if it names a resource.
fn names_resource(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(t) if t.tag == "!Ref" || t.tag == "!GetAtt" => t
            .value
            .as_str()
            .map(|s| s.split('.').next().unwrap_or(s).to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Condition {
    /// `StringLike`, `ArnEquals`, … without the set prefix and `IfExists`.
    operator: String,
    set: Option<&'static str>,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    /// `AuthFunctionRole` (inline) or `AuditWriterPolicy` (managed).
    origin: String,
    sid: String,
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

impl Statement {
    fn name(&self) -> String {
        format!("{}/{}", self.origin, self.sid)
    }
}

fn statements_of(resolver: &Resolver, origin: &str, document: &Value) -> Vec<Statement> {
    let list = match &document["Statement"] {
        Value::Sequence(list) => list.clone(),
        one @ Value::Mapping(_) => vec![one.clone()],
        _ => Vec::new(),
    };
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            for unsupported in ["NotAction", "NotResource", "NotPrincipal"] {
                assert!(
                    s.get(unsupported).is_none(),
                    "{origin}: {unsupported} is not evaluated by this check"
                );
            }
            let mut conditions = Vec::new();
            if let Some(map) = s["Condition"].as_mapping() {
                for (operator, keys) in map {
                    let full = operator.as_str().expect("operator");
                    let (set, rest) = match full.split_once(':') {
                        Some(("ForAllValues", rest)) => (Some("ForAllValues"), rest),
                        Some(("ForAnyValue", rest)) => (Some("ForAnyValue"), rest),
                        Some(_) => panic!("{origin}: condition operator {full}"),
                        None => (None, full),
                    };
                    let (operator, if_exists) = match rest.strip_suffix("IfExists") {
                        Some(op) => (op, true),
                        None => (rest, false),
                    };
                    for (key, values) in keys.as_mapping().expect("condition keys") {
                        conditions.push(Condition {
                            operator: operator.to_string(),
                            set,
                            if_exists,
                            key: key.as_str().expect("condition key").to_string(),
                            values: split_list(resolver.strings(values)),
                        });
                    }
                }
            }
            Statement {
                origin: origin.to_string(),
                sid: s["Sid"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("#{i}")),
                allow: match s["Effect"].as_str() {
                    Some("Allow") => true,
                    Some("Deny") => false,
                    other => panic!("{origin}: Effect {other:?}"),
                },
                actions: resolver.strings(&s["Action"]),
                resources: split_list(resolver.strings(&s["Resource"])),
                conditions,
            }
        })
        .collect()
}

/// `*` and `?` wildcards, as IAM matches actions (case-insensitively), resources and
/// `…Like` conditions.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// One request as IAM evaluates it.
#[derive(Debug, Clone)]
struct Request {
    action: String,
    resource: String,
    context: BTreeMap<String, Vec<String>>,
    /// What made it, for messages: the observed access, or the platform's need.
    origin: String,
}

fn value_matches(operator: &str, pattern: &str, value: &str) -> bool {
    match operator {
        "StringEquals" | "StringNotEquals" | "NumericEquals" => pattern == value,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
            pattern.eq_ignore_ascii_case(value)
        }
        "StringLike" | "StringNotLike" | "ArnLike" | "ArnNotLike" | "ArnEquals"
        | "ArnNotEquals" => glob(pattern, value),
        "Bool" => pattern.eq_ignore_ascii_case(value),
        other => panic!("condition operator {other} is not evaluated by this check"),
    }
}

fn negated(operator: &str) -> bool {
    operator.contains("Not")
}

/// One condition against a request (IAM's rules for missing keys and value sets).
fn condition_holds(c: &Condition, request: &Request) -> bool {
    let values = request.context.get(&c.key);
    if c.operator == "Null" {
        let absent = values.is_none_or(Vec::is_empty);
        return c.values.iter().any(|v| (v == "true") == absent);
    }
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return match c.set {
            Some("ForAllValues") => true,
            Some(_) => false,
            None => c.if_exists || negated(&c.operator),
        };
    };
    let any_pattern = |value: &str| {
        c.values
            .iter()
            .any(|p| value_matches(&c.operator, p, value))
    };
    match (c.set, negated(&c.operator)) {
        (Some("ForAllValues"), false) => values.iter().all(|v| any_pattern(v)),
        (Some("ForAllValues"), true) => values.iter().all(|v| !any_pattern(v)),
        (Some(_), false) => values.iter().any(|v| any_pattern(v)),
        (Some(_), true) => values.iter().any(|v| !any_pattern(v)),
        (None, false) => values.iter().any(|v| any_pattern(v)),
        (None, true) => values.iter().all(|v| !any_pattern(v)),
    }
}

fn statement_applies(s: &Statement, request: &Request) -> bool {
    s.actions.iter().any(|a| {
        glob(
            &a.to_ascii_lowercase(),
            &request.action.to_ascii_lowercase(),
        )
    }) && s.resources.iter().any(|r| glob(r, &request.resource))
        && s.conditions.iter().all(|c| condition_holds(c, request))
}

enum Decision {
    Allowed(usize),
    Denied(usize),
    NotAllowed,
}

fn decide(statements: &[Statement], request: &Request) -> Decision {
    if let Some(i) = statements
        .iter()
        .position(|s| !s.allow && statement_applies(s, request))
    {
        return Decision::Denied(i);
    }
    match statements
        .iter()
        .position(|s| s.allow && statement_applies(s, request))
    {
        Some(i) => Decision::Allowed(i),
        None => Decision::NotAllowed,
    }
}

// ---------------------------------------------------------------------------------
// Functions, their roles, and their requests
// ---------------------------------------------------------------------------------

struct Function {
    /// `users` for `UsersFunction`.
    name: String,
    logical: String,
    function_name: String,
    role: String,
    statements: Vec<Statement>,
    /// The environment (globals and the function's own), unresolved.
    environment: Mapping,
    kms_key_arn: Option<String>,
    tracing: bool,
    /// Queues this function consumes through an SQS event source (logical ids).
    sqs_sources: Vec<String>,
    /// Tables whose stream this function consumes, with the mapping's on-failure
    /// destination queue (logical ids).
    stream_sources: Vec<(String, Option<String>)>,
}

struct Model<'a> {
    resolver: Resolver<'a>,
    functions: Vec<Function>,
}

/// `users` for `UsersFunction`, `audit-anchor` for `AuditAnchorFunction`.
fn function_short_name(logical: &str) -> String {
    let mut name = String::new();
    for (i, c) in logical
        .strip_suffix("Function")
        .unwrap_or(logical)
        .chars()
        .enumerate()
    {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

impl<'a> Model<'a> {
    fn new(template: &'a Value) -> Self {
        let resolver = Resolver::new(template);
        let globals = &template["Globals"]["Function"];
        let mut functions = Vec::new();
        for (logical, resource) in resolver.resources {
            if resource["Type"] != "AWS::Serverless::Function" {
                continue;
            }
            let logical = logical.as_str().expect("logical id").to_string();
            let props = &resource["Properties"];
            assert!(
                props.get("Policies").is_none(),
                "{logical}: give the function its own AWS::IAM::Role (SAM Policies are not checked)"
            );
            let role = names_resource(&props["Role"])
                .unwrap_or_else(|| panic!("{logical}: Role is !GetAtt <its role>.Arn"));
            let role_props = &resolver.resource(&role)["Properties"];
            let mut statements = Vec::new();
            for policy in role_props["Policies"].as_sequence().into_iter().flatten() {
                statements.extend(statements_of(&resolver, &role, &policy["PolicyDocument"]));
            }
            for arn in role_props["ManagedPolicyArns"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let policy = names_resource(arn)
                    .unwrap_or_else(|| panic!("{role}: managed policies are this template's"));
                statements.extend(statements_of(
                    &resolver,
                    &policy,
                    &resolver.resource(&policy)["Properties"]["PolicyDocument"],
                ));
            }
            let mut environment = globals["Environment"]["Variables"]
                .as_mapping()
                .cloned()
                .unwrap_or_default();
            if let Some(own) = props["Environment"]["Variables"].as_mapping() {
                environment.extend(own.clone());
            }
            let kms = props
                .get("KmsKeyArn")
                .or_else(|| globals.get("KmsKeyArn"))
                .map(|v| resolver.one(v));
            let tracing = props
                .get("Tracing")
                .or_else(|| globals.get("Tracing"))
                .and_then(Value::as_str)
                == Some("Active");
            let sqs_sources = props["Events"]
                .as_mapping()
                .into_iter()
                .flatten()
                .filter(|(_, e)| e["Type"] == "SQS")
                .filter_map(|(_, e)| names_resource(&e["Properties"]["Queue"]))
                .collect();
            let stream_sources = props["Events"]
                .as_mapping()
                .into_iter()
                .flatten()
                .filter(|(_, e)| e["Type"] == "DynamoDB")
                .filter_map(|(_, e)| {
                    let table = names_resource(&e["Properties"]["Stream"])?;
                    let failures = names_resource(
                        &e["Properties"]["DestinationConfig"]["OnFailure"]["Destination"],
                    );
                    Some((table, failures))
                })
                .collect();
            functions.push(Function {
                name: function_short_name(&logical),
                function_name: resolver.prop(&logical, "FunctionName"),
                logical,
                role,
                statements,
                environment,
                kms_key_arn: kms,
                tracing,
                sqs_sources,
                stream_sources,
            });
        }
        Self {
            resolver,
            functions,
        }
    }

    fn arn(&self, logical: &str) -> String {
        self.resolver.attribute(logical, "Arn")
    }

    /// The KMS key (ARN) a table, queue or bucket is encrypted with.
    fn sse_key(&self, logical: &str) -> Option<String> {
        let props = &self.resolver.resource(logical)["Properties"];
        let key = match self.resolver.kind(logical) {
            "AWS::DynamoDB::Table" => &props["SSESpecification"]["KMSMasterKeyId"],
            "AWS::SQS::Queue" => &props["KmsMasterKeyId"],
            "AWS::S3::Bucket" => {
                &props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
                    ["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]
            }
            _ => return None,
        };
        (!key.is_null()).then(|| self.resolver.one(key))
    }
}

fn request(action: &str, resource: String, origin: String) -> Request {
    Request {
        action: action.to_string(),
        resource,
        context: BTreeMap::from([("aws:RequestedRegion".to_string(), vec![REGION.to_string()])]),
        origin,
    }
}

impl Request {
    fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.context.insert(key.to_string(), vec![value.into()]);
        self
    }
}

/// The value `dynamodb:LeadingKeys` sees for a recorded prefix: `USER#` stands for any
/// `USER#<id>`; a partition without `#` (`SIGNKEYS`) is the whole key.
fn leading_key(prefix: &str) -> String {
    if prefix.ends_with('#') {
        format!("{prefix}01JEXAMPLE0000000000000000")
    } else {
        prefix.to_string()
    }
}

/// Why an access could not be turned into a request.
enum Unmapped {
    /// Not an IAM action (a transaction's own marker; its items are checked one by one).
    NotAnAction,
    /// A resource the tour's configuration does not name (a test with its own tables).
    Foreign(String),
}

struct Translator<'m, 'a> {
    model: &'m Model<'a>,
    /// Configured name (local) -> logical id in the template.
    names: BTreeMap<String, String>,
    mail_from: String,
    ws_api: String,
    ws_stage: String,
}

impl<'m, 'a> Translator<'m, 'a> {
    fn new(model: &'m Model<'a>, config: &Config) -> Self {
        let env = &model.functions.first().expect("a function").environment;
        let var = |name: &str| {
            env.get(name)
                .unwrap_or_else(|| panic!("template Globals: no {name}"))
        };
        let mut names = BTreeMap::new();
        for (variable, configured) in config_resources(config) {
            let logical = names_resource(var(variable))
                .unwrap_or_else(|| panic!("{variable} is set from a resource in the template"));
            names.insert(configured, logical);
        }
        // Every variable the template sets from a resource is mapped above.
        for (name, value) in env {
            let resource =
                names_resource(value).filter(|l| model.resolver.resources.contains_key(l.as_str()));
            if let Some(logical) = resource {
                assert!(
                    names.values().any(|l| *l == logical),
                    "{} names {logical}: add it to config_resources in tests/e2e/iam.rs",
                    name.as_str().unwrap_or_default()
                );
            }
        }
        let endpoint = model.resolver.one(var(config::ENV_WS_ENDPOINT));
        let rest = endpoint.strip_prefix("https://").expect("https endpoint");
        let (host, stage) = rest.split_once('/').expect("endpoint/stage");
        Self {
            model,
            names,
            mail_from: model.resolver.one(var(config::ENV_MAIL_FROM)),
            ws_api: host.split('.').next().unwrap_or_default().to_string(),
            ws_stage: stage.to_string(),
        }
    }

    fn logical(&self, configured: &str) -> Result<&str, Unmapped> {
        self.names
            .get(configured)
            .map(String::as_str)
            .ok_or_else(|| Unmapped::Foreign(configured.to_string()))
    }

    fn kms_key(&self) -> String {
        let logical = self
            .names
            .iter()
            .find(|(_, l)| {
                self.model.resolver.kind(l) == "AWS::KMS::Key"
                    && self.model.resolver.resource(l)["Properties"]
                        .get("KeySpec")
                        .is_none()
            })
            .map(|(_, l)| l.clone())
            .expect("the KMS key is configured");
        self.model.arn(&logical)
    }

    /// The requests one observed access makes: its own and those the service makes
    /// with the caller's credentials (KMS for encrypted tables and queues).
    fn requests(&self, access: &Access) -> Result<Vec<Request>, Unmapped> {
        let what = describe(access);
        let scope = access.scope.as_str();
        let service = access.service();
        let mut out = Vec::new();
        match service {
            "dynamodb" => {
                if access.action == "dynamodb:TransactWriteItems" {
                    return Err(Unmapped::NotAnAction);
                }
                let (table, index) = match access.resource.split_once("/index/") {
                    Some((table, index)) => (table, Some(index)),
                    None => (access.resource.as_str(), None),
                };
                let logical = self.logical(table)?;
                let mut arn = self.model.arn(logical);
                if let Some(index) = index {
                    arn = format!("{arn}/index/{index}");
                }
                let mut own = request(access.action, arn, what.clone());
                if !scope.is_empty() {
                    own = own.with("dynamodb:LeadingKeys", leading_key(scope));
                }
                if !access.attributes.is_empty() {
                    own.context
                        .insert("dynamodb:Attributes".into(), access.attributes.clone());
                }
                out.push(own);
                if let Some(key) = self.model.sse_key(logical) {
                    out.push(
                        request("kms:Decrypt", key, format!("{what}: the table's KMS key"))
                            .with("kms:ViaService", format!("dynamodb.{REGION}.amazonaws.com"))
                            .with(
                                "kms:EncryptionContext:aws:dynamodb:tableName",
                                self.model.resolver.reference(logical),
                            ),
                    );
                }
            }
            "kms" => {
                // Sign and GetPublicKey name their (asymmetric) key; data-key calls
                // are on the CMK.
                let key = match self.names.get(&access.resource) {
                    Some(logical) => self.model.arn(logical),
                    None => self.kms_key(),
                };
                let mut own = request(access.action, key, what);
                if !scope.is_empty() {
                    own = own.with("kms:EncryptionContext:purpose", scope);
                }
                out.push(own);
            }
            "sqs" => {
                let logical = self.logical(&access.resource)?;
                let arn = self.model.arn(logical);
                out.push(request(access.action, arn.clone(), what.clone()));
                if let Some(key) = self.model.sse_key(logical) {
                    let actions: &[&str] = if access.action == "sqs:SendMessage" {
                        &["kms:GenerateDataKey", "kms:Decrypt"]
                    } else if access.action == "sqs:ReceiveMessage" {
                        &["kms:Decrypt"]
                    } else {
                        &[]
                    };
                    for action in actions {
                        out.push(
                            request(action, key.clone(), format!("{what}: the queue's KMS key"))
                                .with("kms:ViaService", format!("sqs.{REGION}.amazonaws.com"))
                                .with("kms:EncryptionContext:aws:sqs:arn", arn.clone()),
                        );
                    }
                }
            }
            "s3" => {
                let logical = self.logical(&access.resource)?;
                let bucket = self.model.arn(logical);
                if access.action == "s3:ListBucket" {
                    out.push(request(access.action, bucket, what));
                } else {
                    out.push(request(
                        access.action,
                        format!("{bucket}/{scope}01JEXAMPLE"),
                        what.clone(),
                    ));
                    if let Some(key) = self.model.sse_key(logical) {
                        let action = if access.action == "s3:PutObject" {
                            "kms:GenerateDataKey"
                        } else {
                            "kms:Decrypt"
                        };
                        out.push(
                            request(action, key, format!("{what}: the bucket's KMS key"))
                                .with("kms:ViaService", format!("s3.{REGION}.amazonaws.com"))
                                .with("kms:EncryptionContext:aws:s3:arn", bucket),
                        );
                    }
                }
            }
            "execute-api" => out.push(request(
                access.action,
                format!(
                    "arn:aws:execute-api:{REGION}:{ACCOUNT}:{}/{}/{}/conn-1",
                    self.ws_api, self.ws_stage, access.resource
                ),
                what,
            )),
            "ses" => out.push(
                request(
                    access.action,
                    format!("arn:aws:ses:{REGION}:{ACCOUNT}:identity/{}", self.mail_from),
                    what,
                )
                .with("ses:FromAddress", self.mail_from.clone()),
            ),
            "sns" => out.push(request(access.action, "*".into(), what)),
            // The local stack's secrets are the stage's (`docare/local/…` is
            // `docare/<Stage>/…` on AWS); Secrets Manager appends a random suffix.
            "secretsmanager" => out.push(request(
                access.action,
                format!(
                    "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{}-AbCdEf",
                    access
                        .resource
                        .strip_prefix("docare/local/")
                        .map(|rest| format!("docare/{STAGE}/{rest}"))
                        .unwrap_or_else(|| access.resource.clone())
                ),
                what,
            )),
            other => panic!("no IAM mapping for the {other} service ({what})"),
        }
        Ok(out)
    }

    /// What the platform does with the function's role, observed or not.
    fn platform(&self, function: &Function) -> Vec<Request> {
        let mut out = Vec::new();
        let stream = format!(
            "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{}:log-stream:2026/12/02/[$LATEST]0123",
            function.function_name
        );
        for action in ["logs:CreateLogStream", "logs:PutLogEvents"] {
            out.push(request(
                action,
                stream.clone(),
                "Lambda writes the function's logs".into(),
            ));
        }
        if function.tracing {
            for action in ["xray:PutTraceSegments", "xray:PutTelemetryRecords"] {
                out.push(request(action, "*".into(), "active tracing".into()));
            }
        }
        if let Some(key) = &function.kms_key_arn {
            out.push(
                request(
                    "kms:Decrypt",
                    key.clone(),
                    "Lambda decrypts the function's environment".into(),
                )
                .with("kms:ViaService", format!("lambda.{REGION}.amazonaws.com"))
                .with(
                    "kms:EncryptionContext:aws:lambda:FunctionArn",
                    format!(
                        "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
                        function.function_name
                    ),
                ),
            );
        }
        for (table, failures) in &function.stream_sources {
            let stream = format!("{}/stream/2026-01-01T00:00:00.000", self.model.arn(table));
            for action in [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ] {
                out.push(request(
                    action,
                    stream.clone(),
                    format!("the DynamoDB stream event source polls {table}'s stream"),
                ));
            }
            if let Some(key) = self.model.sse_key(table) {
                out.push(
                    request(
                        "kms:Decrypt",
                        key,
                        format!("the stream records of {table} are decrypted by DynamoDB"),
                    )
                    .with("kms:ViaService", format!("dynamodb.{REGION}.amazonaws.com")),
                );
            }
            if let Some(queue) = failures {
                let arn = self.model.arn(queue);
                out.push(request(
                    "sqs:SendMessage",
                    arn.clone(),
                    format!("a failed stream batch is sent to {queue}"),
                ));
                if let Some(key) = self.model.sse_key(queue) {
                    for action in ["kms:GenerateDataKey", "kms:Decrypt"] {
                        out.push(
                            request(action, key.clone(), format!("{queue} is encrypted"))
                                .with("kms:ViaService", format!("sqs.{REGION}.amazonaws.com"))
                                .with("kms:EncryptionContext:aws:sqs:arn", arn.clone()),
                        );
                    }
                }
            }
        }
        for queue in &function.sqs_sources {
            let arn = self.model.arn(queue);
            for action in [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ] {
                out.push(request(
                    action,
                    arn.clone(),
                    format!("the SQS event source polls {queue}"),
                ));
            }
            if let Some(key) = self.model.sse_key(queue) {
                out.push(
                    request(
                        "kms:Decrypt",
                        key,
                        format!("the SQS event source reads {queue}"),
                    )
                    .with("kms:ViaService", format!("sqs.{REGION}.amazonaws.com"))
                    .with("kms:EncryptionContext:aws:sqs:arn", arn),
                );
            }
        }
        out
    }
}

fn describe(access: &Access) -> String {
    let mut text = format!("{} on `{}`", access.action, access.resource);
    if !access.scope.is_empty() {
        let kind = match access.service() {
            "kms" => "purpose",
            "s3" => "object prefix",
            _ => "key prefix",
        };
        text.push_str(&format!(" ({kind} `{}`)", access.scope));
    }
    text
}

// ---------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    /// Grants wider than anything seen: statements, actions, key prefixes, purposes.
    broader: Vec<String>,
    /// Accesses on resources the tour's configuration does not name (other tests).
    foreign: BTreeSet<String>,
    checked: usize,
}

fn check(template: &Value, observed: &BTreeSet<Observed>) -> Report {
    let model = Model::new(template);
    let config = shared::testing::local_test_config();
    let translator = Translator::new(&model, &config);
    let mut report = Report::default();
    let mut by_function: BTreeMap<&str, Vec<&Access>> = BTreeMap::new();
    for o in observed {
        by_function.entry(o.function).or_default().push(&o.access);
    }
    for name in by_function.keys() {
        if !model.functions.iter().any(|f| f.name == *name) {
            report.failures.push(format!(
                "`{name}` made accesses but template.yaml has no {}Function",
                capitalized(name)
            ));
        }
    }
    for function in &model.functions {
        let accesses = by_function
            .get(function.name.as_str())
            .cloned()
            .unwrap_or_default();
        // A stream consumer's rights are all the event source's (its code calls no port).
        if accesses.is_empty() && function.stream_sources.is_empty() {
            report.failures.push(format!(
                "{}: no access was observed: drive its routes, events or worker in the tour \
                 (tests/e2e/iam.rs) so its role is checked",
                function.logical
            ));
            continue;
        }
        let mut requests = translator.platform(function);
        for access in accesses {
            match translator.requests(access) {
                Ok(more) => requests.extend(more),
                Err(Unmapped::NotAnAction) => {}
                Err(Unmapped::Foreign(name)) => {
                    report.foreign.insert(format!("{}: {name}", function.name));
                }
            }
        }
        // Which parts of which statements were needed.
        let mut used_statements = BTreeSet::new();
        let mut used_actions: BTreeSet<(usize, String)> = BTreeSet::new();
        let mut used_values: BTreeSet<(usize, String, String)> = BTreeSet::new();
        for request in &requests {
            report.checked += 1;
            match decide(&function.statements, request) {
                Decision::Allowed(_) => {
                    // Every statement that allows it was needed (several may overlap).
                    for (i, s) in function.statements.iter().enumerate() {
                        if !s.allow || !statement_applies(s, request) {
                            continue;
                        }
                        used_statements.insert(i);
                        for a in &s.actions {
                            if glob(
                                &a.to_ascii_lowercase(),
                                &request.action.to_ascii_lowercase(),
                            ) {
                                used_actions.insert((i, a.clone()));
                            }
                        }
                        for c in &s.conditions {
                            for v in request.context.get(&c.key).into_iter().flatten() {
                                for p in &c.values {
                                    if value_matches(&c.operator, p, v) {
                                        used_values.insert((i, c.key.clone(), p.clone()));
                                    }
                                }
                            }
                        }
                    }
                }
                Decision::Denied(i) => report.failures.push(format!(
                    "{}: {} — {} is denied explicitly by {}",
                    function.logical,
                    request.origin,
                    request.action,
                    function.statements[i].name()
                )),
                Decision::NotAllowed => report.failures.push(format!(
                    "{}: {} — no statement of {} (or its managed policies) allows {} on {}{}",
                    function.logical,
                    request.origin,
                    function.role,
                    request.action,
                    request.resource,
                    context_text(&request.context)
                )),
            }
        }
        for (i, s) in function.statements.iter().enumerate() {
            if !s.allow {
                continue;
            }
            if !used_statements.contains(&i) {
                report.broader.push(format!(
                    "{}: {} allows {:?} but nothing observed needed it",
                    function.logical,
                    s.name(),
                    s.actions
                ));
                continue;
            }
            for a in &s.actions {
                if !used_actions.contains(&(i, a.clone())) {
                    report.broader.push(format!(
                        "{}: {} grants {a}, never observed",
                        function.logical,
                        s.name()
                    ));
                }
            }
            for c in s.conditions.iter().filter(|c| c.operator != "Null") {
                if negated(&c.operator) {
                    continue;
                }
                for p in &c.values {
                    if !used_values.contains(&(i, c.key.clone(), p.clone())) {
                        report.broader.push(format!(
                            "{}: {} allows {} = {p}, never observed",
                            function.logical,
                            s.name(),
                            c.key
                        ));
                    }
                }
            }
        }
    }
    report
}

fn context_text(context: &BTreeMap<String, Vec<String>>) -> String {
    let keys: Vec<String> = context
        .iter()
        .filter(|(k, _)| k.as_str() != "aws:RequestedRegion")
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect();
    if keys.is_empty() {
        String::new()
    } else {
        format!(" with {}", keys.join(", "))
    }
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_ascii_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// A copy of the template without one statement (`resource` is a role or a managed
/// policy; the statement is found by `Sid`).
fn without_statement(template: &Value, resource: &str, sid: &str) -> Value {
    let mut copy = template.clone();
    let props = &mut copy["Resources"][resource]["Properties"];
    let mut documents: Vec<&mut Value> = Vec::new();
    if props.get("PolicyDocument").is_some() {
        documents.push(&mut props["PolicyDocument"]);
    } else if let Some(policies) = props.get_mut("Policies").and_then(Value::as_sequence_mut) {
        documents.extend(policies.iter_mut().map(|p| &mut p["PolicyDocument"]));
    }
    let mut removed = false;
    for doc in documents {
        if let Some(list) = doc["Statement"].as_sequence_mut() {
            let before = list.len();
            list.retain(|s| s["Sid"].as_str() != Some(sid));
            removed |= list.len() != before;
        }
    }
    assert!(removed, "{resource} has no statement {sid}");
    copy
}

/// Every statement of every function role and writer policy, by (resource, sid).
fn every_statement(template: &Value) -> Vec<(String, String)> {
    let model = Model::new(template);
    let mut out = BTreeSet::new();
    for function in &model.functions {
        for s in &function.statements {
            if s.allow {
                out.insert((s.origin.clone(), s.sid.clone()));
            }
        }
    }
    out.into_iter().collect()
}

#[test]
fn every_observed_access_is_allowed_by_its_functions_role() {
    let template = load_template();
    let observed = tour();
    let report = check(&template, observed);
    let mut summary = format!(
        "IAM check: {} observed accesses of {} functions, {} requests evaluated",
        observed.len(),
        observed
            .iter()
            .map(|o| o.function)
            .collect::<BTreeSet<_>>()
            .len(),
        report.checked
    );
    if std::env::var("DOCARE_IAM_LIST").as_deref() == Ok("1") {
        for o in observed {
            summary.push_str(&format!("\n  {:<10} {}", o.function, describe(&o.access)));
        }
    }
    if !report.broader.is_empty() {
        summary.push_str("\ngrants broader than observed use:\n  ");
        summary.push_str(&report.broader.join("\n  "));
    }
    if !report.foreign.is_empty() {
        summary.push_str("\nnot checked (resources of other tests' own configuration):\n  ");
        summary.push_str(
            &report
                .foreign
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  "),
        );
    }
    eprintln!("{summary}");
    assert!(
        report.failures.is_empty(),
        "template.yaml does not allow what the code does:\n  {}",
        report.failures.join("\n  ")
    );
}

#[test]
fn the_check_fails_when_a_needed_statement_is_removed() {
    let template = load_template();
    let observed = tour();
    // The real bug: the audit function's first sealed write stores a data-key record.
    let report = check(
        &without_statement(&template, "AuditWriterPolicy", "NewDataKeyRecords"),
        observed,
    );
    eprintln!(
        "without NewDataKeyRecords:\n  {}",
        report.failures.join("\n  ")
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("AuditFunction:")
                && f.contains("dynamodb:PutItem")
                && f.contains("DATAKEY#")),
        "removing the data-key statement must fail the audit function: {:?}",
        report.failures
    );
    // Every allow statement is needed by something the tour does: removing any one
    // fails the check (a statement nothing needs is reported as broader than use).
    let mut unneeded = Vec::new();
    for (resource, sid) in every_statement(&template) {
        let report = check(&without_statement(&template, &resource, &sid), observed);
        if report.failures.is_empty() {
            unneeded.push(format!("{resource}/{sid}"));
        }
    }
    assert!(
        unneeded.is_empty(),
        "statements nothing observed needs (remove or narrow them, or drive what needs \
         them in the tour): {unneeded:?}"
    );
}

#[test]
fn a_function_without_observed_accesses_fails_the_check() {
    let template = load_template();
    let observed = tour();
    let without_health: BTreeSet<Observed> = observed
        .iter()
        .filter(|o| o.function != "health")
        .cloned()
        .collect();
    let report = check(&template, &without_health);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("HealthFunction: no access was observed")),
        "{:?}",
        report.failures
    );
    // An access by a function the template does not have fails too.
    let mut stray = observed.clone();
    stray.insert(Observed {
        function: "ghost",
        access: observed.iter().next().expect("an access").access.clone(),
    });
    let report = check(&template, &stray);
    assert!(
        report.failures.iter().any(|f| f.contains("`ghost`")),
        "{:?}",
        report.failures
    );
}

#[test]
fn the_evaluator_follows_iam_rules() {
    let c = |operator: &str, set: Option<&'static str>, key: &str, values: &[&str]| Condition {
        operator: operator.into(),
        set,
        if_exists: false,
        key: key.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let r = request("dynamodb:GetItem", "arn:t".into(), String::new())
        .with("dynamodb:LeadingKeys", "USER#01J");
    let leading = c(
        "StringLike",
        Some("ForAllValues"),
        "dynamodb:LeadingKeys",
        &["USER#*"],
    );
    assert!(condition_holds(&leading, &r));
    let other = c(
        "StringLike",
        Some("ForAllValues"),
        "dynamodb:LeadingKeys",
        &["PROFILE#*"],
    );
    assert!(!condition_holds(&other, &r));
    // ForAllValues holds when the key is missing (a Scan has no leading keys): IAM's
    // rule, and why every scoped statement names only item actions.
    let bare = request("dynamodb:Scan", "arn:t".into(), String::new());
    assert!(condition_holds(&leading, &bare));
    let purpose = c(
        "StringEquals",
        None,
        "kms:EncryptionContext:purpose",
        &["docare-phi"],
    );
    assert!(
        !condition_holds(&purpose, &bare),
        "a missing key fails StringEquals"
    );
    let r = request("kms:Decrypt", "k".into(), String::new())
        .with("kms:EncryptionContext:purpose", "docare-audit");
    assert!(!condition_holds(&purpose, &r));
    assert!(glob("kms:GenerateDataKey*", "kms:GenerateDataKey"));
    assert!(glob(
        "arn:aws:logs:r:a:log-group:/x:*",
        "arn:aws:logs:r:a:log-group:/x:log-stream:s"
    ));
    assert!(!glob("USER#*", "PROFILE#1"));
    assert!(glob("SIGNKEY*", "SIGNKEYS"));
    let deny = Statement {
        origin: "R".into(),
        sid: "NoTopics".into(),
        allow: false,
        actions: vec!["sns:Publish".into()],
        resources: vec!["arn:aws:sns:*:*:*".into()],
        conditions: Vec::new(),
    };
    let allow = Statement {
        sid: "Sms".into(),
        allow: true,
        resources: vec!["*".into()],
        ..deny.clone()
    };
    let sms = request("sns:Publish", "*".into(), String::new());
    let topic = request(
        "sns:Publish",
        "arn:aws:sns:us-east-1:1:t".into(),
        String::new(),
    );
    let both = [allow, deny];
    assert!(matches!(decide(&both, &sms), Decision::Allowed(0)));
    assert!(matches!(decide(&both, &topic), Decision::Denied(1)));
}

// ---------------------------------------------------------------------------------
// What each binary links (`shared::adapters::links`)
// ---------------------------------------------------------------------------------

/// Each function's `LINKS` constant, by its name in the template.
fn links_of(function: &str) -> Option<links::Links> {
    Some(match function {
        "health" => docare_health::LINKS,
        "auth" => docare_auth::LINKS,
        "users" => docare_users::LINKS,
        "emergency" => docare_emergency::LINKS,
        "appointments" => docare_appointments::LINKS,
        "audit" => docare_audit::LINKS,
        "realtime" => docare_realtime::LINKS,
        "notify" => docare_notify::LINKS,
        "audit-anchor" => docare_audit_guard::ANCHOR_LINKS,
        "audit-watch" => docare_audit_guard::WATCH_LINKS,
        "medications" => docare_medications::LINKS,
        "notes" => docare_notes::LINKS,
        "messages" => docare_messages::LINKS,
        "billing" => docare_billing::LINKS,
        "stripe-webhook" => docare_stripe_webhook::LINKS,
        "video" => docare_video::LINKS,
        "twilio-webhook" => docare_twilio_webhook::LINKS,
        "reminders" => docare_reminders::LINKS,
        "remind" => docare_reminders::REMIND_LINKS,
        "documents" => docare_documents::LINKS,
        "scanner" => docare_documents::SCANNER_LINKS,
        "devices" => docare_devices::LINKS,
        "device-sync" => docare_devices::SYNC_LINKS,
        _ => return None,
    })
}

/// Whether a role could use a linked service at all: an action of its AWS service, or
/// for the three HTTPS APIs the secret their adapter reads.
fn role_can_use(function: &Function, service: links::Links) -> bool {
    let action = |prefix: &str| {
        function
            .statements
            .iter()
            .filter(|s| s.allow)
            .any(|s| s.actions.iter().any(|a| a.starts_with(prefix)))
    };
    let secret = |folder: &str| {
        function.statements.iter().filter(|s| s.allow).any(|s| {
            s.actions
                .iter()
                .any(|a| a == "secretsmanager:GetSecretValue")
                && s.resources.iter().any(|r| r.contains(folder))
        })
    };
    match service {
        links::BLOBS => action("s3:"),
        links::QUEUE => action("sqs:SendMessage") || action("sqs:GetQueueAttributes"),
        links::PUSH => action("execute-api:ManageConnections"),
        links::MESSENGER => action("ses:") || action("sns:"),
        links::SECRETS => action("secretsmanager:GetSecretValue"),
        links::PAYMENTS => secret("/stripe/"),
        links::VIDEO => secret("/twilio/"),
        links::HEALTH_API => secret("/google/"),
        _ => false,
    }
}

/// What is wrong with the functions' link sets (`links` gives each function's), given
/// the ports the tour saw each call.
fn links_failures(
    model: &Model,
    used: &BTreeSet<(&'static str, &'static str)>,
    links: impl Fn(&str) -> Option<links::Links>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for function in &model.functions {
        let Some(declared) = links(&function.name) else {
            failures.push(format!(
                "{}: no LINKS in the table of links_of (tests/e2e/iam.rs)",
                function.name
            ));
            continue;
        };
        let linked = links::names(links::effective(declared));
        for (_, port) in used.iter().filter(|(f, _)| *f == function.name) {
            if !linked.contains(port) {
                failures.push(format!(
                    "{}: calls `{port}`, which its LINKS leave out",
                    function.name
                ));
            }
        }
        for (bit, name) in links::NAMES {
            if declared & bit != 0 && !role_can_use(function, bit) {
                failures.push(format!(
                    "{}: links `{name}`, which its role cannot use",
                    function.name
                ));
            }
        }
    }
    for (function, port) in used {
        if !model.functions.iter().any(|f| f.name == *function) {
            failures.push(format!("{function} (not in the template) calls `{port}`"));
        }
    }
    failures
}

/// Every port a function's handlers were seen calling in the tour is linked into its
/// binary (else it would answer 503 on Lambda), and every service a binary links is one
/// its role can use (else it is dead weight at every cold start).
#[test]
fn every_function_links_the_services_it_calls_and_no_other() {
    let template = load_template();
    let model = Model::new(&template);
    tour();
    let failures = links_failures(&model, &recording::ports_used(), links_of);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The check is not vacuous: the tour saw the ports in use, and LINKS that leave out
/// S3 from `documents` or give S3 to `appointments` fail it.
#[test]
fn the_links_check_fails_on_a_missing_or_a_needless_link() {
    let template = load_template();
    let model = Model::new(&template);
    tour();
    let used = recording::ports_used();
    for pair in [
        ("documents", "blobs"),
        ("billing", "payments"),
        ("video", "video"),
        ("devices", "health_api"),
        ("notify", "messenger"),
        ("realtime", "push"),
    ] {
        assert!(used.contains(&pair), "the tour saw {pair:?}: {used:?}");
    }
    let failures = links_failures(&model, &used, |f| match f {
        "documents" => Some(links::NONE),
        "appointments" => Some(links::BLOBS),
        other => links_of(other),
    });
    assert_eq!(
        failures,
        [
            "appointments: links `blobs`, which its role cannot use",
            "documents: calls `blobs`, which its LINKS leave out",
        ]
    );
}
