//! The one place errors become HTTP responses: `{"error": {"code", "message", "request_id"}}` with
//! a stable code and the right status. Internals are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::item::ItemError;
use crate::observability;
use crate::store::StoreError;

/// Header on an answer that refuses the request for load, naming the limit (`dynamodb`): the
/// edge then sends this region no retries for a while and sheds some of its first attempts,
/// as it does for API Gateway's 429 (edge/src/core/overload.rs).
pub static LIMIT_HEADER: header::HeaderName = header::HeaderName::from_static("x-region-limit");

/// Every failure a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Item(#[from] ItemError),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("item {0:?} not found")]
    ItemNotFound(String),
    #[error("item {0:?} already exists")]
    ItemExists(String),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyInFlight,
    #[error(
        "the request with this Idempotency-Key created item {0:?}, which has been replaced or deleted since; its first result is not kept: read the item"
    )]
    IdempotencyResultGone(String),
    #[error("another region wrote this item at the same time; retry")]
    ReplicatedConflict,
    #[error(
        "the request's deadline passed before the work could be done; nothing was started after it"
    )]
    DeadlineExceeded,
    #[error("item {0:?} changed while it was being written; retry")]
    Conflict(String),
    #[error("item {0:?} is not as If-Match or If-None-Match requires")]
    PreconditionFailed(String),
    #[error("If-Match must be * or a list of entity tags such as \"2-0a1b2c3d4e5f\"")]
    BadIfMatch,
    #[error("If-None-Match must be * or a list of entity tags such as \"2-0a1b2c3d4e5f\"")]
    BadIfNoneMatch,
    #[error("request body is larger than the {limit} byte item limit")]
    TooLarge { limit: usize },
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("query parameter {name} is invalid: {reason}")]
    BadQuery { name: &'static str, reason: String },
    #[error("invalid fault settings: {0}")]
    InvalidFaultSettings(String),
    #[error("admin route is disabled (no ADMIN_TOKEN configured)")]
    AdminDisabled,
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// The code says which rule refused the caller (see `origin_auth::SignatureError::code`).
    #[error("this region answers only requests signed by the edge")]
    Forbidden(&'static str),
    #[error("DynamoDB is throttling requests; retry shortly")]
    Throttled,
    #[error("the table did not answer; retry shortly")]
    TableUnavailable,
    #[error("injected fault (drill)")]
    InjectedFault,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The stable code and the status.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        use StatusCode as S;
        match self {
            Self::Item(e) => (e.code(), S::BAD_REQUEST),
            Self::RouteNotFound(_) => ("route_not_found", S::NOT_FOUND),
            Self::MethodNotAllowed => ("method_not_allowed", S::METHOD_NOT_ALLOWED),
            Self::ItemNotFound(_) => ("item_not_found", S::NOT_FOUND),
            Self::ItemExists(_) => ("item_exists", S::CONFLICT),
            Self::Conflict(_) => ("write_conflict", S::CONFLICT),
            Self::IdempotencyKeyReused => ("idempotency_key_reused", S::UNPROCESSABLE_ENTITY),
            Self::IdempotencyInFlight => ("idempotency_request_in_flight", S::CONFLICT),
            Self::IdempotencyResultGone(_) => ("idempotency_result_gone", S::CONFLICT),
            Self::ReplicatedConflict => ("write_conflict", S::CONFLICT),
            Self::DeadlineExceeded => ("deadline_exceeded", S::GATEWAY_TIMEOUT),
            Self::PreconditionFailed(_) => ("precondition_failed", S::PRECONDITION_FAILED),
            Self::BadIfMatch => ("invalid_if_match", S::BAD_REQUEST),
            Self::BadIfNoneMatch => ("invalid_if_none_match", S::BAD_REQUEST),
            Self::TooLarge { .. } => ("payload_too_large", S::PAYLOAD_TOO_LARGE),
            Self::UnsupportedMediaType => ("unsupported_media_type", S::UNSUPPORTED_MEDIA_TYPE),
            Self::BadQuery { .. } => ("invalid_query", S::BAD_REQUEST),
            Self::InvalidFaultSettings(_) => ("invalid_fault_settings", S::BAD_REQUEST),
            Self::AdminDisabled => ("admin_disabled", S::FORBIDDEN),
            Self::Unauthorized => ("unauthorized", S::UNAUTHORIZED),
            Self::Forbidden(code) => (code, S::FORBIDDEN),
            Self::Throttled => ("throttled", S::SERVICE_UNAVAILABLE),
            Self::TableUnavailable => ("table_unavailable", S::SERVICE_UNAVAILABLE),
            Self::InjectedFault => ("injected_fault", S::SERVICE_UNAVAILABLE),
            Self::Internal(_) => ("internal", S::INTERNAL_SERVER_ERROR),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Throttled(_) => Self::Throttled,
            StoreError::Unavailable(_) => Self::TableUnavailable,
            StoreError::ReplicatedConflict => Self::ReplicatedConflict,
            StoreError::DeadlineExceeded => Self::DeadlineExceeded,
            StoreError::Rejected(reason) | StoreError::ItemRefused(reason)
                if reason.contains("size") =>
            {
                Self::TooLarge {
                    limit: crate::item::MAX_ITEM_BYTES,
                }
            }
            // Whatever else DynamoDB refuses in an item being written is in what the client sent
            // (the service's own expressions are fixed): a 400, never a 500 that would count
            // against the region at the edge. The item rules catch every case known; the detail
            // goes to the log. A refused read, scan or delete stays a 500: a misdeployed table
            // must look like a failing region.
            StoreError::ItemRefused(reason) => {
                tracing::warn!(reason = %reason, "the table refused an item as invalid");
                Self::Item(ItemError::RefusedByTable)
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        let request_id = observability::current_request_id();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(request_id = %request_id, detail = %detail, "internal error");
                "internal error; quote the request id when reporting it".to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({"error": {"code": code, "message": message, "request_id": request_id}});
        let mut response = (status, axum::Json(body)).into_response();
        let retry_later = matches!(
            self,
            Self::IdempotencyInFlight | Self::ReplicatedConflict | Self::Conflict(_)
        );
        if status == StatusCode::SERVICE_UNAVAILABLE || retry_later {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::Throttled) {
            response
                .headers_mut()
                .insert(LIMIT_HEADER.clone(), HeaderValue::from_static("dynamodb"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> (StatusCode, Option<String>, serde_json::Value) {
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn an_item_the_table_refuses_is_a_400_without_its_reason() {
        let reason = "Nesting Levels have exceeded supported limits: ... :v0";
        let error: ApiError = StoreError::ItemRefused(reason.into()).into();
        let (status, _, json) = body(error.into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"]["code"], "invalid_attribute");
        assert!(!json.to_string().contains(":v0"), "{json}");
        let size: ApiError = StoreError::ItemRefused("Item size has exceeded".into()).into();
        assert_eq!(size.code_and_status().1, StatusCode::PAYLOAD_TOO_LARGE);
        // A read the table refuses (a key that does not match a misdeployed table's schema) is
        // the region failing, not the client.
        let schema = "The provided key element does not match the schema";
        let read: ApiError = StoreError::Rejected(schema.into()).into();
        assert_eq!(read.code_and_status().1, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn throttling_after_the_sdk_retries_is_503_with_retry_after() {
        let error: ApiError =
            StoreError::Throttled("ProvisionedThroughputExceededException".into()).into();
        let (status, retry, json) = body(error.into_response()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(json["error"]["code"], "throttled");
        let marked = ApiError::Throttled.into_response();
        assert_eq!(marked.headers()[&LIMIT_HEADER], "dynamodb");
        // Other 503s are the region failing, not its limit.
        let down = ApiError::TableUnavailable.into_response();
        assert!(!down.headers().contains_key(&LIMIT_HEADER));
    }

    #[tokio::test]
    async fn strong_consistency_conflicts_are_409_with_retry_after() {
        let error: ApiError = StoreError::ReplicatedConflict.into();
        let (status, retry, json) = body(error.into_response()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(json["error"]["code"], "write_conflict");
        let late: ApiError = StoreError::DeadlineExceeded.into();
        let (status, _, json) = body(late.into_response()).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(json["error"]["code"], "deadline_exceeded");
    }

    #[tokio::test]
    async fn unexpected_errors_are_500_without_internals() {
        let error: ApiError =
            StoreError::Unexpected("AccessDenied: arn:aws:iam::123:role/x".into()).into();
        let (status, _, json) = body(error.into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json["error"]["code"], "internal");
        let text = json.to_string();
        assert!(
            !text.contains("arn:aws") && !text.contains("AccessDenied"),
            "{text}"
        );
        assert!(json["error"]["request_id"].is_string());
    }
}
