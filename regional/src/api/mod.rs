//! HTTP handlers. Each file is one resource: `seed` (the seed's three calls, kept exactly),
//! `items` (the REST API), `health`, `admin` (drill switches). Shared extractors live here.

pub mod admin;
pub mod caller;
pub mod health;
pub mod items;
pub mod seed;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, header, request::Parts};

use crate::error::ApiError;
use crate::faults::Faults;
use crate::idempotency;
use crate::item::{self, Item};
use crate::store::ItemStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: ItemStore,
    pub region: Arc<str>,
    pub faults: Arc<Faults>,
    pub admin_token: Option<Arc<str>>,
    pub origin_guard: Arc<caller::OriginGuard>,
    /// The most JSON one listing page holds ([`crate::config::Config::list_page_max_bytes`]).
    pub list_page_max_bytes: usize,
}

/// A JSON object request body, read up to the item size limit.
/// A missing `Content-Type` is taken as JSON; any other non-JSON type is refused (415).
pub struct JsonObject(pub Item);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let too_large = ApiError::TooLarge {
            limit: item::MAX_ITEM_BYTES,
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > item::MAX_ITEM_BYTES) {
            return Err(too_large);
        }
        let bytes = axum::body::to_bytes(request.into_body(), item::MAX_ITEM_BYTES)
            .await
            .map_err(|_| too_large)?;
        Ok(Self(item::parse_object(&bytes)?))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// An item id from the path, checked.
pub struct ItemIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ItemIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Item(item::ItemError::IdControlChars))?;
        item::validate_id(&id)?;
        Ok(Self(id))
    }
}

/// The optional `Idempotency-Key` header, checked, with the scope it is hashed in: the subject
/// the edge vouched for (see [`caller::Subject`]), or everyone's shared scope.
pub struct IdempotencyKey {
    pub key: Option<String>,
    pub scope: String,
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let scope = parts
            .extensions
            .get::<caller::Subject>()
            .map_or_else(|| idempotency::ANONYMOUS.to_owned(), |s| s.0.clone());
        let key = match parts.headers.get("idempotency-key") {
            None => None,
            Some(v) => {
                let key = v.to_str().map_err(|_| item::ItemError::BadIdempotencyKey)?;
                item::validate_idempotency_key(key)?;
                Some(key.to_owned())
            }
        };
        Ok(Self { key, scope })
    }
}

/// The optional `If-Match` and `If-None-Match` headers: `*` or entity tags (a malformed one
/// is a 400 with its own code).
pub struct Conditional(pub item::Preconditions);

impl<S: Send + Sync> FromRequestParts<S> for Conditional {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(item::Preconditions {
            if_match: condition(parts, header::IF_MATCH, item::EntityTags::if_match)
                .map_err(|()| ApiError::BadIfMatch)?,
            if_none_match: condition(
                parts,
                header::IF_NONE_MATCH,
                item::EntityTags::if_none_match,
            )
            .map_err(|()| ApiError::BadIfNoneMatch)?,
        }))
    }
}

/// One precondition header, parsed if present; `Err` when it is malformed. Repeated lines are
/// one comma-separated list (RFC 9110 section 5.3), so none of them is left unread.
fn condition<T>(
    parts: &Parts,
    name: header::HeaderName,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ()> {
    let mut lines = parts.headers.get_all(name).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let joined = lines
        .map(|v| v.to_str().map_err(|_| ()))
        .collect::<Result<Vec<_>, ()>>()?
        .join(", ");
    parse(&joined).map(Some).ok_or(())
}

/// Answer for paths no route knows.
pub async fn route_not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound(request.uri().path().to_owned())
}

/// Answer for a known path with the wrong method (axum keeps the `Allow` header).
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
