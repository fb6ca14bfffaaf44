//! From a run's record to the figures: `summary.json`'s eight per policy, and the longer
//! `details.json`. Every figure is defined here, in one place; docs/scale.md repeats the
//! definitions.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::engine::Policy;
use crate::metrics::{EdgeCounters, Recorder};
use crate::region::{Region, SECOND};
use crate::world::World;

/// Traffic has shifted once the faulted regions' share of first attempts is at most this
/// fraction of what it was before the trigger (most of it has moved: a gray failure's region
/// keeps a fifth of its share with the edge, as DNS keeps the resolvers that extend TTLs, and a
/// lower bar would turn on noise)...
pub const SHIFTED_SHARE: f64 = 0.5;
/// ... for this many seconds in a row.
pub const SHIFT_HOLD_S: usize = 5;
/// Seconds before the trigger that are the baseline, and at the end of the run that must look
/// like it again.
pub const WINDOW_S: usize = 60;
/// Recovered: the last window's error rate is at most twice the baseline's, or this.
pub const RECOVERED_ERROR_RATE: f64 = 0.001;
/// Recovered: the faulted regions have at least this fraction of their baseline share back.
pub const RECOVERED_SHARE: f64 = 0.5;

/// The figures `summary.json` gives for one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySummary {
    pub requests: u64,
    pub client_error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub retry_amplification: f64,
    pub time_to_shift_s: Option<f64>,
    pub survivor_peak_load_ratio: f64,
    pub recovered: bool,
}

/// More figures per policy, for docs/scale.md and for judging the goals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyDetails {
    /// Client error rate of the requests that arrived while a fault was on.
    pub trigger_error_rate: f64,
    /// Attempts sent to regions per client request, while a fault was on.
    pub trigger_amplification: f64,
    /// Error rate in the minute before the trigger, and in the run's last minute.
    pub baseline_error_rate: f64,
    pub final_error_rate: f64,
    /// Seconds after the trigger ends until the faulted regions have half their baseline share
    /// of first attempts back (`None`: never, or no faulted region).
    pub time_to_return_s: Option<f64>,
    /// `survivor_peak_load_ratio` without the edge's own retries and hedges.
    pub survivor_peak_without_edge_retries: f64,
    /// Seconds (summed over survivors) a survivor's load was above its capacity.
    pub survivor_seconds_over_capacity: u64,
    /// Of those, seconds it would have been within capacity without the edge's retries.
    pub survivor_seconds_over_by_edge_retries: u64,
    /// The edge's retries and hedges a region's limit refused (429 from API Gateway, 503 from
    /// Lambda's concurrency or DynamoDB's throughput), in any region.
    pub edge_retries_over_limit: u64,
    pub client_retries: u64,
    pub attempts: u64,
    pub edge_retries: u64,
    pub edge_hedges: u64,
    pub edge_retries_denied_by_budget: u64,
    pub edge_ejections: u64,
    pub edge_least_bad_plans: u64,
    pub edge_unavailable: u64,
    /// First attempts the edge did not send to a region refusing work for load (429), and
    /// requests it answered `regions_overloaded` because every region of the plan shed them.
    pub edge_shed: u64,
    pub edge_overloaded: u64,
    /// Per client population, the share of its requests' first attempts each region got
    /// (regions in the scenario's order), over the whole run.
    pub first_attempts_by_population: Vec<(String, Vec<f64>)>,
}

/// Rounds to `places` decimals (the files stay short and stable).
pub fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    let r = (x * scale).round() / scale;
    if r == 0.0 { 0.0 } else { r }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Per-second series the summary and the chart use.
pub struct Series<'a> {
    rec: &'a Recorder,
    affected: Vec<usize>,
    survivors: Vec<usize>,
    /// `[second × regions + region]`: the region's capacity in that second (`None`: down).
    capacity: Vec<Option<f64>>,
    pub duration_s: usize,
}

impl<'a> Series<'a> {
    pub fn new(world: &World, rec: &'a Recorder) -> Self {
        let regions: Vec<Region> = world.regions();
        let capacity = (0..rec.seconds)
            .flat_map(|s| {
                let middle = s as u64 * SECOND + SECOND / 2;
                regions.iter().map(move |r| r.capacity_rps_at(middle))
            })
            .collect();
        Self {
            rec,
            affected: world.affected_regions(),
            survivors: world.survivors(),
            capacity,
            duration_s: (world.duration_us / SECOND) as usize,
        }
    }

    fn sum(&self, v: &[u64], from: usize, until: usize) -> u64 {
        v[from.min(v.len())..until.min(v.len())].iter().sum()
    }

    /// Client error rate of the requests that arrived in `[from, until)` seconds.
    pub fn error_rate(&self, from: usize, until: usize) -> f64 {
        ratio(
            self.sum(&self.rec.errors, from, until),
            self.sum(&self.rec.arrivals, from, until),
        )
    }

    pub fn amplification(&self, from: usize, until: usize) -> f64 {
        ratio(
            self.sum(&self.rec.attempts, from, until),
            self.sum(&self.rec.arrivals, from, until),
        )
    }

    /// The faulted regions' share of first attempts in `[from, until)`; `None` without
    /// first attempts or without a faulted region.
    pub fn affected_share(&self, from: usize, until: usize) -> Option<f64> {
        if self.affected.is_empty() {
            return None;
        }
        let n = self.rec.regions;
        let (mut mine, mut all) = (0, 0);
        for s in from..until.min(self.rec.seconds) {
            for r in 0..n {
                let v = self.rec.first[s * n + r];
                all += v;
                if self.affected.contains(&r) {
                    mine += v;
                }
            }
        }
        (all > 0).then(|| mine as f64 / all as f64)
    }

    /// The busiest survivor's load over its capacity in second `s` (with or without the
    /// edge's retries); a region down that second is not counted.
    pub fn survivor_load(&self, s: usize, edge_retries: bool) -> f64 {
        let n = self.rec.regions;
        self.survivors
            .iter()
            .filter_map(|&r| {
                let i = s * n + r;
                let load = if edge_retries {
                    self.rec.load[i]
                } else {
                    self.rec.load[i] - self.rec.load_edge_retries[i]
                };
                self.capacity[i].map(|c| load as f64 / c)
            })
            .fold(0.0, f64::max)
    }

    fn over_capacity(&self) -> (u64, u64) {
        let n = self.rec.regions;
        let (mut over, mut by_retries) = (0, 0);
        for s in 0..self.duration_s.min(self.rec.seconds) {
            for &r in &self.survivors {
                let i = s * n + r;
                let Some(capacity) = self.capacity[i] else {
                    continue;
                };
                let all = self.rec.load[i] as f64;
                let first = (self.rec.load[i] - self.rec.load_edge_retries[i]) as f64;
                if all > capacity {
                    over += 1;
                    if first <= capacity {
                        by_retries += 1;
                    }
                }
            }
        }
        (over, by_retries)
    }

    /// Each population's first attempts per region over the run, as shares.
    pub fn first_attempt_shares(&self) -> Vec<Vec<f64>> {
        let n = self.rec.regions;
        self.rec
            .first_by_population
            .chunks(n)
            .map(|row| {
                let total: u64 = row.iter().sum();
                row.iter().map(|&v| round(ratio(v, total), 4)).collect()
            })
            .collect()
    }
}

/// The trigger in whole seconds: the first fault's first second and the last fault's end.
fn trigger_seconds(world: &World) -> Option<(usize, usize, f64)> {
    let (from, until) = world.trigger()?;
    Some((
        (from / SECOND) as usize,
        until.div_ceil(SECOND) as usize,
        from as f64 / SECOND as f64,
    ))
}

fn time_to_shift(series: &Series<'_>, world: &World) -> Option<f64> {
    let (from, until, from_exact) = trigger_seconds(world)?;
    let baseline = series.affected_share(from.saturating_sub(WINDOW_S), from)?;
    if baseline <= 0.0 {
        return None;
    }
    let shifted = |s: usize| {
        series
            .affected_share(s, s + 1)
            .is_none_or(|share| share <= SHIFTED_SHARE * baseline)
    };
    (from..until).find_map(|s| {
        let hold_until = (s + SHIFT_HOLD_S).min(until);
        (s..hold_until)
            .all(shifted)
            .then(|| round((s + 1) as f64 - from_exact, 1))
    })
}

/// Seconds after the last fault ends until the faulted regions have at least
/// `RECOVERED_SHARE` of their baseline share of first attempts back (for `SHIFT_HOLD_S`
/// seconds in a row); `None` if never within the run, or without a faulted region.
fn time_to_return(series: &Series<'_>, world: &World) -> Option<f64> {
    let (from, _, _) = trigger_seconds(world)?;
    let (_, until_us) = world.trigger()?;
    let until = (until_us / SECOND) as usize;
    let baseline = series.affected_share(from.saturating_sub(WINDOW_S), from)?;
    if baseline <= 0.0 {
        return None;
    }
    let back = |s: usize| {
        series
            .affected_share(s, s + 1)
            .is_some_and(|share| share >= RECOVERED_SHARE * baseline)
    };
    let end = series.duration_s;
    (until..end).find_map(|s| {
        (s + SHIFT_HOLD_S <= end && (s..s + SHIFT_HOLD_S).all(back))
            .then(|| round((s + 1) as f64 - until_us as f64 / SECOND as f64, 1))
    })
}

fn recovered(series: &Series<'_>, world: &World) -> bool {
    let Some((from, until, _)) = trigger_seconds(world) else {
        return true;
    };
    let end = series.duration_s;
    if end < until + WINDOW_S {
        return false;
    }
    let last = end - WINDOW_S;
    let base_from = from.saturating_sub(WINDOW_S);
    let baseline_errors = if from > base_from {
        series.error_rate(base_from, from)
    } else {
        0.0
    };
    let errors_ok =
        series.error_rate(last, end) <= (2.0 * baseline_errors).max(RECOVERED_ERROR_RATE);
    let share_ok = match (
        series.affected_share(base_from, from),
        series.affected_share(last, end),
    ) {
        (Some(before), Some(after)) => after >= RECOVERED_SHARE * before,
        (Some(before), None) => before <= 0.0,
        (None, _) => true,
    };
    errors_ok && share_ok
}

/// The summary and details of one policy's run.
pub fn summarise(world: &World, rec: &Recorder) -> (PolicySummary, PolicyDetails) {
    let series = Series::new(world, rec);
    let quantile_ms = |q: f64| {
        rec.latency_us
            .quantile(q)
            .map_or(0.0, |us| round(us as f64 / 1000.0, 1))
    };
    let peak = |with_retries: bool| {
        (0..series.duration_s.min(rec.seconds))
            .map(|s| series.survivor_load(s, with_retries))
            .fold(0.0, f64::max)
    };
    let summary = PolicySummary {
        requests: rec.requests,
        client_error_rate: round(ratio(rec.failed, rec.requests), 7),
        p50_ms: quantile_ms(0.5),
        p99_ms: quantile_ms(0.99),
        retry_amplification: round(ratio(rec.attempts_total, rec.requests), 4),
        time_to_shift_s: time_to_shift(&series, world),
        survivor_peak_load_ratio: round(peak(true), 3),
        recovered: recovered(&series, world),
    };
    let (trigger_error_rate, trigger_amplification, baseline_error_rate) =
        match trigger_seconds(world) {
            Some((from, until, _)) => (
                series.error_rate(from, until),
                series.amplification(from, until),
                series.error_rate(from.saturating_sub(WINDOW_S), from),
            ),
            None => (0.0, 0.0, 0.0),
        };
    let end = series.duration_s;
    let (over, by_retries) = series.over_capacity();
    let EdgeCounters {
        retries,
        hedges,
        retries_denied_by_budget,
        ejections,
        least_bad,
        unavailable,
        shed,
        overloaded,
        ..
    } = rec.edge;
    let details = PolicyDetails {
        trigger_error_rate: round(trigger_error_rate, 7),
        trigger_amplification: round(trigger_amplification, 4),
        baseline_error_rate: round(baseline_error_rate, 7),
        final_error_rate: round(series.error_rate(end.saturating_sub(WINDOW_S), end), 7),
        time_to_return_s: time_to_return(&series, world),
        survivor_peak_without_edge_retries: round(peak(false), 3),
        survivor_seconds_over_capacity: over,
        survivor_seconds_over_by_edge_retries: by_retries,
        client_retries: rec.client_retries,
        edge_retries_over_limit: rec.edge_retries_over_limit,
        attempts: rec.attempts_total,
        edge_retries: retries,
        edge_hedges: hedges,
        edge_retries_denied_by_budget: retries_denied_by_budget,
        edge_ejections: ejections,
        edge_least_bad_plans: least_bad,
        edge_unavailable: unavailable,
        edge_shed: shed,
        edge_overloaded: overloaded,
        first_attempts_by_population: world
            .scenario
            .clients
            .iter()
            .map(|p| p.name.clone())
            .zip(series.first_attempt_shares())
            .collect(),
    };
    (summary, details)
}

/// Policies by name, in the order they ran (a JSON object whose keys keep that order).
pub struct ByPolicy<T>(pub Vec<(Policy, T)>);

impl<T: Serialize> Serialize for ByPolicy<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (policy, value) in &self.0 {
            map.serialize_entry(policy.name(), value)?;
        }
        map.end()
    }
}

/// `summary.json`: exactly `scenario`, `seed` and `policies`.
#[derive(Serialize)]
pub struct SummaryFile<'a> {
    pub scenario: &'a str,
    pub seed: u64,
    pub policies: ByPolicy<PolicySummary>,
}

/// `details.json`: the scenario's shape and the longer figures.
#[derive(Serialize)]
pub struct DetailsFile<'a> {
    pub scenario: &'a str,
    pub seed: u64,
    pub regions: usize,
    pub edge_locations: usize,
    pub isolates: usize,
    pub offered_rps: f64,
    pub duration_s: f64,
    pub region_capacity_rps: Vec<(String, f64)>,
    pub survivors: Vec<String>,
    pub faulted: Vec<String>,
    pub policies: ByPolicy<PolicyDetails>,
}

/// Formats a rate as a percentage with enough digits to tell 0.01 % from 0.
fn percent(rate: f64) -> String {
    if rate == 0.0 {
        "0".to_owned()
    } else if rate < 0.0001 {
        format!("{:.4} %", rate * 100.0)
    } else {
        format!("{:.2} %", rate * 100.0)
    }
}

/// `table.md`: one Markdown row per policy, the summary's figures and the trigger window's.
pub fn markdown(
    scenario: &str,
    summaries: &ByPolicy<PolicySummary>,
    details: &ByPolicy<PolicyDetails>,
) -> String {
    let mut out = format!(
        "| {scenario} | requests | client errors (during trigger) | p50 / p99 ms | attempts per request (during trigger) | time to shift | survivor peak load (without edge retries) | recovered |\n|---|---|---|---|---|---|---|---|\n"
    );
    for ((policy, s), (_, d)) in summaries.0.iter().zip(&details.0) {
        let shift = s
            .time_to_shift_s
            .map_or_else(|| "never".to_owned(), |t| format!("{t} s"));
        out.push_str(&format!(
            "| {} | {} | {} ({}) | {} / {} | {:.3} ({:.3}) | {} | {:.2} ({:.2}) | {} |\n",
            policy.name(),
            s.requests,
            percent(s.client_error_rate),
            percent(d.trigger_error_rate),
            s.p50_ms,
            s.p99_ms,
            s.retry_amplification,
            d.trigger_amplification,
            shift,
            s.survivor_peak_load_ratio,
            d.survivor_peak_without_edge_retries,
            if s.recovered { "yes" } else { "no" },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::Recorder;
    use crate::region::SECOND;
    use crate::scenario::Scenario;

    /// Two regions; region 0 faulted from 60 s to 120 s of a 240 s run.
    fn world() -> World {
        let text = r#"{
            "name": "t", "duration_s": 240, "drain_s": 0,
            "regions": [{"name": "a", "lat": 0, "lon": 0, "latency_ms": {"median": 20, "p99": 80}},
                        {"name": "b", "lat": 0, "lon": 10, "latency_ms": {"median": 20, "p99": 80}}],
            "clients": [{"name": "P", "lat": 0, "lon": 5, "rate_rps": 100}],
            "edge": {"locations": 1},
            "faults": [{"region": "a", "from_s": 60, "until_s": 120,
                        "effect": {"kind": "outage", "failure": "connect_error"}}]
        }"#;
        let scenario = Scenario::parse(text).unwrap();
        World::new(&scenario, 1).unwrap()
    }

    /// 100 requests a second; first attempts to region 0 each second as `to_a(second)` says
    /// (out of 100), errors as `errors(second)`.
    fn record(world: &World, to_a: impl Fn(u64) -> u64, errors: impl Fn(u64) -> u64) -> Recorder {
        let mut rec = Recorder::new(world.horizon_us, 2, 1);
        for s in 0..240u64 {
            let at = s * SECOND;
            for n in 0..100 {
                rec.arrived(at);
                rec.sent(at, usize::from(n >= to_a(s)), Some(0));
                rec.reached(at, usize::from(n >= to_a(s)), false);
                rec.finished(at, at + 50_000, n >= errors(s));
            }
        }
        rec
    }

    #[test]
    fn shift_is_the_first_of_five_seconds_at_a_tenth_of_the_baseline_share() {
        let world = world();
        // Half the first attempts went to region 0; from 63 s, 4 %; back at 150 s.
        let rec = record(
            &world,
            |s| match s {
                63..150 => 4,
                _ => 50,
            },
            |_| 0,
        );
        let (summary, details) = summarise(&world, &rec);
        assert_eq!(summary.time_to_shift_s, Some(4.0));
        assert_eq!(details.time_to_return_s, Some(31.0));
        assert!(summary.recovered);
        assert_eq!(summary.retry_amplification, 1.0);
        assert_eq!(summary.client_error_rate, 0.0);
        // Region 1 took 96 of 100 a second on a capacity of 10,000.
        assert_eq!(summary.survivor_peak_load_ratio, 0.01);
        // A dip shorter than five seconds is not a shift.
        let blip = record(
            &world,
            |s| match s {
                63..65 | 80..150 => 4,
                _ => 50,
            },
            |_| 0,
        );
        assert_eq!(summarise(&world, &blip).0.time_to_shift_s, Some(21.0));
        // Most of the traffic moving is a shift; a third of it is not.
        let partial = |left: u64| {
            let rec = record(
                &world,
                |s| if (70..150).contains(&s) { left } else { 50 },
                |_| 0,
            );
            summarise(&world, &rec).0.time_to_shift_s
        };
        assert_eq!(partial(20), Some(11.0));
        assert_eq!(partial(34), None);
    }

    #[test]
    fn not_recovered_while_errors_or_the_share_stay_away() {
        let world = world();
        let errors_stay = record(&world, |_| 50, |s| u64::from(s >= 60) * 3);
        let (summary, details) = summarise(&world, &errors_stay);
        assert!(!summary.recovered);
        assert_eq!(summary.time_to_shift_s, None);
        assert_eq!(details.trigger_error_rate, 0.03);
        let share_stays_away = record(&world, |s| if s >= 63 { 4 } else { 50 }, |_| 0);
        let (summary, details) = summarise(&world, &share_stays_away);
        assert!(!summary.recovered);
        assert_eq!(details.time_to_return_s, None);
    }

    #[test]
    fn rounding_is_stable_and_has_no_negative_zero() {
        assert_eq!(round(0.123_456_789, 4), 0.1235);
        assert_eq!(round(-0.000_01, 2).to_string(), "0");
        assert_eq!(round(2.0, 3), 2.0);
    }
}
