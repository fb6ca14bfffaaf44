//! The item operations, in terms of item rules and the store: create (idempotent), replace
//! (conditional on the whole ETag), delete, get, list. No HTTP here beyond the error type. Ids
//! given to these functions were checked where they entered (the path extractor,
//! `item::client_item`).

use std::time::Duration;

use crate::attributes;
use crate::deadline;
use crate::error::ApiError;
use crate::idempotency::{self, Claim, Found, KeyHash};
use crate::item::{
    self, ClientItem, Collision, Idempotency, Item, Preconditions, Verdict, WriteIdentity,
    WriteStamp,
};
use crate::store::{ItemStore, Page, PutCondition, StoreError};

/// Times a replace re-reads and retries when another writer moved the item under it.
const REPLACE_ATTEMPTS: usize = 3;

/// The result of a create.
#[derive(Debug)]
pub struct Created {
    pub item: Item,
    /// True when this was a replay of an earlier create with the same idempotency key.
    pub replayed: bool,
}

/// A create's idempotency key, as the handler took it from the request.
#[derive(Debug, Clone, Copy)]
pub struct KeyedBy<'a> {
    pub key: &'a str,
    /// The caller's scope (see [`idempotency::ANONYMOUS`]).
    pub scope: &'a str,
    /// The route, part of the request's fingerprint (`"POST /items"`).
    pub operation: &'a str,
}

/// Now, as stored: RFC 3339, milliseconds, UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A new write's id (`item::WRITE_ID`): 64 random bits, enough to tell apart writes made in one
/// region in one millisecond.
fn write_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default()
}

fn encode_checked(item: &Item) -> Result<attributes::Attributes, ApiError> {
    let attrs = attributes::to_attributes(item);
    if attributes::item_size(&attrs) > item::MAX_ITEM_BYTES {
        return Err(ApiError::TooLarge {
            limit: item::MAX_ITEM_BYTES,
        });
    }
    Ok(attrs)
}

/// Creates an item; with a key, by the rules in [`crate::idempotency`].
pub async fn create(
    store: &ItemStore,
    region: &str,
    body: ClientItem,
    keyed: Option<KeyedBy<'_>>,
) -> Result<Created, ApiError> {
    let Some(keyed) = keyed else {
        let id = body
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let now = now();
        let mut new = item::new_item(&id, body.attributes, WriteStamp { region, now: &now }, None);
        item::mark_write(&mut new, &write_id());
        return match store
            .put(&encode_checked(&new)?, &PutCondition::MustNotExist)
            .await
        {
            Ok(()) => Ok(Created {
                item: new,
                replayed: false,
            }),
            Err(StoreError::ConditionFailed) => match store.get(&id).await? {
                // The SDK resent our write after its first try landed: it is ours. The whole item
                // must match: another create here in the same millisecond has the same stamp.
                Some(existing) if item::same_write(&existing, &new) => Ok(Created {
                    item: existing,
                    replayed: false,
                }),
                _ => Err(ApiError::ItemExists(id)),
            },
            Err(e) => Err(e.into()),
        };
    };
    let key = KeyHash::new(keyed.scope, keyed.key);
    let fingerprint = idempotency::fingerprint(keyed.operation, &body);
    let id = body.id.clone().unwrap_or_else(|| key.item_id());
    let now = now();
    let stamp = WriteStamp { region, now: &now };
    let idem = Idempotency {
        key_hash: &key.0,
        request: &fingerprint,
    };
    let mut new = item::new_item(&id, body.attributes, stamp, Some(idem));
    item::mark_write(&mut new, &write_id());
    let attrs = encode_checked(&new)?;

    // 1. Claim the key.
    let token = uuid::Uuid::new_v4().to_string();
    let record = match claim_key(store, region, &key, idem, &id, &token).await? {
        Claimed::Held(record) => record,
        Claimed::Replayed(item) => {
            return Ok(Created {
                item,
                replayed: true,
            });
        }
    };

    // 2. Write the item; 3. record the result, or release the claim.
    let release = || async {
        if let Err(e) = store.release_claim(&key.record_id(), &token).await {
            tracing::warn!(error = %e, "idempotency claim not released; its lease ends it");
        }
    };
    let created = match store.put(&attrs, &PutCondition::MustNotExist).await {
        Ok(()) => Created {
            item: new,
            replayed: false,
        },
        Err(StoreError::ConditionFailed) => {
            let existing = store.get(&id).await;
            match existing {
                // This very write, landed but answered too late and resent by the SDK.
                Ok(Some(existing)) if item::same_write(&existing, &new) => Created {
                    item: existing,
                    replayed: false,
                },
                // The same create, written in another region first (its key record not here
                // yet), or by this request's earlier attempt, and not changed since: a replay.
                Ok(Some(existing)) if idempotency::is_result(&existing, idem, None) => Created {
                    item: existing,
                    replayed: true,
                },
                Ok(Some(existing)) => {
                    release().await;
                    return Err(match item::collision(&existing, Some(idem)) {
                        Collision::KeyReused => ApiError::IdempotencyKeyReused,
                        Collision::Replay => ApiError::IdempotencyResultGone(id),
                        Collision::Taken => ApiError::ItemExists(id),
                    });
                }
                Ok(None) => {
                    release().await;
                    return Err(ApiError::Conflict(id));
                }
                Err(e) => {
                    release().await;
                    return Err(e.into());
                }
            }
        }
        Err(e) => {
            release().await;
            return Err(e.into());
        }
    };
    let claimed_at = record.get(item::UPDATED_AT).and_then(|v| v.as_str());
    let done_at = later_than(claimed_at.unwrap_or(&now));
    let done = idempotency::completed(record, &created.item, &done_at);
    let completion = store
        .put_bookkeeping(
            &attributes::to_attributes(&done),
            &PutCondition::ClaimIs(token.clone()),
        )
        .await;
    if let Err(e) = completion {
        // The item is written and stamped with the key: a retry after the lease finds it and
        // replays it.
        tracing::warn!(error = %e, "idempotency result not recorded");
    }
    Ok(created)
}

/// What claiming a create's key came to.
enum Claimed {
    /// This request holds the key (the record as written): write the item, record the result.
    Held(Item),
    /// The key's request is done already: answer with its result.
    Replayed(Item),
}

/// How long a create waits between looks at a key another attempt of the same request holds.
const CLAIM_POLL: Duration = Duration::from_millis(100);
/// Claims tried again at once when the key's record ended between the claim and the read.
const CLAIM_RETRIES_AT_ONCE: u32 = 2;
/// A create waits for the other attempt only while more than this is left of its deadline.
const CLAIM_WAIT_MARGIN: Duration = Duration::from_millis(250);

/// Claims the key for this request (`token`), or finds the answer it must give instead. While
/// another attempt of the same request holds the key (the edge's retry of an attempt that
/// wrote but answered late, its result record not replicated here yet), the create answers
/// with that attempt's item if it is here, else waits for the result or for the lease to end
/// (then claims the key itself) as long as its deadline allows; past that, 409 in flight.
async fn claim_key(
    store: &ItemStore,
    region: &str,
    key: &KeyHash,
    idem: Idempotency<'_>,
    item_id: &str,
    token: &str,
) -> Result<Claimed, ApiError> {
    for attempt in 0.. {
        let now = now();
        let lease_ms = deadline::remaining()
            .map_or(idempotency::DEFAULT_LEASE_MS, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
            })
            .saturating_add(1_000);
        let claim = Claim {
            key,
            fingerprint: idem.request,
            token,
            now_ms: now_ms(),
            lease_ms,
        };
        let record = claim.record(WriteStamp { region, now: &now });
        let claimed = store
            .put(
                &attributes::to_attributes(&record),
                &PutCondition::KeyClaim(claim.condition()),
            )
            .await;
        match claimed {
            Ok(()) => return Ok(Claimed::Held(record)),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
        let found = store.get(&key.record_id()).await?;
        let found = idempotency::classify(found.as_ref(), idem.request, token, now_ms());
        match found {
            // The SDK resent our claim after its first try landed: we hold the key.
            Some(Found::Ours) => return Ok(Claimed::Held(record)),
            Some(Found::Replay {
                body: Some(body), ..
            }) => return Ok(Claimed::Replayed(body)),
            Some(Found::Replay {
                item_id,
                body: None,
                write,
            }) => {
                // The result was too large to keep: the item is it while it is that write.
                return match stored_result(store, &item_id, idem, write.as_deref()).await? {
                    Some(item) => Ok(Claimed::Replayed(item)),
                    None => Err(ApiError::IdempotencyResultGone(item_id)),
                };
            }
            Some(Found::Reused) => return Err(ApiError::IdempotencyKeyReused),
            // Another attempt holds the key, or its lease just ended (then claimed again).
            Some(Found::InFlight) | None => {
                if let Some(item) = stored_result(store, item_id, idem, None).await? {
                    return Ok(Claimed::Replayed(item));
                }
                if found.is_none() && attempt < CLAIM_RETRIES_AT_ONCE {
                    continue;
                }
                let may_wait =
                    deadline::remaining().is_some_and(|left| left > CLAIM_POLL + CLAIM_WAIT_MARGIN);
                if !may_wait {
                    return Err(ApiError::IdempotencyInFlight);
                }
                tokio::time::sleep(CLAIM_POLL).await;
            }
        }
    }
    Err(ApiError::IdempotencyInFlight)
}

/// The item `item_id` if it is still the first result of the create `idem` names (see
/// [`idempotency::is_result`]).
async fn stored_result(
    store: &ItemStore,
    item_id: &str,
    idem: Idempotency<'_>,
    write: Option<&str>,
) -> Result<Option<Item>, ApiError> {
    let item = store.get(item_id).await?;
    Ok(item.filter(|item| idempotency::is_result(item, idem, write)))
}

/// A stamp later than `earlier` (one of [`now`]'s): now, or a millisecond after `earlier` when
/// the clock has not moved past it, so that a record's next version replicates over the last.
fn later_than(earlier: &str) -> String {
    let now = chrono::Utc::now();
    let next = chrono::DateTime::parse_from_rfc3339(earlier)
        .map(|t| t.with_timezone(&chrono::Utc) + chrono::Duration::milliseconds(1))
        .unwrap_or(now);
    now.max(next)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads an item.
pub async fn get(store: &ItemStore, id: &str) -> Result<Item, ApiError> {
    store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::ItemNotFound(id.to_owned()))
}

/// The result of a replace.
#[derive(Debug)]
pub struct Replaced {
    pub item: Item,
    /// True when no item existed before.
    pub created: bool,
}

/// Creates or replaces an item, if its preconditions hold: `If-Match` (the stored item's whole
/// ETag is one of those given, or for `*` there is one) and `If-None-Match` (`*`: there is
/// none, so the PUT only creates; tags: the stored item is none of them).
pub async fn replace(
    store: &ItemStore,
    region: &str,
    id: &str,
    body: ClientItem,
    preconditions: &Preconditions,
) -> Result<Replaced, ApiError> {
    if let Some(body_id) = &body.id
        && body_id != id
    {
        return Err(item::ItemError::IdMismatch {
            body: body_id.clone(),
            path: id.to_owned(),
        }
        .into());
    }
    for _ in 0..REPLACE_ATTEMPTS {
        let previous = store.get(id).await?;
        if preconditions.evaluate(previous.as_ref(), false) != Verdict::Proceed {
            return Err(ApiError::PreconditionFailed(id.to_owned()));
        }
        let now = now();
        let stamp = WriteStamp { region, now: &now };
        let mut new = item::replacement(id, body.attributes.clone(), stamp, previous.as_ref());
        item::mark_write(&mut new, &write_id());
        let attrs = encode_checked(&new)?;
        let condition = match &previous {
            None => PutCondition::MustNotExist,
            Some(p) => PutCondition::Unchanged(WriteIdentity::of(p)),
        };
        match store.put(&attrs, &condition).await {
            Ok(()) => {
                return Ok(Replaced {
                    item: new,
                    created: previous.is_none(),
                });
            }
            Err(StoreError::ConditionFailed) => {
                // The SDK resends a write whose answer was late (an attempt timeout, a 500 from
                // DynamoDB); when the first try had landed, the resend finds this very write and
                // fails its condition. That write is done: answer it, rather than a 412 for a
                // write that happened, or (without If-Match) writing it again over whatever
                // another writer put there meanwhile. The whole item must match, its write id
                // included: another writer here in the same millisecond has the same stamp, and
                // may have sent the same body.
                let current = store.get(id).await?;
                if current.as_ref().is_some_and(|c| item::same_write(c, &new)) {
                    return Ok(Replaced {
                        item: new,
                        created: previous.is_none(),
                    });
                }
                // Another writer came first: the preconditions are judged again on what it
                // wrote (an `If-Match` tag it replaced, or `If-None-Match: *` now that the item
                // exists, fail; `*` or a tag it did not write still hold).
                if preconditions.evaluate(current.as_ref(), false) != Verdict::Proceed {
                    return Err(ApiError::PreconditionFailed(id.to_owned()));
                }
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..10))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(id.to_owned()))
}

/// Deletes an item, if its preconditions hold (as for a replace; checked against the item
/// read, and the delete made only while it is unchanged).
pub async fn delete(
    store: &ItemStore,
    id: &str,
    preconditions: &Preconditions,
) -> Result<Item, ApiError> {
    if preconditions.is_empty() {
        return store
            .delete(id, None)
            .await?
            .ok_or_else(|| ApiError::ItemNotFound(id.to_owned()));
    }
    for _ in 0..REPLACE_ATTEMPTS {
        let Some(current) = store.get(id).await? else {
            return Err(ApiError::ItemNotFound(id.to_owned()));
        };
        if preconditions.evaluate(Some(&current), false) != Verdict::Proceed {
            return Err(ApiError::PreconditionFailed(id.to_owned()));
        }
        match store.delete(id, Some(&WriteIdentity::of(&current))).await {
            Ok(Some(old)) => return Ok(old),
            Ok(None) => return Err(ApiError::ItemNotFound(id.to_owned())),
            // Written or deleted since the read: judged again on what is there now.
            Err(StoreError::ConditionFailed) => {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..10))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(id.to_owned()))
}

/// Lists a page of items.
pub async fn list(store: &ItemStore, limit: i32, after: Option<&str>) -> Result<Page, ApiError> {
    Ok(store.list(limit, after).await?)
}
