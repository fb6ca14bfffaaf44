//! `GET /health`: answers with the status in `STATUS` (changeable through the admin route) and
//! names the region. `?deep=true` also checks that the table answers within a second.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

/// How long a deep check waits for the table.
pub const DEEP_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Deserialize)]
pub struct HealthQuery {
    deep: Option<String>,
}

pub async fn health(
    State(state): State<AppState>,
    query: Result<Query<HealthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let code = state.faults.health_status();
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let deep = query
        .ok()
        .and_then(|Query(q)| q.deep)
        .is_some_and(|d| matches!(d.as_str(), "true" | "1" | "yes"));
    if !status.is_success() {
        let body = json!({"status": "unhealthy", "region": &*state.region, "forced": true});
        return (status, Json(body)).into_response();
    }
    if deep {
        match tokio::time::timeout(DEEP_CHECK_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "deep health check failed");
                return ApiError::TableUnavailable.into_response();
            }
            Err(_) => return ApiError::TableUnavailable.into_response(),
        }
    }
    let body = json!({"status": "healthy", "region": &*state.region, "deep": deep});
    (status, Json(body)).into_response()
}
