//! Item rules, free of I/O: what a valid item id and body are, which attributes the service owns,
//! how a stored item is stamped, and how an idempotency key maps to an item id.
//!
//! Idempotency rule: a create carrying `Idempotency-Key: K` stores `_idempotency = sha256(K)` on
//! the item. When the body names no `item_id`, the id is derived from the key
//! (`idem-` + the first 32 hex digits of sha256(K)), so the same create sent to any region lands on
//! the same item. When the conditional write finds the id taken, an item carrying the same key hash
//! and the same request fingerprint is a replay (answered with the stored item as it is now,
//! nothing written); the same key with another request is refused (409 `idempotency_key_reused`);
//! any other item is a conflict (409 `item_exists`).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// An item as JSON attributes (including the service-owned ones).
pub type Item = Map<String, Value>;

/// The key attribute.
pub const ID: &str = "item_id";
/// Attributes only the service writes.
pub const REGION: &str = "region";
pub const CREATED_AT: &str = "created_at";
pub const UPDATED_AT: &str = "updated_at";
pub const VERSION: &str = "version";
/// Where the hash of a create's idempotency key is kept (never shown to clients).
pub const IDEMPOTENCY: &str = "_idempotency";
/// Where the hash of the create request that used that key is kept (never shown to clients).
pub const REQUEST: &str = "_request";
/// DynamoDB's item size limit (400 KB); larger items are refused before any write.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's limit for a partition key value.
pub const MAX_ID_BYTES: usize = 1024;
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

const SYSTEM: [&str; 4] = [REGION, CREATED_AT, UPDATED_AT, VERSION];

/// Why an item or its id was refused. Every variant is a client error (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ItemError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("item_id is required")]
    MissingId,
    #[error("item_id must be a string")]
    IdNotString,
    #[error("item_id must not be empty")]
    EmptyId,
    #[error("item_id is longer than {MAX_ID_BYTES} bytes")]
    IdTooLong,
    #[error("item_id must not contain control characters")]
    IdControlChars,
    #[error("item_id in the body ({body:?}) differs from the one in the path ({path:?})")]
    IdMismatch { body: String, path: String },
    #[error("attribute {0:?} is set by the service and cannot be written")]
    Reserved(String),
    #[error("attribute names must not be empty")]
    EmptyAttributeName,
    #[error("attribute {0:?} holds a number DynamoDB cannot store (38 digits, 1e-130..1e126)")]
    BadNumber(String),
    #[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters")]
    BadIdempotencyKey,
}

impl ItemError {
    /// The stable error code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::NotAnObject => "body_not_object",
            Self::MissingId
            | Self::IdNotString
            | Self::EmptyId
            | Self::IdTooLong
            | Self::IdControlChars
            | Self::IdMismatch { .. } => "invalid_item_id",
            Self::Reserved(_) => "reserved_attribute",
            Self::EmptyAttributeName | Self::BadNumber(_) => "invalid_attribute",
            Self::BadIdempotencyKey => "invalid_idempotency_key",
        }
    }
}

/// Checks an item id: non-empty, at most 1024 bytes, no control characters.
pub fn validate_id(id: &str) -> Result<(), ItemError> {
    if id.is_empty() {
        return Err(ItemError::EmptyId);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(ItemError::IdTooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(ItemError::IdControlChars);
    }
    Ok(())
}

/// Parses a request body that must be a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Item, ItemError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ItemError::NotAnObject),
        Err(e) => Err(ItemError::InvalidJson(e.to_string())),
    }
}

/// The client's part of a write: the id it named (if any) and the attributes it may set.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientItem {
    pub id: Option<String>,
    pub attributes: Item,
}

/// Splits a body into the id and the client attributes, refusing service-owned names.
pub fn client_item(mut body: Item) -> Result<ClientItem, ItemError> {
    let id = match body.remove(ID) {
        None => None,
        Some(Value::String(id)) => {
            validate_id(&id)?;
            Some(id)
        }
        Some(_) => return Err(ItemError::IdNotString),
    };
    for (name, value) in &body {
        if name.is_empty() {
            return Err(ItemError::EmptyAttributeName);
        }
        if SYSTEM.contains(&name.as_str()) || name.starts_with('_') {
            return Err(ItemError::Reserved(name.clone()));
        }
        check_numbers(name, value)?;
    }
    Ok(ClientItem {
        id,
        attributes: body,
    })
}

fn check_numbers(name: &str, value: &Value) -> Result<(), ItemError> {
    match value {
        Value::Number(n) => {
            if storable_number(&n.to_string()) {
                Ok(())
            } else {
                Err(ItemError::BadNumber(name.to_owned()))
            }
        }
        Value::Array(values) => values.iter().try_for_each(|v| check_numbers(name, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.is_empty() {
                Err(ItemError::EmptyAttributeName)
            } else {
                check_numbers(name, v)
            }
        }),
        _ => Ok(()),
    }
}

/// DynamoDB numbers: at most 38 significant digits, magnitude 1e-130 to 1e126 (or zero).
fn storable_number(text: &str) -> bool {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.len() > 38 {
        return false;
    }
    match text.parse::<f64>() {
        Ok(0.0) => true,
        Ok(v) => v.is_finite() && v.abs() < 1e126 && v.abs() >= 1e-130,
        Err(_) => false,
    }
}

/// Checks an `Idempotency-Key` header value.
pub fn validate_idempotency_key(key: &str) -> Result<(), ItemError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok {
        Ok(())
    } else {
        Err(ItemError::BadIdempotencyKey)
    }
}

/// The hash of an idempotency key, as stored on the item.
pub fn idempotency_hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A fingerprint of a create request (id and attributes as the client sent them), so a key
/// reused with a different body is told apart from a replay. `Map` keeps keys sorted, so the
/// JSON text is canonical.
pub fn request_fingerprint(request: &ClientItem) -> String {
    let canonical = serde_json::json!([request.id, request.attributes]).to_string();
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// The item id a keyed create gets when the body names none: the same in every region.
pub fn id_for_idempotency_key(key: &str) -> String {
    format!("idem-{}", &idempotency_hash(key)[..32])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is writing and when: the service-owned facts stamped on every write.
#[derive(Debug, Clone, Copy)]
pub struct WriteStamp<'a> {
    pub region: &'a str,
    /// RFC 3339 with milliseconds, UTC.
    pub now: &'a str,
}

/// A new item: the client's attributes plus id, region, times and version 1.
pub fn new_item(
    id: &str,
    attributes: Item,
    stamp: WriteStamp<'_>,
    idempotency: Option<Idempotency<'_>>,
) -> Item {
    let mut item = attributes;
    item.insert(ID.into(), Value::String(id.into()));
    item.insert(REGION.into(), stamp.region.into());
    item.insert(CREATED_AT.into(), stamp.now.into());
    item.insert(UPDATED_AT.into(), stamp.now.into());
    item.insert(VERSION.into(), 1.into());
    if let Some(Idempotency { key, request }) = idempotency {
        item.insert(IDEMPOTENCY.into(), idempotency_hash(key).into());
        item.insert(REQUEST.into(), request.into());
    }
    item
}

/// A create's idempotency key and the fingerprint of its request.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub request: &'a str,
}

/// What a create that found its id taken is, given the stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collision {
    /// The same key and the same request: answer with the stored item, write nothing.
    Replay,
    /// The same key with another request: refused.
    KeyReused,
    /// Another create's item.
    Taken,
}

/// Classifies a create that found `stored` under its id.
pub fn collision(stored: &Item, idempotency: Option<Idempotency<'_>>) -> Collision {
    match idempotency {
        Some(i) if created_with_key(stored, i.key) => {
            if stored.get(REQUEST).and_then(Value::as_str) == Some(i.request) {
                Collision::Replay
            } else {
                Collision::KeyReused
            }
        }
        _ => Collision::Taken,
    }
}

/// A replacement: the client's attributes, keeping `created_at` (and the idempotency hash) of the
/// previous item, with the version one above it. Without a previous item it is a new item.
pub fn replacement(
    id: &str,
    attributes: Item,
    stamp: WriteStamp<'_>,
    previous: Option<&Item>,
) -> Item {
    let Some(previous) = previous else {
        return new_item(id, attributes, stamp, None);
    };
    let mut item = new_item(id, attributes, stamp, None);
    if let Some(created) = previous.get(CREATED_AT) {
        item.insert(CREATED_AT.into(), created.clone());
    }
    for internal in [IDEMPOTENCY, REQUEST] {
        if let Some(hash) = previous.get(internal) {
            item.insert(internal.into(), hash.clone());
        }
    }
    item.insert(VERSION.into(), (version_of(previous) + 1).into());
    item
}

/// The stored version of an item (0 when it has none, e.g. written by another tool).
pub fn version_of(item: &Item) -> u64 {
    item.get(VERSION).and_then(Value::as_u64).unwrap_or(0)
}

/// True when `item` was created with the idempotency key `key`.
pub fn created_with_key(item: &Item, key: &str) -> bool {
    item.get(IDEMPOTENCY).and_then(Value::as_str) == Some(idempotency_hash(key).as_str())
}

/// The item as clients see it: without internal attributes.
pub fn public_view(mut item: Item) -> Item {
    item.retain(|name, _| !name.starts_with('_'));
    item
}

/// Parses an `If-Match` value (`"3"`, `3`, or `W/"3"`) into a version.
pub fn parse_if_match(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    raw.trim_matches('"').parse().ok()
}

/// The `ETag` for a version.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Percent-encodes an id for a URL path segment (unreserved characters stay as they are).
pub fn encode_path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STAMP: WriteStamp<'static> = WriteStamp {
        region: "eu-west-1",
        now: "2026-11-29T10:00:00.000Z",
    };

    fn obj(v: Value) -> Item {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ids_are_checked() {
        assert_eq!(validate_id(""), Err(ItemError::EmptyId));
        assert_eq!(validate_id(&"a".repeat(1025)), Err(ItemError::IdTooLong));
        assert!(validate_id(&"a".repeat(1024)).is_ok());
        assert_eq!(validate_id("a\nb"), Err(ItemError::IdControlChars));
        assert!(validate_id("élan/ü 1").is_ok());
    }

    #[test]
    fn bodies_must_be_objects() {
        assert_eq!(parse_object(b"[1]"), Err(ItemError::NotAnObject));
        assert_eq!(parse_object(b"{").unwrap_err().code(), "invalid_json");
        assert!(parse_object(br#"{"a":1}"#).is_ok());
    }

    #[test]
    fn service_attributes_cannot_be_written() {
        for name in [
            "region",
            "created_at",
            "updated_at",
            "version",
            "_idempotency",
            "_x",
        ] {
            let err = client_item(obj(json!({ name: 1 }))).unwrap_err();
            assert_eq!(err, ItemError::Reserved(name.into()));
        }
        assert_eq!(
            client_item(obj(json!({"item_id": 5}))).unwrap_err(),
            ItemError::IdNotString
        );
    }

    #[test]
    fn unstorable_numbers_are_refused() {
        let big = obj(serde_json::from_str(r#"{"n": 1e200}"#).unwrap());
        assert_eq!(client_item(big).unwrap_err().code(), "invalid_attribute");
        let nested = obj(json!({"a": {"b": [1, 1.5e-200]}}));
        assert!(client_item(nested).is_err());
        assert!(client_item(obj(json!({"n": 12345678901234567890u64, "f": 0.5}))).is_ok());
    }

    #[test]
    fn new_items_are_stamped() {
        let idem = Idempotency {
            key: "k",
            request: "r1",
        };
        let item = new_item("a", obj(json!({"x": 1})), STAMP, Some(idem));
        assert_eq!(item[REGION], "eu-west-1");
        assert_eq!(item[CREATED_AT], STAMP.now);
        assert_eq!(item[VERSION], 1);
        assert!(created_with_key(&item, "k"));
        assert!(!created_with_key(&item, "other"));
        assert_eq!(collision(&item, Some(idem)), Collision::Replay);
        let other_body = Idempotency {
            key: "k",
            request: "r2",
        };
        assert_eq!(collision(&item, Some(other_body)), Collision::KeyReused);
        let other_key = Idempotency {
            key: "k2",
            request: "r1",
        };
        assert_eq!(collision(&item, Some(other_key)), Collision::Taken);
        assert_eq!(collision(&item, None), Collision::Taken);
        let public = public_view(item);
        assert!(!public.contains_key(IDEMPOTENCY) && !public.contains_key(REQUEST));
    }

    #[test]
    fn replacement_keeps_creation_and_bumps_version() {
        let idem = Idempotency {
            key: "k",
            request: "r1",
        };
        let old = new_item("a", Item::new(), STAMP, Some(idem));
        let later = WriteStamp {
            region: "eu-central-1",
            now: "2026-11-29T11:00:00.000Z",
        };
        let new = replacement("a", obj(json!({"y": 2})), later, Some(&old));
        assert_eq!(new[CREATED_AT], STAMP.now);
        assert_eq!(new[UPDATED_AT], later.now);
        assert_eq!(new[REGION], "eu-central-1");
        assert_eq!(version_of(&new), 2);
        assert_eq!(collision(&new, Some(idem)), Collision::Replay);
        assert!(!new.contains_key("x"));
    }

    #[test]
    fn request_fingerprints_tell_bodies_apart() {
        let a = client_item(obj(json!({"x": 1, "y": 2}))).unwrap();
        let same = client_item(obj(json!({"y": 2, "x": 1}))).unwrap();
        let other = client_item(obj(json!({"x": 1, "y": 3}))).unwrap();
        assert_eq!(request_fingerprint(&a), request_fingerprint(&same));
        assert_ne!(request_fingerprint(&a), request_fingerprint(&other));
    }

    #[test]
    fn idempotent_ids_are_stable_and_distinct() {
        assert_eq!(id_for_idempotency_key("k1"), id_for_idempotency_key("k1"));
        assert_ne!(id_for_idempotency_key("k1"), id_for_idempotency_key("k2"));
        assert!(validate_idempotency_key("").is_err());
        assert!(validate_idempotency_key("bad\u{7f}").is_err());
        assert!(validate_idempotency_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match("\"3\""), Some(3));
        assert_eq!(parse_if_match("W/\"4\""), Some(4));
        assert_eq!(parse_if_match("5"), Some(5));
        assert_eq!(parse_if_match("*"), None);
        assert_eq!(etag(7), "\"7\"");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
