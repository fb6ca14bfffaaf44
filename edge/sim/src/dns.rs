//! DNS failover without the edge: Route 53 latency records with health checks, and the
//! resolvers between it and the clients.
//!
//! - Checkers: `checkers` of them, each checking every region every `check_interval_s` on its
//!   own phase; one checker's view of a region flips after `failure_threshold` results in a row
//!   the other way. A region is healthy while more than `healthy_above` of the checkers say so.
//! - Answers: each population gets the healthy region with the shortest round trip from its
//!   centre; when none is healthy, Route 53 answers as if all were (the nearest).
//! - Resolvers: most honour the TTL; `ttl_extending_share` hold an answer longer (up to
//!   `extended_ttl_max_s`), of which `stale_share` (of all) hold it `stale_hold_s`. Each client
//!   asks one resolver; caches start at random points of their lifetime.

use crate::region::{Micros, Region};
use crate::rng::Rng;
use crate::world::{CLIENTS_PER_POPULATION, World, millis, one_way_us, secs};
use edge::core::geo::Coordinates;

/// One checker's view of one region.
#[derive(Debug, Clone, Copy)]
struct View {
    healthy: bool,
    /// Results in a row that disagree with `healthy`.
    against: u32,
}

/// How long a resolver keeps an answer.
#[derive(Debug, Clone, Copy)]
enum Hold {
    Ttl,
    Extended,
    Stale,
}

#[derive(Debug, Clone, Copy)]
struct Resolver {
    hold: Hold,
    region: usize,
    expires_us: Micros,
}

/// Route 53 and the resolvers, during one run.
#[derive(Debug, Clone)]
pub struct Dns {
    /// `views[checker][region]`.
    views: Vec<Vec<View>>,
    /// Each checker's first check.
    pub phases_us: Vec<Micros>,
    /// Each checker's round trip to each region (checkers stand at the populations' centres,
    /// in turn).
    rtt_ms: Vec<Vec<f64>>,
    healthy: Vec<bool>,
    /// Current answer per population.
    answers: Vec<usize>,
    /// `resolvers[population][n]`.
    resolvers: Vec<Vec<Resolver>>,
    ttl_us: Micros,
    extended_max_us: Micros,
    stale_us: Micros,
    interval_us: Micros,
    threshold: u32,
    healthy_above: f64,
    timeout_ms: f64,
}

impl Dns {
    pub fn new(world: &World, rng: &mut Rng) -> Self {
        let spec = world.dns();
        let n_regions = world.scenario.regions.len();
        let interval_us = secs(spec.check_interval_s);
        let checkers = spec.checkers as usize;
        let centres: Vec<Coordinates> = world
            .scenario
            .clients
            .iter()
            .map(|p| Coordinates {
                lat: p.lat,
                lon: p.lon,
            })
            .collect();
        let rtt_ms = (0..checkers)
            .map(|c| {
                let at = centres[c % centres.len()];
                world
                    .scenario
                    .regions
                    .iter()
                    .map(|r| {
                        let region = Coordinates {
                            lat: r.lat,
                            lon: r.lon,
                        };
                        2.0 * one_way_us(&world.scenario, at, region) as f64 / 1000.0
                    })
                    .collect()
            })
            .collect();
        let answers: Vec<usize> = world
            .populations
            .iter()
            .map(|p| p.region_order[0])
            .collect();
        let (ttl_us, extended_max_us, stale_us) = (
            secs(spec.ttl_s),
            secs(spec.extended_ttl_max_s),
            secs(spec.stale_hold_s),
        );
        let resolvers = world
            .populations
            .iter()
            .enumerate()
            .map(|(p, _)| {
                (0..spec.resolvers_per_population)
                    .map(|_| {
                        let u = rng.unit();
                        let hold = if u < spec.stale_share {
                            Hold::Stale
                        } else if u < spec.ttl_extending_share {
                            Hold::Extended
                        } else {
                            Hold::Ttl
                        };
                        let mut r = Resolver {
                            hold,
                            region: answers[p],
                            expires_us: 0,
                        };
                        let life = Self::hold_us(hold, ttl_us, extended_max_us, stale_us, rng);
                        r.expires_us = (life as f64 * rng.unit()) as Micros;
                        r
                    })
                    .collect()
            })
            .collect();
        Self {
            views: vec![
                vec![
                    View {
                        healthy: true,
                        against: 0
                    };
                    n_regions
                ];
                checkers
            ],
            phases_us: (0..checkers)
                .map(|_| (interval_us as f64 * rng.unit()) as Micros)
                .collect(),
            rtt_ms,
            healthy: vec![true; n_regions],
            answers,
            resolvers,
            ttl_us,
            extended_max_us,
            stale_us,
            interval_us,
            threshold: spec.failure_threshold,
            healthy_above: spec.healthy_above,
            timeout_ms: spec.check_timeout_ms,
        }
    }

    fn hold_us(
        hold: Hold,
        ttl: Micros,
        extended_max: Micros,
        stale: Micros,
        rng: &mut Rng,
    ) -> Micros {
        match hold {
            Hold::Ttl => ttl,
            Hold::Extended => rng.between(ttl as f64, extended_max as f64) as Micros,
            Hold::Stale => stale,
        }
    }

    pub fn interval_us(&self) -> Micros {
        self.interval_us
    }

    /// Checker `c` checks every region at `now`; the answers follow.
    pub fn check(
        &mut self,
        c: usize,
        now: Micros,
        regions: &mut [Region],
        world: &World,
        rng: &mut Rng,
    ) {
        for (r, region) in regions.iter_mut().enumerate() {
            let seen = region.check(now, rng, self.rtt_ms[c][r], self.timeout_ms);
            let ok = seen.status.is_some_and(|s| (200..400).contains(&s));
            let view = &mut self.views[c][r];
            if ok == view.healthy {
                view.against = 0;
            } else {
                view.against += 1;
                if view.against >= self.threshold {
                    view.healthy = ok;
                    view.against = 0;
                }
            }
        }
        let checkers = self.views.len() as f64;
        for r in 0..regions.len() {
            let agree = self.views.iter().filter(|v| v[r].healthy).count() as f64;
            self.healthy[r] = agree / checkers > self.healthy_above;
        }
        for (p, population) in world.populations.iter().enumerate() {
            self.answers[p] = population
                .region_order
                .iter()
                .copied()
                .find(|&r| self.healthy[r])
                .unwrap_or(population.region_order[0]);
        }
    }

    /// The region client `client` of population `p` reaches at `now`.
    pub fn resolve(&mut self, p: usize, client: usize, now: Micros, rng: &mut Rng) -> usize {
        let n = self.resolvers[p].len();
        let index = client * n / CLIENTS_PER_POPULATION;
        let (ttl, extended_max, stale) = (self.ttl_us, self.extended_max_us, self.stale_us);
        let answer = self.answers[p];
        let r = &mut self.resolvers[p][index.min(n - 1)];
        if now >= r.expires_us {
            r.region = answer;
            r.expires_us = now + Self::hold_us(r.hold, ttl, extended_max, stale, rng);
        }
        r.region
    }
}

/// The one-way time of a client's try to a region, in addition to its access time.
pub fn direct_one_way_us(world: &World, location: usize, region: usize) -> Micros {
    world.locations[location].to_region_us[region]
}

/// A client with no answer gives up after its timeout.
pub fn client_timeout_us(world: &World) -> Micros {
    millis(world.client_retry().timeout_ms)
}
