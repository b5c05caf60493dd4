//! The one pagination scheme: `?limit=&cursor=` in, `{items, next_cursor}` out. The
//! cursor is the store's continuation key, opaque to clients and checked on the way back
//! in (a cursor from another list is a 400, never someone else's page).

use super::ApiRequest;
use crate::encoding::{b64url, unb64url};
use crate::ports::db::{Item, QueryPage, Value};
use crate::ApiError;
use serde::Serialize;
use std::collections::BTreeMap;

pub const DEFAULT_LIMIT: u32 = 25;
pub const MAX_LIMIT: u32 = 100;
const CURSOR_PREFIX: &str = "v1.";

/// What a list endpoint was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// The continuation key, ready for `Query::start`.
    pub start: Option<Item>,
}

impl PageRequest {
    pub fn from_request(req: &ApiRequest) -> Result<Self, ApiError> {
        let limit = req.query_as::<u32>("limit")?.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(format!(
                "query parameter `limit` must be between 1 and {MAX_LIMIT}"
            )));
        }
        let start = req.query_param("cursor").map(decode_cursor).transpose()?;
        Ok(Self { limit, start })
    }

    /// The page after the one whose `next_cursor` this is (`None`: the first page).
    pub fn resume(limit: u32, next_cursor: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            limit,
            start: next_cursor.map(decode_cursor).transpose()?,
        })
    }
}

/// The one attribute of a position cursor (lists merged from several partitions, which
/// resume from a position rather than from one store key).
const POSITION: &str = "before";

/// A cursor that resumes a merged list before `position`.
pub fn position_cursor(position: &str) -> String {
    let mut key = Item::new();
    key.insert(POSITION.to_string(), Value::S(position.to_string()));
    encode_cursor(&key)
}

/// The position a [`position_cursor`] holds; any other cursor is a 400.
pub fn cursor_position(cursor: &str) -> Result<String, ApiError> {
    let item = decode_cursor(cursor)?;
    match (item.len(), item.get(POSITION).and_then(Value::as_str)) {
        (1, Some(value)) => Ok(value.to_string()),
        _ => Err(ApiError::validation(
            "the cursor is not valid for this list",
        )),
    }
}

/// One page of a list, as returned to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of already mapped items and the store's continuation key.
    pub fn new(items: Vec<T>, next: Option<Item>) -> Self {
        Page {
            items,
            next_cursor: next.as_ref().map(encode_cursor),
        }
    }

    /// Maps a store page's items (fallibly: a decryption or decoding failure aborts).
    pub fn from_query<E>(
        page: QueryPage,
        map: impl FnMut(Item) -> Result<T, E>,
    ) -> Result<Self, E> {
        let items = page
            .items
            .into_iter()
            .map(map)
            .collect::<Result<Vec<T>, E>>()?;
        Ok(Page {
            items,
            next_cursor: page.next.as_ref().map(encode_cursor),
        })
    }
}

pub fn encode_cursor(key: &Item) -> String {
    let flat: BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    let json = serde_json::to_vec(&flat).unwrap_or_default();
    format!("{CURSOR_PREFIX}{}", b64url(&json))
}

pub fn decode_cursor(cursor: &str) -> Result<Item, ApiError> {
    let invalid = || ApiError::validation("the cursor is not valid for this list");
    if cursor.len() > 2048 {
        return Err(invalid());
    }
    let bytes = cursor
        .strip_prefix(CURSOR_PREFIX)
        .and_then(unb64url)
        .ok_or_else(invalid)?;
    let flat: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if flat.is_empty() || flat.len() > 4 {
        return Err(invalid());
    }
    Ok(flat.into_iter().map(|(k, v)| (k, Value::S(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::db::item;
    use http::Method;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let key = item([("pk", "USER#1".into()), ("sk", "APPT#2".into())]);
        let cursor = encode_cursor(&key);
        assert!(!cursor.contains("USER"), "cursor is opaque");
        assert_eq!(decode_cursor(&cursor).expect("decodes"), key);
        for bad in ["", "v1.", "v2.abc", "v1.!!!", &"v1.".repeat(1000)] {
            assert_eq!(decode_cursor(bad).expect_err("bad").status(), 400, "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        let mut req = ApiRequest::new(Method::GET, "/x");
        assert_eq!(
            PageRequest::from_request(&req).expect("default").limit,
            DEFAULT_LIMIT
        );
        for bad in ["0", "101", "-1", "x"] {
            req.query.insert("limit".into(), bad.into());
            assert!(PageRequest::from_request(&req).is_err(), "{bad}");
        }
        req.query.insert("limit".into(), "100".into());
        assert_eq!(PageRequest::from_request(&req).expect("max").limit, 100);
    }
}
