//! Peak-sensitive EWMA of latency: a slow answer raises it at once, fast answers bring it down
//! with a time constant (default 10 s). Time is given, never read.

use super::Millis;

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

    /// Adds a sample taken at `now`.
    pub fn observe(&mut self, sample_ms: f64, now: Millis) {
        let sample_ms = sample_ms.max(0.0);
        match self.updated_at {
            None => self.value_ms = sample_ms,
            Some(_) if sample_ms > self.value_ms => self.value_ms = sample_ms,
            Some(at) => {
                let elapsed = now.saturating_sub(at) as f64;
                let w = (-elapsed / self.decay_ms).exp();
                self.value_ms = self.value_ms * w + sample_ms * (1.0 - w);
            }
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
        assert_eq!(e.get(), None);
        e.observe(10.0, 0);
        e.observe(200.0, 100);
        assert_eq!(e.get(), Some(200.0));
        e.observe(10.0, 1_100);
        let after_1s = e.get().unwrap();
        assert!(after_1s > 150.0 && after_1s < 200.0, "{after_1s}");
        e.observe(10.0, 60_000);
        assert!(e.get().unwrap() < 12.0);
    }
}
