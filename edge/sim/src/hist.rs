//! A streaming latency histogram: log-linear buckets (64 per power of two, about 1 % wide), so
//! ten million samples take the same 30 KB as ten. Quantiles are read off the buckets.

/// Values below this are counted exactly.
const EXACT: u64 = 128;
/// Sub-buckets per power of two above `EXACT`.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = EXACT as usize + (64 - 7) * SUB as usize;

/// Counts of values (microseconds, or any unit) in log-linear buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

fn index(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let mantissa = value >> shift;
    EXACT as usize + (msb as usize - 7) * SUB as usize + (mantissa - SUB) as usize
}

/// The middle of bucket `i`.
fn middle(i: usize) -> u64 {
    if i < EXACT as usize {
        return i as u64;
    }
    let above = i - EXACT as usize;
    let msb = (above / SUB as usize) as u32 + 7;
    let shift = msb - SUB_BITS;
    let mantissa = (above % SUB as usize) as u64 + SUB;
    (mantissa << shift) + (1 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (`0.0..=1.0`): the middle of the bucket holding the value of rank
    /// `ceil(q × count)`; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(middle(i));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_about_one_percent_wide() {
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(997) {
            let i = index(v);
            assert!(i >= last, "{v}");
            last = i;
            let m = middle(i);
            let error = m.abs_diff(v) as f64 / v.max(1) as f64;
            assert!(error <= 0.016, "{v} -> {m}");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=10_000u64 {
            h.record(v * 100);
        }
        let p50 = h.quantile(0.5).unwrap_or_default() as f64;
        let p99 = h.quantile(0.99).unwrap_or_default() as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.01, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.01, "{p99}");
        assert_eq!(h.count(), 10_000);
    }
}
