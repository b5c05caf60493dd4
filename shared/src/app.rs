//! The application context: configuration, one instance of each port, and the services
//! built on the ports (envelope encryption, blind index, token keys). Built once per cold
//! start (or once per local stack) without any network call, shared by every request.

use crate::audit::AuditWriter;
use crate::auth::tokens::TokenKeys;
use crate::config::Config;
use crate::crypto::blind_index::BlindIndex;
use crate::crypto::envelope::Purpose;
use crate::crypto::{CachePolicy, Envelope, KmsCalls, MeteredKeys};
use crate::ports::{
    BlobStore, Clock, Database, HealthApi, KeyService, Messenger, Payments, Push, Queue, Scanner,
    SecretStore, Video,
};
use std::sync::Arc;

/// What handlers receive. Cloning is a reference-count increment.
pub type App = Arc<AppContext>;

/// One adapter per port: what differs between Lambda, the local stack and a test.
#[derive(Clone)]
pub struct Ports {
    pub db: Arc<dyn Database>,
    pub blobs: Arc<dyn BlobStore>,
    pub keys: Arc<dyn KeyService>,
    pub queue: Arc<dyn Queue>,
    pub push: Arc<dyn Push>,
    pub messenger: Arc<dyn Messenger>,
    pub secrets: Arc<dyn SecretStore>,
    /// Stripe (payment intents, refunds): its REST API on AWS, a fake locally.
    pub payments: Arc<dyn Payments>,
    /// Twilio Programmable Video (rooms): its REST API on AWS, a fake locally.
    pub video: Arc<dyn Video>,
    /// The Google Health API's OAuth endpoints: Google's on AWS, a fake locally.
    pub health_api: Arc<dyn HealthApi>,
    /// The malware scanner of uploads: clamd when `DOCARE_CLAMD_ADDRESS` is set, else
    /// the built-in one (the local default).
    pub scanner: Arc<dyn Scanner>,
    pub clock: Arc<dyn Clock>,
}

/// The scanner a configuration names: clamd at its address, else the built-in scanner
/// (EICAR and no hash list), both limited to the upload limit plus the 1 MiB margin
/// clamd is configured with (`adapters::scan::clamd_limits`).
pub fn configured_scanner(config: &Config) -> Arc<dyn Scanner> {
    let limit = config.document_max_bytes + (1 << 20);
    match &config.clamd_address {
        Some(address) => Arc::new(crate::adapters::scan::Clamd::new(
            address.clone(),
            crate::documents::SCAN_TIMEOUT,
        )),
        None => Arc::new(crate::adapters::scan::BuiltinScanner::new(
            Default::default(),
            limit,
        )),
    }
}

pub struct AppContext {
    pub config: Config,
    pub db: Arc<dyn Database>,
    pub blobs: Arc<dyn BlobStore>,
    /// The key service, metered: every KMS call is counted and logged (`kms_calls`).
    pub keys: Arc<dyn KeyService>,
    pub queue: Arc<dyn Queue>,
    pub push: Arc<dyn Push>,
    pub messenger: Arc<dyn Messenger>,
    /// Stripe: only amounts, currencies and opaque ids reach it (`ports::payments`).
    pub payments: Arc<dyn Payments>,
    /// Twilio's rooms: only opaque room names reach it (`ports::video`).
    pub video: Arc<dyn Video>,
    /// The wearable data provider's OAuth endpoints (`ports::health_api`).
    pub health_api: Arc<dyn HealthApi>,
    /// The malware scanner (the scanner worker's; `ports::scanner`).
    pub scanner: Arc<dyn Scanner>,
    pub clock: Arc<dyn Clock>,
    /// KMS calls made through this context (tests and benchmarks assert on them).
    pub kms_calls: Arc<KmsCalls>,
    /// API keys and webhook secrets of outside services, cached with a bounded age.
    pub secrets: crate::secrets::Secrets,
    /// The ports as given (unwrapped), for [`AppContext::ports`].
    given: Ports,
    /// Encrypts and decrypts PHI fields (DESIGN §6) under the `docare-phi` purpose; its
    /// key cache lives as long as the instance, which is what keeps KMS calls rare.
    pub crypto: Arc<Envelope>,
    /// Seals and opens queued e-mail and SMS (`docare-notification` purpose): the
    /// producers and the notify function need it, nothing else.
    pub notification_crypto: Arc<Envelope>,
    /// Keyed lookups on encrypted values (email).
    pub index: BlindIndex,
    /// Signs (auth function) and verifies (every function) access tokens.
    pub tokens: TokenKeys,
    /// The one audit writer (DESIGN §6): hash-chained, append-only, fails closed.
    pub audit: AuditWriter,
    /// This instance's short-lived copies of accounts' revocation state (sessions).
    pub sessions: crate::auth::revocation::SessionCache,
}

impl AppContext {
    /// Wires the services onto the ports. No I/O: keys are fetched on first use.
    pub fn new(config: Config, ports: Ports) -> Self {
        use crate::ports::recording::{
            RecordedBlobs, RecordedDatabase, RecordedHealthApi, RecordedKeys, RecordedMessenger,
            RecordedPayments, RecordedPush, RecordedQueue, RecordedSecrets, RecordedVideo,
        };
        let given = ports.clone();
        // Every port is recorded (see `ports::recording`); keys are also metered.
        let Ports {
            db,
            blobs,
            keys,
            queue,
            push,
            messenger,
            secrets,
            payments,
            video,
            health_api,
            scanner,
            clock,
        } = ports;
        let db: Arc<dyn Database> = Arc::new(RecordedDatabase(db));
        let blobs: Arc<dyn BlobStore> = Arc::new(RecordedBlobs(blobs));
        let queue: Arc<dyn Queue> = Arc::new(RecordedQueue(queue));
        let push: Arc<dyn Push> = Arc::new(RecordedPush(push));
        let messenger: Arc<dyn Messenger> = Arc::new(RecordedMessenger(messenger));
        let payments: Arc<dyn Payments> = Arc::new(RecordedPayments(payments));
        let video: Arc<dyn Video> = Arc::new(RecordedVideo(video));
        let health_api: Arc<dyn HealthApi> = Arc::new(RecordedHealthApi(health_api));
        let secrets =
            crate::secrets::Secrets::new(Arc::new(RecordedSecrets(secrets)), clock.clone());
        let metered = MeteredKeys::new(Arc::new(RecordedKeys(keys)));
        let kms_calls = metered.calls();
        let keys: Arc<dyn KeyService> = Arc::new(metered);
        let stage = config.stage.as_str();
        // One envelope per purpose (`crypto::envelope::Purpose`): separate data keys
        // under separate KMS encryption contexts, so IAM grants each function only the
        // purposes it uses.
        let envelope = |purpose: Purpose| {
            Arc::new(
                Envelope::new(
                    keys.clone(),
                    db.clone(),
                    clock.clone(),
                    &config.table,
                    &config.kms_key_id,
                    stage,
                    CachePolicy::default(),
                )
                .with_purpose(purpose),
            )
        };
        let crypto = envelope(Purpose::Phi);
        let notification_crypto = envelope(Purpose::Notification);
        let audit_crypto = envelope(Purpose::Audit);
        let index = BlindIndex::new(
            keys.clone(),
            db.clone(),
            &config.table,
            &config.kms_key_id,
            stage,
        );
        let tokens = TokenKeys::new(
            stage,
            &config.signing_key_id,
            &config.previous_signing_key_ids,
            config.access_token_secs,
        );
        let audit = AuditWriter::new(db.clone(), audit_crypto, clock.clone(), &config);
        Self {
            config,
            db,
            blobs,
            keys,
            queue,
            push,
            messenger,
            payments,
            video,
            health_api,
            scanner,
            clock,
            kms_calls,
            secrets,
            given,
            crypto,
            notification_crypto,
            index,
            tokens,
            audit,
            sessions: crate::auth::revocation::SessionCache::new(),
        }
    }

    /// A new record id from this app's clock, so ids sort with the time it tells (and a
    /// test with a manual clock gets ids that sort with the times it set).
    pub fn new_id(&self) -> String {
        crate::domain::Id::generate(self.clock.now()).to_string()
    }

    /// Now by this app's clock, in the one API time format.
    pub fn now(&self) -> crate::domain::Timestamp {
        crate::domain::Timestamp::new(self.clock.now())
    }

    /// Another instance of the same deployment: the same configuration and ports, its
    /// own services with cold caches (data keys, signing keys, the audit chain's tip),
    /// as another function's Lambda process has. The local stack gives each function
    /// one, so what a function does on its cold path is attributed to it.
    pub fn new_instance(&self) -> crate::App {
        Arc::new(AppContext::new(self.config.clone(), self.ports()))
    }

    /// The ports this context was built on, as given (tests swap one and rebuild).
    pub fn ports(&self) -> Ports {
        self.given.clone()
    }
}

impl std::fmt::Debug for AppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext")
            .field("stage", &self.config.stage)
            .finish_non_exhaustive()
    }
}
