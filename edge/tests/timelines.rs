//! Scripted timelines: the routing core driven request by request the way the Worker adapter
//! drives it (plan, first attempt, hedge, retries elsewhere, outcomes reported back), against a
//! simulated world in which each region's answer is a function of the time it is sent.
//!
//! Everything is deterministic: time is a number the test advances, jitter is fixed, nothing
//! sleeps and nothing leaves the process. Each test asserts what a client or an operator would
//! notice: an error or not, which region served, how many attempts, how long the client waited,
//! and what `/_edge/status` says.

use edge::core::Millis;
use edge::core::affinity::{Affinity, SigningKey};
use edge::core::attempts::{AttemptLoop, Report, Step};
use edge::core::config::EdgeConfig;
use edge::core::geo::Coordinates;
use edge::core::health::{Availability, ProbeResult};
use edge::core::outcome::{Outcome, Verdict};
use edge::core::router::{EdgeRouter, Plan, ProbeReport, RequestFacts};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Region indexes, in `REGIONS` order.
const DUBLIN: usize = 0; // eu-west-1
const FRANKFURT: usize = 1; // eu-central-1
const VIRGINIA: usize = 2; // us-east-1

const TWO_REGIONS: &str = r#"[
    {"name":"eu-west-1","origin":"http://127.0.0.1:9001","lat":53.35,"lon":-6.26},
    {"name":"eu-central-1","origin":"http://127.0.0.1:9002","lat":50.11,"lon":8.68}
]"#;

const THREE_REGIONS: &str = r#"[
    {"name":"eu-west-1","origin":"http://127.0.0.1:9001","lat":53.35,"lon":-6.26},
    {"name":"eu-central-1","origin":"http://127.0.0.1:9002","lat":50.11,"lon":8.68},
    {"name":"us-east-1","origin":"http://127.0.0.1:9003","lat":39.0,"lon":-77.5}
]"#;

/// Ejection settings written out so the expected times below can be read off them.
const CONSECUTIVE_FAILURES: u32 = 3;
const BASE_EJECTION_MS: u64 = 5_000;
const MAX_EJECTION_MS: u64 = 12_000;
const EJECTION_JITTER_MS: u64 = 1_000;
/// The jitter every simulated `record` call passes: half of `EJECTION_JITTER_MS`.
const JITTER: f64 = 0.5;
const JITTER_MS: u64 = 500;

/// The thresholds above, strict cost order (no band of near-equal regions: the tests of the
/// band set it themselves), every other setting at its default (hedging on, automatic delay).
fn routing() -> String {
    routing_with("")
}

/// `routing()` plus extra `ROUTING` fields, e.g. `r#""hedge":false"#`.
fn routing_with(extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"sticky_band_ms":0,"sticky_band_ratio":0,"consecutive_failures":{CONSECUTIVE_FAILURES},"base_ejection_ms":{BASE_EJECTION_MS},"max_ejection_ms":{MAX_EJECTION_MS},"ejection_jitter_ms":{EJECTION_JITTER_MS}{extra}}}"#
    )
}

/// The affinity signing secret every simulated edge is configured with.
const SECRET: &str = "timeline-affinity-secret-0123456789";

fn config(regions: &str, routing: &str) -> EdgeConfig {
    EdgeConfig::from_vars(|name| match name {
        "REGIONS" => Some(regions.to_owned()),
        "ROUTING" => Some(routing.to_owned()),
        "AFFINITY_SECRET" => Some(SECRET.to_owned()),
        _ => None,
    })
    .expect("the test configuration is valid")
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Mainz, 30 km from Frankfurt, 1 100 km from Dublin.
const NEAR_FRANKFURT: Coordinates = Coordinates {
    lat: 50.0,
    lon: 8.27,
};
/// Cork, 220 km from Dublin.
const NEAR_DUBLIN: Coordinates = Coordinates {
    lat: 51.9,
    lon: -8.47,
};
/// London: 460 km from Dublin, 640 km from Frankfurt.
const LONDON: Coordinates = Coordinates {
    lat: 51.51,
    lon: -0.13,
};
/// Boston, 650 km from us-east-1.
const BOSTON: Coordinates = Coordinates {
    lat: 42.36,
    lon: -71.06,
};

fn request(method: &'static str, client: Coordinates) -> RequestFacts<'static> {
    RequestFacts {
        method,
        client: Some(client),
        has_idempotency_key: method == "POST",
        ..RequestFacts::default()
    }
}

fn read(client: Coordinates) -> RequestFacts<'static> {
    request("GET", client)
}

fn read_with<'a>(client: Coordinates, affinity: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        affinity: Some(affinity),
        ..read(client)
    }
}

// ---------------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------------

/// What a region does with an attempt: its outcome, and how long it takes to produce it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reply {
    outcome: Outcome,
    latency_ms: u64,
}

/// An answer the region's function wrote (it carries `x-region-status: 200`).
fn answer(status: u16, latency_ms: u64) -> Reply {
    Reply {
        outcome: Outcome::Answered {
            status,
            region_status: Some(200),
            at_limit: false,
        },
        latency_ms,
    }
}

fn ok(latency_ms: u64) -> Reply {
    answer(200, latency_ms)
}

/// An answer API Gateway or Lambda gave without the function (no `x-region-status`): API
/// Gateway's throttle (429), Lambda's concurrency used up (a 5xx).
fn from_platform(status: u16, latency_ms: u64) -> Reply {
    Reply {
        outcome: Outcome::Answered {
            status,
            region_status: None,
            at_limit: false,
        },
        latency_ms,
    }
}

/// The function's own 503 for its table's throttling, marked `x-region-limit`.
fn table_throttled(latency_ms: u64) -> Reply {
    Reply {
        outcome: Outcome::Answered {
            status: 503,
            region_status: Some(200),
            at_limit: true,
        },
        latency_ms,
    }
}

/// Connection refused, quickly.
fn refused() -> Reply {
    Reply {
        outcome: Outcome::ConnectError,
        latency_ms: 3,
    }
}

/// A region's behaviour: the reply to an attempt sent at a given time.
type Region = Box<dyn Fn(Millis) -> Reply>;

fn always(reply: Reply) -> Region {
    Box::new(move |_| reply)
}

/// `during` while `from <= t < until`, `otherwise` at any other time.
fn between(from: Millis, until: Millis, during: Reply, otherwise: Reply) -> Region {
    Box::new(move |t| {
        if (from..until).contains(&t) {
            during
        } else {
            otherwise
        }
    })
}

/// Request times from `from` (inclusive) to `until` (exclusive), `step` apart.
fn every(from: Millis, until: Millis, step: Millis) -> impl Iterator<Item = Millis> {
    (from..until).step_by(step as usize)
}

/// One attempt that has finished (or timed out).
#[derive(Debug, Clone, Copy)]
struct Finished {
    region: usize,
    outcome: Outcome,
    latency_ms: u64,
    done_at: Millis,
}

/// What one request looked like from the client's side.
#[derive(Debug, Clone)]
struct Served {
    at: Millis,
    plan: Plan,
    /// The status the client got from a region; `None`: every attempt failed (the edge's 503).
    status: Option<u16>,
    /// The region whose answer the client got.
    region: Option<usize>,
    /// Regions attempted, in the order the attempts were sent (a hedge included).
    attempts: Vec<usize>,
    hedged: bool,
    /// How long the client waited.
    latency_ms: u64,
}

/// The routing core plus a world to route into, driven like the Worker adapter drives it.
struct Sim {
    router: EdgeRouter,
    world: Vec<Region>,
    jitter: f64,
    /// The cron's last shared report.
    last_report: ProbeReport,
}

impl Sim {
    fn new(config: EdgeConfig, world: Vec<Region>) -> Self {
        assert_eq!(
            config.regions.len(),
            world.len(),
            "one behaviour per region"
        );
        Self {
            router: EdgeRouter::new(config),
            world,
            jitter: JITTER,
            last_report: ProbeReport::default(),
        }
    }

    /// Sends an attempt to `region` at `sent_at`; a reply slower than `timeout_ms` is a timeout.
    fn attempt(&self, region: usize, sent_at: Millis, timeout_ms: u64) -> Finished {
        let reply = (self.world[region])(sent_at);
        let (outcome, latency_ms) = if reply.latency_ms >= timeout_ms {
            (Outcome::Timeout, timeout_ms)
        } else {
            (reply.outcome, reply.latency_ms)
        };
        Finished {
            region,
            outcome,
            latency_ms,
            done_at: sent_at + latency_ms,
        }
    }

    /// One request, start to finish, as the adapter handles it: plan; each step the core's
    /// attempt loop gives (with the hedge it arms sent when the core says so); every finished
    /// attempt reported in the order it finishes; the race's loser aborted and reported as
    /// abandoned. Only the sending and the clock are simulated: every decision is the core's.
    fn request(&mut self, facts: &RequestFacts<'_>, at: Millis) -> Served {
        let settings = self.router.config().settings.clone();
        let plan = self.router.plan(facts, at);
        let mut served = Served {
            at,
            plan: plan.clone(),
            status: None,
            region: None,
            attempts: Vec::new(),
            hedged: false,
            latency_ms: 0,
        };
        let mut attempts = AttemptLoop::new(plan, &settings, at, false);
        let mut now = at;
        let mut answers: Vec<Finished> = Vec::new();
        'steps: while let Step::Send {
            region,
            timeout_ms,
            hedge,
        } = attempts.next_step(&mut self.router, now)
        {
            served.attempts.push(region);
            let mut racing = vec![self.attempt(region, now, timeout_ms)];
            if let Some((delay, other)) = hedge
                && racing[0].done_at > now + delay
                && attempts.hedge_due(&mut self.router, other, now + delay)
            {
                served.attempts.push(other);
                served.hedged = true;
                racing.push(self.attempt(other, now + delay, timeout_ms - delay));
            }
            racing.sort_by_key(|f| f.done_at);
            for (n, f) in racing.iter().enumerate() {
                now = now.max(f.done_at);
                answers.push(*f);
                let report = attempts.report(
                    &mut self.router,
                    f.region,
                    f.outcome,
                    f.latency_ms as f64,
                    f.done_at,
                    self.jitter,
                );
                match report {
                    Report::Wait => continue,
                    Report::Continue => continue 'steps,
                    Report::Deliver(r) => {
                        for loser in &racing[n + 1..] {
                            attempts.abandoned(
                                &mut self.router,
                                loser.region,
                                f.done_at,
                                self.jitter,
                            );
                        }
                        let delivered = answers.iter().rev().find(|a| a.region == r);
                        if let Some(Finished {
                            outcome: Outcome::Answered { status, .. },
                            ..
                        }) = delivered
                        {
                            served.status = Some(*status);
                            served.region = Some(r);
                            served.latency_ms = f.done_at - at;
                        }
                        break 'steps;
                    }
                }
            }
        }
        if served.status.is_none() {
            self.router.on_unavailable();
            served.latency_ms = now - at;
        }
        served
    }

    /// Sends the same request at each of `times`, one after the other.
    fn run(
        &mut self,
        facts: &RequestFacts<'_>,
        times: impl IntoIterator<Item = Millis>,
    ) -> Vec<Served> {
        times.into_iter().map(|t| self.request(facts, t)).collect()
    }

    /// Enough failing rounds in a row to drain (three, at `at`, `at + 1`, `at + 2`), applied at
    /// `at + 2`.
    fn failing_probes(&mut self, results: &[(&str, Option<u16>)], at: Millis) {
        for k in 0..3 {
            let round: Vec<(&str, Option<u16>, Millis)> =
                results.iter().map(|&(n, st)| (n, st, at + k)).collect();
            self.probes(&round, at + k);
        }
    }

    fn state(&self, region: usize, now: Millis) -> Availability {
        self.router.status(now).regions[region].state
    }

    /// Shares one round of probe results, as the cron does through KV (counting failures in a
    /// row from its previous round).
    fn probes(&mut self, results: &[(&str, Option<u16>, Millis)], now: Millis) {
        let round = results.iter().map(|&(name, status, at_ms)| {
            let result = ProbeResult {
                at_ms,
                status,
                latency_ms: 20,
                failures_in_row: 0,
            };
            (name.to_owned(), result)
        });
        self.last_report = ProbeReport::next(&self.last_report, round);
        self.router.apply_probes(&self.last_report, now);
    }
}

/// Two regions; Dublin answers in 30 ms, Frankfurt as `frankfurt` says.
fn dublin_and(frankfurt: Region, routing: &str) -> Sim {
    Sim::new(
        config(TWO_REGIONS, routing),
        vec![always(ok(30)), frankfurt],
    )
}

/// The first requests of a fresh router explore: a region with no latency sample counts as 0 ms,
/// so each region gets one request before distance and latency settle the order. Tests look at
/// the steady state after this.
const WARM_UP_MS: Millis = 1_000;

// ---------------------------------------------------------------------------------------------
// Failover and ejection
// ---------------------------------------------------------------------------------------------

#[test]
fn nearest_region_failing_is_invisible_to_clients_and_gets_ejected() {
    for failure in [refused(), answer(503, 8)] {
        let mut sim = dublin_and(between(10_000, u64::MAX, failure, ok(20)), &routing());
        let log = sim.run(&read(NEAR_FRANKFURT), every(0, 15_000, 100));

        for s in &log {
            assert_eq!(
                s.status,
                Some(200),
                "{failure:?}: the client saw an error at {}: {s:?}",
                s.at
            );
        }
        for s in log.iter().filter(|s| (WARM_UP_MS..10_000).contains(&s.at)) {
            assert_eq!(
                s.attempts,
                [FRANKFURT],
                "{failure:?}: Frankfurt serves its neighbours at {}",
                s.at
            );
        }
        let after: Vec<&Served> = log.iter().filter(|s| s.at >= 10_000).collect();
        let failing = CONSECUTIVE_FAILURES as usize;
        for s in &after[..failing] {
            assert_eq!(
                s.attempts,
                [FRANKFURT, DUBLIN],
                "{failure:?}: retried on Dublin at {}",
                s.at
            );
            assert_eq!(s.region, Some(DUBLIN));
        }
        for s in &after[failing..] {
            assert_eq!(
                s.attempts,
                [DUBLIN],
                "{failure:?}: straight to Dublin at {}",
                s.at
            );
        }

        let ejected_at = after[failing - 1].at + failure.latency_ms;
        let status = sim.router.status(14_999);
        assert_eq!(
            status.regions[FRANKFURT].state,
            Availability::Ejected {
                until_ms: ejected_at + BASE_EJECTION_MS + JITTER_MS
            }
        );
        assert_eq!(status.regions[DUBLIN].state, Availability::Healthy);
        assert_eq!(status.counters.ejections, 1);
        assert_eq!(status.counters.unavailable, 0);
    }
}

#[test]
fn ejected_region_gets_a_single_trial_and_its_traffic_back_once_it_recovers() {
    // Frankfurt refuses connections from 10 s to 20 s.
    let mut sim = dublin_and(between(10_000, 20_000, refused(), ok(20)), &routing());
    let facts = read(NEAR_FRANKFURT);
    let log = sim.run(&facts, every(0, 15_700, 100));
    assert!(log.iter().all(|s| s.status == Some(200)));
    // The third failure, at 10.2 s + 3 ms, ejected Frankfurt for 5 s plus jitter.
    let first_until = 10_203 + BASE_EJECTION_MS + JITTER_MS;
    assert_eq!(
        sim.state(FRANKFURT, 15_699),
        Availability::Ejected {
            until_ms: first_until
        }
    );
    assert_eq!(sim.state(FRANKFURT, first_until), Availability::TrialDue);

    // The next request after the ejection is Frankfurt's trial...
    let t = 15_800;
    let plan = sim.router.plan(&facts, t);
    assert_eq!(plan.order, [FRANKFURT, DUBLIN]);
    sim.router.on_attempt(FRANKFURT, t);
    assert_eq!(sim.state(FRANKFURT, t), Availability::TrialInFlight);
    // ...and while it is in flight, every other request keeps away from Frankfurt.
    for other in [t + 1, t + 2] {
        assert_eq!(sim.router.plan(&facts, other).order, [DUBLIN]);
    }
    // Frankfurt is still down: the trial fails, and Frankfurt is ejected again, for twice as long.
    let trial = refused();
    let failed_at = t + trial.latency_ms;
    let verdict = sim.router.record(
        FRANKFURT,
        trial.outcome,
        trial.latency_ms as f64,
        failed_at,
        JITTER,
    );
    assert_eq!(verdict, Verdict::TryElsewhere);
    let second_until = failed_at + 2 * BASE_EJECTION_MS + JITTER_MS;
    assert_eq!(
        sim.state(FRANKFURT, failed_at),
        Availability::Ejected {
            until_ms: second_until
        }
    );
    // The trial's request is not lost: it goes on to Dublin.
    assert!(sim.router.allow_retry(failed_at, false));
    sim.router.on_attempt(DUBLIN, failed_at);
    assert_eq!(
        sim.router
            .record(DUBLIN, ok(30).outcome, 30.0, failed_at + 30, JITTER),
        Verdict::Deliver
    );

    // Frankfurt recovers at 20 s but stays out until its second ejection is over.
    let log = sim.run(&facts, every(15_900, second_until, 100));
    assert!(
        log.iter()
            .all(|s| s.status == Some(200) && s.attempts == [DUBLIN])
    );

    // The next trial succeeds: Frankfurt is healthy again and serves its neighbours.
    let trial = sim.request(&facts, 26_400);
    assert_eq!(trial.attempts, [FRANKFURT]);
    assert_eq!(trial.status, Some(200));
    assert_eq!(sim.state(FRANKFURT, 26_421), Availability::Healthy);
    let log = sim.run(&facts, every(26_500, 30_000, 100));
    assert!(
        log.iter()
            .all(|s| s.attempts == [FRANKFURT] && s.status == Some(200))
    );
    assert_eq!(sim.router.status(30_000).counters.ejections, 2);
}

#[test]
fn each_ejection_lasts_longer_up_to_the_cap() {
    // Frankfurt is down from 10 s to 70 s: its trials keep failing.
    let mut sim = dublin_and(between(10_000, 70_000, refused(), ok(20)), &routing());
    let mut ejections: Vec<(Millis, Millis)> = Vec::new();
    for t in every(0, 70_000, 100) {
        let s = sim.request(&read(NEAR_FRANKFURT), t);
        assert_eq!(s.status, Some(200), "no client error at {t}");
        let failed_at = t + refused().latency_ms;
        if let Availability::Ejected { until_ms } = sim.state(FRANKFURT, failed_at)
            && ejections.last().is_none_or(|&(_, until)| until != until_ms)
        {
            assert_eq!(
                s.attempts[0], FRANKFURT,
                "ejected by this request's attempt"
            );
            ejections.push((failed_at, until_ms));
        }
    }
    let durations: Vec<Millis> = ejections.iter().map(|&(at, until)| until - at).collect();
    // n × base, capped at max, plus jitter each time.
    let expected: Vec<Millis> = (1..=durations.len() as u64)
        .map(|n| (n * BASE_EJECTION_MS).min(MAX_EJECTION_MS) + JITTER_MS)
        .collect();
    assert_eq!(durations, expected);
    assert!(durations.len() >= 4, "the cap was reached: {durations:?}");
    // Every trial came right after the previous ejection ended.
    for pair in ejections.windows(2) {
        let (_, until) = pair[0];
        let (next_failed_at, _) = pair[1];
        assert!(
            next_failed_at >= until && next_failed_at < until + 100 + 3,
            "{pair:?}"
        );
    }
}

#[test]
fn a_lone_failing_region_is_never_ejected() {
    // Dublin is drained by its probe; Frankfurt refuses every connection.
    let mut sim = dublin_and(always(refused()), &routing());
    sim.failing_probes(&[("eu-west-1", Some(503))], 0);
    assert_eq!(sim.state(DUBLIN, 0), Availability::Drained);

    let log = sim.run(&read(NEAR_FRANKFURT), every(0, 10_000, 100));
    for s in &log {
        assert_eq!(
            s.plan.order,
            [FRANKFURT],
            "Frankfurt stays in the plan at {}",
            s.at
        );
        assert_eq!(s.attempts, [FRANKFURT]);
        assert_eq!(s.status, None);
    }
    let status = sim.router.status(10_000);
    assert_eq!(status.regions[FRANKFURT].state, Availability::Healthy);
    assert_eq!(status.regions[FRANKFURT].consecutive_failures, 100);
    assert_eq!(status.counters.ejections, 0);
    assert_eq!(status.counters.unavailable, 100);

    // Dublin's probe passes again: Frankfurt, failing every request, ranks behind it at once
    // (its failure share), and its next failure ejects it.
    sim.probes(&[("eu-west-1", Some(200), 10_000)], 10_000);
    let s = sim.request(&read(NEAR_FRANKFURT), 10_000);
    assert_eq!(
        (s.attempts.as_slice(), s.status),
        ([DUBLIN].as_slice(), Some(200))
    );
    let s = sim.request(&read(NEAR_FRANKFURT), 10_100);
    assert_eq!(
        (s.attempts.as_slice(), s.status),
        ([DUBLIN].as_slice(), Some(200))
    );
}

#[test]
fn with_every_region_failing_only_one_is_ejected() {
    let down = |from| between(from, u64::MAX, answer(503, 8), ok(20));
    let mut sim = Sim::new(
        config(TWO_REGIONS, &routing()),
        vec![down(10_000), down(10_000)],
    );
    for t in every(0, 60_000, 100) {
        let s = sim.request(&read(NEAR_FRANKFURT), t);
        assert!(
            !s.plan.order.is_empty() && !s.attempts.is_empty(),
            "a region is always tried at {t}"
        );
        let status = sim.router.status(t + 100);
        let out = status
            .regions
            .iter()
            .filter(|r| r.state != Availability::Healthy)
            .count();
        assert!(
            out <= 1,
            "at most one region out at {t}: {:?}",
            status.regions
        );
    }
    let status = sim.router.status(60_000);
    let healthy = status
        .regions
        .iter()
        .filter(|r| r.state == Availability::Healthy)
        .count();
    assert_eq!(
        healthy, 1,
        "one region stays in service: {:?}",
        status.regions
    );
    assert!(
        status.counters.ejections >= 2,
        "the other re-ejected after failed trials"
    );
}

// ---------------------------------------------------------------------------------------------
// Retry budget
// ---------------------------------------------------------------------------------------------

#[test]
fn retry_budget_caps_retries_during_a_total_outage() {
    // Both regions answer 503 to everything. Ejection is set out of reach so that both stay in
    // every plan: the budget alone must keep the edge from doubling the load on them.
    let ratio = 0.2;
    let floor_per_s = 10.0;
    let routing = format!(
        r#"{{"consecutive_failures":1000000,"failure_rate_min_requests":100000,"ejection_jitter_ms":{EJECTION_JITTER_MS},"retry_ratio":{ratio},"retry_floor_per_s":{floor_per_s}}}"#
    );
    let mut sim = Sim::new(
        config(TWO_REGIONS, &routing),
        vec![always(answer(503, 8)), always(answer(503, 8))],
    );
    let initial_balance = sim.router.status(0).retry_budget;
    let requests = 1_000u64;
    let step = 10;
    let mut denied_halfway = 0;
    let mut retried = Vec::new();
    for (n, t) in every(0, requests * step, step).enumerate() {
        let s = sim.request(&read(NEAR_FRANKFURT), t);
        assert_eq!(s.plan.order.len(), 2);
        assert_eq!(s.status, None);
        retried.push(s.attempts.len() > 1);
        if n as u64 == requests / 2 {
            denied_halfway = sim.router.status(t).counters.retries_denied_by_budget;
        }
    }
    let c = sim.router.status(requests * step).counters;
    assert_eq!(c.requests, requests);
    assert_eq!(c.attempts, c.requests + c.retries);
    let elapsed_s = (requests * step) as f64 / 1000.0;
    let bound = requests as f64 * (1.0 + ratio) + initial_balance + floor_per_s * elapsed_s;
    assert!(
        (c.attempts as f64) <= bound,
        "{} attempts for {requests} requests, bound {bound}",
        c.attempts
    );
    assert!(
        c.attempts < 2 * requests * 3 / 4,
        "well below one retry per request: {}",
        c.attempts
    );
    // The first requests spend the initial balance; after that retries stop for most requests.
    assert!(retried[..initial_balance as usize / 2].iter().all(|&r| r));
    let late = &retried[requests as usize / 2..];
    let late_share = late.iter().filter(|&&r| r).count() as f64 / late.len() as f64;
    let steady_share = ratio + floor_per_s * step as f64 / 1000.0;
    assert!(
        late_share <= steady_share + 0.01,
        "{late_share} of late requests retried"
    );
    assert!(c.retries_denied_by_budget > denied_halfway && denied_halfway > 0);
}

// ---------------------------------------------------------------------------------------------
// Hedging
// ---------------------------------------------------------------------------------------------

/// A fresh two-region router in which Frankfurt answered in `frankfurt_ms` and Dublin in
/// `dublin_ms`; the hedge delay of a Frankfurt client's read (Frankfurt must come first).
fn hedge_after(routing: &str, frankfurt_ms: f64, dublin_ms: f64) -> Option<u64> {
    let mut router = EdgeRouter::new(config(TWO_REGIONS, routing));
    for (region, ms) in [(FRANKFURT, frankfurt_ms), (DUBLIN, dublin_ms)] {
        router.on_attempt(region, 0);
        router.record(region, ok(0).outcome, ms, 0, JITTER);
    }
    let plan = router.plan(&read(NEAR_FRANKFURT), 0);
    assert_eq!(plan.order[0], FRANKFURT);
    plan.hedge_after_ms
}

#[test]
fn hedge_delay_is_for_reads_and_follows_the_first_regions_latency() {
    let fresh = |regions: &str, routing: &str, method: &'static str| {
        EdgeRouter::new(config(regions, routing))
            .plan(&request(method, NEAR_FRANKFURT), 0)
            .hedge_after_ms
    };
    // Before any sample, the delay is the minimum: an unknown region is hedged early.
    assert_eq!(fresh(TWO_REGIONS, &routing(), "GET"), Some(50));
    assert_eq!(fresh(TWO_REGIONS, &routing(), "HEAD"), Some(50));
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        assert_eq!(fresh(TWO_REGIONS, &routing(), method), None, "{method}");
    }
    let one_region =
        r#"[{"name":"eu-central-1","origin":"http://127.0.0.1:9002","lat":50.11,"lon":8.68}]"#;
    assert_eq!(fresh(one_region, &routing(), "GET"), None);
    assert_eq!(
        fresh(TWO_REGIONS, &routing_with(r#""hedge":false"#), "GET"),
        None
    );
    assert_eq!(
        fresh(TWO_REGIONS, &routing_with(r#""max_attempts":1"#), "GET"),
        None
    );
    assert_eq!(
        fresh(TWO_REGIONS, &routing_with(r#""hedge_delay_ms":120"#), "GET"),
        Some(120)
    );

    // Automatic: three times the first region's EWMA, within [hedge_min_ms, per_try / 2].
    assert_eq!(hedge_after(&routing(), 20.0, 30.0), Some(60));
    assert_eq!(hedge_after(&routing(), 5.0, 30.0), Some(50));
    assert_eq!(
        hedge_after(&routing_with(r#""hedge_min_ms":10"#), 5.0, 30.0),
        Some(15)
    );
    assert_eq!(hedge_after(&routing(), 900.0, 1000.0), Some(1000));
    assert_eq!(
        hedge_after(&routing_with(r#""per_try_timeout_ms":3000"#), 900.0, 1000.0),
        Some(1500)
    );
    assert_eq!(
        hedge_after(&routing_with(r#""hedge_delay_ms":120"#), 20.0, 30.0),
        Some(120)
    );

    // With the other region out, there is nothing to hedge to.
    let mut sim = dublin_and(always(ok(20)), &routing());
    sim.failing_probes(&[("eu-west-1", Some(503))], 0);
    assert_eq!(
        sim.router.plan(&read(NEAR_FRANKFURT), 0).hedge_after_ms,
        None
    );
}

#[test]
fn a_slow_first_region_is_hedged_and_a_fast_one_is_not() {
    // Frankfurt answers in 20 ms, except the request sent at 5 s, which takes 400 ms.
    for (routing, delay) in [
        (routing(), 60),
        (routing_with(r#""hedge_delay_ms":100"#), 100),
    ] {
        let mut sim = dublin_and(between(5_000, 5_001, ok(400), ok(20)), &routing);
        let facts = read(NEAR_FRANKFURT);
        let log = sim.run(&facts, every(0, 5_000, 100));
        assert!(
            log.iter().all(|s| !s.hedged),
            "fast answers come before the hedge delay"
        );
        assert_eq!(sim.router.status(5_000).counters.hedges, 0);

        let slow = sim.request(&facts, 5_000);
        assert_eq!(slow.plan.hedge_after_ms, Some(delay));
        assert!(slow.hedged);
        assert_eq!(slow.attempts, [FRANKFURT, DUBLIN]);
        assert_eq!((slow.status, slow.region), (Some(200), Some(DUBLIN)));
        assert_eq!(
            slow.latency_ms,
            delay + 30,
            "the client waits the delay plus Dublin, not 400 ms"
        );

        // The lost race is a latency sample for Frankfurt (it took at least that long), not a
        // failure: healthy and merely slow once, it keeps its neighbours, served fast and
        // unhedged (the hedge delay follows its raised estimate).
        let status = sim.router.status(5_000 + delay + 30);
        assert_eq!(status.regions[FRANKFURT].consecutive_failures, 0);
        assert_eq!(status.regions[FRANKFURT].state, Availability::Healthy);
        let fast = sim.request(&facts, 5_500);
        assert!(!fast.hedged);
        assert_eq!(
            (fast.attempts.as_slice(), fast.latency_ms),
            ([FRANKFURT].as_slice(), 20)
        );
        let c = sim.router.status(5_600).counters;
        assert_eq!((c.hedges, c.retries, c.ejections), (1, 0, 0));
    }
}

#[test]
fn a_region_that_stops_answering_reads_loses_its_readers_within_a_few_requests() {
    // Frankfurt stops answering at 10 s: an attempt would time out. Each read is hedged to
    // Dublin; each lost race is a latency sample that makes Frankfurt rank worse, so within a
    // couple of requests reads go to Dublin first. Nobody gets an error, and nobody waits for a
    // timeout.
    let mut sim = dublin_and(between(10_000, u64::MAX, ok(60_000), ok(20)), &routing());
    let log = sim.run(&read(NEAR_FRANKFURT), every(0, 70_000, 100));
    let after: Vec<&Served> = log.iter().filter(|s| s.at >= 10_000).collect();
    assert!(
        after
            .iter()
            .all(|s| s.status == Some(200) && s.region == Some(DUBLIN)),
        "every read served by Dublin"
    );
    let slow: Vec<u64> = after
        .iter()
        .filter(|s| s.latency_ms > 30)
        .map(|s| s.latency_ms)
        .collect();
    assert!(
        slow.len() <= 6 && slow.iter().all(|&ms| ms <= 1_030),
        "a few reads paid a hedge delay, none a timeout: {slow:?}"
    );
    // Frankfurt is tried again (hedged early) when its estimates age out, about every 30 s.
    let tried_frankfurt = after
        .iter()
        .filter(|s| s.attempts.contains(&FRANKFURT))
        .count();
    assert!(
        (2..=6).contains(&tried_frankfurt),
        "Frankfurt tried {tried_frankfurt} times in 60 s"
    );
}

#[test]
fn a_healthy_but_slower_region_is_not_ejected_by_lost_races() {
    // Frankfurt answers every read in 150 ms, Dublin in 30: reads to Frankfurt are hedged and
    // lose the race again and again, but a lost race is not a failure.
    let mut sim = dublin_and(always(ok(150)), &routing_with(r#""hedge_delay_ms":60"#));
    for t in every(0, 10_000, 100) {
        let s = sim.request(&read(NEAR_FRANKFURT), t);
        assert_eq!(s.status, Some(200));
    }
    let status = sim.router.status(10_000);
    assert_eq!(status.counters.ejections, 0);
    assert_eq!(status.regions[FRANKFURT].state, Availability::Healthy);
}

// ---------------------------------------------------------------------------------------------
// Read-your-writes affinity
// ---------------------------------------------------------------------------------------------

#[test]
fn a_write_pins_the_writers_reads_to_its_region_until_the_token_expires() {
    // Frankfurt fails the write sent at 5 s; the write is retried and served by Dublin.
    let mut sim = dublin_and(between(5_000, 5_001, answer(503, 8), ok(20)), &routing());
    sim.run(&read(NEAR_FRANKFURT), every(0, 5_000, 100));
    let write = sim.request(&request("PUT", NEAR_FRANKFURT), 5_000);
    assert_eq!(
        (write.attempts.as_slice(), write.status),
        ([FRANKFURT, DUBLIN].as_slice(), Some(200))
    );
    let written_at = write.at + write.latency_ms;
    let token = sim
        .router
        .affinity_token_for_write(DUBLIN, written_at)
        .unwrap();
    let expires_ms = written_at + 10_000;
    assert!(
        token.starts_with(&format!("eu-west-1.{expires_ms}.")),
        "{token}"
    );

    // Within the window the writer reads from Dublin, though Frankfurt is nearer and healthy.
    let log = sim.run(
        &read_with(NEAR_FRANKFURT, &token),
        every(5_100, expires_ms, 100),
    );
    assert!(
        log.iter()
            .all(|s| s.attempts == [DUBLIN] && s.status == Some(200))
    );
    // Other clients still read from Frankfurt; the writer's next writes follow the token too
    // (a PUT or DELETE lands where its previous write did, so its If-Match sees that write).
    assert_eq!(
        sim.request(&read(NEAR_FRANKFURT), 6_000).attempts,
        [FRANKFURT]
    );
    let write_with_token = RequestFacts {
        affinity: Some(&token),
        ..request("PUT", NEAR_FRANKFURT)
    };
    assert_eq!(sim.request(&write_with_token, 6_050).attempts, [DUBLIN]);
    // Once it expires, the token is ignored.
    let log = sim.run(
        &read_with(NEAR_FRANKFURT, &token),
        every(expires_ms, 20_000, 100),
    );
    assert!(log.iter().all(|s| s.attempts == [FRANKFURT]));

    // With three regions a token may name a region an ocean away; it is still honoured.
    let mut router = EdgeRouter::new(config(THREE_REGIONS, &routing()));
    let token = router.affinity_token_for_write(VIRGINIA, 0).unwrap();
    assert_eq!(
        router.plan(&read_with(NEAR_FRANKFURT, &token), 1).order[0],
        VIRGINIA
    );
}

#[test]
fn affinity_yields_to_an_ejected_or_drained_region_and_ignores_unknown_ones() {
    // Dublin refuses connections from 5 s; a reader pinned to Dublin is served by Frankfurt.
    let routing = routing();
    let mut sim = Sim::new(
        config(TWO_REGIONS, &routing),
        vec![between(5_000, u64::MAX, refused(), ok(30)), always(ok(20))],
    );
    let token = sim.router.affinity_token_for_write(DUBLIN, 4_000).unwrap();
    let pinned = read_with(NEAR_FRANKFURT, &token);
    let log = sim.run(&pinned, every(4_000, 5_000, 100));
    assert!(log.iter().all(|s| s.attempts == [DUBLIN]));
    let log = sim.run(&pinned, every(5_000, 6_000, 100));
    assert!(
        log.iter()
            .all(|s| s.status == Some(200) && s.region == Some(FRANKFURT))
    );
    assert!(log[..3].iter().all(|s| s.attempts == [DUBLIN, FRANKFURT]));
    assert!(matches!(
        sim.state(DUBLIN, 6_000),
        Availability::Ejected { .. }
    ));
    assert!(
        log[3..].iter().all(|s| s.attempts == [FRANKFURT]),
        "the ejected region is skipped"
    );

    // A drained region is skipped too.
    let mut sim = dublin_and(always(ok(20)), &routing);
    let token = sim.router.affinity_token_for_write(DUBLIN, 0).unwrap();
    assert_eq!(
        sim.request(&read_with(NEAR_FRANKFURT, &token), 100)
            .attempts,
        [DUBLIN]
    );
    sim.failing_probes(&[("eu-west-1", Some(503))], 150);
    assert_eq!(
        sim.request(&read_with(NEAR_FRANKFURT, &token), 300)
            .attempts,
        [FRANKFURT]
    );

    // Tokens naming no configured region, forged, outliving the window, or malformed, change
    // nothing.
    let key = SigningKey::new(SECRET.as_bytes()).unwrap();
    let elsewhere = Affinity {
        region: "ap-south-1".into(),
        expires_ms: 5_000,
    };
    let forged = Affinity {
        region: "eu-west-1".into(),
        expires_ms: 5_000,
    }
    .token(&SigningKey::new(&[9u8; 32]).unwrap());
    let far_future = Affinity {
        region: "eu-west-1".into(),
        expires_ms: u64::MAX,
    };
    for token in [
        elsewhere.token(&key),
        forged,
        far_future.token(&key),
        "eu-west-1".into(),
        "eu-west-1.5000".into(),
        "eu-west-1.soon.00".into(),
        String::new(),
    ] {
        let mut sim = dublin_and(always(ok(20)), &routing);
        let plan = sim.router.plan(&read_with(NEAR_FRANKFURT, &token), 0);
        assert_eq!(plan.order, [FRANKFURT, DUBLIN], "{token:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Drain
// ---------------------------------------------------------------------------------------------

#[test]
fn x_region_status_drains_a_region_until_a_newer_probe_passes() {
    // At 5 s Frankfurt answers a request but says, in `x-region-status`, that it is draining.
    let draining = Reply {
        outcome: Outcome::Answered {
            status: 200,
            region_status: Some(404),
            at_limit: false,
        },
        latency_ms: 20,
    };
    let mut sim = dublin_and(between(5_000, 5_001, draining, ok(20)), &routing());
    let facts = read(NEAR_FRANKFURT);
    sim.run(&facts, every(0, 1_000, 100));
    sim.probes(&[("eu-central-1", Some(200), 1_000)], 1_000);
    sim.run(&facts, every(1_000, 5_000, 100));

    let s = sim.request(&facts, 5_000);
    assert_eq!(
        (s.region, s.status),
        (Some(FRANKFURT), Some(200)),
        "the answer itself is delivered"
    );
    assert_eq!(sim.state(FRANKFURT, 5_100), Availability::Drained);
    let log = sim.run(&facts, every(5_100, 6_000, 100));
    assert!(
        log.iter()
            .all(|s| s.attempts == [DUBLIN] && s.status == Some(200))
    );

    // The probe result from before the drain, read again, does not bring Frankfurt back.
    sim.probes(&[("eu-central-1", Some(200), 1_000)], 6_000);
    assert_eq!(sim.request(&facts, 6_000).attempts, [DUBLIN]);
    // A newer passing probe does.
    sim.probes(&[("eu-central-1", Some(200), 6_050)], 6_100);
    assert_eq!(sim.state(FRANKFURT, 6_100), Availability::Healthy);
    assert_eq!(sim.request(&facts, 6_100).attempts, [FRANKFURT]);
}

// ---------------------------------------------------------------------------------------------
// Distance, weight and latency
// ---------------------------------------------------------------------------------------------

fn first_choice(regions: &str, facts: &RequestFacts<'_>) -> Vec<usize> {
    EdgeRouter::new(config(regions, &routing()))
        .plan(facts, 0)
        .order
}

#[test]
fn nearest_region_comes_first() {
    assert_eq!(
        first_choice(THREE_REGIONS, &read(NEAR_FRANKFURT))[0],
        FRANKFURT
    );
    assert_eq!(first_choice(THREE_REGIONS, &read(NEAR_DUBLIN))[0], DUBLIN);
    assert_eq!(first_choice(THREE_REGIONS, &read(BOSTON))[0], VIRGINIA);
    // Without coordinates, the continent's centre (Europe: 50 N 10 E).
    let by_continent = |code: &'static str| RequestFacts {
        method: "GET",
        continent: Some(code),
        ..RequestFacts::default()
    };
    assert_eq!(
        first_choice(THREE_REGIONS, &by_continent("EU"))[0],
        FRANKFURT
    );
    assert_eq!(
        first_choice(THREE_REGIONS, &by_continent("NA"))[0],
        VIRGINIA
    );
    // Coordinates win over the continent.
    let both = RequestFacts {
        continent: Some("EU"),
        ..read(NEAR_DUBLIN)
    };
    assert_eq!(first_choice(THREE_REGIONS, &both)[0], DUBLIN);
    // Nothing known (or an unknown continent): the configured order.
    assert_eq!(
        first_choice(THREE_REGIONS, &by_continent("XX")),
        [DUBLIN, FRANKFURT, VIRGINIA]
    );
    let nothing = RequestFacts {
        method: "GET",
        ..RequestFacts::default()
    };
    assert_eq!(
        first_choice(THREE_REGIONS, &nothing),
        [DUBLIN, FRANKFURT, VIRGINIA]
    );
    // max_attempts (default 3) bounds the plan.
    let bounded = EdgeRouter::new(config(THREE_REGIONS, &routing_with(r#""max_attempts":2"#)))
        .plan(&read(NEAR_FRANKFURT), 0)
        .order;
    assert_eq!(bounded, [FRANKFURT, DUBLIN]);
}

#[test]
fn a_region_of_weight_two_looks_half_as_far() {
    let weighted = THREE_REGIONS.replace(r#""lon":8.68}"#, r#""lon":8.68,"weight":2}"#);
    // London: Dublin 460 km, Frankfurt 640 km; halved, Frankfurt's 320 km wins.
    assert_eq!(first_choice(THREE_REGIONS, &read(LONDON))[0], DUBLIN);
    assert_eq!(first_choice(&weighted, &read(LONDON))[0], FRANKFURT);
    // Cork: Dublin 220 km, Frankfurt 1 250 km; halved, 625 km still loses.
    assert_eq!(first_choice(&weighted, &read(NEAR_DUBLIN))[0], DUBLIN);
}

#[test]
fn a_much_slower_near_region_goes_behind_a_fast_far_one() {
    // Frankfurt is 0.3 ms of fibre from the client, Dublin 11 ms.
    let order_after = |frankfurt_ms: f64, dublin_ms: f64| {
        let mut router = EdgeRouter::new(config(TWO_REGIONS, &routing()));
        for (region, ms) in [(FRANKFURT, frankfurt_ms), (DUBLIN, dublin_ms)] {
            router.on_attempt(region, 0);
            router.record(region, ok(0).outcome, ms, 0, JITTER);
        }
        router.plan(&read(NEAR_FRANKFURT), 1).order
    };
    assert_eq!(
        order_after(25.0, 20.0),
        [FRANKFURT, DUBLIN],
        "a small difference: distance decides"
    );
    assert_eq!(
        order_after(100.0, 20.0),
        [DUBLIN, FRANKFURT],
        "a large one: latency decides"
    );
}

#[test]
fn one_slow_answer_does_not_cost_the_nearest_region_its_traffic() {
    // Frankfurt takes 1.5 s for the write sent at 1 s (a cold start), then answers in 20 ms again.
    // One sample, however slow, is not a reason to send its neighbours 11 ms further: the
    // ranking's estimate moves a tenth of the way, and the next reads put it back.
    let mut sim = dublin_and(between(1_000, 1_001, ok(1_500), ok(20)), &routing());
    sim.run(&read(NEAR_FRANKFURT), every(0, 1_000, 100));
    let cold = sim.request(&request("PUT", NEAR_FRANKFURT), 1_000);
    assert_eq!(
        (cold.attempts.as_slice(), cold.latency_ms),
        ([FRANKFURT].as_slice(), 1_500)
    );
    let log = sim.run(&read(NEAR_FRANKFURT), every(1_600, 60_000, 100));
    assert!(
        log.iter()
            .all(|s| s.region == Some(FRANKFURT) && s.status == Some(200)),
        "Frankfurt keeps its neighbours"
    );
    assert!(
        log.iter().skip(50).all(|s| !s.hedged && s.latency_ms == 20),
        "and, its estimate back to normal, serves them unhedged"
    );
}

// ---------------------------------------------------------------------------------------------
// Found in review
// ---------------------------------------------------------------------------------------------

#[test]
fn a_read_pinned_to_the_writer_is_never_hedged() {
    // A hedge to another replica could answer 200 with the item as it was before the write.
    let mut sim = dublin_and(always(ok(20)), &routing());
    sim.run(&read(NEAR_FRANKFURT), every(0, 1_000, 100));
    let token = sim.router.affinity_token_for_write(DUBLIN, 1_000).unwrap();
    let pinned = sim.router.plan(&read_with(NEAR_FRANKFURT, &token), 1_100);
    assert_eq!(pinned.order[0], DUBLIN);
    assert_eq!(pinned.hedge_after_ms, None);
    // Unpinned reads are still hedged.
    assert!(
        sim.router
            .plan(&read(NEAR_FRANKFURT), 1_100)
            .hedge_after_ms
            .is_some()
    );
}

#[test]
fn a_trial_is_not_hedged_so_its_real_answer_decides() {
    // Frankfurt is fast, fails from 1 s to 2 s, then answers slowly (200 ms): slower than any
    // hedge delay, so a hedged trial would lose its race and be ejected again.
    let frankfurt: Region = Box::new(|t| match t {
        ..1_000 => ok(20),
        1_000..2_000 => refused(),
        _ => ok(200),
    });
    let mut sim = dublin_and(frankfurt, &routing());
    sim.run(&read(NEAR_FRANKFURT), every(0, 1_000, 100));
    sim.run(&read(NEAR_FRANKFURT), every(1_000, 1_300, 100));
    let Availability::Ejected { until_ms } = sim.state(FRANKFURT, 1_300) else {
        panic!("Frankfurt should be ejected");
    };
    let trial = sim.request(&read(NEAR_FRANKFURT), until_ms);
    assert_eq!(trial.plan.order[0], FRANKFURT);
    assert_eq!(trial.plan.hedge_after_ms, None);
    assert_eq!(
        (trial.attempts.as_slice(), trial.status),
        ([FRANKFURT].as_slice(), Some(200))
    );
    assert_eq!(sim.state(FRANKFURT, until_ms + 300), Availability::Healthy);
}

#[test]
fn with_every_region_drained_the_edge_panics_with_the_whole_plan() {
    // Every probe from the probing location times out three rounds in a row (a blip there):
    // rather than nothing but the fallback, or one region with no retry, the edge keeps the
    // whole plan, least bad first, with retries and hedges.
    let mut sim = dublin_and(between(0, 200, refused(), ok(20)), &routing());
    sim.failing_probes(&[("eu-west-1", None), ("eu-central-1", None)], 0);
    assert_eq!(sim.state(DUBLIN, 2), Availability::Drained);
    let s = sim.request(&read(NEAR_FRANKFURT), 100);
    assert_eq!(s.plan.order, [FRANKFURT, DUBLIN]);
    assert!(s.plan.hedge_after_ms.is_some(), "hedging stays on");
    assert_eq!(
        (s.attempts.as_slice(), s.status, s.region),
        ([FRANKFURT, DUBLIN].as_slice(), Some(200), Some(DUBLIN)),
        "Frankfurt refused: retried in Dublin"
    );
    assert_eq!(sim.router.status(100).counters.least_bad, 1);
}

// ---------------------------------------------------------------------------------------------
// Stable region choice for clients without a token
// ---------------------------------------------------------------------------------------------

/// `routing()` with the default band of near-equal regions.
fn band_routing() -> String {
    routing().replace(r#""sticky_band_ms":0,"sticky_band_ratio":0,"#, "")
}

fn keyed<'a>(method: &'static str, key: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        method,
        client_key: Some(key),
        has_idempotency_key: method == "POST",
        ..RequestFacts::default()
    }
}

/// One request served at the first try by the plan's first region in `latency_ms`.
fn serve(router: &mut EdgeRouter, facts: &RequestFacts<'_>, now: Millis, latency_ms: f64) -> usize {
    let first = router.plan(facts, now).order[0];
    router.on_attempt(first, now);
    router.record(first, ok(0).outcome, latency_ms, now, JITTER);
    first
}

#[test]
fn a_fresh_edge_reads_a_write_from_the_region_that_took_it() {
    // The README's curl sequence on a new isolate, for many clients: a create (slower than a
    // read) then a read, without cookies or tokens. An unmeasured region is not free, and one
    // write's latency does not move a client to the other region.
    let keys: Vec<String> = (0..100).map(|n| format!("198.51.100.{n}|DUB")).collect();
    let mut router = EdgeRouter::new(config(TWO_REGIONS, &band_routing()));
    let mut regions_used = [0; 2];
    for (n, key) in keys.iter().enumerate() {
        let at = n as Millis * 50;
        let wrote = serve(&mut router, &keyed("POST", key), at, 25.0);
        let read = serve(&mut router, &keyed("GET", key), at + 30, 4.0);
        assert_eq!(
            read, wrote,
            "client {key}: written in {wrote}, read from {read}"
        );
        regions_used[wrote] += 1;
    }
    assert!(
        regions_used.iter().all(|&n| n >= 20),
        "clients spread over both regions: {regions_used:?}"
    );
}

#[test]
fn one_slow_sample_does_not_move_a_client_but_a_clearly_slower_region_loses_it() {
    let mut router = EdgeRouter::new(config(TWO_REGIONS, &band_routing()));
    for t in 0..10 {
        for region in [DUBLIN, FRANKFURT] {
            router.on_attempt(region, t);
            router.record(region, ok(0).outcome, 5.0, t, JITTER);
        }
    }
    let key = (0..)
        .map(|n| format!("client-{n}"))
        .find(|k| router.plan(&keyed("GET", k), 10).order[0] == DUBLIN)
        .unwrap();
    let facts = keyed("GET", &key);
    // One 60 ms answer from Dublin: the client stays.
    router.on_attempt(DUBLIN, 20);
    router.record(DUBLIN, ok(0).outcome, 60.0, 20, JITTER);
    assert_eq!(router.plan(&facts, 21).order[0], DUBLIN);
    // Dublin keeps answering in 30 ms: clearly worse, its clients go to Frankfurt.
    let mut t = 30;
    while router.plan(&facts, t).order[0] == DUBLIN {
        router.on_attempt(DUBLIN, t);
        router.record(DUBLIN, ok(0).outcome, 30.0, t, JITTER);
        t += 10;
        assert!(
            t < 1_000,
            "Dublin should lose the client after a run of slow answers"
        );
    }
    assert!(t > 40, "not on the second slow answer already");
    // Hysteresis: back at a little worse than Frankfurt, Dublin does not win the client back
    // until it is within the band again.
    let mut answers = |count: u64, latency_ms: f64, from: Millis| {
        for n in 0..count {
            router.on_attempt(DUBLIN, from + n * 10);
            router.record(DUBLIN, ok(0).outcome, latency_ms, from + n * 10, JITTER);
        }
        let now = from + count * 10;
        (router.plan(&facts, now).order[0], now)
    };
    let (first, t) = answers(40, 20.0, t);
    assert_eq!(
        first, FRANKFURT,
        "15 ms behind (the band is 5 ms to join): not back in it"
    );
    let (first, _) = answers(60, 5.0, t);
    assert_eq!(first, DUBLIN, "near-equal again: back");
}

#[test]
fn near_equal_regions_are_split_by_client_and_the_split_is_the_same_in_every_isolate() {
    let keys: Vec<String> = (0..60).map(|n| format!("203.0.113.{n}|FRA")).collect();
    let firsts = |router: &mut EdgeRouter| -> Vec<usize> {
        keys.iter()
            .map(|k| router.plan(&keyed("GET", k), 0).order[0])
            .collect()
    };
    let mut one = EdgeRouter::new(config(THREE_REGIONS, &band_routing()));
    let mut two = EdgeRouter::new(config(THREE_REGIONS, &band_routing()));
    let split = firsts(&mut one);
    assert_eq!(split, firsts(&mut two), "another isolate decides the same");
    for region in [DUBLIN, FRANKFURT, VIRGINIA] {
        assert!(split.contains(&region), "{region} gets clients: {split:?}");
    }
    // A far region is not near-equal: Boston's clients all go to Virginia.
    let boston: Vec<usize> = keys
        .iter()
        .map(|k| {
            let facts = RequestFacts {
                client: Some(BOSTON),
                ..keyed("GET", k)
            };
            one.plan(&facts, 0).order[0]
        })
        .collect();
    assert!(boston.iter().all(|&r| r == VIRGINIA), "{boston:?}");
}

// ---------------------------------------------------------------------------------------------
// Gray failure: a region failing a share of requests while its health check says 200
// ---------------------------------------------------------------------------------------------

/// A gray region: a fast 503 to one request in five (every fifth 50 ms slot), 20 ms otherwise.
fn one_in_five_failing() -> Region {
    Box::new(|t: Millis| {
        if (t / 50).is_multiple_of(5) {
            answer(503, 8)
        } else {
            ok(20)
        }
    })
}

#[test]
fn a_read_pinned_to_a_gray_region_goes_elsewhere_first_and_asks_it_only_about_a_404() {
    // Dublin, which holds the client's last write, fails one request in five (fast 503s,
    // health 200); Frankfurt has not received that write yet and answers 404.
    let gray = one_in_five_failing();
    let mut sim = Sim::new(
        config(TWO_REGIONS, &band_routing()),
        vec![gray, always(answer(404, 10))],
    );
    let token = sim.router.affinity_token_for_write(DUBLIN, 0).unwrap();
    let pinned = read_with(NEAR_FRANKFURT, &token);
    // Dublin's failures show in its failure share while the client reads from it.
    sim.run(&pinned, every(0, 3_000, 50));
    let log = sim.run(&pinned, every(3_000, 9_000, 50));
    assert!(
        log.iter().all(|s| s.attempts[0] == FRANKFURT),
        "the gray region is no longer asked first"
    );
    // Frankfurt's 404 is not believed: Dublin is asked, and its item delivered...
    let confirmed = log
        .iter()
        .filter(|s| s.attempts == [FRANKFURT, DUBLIN] && s.region == Some(DUBLIN))
        .filter(|s| s.status == Some(200))
        .count();
    assert!(
        confirmed * 10 >= log.len() * 7,
        "{confirmed} of {}",
        log.len()
    );
    // ...and when Dublin fails the check, the 404 is what the client gets: never an error.
    assert!(
        log.iter()
            .all(|s| matches!(s.status, Some(200) | Some(404)))
    );
    assert!(log.iter().all(|s| s.attempts.len() <= 2));
}

#[test]
fn a_client_pinned_to_a_gray_region_writes_elsewhere_and_so_moves_its_pin() {
    // Dublin fails one request in five (fast 503s, health 200); a client near Frankfurt wrote
    // there last, so its token pins it to Dublin.
    let gray = one_in_five_failing();
    let mut sim = Sim::new(
        config(TWO_REGIONS, &band_routing()),
        vec![gray, always(ok(20))],
    );
    let token = sim.router.affinity_token_for_write(DUBLIN, 0).unwrap();
    // Its reads show Dublin failing (retries hide it).
    let log = sim.run(&read_with(NEAR_FRANKFURT, &token), every(0, 5_000, 50));
    assert!(log.iter().all(|s| s.status == Some(200)));
    assert!(log[..5].iter().all(|s| s.attempts[0] == DUBLIN));
    // Its next write goes by ranking, away from the gray region: it would renew the pin.
    let write = RequestFacts {
        affinity: Some(&token),
        ..request("PUT", NEAR_FRANKFURT)
    };
    assert_eq!(sim.request(&write, 5_000).attempts[0], FRANKFURT);
    // A healthy pinned region keeps the writes (the test above: writes follow the token).
}

#[test]
fn a_gray_region_is_deprioritised_within_seconds_and_gets_traffic_back_after_it_recovers() {
    // From 1 s to 40 s Frankfurt answers one request in five with a fast 503 (its probes and
    // `x-region-status` would still say 200); Dublin is healthy, 11 ms further away.
    let gray = Box::new(|t: Millis| {
        if (1_000..40_000).contains(&t) && (t / 50).is_multiple_of(5) {
            answer(503, 8)
        } else {
            ok(20)
        }
    });
    let mut sim = Sim::new(
        config(TWO_REGIONS, &band_routing()),
        vec![always(ok(20)), gray],
    );
    let log = sim.run(&read(NEAR_FRANKFURT), every(0, 90_000, 50));
    assert!(log.iter().all(|s| s.status == Some(200)), "no client error");
    let settled: Vec<&Served> = log
        .iter()
        .filter(|s| (6_000..40_000).contains(&s.at))
        .collect();
    let to_gray = settled
        .iter()
        .filter(|s| s.attempts[0] == FRANKFURT)
        .count() as f64
        / settled.len() as f64;
    let attempts =
        settled.iter().map(|s| s.attempts.len()).sum::<usize>() as f64 / settled.len() as f64;
    assert!(
        to_gray <= 0.05,
        "{:.1} % of first attempts to the gray region",
        to_gray * 100.0
    );
    assert!(attempts <= 1.05, "{attempts:.3} attempts per request");
    // Recovered at 40 s: its neighbours come back to it once the bad estimate ages out (no
    // sample for three time constants, 30 s) and a try finds it well.
    let back = log
        .iter()
        .filter(|s| s.at >= 40_000)
        .position(|s| s.region == Some(FRANKFURT))
        .map(|i| 40_000 + i as Millis * 50);
    assert!(
        back.is_some_and(|t| t <= 80_000),
        "Frankfurt back at {back:?}"
    );
    assert!(
        log.iter()
            .rev()
            .take(40)
            .all(|s| s.region == Some(FRANKFURT)),
        "and keeps them"
    );
}

// ---------------------------------------------------------------------------------------------
// A region at its capacity limit (429; Lambda's or DynamoDB's 5xx)
// ---------------------------------------------------------------------------------------------

/// A region that admits `per_second` attempts in each second (API Gateway's throttle, without
/// the burst) and answers the rest with `refusal`; `seen` counts every attempt that reaches
/// it, by second.
fn limited(
    per_second: u32,
    refusal: Reply,
    seen: std::rc::Rc<std::cell::RefCell<Vec<u32>>>,
) -> Region {
    Box::new(move |t| {
        let second = (t / 1000) as usize;
        let mut seen = seen.borrow_mut();
        if seen.len() <= second {
            seen.resize(second + 1, 0);
        }
        seen[second] += 1;
        if seen[second] > per_second {
            refusal
        } else {
            ok(20)
        }
    })
}

/// Frankfurt admits 50 attempts a second; Dublin is down. Mainz clients send 80 requests a
/// second for 20 s, and each client re-sends a refused request a second later (what
/// docs/clients.md tells them to do), so demand grows with every refusal the edge passes on.
/// Returns the attempts Frankfurt saw per second and the requests that finally failed.
fn survivor_at_its_limit(shed_k: f64, refusal: Reply) -> (Vec<u32>, usize) {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut sim = Sim::new(
        config(TWO_REGIONS, &routing_with(&format!(r#""shed_k":{shed_k}"#))),
        vec![always(refused()), limited(50, refusal, seen.clone())],
    );
    // (time, tries left) of each pending client try, earliest first.
    let mut pending: std::collections::BTreeMap<(Millis, u64), u32> = Default::default();
    for (n, t) in every(0, 20_000, 12).enumerate() {
        pending.insert((t, n as u64), 3);
    }
    let mut failed = 0;
    while let Some(((t, id), tries)) = pending.pop_first() {
        let s = sim.request(&read(NEAR_FRANKFURT), t);
        let refused = matches!(s.status, None | Some(429 | 503));
        if refused && tries > 1 {
            pending.insert((t + 1_000, id), tries - 1);
        } else if refused {
            failed += 1;
        }
    }
    let seen = seen.borrow().clone();
    (seen, failed)
}

/// Without shedding every refusal comes back a second later: Frankfurt sees far more than it
/// admits for as long as the overload lasts. With shedding (the default, k = 1.1) the edge
/// answers the excess itself: after the first seconds Frankfurt sees about what it admits,
/// never its clients' re-sends on top.
fn assert_kept_at_its_limit(refusal: Reply) {
    let (unshed, failed_unshed) = survivor_at_its_limit(0.0, refusal);
    let unshed_peak = unshed[5..20].iter().copied().max().unwrap_or(0);
    assert!(unshed_peak > 100, "without shedding: {unshed:?}");
    let unshed_total: u32 = unshed[..20].iter().sum();

    let (shed, failed) = survivor_at_its_limit(1.1, refusal);
    // The shed share follows a 5 s window; a window on, Frankfurt sees at most 1.2 × its
    // limit (about k = 1.1 ×), and is still kept busy at its limit.
    let steady = &shed[12..20];
    assert!(
        steady.iter().all(|&n| (50..=60).contains(&n)),
        "Frankfurt near its limit once the window is full: {shed:?}"
    );
    let shed_total: u32 = shed[..20].iter().sum();
    assert!(
        shed_total * 2 < unshed_total,
        "{shed_total} attempts with shedding, {unshed_total} without"
    );
    // Clients get about as many answers either way (the region serves 50 a second in both):
    // the edge refuses what the region would have refused.
    assert!(
        failed * 10 <= failed_unshed * 11,
        "{failed} vs {failed_unshed}"
    );
}

#[test]
fn the_edge_keeps_a_region_at_its_limit_instead_of_passing_on_its_clients_retries() {
    // API Gateway's throttle.
    assert_kept_at_its_limit(from_platform(429, 4));
}

#[test]
fn lambdas_and_dynamodbs_limits_are_kept_like_api_gateways() {
    // Lambda's concurrency used up: API Gateway answers a 5xx without the function (a 503
    // here; a 500, which clients do not re-send, is the same refusal to the edge: outcome.rs).
    assert_kept_at_its_limit(from_platform(503, 4));
    // The function's table kept throttling: its own 503, marked `x-region-limit`.
    assert_kept_at_its_limit(table_throttled(104));
}

#[test]
fn a_region_refusing_for_load_gets_no_retries_and_sheds_first_attempts_to_a_healthy_one() {
    // Frankfurt refuses everything for load from 2 s to 4 s; Dublin fails (503) every request
    // from 2 s on, so each of its requests asks for a retry. (Dublin is kept in the plans:
    // no ejection, no failure penalty, no hedges.)
    let routing = r#"{"sticky_band_ms":0,"sticky_band_ratio":0,"consecutive_failures":1000000,"failure_rate_min_requests":100000,"failure_penalty_ms":0,"hedge":false}"#;
    let mut sim = Sim::new(
        config(THREE_REGIONS, routing),
        vec![
            between(2_000, 60_000, answer(503, 5), ok(5)),
            between(2_000, 4_000, from_platform(429, 4), ok(2)),
            always(ok(90)),
        ],
    );
    sim.run(&read(NEAR_DUBLIN), every(0, WARM_UP_MS, 100));
    sim.run(&read(NEAR_FRANKFURT), every(0, WARM_UP_MS, 100));
    // A Frankfurt client's 429 is delivered (a region's own answer)...
    let s = sim.request(&read(NEAR_FRANKFURT), 2_000);
    assert_eq!((s.status, s.region), (Some(429), Some(FRANKFURT)));
    // ... and for the next second Dublin's failures are retried in Virginia, never in
    // Frankfurt, though Frankfurt is nearer.
    let retried = sim.run(&read(NEAR_DUBLIN), every(2_010, 2_900, 100));
    for s in &retried {
        assert_eq!(s.attempts, vec![DUBLIN, VIRGINIA], "{s:?}");
        assert_eq!(s.status, Some(200), "{s:?}");
    }
    // Frankfurt clients: after more 429s most of their first attempts go to the next region
    // instead (and end up served), and none is retried into Frankfurt.
    let frankfurt = sim.run(&read(NEAR_FRANKFURT), every(2_100, 3_900, 20));
    let moved: Vec<&Served> = frankfurt
        .iter()
        .filter(|s| !s.plan.order.contains(&FRANKFURT))
        .collect();
    assert!(
        moved.len() > frankfurt.len() / 2,
        "{} of {}",
        moved.len(),
        frankfurt.len()
    );
    assert!(
        moved
            .iter()
            .all(|s| s.status == Some(200) && !s.attempts.contains(&FRANKFURT)),
        "a shed request is served elsewhere: {moved:?}"
    );
    let c = sim.router.status(3_900).counters;
    assert_eq!(c.shed as usize, moved.len());
    assert_eq!(c.overloaded, 0);
    // Frankfurt accepts again from 4 s; one window after its last refusal it has every one of
    // its clients back.
    let later = sim.run(&read(NEAR_FRANKFURT), every(14_000, 15_000, 50));
    assert!(
        later.iter().all(|s| s.region == Some(FRANKFURT)),
        "{later:?}"
    );
}
