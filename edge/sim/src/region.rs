//! One AWS region as the simulator sees it: a service-time distribution, the three limits that
//! throttle a region taking a failed region's traffic (API Gateway's token bucket, Lambda's
//! concurrency and its ramp, DynamoDB on-demand's "twice the previous peak"), and the faults a
//! scenario injects. It answers each request that reaches it at a simulated instant; it never
//! reads a clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::rng::Rng;
use crate::scenario::{Capacity, Effect, Failure, LatencySpec};

/// Microseconds of simulated time.
pub type Micros = u64;

pub const SECOND: Micros = 1_000_000;
pub const MILLI: Micros = 1_000;

/// How long DynamoDB on-demand takes to make a new peak the base of its "twice the previous
/// peak" (AWS: a new peak may be throttled beyond twice the old one within 30 minutes).
const DYNAMO_PEAK_SETTLES: Micros = 30 * 60 * SECOND;

/// What the AWS SDK's retries of a throttled DynamoDB call add before the function gives up
/// and answers 503.
const DYNAMO_THROTTLE_RETRIES_MS: f64 = 100.0;

/// What a region answers with when a limit refuses a request: quickly.
const REFUSAL_MS: f64 = 1.0;

/// A region's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// An HTTP answer; `region_status` is the function's `x-region-status` (absent when the
    /// function never ran: API Gateway or Lambda refused it); `retry_after_s` its `Retry-After`.
    Status {
        status: u16,
        region_status: Option<u16>,
        retry_after_s: Option<f64>,
    },
    /// The connection was refused or reset.
    ConnectError,
    /// Nothing comes back: the caller's timeout decides.
    Silence,
}

/// The answer, and how long after the request reached the region it leaves it.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub answer: Answer,
    pub service_us: Micros,
    /// A limit refused it (API Gateway's rate, Lambda's concurrency, DynamoDB's throughput):
    /// the request went past what the region can take.
    pub over_limit: bool,
}

/// What a health check (the edge's cron, a Route 53 checker) sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// `None`: no answer within the timeout, or the connection failed.
    pub status: Option<u16>,
    pub latency_ms: f64,
}

/// The region's condition at one instant, all faults combined.
#[derive(Debug, Clone, Copy)]
struct Condition {
    down: Option<Failure>,
    factor: f64,
    extra_ms: f64,
    gray: Option<(f64, u16)>,
    /// What `/health` and `x-region-status` say.
    health: u16,
}

/// A fault window on this region.
#[derive(Debug, Clone)]
pub struct Window {
    pub from_us: Micros,
    pub until_us: Micros,
    pub effect: Effect,
}

/// One region's state during a run.
#[derive(Debug, Clone)]
pub struct Region {
    /// Log-normal parameters of the service time in ms.
    mu: f64,
    sigma: f64,
    capacity: Capacity,
    faults: Vec<Window>,
    api_tokens: f64,
    api_at: Micros,
    /// When each busy execution environment finishes its request.
    busy: BinaryHeap<Reverse<Micros>>,
    warm: u32,
    lambda_limit: u32,
    ramp_window_end: Micros,
    ramp_hit: bool,
    dynamo_second: u64,
    dynamo_count: f64,
    /// (second, served) of the busiest second per minute, for the 30-minute rule.
    dynamo_minutes: Vec<(u64, f64)>,
    dynamo_ceiling: f64,
}

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;

impl Region {
    pub fn new(latency: LatencySpec, capacity: &Capacity, faults: Vec<Window>) -> Self {
        let mu = latency.median.ln();
        let sigma = (latency.p99 / latency.median).ln() / Z99;
        Self {
            mu,
            sigma,
            api_tokens: capacity.api_burst.max(1.0),
            api_at: 0,
            busy: BinaryHeap::new(),
            warm: capacity.lambda_warm,
            lambda_limit: capacity.lambda_initial.min(capacity.lambda_concurrency),
            ramp_window_end: 10 * SECOND,
            ramp_hit: false,
            dynamo_second: 0,
            dynamo_count: 0.0,
            dynamo_minutes: Vec::new(),
            dynamo_ceiling: 2.0 * capacity.dynamo_previous_peak_rps,
            capacity: capacity.clone(),
            faults,
        }
    }

    /// The mean service time in ms, without faults (for the capacity estimate).
    pub fn mean_service_ms(&self) -> f64 {
        (self.mu + self.sigma * self.sigma / 2.0).exp()
    }

    /// Requests per second the region sustains without throttling, without faults: the least
    /// of API Gateway's rate, Lambda's concurrency over the mean service time (Little's law),
    /// and DynamoDB's twice the previous peak.
    pub fn capacity_rps(&self) -> f64 {
        self.capacity_for(self.mean_service_ms())
    }

    /// The same at `now`, with the faults then on: a slower region holds each environment
    /// longer, so Lambda's share shrinks; `None` while the region is down.
    pub fn capacity_rps_at(&self, now: Micros) -> Option<f64> {
        let c = self.condition(now);
        if c.down.is_some() {
            return None;
        }
        Some(self.capacity_for(self.mean_service_ms() * c.factor + c.extra_ms))
    }

    fn capacity_for(&self, mean_service_ms: f64) -> f64 {
        let c = &self.capacity;
        let lambda = f64::from(c.lambda_concurrency) * 1000.0 / mean_service_ms.max(0.001);
        c.api_rps.min(lambda).min(2.0 * c.dynamo_previous_peak_rps)
    }

    fn condition(&self, now: Micros) -> Condition {
        let mut c = Condition {
            down: None,
            factor: 1.0,
            extra_ms: 0.0,
            gray: None,
            health: 200,
        };
        for w in &self.faults {
            if !(w.from_us..w.until_us).contains(&now) {
                continue;
            }
            match w.effect {
                Effect::Outage { failure } => c.down = Some(failure),
                Effect::Slow {
                    latency_factor,
                    extra_ms,
                } => {
                    c.factor *= latency_factor;
                    c.extra_ms += extra_ms;
                }
                Effect::Gray { error_rate, status } => c.gray = Some((error_rate, status)),
                Effect::Flap {
                    down_s,
                    up_s,
                    failure,
                    health_only,
                    health_status,
                } => {
                    let period = ((down_s + up_s) * SECOND as f64) as Micros;
                    let down =
                        ((now - w.from_us) % period.max(1)) < (down_s * SECOND as f64) as Micros;
                    if down && health_only {
                        c.health = health_status;
                    } else if down {
                        c.down = Some(failure);
                    }
                }
            }
        }
        c
    }

    fn sample_ms(&self, rng: &mut Rng, c: &Condition) -> f64 {
        (self.mu + self.sigma * rng.normal()).exp() * c.factor + c.extra_ms
    }

    fn refill(&mut self, now: Micros) {
        let elapsed = now.saturating_sub(self.api_at) as f64 / SECOND as f64;
        self.api_tokens = (self.api_tokens + elapsed * self.capacity.api_rps)
            .min(self.capacity.api_burst.max(1.0));
        self.api_at = self.api_at.max(now);
    }

    /// Frees the environments whose request has finished; returns how many are busy.
    fn in_flight(&mut self, now: Micros) -> u32 {
        while self.busy.peek().is_some_and(|Reverse(at)| *at <= now) {
            self.busy.pop();
        }
        self.busy.len() as u32
    }

    /// Lambda's concurrency limit at `now`: grows by the ramp after each 10 s in which the
    /// function was held at its limit, up to the account's concurrency.
    fn lambda_limit(&mut self, now: Micros) -> u32 {
        while now >= self.ramp_window_end {
            if self.ramp_hit {
                self.lambda_limit = self
                    .lambda_limit
                    .saturating_add(self.capacity.lambda_ramp_per_10s)
                    .min(self.capacity.lambda_concurrency);
            }
            self.ramp_hit = false;
            self.ramp_window_end += 10 * SECOND;
        }
        self.lambda_limit
    }

    /// Counts a DynamoDB request in `now`'s second; false when on-demand throttles it.
    fn dynamo_admits(&mut self, now: Micros) -> bool {
        let second = now / SECOND;
        if second != self.dynamo_second {
            let minute = self.dynamo_second / 60;
            match self.dynamo_minutes.last_mut() {
                Some((m, peak)) if *m / 60 == minute => *peak = peak.max(self.dynamo_count),
                _ => self
                    .dynamo_minutes
                    .push((self.dynamo_second, self.dynamo_count)),
            }
            // Peaks older than 30 minutes are the new base.
            let settled = now.saturating_sub(DYNAMO_PEAK_SETTLES) / SECOND;
            let base = self
                .dynamo_minutes
                .iter()
                .filter(|(s, _)| *s < settled)
                .map(|(_, p)| *p)
                .fold(self.capacity.dynamo_previous_peak_rps, f64::max);
            self.dynamo_minutes.retain(|(s, _)| *s >= settled);
            self.dynamo_ceiling = self.dynamo_ceiling.max(2.0 * base);
            self.dynamo_second = second;
            self.dynamo_count = 0.0;
        }
        if self.dynamo_count + 1.0 > self.dynamo_ceiling {
            return false;
        }
        self.dynamo_count += 1.0;
        true
    }

    fn throttled(&self, status: u16, region_status: Option<u16>, service_ms: f64) -> Served {
        Served {
            answer: Answer::Status {
                status,
                region_status,
                retry_after_s: Some(self.capacity.retry_after_s),
            },
            service_us: (service_ms * MILLI as f64) as Micros,
            over_limit: true,
        }
    }

    /// Serves a request that reaches the region at `now`.
    pub fn serve(&mut self, now: Micros, rng: &mut Rng) -> Served {
        let c = self.condition(now);
        match c.down {
            Some(Failure::ConnectError) => {
                return Served {
                    answer: Answer::ConnectError,
                    service_us: 0,
                    over_limit: false,
                };
            }
            Some(Failure::Timeout) => {
                return Served {
                    answer: Answer::Silence,
                    service_us: 0,
                    over_limit: false,
                };
            }
            Some(Failure::Unavailable) => {
                return Served {
                    answer: Answer::Status {
                        status: 503,
                        region_status: None,
                        retry_after_s: None,
                    },
                    service_us: MILLI,
                    over_limit: false,
                };
            }
            None => {}
        }
        // API Gateway: a token per request.
        self.refill(now);
        if self.api_tokens < 1.0 {
            return self.throttled(429, None, REFUSAL_MS);
        }
        self.api_tokens -= 1.0;
        // Lambda: an execution environment per request in flight.
        let busy = self.in_flight(now);
        let limit = self.lambda_limit(now);
        if busy >= limit {
            self.ramp_hit = true;
            return self.throttled(503, None, REFUSAL_MS);
        }
        let mut service_ms = self.sample_ms(rng, &c);
        if busy >= self.warm {
            self.warm += 1;
            service_ms += self.capacity.cold_start_ms;
        }
        let dynamo_refused = !self.dynamo_admits(now);
        let answer = if dynamo_refused {
            service_ms += DYNAMO_THROTTLE_RETRIES_MS;
            Answer::Status {
                status: 503,
                region_status: Some(c.health),
                retry_after_s: Some(self.capacity.retry_after_s),
            }
        } else if let Some((rate, status)) = c.gray
            && rng.chance(rate)
        {
            Answer::Status {
                status,
                region_status: Some(c.health),
                retry_after_s: (status == 503).then_some(self.capacity.retry_after_s),
            }
        } else {
            Answer::Status {
                status: 200,
                region_status: Some(c.health),
                retry_after_s: None,
            }
        };
        let service_us = (service_ms.max(0.0) * MILLI as f64) as Micros;
        self.busy.push(Reverse(now + service_us));
        Served {
            answer,
            service_us,
            over_limit: dynamo_refused,
        }
    }

    /// A health check reaching the region at `now` (`/health`: API Gateway and Lambda, not
    /// DynamoDB; it takes no capacity worth counting). `rtt_ms` is the checker's round trip.
    pub fn check(&mut self, now: Micros, rng: &mut Rng, rtt_ms: f64, timeout_ms: f64) -> Check {
        let c = self.condition(now);
        let failed = |latency_ms: f64| Check {
            status: None,
            latency_ms,
        };
        let answered = |status: u16, latency_ms: f64| {
            if latency_ms >= timeout_ms {
                failed(timeout_ms)
            } else {
                Check {
                    status: Some(status),
                    latency_ms,
                }
            }
        };
        match c.down {
            Some(Failure::ConnectError) => return failed(rtt_ms.min(timeout_ms)),
            Some(Failure::Timeout) => return failed(timeout_ms),
            Some(Failure::Unavailable) => return answered(503, rtt_ms + REFUSAL_MS),
            None => {}
        }
        self.refill(now);
        if self.api_tokens < 1.0 {
            return answered(429, rtt_ms + REFUSAL_MS);
        }
        let busy = self.in_flight(now);
        if busy >= self.lambda_limit(now) {
            return answered(503, rtt_ms + REFUSAL_MS);
        }
        let latency = rtt_ms + self.sample_ms(rng, &c);
        answered(c.health, latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(capacity: Capacity, faults: Vec<Window>) -> Region {
        Region::new(
            LatencySpec {
                median: 20.0,
                p99: 80.0,
            },
            &capacity,
            faults,
        )
    }

    fn status(s: Served) -> u16 {
        match s.answer {
            Answer::Status { status, .. } => status,
            _ => 0,
        }
    }

    #[test]
    fn api_gateway_allows_the_burst_then_the_rate() {
        let capacity = Capacity {
            api_rps: 100.0,
            api_burst: 50.0,
            ..Capacity::default()
        };
        let mut r = region(capacity, Vec::new());
        let mut rng = Rng::stream(1, "t");
        let first: Vec<u16> = (0..60).map(|_| status(r.serve(0, &mut rng))).collect();
        assert_eq!(first.iter().filter(|&&s| s == 200).count(), 50);
        assert_eq!(first.iter().filter(|&&s| s == 429).count(), 10);
        // 100 ms later, 10 more tokens.
        let later: Vec<u16> = (0..20)
            .map(|_| status(r.serve(100 * MILLI, &mut rng)))
            .collect();
        assert_eq!(later.iter().filter(|&&s| s == 200).count(), 10);
    }

    #[test]
    fn lambda_concurrency_throttles_and_ramps() {
        let capacity = Capacity {
            lambda_concurrency: 30,
            lambda_initial: 10,
            lambda_ramp_per_10s: 10,
            ..Capacity::default()
        };
        let mut r = region(capacity, Vec::new());
        let mut rng = Rng::stream(1, "t");
        let at = |s: u64| s * SECOND;
        // Service takes at most a few hundred ms: 20 at once exceed the first 10.
        let burst: Vec<u16> = (0..20).map(|_| status(r.serve(at(1), &mut rng))).collect();
        assert_eq!(burst.iter().filter(|&&s| s == 503).count(), 10);
        // The next window allows 20, the one after 30, never more.
        let burst: Vec<u16> = (0..40).map(|_| status(r.serve(at(11), &mut rng))).collect();
        assert_eq!(burst.iter().filter(|&&s| s == 200).count(), 20);
        let burst: Vec<u16> = (0..40).map(|_| status(r.serve(at(21), &mut rng))).collect();
        assert_eq!(burst.iter().filter(|&&s| s == 200).count(), 30);
        let burst: Vec<u16> = (0..40).map(|_| status(r.serve(at(31), &mut rng))).collect();
        assert_eq!(burst.iter().filter(|&&s| s == 200).count(), 30);
    }

    #[test]
    fn dynamo_absorbs_twice_the_previous_peak_in_a_second() {
        let capacity = Capacity {
            dynamo_previous_peak_rps: 10.0,
            lambda_concurrency: 10_000,
            lambda_initial: 10_000,
            ..Capacity::default()
        };
        let mut r = region(capacity, Vec::new());
        let mut rng = Rng::stream(1, "t");
        let served: Vec<u16> = (0..30)
            .map(|n| status(r.serve(SECOND + n * 1000, &mut rng)))
            .collect();
        assert_eq!(served.iter().filter(|&&s| s == 200).count(), 20);
        assert_eq!(served.iter().filter(|&&s| s == 503).count(), 10);
        assert_eq!(status(r.serve(2 * SECOND, &mut rng)), 200, "a new second");
    }

    #[test]
    fn faults_apply_only_in_their_window() {
        let outage = Window {
            from_us: 10 * SECOND,
            until_us: 20 * SECOND,
            effect: Effect::Outage {
                failure: Failure::ConnectError,
            },
        };
        let flap = Window {
            from_us: 30 * SECOND,
            until_us: 40 * SECOND,
            effect: Effect::Flap {
                down_s: 2.0,
                up_s: 2.0,
                failure: Failure::ConnectError,
                health_only: true,
                health_status: 404,
            },
        };
        let mut r = region(Capacity::default(), vec![outage, flap]);
        let mut rng = Rng::stream(1, "t");
        assert_eq!(r.serve(15 * SECOND, &mut rng).answer, Answer::ConnectError);
        assert_eq!(status(r.serve(25 * SECOND, &mut rng)), 200);
        assert_eq!(r.check(15 * SECOND, &mut rng, 10.0, 2000.0).status, None);
        assert_eq!(
            r.check(31 * SECOND, &mut rng, 10.0, 2000.0).status,
            Some(404)
        );
        assert_eq!(
            r.check(33 * SECOND, &mut rng, 10.0, 2000.0).status,
            Some(200)
        );
        // Health-only flapping: requests are served, saying 404 in x-region-status.
        let flapping = r.serve(31 * SECOND, &mut rng).answer;
        assert!(matches!(
            flapping,
            Answer::Status {
                status: 200,
                region_status: Some(404),
                ..
            }
        ));
    }

    #[test]
    fn capacity_is_the_tightest_limit() {
        let r = region(Capacity::default(), Vec::new());
        assert_eq!(r.capacity_rps(), 10_000.0);
        let tight = Capacity {
            dynamo_previous_peak_rps: 1_000.0,
            ..Capacity::default()
        };
        assert_eq!(region(tight, Vec::new()).capacity_rps(), 2_000.0);
    }
}
