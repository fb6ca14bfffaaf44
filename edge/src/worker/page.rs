//! The page at the edge URL (`edge/page/`: plain HTML, CSS and JavaScript, bundled into the
//! Worker, nothing fetched from elsewhere): a person opens the edge URL and sees the system work.
//! Its content security policy allows only its own files and calls to this origin.

use worker::{Method, Response, Result};

use super::reply;
use crate::core::access::PageAsset;

const HTML: &str = include_str!("../../page/index.html");
const SCRIPT: &str = include_str!("../../page/app.js");
const STYLE: &str = include_str!("../../page/app.css");

/// Only this origin's own files and API; no inline script, no frames.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Serves one file of the page (GET or HEAD; anything else is a 405).
pub fn serve(asset: PageAsset, method: &Method, request_id: &str) -> Result<Response> {
    if !matches!(method, Method::Get | Method::Head) {
        let mut response = reply::error(
            405,
            "method_not_allowed",
            "the page is read with GET",
            request_id,
        )?;
        response.headers_mut().set("allow", "GET, HEAD")?;
        return Ok(response);
    }
    let (body, content_type) = match asset {
        PageAsset::Html => (HTML, "text/html; charset=utf-8"),
        PageAsset::Script => (SCRIPT, "text/javascript; charset=utf-8"),
        PageAsset::Style => (STYLE, "text/css; charset=utf-8"),
    };
    let mut response = Response::ok(body)?;
    let headers = response.headers_mut();
    headers.set("content-type", content_type)?;
    headers.set("content-security-policy", POLICY)?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("x-frame-options", "DENY")?;
    headers.set("x-served-by", reply::EDGE)?;
    Ok(response)
}
