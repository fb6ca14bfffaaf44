//! What one run records: counts per simulated second (bounded by the run's length, never per
//! request) and a streaming latency histogram. Everything in `summary.json`, `details.json` and
//! the chart is computed from this.

use crate::hist::Histogram;
use crate::region::{Micros, SECOND};

/// The edge's own counters, summed over every isolate (the core's `/_edge/status` counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeCounters {
    pub attempts: u64,
    pub retries: u64,
    pub hedges: u64,
    pub retries_denied_by_budget: u64,
    pub ejections: u64,
    pub least_bad: u64,
    pub unavailable: u64,
    pub shed: u64,
    pub overloaded: u64,
}

/// One policy's run, recorded.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub seconds: usize,
    pub regions: usize,
    /// Client requests (logical: a first try and its retries are one) by second of arrival.
    pub arrivals: Vec<u64>,
    /// Of those, the ones the client finally got no good answer for.
    pub errors: Vec<u64>,
    /// Attempts sent towards a region (by the edge or by clients directly), by second sent.
    pub attempts: Vec<u64>,
    /// `[second × regions + region]`: attempts reaching a region.
    pub load: Vec<u64>,
    /// Of `load`, the edge's retries and hedges (not a client's own tries).
    pub load_edge_retries: Vec<u64>,
    /// `[second × regions + region]`: first attempts of each client request (where the edge,
    /// or DNS, sends a client first; not the client's retries), by second sent.
    pub first: Vec<u64>,
    /// `[population × regions + region]`: the same over the whole run, by client population.
    pub first_by_population: Vec<u64>,
    pub latency_us: Histogram,
    pub requests: u64,
    pub failed: u64,
    pub attempts_total: u64,
    pub client_retries: u64,
    /// The edge's retries and hedges that a region's limit refused (429, or a 503 from Lambda's
    /// concurrency or DynamoDB's throughput): retries that went past a region's limit.
    pub edge_retries_over_limit: u64,
    pub edge: EdgeCounters,
    /// Events processed (for the run-time report only).
    pub events: u64,
}

impl Recorder {
    pub fn new(horizon_us: Micros, regions: usize, populations: usize) -> Self {
        let seconds = (horizon_us / SECOND) as usize + 2;
        Self {
            seconds,
            regions,
            arrivals: vec![0; seconds],
            errors: vec![0; seconds],
            attempts: vec![0; seconds],
            load: vec![0; seconds * regions],
            load_edge_retries: vec![0; seconds * regions],
            first: vec![0; seconds * regions],
            first_by_population: vec![0; populations * regions],
            latency_us: Histogram::default(),
            requests: 0,
            failed: 0,
            attempts_total: 0,
            client_retries: 0,
            edge_retries_over_limit: 0,
            edge: EdgeCounters::default(),
            events: 0,
        }
    }

    pub fn second(&self, at: Micros) -> usize {
        ((at / SECOND) as usize).min(self.seconds - 1)
    }

    pub fn arrived(&mut self, at: Micros) {
        let s = self.second(at);
        self.arrivals[s] += 1;
    }

    /// An attempt sent to `region`; `first` names the client's population when it is the
    /// first attempt of the client's request.
    pub fn sent(&mut self, at: Micros, region: usize, first: Option<usize>) {
        let s = self.second(at);
        self.attempts[s] += 1;
        self.attempts_total += 1;
        if let Some(p) = first {
            self.first[s * self.regions + region] += 1;
            self.first_by_population[p * self.regions + region] += 1;
        }
    }

    pub fn reached(&mut self, at: Micros, region: usize, edge_retry: bool) {
        let i = self.second(at) * self.regions + region;
        self.load[i] += 1;
        if edge_retry {
            self.load_edge_retries[i] += 1;
        }
    }

    pub fn finished(&mut self, arrived_at: Micros, now: Micros, ok: bool) {
        self.requests += 1;
        self.latency_us.record(now.saturating_sub(arrived_at));
        if !ok {
            self.failed += 1;
            let s = self.second(arrived_at);
            self.errors[s] += 1;
        }
    }
}
