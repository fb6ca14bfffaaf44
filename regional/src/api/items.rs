//! The REST API: `POST /items`, `GET /items`, `GET|PUT|DELETE /items/{id}`.
//! Items carry an `ETag` that names one write (version, region and time); `If-Match` and
//! `If-None-Match` make PUT and DELETE conditional on it (`If-None-Match: *`: a PUT that only
//! creates), and a GET whose `If-None-Match` names the stored write is a 304.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use super::{AppState, Conditional, IdempotencyKey, ItemIdPath, JsonObject};
use crate::error::ApiError;
use crate::item::{self, Item, Verdict};
use crate::service::{self, KeyedBy};

/// Page size when `limit` is absent, and the largest allowed.
pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

/// An item response with its `ETag` (and `Location` when created).
fn item_response(status: StatusCode, item: Item) -> Response {
    let etag = item::etag(&item);
    let location = item
        .get(item::ID)
        .and_then(|v| v.as_str())
        .map(|id| format!("/items/{}", item::encode_path_segment(id)));
    let mut response = (status, Json(item::public_view(item))).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(Ok(v)) = location.map(|l| HeaderValue::from_str(&l))
    {
        headers.insert(header::LOCATION, v);
    }
    response
}

/// `POST /items`: creates an item; `item_id` optional (generated, or derived from the
/// `Idempotency-Key`). A replay answers like the first create, with `Idempotency-Replayed: true`.
pub async fn create(
    State(state): State<AppState>,
    IdempotencyKey { key, scope }: IdempotencyKey,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let body = item::client_item(body)?;
    let keyed = key.as_deref().map(|key| KeyedBy {
        key,
        scope: &scope,
        operation: "POST /items",
    });
    let created = service::create(&state.store, &state.region, body, keyed).await?;
    let mut response = item_response(StatusCode::CREATED, created.item);
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /items/{id}`
pub async fn get(
    State(state): State<AppState>,
    ItemIdPath(id): ItemIdPath,
    Conditional(preconditions): Conditional,
) -> Result<Response, ApiError> {
    let found = service::get(&state.store, &id).await?;
    match preconditions.evaluate(Some(&found), true) {
        Verdict::Proceed => Ok(item_response(StatusCode::OK, found)),
        Verdict::Failed => Err(ApiError::PreconditionFailed(id)),
        Verdict::NotModified => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&item::etag(&found)) {
                response.headers_mut().insert(header::ETAG, v);
            }
            Ok(response)
        }
    }
}

/// `PUT /items/{id}`: creates (201) or replaces (200) the item.
pub async fn replace(
    State(state): State<AppState>,
    ItemIdPath(id): ItemIdPath,
    Conditional(preconditions): Conditional,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let body = item::client_item(body)?;
    let replaced = service::replace(&state.store, &state.region, &id, body, &preconditions).await?;
    let status = if replaced.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(item_response(status, replaced.item))
}

/// `DELETE /items/{id}`: 204, or 404 when there is no such item.
pub async fn delete(
    State(state): State<AppState>,
    ItemIdPath(id): ItemIdPath,
    Conditional(preconditions): Conditional,
) -> Result<StatusCode, ApiError> {
    service::delete(&state.store, &id, &preconditions).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /items?limit=&cursor=`: a page of items and an opaque cursor for the next one.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The fields are optional strings, so the one way to fail is a name given twice.
    let Query(query) = query.map_err(|_| ApiError::BadQuery {
        name: "limit or cursor",
        reason: "each may be given once".to_owned(),
    })?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::BadQuery {
                name: "limit",
                reason: format!("must be a whole number from 1 to {MAX_LIMIT}"),
            })?,
    };
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = service::list(&state.store, limit, after.as_deref()).await?;
    let items: Vec<Item> = page.items.into_iter().map(item::public_view).collect();
    let (items, cut_after) = cut_page(items, state.list_page_max_bytes);
    let next = cut_after.or(page.last_id);
    Ok(Json(json!({
        "items": items,
        "next_cursor": next.as_deref().map(encode_cursor),
    })))
}

/// Keeps the page's first items whose JSON fits in `max_bytes` (always the first one: an item
/// is at most about 2 MB as JSON), and the id of the last one kept when some were left out, for
/// the cursor. A DynamoDB page is 1 MB as DynamoDB counts it, but as JSON it can be several
/// times that (a number stored in 2 bytes can print as 21), past what Lambda passes back.
fn cut_page(mut items: Vec<Item>, max_bytes: usize) -> (Vec<Item>, Option<String>) {
    let mut total = 2; // the list's brackets
    let kept = items
        .iter()
        .position(|item| {
            total += serde_json::to_vec(item).map_or(0, |json| json.len()) + 1;
            total > max_bytes
        })
        .map(|first_over| first_over.max(1));
    match kept {
        Some(kept) if kept < items.len() => {
            items.truncate(kept);
            let last = items
                .last()
                .and_then(|i| i.get(item::ID))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            (items, last)
        }
        _ => (items, None),
    }
}

/// Cursors are the last key the scan read, base64url-encoded: opaque to clients, checked when
/// given back. That key may be an idempotency key record's, which listings leave out but the
/// scan still reads, so a record id is a cursor too.
fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadQuery {
        name: "cursor",
        reason: "not a cursor this API returned".to_owned(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let id = String::from_utf8(bytes).map_err(|_| bad())?;
    let record = crate::idempotency::is_record_id(&id) && id.len() <= item::MAX_ID_BYTES;
    if !record {
        item::validate_id(&id).map_err(|_| bad())?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, bytes: usize) -> Item {
        let value = json!({ "item_id": id, "pad": "x".repeat(bytes) });
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn pages_are_cut_to_their_byte_limit_with_a_cursor_at_the_cut() {
        let page = || {
            (0..5)
                .map(|i| item(&format!("i{i}"), 1000))
                .collect::<Vec<_>>()
        };
        let (kept, cut) = cut_page(page(), 100_000);
        assert_eq!((kept.len(), cut), (5, None), "everything fits");
        let (kept, cut) = cut_page(page(), 2_500);
        assert_eq!((kept.len(), cut.as_deref()), (2, Some("i1")));
        let listed = serde_json::to_vec(&kept).unwrap().len();
        assert!(listed <= 2_500, "{listed}");
        // A first item larger than the limit still goes out alone: the listing moves on.
        let (kept, cut) = cut_page(page(), 1_024);
        assert_eq!((kept.len(), cut.as_deref()), (1, Some("i0")));
        let (kept, cut) = cut_page(vec![item("only", 5000)], 1_024);
        assert_eq!((kept.len(), cut), (1, None));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("a/b ü");
        assert_eq!(decode_cursor(&c).unwrap(), "a/b ü");
        let record = crate::idempotency::KeyHash::new("scope", "key").record_id();
        assert_eq!(decode_cursor(&encode_cursor(&record)).unwrap(), record);
        assert!(decode_cursor(&encode_cursor("\u{1}other")).is_err());
        assert!(decode_cursor("%%%").is_err());
        assert!(decode_cursor("").is_err());
    }
}
