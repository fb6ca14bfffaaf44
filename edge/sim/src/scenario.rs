//! Scenario files: the world one run simulates (regions, edge, clients, DNS) and what goes wrong
//! in it (faults with a start and an end). JSON, every field checked; unknown fields are errors
//! so a typo is never silently ignored. The format is described field by field in
//! `scenarios/README.md`; every default is stated on its field here.

use serde::Deserialize;

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in the output (`summary.json`'s `scenario`).
    pub name: String,
    /// What the scenario shows (free text).
    #[serde(default)]
    pub description: String,
    /// Simulated seconds during which clients send requests (requests still in flight at the
    /// end are finished, up to `drain_s` more).
    pub duration_s: f64,
    /// Seconds allowed after `duration_s` for retries and in-flight requests (default 60).
    #[serde(default = "defaults::drain_s")]
    pub drain_s: f64,
    /// 1 to 5 regions.
    pub regions: Vec<RegionSpec>,
    /// Client populations, one per continent (or any grouping).
    pub clients: Vec<Population>,
    #[serde(default)]
    pub edge: EdgeSpec,
    #[serde(default)]
    pub requests: RequestMix,
    #[serde(default)]
    pub client_retry: ClientRetry,
    #[serde(default)]
    pub dns: DnsSpec,
    #[serde(default)]
    pub network: NetworkSpec,
    /// What goes wrong, and when.
    pub faults: Vec<Fault>,
}

mod defaults {
    pub fn drain_s() -> f64 {
        60.0
    }
}

/// One region: where it is, how fast it answers, how much it can take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// AWS region name, e.g. `eu-west-1`.
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// The edge's `weight` for it (default 1).
    #[serde(default = "RegionSpec::one")]
    pub weight: f64,
    /// Service time inside the region (API Gateway, Lambda, DynamoDB), network excluded.
    pub latency_ms: LatencySpec,
    #[serde(default)]
    pub capacity: Capacity,
}

impl RegionSpec {
    fn one() -> f64 {
        1.0
    }
}

/// A log-normal service time given by its median and 99th percentile.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    pub median: f64,
    pub p99: f64,
}

/// A region's limits, with AWS's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capacity {
    /// API Gateway's steady rate per account and region (default 10,000 requests/s); beyond
    /// it, 429.
    pub api_rps: f64,
    /// API Gateway's burst (default 5,000 requests): the token bucket's size.
    pub api_burst: f64,
    /// The account's Lambda concurrency (default 1,000); beyond it, 503 (see docs/scale.md on
    /// what API Gateway really answers).
    pub lambda_concurrency: u32,
    /// Execution environments Lambda may add per 10 s (default 1,000).
    pub lambda_ramp_per_10s: u32,
    /// Concurrency the function may reach at once, before any ramp (default 1,000: Lambda's
    /// initial burst, capped by the account's concurrency).
    pub lambda_initial: u32,
    /// Execution environments already warm at the start (default 200).
    pub lambda_warm: u32,
    /// What a cold start adds (default 100 ms: a Rust function on `provided.al2023`).
    pub cold_start_ms: f64,
    /// DynamoDB on-demand's previous peak, in requests/s (default 5,000): it absorbs up to
    /// twice this at once and throttles beyond (503 from the function). A new peak raises the
    /// ceiling only after 30 minutes.
    pub dynamo_previous_peak_rps: f64,
    /// `Retry-After` on every throttling answer, in seconds (default 1).
    pub retry_after_s: f64,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            api_rps: 10_000.0,
            api_burst: 5_000.0,
            lambda_concurrency: 1_000,
            lambda_ramp_per_10s: 1_000,
            lambda_initial: 1_000,
            lambda_warm: 200,
            cold_start_ms: 100.0,
            dynamo_previous_peak_rps: 5_000.0,
            retry_after_s: 1.0,
        }
    }
}

/// Clients in one part of the world.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// A label, e.g. `EU` (the continent code).
    pub name: String,
    /// Centre of the population.
    pub lat: f64,
    pub lon: f64,
    /// Edge locations and clients are spread within this many degrees of the centre (default 8).
    #[serde(default = "Population::spread")]
    pub spread_deg: f64,
    /// New requests per second (a Poisson process).
    pub rate_rps: f64,
    /// Round trip between a client and its nearest edge location, or its ISP's exit towards a
    /// region (default 10 ms).
    #[serde(default = "Population::access")]
    pub access_ms: f64,
}

impl Population {
    fn spread() -> f64 {
        8.0
    }
    fn access() -> f64 {
        10.0
    }
}

/// The Cloudflare side.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSpec {
    /// Edge locations in all (default 50), shared out among the populations by request rate.
    pub locations: usize,
    /// Isolates per location, each with its own router and retry budget (default 4).
    pub isolates_per_location: usize,
    /// The Worker's `ROUTING` var: any field of `edge::core::config::Settings` (default `{}`:
    /// the core's defaults).
    pub routing: serde_json::Map<String, serde_json::Value>,
    /// How often the cron probes every region (default 60 s, the shortest Cron Trigger).
    pub probe_interval_s: f64,
    /// Index of the location the cron runs in (default 0).
    pub probe_location: usize,
    /// How long a KV write takes to become visible at another location: each location gets a
    /// fixed delay, uniform in this range (default 0 to 60 s). The probing location sees its
    /// own writes at once.
    pub kv_delay_s: [f64; 2],
    /// The Worker's own time per request (default 1 ms).
    pub overhead_ms: f64,
}

impl Default for EdgeSpec {
    fn default() -> Self {
        Self {
            locations: 50,
            isolates_per_location: 4,
            routing: serde_json::Map::new(),
            probe_interval_s: 60.0,
            probe_location: 0,
            kv_delay_s: [0.0, 60.0],
            overhead_ms: 1.0,
        }
    }
}

/// The share of each method (normalised; default 80 % GET, 10 % PUT, 10 % POST). POSTs carry
/// an `Idempotency-Key` (the edge adds one), so every request is retryable.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestMix {
    pub get: f64,
    pub put: f64,
    pub post: f64,
}

impl Default for RequestMix {
    fn default() -> Self {
        Self {
            get: 0.8,
            put: 0.1,
            post: 0.1,
        }
    }
}

/// What a client does with a failed try: docs/clients.md's policy (its backoff, its answers),
/// with at most `max_retries` retries (see docs/scale.md, "The client retry policy").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientRetry {
    /// Retries after the first try (default 2).
    pub max_retries: u32,
    /// Backoff before retry n (1, 2, ...): uniform in `0..min(cap_ms, base_ms × 2^n)` (default
    /// 200 ms, as docs/clients.md).
    pub base_ms: f64,
    /// Longest backoff (default 5,000 ms, as docs/clients.md).
    pub cap_ms: f64,
    /// Waits at least `Retry-After` when the answer has one (default true), up to
    /// `retry_after_cap_s` (default 20 s).
    pub honour_retry_after: bool,
    pub retry_after_cap_s: f64,
    /// One try's timeout (default 10,000 ms).
    pub timeout_ms: f64,
}

impl Default for ClientRetry {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_ms: 200.0,
            cap_ms: 5_000.0,
            honour_retry_after: true,
            retry_after_cap_s: 20.0,
            timeout_ms: 10_000.0,
        }
    }
}

/// Route 53 latency records with health checks, and the resolvers in front of clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSpec {
    /// Health check interval (default 30 s).
    pub check_interval_s: f64,
    /// Failed (or passed) checks in a row that flip one checker's view (default 3).
    pub failure_threshold: u32,
    /// Health checkers (default 16), each checking on its own phase.
    pub checkers: u32,
    /// A region is healthy while more than this share of checkers say so (default 0.18).
    pub healthy_above: f64,
    /// A check fails without an answer within this (default 4,000 ms).
    pub check_timeout_ms: f64,
    /// Record TTL (default 60 s).
    pub ttl_s: f64,
    /// Share of resolvers that extend TTLs (default 0.0874, Bhowmick et al., PAM 2023): each
    /// holds an answer for a time uniform in `ttl_s..extended_ttl_max_s` (default 900 s).
    pub ttl_extending_share: f64,
    pub extended_ttl_max_s: f64,
    /// Of those, the share of all resolvers still on a stale answer after 15 minutes (default
    /// 0.02, Flavel et al., 2014): they hold an answer `stale_hold_s` (default 3,600 s).
    pub stale_share: f64,
    pub stale_hold_s: f64,
    /// Resolvers per client population (default 200).
    pub resolvers_per_population: usize,
}

impl Default for DnsSpec {
    fn default() -> Self {
        Self {
            check_interval_s: 30.0,
            failure_threshold: 3,
            checkers: 16,
            healthy_above: 0.18,
            check_timeout_ms: 4_000.0,
            ttl_s: 60.0,
            ttl_extending_share: 0.0874,
            extended_ttl_max_s: 900.0,
            stale_share: 0.02,
            stale_hold_s: 3_600.0,
            resolvers_per_population: 200,
        }
    }
}

/// Round trips between places.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSpec {
    /// Fixed part of any round trip between an edge location (or a client's ISP) and a region
    /// (default 2 ms).
    pub base_rtt_ms: f64,
    /// Real paths are longer than great circles: the fibre round trip (100 km per ms, as the
    /// core estimates it) times this (default 1.5).
    pub path_stretch: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            base_rtt_ms: 2.0,
            path_stretch: 1.5,
        }
    }
}

/// Something going wrong in one region (or `*`: every region) from `from_s` until `until_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub region: String,
    pub from_s: f64,
    pub until_s: f64,
    pub effect: Effect,
}

/// How an attempt fails when a region is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// Connection refused or reset, one round trip after sending.
    ConnectError,
    /// No answer at all: the caller's timeout decides.
    Timeout,
    /// The region's front door answers 503 (no `x-region-status`).
    Unavailable,
}

/// What a fault does.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Effect {
    /// Every request and health check fails.
    Outage { failure: Failure },
    /// Service time times `latency_factor`, plus `extra_ms` (health checks too: a check slower
    /// than its timeout fails).
    Slow {
        #[serde(default = "Effect::one")]
        latency_factor: f64,
        #[serde(default)]
        extra_ms: f64,
    },
    /// A share of requests answered with `status` (x-region-status 200); `/health` says 200.
    Gray {
        error_rate: f64,
        #[serde(default = "Effect::status_503")]
        status: u16,
    },
    /// Down for `down_s`, up for `up_s`, over and over. Down means an outage (`failure`), or,
    /// with `health_only`, only `/health` (and `x-region-status`) saying `health_status` while
    /// requests are served as usual (the drill's flapping).
    Flap {
        down_s: f64,
        up_s: f64,
        #[serde(default = "Effect::connect_error")]
        failure: Failure,
        #[serde(default)]
        health_only: bool,
        #[serde(default = "Effect::status_404")]
        health_status: u16,
    },
}

impl Effect {
    fn one() -> f64 {
        1.0
    }
    fn status_503() -> u16 {
        503
    }
    fn status_404() -> u16 {
        404
    }
    fn connect_error() -> Failure {
        Failure::ConnectError
    }
}

/// A scenario that does not make sense, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), ScenarioError> {
    if ok {
        Ok(())
    } else {
        Err(ScenarioError(what()))
    }
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

fn non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

impl Scenario {
    /// Parses and checks a scenario file's text.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario =
            serde_json::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Seconds from the start of the simulation to the last possible event.
    pub fn horizon_s(&self) -> f64 {
        self.duration_s + self.drain_s
    }

    fn check(&self) -> Result<(), ScenarioError> {
        check(!self.name.is_empty(), || "name: empty".into())?;
        check(
            positive(self.duration_s) && self.duration_s <= 86_400.0,
            || "duration_s: must be within (0, 86400]".into(),
        )?;
        check(
            non_negative(self.drain_s) && self.drain_s <= 3_600.0,
            || "drain_s: must be within [0, 3600]".into(),
        )?;
        check((1..=5).contains(&self.regions.len()), || {
            "regions: needs 1 to 5".into()
        })?;
        for (i, r) in self.regions.iter().enumerate() {
            let at = |f: &str| format!("regions[{i}].{f}");
            check(self.regions[..i].iter().all(|o| o.name != r.name), || {
                at("name") + ": appears twice"
            })?;
            check(
                positive(r.latency_ms.median) && r.latency_ms.p99 >= r.latency_ms.median,
                || at("latency_ms") + ": needs 0 < median <= p99",
            )?;
            let c = &r.capacity;
            check(positive(c.api_rps) && non_negative(c.api_burst), || {
                at("capacity.api_rps")
            })?;
            check(c.lambda_concurrency > 0 && c.lambda_initial > 0, || {
                at("capacity.lambda_concurrency") + ": must be positive"
            })?;
            check(
                positive(c.dynamo_previous_peak_rps)
                    && non_negative(c.cold_start_ms)
                    && non_negative(c.retry_after_s),
                || at("capacity") + ": dynamo_previous_peak_rps, cold_start_ms, retry_after_s",
            )?;
        }
        check(!self.clients.is_empty(), || "clients: needs one".into())?;
        for (i, p) in self.clients.iter().enumerate() {
            check(
                non_negative(p.rate_rps) && non_negative(p.access_ms) && non_negative(p.spread_deg),
                || format!("clients[{i}]: rate_rps, access_ms, spread_deg must be >= 0"),
            )?;
        }
        check(
            self.clients.iter().map(|p| p.rate_rps).sum::<f64>() > 0.0,
            || "clients: no requests at all".into(),
        )?;
        let e = &self.edge;
        check(
            e.locations >= self.clients.len() && e.locations <= 10_000,
            || "edge.locations: at least one per client population, at most 10000".into(),
        )?;
        check((1..=256).contains(&e.isolates_per_location), || {
            "edge.isolates_per_location: 1 to 256".into()
        })?;
        check(e.probe_location < e.locations, || {
            "edge.probe_location: no such location".into()
        })?;
        check(
            positive(e.probe_interval_s)
                && non_negative(e.kv_delay_s[0])
                && e.kv_delay_s[1] >= e.kv_delay_s[0]
                && non_negative(e.overhead_ms),
            || "edge: probe_interval_s > 0, 0 <= kv_delay_s[0] <= kv_delay_s[1]".into(),
        )?;
        let m = &self.requests;
        check(
            non_negative(m.get)
                && non_negative(m.put)
                && non_negative(m.post)
                && m.get + m.put + m.post > 0.0,
            || "requests: shares must be >= 0 and not all 0".into(),
        )?;
        let c = &self.client_retry;
        check(
            c.max_retries <= 10
                && non_negative(c.base_ms)
                && c.cap_ms >= c.base_ms
                && positive(c.timeout_ms)
                && non_negative(c.retry_after_cap_s),
            || "client_retry: max_retries <= 10, 0 <= base_ms <= cap_ms, timeout_ms > 0".into(),
        )?;
        let d = &self.dns;
        check(
            positive(d.check_interval_s)
                && d.failure_threshold >= 1
                && d.checkers >= 1
                && (0.0..1.0).contains(&d.healthy_above)
                && positive(d.ttl_s)
                && d.extended_ttl_max_s >= d.ttl_s
                && (0.0..=1.0).contains(&d.ttl_extending_share)
                && (0.0..=1.0).contains(&d.stale_share)
                && d.stale_share <= d.ttl_extending_share
                && d.stale_hold_s >= d.ttl_s
                && d.resolvers_per_population >= 1,
            || "dns: see scenarios/README.md for the bounds".into(),
        )?;
        check(
            non_negative(self.network.base_rtt_ms) && positive(self.network.path_stretch),
            || "network: base_rtt_ms >= 0, path_stretch > 0".into(),
        )?;
        for (i, f) in self.faults.iter().enumerate() {
            let at = |what: &str| format!("faults[{i}].{what}");
            check(
                f.region == "*" || self.regions.iter().any(|r| r.name == f.region),
                || at("region") + ": no such region (or \"*\")",
            )?;
            check(non_negative(f.from_s) && f.until_s > f.from_s, || {
                at("until_s") + ": must be after from_s"
            })?;
            match f.effect {
                Effect::Outage { .. } => {}
                Effect::Slow {
                    latency_factor,
                    extra_ms,
                } => check(positive(latency_factor) && non_negative(extra_ms), || {
                    at("effect") + ": latency_factor > 0, extra_ms >= 0"
                })?,
                Effect::Gray { error_rate, .. } => {
                    check((0.0..=1.0).contains(&error_rate), || {
                        at("effect.error_rate") + ": within [0, 1]"
                    })?
                }
                Effect::Flap { down_s, up_s, .. } => {
                    check(positive(down_s) && positive(up_s), || {
                        at("effect") + ": down_s and up_s > 0"
                    })?
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{
        "name": "t", "duration_s": 60,
        "regions": [{"name": "eu-west-1", "lat": 53.3, "lon": -6.3,
                     "latency_ms": {"median": 20, "p99": 80}}],
        "clients": [{"name": "EU", "lat": 50, "lon": 10, "rate_rps": 10}],
        "edge": {"locations": 2},
        "faults": [{"region": "eu-west-1", "from_s": 10, "until_s": 20,
                    "effect": {"kind": "gray", "error_rate": 0.2}}]
    }"#;

    #[test]
    fn a_small_scenario_parses_with_defaults() {
        let s = Scenario::parse(SMALL).unwrap();
        assert_eq!(s.edge.isolates_per_location, 4);
        assert_eq!(s.regions[0].capacity.api_rps, 10_000.0);
        assert_eq!(s.dns.ttl_s, 60.0);
        assert!(matches!(
            s.faults[0].effect,
            Effect::Gray { status: 503, .. }
        ));
    }

    #[test]
    fn mistakes_are_named() {
        let typo = SMALL.replace("\"duration_s\"", "\"duraton_s\"");
        assert!(Scenario::parse(&typo).unwrap_err().0.contains("duraton_s"));
        let region = SMALL.replace("\"region\": \"eu-west-1\"", "\"region\": \"mars-1\"");
        assert!(
            Scenario::parse(&region)
                .unwrap_err()
                .0
                .contains("faults[0].region")
        );
        let kind = SMALL.replace("\"gray\"", "\"grey\"");
        assert!(Scenario::parse(&kind).is_err());
    }
}
