//! The Cloudflare Workers adapter: turns platform events into calls on the routing core and the
//! core's decisions into fetches, timers and KV reads. It decides nothing itself.
//!
//! Per-isolate state (the router) lives in a `thread_local!`; it is lost on a panic, so nothing
//! here may panic: no `unwrap`, no indexing that can fail.

mod probe;
mod proxy;
mod reply;

use std::cell::RefCell;

use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

use crate::core::Millis;
use crate::core::config::EdgeConfig;
use crate::core::router::EdgeRouter;

/// KV namespace binding shared by every isolate (probe results).
pub const KV_BINDING: &str = "EDGE_STATE";

thread_local! {
    /// The router, with the raw vars it was built from (rebuilt when they change).
    static ROUTER: RefCell<Option<(String, EdgeRouter)>> = const { RefCell::new(None) };
}

/// The platform clock, as the core wants it.
pub fn now_ms() -> Millis {
    worker::Date::now().as_millis()
}

/// A random number in `0.0..1.0`.
pub fn random() -> f64 {
    js_sys::Math::random()
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// Runs `f` on this isolate's router, building it from the vars first if needed.
pub fn with_router<T>(
    env: &Env,
    f: impl FnOnce(&mut EdgeRouter) -> T,
) -> std::result::Result<T, crate::core::config::ConfigError> {
    let names = ["REGIONS", "FALLBACK_ORIGIN", "ROUTING", "CORS_ORIGINS"];
    let fingerprint: String = names
        .iter()
        .map(|n| var(env, n).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{0}");
    ROUTER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let stale = slot.as_ref().is_none_or(|(fp, _)| *fp != fingerprint);
        if stale {
            let config = EdgeConfig::from_vars(|name| var(env, name))?;
            *slot = Some((fingerprint, EdgeRouter::new(config)));
        }
        match slot.as_mut() {
            Some((_, router)) => Ok(f(router)),
            None => Err(crate::core::config::ConfigError {
                field: "REGIONS".into(),
                reason: "router missing".into(),
            }),
        }
    })
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
    probe::probe_all(&env).await;
}
