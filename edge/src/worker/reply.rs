//! Responses the edge writes itself (errors, status, CORS), and header plumbing.

use worker::{Headers, Response, Result};

use crate::core::config::EdgeConfig;

/// Who serves a response the edge answers on its own.
pub const EDGE: &str = "edge";

/// Headers browsers may read from our responses.
const EXPOSED: &str = "x-served-by, x-request-id, x-edge-attempts, x-tandem-affinity, etag, location, server-timing, retry-after, idempotency-replayed, www-authenticate, ratelimit, ratelimit-policy";
const ALLOWED_HEADERS: &str = "content-type, idempotency-key, if-match, if-none-match, x-request-id, x-tandem-affinity, authorization";

/// A JSON error in the same shape the regions use.
pub fn error(status: u16, code: &str, message: &str, request_id: &str) -> Result<Response> {
    let body =
        serde_json::json!({"error": {"code": code, "message": message, "request_id": request_id}});
    let mut response = Response::from_json(&body)?.with_status(status);
    let headers = response.headers_mut();
    headers.set("x-served-by", EDGE)?;
    headers.set("x-request-id", request_id)?;
    if status == 503 {
        headers.set("retry-after", "1")?;
    }
    Ok(response)
}

/// How CORS applies to a request's `Origin`.
pub enum Cors {
    /// The origin is listed: echo it and allow credentials (the affinity cookie).
    Listed(String),
    /// `*` is configured: any origin, without credentials.
    Any,
}

/// CORS for a request's `Origin`, if it applies.
pub fn cors_origin(config: &EdgeConfig, origin: Option<&str>) -> Option<Cors> {
    let origin = origin?;
    if config.cors_origins.iter().any(|o| o == origin) {
        Some(Cors::Listed(origin.to_owned()))
    } else if config.cors_origins.iter().any(|o| o == "*") {
        Some(Cors::Any)
    } else {
        None
    }
}

/// Adds CORS headers for an allowed origin.
pub fn add_cors(headers: &Headers, cors: &Cors) -> Result<()> {
    match cors {
        Cors::Listed(origin) => {
            headers.set("access-control-allow-origin", origin)?;
            headers.set("access-control-allow-credentials", "true")?;
        }
        Cors::Any => headers.set("access-control-allow-origin", "*")?,
    }
    headers.set("access-control-expose-headers", EXPOSED)?;
    headers.append("vary", "Origin")?;
    Ok(())
}

/// The answer to a CORS preflight from an allowed origin.
pub fn preflight(cors: &Cors) -> Result<Response> {
    let mut response = Response::empty()?.with_status(204);
    let headers = response.headers_mut();
    add_cors(headers, cors)?;
    headers.set(
        "access-control-allow-methods",
        "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    )?;
    headers.set("access-control-allow-headers", ALLOWED_HEADERS)?;
    headers.set("access-control-max-age", "600")?;
    headers.set("x-served-by", EDGE)?;
    Ok(response)
}

/// Response headers the regions use between themselves and the edge; never shown to clients.
/// (`x-tandem-affinity` included: the edge issues its own, never a region's.)
pub fn internal_response_header(name: &str) -> bool {
    name == "x-region-status"
        || name == crate::core::outcome::LIMIT_HEADER
        || name.starts_with("x-tandem-")
        || name.starts_with("x-amz")
        || name.starts_with("x-amzn-")
        || name == "apigw-requestid"
}

/// The security headers on every response: no MIME sniffing, no caching (every answer is
/// per-caller API data), and HSTS when the client came over HTTPS.
pub fn add_security_headers(headers: &Headers, secure: bool) -> Result<()> {
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("cache-control", "no-store")?;
    if secure {
        headers.set(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        )?;
    }
    Ok(())
}

/// Response headers that must not be copied from an origin's answer (the body is re-sent
/// already decoded).
pub fn not_copied(name: &str) -> bool {
    matches!(
        name,
        "content-length" | "transfer-encoding" | "connection" | "content-encoding" | "keep-alive"
    )
}
