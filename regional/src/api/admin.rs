//! `/admin/faults`: shows and changes the drill switches on a running process. Compiled in, but
//! every call is refused unless `ADMIN_TOKEN` is configured, and then needs `Authorization: Bearer`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};

use super::{AppState, JsonObject};
use crate::error::ApiError;
use crate::faults::{FaultSettings, FaultUpdate};

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::AdminDisabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /admin/faults`
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<FaultSettings>, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(state.faults.settings()))
}

/// `PUT|POST /admin/faults` with any of `status`, `latency_ms`, `error_rate`.
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Json<FaultSettings>, ApiError> {
    authorize(&state, &headers)?;
    let update: FaultUpdate = serde_json::from_value(body.into())
        .map_err(|e| ApiError::InvalidFaultSettings(e.to_string()))?;
    let settings = state
        .faults
        .apply(update)
        .map_err(ApiError::InvalidFaultSettings)?;
    tracing::info!(
        status = settings.status,
        latency_ms = settings.latency_ms,
        error_rate = settings.error_rate,
        "faults changed"
    );
    Ok(Json(settings))
}
