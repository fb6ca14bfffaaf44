//! Idempotency keys, after the IETF httpapi `Idempotency-Key` header draft. Pure rules: what a
//! key record is, how it is named and read back, and what a create that finds one means.
//!
//! A create carrying `Idempotency-Key: K` from caller scope S:
//! 1. claims the key: writes a key record `"\u{1}idem:" + sha256(S + "\n" + K)` in state
//!    `in_flight`, with the fingerprint of the request, if no live record exists;
//! 2. writes the item (its id is the body's `item_id`, or `idem-` + 32 hex digits of the key
//!    hash: the same in every region), stamped with the key hash and the fingerprint;
//! 3. records the result on the key record (state `done`).
//!
//! A create that finds a live record: the same fingerprint and `done` is a replay (the first
//! result again, nothing written); the same fingerprint still `in_flight` within its lease is
//! 409 `idempotency_request_in_flight`; another fingerprint is 422 `idempotency_key_reused`
//! and stores nothing. A create whose item write fails releases its claim, so the key is free
//! again. Records expire 24 hours after the create ([`KEY_TTL_S`]; DynamoDB's TTL deletes them
//! through `expires_at`, and an expired record is ignored before that). The record ids hold a
//! control character, which no client item id may contain, so they never collide with items,
//! and the listing leaves them out.
//!
//! No transaction is used, so the same rules hold on a table with multi-Region strong
//! consistency, which does not support transactions.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::item::{self, ClientItem, Collision, Idempotency, Item};

/// First characters of every key record's id.
pub const RECORD_PREFIX: &str = "\u{1}idem:";
/// How long a key is remembered after the create that used it (24 h).
pub const KEY_TTL_S: u64 = 24 * 60 * 60;
/// How long a claim holds when the request carries no deadline.
pub const DEFAULT_LEASE_MS: u64 = 5_000;
/// The scope of keys sent by callers without an identity (every caller shares it).
pub const ANONYMOUS: &str = "anonymous";
/// Largest first-result body kept on the record (a larger item is read back on a replay).
pub const MAX_STORED_BODY_BYTES: usize = 300 * 1024;

const STATE: &str = "key_state";
const FINGERPRINT: &str = "key_fingerprint";
const LEASE_UNTIL_MS: &str = "lease_until_ms";
const CLAIM: &str = "claim";
/// The TTL attribute (epoch seconds), as the table's TTL setting names it.
pub const EXPIRES_AT: &str = item::EXPIRES_AT;
const RESULT_ITEM_ID: &str = "result_item_id";
const RESULT_BODY: &str = "result_body";
/// The `_write` id of the item the request created: a replay without the body answers from the
/// item only while it is still that write.
const RESULT_WRITE: &str = "result_write";
const IN_FLIGHT: &str = "in_flight";
const DONE: &str = "done";

/// A key, hashed within its caller's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHash(pub String);

impl KeyHash {
    pub fn new(scope: &str, key: &str) -> Self {
        let digest = Sha256::digest(format!("{scope}\n{key}").as_bytes());
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id of the key's record.
    pub fn record_id(&self) -> String {
        format!("{RECORD_PREFIX}{}", self.0)
    }

    /// The item id a keyed create gets when its body names none.
    pub fn item_id(&self) -> String {
        format!("idem-{}", &self.0[..32])
    }
}

/// True for the ids of key records (never items).
pub fn is_record_id(id: &str) -> bool {
    id.starts_with(RECORD_PREFIX)
}

/// The fingerprint of a create: the operation (`"POST /items"`) and what the client sent.
pub fn fingerprint(operation: &str, request: &ClientItem) -> String {
    let canonical = serde_json::json!([operation, request.id, request.attributes]).to_string();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new claim on a key: the record written in step 1.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub key: &'a KeyHash,
    pub fingerprint: &'a str,
    /// A random token naming this claim (only its owner completes or releases it).
    pub token: &'a str,
    pub now_ms: u64,
    pub lease_ms: u64,
}

impl Claim<'_> {
    /// The record as stored, stamped like any item so it replicates by the same rule.
    pub fn record(&self, stamp: item::WriteStamp<'_>) -> Item {
        let mut record = Item::new();
        record.insert(item::ID.into(), self.key.record_id().into());
        record.insert(STATE.into(), IN_FLIGHT.into());
        record.insert(FINGERPRINT.into(), self.fingerprint.into());
        record.insert(CLAIM.into(), self.token.into());
        record.insert(LEASE_UNTIL_MS.into(), (self.now_ms + self.lease_ms).into());
        record.insert(EXPIRES_AT.into(), (self.now_ms / 1000 + KEY_TTL_S).into());
        record.insert(item::REGION.into(), stamp.region.into());
        record.insert(item::UPDATED_AT.into(), stamp.now.into());
        record
    }

    /// The names and values of the claim's write condition: no record, or an expired one, or
    /// an abandoned claim (lease over) of the same request.
    pub fn condition(&self) -> ClaimCondition {
        ClaimCondition {
            now_ms: self.now_ms,
            now_s: self.now_ms / 1000,
            fingerprint: self.fingerprint.to_owned(),
        }
    }
}

/// What the store needs to condition a claim (see [`Claim::condition`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCondition {
    pub now_ms: u64,
    pub now_s: u64,
    pub fingerprint: String,
}

impl ClaimCondition {
    pub const EXPRESSION: &'static str = "attribute_not_exists(#id) OR #exp < :now_s \
         OR (#state = :in_flight AND #lease < :now_ms AND #fp = :fp)";
    pub const NAMES: [(&'static str, &'static str); 4] = [
        ("#exp", EXPIRES_AT),
        ("#state", STATE),
        ("#lease", LEASE_UNTIL_MS),
        ("#fp", FINGERPRINT),
    ];
    pub const IN_FLIGHT: &'static str = IN_FLIGHT;
    /// The attribute a completion or release is conditioned on.
    pub const CLAIM_ATTRIBUTE: &'static str = CLAIM;
}

/// The record of a completed create (step 3): the claim's record, `done`, with the result.
pub fn completed(mut record: Item, result: &Item, done_at: &str) -> Item {
    record.insert(STATE.into(), DONE.into());
    // Its own write time (after the claim's): replication keeps the later version.
    record.insert(item::UPDATED_AT.into(), done_at.into());
    record.remove(LEASE_UNTIL_MS);
    if let Some(id) = result.get(item::ID) {
        record.insert(RESULT_ITEM_ID.into(), id.clone());
    }
    if let Some(write) = result.get(item::WRITE_ID) {
        record.insert(RESULT_WRITE.into(), write.clone());
    }
    let body = Value::Object(item::public_view(result.clone())).to_string();
    if body.len() <= MAX_STORED_BODY_BYTES {
        record.insert(RESULT_BODY.into(), body.into());
    }
    record
}

/// What a create that could not claim its key finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The same request, completed: answer with its first result. `body` is `None` when it was
    /// too large to keep; then `item_id` names the item to read, which is that result only
    /// while it is still the write `write` names (see [`is_result`]).
    Replay {
        item_id: String,
        body: Option<Item>,
        write: Option<String>,
    },
    /// The same request, still running (its lease not over): 409, retry later.
    InFlight,
    /// Another request used this key: 422.
    Reused,
    /// This request's own claim (its write landed; a retry of it saw it): carry on.
    Ours,
}

/// Classifies the record a claim collided with (`None`: it vanished, e.g. expired and deleted
/// since; the caller may claim again). A record holding the caller's own claim `token` is
/// [`Found::Ours`]: the claim's write was applied and the SDK, not hearing back in time, sent it
/// again.
pub fn classify(
    record: Option<&Item>,
    fingerprint: &str,
    token: &str,
    now_ms: u64,
) -> Option<Found> {
    let record = record?;
    let number = |name: &str| record.get(name).and_then(Value::as_u64);
    let text = |name: &str| record.get(name).and_then(Value::as_str);
    if text(CLAIM) == Some(token) && text(STATE) == Some(IN_FLIGHT) {
        return Some(Found::Ours);
    }
    if number(EXPIRES_AT).is_some_and(|at| at < now_ms / 1000) {
        return None;
    }
    if text(FINGERPRINT) != Some(fingerprint) {
        return Some(Found::Reused);
    }
    match text(STATE) {
        Some(DONE) => {
            let body = text(RESULT_BODY)
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|v| v.as_object().cloned());
            Some(Found::Replay {
                item_id: text(RESULT_ITEM_ID).unwrap_or_default().to_owned(),
                body,
                write: text(RESULT_WRITE).map(str::to_owned),
            })
        }
        _ if number(LEASE_UNTIL_MS).is_some_and(|until| until < now_ms) => None,
        _ => Some(Found::InFlight),
    }
}

/// Whether `stored` is still the first result of the create `idempotency` names: that write
/// (`write`, from the key's record; without one, a record kept before write ids were: the
/// create's first version, carrying the key and request). A replaced, deleted or re-created
/// item is not: the first result is gone, and a replay must not pass another write off as it.
pub fn is_result(stored: &Item, idempotency: Idempotency<'_>, write: Option<&str>) -> bool {
    let first_version = stored.get(item::VERSION).and_then(Value::as_u64) == Some(1);
    let same_write = match write {
        Some(write) => stored.get(item::WRITE_ID).and_then(Value::as_str) == Some(write),
        None => true,
    };
    first_version && same_write && item::collision(stored, Some(idempotency)) == Collision::Replay
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STAMP: item::WriteStamp<'static> = item::WriteStamp {
        region: "eu-west-1",
        now: "2026-12-02T10:00:00.000Z",
    };

    fn request(id: Option<&str>, x: i64) -> ClientItem {
        ClientItem {
            id: id.map(str::to_owned),
            attributes: json!({ "x": x }).as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn keys_are_scoped_and_ids_stable() {
        let a = KeyHash::new(ANONYMOUS, "k1");
        assert_eq!(a, KeyHash::new(ANONYMOUS, "k1"));
        assert_ne!(a, KeyHash::new("user-7", "k1"), "another caller's key");
        assert_ne!(a, KeyHash::new(ANONYMOUS, "k2"));
        assert!(is_record_id(&a.record_id()));
        assert!(
            item::validate_id(&a.record_id()).is_err(),
            "no client id can be a record id"
        );
        assert!(a.item_id().starts_with("idem-") && a.item_id().len() == 37);
    }

    #[test]
    fn a_reused_key_is_told_apart_whatever_the_body_says() {
        let one = fingerprint("POST /items", &request(Some("a"), 1));
        assert_eq!(one, fingerprint("POST /items", &request(Some("a"), 1)));
        assert_ne!(
            one,
            fingerprint("POST /items", &request(Some("b"), 1)),
            "other id"
        );
        assert_ne!(
            one,
            fingerprint("POST /items", &request(Some("a"), 2)),
            "other body"
        );
        assert_ne!(
            one,
            fingerprint("POST /create", &request(Some("a"), 1)),
            "other route"
        );
    }

    #[test]
    fn records_classify_by_state_fingerprint_lease_and_expiry() {
        let key = KeyHash::new(ANONYMOUS, "k");
        let claim = Claim {
            key: &key,
            fingerprint: "fp",
            token: "t1",
            now_ms: 1_000_000,
            lease_ms: 5_000,
        };
        let record = claim.record(STAMP);
        assert_eq!(
            classify(Some(&record), "fp", "t2", 1_000_100),
            Some(Found::InFlight)
        );
        assert_eq!(
            classify(Some(&record), "fp", "t1", 1_000_100),
            Some(Found::Ours),
            "our own claim, sent again by the SDK"
        );
        assert_eq!(
            classify(Some(&record), "other", "t2", 1_000_100),
            Some(Found::Reused)
        );
        assert_eq!(
            classify(Some(&record), "fp", "t2", 1_006_000),
            None,
            "abandoned claim"
        );
        let item =
            json!({"item_id": "a", "x": 1, "version": 1, "_idempotency": "h", "_write": "w1"});
        let done = completed(
            record,
            item.as_object().unwrap(),
            "2026-01-01T00:00:01.000Z",
        );
        assert_eq!(done["updated_at"], "2026-01-01T00:00:01.000Z");
        let replay = classify(Some(&done), "fp", "t1", 1_006_000).unwrap();
        assert_eq!(
            replay,
            Found::Replay {
                item_id: "a".into(),
                body: json!({"item_id": "a", "x": 1, "version": 1})
                    .as_object()
                    .cloned(),
                write: Some("w1".into()),
            }
        );
        let day_later = 1_000_000 + (KEY_TTL_S + 1) * 1000;
        assert_eq!(
            classify(Some(&done), "fp", "t1", day_later),
            None,
            "expired"
        );
        assert_eq!(classify(None, "fp", "t1", 0), None);
    }

    #[test]
    fn only_the_unchanged_first_write_stands_for_a_result_not_kept() {
        let idem = Idempotency {
            key_hash: "h",
            request: "fp",
        };
        let stored = |version: u64, key: &str, request: &str, write: &str| {
            json!({"item_id": "a", "version": version, "_idempotency": key, "_request": request,
                   "_write": write})
            .as_object()
            .cloned()
            .unwrap()
        };
        assert!(is_result(&stored(1, "h", "fp", "w1"), idem, Some("w1")));
        assert!(
            is_result(&stored(1, "h", "fp", "w1"), idem, None),
            "a record without a write id"
        );
        // Replaced since (a replacement keeps the key's attributes), re-created by the same
        // key's request in another region, by another key, by another request with this key.
        assert!(!is_result(&stored(2, "h", "fp", "w2"), idem, Some("w1")));
        assert!(!is_result(&stored(2, "h", "fp", "w2"), idem, None));
        assert!(!is_result(&stored(1, "h", "fp", "w9"), idem, Some("w1")));
        assert!(!is_result(
            &stored(1, "other", "fp", "w1"),
            idem,
            Some("w1")
        ));
        assert!(!is_result(&stored(1, "h", "other", "w1"), idem, None));
    }
}
