//! One region's health as this isolate sees it: a small state machine in the spirit of Envoy's
//! outlier detection, plus what probes and the region itself report.
//!
//! - Passive: `consecutive_failures` failures in a row, or a failed share of at least
//!   `failure_rate_ejection` among at least `failure_rate_min_requests` attempts in the last
//!   `failure_window_ms` (partial, gray failure), eject the region for `base_ejection_ms × n`
//!   (n-th ejection, capped at `max_ejection_ms`, plus jitter). When that time is over, exactly
//!   one trial request is let through; its result readmits the region or ejects it again for
//!   longer. Below the ejection rule, a smoothed failure share makes the region rank worse.
//! - Drain: `probe_failures` failed probes in a row (one bad sample from one probing location
//!   is not enough), or a live response whose `x-region-status` is non-2xx (at once), take the
//!   region out until a probe (or response) says 2xx again.
//! - The caller decides whether an ejection is allowed (the last region is never ejected).

use serde::Serialize;

use super::Millis;
use super::config::Settings;
use super::ewma::{PeakEwma, SmoothedLatency};
use super::window::CountWindow;

/// The result of one active probe of a region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct ProbeResult {
    pub at_ms: Millis,
    /// HTTP status, or `None` when the probe got no answer (refused, timeout).
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Failed probes in a row, this one included (0 when it passed).
    #[serde(default)]
    pub failures_in_row: u32,
}

impl ProbeResult {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Weight of one attempt in the smoothed failure share (twenty attempts to move it most of the
/// way): a lone failure barely moves it, a region failing one request in five reaches 0.2.
pub const FAILURE_SHARE_WEIGHT: f64 = 0.05;
/// Failure share a region may have without ranking worse: occasional throttles or a client's
/// own 500s do not move clients, and a region that fails outright is ejected by the
/// consecutive rule (its third failure in a row) before it would rank worse.
pub const FAILURE_SHARE_FLOOR: f64 = 0.1;

/// Whether a region takes traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Healthy,
    /// Ejected by failures on live traffic; a trial is due at `until_ms`.
    Ejected {
        until_ms: Millis,
    },
    /// Ejection over; the next request is the trial.
    TrialDue,
    /// The trial request is in flight; others wait for its answer.
    TrialInFlight,
    /// Drained by the operator (`STATUS`) or failing its probe.
    Drained,
}

/// One region's health state.
#[derive(Debug, Clone)]
pub struct RegionHealth {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Millis>,
    trial_started: Option<Millis>,
    drained: bool,
    /// When a live response last carried the region's `x-region-status`.
    region_said_at: Option<Millis>,
    last_probe: Option<ProbeResult>,
    /// For the hedge delay (jumps up at once).
    latency: PeakEwma,
    /// For ranking (moves a little per sample).
    rank_latency: SmoothedLatency,
    /// Smoothed share of failed attempts (each attempt a 0 or a 1), for ranking.
    failure_share: SmoothedLatency,
    /// For the failure-rate ejection rule.
    window: CountWindow,
}

impl RegionHealth {
    pub fn new(settings: &Settings) -> Self {
        Self {
            consecutive_failures: 0,
            ejections: 0,
            ejected_until: None,
            trial_started: None,
            drained: false,
            region_said_at: None,
            last_probe: None,
            latency: PeakEwma::new(settings.ewma_decay_ms),
            rank_latency: SmoothedLatency::new(settings.ewma_decay_ms),
            failure_share: Self::new_failure_share(settings),
            window: CountWindow::default(),
        }
    }

    fn new_failure_share(settings: &Settings) -> SmoothedLatency {
        SmoothedLatency::with_prior(settings.ewma_decay_ms, FAILURE_SHARE_WEIGHT, 0.0)
    }

    /// Availability at `now`.
    pub fn availability(&self, now: Millis, settings: &Settings) -> Availability {
        if self.drained {
            return Availability::Drained;
        }
        match self.ejected_until {
            None => Availability::Healthy,
            Some(until) if now < until => Availability::Ejected { until_ms: until },
            Some(_) => match self.trial_started {
                Some(at) if now.saturating_sub(at) < settings.trial_timeout_ms => {
                    Availability::TrialInFlight
                }
                _ => Availability::TrialDue,
            },
        }
    }

    /// True when a request may be sent now (healthy, or this one becomes the trial).
    pub fn admits(&self, now: Millis, settings: &Settings) -> bool {
        matches!(
            self.availability(now, settings),
            Availability::Healthy | Availability::TrialDue
        )
    }

    /// Notes that a request is being sent; if a trial was due, this request is it.
    pub fn on_send(&mut self, now: Millis, settings: &Settings) {
        if self.availability(now, settings) == Availability::TrialDue {
            self.trial_started = Some(now);
        }
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until.is_some()
    }

    pub fn is_drained(&self) -> bool {
        self.drained
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.latency.get()
    }

    /// The latency estimate if it is recent at `now` (see [`PeakEwma::recent`]).
    pub fn recent_latency_ms(&self, now: Millis) -> Option<f64> {
        self.latency.recent(now)
    }

    /// The smoothed latency the ranking uses, if recent at `now`.
    pub fn ranking_latency_ms(&self, now: Millis) -> Option<f64> {
        self.rank_latency.recent(now)
    }

    /// The smoothed share of failed attempts beyond [`FAILURE_SHARE_FLOOR`], if recent at
    /// `now`: what the ranking charges the region for failing.
    pub fn failure_share(&self, now: Millis) -> Option<f64> {
        self.failure_share
            .recent(now)
            .map(|share| (share - FAILURE_SHARE_FLOOR).max(0.0))
    }

    /// (attempts, failures) in the failure-rate window ending at `now`.
    pub fn window_counts(&self, now: Millis) -> (u32, u32) {
        self.window.counts(now)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn last_probe(&self) -> Option<ProbeResult> {
        self.last_probe
    }

    /// A good answer (any status the region meant to give, 2xx to 4xx).
    pub fn record_success(&mut self, latency_ms: f64, now: Millis, settings: &Settings) {
        self.latency.observe(latency_ms, now);
        self.rank_latency.observe(latency_ms, now);
        self.failure_share.observe(0.0, now);
        self.window.add(now, false, settings.failure_window_ms);
        self.consecutive_failures = 0;
        if self.ejected_until.is_some_and(|until| now >= until) || self.trial_started.is_some() {
            // A passed trial: recovered. Its failures no longer count against it.
            self.ejected_until = None;
            self.trial_started = None;
            self.ejections = 0;
            self.failure_share = Self::new_failure_share(settings);
            self.rank_latency = SmoothedLatency::new(settings.ewma_decay_ms);
            self.rank_latency.observe(latency_ms, now);
        }
    }

    /// An attempt aborted after `latency_ms` because another won a hedge race: a latency sample
    /// only (no failure, no success; a trial it was, if any, is due again).
    pub fn record_lost_race(&mut self, latency_ms: f64, now: Millis) {
        self.latency.observe(latency_ms, now);
        self.rank_latency.observe(latency_ms, now);
        self.trial_started = None;
    }

    /// A failed attempt. `may_eject` is false when ejecting would leave no region; `jitter` is a
    /// random number in `0.0..1.0`. Returns true when this failure ejected the region.
    pub fn record_failure(
        &mut self,
        latency_ms: f64,
        now: Millis,
        may_eject: bool,
        jitter: f64,
        settings: &Settings,
    ) -> bool {
        self.latency.observe(latency_ms, now);
        self.rank_latency.observe_failure(latency_ms, now);
        self.failure_share.observe(1.0, now);
        self.window.add(now, true, settings.failure_window_ms);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let failed_trial = self.trial_started.is_some();
        let over_threshold = self.consecutive_failures >= settings.consecutive_failures;
        let (attempts, failures) = self.window.counts(now);
        let over_rate = attempts >= settings.failure_rate_min_requests
            && f64::from(failures) >= settings.failure_rate_ejection * f64::from(attempts);
        let currently_ejected = self.ejected_until.is_some_and(|until| now < until);
        if !(failed_trial || over_threshold || over_rate) || currently_ejected || !may_eject {
            return false;
        }
        // The trial after this ejection is judged afresh by the rate rule.
        self.window.clear();
        self.ejections = self.ejections.saturating_add(1);
        let base = settings
            .base_ejection_ms
            .saturating_mul(u64::from(self.ejections));
        let duration = base.min(settings.max_ejection_ms)
            + (jitter.clamp(0.0, 1.0) * settings.ejection_jitter_ms as f64) as u64;
        self.ejected_until = Some(now + duration);
        self.trial_started = None;
        true
    }

    /// The region's own word on its health, from a live response's `x-region-status`.
    pub fn record_region_status(&mut self, status: u16, now: Millis) {
        self.drained = !(200..300).contains(&status);
        self.region_said_at = Some(now);
    }

    /// A probe result (shared across isolates). Stale results are ignored.
    pub fn record_probe(&mut self, probe: ProbeResult, now: Millis, settings: &Settings) {
        if self.last_probe.is_some_and(|p| p.at_ms >= probe.at_ms) {
            return;
        }
        self.last_probe = Some(probe);
        let stale = now.saturating_sub(probe.at_ms) > settings.probe_stale_ms;
        // The region's own word on live traffic is newer than this probe: it stands.
        let superseded = self.region_said_at.is_some_and(|at| at > probe.at_ms);
        if stale || superseded {
            return;
        }
        if probe.ok() {
            self.drained = false;
        } else if probe.failures_in_row >= settings.probe_failures {
            self.drained = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            consecutive_failures: 3,
            base_ejection_ms: 1000,
            max_ejection_ms: 2500,
            ejection_jitter_ms: 0,
            ..Settings::default()
        }
    }

    #[test]
    fn ejects_after_threshold_and_grows_each_time() {
        let s = settings();
        let mut h = RegionHealth::new(&s);
        assert!(!h.record_failure(1.0, 0, true, 0.0, &s));
        assert!(!h.record_failure(1.0, 1, true, 0.0, &s));
        assert!(h.record_failure(1.0, 2, true, 0.0, &s));
        assert_eq!(
            h.availability(500, &s),
            Availability::Ejected { until_ms: 1002 }
        );
        // Trial after the ejection: one request only.
        assert_eq!(h.availability(1002, &s), Availability::TrialDue);
        h.on_send(1002, &s);
        assert_eq!(h.availability(1003, &s), Availability::TrialInFlight);
        assert!(!h.admits(1003, &s));
        // The trial fails: ejected again, twice as long.
        assert!(h.record_failure(1.0, 1010, true, 0.0, &s));
        assert_eq!(
            h.availability(1011, &s),
            Availability::Ejected { until_ms: 3010 }
        );
        // Third ejection is capped.
        h.on_send(3010, &s);
        assert!(h.record_failure(1.0, 3020, true, 0.0, &s));
        assert_eq!(
            h.availability(3021, &s),
            Availability::Ejected { until_ms: 5520 }
        );
        // A successful trial readmits.
        h.on_send(5520, &s);
        h.record_success(2.0, 5530, &s);
        assert_eq!(h.availability(5531, &s), Availability::Healthy);
        assert_eq!(h.consecutive_failures(), 0);
    }

    #[test]
    fn never_ejects_when_not_allowed() {
        let s = settings();
        let mut h = RegionHealth::new(&s);
        for t in 0..10 {
            assert!(!h.record_failure(1.0, t, false, 0.0, &s));
        }
        assert_eq!(h.availability(10, &s), Availability::Healthy);
    }

    #[test]
    fn lost_trial_times_out() {
        let s = settings();
        let mut h = RegionHealth::new(&s);
        for t in 0..3 {
            h.record_failure(1.0, t, true, 0.0, &s);
        }
        h.on_send(1002, &s);
        assert_eq!(
            h.availability(1002 + s.trial_timeout_ms, &s),
            Availability::TrialDue
        );
    }

    #[test]
    fn jitter_adds_up_to_its_bound() {
        let s = Settings {
            ejection_jitter_ms: 400,
            ..settings()
        };
        let mut h = RegionHealth::new(&s);
        for t in 0..3 {
            h.record_failure(1.0, t, true, 0.5, &s);
        }
        assert_eq!(
            h.availability(3, &s),
            Availability::Ejected {
                until_ms: 2 + 1000 + 200
            }
        );
    }

    #[test]
    fn a_probe_older_than_the_regions_own_word_does_not_undo_a_drain() {
        let s = settings();
        let mut h = RegionHealth::new(&s);
        h.record_region_status(404, 1000);
        h.record_probe(
            ProbeResult {
                at_ms: 900,
                status: Some(200),
                latency_ms: 1,
                failures_in_row: 0,
            },
            1100,
            &s,
        );
        assert!(h.is_drained());
        h.record_probe(
            ProbeResult {
                at_ms: 1200,
                status: Some(200),
                latency_ms: 1,
                failures_in_row: 0,
            },
            1200,
            &s,
        );
        assert!(!h.is_drained());
    }

    #[test]
    fn one_failed_probe_does_not_drain_three_in_a_row_do() {
        let s = settings();
        let mut h = RegionHealth::new(&s);
        for (n, at) in [(1, 100), (2, 200)] {
            h.record_probe(
                ProbeResult {
                    at_ms: at,
                    status: None,
                    latency_ms: 2000,
                    failures_in_row: n,
                },
                at,
                &s,
            );
            assert!(!h.is_drained(), "{n} failed probe(s): still in service");
        }
        h.record_probe(
            ProbeResult {
                at_ms: 300,
                status: Some(503),
                latency_ms: 5,
                failures_in_row: 3,
            },
            300,
            &s,
        );
        assert!(h.is_drained());
    }

    #[test]
    fn a_region_failing_a_share_of_requests_is_ejected_by_the_rate_rule() {
        let s = Settings {
            consecutive_failures: 5,
            ..settings()
        };
        let mut h = RegionHealth::new(&s);
        // Three failures in every five: never three in a row, but 60 % of the window.
        let mut ejected_at = None;
        for n in 0..50u64 {
            let now = n * 100;
            let ejected = if n % 5 % 2 == 0 {
                h.record_failure(5.0, now, true, 0.0, &s)
            } else {
                h.record_success(5.0, now, &s);
                false
            };
            if ejected {
                ejected_at = Some(n);
                break;
            }
        }
        assert!(
            ejected_at.is_some_and(|n| n >= 9),
            "ejected at {ejected_at:?}"
        );
        let at = ejected_at.unwrap_or_default() * 100;
        assert!(matches!(
            h.availability(at, &s),
            Availability::Ejected { .. }
        ));
        assert_eq!(h.window_counts(at), (0, 0), "its trial is judged afresh");
    }

    #[test]
    fn drain_by_probe_and_by_region_status() {
        let s = settings();
        let mut h = RegionHealth::new(&s);
        h.record_probe(
            ProbeResult {
                at_ms: 100,
                status: Some(404),
                latency_ms: 1,
                failures_in_row: 3,
            },
            100,
            &s,
        );
        assert_eq!(h.availability(100, &s), Availability::Drained);
        // An older result never overrides a newer one.
        h.record_probe(
            ProbeResult {
                at_ms: 50,
                status: Some(200),
                latency_ms: 1,
                failures_in_row: 0,
            },
            120,
            &s,
        );
        assert!(h.is_drained());
        h.record_probe(
            ProbeResult {
                at_ms: 200,
                status: Some(200),
                latency_ms: 1,
                failures_in_row: 0,
            },
            200,
            &s,
        );
        assert!(!h.is_drained());
        h.record_region_status(404, 250);
        assert!(h.is_drained());
        h.record_region_status(200, 260);
        assert!(!h.is_drained());
        // A stale probe is kept for the status page but not acted on.
        h.record_probe(
            ProbeResult {
                at_ms: 300,
                status: None,
                latency_ms: 1,
                failures_in_row: 3,
            },
            300 + s.probe_stale_ms + 1,
            &s,
        );
        assert!(!h.is_drained());
    }
}
