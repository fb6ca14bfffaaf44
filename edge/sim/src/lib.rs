//! `tandem-sim`: a deterministic discrete-event simulator of the edge at internet scale.
//!
//! It runs the real routing core (`edge::core`: every isolate an `EdgeRouter` with its own
//! health view and retry budget, every request an `AttemptLoop`) against simulated regions
//! (latency distributions, API Gateway, Lambda and DynamoDB limits, faults), a KV that delays
//! the cron's probe results, Route 53 and its resolvers, and client populations with their own
//! retry policy. Four policies run against the same world and the same arrivals: `edge`,
//! `edge_no_budget`, `dns_only`, `dns_client_retries`.
//!
//! It must never copy a routing decision out of the core (a simulator of a copy proves nothing
//! about the Worker), read a clock or the OS's entropy inside a run (the same seed gives the
//! same bytes), or keep per-request records (ten million requests run in bounded memory).

pub mod chart;
pub mod dns;
pub mod engine;
pub mod hist;
pub mod metrics;
pub mod queue;
pub mod region;
pub mod rng;
pub mod scenario;
pub mod summary;
pub mod world;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use engine::Policy;
use metrics::Recorder;
use scenario::Scenario;
use summary::{ByPolicy, DetailsFile, SummaryFile};
use world::World;

/// What one scenario's runs produce.
pub struct Output {
    /// `summary.json`, `details.json` and the chart: the same seed gives the same bytes.
    pub summary_json: String,
    pub details_json: String,
    pub chart_svg: String,
    /// `table.md`: the summary as a Markdown table (for docs/scale.md).
    pub table_md: String,
    /// Per policy: wall time, client requests and events (not part of the files).
    pub timings: Vec<(Policy, Duration, u64, u64)>,
}

/// A scenario that cannot run.
#[derive(Debug)]
pub struct SimError(pub String);

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimError {}

/// Runs every policy on `scenario` with `seed`, on up to `threads` threads (the result does
/// not depend on how many).
pub fn simulate(scenario: &Scenario, seed: u64, threads: usize) -> Result<Output, SimError> {
    let world = World::new(scenario, seed).map_err(|e| SimError(e.0))?;
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<(Recorder, Duration)>>> =
        Mutex::new(Policy::ALL.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, Policy::ALL.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&policy) = Policy::ALL.get(i) else {
                        break;
                    };
                    let started = Instant::now();
                    let rec = engine::run(&world, policy, seed);
                    let elapsed = started.elapsed();
                    if let Ok(mut done) = done.lock() {
                        done[i] = Some((rec, elapsed));
                    }
                }
            });
        }
    });
    let done = done
        .into_inner()
        .map_err(|_| SimError("a policy's run panicked".into()))?;
    let mut runs = Vec::new();
    let mut timings = Vec::new();
    for (policy, slot) in Policy::ALL.into_iter().zip(done) {
        let (rec, elapsed) =
            slot.ok_or_else(|| SimError(format!("{} did not run", policy.name())))?;
        timings.push((policy, elapsed, rec.requests, rec.events));
        runs.push((policy, rec));
    }
    let mut summaries = Vec::new();
    let mut details = Vec::new();
    for (policy, rec) in &runs {
        let (s, d) = summary::summarise(&world, rec);
        summaries.push((*policy, s));
        details.push((*policy, d));
    }
    let names = |rs: Vec<usize>| -> Vec<String> {
        rs.into_iter()
            .map(|r| scenario.regions[r].name.clone())
            .collect()
    };
    let summaries = ByPolicy(summaries);
    let details = ByPolicy(details);
    let table_md = summary::markdown(&scenario.name, &summaries, &details);
    let summary_file = SummaryFile {
        scenario: &scenario.name,
        seed,
        policies: summaries,
    };
    let details_file = DetailsFile {
        scenario: &scenario.name,
        seed,
        regions: scenario.regions.len(),
        edge_locations: world.locations.len(),
        isolates: world.locations.len() * scenario.edge.isolates_per_location,
        offered_rps: scenario.clients.iter().map(|p| p.rate_rps).sum(),
        duration_s: scenario.duration_s,
        region_capacity_rps: scenario
            .regions
            .iter()
            .map(|spec| {
                let region = region::Region::new(spec.latency_ms, &spec.capacity, Vec::new());
                (spec.name.clone(), summary::round(region.capacity_rps(), 1))
            })
            .collect(),
        survivors: names(world.survivors()),
        faulted: names(world.affected_regions()),
        policies: details,
    };
    Ok(Output {
        summary_json: to_json(&summary_file)?,
        details_json: to_json(&details_file)?,
        chart_svg: chart::render(&world, &runs),
        table_md,
        timings,
    })
}

/// Pretty JSON with a final newline.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, SimError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| SimError(e.to_string()))
}
