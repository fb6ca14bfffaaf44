//! The Cloudflare Workers adapter: turns platform events into calls on the routing core and the
//! core's decisions into fetches, timers and KV reads. It decides nothing itself.
//!
//! Per-isolate state (the router) lives in a `thread_local!`; it is lost on a panic, so nothing
//! here may panic: no `unwrap`, no indexing that can fail.

mod ids;
mod page;
mod probe;
mod proxy;
mod reply;
mod tokens;

use std::cell::RefCell;
use std::sync::Arc;

use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

use crate::core::Millis;
use crate::core::access::AccessConfig;
use crate::core::config::{ConfigError, EdgeConfig};
use crate::core::router::EdgeRouter;

/// KV namespace binding shared by every isolate (probe results).
pub const KV_BINDING: &str = "EDGE_STATE";

thread_local! {
    /// This isolate's router (health, latency and budget state live here).
    static ROUTER: RefCell<Option<EdgeRouter>> = const { RefCell::new(None) };
    /// This isolate's access settings (token rules, signing keys, operator token, rate limit).
    static ACCESS: RefCell<Option<Arc<AccessConfig>>> = const { RefCell::new(None) };
}

/// The platform clock, as the core wants it.
pub fn now_ms() -> Millis {
    worker::Date::now().as_millis()
}

/// The size of this isolate's Wasm linear memory, in bytes.
pub fn wasm_memory_bytes() -> f64 {
    use wasm_bindgen::JsCast;
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| {
            m.buffer()
                .dyn_into::<js_sys::ArrayBuffer>()
                .map_or(0.0, |b| f64::from(b.byte_length()))
        })
        .unwrap_or(0.0)
}

/// A random number in `0.0..1.0`.
pub fn random() -> f64 {
    js_sys::Math::random()
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// Makes sure this isolate has a router and returns its configuration. The vars are read once per
/// isolate: new vars mean a new deployment, and so new isolates. An invalid configuration is
/// not kept, so it is reported on every request until fixed.
pub fn ensure_router(env: &Env) -> std::result::Result<Arc<EdgeConfig>, ConfigError> {
    ROUTER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(router) = slot.as_ref() {
            return Ok(router.shared_config());
        }
        let router = EdgeRouter::new(EdgeConfig::from_vars(|name| var(env, name))?);
        let config = router.shared_config();
        *slot = Some(router);
        Ok(config)
    })
}

/// This isolate's access settings, read once (like the routing vars); an invalid one is not
/// kept, so every request reports it until fixed.
pub fn ensure_access(env: &Env) -> std::result::Result<Arc<AccessConfig>, ConfigError> {
    ACCESS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some(access) = slot.as_ref() {
            return Ok(access.clone());
        }
        let access = Arc::new(AccessConfig::from_vars(|name| {
            // Secrets and vars are read alike (`wrangler secret put`, or `--var` locally).
            env.secret(name)
                .ok()
                .map(|v| v.to_string())
                .or_else(|| var(env, name))
        })?);
        *slot = Some(access.clone());
        Ok(access)
    })
}

/// Runs `f` on this isolate's router (`None` until [`ensure_router`] has succeeded).
pub fn with_router<T>(f: impl FnOnce(&mut EdgeRouter) -> T) -> Option<T> {
    ROUTER.with(|cell| cell.borrow_mut().as_mut().map(f))
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    proxy::handle(req, env, ctx).await
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    match ensure_router(&env) {
        Ok(_) => probe::probe_all(&env).await,
        Err(e) => worker::console_error!(
            "{}",
            serde_json::json!({"event": "edge_config_invalid", "field": e.field, "reason": e.reason})
        ),
    }
}
