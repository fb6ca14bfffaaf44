//! Item rules, free of I/O: what a valid item id and body are, which attributes the service owns,
//! how a stored item is stamped, and how an idempotency key maps to an item id.
//!
//! A keyed create also stamps the item with its key's hash and the request's fingerprint (see
//! [`crate::idempotency`]): when the same create reaches another region before the key record
//! did, the item it finds tells a replay from a reused key.

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
/// Internal attribute: a random id of the write that stored this version. Two writes of the
/// same body in one region and millisecond are otherwise the same item, and the check that
/// recognises the service's own landed write (`same_write`) could not tell them apart.
pub const WRITE_ID: &str = "_write";
/// DynamoDB's item size limit (400 KB); larger items are refused before any write.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's limit for a partition key value.
pub const MAX_ID_BYTES: usize = 1024;
/// DynamoDB's longest attribute name (and map key): under 64 KB.
pub const MAX_NAME_BYTES: usize = 64 * 1024 - 1;
/// DynamoDB's deepest nesting, counting a top-level attribute's value as level 1: a value
/// holding 31 maps or lists one inside the other is stored, one holding 32 is refused, even
/// when the innermost is empty. So a map or list may sit at level 31 at most.
pub const MAX_DEPTH: usize = 32;
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The table's TTL attribute (epoch seconds): DynamoDB deletes an item once it has passed, so
/// only the service may set it (on idempotency key records).
pub const EXPIRES_AT: &str = "expires_at";

const SYSTEM: [&str; 5] = [REGION, CREATED_AT, UPDATED_AT, VERSION, EXPIRES_AT];

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
    #[error("item_id must not be \".\" or \"..\": no URL path could name it")]
    IdDotSegment,
    #[error("item_id in the body ({body:?}) differs from the one in the path ({path:?})")]
    IdMismatch { body: String, path: String },
    #[error("attribute {0:?} is set by the service and cannot be written")]
    Reserved(String),
    #[error("attribute names must not be empty")]
    EmptyAttributeName,
    #[error("attribute {0:?} holds a name longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong(String),
    #[error("attribute {0:?} nests deeper than DynamoDB's {MAX_DEPTH} levels")]
    TooDeep(String),
    #[error(
        "the table refused this item as invalid (DynamoDB's rules on names, values and nesting)"
    )]
    RefusedByTable,
    #[error("attribute {0:?} holds a number DynamoDB cannot store (38 digits, 1e-130..1e126)")]
    BadNumber(String),
    #[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters")]
    BadIdempotencyKey,
    #[error(
        "number {0} cannot be kept exactly: send at most {MAX_EXACT_DIGITS} significant digits, a 64-bit integer, or a string"
    )]
    ImpreciseNumber(String),
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
            | Self::IdDotSegment
            | Self::IdMismatch { .. } => "invalid_item_id",
            Self::Reserved(_) => "reserved_attribute",
            Self::EmptyAttributeName
            | Self::NameTooLong(_)
            | Self::TooDeep(_)
            | Self::RefusedByTable
            | Self::BadNumber(_)
            | Self::ImpreciseNumber(_) => "invalid_attribute",
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
    // URL parsers resolve these path segments (`/items/..` is `/`), also percent-encoded: an
    // item stored under one could be listed but never read, replaced or deleted.
    if id == "." || id == ".." {
        return Err(ItemError::IdDotSegment);
    }
    Ok(())
}

/// Parses a request body that must be a JSON object. Numbers that would not come back exactly
/// as sent are refused (see [`imprecise_number`]).
pub fn parse_object(body: &[u8]) -> Result<Item, ItemError> {
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(ItemError::NotAnObject),
        // A number beyond a double's range (1e400) is valid JSON the service cannot keep.
        Err(e) => {
            return Err(match imprecise_number(body) {
                Some(literal) if e.is_syntax() => ItemError::ImpreciseNumber(literal),
                _ => ItemError::InvalidJson(e.to_string()),
            });
        }
    };
    match imprecise_number(body) {
        Some(literal) => Err(ItemError::ImpreciseNumber(literal)),
        None => Ok(map),
    }
}

/// Most significant digits of a non-integer number kept exactly: every decimal of 15 digits
/// survives the trip through a 64-bit float and back.
pub const MAX_EXACT_DIGITS: usize = 15;

/// The first number literal in a (valid) JSON text that would not be stored exactly: an integer
/// outside the 64-bit range, or any other number with more than [`MAX_EXACT_DIGITS`]
/// significant digits. DynamoDB keeps 38 digits, but the service reads JSON numbers as 64-bit
/// values; refusing is better than rounding silently.
pub fn imprecise_number(json: &[u8]) -> Option<String> {
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < json.len()
                && matches!(json[i], b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let literal = String::from_utf8_lossy(&json[start..i]).into_owned();
            if !kept_exactly(&literal) {
                return Some(literal);
            }
            continue;
        }
        i += 1;
    }
    None
}

fn kept_exactly(literal: &str) -> bool {
    if !literal.contains(['.', 'e', 'E']) {
        return literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok();
    }
    let mantissa = literal.split(['e', 'E']).next().unwrap_or(literal);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    // A number too small for a double (1e-400) parses to 0: stored, it would be a silent 0;
    // one too large (1e400) is infinite, which JSON cannot even carry back.
    let parsed = literal.parse::<f64>();
    let underflows = !significant.is_empty() && parsed.as_ref().is_ok_and(|v| *v == 0.0);
    let overflows = parsed.is_ok_and(f64::is_infinite);
    significant.len() <= MAX_EXACT_DIGITS && !underflows && !overflows
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
        check_name(name, name)?;
        if SYSTEM.contains(&name.as_str()) || name.starts_with('_') {
            return Err(ItemError::Reserved(name.clone()));
        }
        check_value(name, value, 1)?;
    }
    Ok(ClientItem {
        id,
        attributes: body,
    })
}

/// A name DynamoDB takes, at the top level or inside a map: 1 byte to under 64 KB.
fn check_name(attribute: &str, name: &str) -> Result<(), ItemError> {
    if name.is_empty() {
        Err(ItemError::EmptyAttributeName)
    } else if name.len() > MAX_NAME_BYTES {
        Err(ItemError::NameTooLong(attribute.chars().take(40).collect()))
    } else {
        Ok(())
    }
}

/// A value DynamoDB stores as sent: its numbers storable, its map keys valid names, and no map
/// or list at [`MAX_DEPTH`] or deeper (a top-level attribute's value is level 1). DynamoDB
/// refuses the others with a ValidationException.
fn check_value(name: &str, value: &Value, level: usize) -> Result<(), ItemError> {
    let container = matches!(value, Value::Array(_) | Value::Object(_));
    if container && level >= MAX_DEPTH {
        return Err(ItemError::TooDeep(name.chars().take(40).collect()));
    }
    match value {
        Value::Number(n) => {
            if storable_number(&n.to_string()) {
                Ok(())
            } else {
                Err(ItemError::BadNumber(name.to_owned()))
            }
        }
        Value::Array(values) => values
            .iter()
            .try_for_each(|v| check_value(name, v, level + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check_name(name, k)?;
            check_value(name, v, level + 1)
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
    if let Some(Idempotency { key_hash, request }) = idempotency {
        item.insert(IDEMPOTENCY.into(), key_hash.into());
        item.insert(REQUEST.into(), request.into());
    }
    item
}

/// Marks `item` as the write `write_id` (random, one per attempted write, from the caller).
pub fn mark_write(item: &mut Item, write_id: &str) {
    item.insert(WRITE_ID.into(), write_id.into());
}

/// A create's idempotency key (hashed in its scope) and the fingerprint of its request.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key_hash: &'a str,
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
        Some(i) if created_with_key(stored, i.key_hash) => {
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

/// True when `item` was created with the idempotency key whose hash is `key_hash`.
pub fn created_with_key(item: &Item, key_hash: &str) -> bool {
    item.get(IDEMPOTENCY).and_then(Value::as_str) == Some(key_hash)
}

/// True when `stored` (read back from the table) is the write `written`: the same names and
/// values, numbers compared by value. DynamoDB keeps a number's value, not its spelling (`1.0`
/// comes back as `1`, `1e3` as `1000`), so a plain comparison would miss the service's own write.
pub fn same_write(stored: &Item, written: &Item) -> bool {
    stored.len() == written.len()
        && stored
            .iter()
            .all(|(name, value)| written.get(name).is_some_and(|w| same_value(value, w)))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => same_write(x, y),
        _ => a == b,
    }
}

/// The item as clients see it: without internal attributes.
pub fn public_view(mut item: Item) -> Item {
    item.retain(|name, _| !name.starts_with('_'));
    item
}

/// What identifies one write of an item: the service-owned stamps. Two writes never share all
/// three (a region writes each version once; two regions differ by name), so a tag derived from
/// them names exactly one write, in every region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteIdentity {
    /// `None` for an item without a version (written by another tool).
    pub version: Option<u64>,
    pub region: Option<String>,
    pub updated_at: Option<String>,
}

impl WriteIdentity {
    /// The identity of a stored item.
    pub fn of(item: &Item) -> Self {
        let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
        Self {
            version: item.get(VERSION).and_then(Value::as_u64),
            region: text(REGION),
            updated_at: text(UPDATED_AT),
        }
    }

    /// The strong `ETag` for this write: `"<version>-<12 hex digits>"`, the digits from a
    /// SHA-256 of version, region and write time. Clients treat it as opaque.
    pub fn etag(&self) -> String {
        let canonical = serde_json::json!([self.version, self.region, self.updated_at]).to_string();
        let digest = hex(&Sha256::digest(canonical.as_bytes()));
        format!("\"{}-{}\"", self.version.unwrap_or(0), &digest[..12])
    }
}

/// The `ETag` of a stored item.
pub fn etag(item: &Item) -> String {
    WriteIdentity::of(item).etag()
}

/// The entity tags of an `If-Match` or `If-None-Match` list (`"x"` or `W/"x"`, comma
/// separated), each with whether it was weak and its quoted opaque tag; `None` when malformed.
fn parse_entity_tags(raw: &str) -> Option<Vec<(bool, &str)>> {
    raw.split(',')
        .map(|part| {
            let part = part.trim();
            let (weak, tag) = match part.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, part),
            };
            let inner = tag.strip_prefix('"')?.strip_suffix('"')?;
            let valid = inner
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80);
            valid.then_some((weak, tag))
        })
        .collect()
}

/// An `If-Match` or `If-None-Match` header (RFC 9110 sections 13.1.1 and 13.1.2): `*` or a
/// list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTags {
    /// `*`: any current item.
    Any,
    /// The entity tags that can name a write, quoted, without `W/`.
    Tags(Vec<String>),
}

impl EntityTags {
    /// Parses an `If-Match` value; `None` when malformed. It compares strongly, so a weak tag
    /// (`W/"x"`) never matches and is left out.
    pub fn if_match(raw: &str) -> Option<Self> {
        Self::parse(raw, false)
    }

    /// Parses an `If-None-Match` value; `None` when malformed. It compares weakly: `W/"x"`
    /// names the same write as `"x"`.
    pub fn if_none_match(raw: &str) -> Option<Self> {
        Self::parse(raw, true)
    }

    fn parse(raw: &str, keep_weak: bool) -> Option<Self> {
        let raw = raw.trim();
        if raw == "*" {
            return Some(Self::Any);
        }
        let tags = parse_entity_tags(raw)?;
        Some(Self::Tags(
            tags.into_iter()
                .filter(|(weak, _)| keep_weak || !weak)
                .map(|(_, tag)| tag.to_owned())
                .collect(),
        ))
    }

    /// Whether the header names the stored item (if any): for `If-Match`, the condition holds;
    /// for `If-None-Match`, it fails (a GET answers 304, a write 412).
    pub fn matches(&self, current: Option<&Item>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Self::Any, Some(_)) => true,
            (Self::Tags(tags), Some(item)) => tags.contains(&etag(item)),
        }
    }
}

/// The preconditions of one request, evaluated as RFC 9110 section 13.2.2 orders them:
/// `If-Match` first, then `If-None-Match`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub if_match: Option<EntityTags>,
    pub if_none_match: Option<EntityTags>,
}

/// What the preconditions say of a request on the stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Proceed,
    /// 412 Precondition Failed.
    Failed,
    /// A read whose `If-None-Match` names the item: 304 Not Modified.
    NotModified,
}

impl Preconditions {
    /// Whether the request has none.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// The verdict on `current` (the stored item, if any) for a read (GET, HEAD) or a write.
    pub fn evaluate(&self, current: Option<&Item>, read: bool) -> Verdict {
        if self.if_match.as_ref().is_some_and(|c| !c.matches(current)) {
            return Verdict::Failed;
        }
        match &self.if_none_match {
            Some(c) if c.matches(current) && read => Verdict::NotModified,
            Some(c) if c.matches(current) => Verdict::Failed,
            _ => Verdict::Proceed,
        }
    }
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
        assert_eq!(validate_id("."), Err(ItemError::IdDotSegment));
        assert_eq!(validate_id(".."), Err(ItemError::IdDotSegment));
        assert!(validate_id("...").is_ok() && validate_id(".a").is_ok());
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
            "expires_at",
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

    /// `wraps` maps (or lists) one inside the other around `leaf`, as a top-level value.
    fn nested_around(leaf: Value, wraps: usize, list: bool) -> Value {
        (0..wraps).fold(leaf, |inner, _| {
            if list {
                json!([inner])
            } else {
                json!({ "m": inner })
            }
        })
    }

    fn nested(wraps: usize, list: bool) -> Value {
        nested_around(json!("leaf"), wraps, list)
    }

    #[test]
    fn names_and_nesting_follow_dynamodb_limits() {
        for list in [false, true] {
            assert!(client_item(obj(json!({ "a": nested(31, list) }))).is_ok());
            let err = client_item(obj(json!({ "a": nested(32, list) }))).unwrap_err();
            assert_eq!(err, ItemError::TooDeep("a".into()));
            assert_eq!(err.code(), "invalid_attribute");
            // The innermost container counts even when empty.
            for empty in [json!({}), json!([])] {
                let ok = nested_around(empty.clone(), 30, list);
                assert!(client_item(obj(json!({ "a": ok }))).is_ok());
                let deep = nested_around(empty, 31, list);
                assert!(client_item(obj(json!({ "a": deep }))).is_err());
            }
        }
        let longest = "n".repeat(MAX_NAME_BYTES);
        let over = "n".repeat(MAX_NAME_BYTES + 1);
        assert!(client_item(obj(json!({ longest.clone(): 1 }))).is_ok());
        assert!(client_item(obj(json!({ "a": { longest: 1 } }))).is_ok());
        for item in [json!({ over.clone(): 1 }), json!({ "a": [{ over: 1 }] })] {
            let err = client_item(obj(item)).unwrap_err();
            assert!(
                matches!(err, ItemError::NameTooLong(ref n) if n.len() <= 40),
                "{err:?}"
            );
            assert_eq!(err.code(), "invalid_attribute");
        }
        let err = client_item(obj(json!({ "a": { "": 1 } }))).unwrap_err();
        assert_eq!(err, ItemError::EmptyAttributeName);
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
    fn numbers_are_kept_exactly_or_refused() {
        let refused = |text: &str| parse_object(text.as_bytes()).unwrap_err();
        for exact in [
            r#"{"n": 12345678901234567890}"#,
            r#"{"n": -9223372036854775808, "f": 0.1, "g": 1.5e10, "s": "123456789012345678901234"}"#,
            r#"{"n": 123456789012345, "f": 0.000000000000000123456789012345}"#,
            r#"{"a": [1, 2.25, {"b": -0.5}], "esc": "\\\" 1234567890123456789012"}"#,
        ] {
            assert!(parse_object(exact.as_bytes()).is_ok(), "{exact}");
        }
        assert_eq!(
            refused(r#"{"n": 123456789012345678901}"#),
            ItemError::ImpreciseNumber("123456789012345678901".into())
        );
        assert_eq!(
            refused(r#"{"x": {"y": [0.1234567890123456]}}"#).code(),
            "invalid_attribute"
        );
        assert_eq!(
            refused(r#"{"n": 1.2345678901234567e3}"#),
            ItemError::ImpreciseNumber("1.2345678901234567e3".into())
        );
        // Too small for a double: it would be stored as 0.
        assert_eq!(
            refused(r#"{"n": 1e-400}"#),
            ItemError::ImpreciseNumber("1e-400".into())
        );
        assert!(parse_object(br#"{"z": 0e-400, "w": -0.0}"#).is_ok());
        // Too large for a double: valid JSON, refused as the number it is, not as bad JSON.
        for (body, literal) in [
            (r#"{"n": 1e400}"#, "1e400"),
            (r#"{"a": [-2E+999]}"#, "-2E+999"),
        ] {
            assert_eq!(refused(body), ItemError::ImpreciseNumber(literal.into()));
        }
        assert_eq!(refused(r#"{"n": 1e3,}"#).code(), "invalid_json");
    }

    #[test]
    fn a_write_is_recognised_whatever_spelling_its_numbers_come_back_in() {
        let written = obj(json!({"a": 1.0, "b": 1e3, "c": -0.0, "d": [{"e": 2.5}], "s": "x"}));
        let stored = obj(json!({"a": 1, "b": 1000, "c": 0, "d": [{"e": 2.5}], "s": "x"}));
        assert!(same_write(&stored, &written));
        for other in [
            json!({"a": 1, "b": 1000, "c": 0, "d": [{"e": 2.5}], "s": "y"}),
            json!({"a": 2, "b": 1000, "c": 0, "d": [{"e": 2.5}], "s": "x"}),
            json!({"a": 1, "b": 1000, "c": 0, "d": [{"e": 2.5}]}),
            json!({"a": 1, "b": 1000, "c": 0, "d": [{"e": 2.5}, 1], "s": "x"}),
            json!({"a": "1", "b": 1000, "c": 0, "d": [{"e": 2.5}], "s": "x"}),
        ] {
            assert!(!same_write(&obj(other.clone()), &written), "{other}");
        }
        let big = obj(json!({"n": u64::MAX}));
        assert!(!same_write(&big, &obj(json!({"n": u64::MAX - 1}))));
    }

    #[test]
    fn new_items_are_stamped() {
        let idem = Idempotency {
            key_hash: "k",
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
            key_hash: "k",
            request: "r2",
        };
        assert_eq!(collision(&item, Some(other_body)), Collision::KeyReused);
        let other_key = Idempotency {
            key_hash: "k2",
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
            key_hash: "k",
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
    fn idempotency_keys_are_checked() {
        assert!(validate_idempotency_key("").is_err());
        assert!(validate_idempotency_key("bad\u{7f}").is_err());
        assert!(validate_idempotency_key(&"k".repeat(256)).is_err());
        assert!(validate_idempotency_key("edge-0123 abc").is_ok());
    }

    #[test]
    fn entity_tag_forms_if_match_strong_if_none_match_weak() {
        let (a, b, c) = ("\"a\"".to_owned(), "\"b\"".to_owned(), "\"c\"".to_owned());
        let list = " \"a\" , W/\"b\",\"c\"";
        assert_eq!(
            EntityTags::if_match(list),
            Some(EntityTags::Tags(vec![a.clone(), c.clone()]))
        );
        assert_eq!(
            EntityTags::if_none_match(list),
            Some(EntityTags::Tags(vec![a, b, c]))
        );
        assert_eq!(
            EntityTags::if_match("W/\"b\""),
            Some(EntityTags::Tags(vec![]))
        );
        for parse in [EntityTags::if_match, EntityTags::if_none_match] {
            assert_eq!(parse(" * "), Some(EntityTags::Any));
            for bad in [
                "", "3", "W/b", "\"3", "\"a\"b\"", "\"a\",", "**", "*, \"a\"",
            ] {
                assert_eq!(parse(bad), None, "{bad:?}");
            }
        }
        let item: Item = obj(json!({"item_id": "x", "version": 3}));
        let weak = EntityTags::if_none_match(&format!("W/{}", etag(&item))).unwrap();
        assert!(
            weak.matches(Some(&item)),
            "weak comparison: W/ names the same write"
        );
        assert!(!weak.matches(None));
        assert!(EntityTags::Any.matches(Some(&item)));
        assert!(!EntityTags::Any.matches(None));
        assert!(
            !EntityTags::if_none_match("\"other\"")
                .unwrap()
                .matches(Some(&item))
        );
    }

    #[test]
    fn two_writes_of_one_body_in_one_millisecond_are_told_apart_by_their_write_ids() {
        let stamp = WriteStamp {
            region: "eu-west-1",
            now: "2026-12-03T10:00:00.000Z",
        };
        let body = obj(json!({"locked": true}));
        let mut mine = new_item("lock", body.clone(), stamp, None);
        let mut theirs = new_item("lock", body, stamp, None);
        assert!(
            same_write(&mine, &theirs),
            "without write ids they are the same item"
        );
        mark_write(&mut mine, "0000000000000001");
        mark_write(&mut theirs, "0000000000000002");
        assert!(!same_write(&theirs, &mine));
        assert!(same_write(&mine.clone(), &mine));
        assert!(
            !public_view(mine).contains_key(WRITE_ID),
            "clients never see it"
        );
    }

    #[test]
    fn preconditions_are_judged_if_match_first() {
        let item: Item = obj(json!({"item_id": "x", "version": 3}));
        let tag = etag(&item);
        let pre = |m: Option<&str>, n: Option<&str>| Preconditions {
            if_match: m.and_then(EntityTags::if_match),
            if_none_match: n.and_then(EntityTags::if_none_match),
        };
        let none = pre(None, None);
        assert!(none.is_empty());
        assert_eq!(none.evaluate(Some(&item), false), Verdict::Proceed);
        // If-None-Match: * creates only.
        let create_only = pre(None, Some("*"));
        assert_eq!(create_only.evaluate(None, false), Verdict::Proceed);
        assert_eq!(create_only.evaluate(Some(&item), false), Verdict::Failed);
        // A read of the version the client has: 304; of another: the item.
        let cached = pre(None, Some(&tag));
        assert_eq!(cached.evaluate(Some(&item), true), Verdict::NotModified);
        assert_eq!(cached.evaluate(Some(&item), false), Verdict::Failed);
        assert_eq!(
            pre(None, Some("\"9-x\"")).evaluate(Some(&item), true),
            Verdict::Proceed
        );
        // A failed If-Match is a 412 even where If-None-Match would say 304.
        let both = pre(Some("\"9-x\""), Some(&tag));
        assert_eq!(both.evaluate(Some(&item), true), Verdict::Failed);
        assert_eq!(
            pre(Some(&tag), None).evaluate(Some(&item), true),
            Verdict::Proceed
        );
    }

    #[test]
    fn etags_name_one_write_in_every_region() {
        let v2 = |region: &str, now: &str| {
            let mut item = new_item("a", Item::new(), WriteStamp { region, now }, None);
            item.insert(VERSION.into(), 2.into());
            item
        };
        let west = v2("eu-west-1", "2026-12-02T10:00:00.000Z");
        let central = v2("eu-central-1", "2026-12-02T10:00:00.000Z");
        let later = v2("eu-west-1", "2026-12-02T10:00:00.001Z");
        assert_ne!(etag(&west), etag(&central), "same version, other region");
        assert_ne!(
            etag(&west),
            etag(&later),
            "same version and region, other write"
        );
        assert_eq!(etag(&west), etag(&west.clone()));
        assert!(etag(&west).starts_with("\"2-"), "{}", etag(&west));
        let stale = EntityTags::if_match(&etag(&west)).unwrap();
        assert!(stale.matches(Some(&west)));
        assert!(!stale.matches(Some(&central)), "overwritten elsewhere: 412");
        assert!(!stale.matches(None));
        let weak = EntityTags::if_match(&format!("W/{}", etag(&west))).unwrap();
        assert!(!weak.matches(Some(&west)), "weak tags never match");
        // An item without service stamps (written by another tool) has a tag too, and the
        // same rule applies to PUT and DELETE.
        let bare: Item = obj(json!({"item_id": "x"}));
        assert!(
            EntityTags::if_match(&etag(&bare))
                .unwrap()
                .matches(Some(&bare))
        );
        assert!(etag(&bare).starts_with("\"0-"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
