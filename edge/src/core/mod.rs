//! The routing core: every decision the edge makes, as plain Rust with no I/O, no platform types
//! and no clock of its own. Time comes in as milliseconds since the Unix epoch (`now_ms`) from
//! whoever calls, so a failover can be replayed to the millisecond in a native test.
//!
//! - `config`: the edge's settings, parsed and checked once.
//! - `geo`: distance between a client and a region.
//! - `ewma`: peak-sensitive latency average per region.
//! - `health`: one region's state machine (passive ejection, trial, drain, probe results).
//! - `budget`: the retry budget that caps retry storms.
//! - `overload`: a region refusing work for load (429): no retries to it, first attempts shed.
//! - `window`: counts over a sliding window of one-second buckets.
//! - `outcome`: what an attempt produced and whether to try another region.
//! - `affinity`: read-your-writes tokens.
//! - `client_request`: what the edge refuses in a request line and headers (405, 400) before
//!   any region sees it.
//! - `access`: who may use the edge (token rules, operator token, rate limit) and how it
//!   proves itself to the regions; `origin_signing`: SigV4 on every origin request; `tokens`:
//!   the caller's bearer token checked (keys, cache, refresh policy).
//! - `router`: the per-isolate state that ties them together (plan, record, status).
//! - `attempts`: one request's attempt loop (next region, hedge, retry, fallback, delivery).

pub mod access;
pub mod affinity;
pub mod attempts;
pub mod budget;
pub mod client_request;
pub mod config;
pub mod ewma;
pub mod geo;
pub mod health;
pub mod origin_signing;
pub mod outcome;
pub mod overload;
pub mod router;
pub mod tokens;
pub mod window;

/// Milliseconds since the Unix epoch, as given by the platform's clock.
pub type Millis = u64;
