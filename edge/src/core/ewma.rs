//! Two latency estimates per region.
//!
//! - [`PeakEwma`], for the hedge delay: a slow answer raises it at once, fast answers bring it
//!   down with a time constant (default 10 s).
//! - [`SmoothedLatency`], for ranking regions: a plain per-sample EWMA (weight
//!   [`RANK_SMOOTHING`]) of successful answers, so one slow answer moves it a little and only a
//!   run of them moves it a lot (a ranking that followed the peak would change a client's region
//!   on one sample); a failed attempt raises it at once to the time it cost.
//!
//! For both: an estimate with no sample for three time constants is not recent. An estimate with no sample for three time constants is
//! not recent: ranking ignores it, so a region that got no traffic because its last answer was
//! slow is measured again, and the next sample replaces it. Time is given, never read.

use super::Millis;

/// Time constants without a sample after which the estimate is no longer recent. By then a new
/// sample would outweigh it about 20 to 1 anyway; ranked by it, an idle region would be judged
/// by its last answer for ever, since an idle region gets no answers to correct it.
const RECENT_FOR_DECAYS: f64 = 3.0;

/// Latency estimate for one region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    value_ms: f64,
    updated_at: Option<Millis>,
    decay_ms: f64,
}

impl PeakEwma {
    /// Starts empty (no estimate) with time constant `decay_ms`.
    pub fn new(decay_ms: u64) -> Self {
        Self {
            value_ms: 0.0,
            updated_at: None,
            decay_ms: decay_ms.max(1) as f64,
        }
    }

    /// The estimate, if any sample was seen.
    pub fn get(&self) -> Option<f64> {
        self.updated_at.map(|_| self.value_ms)
    }

    /// The estimate if its last sample is at most three time constants old at `now`.
    pub fn recent(&self, now: Millis) -> Option<f64> {
        let at = self.updated_at?;
        (now.saturating_sub(at) as f64 <= self.decay_ms * RECENT_FOR_DECAYS)
            .then_some(self.value_ms)
    }

    /// Adds a sample taken at `now`.
    pub fn observe(&mut self, sample_ms: f64, now: Millis) {
        let sample_ms = sample_ms.max(0.0);
        match (self.updated_at, self.recent(now)) {
            (Some(at), Some(current)) if sample_ms <= current => {
                let elapsed = now.saturating_sub(at) as f64;
                let w = (-elapsed / self.decay_ms).exp();
                self.value_ms = current * w + sample_ms * (1.0 - w);
            }
            // First sample, an estimate too old to keep, or a new peak.
            _ => self.value_ms = sample_ms,
        }
        self.updated_at = Some(now);
    }
}

/// Weight of a new sample in [`SmoothedLatency`]: ten samples to move it most of the way.
pub const RANK_SMOOTHING: f64 = 0.1;

/// A per-sample EWMA of latency with a recency limit, for ranking regions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothedLatency {
    value_ms: f64,
    updated_at: Option<Millis>,
    max_age_ms: f64,
    weight: f64,
    /// Where an empty (or stale) estimate starts: `None`, at its first sample.
    prior: Option<f64>,
}

impl SmoothedLatency {
    /// Starts empty; an estimate older than three `decay_ms` is not recent.
    pub fn new(decay_ms: u64) -> Self {
        Self {
            value_ms: 0.0,
            updated_at: None,
            max_age_ms: decay_ms.max(1) as f64 * RECENT_FOR_DECAYS,
            weight: RANK_SMOOTHING,
            prior: None,
        }
    }

    /// An estimate with another weight per sample (in `0.0..=1.0`) that starts from `prior`
    /// rather than from its first sample (a failure share starts at 0: one failure is one
    /// twentieth of the evidence, not all of it).
    pub fn with_prior(decay_ms: u64, weight: f64, prior: f64) -> Self {
        Self {
            value_ms: 0.0,
            updated_at: None,
            max_age_ms: decay_ms.max(1) as f64 * RECENT_FOR_DECAYS,
            weight: weight.clamp(0.0, 1.0),
            prior: Some(prior),
        }
    }

    /// The estimate if its last sample is recent at `now`.
    pub fn recent(&self, now: Millis) -> Option<f64> {
        let at = self.updated_at?;
        (now.saturating_sub(at) as f64 <= self.max_age_ms).then_some(self.value_ms)
    }

    /// Adds a sample taken at `now` (the first one, or one after the estimate went stale,
    /// starts afresh).
    pub fn observe(&mut self, sample_ms: f64, now: Millis) {
        let sample_ms = sample_ms.max(0.0);
        self.value_ms = match self.recent(now).or(self.prior) {
            Some(current) => current + (sample_ms - current) * self.weight,
            None => sample_ms,
        };
        self.updated_at = Some(now);
    }

    /// Adds the time a failed attempt cost: a failure raises the estimate at once (to at least
    /// that time), as the peak EWMA does; a slow success only nudges it.
    pub fn observe_failure(&mut self, waited_ms: f64, now: Millis) {
        let waited_ms = waited_ms.max(0.0);
        self.value_ms = self.recent(now).map_or(waited_ms, |v| v.max(waited_ms));
        self.updated_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ranking_estimate_moves_a_little_per_sample() {
        let mut e = SmoothedLatency::new(10_000);
        assert_eq!(e.recent(0), None);
        e.observe(10.0, 0);
        e.observe(110.0, 100);
        assert_eq!(
            e.recent(100),
            Some(20.0),
            "one slow sample moves it a tenth of the way"
        );
        for t in 1..=20 {
            e.observe(110.0, 100 + t);
        }
        assert!(
            e.recent(200).unwrap() > 95.0,
            "a run of them moves it all the way"
        );
        assert_eq!(
            e.recent(200 + 30_001),
            None,
            "stale after three time constants"
        );
        e.observe(5.0, 40_000);
        assert_eq!(e.recent(40_000), Some(5.0), "and then starts afresh");
    }

    use super::*;

    #[test]
    fn jumps_up_at_once_and_decays_slowly() {
        let mut e = PeakEwma::new(10_000);
        assert_eq!(e.get(), None);
        e.observe(10.0, 0);
        e.observe(200.0, 100);
        assert_eq!(e.get(), Some(200.0));
        e.observe(10.0, 1_100);
        let after_1s = e.get().unwrap();
        assert!(after_1s > 150.0 && after_1s < 200.0, "{after_1s}");
        e.observe(10.0, 25_000);
        assert!(e.get().unwrap() < 30.0);
    }

    #[test]
    fn an_old_estimate_is_not_recent_and_is_replaced() {
        let mut e = PeakEwma::new(10_000);
        assert_eq!(e.recent(0), None);
        e.observe(1_500.0, 0);
        assert_eq!(e.recent(30_000), Some(1_500.0));
        assert_eq!(e.recent(30_001), None, "no sample for three time constants");
        assert_eq!(e.get(), Some(1_500.0), "still the last known estimate");
        // The next sample starts afresh instead of being averaged with the old one.
        e.observe(20.0, 40_000);
        assert_eq!(e.recent(40_000), Some(20.0));
    }
}
