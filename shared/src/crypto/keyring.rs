//! The branch-key hierarchy (format v2), after the AWS Database Encryption SDK's
//! hierarchical keyring: one random 256-bit **branch key** per purpose and calendar
//! month (UTC), stored in the table wrapped by KMS under an encryption context naming
//! it, from which each value's AES key is derived locally (HKDF with the value's random
//! message id, [`super::format::seal_branch`]). Only wrapping and unwrapping a branch
//! key calls KMS, so every instance of every function shares the month's key: a cold
//! instance reading values written over a month by many instances makes one KMS
//! `Decrypt` per month the values span (per-instance data keys cost one per instance
//! and 5 minutes; `tests` below and the `crypto` benchmark count it).
//!
//! A branch key's id is the ULID of its month's first instant with a zero random part
//! (the same on every instance, so no lookup of "the current key" is needed); its record
//! is `DATAKEY#branch.<purpose>.<id>` / `BRANCHKEY` (under the data-key prefix, so the
//! roles that may read and create data-key records may do the same with branch keys),
//! listed by the `BRANCHKEYS` partition of `gsi1` for `docare-rewrap`. The first
//! instance of a month creates it with a conditional put (`attribute_not_exists`): two
//! instances racing both put, one wins, and the loser reads and uses the winner's key,
//! so there is never more than one key per purpose and month.

use super::envelope::{from_keys, unwrap_record, CryptoError};
use super::format::DATA_KEY_ID_LEN;
use crate::ports::db::{item, Condition, Database, DbError, Item, Key, Value};
use crate::ports::keys::{EncryptionContext, KeyService};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use zeroize::Zeroizing;

/// Partition of `gsi1` listing every branch key (for re-wrapping).
pub const BRANCH_KEYS_INDEX_PK: &str = "BRANCHKEYS";
/// Sort key of a branch-key record.
pub const BRANCH_KEY_SK: &str = "BRANCHKEY";
/// What follows [`crate::store::keys::DATAKEY`] in a branch key's `pk`.
const BRANCH_PK_INFIX: &str = "branch.";

/// The id of the branch key of `now`'s calendar month (UTC).
pub fn branch_key_id(now: DateTime<Utc>) -> [u8; DATA_KEY_ID_LEN] {
    let start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let millis = u64::try_from(start.timestamp_millis()).unwrap_or(0);
    ulid::Ulid::from_parts(millis, 0).to_bytes()
}

/// The month a branch key id stands for (`YYYY-MM`), stored on the record for people.
fn period(id: &[u8; DATA_KEY_ID_LEN]) -> String {
    let millis = ulid::Ulid::from_bytes(*id).timestamp_ms();
    i64::try_from(millis)
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map(|t| t.format("%Y-%m").to_string())
        .unwrap_or_default()
}

/// Record key of a purpose's branch key.
pub fn branch_key_record(purpose: &str, id: &[u8; DATA_KEY_ID_LEN]) -> Key {
    Key::new(
        format!(
            "{}{BRANCH_PK_INFIX}{purpose}.{}",
            crate::store::keys::DATAKEY,
            ulid::Ulid::from_bytes(*id)
        ),
        BRANCH_KEY_SK,
    )
}

/// The purpose and id a branch-key record's `pk` names (`None`: not a branch key).
pub fn parse_branch_key_record(pk: &str) -> Option<(&str, [u8; DATA_KEY_ID_LEN])> {
    let rest = pk
        .strip_prefix(crate::store::keys::DATAKEY)?
        .strip_prefix(BRANCH_PK_INFIX)?;
    let (purpose, id) = rest.rsplit_once('.')?;
    let id = ulid::Ulid::from_string(id).ok()?;
    Some((purpose, id.to_bytes()))
}

/// The KMS encryption context of a branch key: ids only (it is visible in CloudTrail).
/// It names the key (`branch_key_id`), so a wrapped branch key moved to another record
/// (another month or purpose), or passed off as a data key, does not unwrap.
pub fn branch_key_context(
    purpose: &str,
    stage: &str,
    id: &[u8; DATA_KEY_ID_LEN],
) -> EncryptionContext {
    EncryptionContext::new([
        ("purpose", purpose),
        ("stage", stage),
        ("branch_key_id", &ulid::Ulid::from_bytes(*id).to_string()),
    ])
}

/// Where the branch keys of one purpose live, and how they are wrapped.
pub(crate) struct BranchKeys<'a> {
    pub keys: &'a dyn KeyService,
    pub db: &'a dyn Database,
    pub table: &'a str,
    pub kms_key_id: &'a str,
    pub stage: &'a str,
    pub purpose: &'a str,
}

impl BranchKeys<'_> {
    /// Unwraps branch key `id` (one KMS `Decrypt`); a missing record is an integrity
    /// failure (a value names a key that was never made).
    pub async fn open(
        &self,
        id: &[u8; DATA_KEY_ID_LEN],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let record = self.read(id).await?.ok_or(CryptoError::Integrity)?;
        self.unwrap(id, &record).await
    }

    /// Branch key `id`, created if it does not exist yet: one KMS call
    /// (`GenerateDataKey` for the creator, `Decrypt` otherwise; two for the loser of a
    /// creation race, whose own key is discarded unused).
    pub async fn open_or_create(
        &self,
        id: &[u8; DATA_KEY_ID_LEN],
        now: DateTime<Utc>,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if let Some(record) = self.read(id).await? {
            return self.unwrap(id, &record).await;
        }
        let context = branch_key_context(self.purpose, self.stage, id);
        let generated = self
            .keys
            .generate_data_key(self.kms_key_id, &context)
            .await
            .map_err(from_keys)?;
        let key: [u8; 32] = generated
            .plaintext
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Integrity)?;
        let record_key = branch_key_record(self.purpose, id);
        let record = item([
            ("pk", Value::S(record_key.pk)),
            ("sk", Value::S(record_key.sk)),
            ("wrapped", Value::B(generated.ciphertext)),
            ("kms_key_id", Value::S(generated.key_id)),
            (super::envelope::PURPOSE_ATTR, Value::S(self.purpose.into())),
            ("period", Value::S(period(id))),
            ("created_at", Value::N(now.timestamp())),
            (
                crate::ports::db::Index::Gsi1.pk_attr(),
                Value::S(BRANCH_KEYS_INDEX_PK.into()),
            ),
            (
                crate::ports::db::Index::Gsi1.sk_attr(),
                Value::S(format!("{}.{}", self.purpose, ulid::Ulid::from_bytes(*id))),
            ),
        ]);
        // The conditional put decides the race: the record is durable before the key
        // encrypts anything, and only the stored key is ever used.
        match self
            .db
            .put(self.table, record, Some(Condition::NotExists))
            .await
        {
            Ok(()) => Ok(Zeroizing::new(key)),
            Err(DbError::ConditionFailed { .. }) => self.open(id).await,
            Err(err) => Err(CryptoError::StoreUnavailable(err)),
        }
    }

    async fn read(&self, id: &[u8; DATA_KEY_ID_LEN]) -> Result<Option<Item>, CryptoError> {
        self.db
            .get(self.table, &branch_key_record(self.purpose, id))
            .await
            .map_err(CryptoError::StoreUnavailable)
    }

    async fn unwrap(
        &self,
        id: &[u8; DATA_KEY_ID_LEN],
        record: &Item,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        unwrap_record(
            self.keys,
            record,
            &branch_key_context(self.purpose, self.stage, id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("instant")
    }

    #[test]
    fn one_branch_key_id_per_calendar_month() {
        assert_eq!(
            branch_key_id(at(2026, 12, 1, 0)),
            branch_key_id(at(2026, 12, 31, 23))
        );
        assert_ne!(
            branch_key_id(at(2026, 11, 30, 23)),
            branch_key_id(at(2026, 12, 1, 0))
        );
        assert_eq!(period(&branch_key_id(at(2026, 12, 7, 18))), "2026-12");
    }

    #[test]
    fn record_keys_round_trip_and_stay_under_the_data_key_prefix() {
        let id = branch_key_id(at(2026, 12, 7, 18));
        let key = branch_key_record("docare-phi", &id);
        assert!(key.pk.starts_with(crate::store::keys::DATAKEY));
        assert_eq!(parse_branch_key_record(&key.pk), Some(("docare-phi", id)));
        assert_eq!(
            parse_branch_key_record("DATAKEY#01JABCDEFGHJKMNPQRSTVWXYZ0"),
            None
        );
        assert_eq!(
            parse_branch_key_record("DATAKEY#branch.docare-phi.nope"),
            None
        );
    }
}
