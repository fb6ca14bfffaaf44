//! Peak-sensitive EWMA of latency: a slow answer raises it at once, fast answers bring it down
//! with a time constant (default 10 s). An estimate with no sample for three time constants is
//! forgotten, so a region that got no traffic because its last answer was slow is measured again.
//! Time is given, never read.

use super::Millis;

/// Time constants without a sample after which the estimate is forgotten. By then a new sample
/// would outweigh it about 20 to 1 anyway; kept, it would rank an idle region by its last answer
/// for ever, and an idle region gets no answers to correct it.
const FORGET_AFTER_DECAYS: f64 = 3.0;

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

    /// The estimate at `now`: `None` before the first sample, or when the last one is more than
    /// three time constants old.
    pub fn get(&self, now: Millis) -> Option<f64> {
        let at = self.updated_at?;
        (now.saturating_sub(at) as f64 <= self.decay_ms * FORGET_AFTER_DECAYS).then_some(self.value_ms)
    }

    /// Adds a sample taken at `now`.
    pub fn observe(&mut self, sample_ms: f64, now: Millis) {
        let sample_ms = sample_ms.max(0.0);
        match (self.updated_at, self.get(now)) {
            (Some(at), Some(current)) if sample_ms <= current => {
                let elapsed = now.saturating_sub(at) as f64;
                let w = (-elapsed / self.decay_ms).exp();
                self.value_ms = current * w + sample_ms * (1.0 - w);
            }
            // First sample, forgotten estimate, or a new peak.
            _ => self.value_ms = sample_ms,
        }
        self.updated_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_up_at_once_and_decays_slowly() {
        let mut e = PeakEwma::new(10_000);
        assert_eq!(e.get(0), None);
        e.observe(10.0, 0);
        e.observe(200.0, 100);
        assert_eq!(e.get(100), Some(200.0));
        e.observe(10.0, 1_100);
        let after_1s = e.get(1_100).unwrap();
        assert!(after_1s > 150.0 && after_1s < 200.0, "{after_1s}");
        e.observe(10.0, 25_000);
        assert!(e.get(25_000).unwrap() < 30.0);
    }

    #[test]
    fn an_old_estimate_is_forgotten() {
        let mut e = PeakEwma::new(10_000);
        e.observe(1_500.0, 0);
        assert_eq!(e.get(30_000), Some(1_500.0));
        assert_eq!(e.get(30_001), None, "no sample for three time constants");
        // The next sample starts afresh instead of being averaged with the forgotten one.
        e.observe(20.0, 40_000);
        assert_eq!(e.get(40_000), Some(20.0));
    }
}
