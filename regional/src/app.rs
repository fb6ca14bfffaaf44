//! Wiring: the router, its middleware and its state. Used by `main` (Lambda or local HTTP) and by
//! tests.

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::deadline;
use crate::faults::{self, Faults};
use crate::observability;
use crate::store::ItemStore;

/// The state for a configuration (connects the DynamoDB client; makes no call yet).
pub async fn state(config: &Config) -> AppState {
    AppState {
        store: ItemStore::connect(&config.region, &config.table).await,
        region: Arc::from(config.region.as_str()),
        faults: Faults::new(config.status),
        admin_token: config.admin_token.as_deref().map(Arc::from),
        origin_guard: Arc::new(config.origin_guard.clone()),
        list_page_max_bytes: config.list_page_max_bytes,
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let admin = Router::new().route(
        "/admin/faults",
        get(api::admin::show)
            .put(api::admin::update)
            .post(api::admin::update),
    );
    // Only what the edge signed (see `api::caller`); health stays open for probes.
    let protected = Router::new()
        .route("/create", post(api::seed::create))
        .route("/get/{item_id}", get(api::seed::get))
        .route("/items", post(api::items::create).get(api::items::list))
        .route(
            "/items/{id}",
            get(api::items::get)
                .put(api::items::replace)
                .delete(api::items::delete),
        )
        .route_layer(from_fn_with_state(
            state.origin_guard.clone(),
            api::caller::require_edge,
        ));
    let served = Router::new()
        .route("/health", get(api::health::health))
        .merge(protected)
        .layer(from_fn_with_state(state.faults.clone(), faults::inject));
    served
        .merge(admin)
        .fallback(api::route_not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(from_fn_with_state(
            state.region.clone(),
            observability::log_request,
        ))
        // Outermost: the deadline counts from the request's arrival.
        .layer(axum::middleware::from_fn(deadline::track))
        .with_state(state)
}
