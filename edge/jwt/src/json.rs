//! Parses a JSON document that must be one object whose top-level member names are unique.
//!
//! JOSE headers and JWT claim sets are objects, and RFC 7515 section 5.2 lets a recipient reject
//! duplicate member names; we do, because "the last one wins" in one parser and "the first one
//! wins" in another is how two components end up disagreeing about `alg` or `sub`. Nested values
//! are kept as `serde_json` parses them (their duplicates are not security-relevant here).
//! This module never interprets the members: that is the header's and the claims' job.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON object with unique top-level member names.
pub(crate) struct StrictObject(pub(crate) Map<String, Value>);

/// Why a document is not a [`StrictObject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectError {
    /// Not JSON, not an object, or trailing data after it.
    NotAnObject,
    /// A top-level member name appears twice.
    DuplicateMember,
}

/// Parses `bytes` as one strict object.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ObjectError> {
    match serde_json::from_slice::<StrictObject>(bytes) {
        Ok(StrictObject(map)) => Ok(map),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(ObjectError::DuplicateMember),
        Err(_) => Err(ObjectError::NotAnObject),
    }
}

const DUPLICATE: &str = "duplicate member name";

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = StrictObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value: Value = access.next_value()?;
            map.insert(name, value);
        }
        Ok(StrictObject(map))
    }
}

#[cfg(test)]
mod tests {
    use super::{ObjectError, parse_object};

    #[test]
    fn accepts_objects_with_whitespace() {
        let map = parse_object(b" {\n\t\"a\" : 1, \"b\": {\"a\": 2}} ").unwrap();
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn rejects_duplicates_and_non_objects() {
        assert_eq!(
            parse_object(br#"{"alg":"HS256","alg":"none"}"#).unwrap_err(),
            ObjectError::DuplicateMember
        );
        for bad in [
            &b"[]"[..],
            b"\"x\"",
            b"1",
            b"null",
            b"{",
            b"{} {}",
            b"",
            b"\xff",
        ] {
            assert_eq!(parse_object(bad).unwrap_err(), ObjectError::NotAnObject);
        }
    }
}
