//! Who may call: the middleware that lets through only what the edge signed (locally, by checking
//! the SigV4 signature; in Lambda, by the IAM caller API Gateway verified), and the caller's
//! subject the edge vouches for (it scopes idempotency keys).
//!
//! `/health` and the admin route are outside it (probes and operators; the admin route has its
//! own token). A refusal is a 403 with a stable code; the reason is logged, never the secret.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::item;
use crate::origin_auth::{self, OriginKey};

/// How this region recognises the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginGuard {
    /// Anyone may call (the seed's open flow; local stacks started with auth off).
    Open,
    /// Locally: every request must carry the edge's SigV4 signature, checked here.
    Signature(OriginKey),
    /// In Lambda: API Gateway checked the signature; the caller it names must be this ARN.
    LambdaCaller(String),
}

/// The caller's subject, set by [`require_edge`] when the request is the edge's and names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(pub String);

/// Longest subject kept (a JWT `sub` is usually far shorter).
const MAX_SUBJECT_BYTES: usize = 256;

fn subject_of(request: &Request) -> Option<Subject> {
    request
        .headers()
        .get(origin_auth::SUBJECT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES)
        .filter(|s| s.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .map(|s| Subject(s.to_owned()))
}

/// Middleware: refuses (403) any request the edge did not sign, per the guard.
pub async fn require_edge(
    State(guard): State<Arc<OriginGuard>>,
    request: Request,
    next: Next,
) -> Response {
    match &*guard {
        OriginGuard::Open => next.run(request).await,
        OriginGuard::LambdaCaller(expected) => {
            let caller = lambda_caller_arn(&request);
            if origin_auth::caller_is_edge(caller.as_deref(), expected) {
                let mut request = request;
                if let Some(subject) = subject_of(&request) {
                    request.extensions_mut().insert(subject);
                }
                next.run(request).await
            } else {
                tracing::warn!(caller = ?caller, "caller is not the edge");
                ApiError::Forbidden("caller_not_edge").into_response()
            }
        }
        OriginGuard::Signature(key) => {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, item::MAX_ITEM_BYTES).await else {
                return ApiError::TooLarge {
                    limit: item::MAX_ITEM_BYTES,
                }
                .into_response();
            };
            let path_and_query = parts
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned();
            let verdict = key.verify(
                parts.method.as_str(),
                &path_and_query,
                &parts.headers,
                &bytes,
                SystemTime::now(),
            );
            let mut request = Request::from_parts(parts, axum::body::Body::from(bytes));
            match verdict {
                Ok(()) => {
                    if let Some(subject) = subject_of(&request) {
                        request.extensions_mut().insert(subject);
                    }
                    next.run(request).await
                }
                Err(e) => {
                    tracing::warn!(reason = %e, "unsigned or badly signed request refused");
                    ApiError::Forbidden(e.code()).into_response()
                }
            }
        }
    }
}

/// The IAM caller API Gateway put in the Lambda event's request context.
fn lambda_caller_arn(request: &Request) -> Option<String> {
    use lambda_http::request::RequestContext;
    match request.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    }
}
