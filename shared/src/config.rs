//! Typed configuration. This is the one module that reads environment variables: every
//! other module receives a [`Config`] (or a value taken from it).
//!
//! Start-up validates everything at once and stops with a one-line message that names
//! the missing or bad variable ([`ConfigError`]'s `Display`).

use std::path::PathBuf;

/// Why configuration was refused. The message names the variable, never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0} is not set")]
    Missing(&'static str),
    #[error("configuration error: {name} {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Deployment stage. Decides defaults such as log format; never behaviour that tests skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Local,
    Dev,
    Staging,
    Prod,
    /// The cold-start benchmark's throw-away environment.
    Bench,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Local => "local",
            Stage::Dev => "dev",
            Stage::Staging => "staging",
            Stage::Prod => "prod",
            Stage::Bench => "bench",
        }
    }

    /// The stage named `value` (`local`, `dev`, …), as `DOCARE_ENV` spells it.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "local" => Stage::Local,
            "dev" => Stage::Dev,
            "staging" => Stage::Staging,
            "prod" => Stage::Prod,
            "bench" => Stage::Bench,
            _ => return None,
        })
    }
}

/// References to the three work queues (queue URLs on AWS, queue names locally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues {
    pub scans: String,
    pub reminders: String,
    pub notifications: String,
    /// The device sync queue (`DOCARE_DEVICE_SYNC_QUEUE_URL`): set only for the
    /// functions that use it (the devices function sends, its sync worker consumes).
    pub device_sync: Option<String>,
}

/// Everything a function needs to build its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub stage: Stage,
    /// The single-table domain store.
    pub table: String,
    /// The append-only audit store.
    pub audit_table: String,
    pub quarantine_bucket: String,
    pub documents_bucket: String,
    /// The audit archive (S3 Object Lock, compliance mode): only `audit-watch` writes it.
    pub audit_archive_bucket: String,
    /// KMS key (id, ARN or alias) that wraps data keys.
    pub kms_key_id: String,
    /// KMS asymmetric key (`ECC_NIST_P256`, `SIGN_VERIFY`) that signs access tokens:
    /// only the auth function may `kms:Sign` with it; every verifier fetches its public
    /// half once (`kms:GetPublicKey`).
    pub signing_key_id: String,
    /// Earlier signing keys whose tokens are still accepted and whose public keys the
    /// JWKS still publishes (a rotation's overlap; empty otherwise).
    pub previous_signing_key_ids: Vec<String>,
    /// KMS asymmetric key that signs audit anchors: only `audit-anchor` may sign with
    /// it; the verifier checks anchors with its public half.
    pub audit_anchor_key_id: String,
    pub queues: Queues,
    /// `https://{api}.execute-api.{region}.amazonaws.com/{stage}` for the Management API;
    /// locally the WebSocket gateway's URL.
    pub ws_endpoint: String,
    /// Sender address for e-mail.
    pub mail_from: String,
    /// `tracing` filter directive, e.g. `info` or `shared=debug,info`.
    pub log_filter: String,
    /// Multiplies the rate-limit budgets whose subject is a source IP. Always 1 on
    /// Lambda (no variable sets it there); a local stack started with `--dev-limits`
    /// uses [`LocalSettings::DEV_IP_LIMIT_FACTOR`], because every local client shares
    /// 127.0.0.1 and one developer's typos would otherwise lock everyone out.
    pub ip_limit_factor: i64,
    /// How long patients' sessions may sit unused and last at most (staff sessions are
    /// fixed: `domain::session::STAFF`).
    pub patient_sessions: crate::domain::session::Lifetime,
    /// Where SMS to emergency contacts may go (`DOCARE_SMS_COUNTRY_CODES`).
    pub sms_countries: SmsCountries,
    /// The browser origins that may open the WebSocket (checked at `$connect`) and call
    /// the API from a page (CORS): `DOCARE_ALLOWED_ORIGINS`.
    pub allowed_origins: AllowedOrigins,
    /// How long an access token lives: 15 minutes (DESIGN §6) on every deployment, as
    /// no variable sets it; only a local stack started with `--access-token-ttl`
    /// shortens it, so a client's refresh-after-expiry path can be tried in seconds.
    pub access_token_secs: i64,
    /// Video consultations (`DOCARE_PUBLIC_API_URL`, `DOCARE_VIDEO_JOIN_EARLY_MINUTES`).
    pub video: VideoSettings,
    /// The largest document upload accepted (`DOCARE_DOCUMENT_MAX_BYTES`, default
    /// [`crate::domain::document::DEFAULT_MAX_BYTES`], 25 MiB).
    pub document_max_bytes: u64,
    /// clamd's `host:port` (`DOCARE_CLAMD_ADDRESS`): the scanner worker scans with clamd
    /// when set, else with the built-in scanner (EICAR and a hash list: not a production
    /// scanner, see `docs/documents.md`).
    pub clamd_address: Option<String>,
}

/// Settings of video consultations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSettings {
    /// The public base URL of the HTTP API as Twilio calls it (`https://api.example.com`,
    /// no trailing slash): the status callback URL given to Twilio, and the URL callback
    /// signatures are checked against (never the request's `Host`). `None`: video rooms
    /// and callbacks answer 503 until it is set.
    pub public_api_url: Option<String>,
    /// Tokens are issued from this many minutes before an appointment's start (0–60).
    pub join_early_minutes: i64,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self {
            public_api_url: None,
            join_early_minutes: crate::domain::video::JOIN_EARLY_MINUTES,
        }
    }
}

impl VideoSettings {
    /// The status callback URL (`<public API URL>/api/v1/webhooks/twilio/video`).
    pub fn callback_url(&self) -> Option<String> {
        self.public_api_url
            .as_ref()
            .map(|base| format!("{base}{}", crate::video::CALLBACK_PATH))
    }
}

impl Config {
    /// The lifetime of a session of this role.
    pub fn session_lifetime(&self, role: crate::auth::Role) -> crate::domain::session::Lifetime {
        crate::domain::session::lifetime(role, self.patient_sessions)
    }
}

/// The E.164 country calling codes SMS may be sent to (emergency contacts: checked when a
/// contact is added or changed, and again when an alert is sent). SMS to other countries
/// is refused: premium-rate and toll-fraud numbers sit in a few of them, and a per-message
/// price makes an open relay expensive. The default is [`SmsCountries::DEFAULT`], `+1`: the
/// North American Numbering Plan (the US, Canada and some twenty Caribbean and Pacific
/// countries and territories that share the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsCountries(Vec<String>);

impl SmsCountries {
    /// `DOCARE_SMS_COUNTRY_CODES` when unset.
    pub const DEFAULT: &'static str = "+1";

    /// A comma-separated list of calling codes (`+1,+44`; the `+` is optional): each 1 to 3
    /// digits, not starting with 0. `None` for anything else or an empty list.
    pub fn parse(value: &str) -> Option<Self> {
        let mut codes = Vec::new();
        for code in value.split(',') {
            let code = code.trim();
            let digits = code.strip_prefix('+').unwrap_or(code);
            let valid = (1..=3).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            if !valid {
                return None;
            }
            codes.push(digits.to_string());
        }
        Some(Self(codes))
    }

    /// Whether an E.164 number (`+<digits>`) is in one of the allowed countries.
    pub fn allows(&self, e164: &str) -> bool {
        match e164.strip_prefix('+') {
            Some(digits) => self.0.iter().any(|code| digits.starts_with(code.as_str())),
            None => false,
        }
    }

    /// The codes as configured, `+`-prefixed (for messages and docs).
    pub fn codes(&self) -> Vec<String> {
        self.0.iter().map(|c| format!("+{c}")).collect()
    }
}

impl Default for SmsCountries {
    fn default() -> Self {
        Self(vec!["1".into()])
    }
}

/// The browser origins (`scheme://host[:port]`, exactly as a browser sends `Origin`)
/// allowed to open the WebSocket and, with CORS, to call the API from a page. A request
/// without `Origin` (a native client, a server) is not a browser's and is not refused
/// for it. The default is [`AllowedOrigins::DEFAULT`], the usual local development
/// servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// `DOCARE_ALLOWED_ORIGINS` when unset (and the template parameter's default).
    pub const DEFAULT: &'static str = "http://localhost:3000,http://localhost:5173";

    /// A comma-separated list of origins: each `http` or `https`, a host, an optional
    /// port, and nothing else (no path, query, user or trailing slash). `None` for
    /// anything else or an empty list.
    pub fn parse(value: &str) -> Option<Self> {
        let mut origins = Vec::new();
        for origin in value.split(',') {
            let origin = origin.trim();
            let url = url::Url::parse(origin).ok()?;
            let valid = matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none()
                && url.path() == "/"
                && !origin.ends_with('/');
            // The serialized origin is what a browser sends (lower-case host, no default
            // port); a configured value must already be in that form.
            if !valid || url.origin().ascii_serialization() != origin {
                return None;
            }
            origins.push(origin.to_string());
        }
        Some(Self(origins))
    }

    /// Whether a request's `Origin` header value is allowed (exact match).
    pub fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|allowed| allowed == origin)
    }

    /// The origins as configured.
    pub fn origins(&self) -> &[String] {
        &self.0
    }
}

impl Default for AllowedOrigins {
    fn default() -> Self {
        Self::parse(Self::DEFAULT).unwrap_or(Self(Vec::new()))
    }
}

pub const ENV_STAGE: &str = "DOCARE_ENV";
pub const ENV_TABLE: &str = "DOCARE_TABLE";
pub const ENV_AUDIT_TABLE: &str = "DOCARE_AUDIT_TABLE";
pub const ENV_QUARANTINE_BUCKET: &str = "DOCARE_QUARANTINE_BUCKET";
pub const ENV_DOCUMENTS_BUCKET: &str = "DOCARE_DOCUMENTS_BUCKET";
pub const ENV_AUDIT_ARCHIVE_BUCKET: &str = "DOCARE_AUDIT_ARCHIVE_BUCKET";
pub const ENV_KMS_KEY_ID: &str = "DOCARE_KMS_KEY_ID";
pub const ENV_SIGNING_KEY_ID: &str = "DOCARE_SIGNING_KEY_ID";
pub const ENV_PREVIOUS_SIGNING_KEY_IDS: &str = "DOCARE_PREVIOUS_SIGNING_KEY_IDS";
pub const ENV_AUDIT_ANCHOR_KEY_ID: &str = "DOCARE_AUDIT_ANCHOR_KEY_ID";
pub const ENV_SCANS_QUEUE: &str = "DOCARE_SCANS_QUEUE_URL";
pub const ENV_REMINDERS_QUEUE: &str = "DOCARE_REMINDERS_QUEUE_URL";
pub const ENV_NOTIFICATIONS_QUEUE: &str = "DOCARE_NOTIFICATIONS_QUEUE_URL";
pub const ENV_DEVICE_SYNC_QUEUE: &str = "DOCARE_DEVICE_SYNC_QUEUE_URL";
pub const ENV_WS_ENDPOINT: &str = "DOCARE_WS_ENDPOINT";
pub const ENV_MAIL_FROM: &str = "DOCARE_MAIL_FROM";
pub const ENV_LOG: &str = "DOCARE_LOG";
/// Optional: minutes a patient's session may sit unused (default 1440, at least 15).
pub const ENV_PATIENT_SESSION_IDLE: &str = "DOCARE_PATIENT_SESSION_IDLE_MINUTES";
/// Optional: hours a patient's session lasts at most (default 168, at most 720).
pub const ENV_PATIENT_SESSION_MAX: &str = "DOCARE_PATIENT_SESSION_MAX_HOURS";
/// Optional: [`SmsCountries`], default [`SmsCountries::DEFAULT`].
pub const ENV_SMS_COUNTRY_CODES: &str = "DOCARE_SMS_COUNTRY_CODES";
/// Optional: [`AllowedOrigins`], default [`AllowedOrigins::DEFAULT`] (the local stack reads
/// it too, and its `--allowed-origins` flag).
pub const ENV_ALLOWED_ORIGINS: &str = "DOCARE_ALLOWED_ORIGINS";
/// Optional (video and twilio-webhook): [`VideoSettings::public_api_url`].
pub const ENV_PUBLIC_API_URL: &str = "DOCARE_PUBLIC_API_URL";
/// Optional: [`VideoSettings::join_early_minutes`], default 15.
pub const ENV_VIDEO_JOIN_EARLY_MINUTES: &str = "DOCARE_VIDEO_JOIN_EARLY_MINUTES";

/// Optional: the largest document upload in bytes (default 25 MiB, at most 5 GiB).
pub const ENV_DOCUMENT_MAX_BYTES: &str = "DOCARE_DOCUMENT_MAX_BYTES";
/// Optional: clamd's `host:port` for the scanner worker.
pub const ENV_CLAMD_ADDRESS: &str = "DOCARE_CLAMD_ADDRESS";

/// Every variable a deployed function reads, for docs and tests.
pub const LAMBDA_VARIABLES: &[&str] = &[
    ENV_STAGE,
    ENV_TABLE,
    ENV_AUDIT_TABLE,
    ENV_QUARANTINE_BUCKET,
    ENV_DOCUMENTS_BUCKET,
    ENV_AUDIT_ARCHIVE_BUCKET,
    ENV_KMS_KEY_ID,
    ENV_SIGNING_KEY_ID,
    ENV_AUDIT_ANCHOR_KEY_ID,
    ENV_SCANS_QUEUE,
    ENV_REMINDERS_QUEUE,
    ENV_NOTIFICATIONS_QUEUE,
    ENV_WS_ENDPOINT,
    ENV_MAIL_FROM,
];

impl Config {
    /// Reads the process environment (the Lambda host).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same rules over any lookup, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let stage_name = vars.required(ENV_STAGE)?;
        let stage = Stage::parse(&stage_name).ok_or_else(|| ConfigError::Invalid {
            name: ENV_STAGE,
            reason: "must be one of local, dev, staging, prod, bench".into(),
        })?;
        let ws_endpoint = vars.required(ENV_WS_ENDPOINT)?;
        check_url(ENV_WS_ENDPOINT, &ws_endpoint, &["https", "http", "ws"])?;
        let queues = Queues {
            scans: vars.required(ENV_SCANS_QUEUE)?,
            reminders: vars.required(ENV_REMINDERS_QUEUE)?,
            notifications: vars.required(ENV_NOTIFICATIONS_QUEUE)?,
            device_sync: vars.optional(ENV_DEVICE_SYNC_QUEUE),
        };
        if stage != Stage::Local {
            for (name, url) in [
                (ENV_SCANS_QUEUE, &queues.scans),
                (ENV_REMINDERS_QUEUE, &queues.reminders),
                (ENV_NOTIFICATIONS_QUEUE, &queues.notifications),
            ] {
                check_url(name, url, &["https", "http"])?;
            }
            if let Some(url) = &queues.device_sync {
                check_url(ENV_DEVICE_SYNC_QUEUE, url, &["https", "http"])?;
            }
        }
        let mail_from = vars.required(ENV_MAIL_FROM)?;
        if !looks_like_email(&mail_from) {
            return Err(ConfigError::Invalid {
                name: ENV_MAIL_FROM,
                reason: "must be an e-mail address".into(),
            });
        }
        Ok(Config {
            stage,
            table: vars.name(ENV_TABLE)?,
            audit_table: vars.name(ENV_AUDIT_TABLE)?,
            quarantine_bucket: vars.name(ENV_QUARANTINE_BUCKET)?,
            documents_bucket: vars.name(ENV_DOCUMENTS_BUCKET)?,
            audit_archive_bucket: vars.name(ENV_AUDIT_ARCHIVE_BUCKET)?,
            kms_key_id: vars.name(ENV_KMS_KEY_ID)?,
            signing_key_id: vars.name(ENV_SIGNING_KEY_ID)?,
            previous_signing_key_ids: vars
                .optional(ENV_PREVIOUS_SIGNING_KEY_IDS)
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|id| !id.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            audit_anchor_key_id: vars.name(ENV_AUDIT_ANCHOR_KEY_ID)?,
            queues,
            ws_endpoint,
            mail_from,
            log_filter: vars.optional(ENV_LOG).unwrap_or_else(|| "info".into()),
            ip_limit_factor: 1,
            patient_sessions: patient_sessions(&vars)?,
            sms_countries: match vars.optional(ENV_SMS_COUNTRY_CODES) {
                None => SmsCountries::default(),
                Some(value) => SmsCountries::parse(&value).ok_or_else(|| ConfigError::Invalid {
                    name: ENV_SMS_COUNTRY_CODES,
                    reason: "must be calling codes separated by commas, such as +1,+44".into(),
                })?,
            },
            allowed_origins: allowed_origins(vars.optional(ENV_ALLOWED_ORIGINS))?,
            access_token_secs: crate::domain::session::ACCESS_TOKEN_SECS,
            video: video_settings(&vars)?,
            document_max_bytes: match vars.optional(ENV_DOCUMENT_MAX_BYTES) {
                None => crate::domain::document::DEFAULT_MAX_BYTES,
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=5 << 30).contains(n))
                    .ok_or(ConfigError::Invalid {
                        name: ENV_DOCUMENT_MAX_BYTES,
                        reason: "must be a whole number of bytes from 1 to 5368709120".into(),
                    })?,
            },
            clamd_address: match vars.optional(ENV_CLAMD_ADDRESS) {
                None => None,
                Some(address) => {
                    let address = address.trim().to_string();
                    let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok()
                    });
                    if !valid {
                        return Err(ConfigError::Invalid {
                            name: ENV_CLAMD_ADDRESS,
                            reason: "must be host:port".into(),
                        });
                    }
                    Some(address)
                }
            },
        })
    }
}

/// [`VideoSettings`] from their optional variables.
fn video_settings(vars: &Vars<'_>) -> Result<VideoSettings, ConfigError> {
    let public_api_url = match vars.optional(ENV_PUBLIC_API_URL) {
        None => None,
        Some(value) => {
            let value = value.trim().to_string();
            check_url(ENV_PUBLIC_API_URL, &value, &["https", "http"])?;
            let plain = url::Url::parse(&value)
                .map(|u| u.query().is_none() && u.fragment().is_none())
                .unwrap_or(false);
            if !plain || value.ends_with('/') {
                return Err(ConfigError::Invalid {
                    name: ENV_PUBLIC_API_URL,
                    reason: "must be a base URL without query or trailing slash".into(),
                });
            }
            Some(value)
        }
    };
    let join_early_minutes = match vars.optional(ENV_VIDEO_JOIN_EARLY_MINUTES) {
        None => crate::domain::video::JOIN_EARLY_MINUTES,
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=crate::domain::video::MAX_JOIN_EARLY_MINUTES).contains(n))
            .ok_or(ConfigError::Invalid {
                name: ENV_VIDEO_JOIN_EARLY_MINUTES,
                reason: "must be a whole number of minutes from 0 to 60".into(),
            })?,
    };
    Ok(VideoSettings {
        public_api_url,
        join_early_minutes,
    })
}

/// [`AllowedOrigins`] from the variable or flag value, or the default.
fn allowed_origins(value: Option<String>) -> Result<AllowedOrigins, ConfigError> {
    match value {
        None => Ok(AllowedOrigins::default()),
        Some(value) => AllowedOrigins::parse(&value).ok_or_else(|| ConfigError::Invalid {
            name: ENV_ALLOWED_ORIGINS,
            reason: "must be origins separated by commas, such as https://app.example.com,http://localhost:3000 (scheme, host, optional port; no path or trailing slash)".into(),
        }),
    }
}

/// The patients' session lifetime from its two optional variables.
fn patient_sessions(vars: &Vars<'_>) -> Result<crate::domain::session::Lifetime, ConfigError> {
    use crate::domain::session::{Lifetime, PATIENT_DEFAULT};
    let number = |name: &'static str, unit: i64, default: i64| match vars.optional(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| n.saturating_mul(unit))
            .ok_or(ConfigError::Invalid {
                name,
                reason: "must be a positive whole number".into(),
            }),
    };
    let idle = number(ENV_PATIENT_SESSION_IDLE, 60, PATIENT_DEFAULT.idle_secs)?;
    let absolute = number(
        ENV_PATIENT_SESSION_MAX,
        3_600,
        PATIENT_DEFAULT.absolute_secs,
    )?;
    Lifetime::patient(idle, absolute).map_err(|reason| ConfigError::Invalid {
        name: if idle > absolute || idle < 15 * 60 {
            ENV_PATIENT_SESSION_IDLE
        } else {
            ENV_PATIENT_SESSION_MAX
        },
        reason: reason.into(),
    })
}

/// Settings of the local stack binary: flags win over environment variables, which win
/// over defaults, so two stacks can run side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    pub http_port: u16,
    pub ws_port: u16,
    pub data_dir: PathBuf,
    pub log_filter: String,
    /// `--dev-limits`: per-IP rate limits relaxed for a single developer.
    pub dev_limits: bool,
    /// `--allowed-origins` or `DOCARE_ALLOWED_ORIGINS`: the browser origins allowed.
    pub allowed_origins: AllowedOrigins,
    /// `--access-token-ttl` or `DOCARE_LOCAL_ACCESS_TOKEN_TTL`: access-token lifetime in
    /// seconds, [`LocalSettings::ACCESS_TOKEN_TTL_RANGE`]; 900 unless set.
    pub access_token_secs: i64,
}

pub const ENV_LOCAL_PORT: &str = "DOCARE_LOCAL_PORT";
pub const ENV_LOCAL_DEV_LIMITS: &str = "DOCARE_LOCAL_DEV_LIMITS";
pub const ENV_LOCAL_WS_PORT: &str = "DOCARE_LOCAL_WS_PORT";
pub const ENV_LOCAL_DATA_DIR: &str = "DOCARE_LOCAL_DATA_DIR";
pub const ENV_LOCAL_ACCESS_TOKEN_TTL: &str = "DOCARE_LOCAL_ACCESS_TOKEN_TTL";

impl LocalSettings {
    pub const DEFAULT_HTTP_PORT: u16 = 5000;
    pub const DEFAULT_WS_PORT: u16 = 5001;
    pub const DEFAULT_DATA_DIR: &'static str = ".docare-local";
    /// How much `--dev-limits` multiplies the per-IP budgets (5 failed sign-ins per 15
    /// minutes become 500).
    pub const DEV_IP_LIMIT_FACTOR: i64 = 100;
    /// What `--access-token-ttl` accepts: from a few seconds (a test that waits for
    /// expiry) up to the production lifetime, never longer.
    pub const ACCESS_TOKEN_TTL_RANGE: std::ops::RangeInclusive<i64> =
        5..=crate::domain::session::ACCESS_TOKEN_SECS;

    /// The factor for [`Config::ip_limit_factor`]: production values unless asked.
    pub fn ip_limit_factor(&self) -> i64 {
        if self.dev_limits {
            Self::DEV_IP_LIMIT_FACTOR
        } else {
            1
        }
    }

    /// Reads flags (`--port`, `--ws-port`, `--data-dir`, `--allowed-origins`,
    /// `--dev-limits`) and the process environment.
    pub fn from_args_and_env(args: &[String]) -> Result<Self, ConfigError> {
        Self::parse(args, |name| std::env::var(name).ok())
    }

    pub fn parse(
        args: &[String],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let mut http_port = vars.optional(ENV_LOCAL_PORT).map(|v| (ENV_LOCAL_PORT, v));
        let mut ws_port = vars
            .optional(ENV_LOCAL_WS_PORT)
            .map(|v| (ENV_LOCAL_WS_PORT, v));
        let mut data_dir = vars.optional(ENV_LOCAL_DATA_DIR);
        let mut origins = vars.optional(ENV_ALLOWED_ORIGINS);
        let mut access_ttl = vars
            .optional(ENV_LOCAL_ACCESS_TOKEN_TTL)
            .map(|v| (ENV_LOCAL_ACCESS_TOKEN_TTL, v));
        let mut dev_limits = match vars.optional(ENV_LOCAL_DEV_LIMITS).as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: ENV_LOCAL_DEV_LIMITS,
                    reason: "must be 1 or 0".into(),
                })
            }
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if arg == "--dev-limits" {
                dev_limits = true;
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            let name: &'static str = match flag {
                "--port" => "--port",
                "--ws-port" => "--ws-port",
                "--data-dir" => "--data-dir",
                "--allowed-origins" => "--allowed-origins",
                "--access-token-ttl" => "--access-token-ttl",
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "argument",
                        reason: format!(
                            "{flag} is not a known flag (use --port, --ws-port, --data-dir, --allowed-origins, --access-token-ttl, --dev-limits)"
                        ),
                    })
                }
            };
            let value = match inline.or_else(|| iter.next().cloned()) {
                Some(value) => value,
                None => return Err(ConfigError::Missing(name)),
            };
            match name {
                "--port" => http_port = Some((name, value)),
                "--ws-port" => ws_port = Some((name, value)),
                "--allowed-origins" => origins = Some(value),
                "--access-token-ttl" => access_ttl = Some((name, value)),
                _ => data_dir = Some(value),
            }
        }
        let port = |setting: Option<(&'static str, String)>, default: u16| match setting {
            None => Ok(default),
            Some((name, value)) => value
                .trim()
                .parse::<u16>()
                .map_err(|_| ConfigError::Invalid {
                    name,
                    reason: "must be a port number from 0 to 65535".into(),
                }),
        };
        let settings = LocalSettings {
            http_port: port(http_port, Self::DEFAULT_HTTP_PORT)?,
            ws_port: port(ws_port, Self::DEFAULT_WS_PORT)?,
            data_dir: PathBuf::from(data_dir.unwrap_or_else(|| Self::DEFAULT_DATA_DIR.into())),
            log_filter: vars.optional(ENV_LOG).unwrap_or_else(|| "info".into()),
            dev_limits,
            allowed_origins: allowed_origins(origins)?,
            access_token_secs: match access_ttl {
                None => crate::domain::session::ACCESS_TOKEN_SECS,
                Some((name, value)) => value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|secs| Self::ACCESS_TOKEN_TTL_RANGE.contains(secs))
                    .ok_or_else(|| ConfigError::Invalid {
                        name,
                        reason: format!(
                            "must be seconds from {} to {}",
                            Self::ACCESS_TOKEN_TTL_RANGE.start(),
                            Self::ACCESS_TOKEN_TTL_RANGE.end()
                        ),
                    })?,
            },
        };
        if settings.http_port != 0 && settings.http_port == settings.ws_port {
            return Err(ConfigError::Invalid {
                name: "--ws-port",
                reason: "must differ from --port".into(),
            });
        }
        Ok(settings)
    }
}

struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn optional(&self, name: &'static str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// A resource name: non-empty, no whitespace.
    fn name(&self, name: &'static str) -> Result<String, ConfigError> {
        let value = self.required(name)?;
        if value.chars().any(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                name,
                reason: "must not contain whitespace".into(),
            });
        }
        Ok(value)
    }
}

fn check_url(name: &'static str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(url) if schemes.contains(&url.scheme()) && url.host().is_some() => Ok(()),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("must be a {} URL", schemes.join("/")),
        }),
    }
}

fn looks_like_email(value: &str) -> bool {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !value.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn valid() -> HashMap<&'static str, String> {
        HashMap::from([
            (ENV_STAGE, "dev".to_string()),
            (ENV_TABLE, "docare-dev".into()),
            (ENV_AUDIT_TABLE, "docare-audit-dev".into()),
            (ENV_QUARANTINE_BUCKET, "q".into()),
            (ENV_DOCUMENTS_BUCKET, "d".into()),
            (ENV_AUDIT_ARCHIVE_BUCKET, "a".into()),
            (ENV_KMS_KEY_ID, "alias/docare-dev".into()),
            (ENV_SIGNING_KEY_ID, "alias/docare-dev-signing".into()),
            (ENV_AUDIT_ANCHOR_KEY_ID, "alias/docare-dev-anchor".into()),
            (
                ENV_SCANS_QUEUE,
                "https://sqs.eu-west-1.amazonaws.com/1/scans".into(),
            ),
            (
                ENV_REMINDERS_QUEUE,
                "https://sqs.eu-west-1.amazonaws.com/1/rem".into(),
            ),
            (
                ENV_NOTIFICATIONS_QUEUE,
                "https://sqs.eu-west-1.amazonaws.com/1/n".into(),
            ),
            (
                ENV_WS_ENDPOINT,
                "https://abc.execute-api.eu-west-1.amazonaws.com/dev".into(),
            ),
            (ENV_MAIL_FROM, "no-reply@docare.example".into()),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn a_complete_environment_loads() {
        let config = load(&valid()).expect("valid config");
        assert_eq!(config.stage, Stage::Dev);
        assert_eq!(config.log_filter, "info");
        assert_eq!(
            config.patient_sessions,
            crate::domain::session::PATIENT_DEFAULT
        );
    }

    #[test]
    fn allowed_origins_default_to_local_dev_servers_and_are_exact() {
        let config = load(&valid()).expect("valid config");
        assert_eq!(
            config.allowed_origins.origins(),
            ["http://localhost:3000", "http://localhost:5173"]
        );
        assert!(config.allowed_origins.allows("http://localhost:5173"));
        for refused in [
            "http://localhost:5174",
            "https://localhost:3000",
            "http://localhost:3000/",
            "http://localhost",
            "null",
            "",
        ] {
            assert!(!config.allowed_origins.allows(refused), "{refused}");
        }
        let mut vars = valid();
        vars.insert(
            ENV_ALLOWED_ORIGINS,
            "https://app.docare.example, https://care.docare.example:8443".into(),
        );
        let config = load(&vars).expect("valid");
        assert!(config
            .allowed_origins
            .allows("https://care.docare.example:8443"));
        assert!(!config.allowed_origins.allows("http://localhost:3000"));
        // (A blank value counts as unset, as for every optional variable.)
        for bad in [
            "app.docare.example",
            "https://app.docare.example/",
            "https://app.docare.example/path",
            "https://APP.docare.example",
            "https://app.docare.example:443",
            "https://user@app.docare.example",
            "ftp://app.docare.example",
            "https://a.example,,https://b.example",
        ] {
            let mut vars = valid();
            vars.insert(ENV_ALLOWED_ORIGINS, bad.into());
            match load(&vars) {
                Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, ENV_ALLOWED_ORIGINS),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn patient_session_lifetimes_are_configurable_within_bounds() {
        use crate::auth::Role;
        let mut vars = valid();
        vars.insert(ENV_PATIENT_SESSION_IDLE, "60".into());
        vars.insert(ENV_PATIENT_SESSION_MAX, "24".into());
        let config = load(&vars).expect("valid");
        assert_eq!(config.session_lifetime(Role::Patient).idle_secs, 3_600);
        assert_eq!(config.session_lifetime(Role::Patient).absolute_secs, 86_400);
        assert_eq!(
            config.session_lifetime(Role::Provider),
            crate::domain::session::STAFF,
            "staff are not configurable"
        );
        for (name, value) in [
            (ENV_PATIENT_SESSION_IDLE, "5"),
            (ENV_PATIENT_SESSION_IDLE, "20000"),
            (ENV_PATIENT_SESSION_IDLE, "soon"),
            (ENV_PATIENT_SESSION_MAX, "1000"),
        ] {
            let mut vars = valid();
            vars.insert(name, value.into());
            match load(&vars) {
                Err(ConfigError::Invalid { name: named, .. }) => assert_eq!(named, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn each_missing_variable_is_named_in_one_line() {
        for name in LAMBDA_VARIABLES {
            let mut vars = valid();
            vars.remove(name);
            let err = load(&vars).expect_err("must fail");
            assert_eq!(err, ConfigError::Missing(name));
            let message = err.to_string();
            assert!(
                message.contains(name) && !message.contains('\n'),
                "{message}"
            );
        }
    }

    #[test]
    fn bad_values_are_named_without_echoing_them() {
        let cases = [
            (ENV_STAGE, "production"),
            (ENV_WS_ENDPOINT, "not a url"),
            (ENV_SCANS_QUEUE, "scans"),
            (ENV_MAIL_FROM, "nobody"),
            (ENV_TABLE, "two words"),
        ];
        for (name, value) in cases {
            let mut vars = valid();
            vars.insert(name, value.into());
            match load(&vars) {
                Err(ConfigError::Invalid { name: got, reason }) => {
                    assert_eq!(got, name);
                    assert!(!reason.contains(value));
                }
                other => panic!("{name}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn sms_countries_default_to_north_america_and_are_configurable() {
        let config = load(&valid()).expect("valid config");
        assert_eq!(config.sms_countries, SmsCountries::default());
        assert!(config.sms_countries.allows("+14155550123"));
        assert!(!config.sms_countries.allows("+442071234567"));
        assert!(!config.sms_countries.allows("14155550123"));
        let mut vars = valid();
        vars.insert(ENV_SMS_COUNTRY_CODES, " +1, 44 ,+353".into());
        let config = load(&vars).expect("list");
        assert_eq!(config.sms_countries.codes(), ["+1", "+44", "+353"]);
        assert!(config.sms_countries.allows("+442071234567"));
        assert!(config.sms_countries.allows("+353861234567"));
        assert!(!config.sms_countries.allows("+33612345678"));
        for bad in ["+", "+0", "+1234", "1,,44", "+1;+44", "uk"] {
            vars.insert(ENV_SMS_COUNTRY_CODES, bad.into());
            match load(&vars) {
                Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, ENV_SMS_COUNTRY_CODES),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_access_token_lifetime_is_fifteen_minutes_unless_a_local_stack_shortens_it() {
        let defaults = LocalSettings::parse(&[], |_| None).expect("defaults");
        assert_eq!(defaults.access_token_secs, 900);
        let flag = LocalSettings::parse(&["--access-token-ttl=20".into()], |_| None);
        assert_eq!(flag.expect("flag").access_token_secs, 20);
        let env = |n: &str| (n == ENV_LOCAL_ACCESS_TOKEN_TTL).then(|| "30".to_string());
        assert_eq!(
            LocalSettings::parse(&[], env)
                .expect("env")
                .access_token_secs,
            30
        );
        for bad in ["4", "901", "ten"] {
            let err = LocalSettings::parse(&["--access-token-ttl".into(), bad.into()], |_| None)
                .expect_err("out of range");
            assert!(err.to_string().contains("--access-token-ttl"), "{err}");
        }
        // Lambda has no such switch.
        assert_eq!(load(&valid()).expect("config").access_token_secs, 900);
    }

    #[test]
    fn local_settings_prefer_flags_over_env_over_defaults() {
        let none = |_: &str| None;
        let defaults = LocalSettings::parse(&[], none).expect("defaults");
        assert_eq!((defaults.http_port, defaults.ws_port), (5000, 5001));

        let env = |name: &str| (name == ENV_LOCAL_PORT).then(|| "6000".to_string());
        let from_env = LocalSettings::parse(&[], env).expect("env");
        assert_eq!(from_env.http_port, 6000);

        let args: Vec<String> = ["--port", "7000", "--ws-port=7001", "--data-dir", "/tmp/x"]
            .map(String::from)
            .to_vec();
        let from_flags = LocalSettings::parse(&args, env).expect("flags");
        assert_eq!((from_flags.http_port, from_flags.ws_port), (7000, 7001));
        assert_eq!(from_flags.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn dev_limits_are_off_unless_asked_for() {
        let defaults = LocalSettings::parse(&[], |_| None).expect("defaults");
        assert!(!defaults.dev_limits);
        assert_eq!(defaults.ip_limit_factor(), 1);
        let flag = LocalSettings::parse(&["--dev-limits".into()], |_| None).expect("flag");
        assert_eq!(flag.ip_limit_factor(), LocalSettings::DEV_IP_LIMIT_FACTOR);
        let env = |name: &str| (name == ENV_LOCAL_DEV_LIMITS).then(|| "1".to_string());
        assert!(LocalSettings::parse(&[], env).expect("env").dev_limits);
        let bad = |name: &str| (name == ENV_LOCAL_DEV_LIMITS).then(|| "yes".to_string());
        let err = LocalSettings::parse(&[], bad).expect_err("bad value");
        assert!(err.to_string().contains(ENV_LOCAL_DEV_LIMITS));
        // Lambda has no such switch.
        assert_eq!(load(&valid()).expect("config").ip_limit_factor, 1);
    }

    #[test]
    fn bad_local_settings_name_the_setting() {
        let env = |name: &str| (name == ENV_LOCAL_WS_PORT).then(|| "abc".to_string());
        let err = LocalSettings::parse(&[], env).expect_err("bad port");
        assert!(err.to_string().contains(ENV_LOCAL_WS_PORT));
        let err = LocalSettings::parse(&["--bogus".into()], |_| None).expect_err("bad flag");
        assert!(err.to_string().contains("--bogus"));
        let err = LocalSettings::parse(&["--port".into()], |_| None).expect_err("no value");
        assert_eq!(err, ConfigError::Missing("--port"));
    }
}
