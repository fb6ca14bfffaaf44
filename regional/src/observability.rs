//! Request ids, the serving-region header and the one JSON log line per request.
//! Never logs item bodies or secrets.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// Header carrying the request id (taken from the request or generated, always echoed).
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Header naming the region that served the response.
pub static SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being handled ("-" outside a request).
pub fn current_request_id() -> String {
    CURRENT_REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Sets up JSON logs to stdout. In Lambda, without timestamps (CloudWatch adds them).
pub fn init_logging(in_lambda: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter);
    if in_lambda {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn request_id_from(request: &Request) -> String {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Middleware: request id in and out, region header out, one log line per request.
pub async fn log_request(
    State(region): State<std::sync::Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id_from(&request);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let mut response = CURRENT_REQUEST_ID
        .scope(request_id.clone(), next.run(request))
        .await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&region) {
        headers.insert(SERVED_BY.clone(), v);
    }
    // Fields as `&str`, not `%` (Display): the JSON formatter writes them as they are instead of
    // formatting each into a new String first.
    tracing::info!(
        request_id = request_id.as_str(),
        method = method.as_str(),
        route = route.as_str(),
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        region = &*region,
        "request"
    );
    response
}
