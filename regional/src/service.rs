//! The item operations, in terms of item rules and the store: create (idempotent), replace
//! (versioned), delete, get, list. No HTTP here beyond the error type. Ids given to these
//! functions were checked where they entered (the path extractor, `item::client_item`).

use crate::attributes;
use crate::error::ApiError;
use crate::item::{self, ClientItem, Collision, Idempotency, Item, WriteStamp};
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

/// Now, as stored: RFC 3339, milliseconds, UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

/// Creates an item; see the idempotency rule in [`crate::item`].
pub async fn create(
    store: &ItemStore,
    region: &str,
    body: ClientItem,
    idempotency_key: Option<&str>,
) -> Result<Created, ApiError> {
    let fingerprint = item::request_fingerprint(&body);
    let idempotency = idempotency_key.map(|key| Idempotency {
        key,
        request: &fingerprint,
    });
    let id = match (body.id, idempotency_key) {
        (Some(id), _) => id,
        (None, Some(key)) => item::id_for_idempotency_key(key),
        (None, None) => uuid::Uuid::new_v4().to_string(),
    };
    let now = now();
    let stamp = WriteStamp { region, now: &now };
    let new = item::new_item(&id, body.attributes, stamp, idempotency);
    let attrs = encode_checked(&new)?;
    match store.put(&attrs, PutCondition::MustNotExist).await {
        Ok(()) => Ok(Created {
            item: new,
            replayed: false,
        }),
        Err(StoreError::ConditionFailed) => match store.get(&id).await? {
            Some(existing) => match item::collision(&existing, idempotency) {
                Collision::Replay => Ok(Created {
                    item: existing,
                    replayed: true,
                }),
                Collision::KeyReused => Err(ApiError::IdempotencyKeyReused),
                Collision::Taken => Err(ApiError::ItemExists(id)),
            },
            // Deleted between our write and our read: the client may simply retry.
            None => Err(ApiError::Conflict(id)),
        },
        Err(e) => Err(e.into()),
    }
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

/// Creates or replaces an item. With `if_match`, only when the stored version is that one.
pub async fn replace(
    store: &ItemStore,
    region: &str,
    id: &str,
    body: ClientItem,
    if_match: Option<u64>,
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
        if let Some(expected) = if_match {
            match &previous {
                Some(p) if item::version_of(p) == expected => {}
                _ => return Err(ApiError::PreconditionFailed(id.to_owned())),
            }
        }
        let now = now();
        let stamp = WriteStamp { region, now: &now };
        let new = item::replacement(id, body.attributes.clone(), stamp, previous.as_ref());
        let attrs = encode_checked(&new)?;
        let condition = match &previous {
            None => PutCondition::MustNotExist,
            Some(p) => PutCondition::VersionIs(item::version_of(p)),
        };
        match store.put(&attrs, condition).await {
            Ok(()) => {
                return Ok(Replaced {
                    item: new,
                    created: previous.is_none(),
                });
            }
            Err(StoreError::ConditionFailed) if if_match.is_some() => {
                return Err(ApiError::PreconditionFailed(id.to_owned()));
            }
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(id.to_owned()))
}

/// Deletes an item (only at version `if_match` when given).
pub async fn delete(store: &ItemStore, id: &str, if_match: Option<u64>) -> Result<Item, ApiError> {
    match store.delete(id, if_match).await {
        Ok(Some(old)) => Ok(old),
        Ok(None) => Err(ApiError::ItemNotFound(id.to_owned())),
        Err(StoreError::ConditionFailed) => match store.get(id).await? {
            None => Err(ApiError::ItemNotFound(id.to_owned())),
            Some(_) => Err(ApiError::PreconditionFailed(id.to_owned())),
        },
        Err(e) => Err(e.into()),
    }
}

/// Lists a page of items.
pub async fn list(store: &ItemStore, limit: i32, after: Option<&str>) -> Result<Page, ApiError> {
    Ok(store.list(limit, after).await?)
}
