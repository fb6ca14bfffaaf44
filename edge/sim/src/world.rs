//! The fixed part of a run, built once from a scenario and a seed: where the edge locations
//! are, which clients use which, every round trip, each location's KV delay, and the edge's
//! configuration (the Worker's own vars, parsed by the core's own `EdgeConfig::from_vars`).

use edge::core::config::EdgeConfig;
use edge::core::geo::{self, Coordinates};

use crate::region::{MILLI, Micros, Region, SECOND, Window};
use crate::rng::Rng;
use crate::scenario::{ClientRetry, DnsSpec, Effect, Scenario};

/// An edge location.
#[derive(Debug, Clone)]
pub struct Location {
    pub population: usize,
    pub coordinates: Coordinates,
    /// How long a KV write takes to be visible here.
    pub kv_delay_us: Micros,
    /// One-way time to each region.
    pub to_region_us: Vec<Micros>,
}

/// A client population.
#[derive(Debug, Clone)]
pub struct Population {
    pub rate_rps: f64,
    /// Half the access round trip: client to edge location (or to its ISP's exit).
    pub access_one_way_us: Micros,
    /// Its edge locations (indexes into `World::locations`).
    pub locations: Vec<usize>,
    /// Client keys (the Worker's client address and location), one per simulated client.
    pub client_keys: Vec<String>,
    /// Regions by round trip from the population's centre: what Route 53 latency records answer.
    pub region_order: Vec<usize>,
}

/// Simulated clients per population (each a key for the edge's near-equal-region hashing and a
/// resolver of its own).
pub const CLIENTS_PER_POPULATION: usize = 1024;

/// A fault, resolved to region indexes.
#[derive(Debug, Clone)]
pub struct FaultWindow {
    /// `None`: every region.
    pub region: Option<usize>,
    pub from_us: Micros,
    pub until_us: Micros,
}

/// The edge's `ROUTING` var for the `edge_no_budget` policy: the largest retry budget the core
/// accepts (10 retries per request, 10,000 per second, 100,000 held), which no simulated
/// isolate can empty.
pub const NO_BUDGET: [(&str, f64); 2] = [("retry_ratio", 10.0), ("retry_floor_per_s", 10_000.0)];

/// Everything fixed for a run.
#[derive(Debug, Clone)]
pub struct World {
    pub scenario: Scenario,
    pub locations: Vec<Location>,
    pub populations: Vec<Population>,
    pub faults: Vec<FaultWindow>,
    /// Per region, the fault windows that apply to it.
    pub region_faults: Vec<Vec<Window>>,
    pub edge: EdgeConfig,
    pub edge_no_budget: EdgeConfig,
    /// Cumulative method shares: GET below `[0]`, PUT below `[1]`, POST above.
    pub mix: [f64; 2],
    pub duration_us: Micros,
    pub horizon_us: Micros,
}

/// A configuration problem.
#[derive(Debug)]
pub struct WorldError(pub String);

impl std::fmt::Display for WorldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn secs(s: f64) -> Micros {
    (s.max(0.0) * SECOND as f64).round() as Micros
}

pub fn millis(ms: f64) -> Micros {
    (ms.max(0.0) * MILLI as f64).round() as Micros
}

/// One-way time between two points: half of a fixed part plus the stretched fibre round trip.
pub fn one_way_us(scenario: &Scenario, a: Coordinates, b: Coordinates) -> Micros {
    let n = &scenario.network;
    let rtt_ms = n.base_rtt_ms + n.path_stretch * geo::rtt_ms(geo::distance_km(a, b));
    millis(rtt_ms / 2.0)
}

/// Shares `total` out in proportion to `weights`, at least one each (largest remainders).
fn share_out(total: usize, weights: &[f64]) -> Vec<usize> {
    let n = weights.len();
    let sum: f64 = weights.iter().sum();
    let spare = total.saturating_sub(n);
    let exact: Vec<f64> = weights
        .iter()
        .map(|w| spare as f64 * w / sum.max(f64::MIN_POSITIVE))
        .collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| 1 + e.floor() as usize).collect();
    let mut left = total.saturating_sub(counts.iter().sum());
    let mut by_remainder: Vec<usize> = (0..n).collect();
    by_remainder.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for &i in by_remainder.iter().cycle().take(n * 2) {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

fn edge_config(scenario: &Scenario, overrides: &[(&str, f64)]) -> Result<EdgeConfig, WorldError> {
    let regions: Vec<serde_json::Value> = scenario
        .regions
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "origin": format!("https://{}.api.example", r.name),
                "lat": r.lat, "lon": r.lon, "weight": r.weight,
            })
        })
        .collect();
    let mut routing = scenario.edge.routing.clone();
    for (field, value) in overrides {
        routing.insert((*field).to_owned(), serde_json::json!(value));
    }
    let regions = serde_json::Value::Array(regions).to_string();
    let routing = serde_json::Value::Object(routing).to_string();
    EdgeConfig::from_vars(|name| match name {
        "REGIONS" => Some(regions.clone()),
        "ROUTING" => Some(routing.clone()),
        _ => None,
    })
    .map_err(|e| WorldError(format!("edge: {e}")))
}

impl World {
    /// Every region of the scenario with its faults, as a run starts them.
    pub fn regions(&self) -> Vec<Region> {
        self.scenario
            .regions
            .iter()
            .zip(&self.region_faults)
            .map(|(spec, faults)| Region::new(spec.latency_ms, &spec.capacity, faults.clone()))
            .collect()
    }

    pub fn new(scenario: &Scenario, seed: u64) -> Result<Self, WorldError> {
        let mut rng = Rng::stream(seed, "world");
        let regions: Vec<Coordinates> = scenario
            .regions
            .iter()
            .map(|r| Coordinates {
                lat: r.lat,
                lon: r.lon,
            })
            .collect();
        let rates: Vec<f64> = scenario.clients.iter().map(|p| p.rate_rps).collect();
        let counts = share_out(scenario.edge.locations, &rates);
        let (kv_min, kv_max) = (scenario.edge.kv_delay_s[0], scenario.edge.kv_delay_s[1]);
        let mut locations = Vec::new();
        let mut populations = Vec::new();
        for (p, spec) in scenario.clients.iter().enumerate() {
            let mut mine = Vec::new();
            for _ in 0..counts[p] {
                let lat = (spec.lat + rng.between(-1.0, 1.0) * spec.spread_deg).clamp(-89.0, 89.0);
                let stretch = lat.to_radians().cos().max(0.2);
                let mut lon = spec.lon + rng.between(-1.0, 1.0) * spec.spread_deg / stretch;
                if lon > 180.0 {
                    lon -= 360.0;
                } else if lon < -180.0 {
                    lon += 360.0;
                }
                let coordinates = Coordinates { lat, lon };
                let kv_delay_us = secs(rng.between(kv_min, kv_max));
                mine.push(locations.len());
                locations.push(Location {
                    population: p,
                    coordinates,
                    kv_delay_us,
                    to_region_us: regions
                        .iter()
                        .map(|&r| one_way_us(scenario, coordinates, r))
                        .collect(),
                });
            }
            let centre = Coordinates {
                lat: spec.lat,
                lon: spec.lon,
            };
            let mut region_order: Vec<usize> = (0..regions.len()).collect();
            region_order.sort_by_key(|&r| (one_way_us(scenario, centre, regions[r]), r));
            populations.push(Population {
                rate_rps: spec.rate_rps,
                access_one_way_us: millis(spec.access_ms / 2.0),
                locations: mine,
                client_keys: (0..CLIENTS_PER_POPULATION)
                    .map(|c| format!("{}-client-{c}", spec.name))
                    .collect(),
                region_order,
            });
        }
        // The cron's own location sees its writes at once.
        if let Some(l) = locations.get_mut(scenario.edge.probe_location) {
            l.kv_delay_us = 0;
        }
        let index_of = |name: &str| scenario.regions.iter().position(|r| r.name == name);
        let faults: Vec<FaultWindow> = scenario
            .faults
            .iter()
            .map(|f| FaultWindow {
                region: index_of(&f.region),
                from_us: secs(f.from_s),
                until_us: secs(f.until_s),
            })
            .collect();
        let region_faults = (0..regions.len())
            .map(|r| {
                scenario
                    .faults
                    .iter()
                    .zip(&faults)
                    .filter(|(_, w)| w.region.is_none_or(|i| i == r))
                    .map(|(f, w)| Window {
                        from_us: w.from_us,
                        until_us: w.until_us,
                        effect: f.effect.clone(),
                    })
                    .collect()
            })
            .collect();
        let m = &scenario.requests;
        let total = m.get + m.put + m.post;
        Ok(Self {
            edge: edge_config(scenario, &[])?,
            edge_no_budget: edge_config(scenario, &NO_BUDGET)?,
            locations,
            populations,
            faults,
            region_faults,
            mix: [m.get / total, (m.get + m.put) / total],
            duration_us: secs(scenario.duration_s),
            horizon_us: secs(scenario.horizon_s()),
            scenario: scenario.clone(),
        })
    }

    pub fn dns(&self) -> &DnsSpec {
        &self.scenario.dns
    }

    pub fn client_retry(&self) -> &ClientRetry {
        &self.scenario.client_retry
    }

    /// Regions named by a fault (not `*`): the ones the trigger hits.
    pub fn affected_regions(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self.faults.iter().filter_map(|f| f.region).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Regions no fault names: the survivors (every region when the faults hit them all).
    pub fn survivors(&self) -> Vec<usize> {
        let affected = self.affected_regions();
        let all_hit = self.faults.iter().any(|f| f.region.is_none());
        let n = self.scenario.regions.len();
        let rest: Vec<usize> = (0..n).filter(|r| !affected.contains(r)).collect();
        if rest.is_empty() || (all_hit && affected.is_empty()) {
            (0..n).collect()
        } else {
            rest
        }
    }

    /// When the first fault starts and the last one ends.
    pub fn trigger(&self) -> Option<(Micros, Micros)> {
        let from = self.faults.iter().map(|f| f.from_us).min()?;
        let until = self.faults.iter().map(|f| f.until_us).max()?;
        Some((from, until))
    }

    /// Whether any fault changes what a health check sees (everything but gray failures).
    pub fn faults_visible_to_checks(&self) -> bool {
        self.scenario
            .faults
            .iter()
            .any(|f| !matches!(f.effect, Effect::Gray { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_shared_by_rate_at_least_one_each() {
        assert_eq!(share_out(10, &[1.0, 1.0]), [5, 5]);
        assert_eq!(
            share_out(300, &[6.0, 5.0, 3.0, 0.5, 0.5])
                .iter()
                .sum::<usize>(),
            300
        );
        assert_eq!(share_out(3, &[100.0, 0.0, 0.0]), [1, 1, 1]);
        let uneven = share_out(7, &[2.0, 1.0]);
        assert_eq!(uneven.iter().sum::<usize>(), 7);
        assert!(uneven[0] > uneven[1]);
    }
}
