//! Test support (feature `testing`), the one harness every crate's tests use:
//!
//! - a fresh local app in a temporary folder ([`local_app`], [`local_app_in`]), on a
//!   manual clock for router-level tests ([`TestApp`]), requests and JSON answers
//!   through a router ([`request`], [`dispatch`]), accounts and tokens ([`account`],
//!   [`token`]), the notification queue drained ([`drain_notifications`]);
//! - `OUTAGE`, which makes any port fail like an unreachable dependency, so every
//!   function can prove it answers 503 and changes nothing when a dependency is down;
//! - the AWS emulator `scripts/test` starts ([`aws`]), and small helpers
//!   ([`eventually`], [`repo_root`]).
//!
//! The real local stack on random ports (`docare_local::Stack`) lives in the `tests/`
//! crate's `TestStack`: this crate cannot depend on `infra`.

use crate::adapters::local::{self, LocalParts};
use crate::app::{AppContext, Ports};
use crate::auth::accounts::{self, NewAccount, Status};
use crate::auth::Role;
use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::http::{ApiRequest, Router};
use crate::notifications::Notification;
use crate::ports::db::{
    Condition, Database, DbError, Item, Key, Query, QueryPage, Update, WriteOp,
};
use crate::App;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use http::Method;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The local configuration every throw-away app uses (no gateway listening).
pub fn local_test_config() -> Config {
    local::local_config("ws://127.0.0.1:1", "warn")
}

/// A local app in the given folder (a fresh one, or one a previous step wrote).
pub fn local_app_in(dir: &Path, clock: Arc<dyn Clock>) -> LocalParts {
    local::open(dir, local_test_config(), "http://127.0.0.1:1", clock)
        .unwrap_or_else(|e| panic!("local app: {e}"))
}

/// A local app in its own temporary folder (kept alive by the returned guard).
pub fn local_app(clock: Arc<dyn Clock>) -> (LocalParts, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let parts = local_app_in(dir.path(), clock);
    (parts, dir)
}

/// A copy of an app context with some ports swapped (services rebuilt on them).
pub fn with_ports(app: &AppContext, edit: impl FnOnce(&mut Ports)) -> crate::App {
    let mut ports = app.ports();
    edit(&mut ports);
    Arc::new(AppContext::new(app.config.clone(), ports))
}

/// The instant router-level tests start at: 2026-11-23 09:00 UTC.
pub fn test_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("a valid instant"))
}

/// A throw-away local app on a manual clock set to [`test_start`].
pub struct TestApp {
    pub app: App,
    pub clock: Arc<ManualClock>,
    /// The app's data folder (deleted when dropped).
    pub dir: tempfile::TempDir,
    /// The offline Stripe behind `app.payments` (what it received, the events it signed).
    pub stripe: Arc<crate::adapters::local::FakeStripe>,
    /// The offline Twilio behind `app.video` (its rooms, the callbacks it signed).
    pub twilio: Arc<crate::adapters::local::FakeTwilio>,
    /// The offline Google behind `app.health_api` (its OAuth codes, grants, revocations).
    pub google: Arc<crate::adapters::local::FakeGoogleHealth>,
}

impl TestApp {
    pub fn new() -> Self {
        let clock = Arc::new(ManualClock::new(test_start()));
        let (parts, dir) = local_app(clock.clone());
        Self {
            app: parts.app,
            clock,
            dir,
            stripe: parts.stripe,
            twilio: parts.twilio,
            google: parts.google,
        }
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

/// A request with an optional bearer token and JSON body.
pub fn request(method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> ApiRequest {
    // A `?a=b&c=d` query becomes the query parameters, as API Gateway parses them.
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut req = ApiRequest::new(method, path);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        req.query.insert(name.into(), value.into());
    }
    if let Some(token) = token {
        req.headers.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|e| panic!("header: {e}")),
        );
    }
    if let Some(body) = body {
        req.body = serde_json::to_vec(&body)
            .unwrap_or_else(|e| panic!("body: {e}"))
            .into();
    }
    req
}

/// Sends a request through a router: the status and the JSON body (`Null` when empty).
pub async fn dispatch(router: &Router, app: &App, req: ApiRequest) -> (u16, Value) {
    let response = router.dispatch(app, req).await;
    let body = if response.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("JSON body: {e}"))
    };
    (response.status.as_u16(), body)
}

/// The password of every account [`account`] creates (what a signed-in owner confirms
/// a phone change with).
pub const PASSWORD: &str = "test password: violet anchor meadow";

/// Creates an active account (its password: [`PASSWORD`], hashed once per process) and
/// returns its id.
pub async fn account(app: &App, email: &str, full_name: &str, role: Role) -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| {
        crate::auth::passwords::hash(PASSWORD).unwrap_or_else(|_| panic!("password hash"))
    });
    let created = accounts::create(
        app,
        NewAccount {
            email,
            full_name,
            password_hash: hash.clone(),
            role,
            status: Status::Active,
        },
    )
    .await;
    match created {
        Ok(a) => a.id,
        Err(_) => panic!("account"),
    }
}

/// An access token for a user (authentication methods `amr`) in a new session id.
/// `session` is only a label for the reader: the token's `sid` is a fresh ULID (its time
/// is when the session began, what `authenticate` compares with the account's
/// revocations); no session item is stored (use [`session`] for one that can refresh).
pub async fn token(app: &App, user: &str, role: Role, session: &str, amr: &[&str]) -> String {
    let _label = session;
    app.tokens
        .issue(app, user, role, &app.new_id(), amr)
        .await
        .unwrap_or_else(|_| panic!("token"))
        .0
}

/// A real session, as a login opens it: its access token, refresh token and id.
pub struct TestSession {
    pub access: String,
    pub refresh: String,
    pub id: String,
}

/// Opens a session for a user (stored, with its first refresh token).
pub async fn session(app: &App, user: &str, role: Role, amr: &[&str]) -> TestSession {
    let (id, refresh) = crate::store::sessions::open(app, user, role, amr)
        .await
        .unwrap_or_else(|e| panic!("session: {e}"));
    let access = app
        .tokens
        .issue(app, user, role, &id, amr)
        .await
        .unwrap_or_else(|_| panic!("token"))
        .0;
    TestSession {
        access,
        refresh,
        id,
    }
}

/// Every message on the notification queue, oldest first (and removes them): the raw
/// body as queued and the message parsed (still sealed).
pub async fn drain_notifications(app: &App) -> Vec<(String, Notification)> {
    let queue = &app.config.queues.notifications;
    let mut out = Vec::new();
    loop {
        let batch = app
            .queue
            .receive(queue, 10, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("receive: {e}"));
        if batch.is_empty() {
            return out;
        }
        for message in batch {
            app.queue
                .delete(queue, &message.receipt_handle)
                .await
                .unwrap_or_else(|e| panic!("delete: {e}"));
            let sealed: Notification =
                serde_json::from_str(&message.body).unwrap_or_else(|e| panic!("message: {e}"));
            out.push((message.body, sealed));
        }
    }
}

/// Polls `check` until it holds or thirty seconds pass. Only the failing case waits
/// that long; the bound is generous because the in-process queue pollers of a local
/// stack fall behind on a loaded 2-core machine (two seconds failed the dose-reminder
/// test there while six test suites ran, ten seconds the appointment reminder's while
/// five builds ran beside the test suite).
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..1500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// The repository root (this crate lives in `shared/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The AWS emulator `scripts/test` starts (`DOCARE_TEST_AWS_ENDPOINT`).
pub mod aws {
    use crate::ports::db::Index;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };

    pub const ENV_ENDPOINT: &str = "DOCARE_TEST_AWS_ENDPOINT";
    pub const ENV_SKIP: &str = "DOCARE_TEST_SKIP_AWS";

    /// The emulator's URL; `None` (after saying so) when the AWS half is skipped knowingly.
    /// Panics when neither is set: a silently skipped suite proves nothing.
    pub fn endpoint() -> Option<String> {
        match std::env::var(ENV_ENDPOINT) {
            Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_string()),
            _ if std::env::var(ENV_SKIP).as_deref() == Ok("1") => {
                eprintln!("skipped: {ENV_SKIP}=1 (AWS adapter not tested)");
                None
            }
            _ => panic!(
                "AWS emulator not running: run scripts/test, or set {ENV_SKIP}=1 to skip knowingly \
                 ({ENV_ENDPOINT} is unset)"
            ),
        }
    }

    /// SDK configuration for the emulator: fixed region and dummy credentials, nothing
    /// read from the process environment.
    pub fn sdk_config(endpoint: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "docare-tests",
            )))
            .build()
    }

    /// The emulator's SDK configuration, or `None` when skipped.
    pub fn config() -> Option<SdkConfig> {
        endpoint().map(|endpoint| sdk_config(&endpoint))
    }

    /// The environment a child process needs to reach the emulator (and nothing else).
    pub fn child_env(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// A name no other test uses (lower case: valid for buckets, tables and queues).
    pub fn unique(prefix: &str) -> String {
        format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
    }

    /// A fresh stage on the emulator: its own domain and audit tables (`<prefix>-…`), a
    /// KMS key for the envelope, a signing key (tokens and anchors), one queue standing
    /// for all three, and the `Config` a function of that stage reads. `overrides` replace
    /// or add variables (e.g. `DOCARE_SMS_COUNTRY_CODES`).
    pub struct Stage {
        pub table: String,
        pub audit_table: String,
        pub queue_url: String,
        pub config: crate::config::Config,
    }

    pub async fn stage(
        sdk: &SdkConfig,
        endpoint: &str,
        prefix: &str,
        overrides: &[(&str, &str)],
    ) -> Stage {
        let (table, audit_table) = (unique(prefix), unique(&format!("{prefix}-audit")));
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        create_table(&dynamodb, &table, &[Index::Gsi1, Index::Gsi2]).await;
        create_table(&dynamodb, &audit_table, &Index::ALL).await;
        let key_arn = aws_sdk_kms::Client::new(sdk)
            .create_key()
            .send()
            .await
            .unwrap_or_else(|e| panic!("key: {e}"))
            .key_metadata()
            .and_then(|m| m.arn())
            .unwrap_or_else(|| panic!("key without an ARN"))
            .to_string();
        let signing_arn = create_signing_key(sdk).await;
        let queue_url = aws_sdk_sqs::Client::new(sdk)
            .create_queue()
            .queue_name(unique(prefix))
            .send()
            .await
            .unwrap_or_else(|e| panic!("queue: {e}"))
            .queue_url()
            .unwrap_or_else(|| panic!("queue without a URL"))
            .to_string();
        let mut vars: std::collections::HashMap<&str, String> = [
            ("DOCARE_ENV", "dev".to_string()),
            ("DOCARE_TABLE", table.clone()),
            ("DOCARE_AUDIT_TABLE", audit_table.clone()),
            ("DOCARE_QUARANTINE_BUCKET", "unused-q".into()),
            ("DOCARE_DOCUMENTS_BUCKET", "unused-d".into()),
            ("DOCARE_AUDIT_ARCHIVE_BUCKET", "unused-a".into()),
            ("DOCARE_KMS_KEY_ID", key_arn),
            ("DOCARE_SIGNING_KEY_ID", signing_arn.clone()),
            ("DOCARE_AUDIT_ANCHOR_KEY_ID", signing_arn),
            ("DOCARE_SCANS_QUEUE_URL", queue_url.clone()),
            ("DOCARE_REMINDERS_QUEUE_URL", queue_url.clone()),
            ("DOCARE_NOTIFICATIONS_QUEUE_URL", queue_url.clone()),
            ("DOCARE_WS_ENDPOINT", format!("{endpoint}/ws")),
            ("DOCARE_MAIL_FROM", "no-reply@example.com".into()),
        ]
        .into_iter()
        .collect();
        for (name, value) in overrides {
            vars.insert(name, value.to_string());
        }
        let config = crate::config::Config::from_lookup(|name| vars.get(name).cloned())
            .unwrap_or_else(|e| panic!("config: {e}"));
        Stage {
            table,
            audit_table,
            queue_url,
            config,
        }
    }

    /// Creates an asymmetric KMS key (`ECC_NIST_P256`, `SIGN_VERIFY`), as the template's
    /// `SigningKey` and `AuditAnchorKey`, and answers its ARN.
    pub async fn create_signing_key(sdk: &SdkConfig) -> String {
        aws_sdk_kms::Client::new(sdk)
            .create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .send()
            .await
            .unwrap_or_else(|e| panic!("signing key: {e}"))
            .key_metadata()
            .and_then(|m| m.arn())
            .unwrap_or_else(|| panic!("signing key without an ARN"))
            .to_string()
    }

    /// Creates a table with `pk`/`sk` keys and the given indexes, as `template.yaml` does.
    pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str, indexes: &[Index]) {
        let schema = |hash: &str, range: &str| {
            [(hash, KeyType::Hash), (range, KeyType::Range)]
                .into_iter()
                .map(|(n, k)| {
                    KeySchemaElement::builder()
                        .attribute_name(n)
                        .key_type(k)
                        .build()
                        .unwrap_or_else(|e| panic!("schema: {e}"))
                })
                .collect::<Vec<_>>()
        };
        let names = indexes.iter().flat_map(|i| [i.pk_attr(), i.sk_attr()]);
        let attributes = ["pk", "sk"]
            .into_iter()
            .chain(names)
            .map(|n| {
                AttributeDefinition::builder()
                    .attribute_name(n)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap_or_else(|e| panic!("attribute: {e}"))
            })
            .collect();
        let gsis = indexes
            .iter()
            .map(|i| {
                GlobalSecondaryIndex::builder()
                    .index_name(i.name())
                    .set_key_schema(Some(schema(i.pk_attr(), i.sk_attr())))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .unwrap_or_else(|e| panic!("index: {e}"))
            })
            .collect();
        client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attributes))
            .set_key_schema(Some(schema("pk", "sk")))
            .set_global_secondary_indexes(Some(gsis))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create table: {e:?}"));
    }
}

/// A dependency that does not answer: any port, every call `Unavailable`.
pub const OUTAGE: crate::adapters::unavailable::Unavailable =
    crate::adapters::unavailable::Unavailable::Outage;

/// The domain table answers, the audit table does not: proves that a change whose audit
/// event cannot be recorded is not kept, and that nothing is returned unaudited.
pub struct AuditTableDown {
    pub db: Arc<dyn Database>,
    pub audit_table: String,
}

impl AuditTableDown {
    /// `app`'s database with its audit table unreachable.
    pub fn of(app: &AppContext) -> Arc<dyn Database> {
        Arc::new(Self {
            db: app.db.clone(),
            audit_table: app.config.audit_table.clone(),
        })
    }

    fn refuse(&self, table: &str) -> Result<(), DbError> {
        if table == self.audit_table {
            return Err(DbError::Unavailable(Box::new(
                crate::adapters::unavailable::Unavailable::Outage,
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Database for AuditTableDown {
    async fn get(&self, t: &str, k: &Key) -> Result<Option<Item>, DbError> {
        self.refuse(t)?;
        self.db.get(t, k).await
    }
    async fn put(&self, t: &str, i: Item, c: Option<Condition>) -> Result<(), DbError> {
        self.refuse(t)?;
        self.db.put(t, i, c).await
    }
    async fn update(
        &self,
        t: &str,
        k: &Key,
        u: Update,
        c: Option<Condition>,
    ) -> Result<Item, DbError> {
        self.refuse(t)?;
        self.db.update(t, k, u, c).await
    }
    async fn delete(
        &self,
        t: &str,
        k: &Key,
        c: Option<Condition>,
    ) -> Result<Option<Item>, DbError> {
        self.refuse(t)?;
        self.db.delete(t, k, c).await
    }
    async fn query(&self, t: &str, q: Query) -> Result<QueryPage, DbError> {
        self.refuse(t)?;
        self.db.query(t, q).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), DbError> {
        for op in &ops {
            self.refuse(op.target().0)?;
        }
        self.db.transact_write(ops).await
    }
    async fn check(&self, t: &str) -> Result<(), DbError> {
        self.refuse(t)?;
        self.db.check(t).await
    }
}
