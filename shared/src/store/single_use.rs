//! Single-use bearer values (WebSocket tickets, OAuth `state`s): the client holds a
//! random value, the table holds an item keyed by its hash that expires. Redeeming takes
//! the item with one conditional delete, so of any number of parallel redemptions
//! exactly one gets it, and never after its expiry.

use crate::auth::secrets;
use crate::ports::db::{Condition, Item, Key};
use crate::{ApiError, AppContext};

/// The longest value a client may present (ours are 43 characters).
const MAX_CHARS: usize = 64;

/// Takes the item `value` names (at `key_of(hash of value)`), once: `None` when the
/// value is malformed, unknown, expired or already taken.
pub async fn take(
    app: &AppContext,
    value: &str,
    key_of: fn(&str) -> Key,
) -> Result<Option<Item>, ApiError> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Ok(None);
    }
    let key = key_of(&secrets::hash(value));
    // `Exists` holds only for an item whose `expires_at` is still ahead.
    match app
        .db
        .delete(&app.config.table, &key, Some(Condition::Exists))
        .await
    {
        Ok(old) => Ok(old),
        Err(err) if err.is_condition_failed() => Ok(None),
        Err(err) => Err(err.into()),
    }
}
