//! The discrete-event loop of one run: one policy against one world.
//!
//! Edge policies drive the real `edge::core` exactly as the Worker adapter does
//! (`edge/src/worker/proxy.rs`): each request is planned by its isolate's `EdgeRouter`, its
//! attempts come from the core's `AttemptLoop` (`next_step`, `hedge_due`, `report`,
//! `abandoned`), the shared probe results are read with `claim_probe_refresh` and
//! `apply_probes`, and the cron builds its report with `ProbeReport::next`. This module only
//! moves simulated time, carries attempts to regions and answers back, and counts. DNS
//! policies send each client try straight to the region its resolver answers.
//!
//! Events are ordered by (time, sequence number): two runs with the same seed process the same
//! events in the same order.

use std::sync::Arc;

use edge::core::Millis;
use edge::core::attempts::{AttemptLoop, Report, Step};
use edge::core::config::EdgeConfig;
use edge::core::health::ProbeResult;
use edge::core::outcome::Outcome;
use edge::core::router::{EdgeRouter, ProbeRefresh, ProbeReport, RequestFacts};

use crate::dns::{self, Dns};
use crate::metrics::{EdgeCounters, Recorder};
use crate::queue::{Calendar, Timed};
use crate::region::{Answer, MILLI, Micros, Region};
use crate::rng::Rng;
use crate::world::{CLIENTS_PER_POPULATION, World, millis};

/// The simulated clock's epoch for the core, in ms since the Unix epoch (a day in 2026): the
/// core sees `EPOCH_MS + t`.
pub const EPOCH_MS: Millis = 1_780_000_000_000;

/// Who routes the clients' requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The edge as the scenario configures it; clients keep their retry policy.
    Edge,
    /// The edge with a retry budget no isolate can empty.
    EdgeNoBudget,
    /// Route 53 failover only; clients do not retry.
    DnsOnly,
    /// Route 53 failover, clients retry.
    DnsClientRetries,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::Edge,
        Policy::EdgeNoBudget,
        Policy::DnsOnly,
        Policy::DnsClientRetries,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Edge => "edge",
            Policy::EdgeNoBudget => "edge_no_budget",
            Policy::DnsOnly => "dns_only",
            Policy::DnsClientRetries => "dns_client_retries",
        }
    }

    fn uses_edge(self) -> bool {
        matches!(self, Policy::Edge | Policy::EdgeNoBudget)
    }

    fn clients_retry(self) -> bool {
        self != Policy::DnsOnly
    }
}

/// What a client's try ended with, when not an HTTP status.
const CONNECT_ERROR: u16 = 0;
const TIMED_OUT: u16 = 1;

/// Whether a client retries this answer (its policy: 429, 502, 503, 504, connection errors and
/// timeouts).
fn client_retries(status: u16) -> bool {
    matches!(status, CONNECT_ERROR | TIMED_OUT | 429 | 502 | 503 | 504)
}

fn is_success(status: u16) -> bool {
    (200..400).contains(&status)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Arrival(u16),
    ClientTry(u32),
    EdgeIn(u32, u32),
    /// Request, generation, attempt; the region and whether it is an edge retry, for an
    /// attempt whose request has moved on (it still reaches the region).
    RegionIn(u32, u32, u8, u8, bool),
    Back(u32, u32, u8),
    Hedge(u32, u32),
    Cron,
    Check(u16),
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: Micros,
    seq: u64,
    kind: Kind,
}

impl Timed for Event {
    fn key(&self) -> (u64, u64) {
        (self.at, self.seq)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    Post,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
        }
    }
}

/// One attempt of an edge try (or a client's direct try).
#[derive(Debug, Clone, Copy)]
struct Attempt {
    region: usize,
    sent_us: Micros,
    deadline_us: Micros,
    live: bool,
    /// A retry or hedge of the edge (not the first attempt of the client's try).
    edge_retry: bool,
    outcome: Outcome,
    status: u16,
    retry_after_us: Micros,
}

/// A hedge the core armed for the step's first attempt.
#[derive(Debug, Clone, Copy)]
struct Hedge {
    region: usize,
    timeout_ms: u64,
    due_us: Micros,
}

/// A client request in flight (all its tries).
#[derive(Debug, Clone)]
struct Request {
    generation: u32,
    population: usize,
    location: usize,
    router: usize,
    client: usize,
    method: Method,
    arrived_us: Micros,
    retries: u32,
    attempt_loop: Option<AttemptLoop>,
    attempts: Vec<Attempt>,
    /// The step's first attempt (its hedge races it).
    primary: usize,
    /// An armed hedge: the region, the time left of the step's timeout after the delay, and
    /// when it is due.
    hedge: Option<Hedge>,
    /// Whether the hedge's timer is set (it is set only if the first attempt is not back by
    /// then, which is known once the attempt reaches its region).
    hedge_timer: bool,
    status: u16,
    retry_after_us: Micros,
}

/// The shared probe results as KV holds them: every version with the time it was written.
#[derive(Debug, Default)]
struct Kv {
    versions: Vec<(Micros, ProbeReport)>,
}

impl Kv {
    /// The latest version visible at a location with `delay_us` at `now`.
    fn visible(&self, now: Micros, delay_us: Micros) -> Option<&ProbeReport> {
        self.versions
            .iter()
            .rev()
            .find(|(written, _)| written + delay_us <= now)
            .map(|(_, report)| report)
    }
}

/// One run's state.
struct Run<'w> {
    world: &'w World,
    policy: Policy,
    now: Micros,
    seq: u64,
    queue: Calendar<Event>,
    regions: Vec<Region>,
    routers: Vec<EdgeRouter>,
    config: Arc<EdgeConfig>,
    isolates: usize,
    kv: Kv,
    dns: Option<Dns>,
    requests: Vec<Request>,
    free: Vec<u32>,
    arrivals: Vec<Rng>,
    service: Rng,
    edge_rng: Rng,
    client_rng: Rng,
    dns_rng: Rng,
    rec: Recorder,
}

fn ms(at: Micros) -> Millis {
    EPOCH_MS + at / MILLI
}

/// Runs one policy against the world; the same seed gives the same record.
pub fn run(world: &World, policy: Policy, seed: u64) -> Recorder {
    let config = if policy == Policy::EdgeNoBudget {
        world.edge_no_budget.clone()
    } else {
        world.edge.clone()
    };
    let isolates = world.scenario.edge.isolates_per_location;
    let routers = if policy.uses_edge() {
        (0..world.locations.len() * isolates)
            .map(|_| EdgeRouter::new(config.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let regions = world.regions();
    let mut dns_rng = Rng::stream(seed, "dns");
    let dns = (!policy.uses_edge()).then(|| Dns::new(world, &mut dns_rng));
    let mut run = Run {
        world,
        policy,
        now: 0,
        seq: 0,
        queue: Calendar::default(),
        regions,
        routers,
        config: Arc::new(config),
        isolates,
        kv: Kv::default(),
        dns,
        requests: Vec::new(),
        free: Vec::new(),
        arrivals: (0..world.populations.len())
            .map(|p| Rng::stream(seed, &format!("arrivals-{p}")))
            .collect(),
        service: Rng::stream(seed, "service"),
        edge_rng: Rng::stream(seed, "edge"),
        client_rng: Rng::stream(seed, "client"),
        dns_rng,
        rec: Recorder::new(
            world.horizon_us,
            world.scenario.regions.len(),
            world.populations.len(),
        ),
    };
    run.start();
    while let Some(event) = run.queue.pop() {
        run.now = event.at;
        run.rec.events += 1;
        run.handle(event.kind);
    }
    run.rec.edge = run.edge_counters();
    run.rec
}

impl Run<'_> {
    fn at(&mut self, at: Micros, kind: Kind) {
        self.seq += 1;
        self.queue.push(Event {
            at,
            seq: self.seq,
            kind,
        });
    }

    fn start(&mut self) {
        for (p, population) in self.world.populations.iter().enumerate() {
            if population.rate_rps > 0.0 {
                let first = self.arrivals[p].exponential(1e6 / population.rate_rps) as Micros;
                if first < self.world.duration_us {
                    self.at(first, Kind::Arrival(p as u16));
                }
            }
        }
        if self.policy.uses_edge() {
            let first = millis(self.world.scenario.edge.probe_interval_s * 500.0);
            self.at(first, Kind::Cron);
        } else if let Some(dns) = &self.dns {
            let phases = dns.phases_us.clone();
            for (c, phase) in phases.into_iter().enumerate() {
                self.at(phase, Kind::Check(c as u16));
            }
        }
    }

    fn handle(&mut self, kind: Kind) {
        match kind {
            Kind::Arrival(p) => self.arrival(p as usize),
            Kind::ClientTry(r) => self.client_try(r as usize),
            Kind::EdgeIn(r, g) => {
                if self.requests[r as usize].generation == g {
                    self.edge_in(r as usize);
                }
            }
            Kind::RegionIn(r, g, a, region, edge_retry) => {
                if self.requests[r as usize].generation == g {
                    self.region_in(r as usize, a as usize);
                } else {
                    // Aborted by the edge after it left: the region still gets it and works.
                    self.rec.reached(self.now, region as usize, edge_retry);
                    self.regions[region as usize].serve(self.now, &mut self.service);
                }
            }
            Kind::Back(r, g, a) => {
                if self.requests[r as usize].generation == g {
                    self.back(r as usize, a as usize);
                }
            }
            Kind::Hedge(r, g) => {
                if self.requests[r as usize].generation == g {
                    self.hedge(r as usize);
                }
            }

            Kind::Cron => self.cron(),
            Kind::Check(c) => self.check(c as usize),
        }
    }

    fn arrival(&mut self, p: usize) {
        let world = self.world;
        let population = &world.populations[p];
        let rng = &mut self.arrivals[p];
        let location = population.locations[rng.below(population.locations.len())];
        let isolate = rng.below(self.isolates);
        let client = rng.below(CLIENTS_PER_POPULATION);
        let u = rng.unit();
        let method = if u < world.mix[0] {
            Method::Get
        } else if u < world.mix[1] {
            Method::Put
        } else {
            Method::Post
        };
        let next = self.now + rng.exponential(1e6 / population.rate_rps) as Micros;
        if next < world.duration_us {
            self.at(next, Kind::Arrival(p as u16));
        }
        let request = Request {
            generation: 0,
            population: p,
            location,
            router: location * self.isolates + isolate,
            client,
            method,
            arrived_us: self.now,
            retries: 0,
            attempt_loop: None,
            attempts: Vec::new(),
            primary: 0,
            hedge: None,
            hedge_timer: false,
            status: 0,
            retry_after_us: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                let old = &mut self.requests[slot as usize];
                let generation = old.generation.wrapping_add(1);
                let mut attempts = std::mem::take(&mut old.attempts);
                attempts.clear();
                *old = Request {
                    generation,
                    attempts,
                    ..request
                };
                slot as usize
            }
            None => {
                self.requests.push(request);
                self.requests.len() - 1
            }
        };
        self.rec.arrived(self.now);
        self.client_try(slot);
    }

    /// A client sends a try (the first, or a retry after its backoff).
    fn client_try(&mut self, r: usize) {
        let world = self.world;
        let req = &mut self.requests[r];
        req.generation = req.generation.wrapping_add(1);
        req.attempts.clear();
        req.hedge = None;
        req.attempt_loop = None;
        let generation = req.generation;
        let access = world.populations[req.population].access_one_way_us;
        if self.policy.uses_edge() {
            let overhead = millis(world.scenario.edge.overhead_ms);
            self.at(
                self.now + access + overhead,
                Kind::EdgeIn(r as u32, generation),
            );
            return;
        }
        let (p, client, location) = (req.population, req.client, req.location);
        let Some(dns) = &mut self.dns else {
            return;
        };
        let region = dns.resolve(p, client, self.now, &mut self.dns_rng);
        let deadline = self.now + dns::client_timeout_us(world);
        let one_way = access + dns::direct_one_way_us(world, location, region);
        let req = &mut self.requests[r];
        req.attempts.push(Attempt {
            region,
            sent_us: self.now,
            deadline_us: deadline,
            live: true,
            edge_retry: false,
            outcome: Outcome::Timeout,
            status: TIMED_OUT,
            retry_after_us: 0,
        });
        let first = (req.retries == 0).then_some(req.population);
        self.rec.sent(self.now, region, first);
        self.at(
            self.now + one_way,
            Kind::RegionIn(r as u32, generation, 0, region as u8, false),
        );
    }

    /// The request reaches its edge isolate: probe results, plan, first step.
    fn edge_in(&mut self, r: usize) {
        let world = self.world;
        let now_ms = ms(self.now);
        let req = &self.requests[r];
        let location = &world.locations[req.location];
        let router = &mut self.routers[req.router];
        let refresh = router.claim_probe_refresh(now_ms);
        let view = match refresh {
            ProbeRefresh::NotDue => None,
            _ => self.kv.visible(self.now, location.kv_delay_us),
        };
        if refresh == ProbeRefresh::First
            && let Some(report) = view
        {
            router.apply_probes(report, now_ms);
        }
        let facts = RequestFacts {
            method: req.method.name(),
            client: Some(location.coordinates),
            continent: None,
            affinity: None,
            client_key: Some(&world.populations[req.population].client_keys[req.client]),
            has_idempotency_key: req.method == Method::Post,
        };
        let plan = router.plan(&facts, now_ms);
        if refresh == ProbeRefresh::Background
            && let Some(report) = view
        {
            // Read in `wait_until`: the next requests use it.
            router.apply_probes(report, now_ms);
        }
        let attempt_loop = AttemptLoop::new(plan, &self.config.settings, now_ms, false);
        self.requests[r].attempt_loop = Some(attempt_loop);
        self.edge_step(r);
    }

    /// Asks the core for the next step of an edge try and carries it out.
    fn edge_step(&mut self, r: usize) {
        let now_ms = ms(self.now);
        let req = &mut self.requests[r];
        let router = &mut self.routers[req.router];
        let Some(attempt_loop) = req.attempt_loop.as_mut() else {
            return;
        };
        match attempt_loop.next_step(router, now_ms) {
            Step::Send {
                region,
                timeout_ms,
                hedge,
            } => {
                let first = req.attempts.is_empty();
                req.primary = req.attempts.len();
                req.hedge = hedge.map(|(delay, other)| Hedge {
                    region: other,
                    timeout_ms: timeout_ms.saturating_sub(delay).max(1),
                    due_us: self.now + delay * MILLI,
                });
                req.hedge_timer = false;
                let generation = req.generation;
                let reaches_region = self.send(r, region, timeout_ms, !first);
                // The timer is needed only if the attempt is not back by then; that is known
                // when it reaches the region, unless the hedge is due before.
                if let Some(h) = self.requests[r].hedge
                    && h.due_us <= reaches_region
                {
                    self.requests[r].hedge_timer = true;
                    self.at(h.due_us, Kind::Hedge(r as u32, generation));
                }
            }
            // No fallback origin is configured: `Fallback` never comes; if it did, it would
            // end the try like `Stop`.
            Step::Fallback { .. } | Step::Stop => {
                // As the Worker: an answer the core held for this case, else the edge's 503.
                let held = attempt_loop
                    .held_at_stop()
                    .and_then(|region| req.attempts.iter().rev().find(|o| o.region == region));
                if let Some(held) = held {
                    req.status = held.status;
                    req.retry_after_us = held.retry_after_us;
                } else {
                    if !attempt_loop.overloaded() {
                        router.on_unavailable();
                    }
                    req.status = 503;
                    req.retry_after_us = 1_000 * MILLI;
                }
                let at = self.now + self.world.populations[req.population].access_one_way_us;
                self.client_answered(r, at);
            }
        }
    }

    /// Sends an edge attempt to `region`; returns when it reaches it.
    fn send(&mut self, r: usize, region: usize, timeout_ms: u64, edge_retry: bool) -> Micros {
        let req = &mut self.requests[r];
        let index = req.attempts.len();
        req.attempts.push(Attempt {
            region,
            sent_us: self.now,
            deadline_us: self.now + timeout_ms * MILLI,
            live: true,
            edge_retry,
            outcome: Outcome::Timeout,
            status: TIMED_OUT,
            retry_after_us: 0,
        });
        let one_way = self.world.locations[req.location].to_region_us[region];
        let generation = req.generation;
        let first = (!edge_retry && req.retries == 0).then_some(req.population);
        self.rec.sent(self.now, region, first);
        self.at(
            self.now + one_way,
            Kind::RegionIn(r as u32, generation, index as u8, region as u8, edge_retry),
        );
        self.now + one_way
    }

    /// An attempt reaches its region: the answer, and when it is back (or the timeout).
    fn region_in(&mut self, r: usize, a: usize) {
        let world = self.world;
        let req = &mut self.requests[r];
        let attempt = req.attempts[a];
        self.rec
            .reached(self.now, attempt.region, attempt.edge_retry);
        let served = self.regions[attempt.region].serve(self.now, &mut self.service);
        if attempt.edge_retry && served.over_limit {
            self.rec.edge_retries_over_limit += 1;
        }
        let mut back = world.locations[req.location].to_region_us[attempt.region];
        if !self.policy.uses_edge() {
            back += world.populations[req.population].access_one_way_us;
        }
        let (outcome, status, retry_after_us, at) = match served.answer {
            Answer::Status {
                status,
                region_status,
                retry_after_s,
            } => (
                Outcome::Answered {
                    status,
                    region_status,
                    // The function marks its table's throttling (`x-region-limit`); what API
                    // Gateway or Lambda refused carries no `x-region-status` at all.
                    at_limit: served.over_limit && region_status.is_some(),
                },
                status,
                retry_after_s.map_or(0, |s| (s * 1e6) as Micros),
                self.now + served.service_us + back,
            ),
            Answer::ConnectError => (Outcome::ConnectError, CONNECT_ERROR, 0, self.now + back),
            Answer::Silence => (Outcome::Timeout, TIMED_OUT, 0, Micros::MAX),
        };
        let attempt = &mut req.attempts[a];
        let (outcome, status, at) = if at > attempt.deadline_us {
            (Outcome::Timeout, TIMED_OUT, attempt.deadline_us)
        } else {
            (outcome, status, at)
        };
        attempt.outcome = outcome;
        attempt.status = status;
        attempt.retry_after_us = retry_after_us;
        let generation = req.generation;
        if self.policy.uses_edge() {
            if a == req.primary
                && !req.hedge_timer
                && let Some(h) = req.hedge
                && at >= h.due_us
            {
                req.hedge_timer = true;
                self.at(h.due_us, Kind::Hedge(r as u32, generation));
            }
            self.at(at, Kind::Back(r as u32, generation, a as u8));
        } else {
            req.status = status;
            req.retry_after_us = retry_after_us;
            self.client_answered(r, at);
        }
    }

    /// An edge attempt's answer (or timeout) is back at the isolate.
    fn back(&mut self, r: usize, a: usize) {
        let now_ms = ms(self.now);
        let jitter = self.edge_rng.unit();
        let req = &mut self.requests[r];
        if !req.attempts[a].live {
            return;
        }
        req.attempts[a].live = false;
        if a == req.primary {
            req.hedge = None;
        }
        let attempt = req.attempts[a];
        let router = &mut self.routers[req.router];
        let Some(attempt_loop) = req.attempt_loop.as_mut() else {
            return;
        };
        let latency_ms = (self.now - attempt.sent_us) as f64 / MILLI as f64;
        match attempt_loop.report(
            router,
            attempt.region,
            attempt.outcome,
            latency_ms,
            now_ms,
            jitter,
        ) {
            Report::Wait => {}
            Report::Continue => self.edge_step(r),
            Report::Deliver(region) => {
                for other in req.attempts.iter_mut().filter(|o| o.live) {
                    other.live = false;
                    attempt_loop.abandoned(router, other.region, now_ms, self.edge_rng.unit());
                }
                let delivered = req
                    .attempts
                    .iter()
                    .rev()
                    .find(|o| o.region == region)
                    .copied()
                    .unwrap_or(attempt);
                req.status = delivered.status;
                req.retry_after_us = delivered.retry_after_us;
                req.hedge = None;
                let at = self.now + self.world.populations[req.population].access_one_way_us;
                self.client_answered(r, at);
            }
        }
    }

    /// The hedge delay has passed: a copy to the other region, if the core says so.
    fn hedge(&mut self, r: usize) {
        let now_ms = ms(self.now);
        let req = &mut self.requests[r];
        let Some(Hedge {
            region: other,
            timeout_ms,
            ..
        }) = req.hedge.take()
        else {
            return;
        };
        if !req.attempts[req.primary].live {
            return;
        }
        let router = &mut self.routers[req.router];
        let Some(attempt_loop) = req.attempt_loop.as_mut() else {
            return;
        };
        if attempt_loop.hedge_due(router, other, now_ms) {
            self.send(r, other, timeout_ms, true);
        }
    }

    /// The client has its try's answer (`req.status`) at `at` (now, or later: nothing in the
    /// simulated world depends on the client between an answer and its next try): done, or a
    /// retry after backoff.
    fn client_answered(&mut self, r: usize, at: Micros) {
        let retry = self.world.client_retry();
        let req = &mut self.requests[r];
        let status = req.status;
        if self.policy.clients_retry() && client_retries(status) && req.retries < retry.max_retries
        {
            let ceiling = retry
                .cap_ms
                .min(retry.base_ms * 2f64.powi(req.retries as i32 + 1));
            let mut wait = millis(ceiling * self.client_rng.unit());
            if retry.honour_retry_after && req.retry_after_us > 0 {
                wait = wait.max(
                    req.retry_after_us
                        .min(millis(retry.retry_after_cap_s * 1000.0)),
                );
            }
            req.retries += 1;
            req.generation = req.generation.wrapping_add(1);
            self.rec.client_retries += 1;
            self.at(at + wait, Kind::ClientTry(r as u32));
            return;
        }
        let arrived = req.arrived_us;
        req.generation = req.generation.wrapping_add(1);
        req.attempt_loop = None;
        self.rec.finished(arrived, at, is_success(status));
        self.free.push(r as u32);
    }

    /// The cron: probes every region from its location, shares the report through KV.
    fn cron(&mut self) {
        let world = self.world;
        let now_ms = ms(self.now);
        let location = world.scenario.edge.probe_location;
        let timeout_ms = self.config.settings.probe_timeout_ms as f64;
        let mut longest = 0.0f64;
        let results: Vec<(String, ProbeResult)> = world
            .scenario
            .regions
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let rtt_ms = 2.0 * world.locations[location].to_region_us[i] as f64 / 1000.0;
                let seen = self.regions[i].check(self.now, &mut self.service, rtt_ms, timeout_ms);
                longest = longest.max(seen.latency_ms);
                let result = ProbeResult {
                    at_ms: now_ms,
                    status: seen.status,
                    latency_ms: seen.latency_ms as u64,
                    failures_in_row: 0,
                };
                (spec.name.clone(), result)
            })
            .collect();
        let previous = self.kv.visible(self.now, 0).cloned().unwrap_or_default();
        let report = ProbeReport::next(&previous, results);
        let done = self.now + millis(longest);
        self.routers[location * self.isolates].apply_probes(&report, ms(done));
        self.kv.versions.push((done, report));
        let next = self.now + millis(world.scenario.edge.probe_interval_s * 1000.0);
        if next < self.world.horizon_us {
            self.at(next, Kind::Cron);
        }
    }

    /// A Route 53 health checker's round.
    fn check(&mut self, c: usize) {
        let Some(dns) = &mut self.dns else {
            return;
        };
        dns.check(
            c,
            self.now,
            &mut self.regions,
            self.world,
            &mut self.dns_rng,
        );
        let next = self.now + dns.interval_us();
        if next < self.world.horizon_us {
            self.at(next, Kind::Check(c as u16));
        }
    }

    fn edge_counters(&self) -> EdgeCounters {
        let mut total = EdgeCounters::default();
        for router in &self.routers {
            let c = router.status(ms(self.now)).counters;
            total.attempts += c.attempts;
            total.retries += c.retries;
            total.hedges += c.hedges;
            total.retries_denied_by_budget += c.retries_denied_by_budget;
            total.ejections += c.ejections;
            total.least_bad += c.least_bad;
            total.unavailable += c.unavailable;
            total.shed += c.shed;
            total.overloaded += c.overloaded;
        }
        total
    }
}
