//! The seed's API, kept byte-for-byte in shape so its clients work unchanged:
//! `POST /create` → `{"item_id": id}`; `GET /get/{item_id}` → `{"item_id": item, "retrieved from": region}`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AppState, IdempotencyKey, ItemIdPath, JsonObject};
use crate::error::ApiError;
use crate::item::{self, ItemError};
use crate::service::{self, KeyedBy};

/// `POST /create`: stores the body as an item; `item_id` is required.
pub async fn create(
    State(state): State<AppState>,
    IdempotencyKey { key, scope }: IdempotencyKey,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let body = item::client_item(body)?;
    if body.id.is_none() {
        return Err(ItemError::MissingId.into());
    }
    let keyed = key.as_deref().map(|key| KeyedBy {
        key,
        scope: &scope,
        operation: "POST /create",
    });
    let created = service::create(&state.store, &state.region, body, keyed).await?;
    Ok(Json(json!({ "item_id": created.item.get(item::ID) })))
}

/// `GET /get/{item_id}`: the stored item and the region that read it.
pub async fn get(
    State(state): State<AppState>,
    ItemIdPath(id): ItemIdPath,
) -> Result<Json<Value>, ApiError> {
    let found = service::get(&state.store, &id).await?;
    Ok(Json(json!({
        "item_id": item::public_view(found),
        "retrieved from": &*state.region,
    })))
}
