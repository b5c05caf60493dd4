//! Which outside services a function's binary links.
//!
//! Why: every SDK client and HTTPS API a binary links costs at every cold start, used or
//! not. Each operation brings vtables and static tables that the loader relocates before
//! `main` (one write per pointer into pages it then owns), and megabytes of code. Most
//! functions use few of the services: S3 is used by 4 of the 23 functions, SES and SNS
//! by 2. A function names its services in a `LINKS` constant (its crate root), and
//! [`crate::lambda`] builds its app with [`aws::build_app_linking`], where every other
//! port is [`Unavailable::NotLinked`]: the compiler drops that adapter, its SDK crate
//! and their statics from the binary.
//!
//! What keeps the sets right: the IAM tour (`tests/e2e/iam.rs`) runs every function's
//! handlers with its own set on the recording ports and fails on any call to a port the
//! set leaves out, and on a set that names a service the function's role cannot call.
//! A call that slipped past both would answer 503 (`Unavailable`), never act.
//!
//! The database (DynamoDB) and the key service (KMS) are in every set: the audit trail
//! and the envelope encryption need them in every function. The clock and the malware
//! scanner link no outside client.
//!
//! [`aws::build_app_linking`]: crate::adapters::aws::build_app_linking
//! [`Unavailable::NotLinked`]: crate::adapters::unavailable::Unavailable::NotLinked

/// A set of linked services: the bits below, or-ed (`BLOBS | QUEUE`).
pub type Links = u16;

/// DynamoDB and KMS only, which every function links.
pub const NONE: Links = 0;
/// S3 (`ports::BlobStore`).
pub const BLOBS: Links = 1;
/// SQS (`ports::Queue`): sending to the queues; SQS itself delivers a worker's batches.
pub const QUEUE: Links = 1 << 1;
/// The API Gateway Management API (`ports::Push`): WebSocket frames.
pub const PUSH: Links = 1 << 2;
/// SES (e-mail) and SNS (SMS) (`ports::Messenger`).
pub const MESSENGER: Links = 1 << 3;
/// Secrets Manager (`ports::SecretStore`): webhook secrets, API keys.
pub const SECRETS: Links = 1 << 4;
/// Stripe's REST API (`ports::Payments`); its API key comes through [`SECRETS`].
pub const PAYMENTS: Links = 1 << 5;
/// Twilio Video's REST API (`ports::Video`); its credentials come through [`SECRETS`].
pub const VIDEO: Links = 1 << 6;
/// Google's OAuth and Health APIs (`ports::HealthApi`); the client secret comes through
/// [`SECRETS`].
pub const HEALTH_API: Links = 1 << 7;
/// Every service: the operations tools and the tests.
pub const ALL: Links = BLOBS | QUEUE | PUSH | MESSENGER | SECRETS | PAYMENTS | VIDEO | HEALTH_API;

/// The services `links` needs: the three HTTPS APIs read their keys through the secret
/// store, so any of them links Secrets Manager too.
pub const fn effective(links: Links) -> Links {
    if links & (PAYMENTS | VIDEO | HEALTH_API) != 0 {
        links | SECRETS
    } else {
        links
    }
}

/// Each service's bit and the name the tour's failures and `/health` use.
pub const NAMES: [(Links, &str); 8] = [
    (BLOBS, "blobs"),
    (QUEUE, "queue"),
    (PUSH, "push"),
    (MESSENGER, "messenger"),
    (SECRETS, "secrets"),
    (PAYMENTS, "payments"),
    (VIDEO, "video"),
    (HEALTH_API, "health_api"),
];

/// The names of the services in `links`, in [`NAMES`]' order.
pub fn names(links: Links) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(bit, _)| links & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_has_one_name() {
        assert_eq!(names(ALL).len(), NAMES.len());
        assert_eq!(names(BLOBS | SECRETS), ["blobs", "secrets"]);
        let bits: Links = NAMES.iter().map(|(bit, _)| bit).sum();
        assert_eq!(bits, ALL, "the bits are distinct and cover ALL");
        assert_eq!(effective(VIDEO), VIDEO | SECRETS);
        assert_eq!(effective(BLOBS), BLOBS);
    }
}
