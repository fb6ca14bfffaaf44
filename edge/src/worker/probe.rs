//! Active health: the cron probes every region's health path and shares the results through KV
//! (with each region's failures in a row); each isolate re-reads them at most every
//! `probe_refresh_ms`, in `wait_until`, off the request's path (but for its first request).

use std::time::Duration;

use futures_util::future::{Either, join_all, select};
use worker::{AbortController, Context, Delay, Env, Fetch, Method, Request, RequestInit};

use super::{KV_BINDING, now_ms, with_router};
use crate::core::health::ProbeResult;
use crate::core::router::{ProbeRefresh, ProbeReport};

/// KV key holding the latest [`ProbeReport`].
pub const PROBES_KEY: &str = "probes";

async fn probe_one(url: String, timeout_ms: u64) -> ProbeResult {
    let at_ms = now_ms();
    let controller = AbortController::default();
    let signal = controller.signal();
    let status = async {
        let mut init = RequestInit::new();
        init.with_method(Method::Get);
        let request = Request::new_with_init(&url, &init).ok()?;
        let response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .ok()?;
        Some(response.status_code())
    };
    futures_util::pin_mut!(status);
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    let status = match select(status, timer).await {
        Either::Left((status, _)) => status,
        Either::Right(_) => {
            controller.abort();
            None
        }
    };
    ProbeResult {
        at_ms,
        status,
        latency_ms: now_ms().saturating_sub(at_ms),
        failures_in_row: 0,
    }
}

/// Probes every region, applies the results here and shares them through KV.
pub async fn probe_all(env: &Env) {
    let Some(targets) = with_router(|r| {
        let s = &r.config().settings;
        let targets: Vec<(String, String)> = r
            .config()
            .regions
            .iter()
            .map(|region| {
                (
                    region.name.clone(),
                    format!("{}{}", region.origin, s.probe_path),
                )
            })
            .collect();
        (targets, s.probe_timeout_ms)
    }) else {
        worker::console_error!("probe skipped: no router");
        return;
    };
    let (targets, timeout_ms) = targets;
    let results = join_all(
        targets
            .iter()
            .map(|(_, url)| probe_one(url.clone(), timeout_ms)),
    )
    .await;
    // Failures in a row carry on from the last shared report (this isolate may be new).
    let previous = read_shared(env).await.unwrap_or_default();
    let report = ProbeReport::next(
        &previous,
        targets.into_iter().map(|(name, _)| name).zip(results),
    );
    let now = now_ms();
    with_router(|r| r.apply_probes(&report, now));
    worker::console_log!(
        "{}",
        serde_json::json!({"event": "probe", "report": &report})
    );
    if let Err(e) = share(env, &report).await {
        worker::console_error!("probe results not shared: {e}");
    }
}

/// Writes the report to KV as JSON text. (Handing the struct to `put` would go through
/// serde-wasm-bindgen, which makes the map a JS `Map` that KV stores as `{}`.)
async fn share(env: &Env, report: &ProbeReport) -> std::result::Result<(), String> {
    let kv = env
        .kv(KV_BINDING)
        .map_err(|_| format!("no {KV_BINDING} KV binding: results stay in this isolate"))?;
    let text = serde_json::to_string(report).map_err(|e| e.to_string())?;
    kv.put(PROBES_KEY, text)
        .map_err(|e| e.to_string())?
        .execute()
        .await
        .map_err(|e| e.to_string())
}

async fn read_shared(env: &Env) -> Option<ProbeReport> {
    let kv = env.kv(KV_BINDING).ok()?;
    kv.get(PROBES_KEY)
        .json::<ProbeReport>()
        .await
        .ok()
        .flatten()
}

async fn read_and_apply(env: &Env) {
    let report = read_shared(env).await.unwrap_or_default();
    let now = now_ms();
    with_router(|r| r.apply_probes(&report, now));
}

/// Re-reads the shared probe results when they are due. Off the request path (in `wait_until`,
/// after the response; the results serve the next requests), except once per isolate: its very
/// first request waits for the first read.
pub async fn refresh(env: &Env, ctx: &Context) {
    let now = now_ms();
    match with_router(|r| r.claim_probe_refresh(now)) {
        Some(ProbeRefresh::First) => read_and_apply(env).await,
        Some(ProbeRefresh::Background) => {
            let env = env.clone();
            ctx.wait_until(async move { read_and_apply(&env).await });
        }
        Some(ProbeRefresh::NotDue) | None => {}
    }
}
