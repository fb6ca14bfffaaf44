//! The per-isolate routing state: which regions to try for a request and in what order, what
//! each attempt's outcome does to health, whether a retry is allowed, and the status report.
//! The adapter asks; this decides. Nothing here sends, sleeps or reads a clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Millis;
use super::affinity::Affinity;
use super::budget::RetryBudget;
use super::config::EdgeConfig;
use super::geo::{self, Coordinates};
use super::health::{Availability, ProbeResult, RegionHealth};
use super::outcome::{self, Outcome, Verdict};
use super::overload::Overload;

/// What the router needs to know about a request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The client's position (`request.cf` latitude/longitude).
    pub client: Option<Coordinates>,
    /// The client's continent code (`request.cf.continent`), used without coordinates.
    pub continent: Option<&'a str>,
    /// An affinity token from the cookie or header.
    pub affinity: Option<&'a str>,
    /// Who the client is, for keeping one client on one of several near-equal regions (the
    /// Worker passes the client address and the edge location); `None` is one shared key.
    pub client_key: Option<&'a str>,
    pub has_idempotency_key: bool,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Region indexes to try, best first. Empty: every region is out, go to the fallback.
    pub order: Vec<usize>,
    /// Whether the request may be sent more than once.
    pub retryable: bool,
    /// A read (GET, HEAD): safe to send again whatever it met, a region's own 500 included.
    pub read: bool,
    /// For reads: send a copy to the next region if the first has not answered after this.
    pub hedge_after_ms: Option<u64>,
    /// For a read pinned to a region that is failing some of its requests (gray): the region
    /// holding the client's last write, tried after a healthier one. A 404 from another region
    /// is not believed until this one is asked (its replica may not have the write yet).
    pub authoritative: Option<usize>,
    /// Every region this request could go to is refusing work for load and shed it
    /// (`core::overload`): the edge answers 503 itself, without trying the fallback (the Route
    /// 53 name leads to the same regions).
    pub overloaded: bool,
}

/// Shared probe results, as the cron writes them for every isolate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub regions: BTreeMap<String, ProbeResult>,
}

impl ProbeReport {
    /// The report after a round of probes: each result with its count of failures in a row,
    /// carried on from the `previous` report.
    pub fn next(
        previous: &ProbeReport,
        results: impl IntoIterator<Item = (String, ProbeResult)>,
    ) -> Self {
        let regions = results
            .into_iter()
            .map(|(name, mut result)| {
                result.failures_in_row = if result.ok() {
                    0
                } else {
                    previous
                        .regions
                        .get(&name)
                        .map_or(0, |p| p.failures_in_row)
                        .saturating_add(1)
                };
                (name, result)
            })
            .collect();
        Self { regions }
    }
}

/// Whether and how to read the shared probe results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeRefresh {
    /// Not due yet.
    NotDue,
    /// This isolate has never read them: read before routing this request (once per isolate),
    /// so a new isolate does not send its first requests to a region every other isolate knows
    /// is drained.
    First,
    /// Due: read after the response (`wait_until`); the next requests use them.
    Background,
}

/// What this isolate has done since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub requests: u64,
    pub attempts: u64,
    pub retries: u64,
    pub hedges: u64,
    pub retries_denied_by_budget: u64,
    pub ejections: u64,
    pub fallbacks: u64,
    /// Plans made when every region was drained or ejected (panic mode: every region tried,
    /// least bad first).
    pub least_bad: u64,
    pub unavailable: u64,
    /// First attempts not sent to a region because it was refusing work for load (the request
    /// went to the next region of its plan, or was answered `regions_overloaded`).
    pub shed: u64,
    /// Requests the edge answered `regions_overloaded` (every region of the plan shed them).
    pub overloaded: u64,
}

/// One region in the status report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionStatus {
    pub name: String,
    pub state: Availability,
    pub consecutive_failures: u32,
    pub ewma_latency_ms: Option<f64>,
    pub last_probe: Option<ProbeResult>,
}

/// The `/_edge/status` report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub now_ms: Millis,
    pub regions: Vec<RegionStatus>,
    pub counters: Counters,
    pub retry_budget: f64,
    /// Whether a fallback (the Route 53 name) is configured. Origin URLs are never reported.
    pub fallback: bool,
}

/// The routing state of one isolate.
#[derive(Debug, Clone)]
pub struct EdgeRouter {
    config: Arc<EdgeConfig>,
    health: Vec<RegionHealth>,
    /// Each region's recent refusals for load ([`Outcome::refused_for_load`]), for shedding.
    overload: Vec<Overload>,
    budget: RetryBudget,
    counters: Counters,
    probes_read_at: Option<Millis>,
    /// Which regions are in the band of near-equal regions (kept between plans: hysteresis).
    in_band: Vec<bool>,
    /// Each region's name hashed once, for the rendezvous scores.
    name_hashes: Vec<u64>,
    /// Each region's position, for distances.
    points: Vec<geo::UnitVector>,
    /// Affinity tokens whose signature was checked, with what they say (expiry is checked
    /// again on every use); cleared when full.
    verified_tokens: HashMap<String, Affinity>,
}

/// Most verified affinity tokens kept per isolate.
const VERIFIED_TOKENS: usize = 1024;

/// What every region costs before distance and latency (its own work), so that weights order
/// regions even when nothing else is known.
pub const BASE_COST_MS: f64 = 1.0;

/// A stable 64-bit hash (FNV-1a) of a string: the same in every isolate, natively and in Wasm.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The rendezvous score of a client (its key's hash) with a region (its name's hash): the
/// client's region among near-equal ones is the one scoring highest. A splitmix64 finish mixes
/// the two hashes, so each client's order over the regions is independent of the others'.
fn rendezvous(client_hash: u64, region_hash: u64) -> u64 {
    let mut z = (client_hash ^ region_hash).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl EdgeRouter {
    pub fn new(config: EdgeConfig) -> Self {
        let health = config
            .regions
            .iter()
            .map(|_| RegionHealth::new(&config.settings))
            .collect();
        let budget = RetryBudget::new(
            config.settings.retry_ratio,
            config.settings.retry_floor_per_s,
        );
        Self {
            health,
            overload: vec![Overload::default(); config.regions.len()],
            budget,
            counters: Counters::default(),
            probes_read_at: None,
            in_band: vec![false; config.regions.len()],
            name_hashes: config.regions.iter().map(|r| fnv1a(&r.name)).collect(),
            points: config
                .regions
                .iter()
                .map(|r| r.coordinates().into())
                .collect(),
            verified_tokens: HashMap::new(),
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// The configuration, shared (cheap to keep across an await).
    pub fn shared_config(&self) -> Arc<EdgeConfig> {
        Arc::clone(&self.config)
    }

    /// The latency a region is ranked by: its smoothed recent latency, or, when it has none
    /// (never measured, or idle for a while), the mean of the other regions' recent ones. An
    /// unmeasured region is neither free nor penalised: it ranks as a typical region.
    fn ranking_latency(&self, i: usize, now: Millis) -> f64 {
        self.health[i]
            .ranking_latency_ms(now)
            .unwrap_or_else(|| self.prior_latency(now))
    }

    /// The latency of a typical region: the mean of the recent estimates (0 when none).
    fn prior_latency(&self, now: Millis) -> f64 {
        let known: Vec<f64> = self
            .health
            .iter()
            .filter_map(|h| h.ranking_latency_ms(now))
            .collect();
        if known.is_empty() {
            0.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        }
    }

    /// Estimated cost of sending this client to region `i`: fibre round trip plus observed
    /// latency plus [`BASE_COST_MS`], divided by the region's weight; plus the region's smoothed
    /// failure share times `failure_penalty_ms` (not divided: a preferred region that fails is
    /// as costly to a client as any other), so a region that fails fast looks worse, not faster.
    fn cost(&self, i: usize, client: Option<geo::UnitVector>, now: Millis) -> f64 {
        let region = &self.config.regions[i];
        let distance = client.map_or(0.0, |c| {
            geo::rtt_ms(geo::distance_km_between(c, self.points[i]))
        });
        let settings = &self.config.settings;
        // A region due its trial ranks as if unmeasured, without its penalty: the trial must
        // come, and its answer decides.
        if self.health[i].availability(now, settings) == Availability::TrialDue {
            let typical = self.prior_latency(now);
            return (BASE_COST_MS + distance + typical) / region.weight;
        }
        let penalty =
            self.health[i].failure_share(now).unwrap_or(0.0) * settings.failure_penalty_ms;
        (BASE_COST_MS + distance + self.ranking_latency(i, now)) / region.weight + penalty
    }

    /// Orders admitted regions (`ranked`: index and cost, cheapest first). The band of
    /// near-equal regions comes first, in the order of the client's hash with each region (so a
    /// client keeps its region while the band holds, and clients spread over the band); the
    /// rest follow by cost. A region joins the band within `max(ratio × best, ms)` of the best
    /// and leaves it beyond twice that, so one sample does not move a client.
    fn order_with_band(&mut self, ranked: &[(usize, f64)], client_key: &str) -> Vec<usize> {
        let s = &self.config.settings;
        let Some(&(first, best)) = ranked.first() else {
            return Vec::new();
        };
        if s.sticky_band_ms <= 0.0 && s.sticky_band_ratio <= 0.0 {
            return ranked.iter().map(|&(i, _)| i).collect();
        }
        // Costs are divided by weight: so is the band's fixed part.
        let weight = self.config.regions[first].weight;
        let tolerance = (best * s.sticky_band_ratio).max(s.sticky_band_ms / weight);
        let mut band = Vec::with_capacity(ranked.len());
        let mut rest = Vec::with_capacity(ranked.len());
        for &(i, cost) in ranked {
            let limit = if self.in_band[i] {
                2.0 * tolerance
            } else {
                tolerance
            };
            let inside = cost - best <= limit;
            self.in_band[i] = inside;
            if inside { band.push(i) } else { rest.push(i) }
        }
        if band.len() > 1 {
            let client = fnv1a(client_key);
            let names = &self.name_hashes;
            band.sort_by_cached_key(|&i| std::cmp::Reverse(rendezvous(client, names[i])));
        }
        band.extend(rest);
        band
    }

    /// Decides where a request goes. Counts the request and credits the retry budget.
    pub fn plan(&mut self, facts: &RequestFacts<'_>, now: Millis) -> Plan {
        self.counters.requests += 1;
        self.budget.deposit(now);
        let client = facts
            .client
            .or_else(|| facts.continent.and_then(geo::continent_centre))
            .map(geo::UnitVector::from);
        let settings = Arc::clone(&self.config);
        let settings = &settings.settings;
        let mut ranked: Vec<(usize, f64)> = Vec::with_capacity(self.health.len());
        ranked.extend(
            (0..self.health.len())
                .filter(|&i| self.health[i].admits(now, settings))
                .map(|i| (i, self.cost(i, client, now))),
        );
        let least_bad = ranked.is_empty();
        if least_bad {
            // Every region is drained or ejected (panic mode): the whole plan, least bad first.
            // A drained region (its probe or its own word) before an ejected one, then the one
            // whose ejection ends first; retries and hedges stay allowed, and the fallback
            // origin still comes after them. Cutting the plan to one region would turn a blip
            // at the probing location into an outage.
            self.counters.least_bad += 1;
            ranked = (0..self.health.len())
                .map(|i| {
                    let wait_ms = match self.health[i].availability(now, settings) {
                        Availability::Ejected { until_ms } => until_ms.saturating_sub(now),
                        _ => 0,
                    };
                    (i, wait_ms as f64 * 1e3 + self.cost(i, client, now))
                })
                .collect();
        }
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut order: Vec<usize> = if least_bad {
            ranked.into_iter().map(|(i, _)| i).collect()
        } else {
            self.order_with_band(&ranked, facts.client_key.unwrap_or_default())
        };

        let read = outcome::is_read(facts.method);
        let mut pinned = false;
        let mut authoritative = None;
        if let Some(token) = facts.affinity
            && let Some(key) = &self.config.affinity_key
        {
            let window = settings.affinity_window_ms;
            let cached = self
                .verified_tokens
                .get(token)
                .filter(|a| a.expires_ms > now && a.expires_ms <= now.saturating_add(window))
                .cloned();
            let affinity = cached.or_else(|| {
                let regions = &self.config.regions;
                let known = |name: &str| regions.iter().any(|r| r.name == name);
                let parsed = Affinity::parse(token, now, window, known, key)?;
                if self.verified_tokens.len() >= VERIFIED_TOKENS {
                    self.verified_tokens.clear();
                }
                self.verified_tokens
                    .insert(token.to_owned(), parsed.clone());
                Some(parsed)
            });
            // A region failing some of its requests (gray: its failure share beyond the floor)
            // keeps its pinned clients only as a last word: their reads go to a healthier
            // region first and ask the pinned one only if the item is not found there (it may
            // not have replicated yet); their writes go by ranking and earn a token for where
            // they land (every write a pinned region served would otherwise renew the pin).
            if let Some(affinity) = affinity
                && let Some(pos) = order
                    .iter()
                    .position(|&i| self.config.regions[i].name == affinity.region)
            {
                let region = order[pos];
                let gray = self.health[region].failure_share(now).unwrap_or(0.0) > 0.0;
                if !gray {
                    order.remove(pos);
                    order.insert(0, region);
                    pinned = true;
                } else if read && order.len() > 1 {
                    order.remove(pos);
                    order.insert(1, region);
                    pinned = true;
                    authoritative = Some(region);
                }
            }
        }
        let overloaded = self.shed(&mut order, pinned, now);
        order.truncate(settings.max_attempts as usize);
        let authoritative = authoritative.filter(|r| order.contains(r));

        // No hedge for a read pinned to the writer's region (another replica may still hold the
        // old item, and its 2xx would win), nor for a region's trial (its real answer decides).
        let hedge_after_ms = order
            .first()
            .copied()
            .filter(|_| read && settings.hedge && order.len() >= 2 && !pinned)
            .filter(|&first| {
                self.health[first].availability(now, settings) != Availability::TrialDue
            })
            .map(|first| self.hedge_delay(first, now));
        Plan {
            order,
            retryable: outcome::method_is_retryable(facts.method, facts.has_idempotency_key),
            read,
            hedge_after_ms,
            authoritative,
            overloaded,
        }
    }

    /// Sheds the request from the regions at the head of `order` that are refusing work for
    /// load (`core::overload`), first to last, until one takes it. A region's trial is never
    /// shed (its answer must come), nor a read or write pinned to its region (read-your-writes
    /// comes first). Returns true when every region shed it.
    fn shed(&mut self, order: &mut Vec<usize>, pinned: bool, now: Millis) -> bool {
        let settings = &self.config.settings;
        if pinned || order.is_empty() {
            return false;
        }
        while let Some(&first) = order.first() {
            let trial = self.health[first].availability(now, settings) == Availability::TrialDue;
            if trial || !self.overload[first].shed(now, settings) {
                return false;
            }
            self.counters.shed += 1;
            order.remove(0);
        }
        self.counters.overloaded += 1;
        true
    }

    /// Whether region `i` is at its limit: it refused work for load within
    /// `refusal_hold_ms`, or its first attempts are being shed. No retry or hedge goes to it.
    pub fn at_limit(&self, i: usize, now: Millis) -> bool {
        let settings = &self.config.settings;
        self.overload
            .get(i)
            .is_some_and(|o| o.at_limit(now, settings))
    }

    /// The hedge delay for a region: configured, or about its p95 (3 × its recent latency EWMA)
    /// within `hedge_min_ms..=per_try_timeout_ms / 2`; the minimum when its latency is unknown or
    /// no longer recent (the client pays at most `hedge_min_ms` to learn how it is doing).
    fn hedge_delay(&self, i: usize, now: Millis) -> u64 {
        let s = &self.config.settings;
        if s.hedge_delay_ms > 0 {
            return s.hedge_delay_ms;
        }
        let ceiling = (s.per_try_timeout_ms / 2).max(s.hedge_min_ms);
        self.health[i]
            .recent_latency_ms(now)
            .map_or(s.hedge_min_ms, |ms| {
                ((ms * 3.0) as u64).clamp(s.hedge_min_ms, ceiling)
            })
    }

    /// Notes that an attempt is being sent to region `i` (it may be the region's trial).
    pub fn on_attempt(&mut self, i: usize, now: Millis) {
        self.counters.attempts += 1;
        self.health[i].on_send(now, &self.config.settings);
    }

    /// Region `i`'s availability at `now`.
    pub fn availability(
        &self,
        i: usize,
        now: Millis,
        settings: &super::config::Settings,
    ) -> Availability {
        self.health
            .get(i)
            .map_or(Availability::Drained, |h| h.availability(now, settings))
    }

    /// An attempt on region `i` aborted after `latency_ms` because another won the race: it took
    /// at least that long (a latency sample), and says nothing about failure.
    pub fn record_lost_race(&mut self, i: usize, latency_ms: f64, now: Millis) {
        if let Some(h) = self.health.get_mut(i) {
            h.record_lost_race(latency_ms, now);
        }
    }

    /// Asks for a retry (or hedge) from the budget.
    pub fn allow_retry(&mut self, now: Millis, hedge: bool) -> bool {
        if self.budget.withdraw(now) {
            if hedge {
                self.counters.hedges += 1;
            } else {
                self.counters.retries += 1;
            }
            true
        } else {
            self.counters.retries_denied_by_budget += 1;
            false
        }
    }

    /// Records an attempt's outcome on region `i` and says what to do with it.
    /// `jitter` is a random number in `0.0..1.0` for the ejection time.
    pub fn record(
        &mut self,
        i: usize,
        outcome: Outcome,
        latency_ms: f64,
        now: Millis,
        jitter: f64,
    ) -> Verdict {
        let settings = &self.config.settings;
        if let Outcome::Answered { region_status, .. } = outcome {
            if let Some(s) = region_status {
                self.health[i].record_region_status(s, now);
            }
            self.overload[i].record_answer(now, outcome.refused_for_load(), settings);
        }
        if outcome.is_failure() {
            let others_in_service = (0..self.health.len())
                .filter(|&j| j != i && !self.health[j].is_ejected() && !self.health[j].is_drained())
                .count();
            if self.health[i].record_failure(
                latency_ms,
                now,
                others_in_service > 0,
                jitter,
                settings,
            ) {
                self.counters.ejections += 1;
            }
        } else {
            self.health[i].record_success(latency_ms, now, settings);
        }
        let h = &self.health[i];
        outcome.verdict(h.is_drained() || h.is_ejected())
    }

    /// The signed affinity token a write served by region `i` earns (`None` without a
    /// signing secret).
    pub fn affinity_token_for_write(&self, i: usize, now: Millis) -> Option<String> {
        let key = self.config.affinity_key.as_ref()?;
        let affinity = Affinity {
            region: self.config.regions.get(i)?.name.clone(),
            expires_ms: now + self.config.settings.affinity_window_ms,
        };
        Some(affinity.token(key))
    }

    /// Counts a request that went to the fallback origin.
    pub fn on_fallback(&mut self) {
        self.counters.fallbacks += 1;
    }

    /// Counts a request answered 503 by the edge itself.
    pub fn on_unavailable(&mut self) {
        self.counters.unavailable += 1;
    }

    /// True when the shared probe results should be read again.
    pub fn probes_due(&self, now: Millis) -> bool {
        self.probes_read_at
            .is_none_or(|at| now.saturating_sub(at) >= self.config.settings.probe_refresh_ms)
    }

    /// Claims the next refresh of the shared probe results, so concurrent requests start one
    /// read, not many (see [`ProbeRefresh`]).
    pub fn claim_probe_refresh(&mut self, now: Millis) -> ProbeRefresh {
        let first = self.probes_read_at.is_none();
        if !self.probes_due(now) {
            return ProbeRefresh::NotDue;
        }
        self.probes_read_at = Some(now);
        if first {
            ProbeRefresh::First
        } else {
            ProbeRefresh::Background
        }
    }

    /// Applies shared probe results (unknown region names are ignored).
    pub fn apply_probes(&mut self, report: &ProbeReport, now: Millis) {
        self.probes_read_at = Some(now);
        for (i, region) in self.config.regions.iter().enumerate() {
            if let Some(probe) = report.regions.get(&region.name) {
                self.health[i].record_probe(*probe, now, &self.config.settings);
            }
        }
    }

    /// The status report.
    pub fn status(&self, now: Millis) -> StatusReport {
        let settings = &self.config.settings;
        StatusReport {
            now_ms: now,
            regions: self
                .config
                .regions
                .iter()
                .zip(&self.health)
                .map(|(r, h)| RegionStatus {
                    name: r.name.clone(),
                    state: h.availability(now, settings),
                    consecutive_failures: h.consecutive_failures(),
                    ewma_latency_ms: h.latency_ms(),
                    last_probe: h.last_probe(),
                })
                .collect(),
            counters: self.counters.clone(),
            retry_budget: self.budget.balance(),
            fallback: self.config.fallback_origin.is_some(),
        }
    }
}
