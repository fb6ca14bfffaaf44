//! The edge router. `core` holds every routing decision as plain Rust (built and tested
//! natively); `worker` is the thin Cloudflare Workers adapter (fetch, timers, KV, cron,
//! `request.cf`), compiled only for wasm32.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod worker;
