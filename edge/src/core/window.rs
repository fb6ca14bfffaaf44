//! A count of events and of the marked ones among them over a sliding window of one-second
//! buckets: the failure-rate rule counts attempts and failures with it, admission control
//! answered attempts and refusals.

use super::Millis;

/// (events, marked events) over the last `window_ms`, in one-second buckets.
#[derive(Debug, Clone, Default)]
pub struct CountWindow {
    /// (second, events, marked), one slot per second of the window.
    buckets: Vec<(u64, u32, u32)>,
}

impl CountWindow {
    /// Counts one event at `now` (`marked`: a failure, a refusal) in a window of `window_ms`.
    pub fn add(&mut self, now: Millis, marked: bool, window_ms: u64) {
        let slots = (window_ms / 1000).max(1) as usize;
        if self.buckets.len() != slots {
            self.buckets = vec![(u64::MAX, 0, 0); slots];
        }
        let second = now / 1000;
        let slot = &mut self.buckets[(second % slots as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.2 = slot.2.saturating_add(u32::from(marked));
    }

    /// (events, marked) within the window ending at `now`.
    pub fn counts(&self, now: Millis) -> (u32, u32) {
        let second = now / 1000;
        let slots = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|(s, _, _)| *s != u64::MAX && *s <= second && second - *s < slots)
            .fold((0, 0), |(a, m), (_, sa, sm)| (a + sa, m + sm))
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_last_window() {
        let mut w = CountWindow::default();
        w.add(0, true, 3_000);
        w.add(1_500, false, 3_000);
        w.add(2_999, true, 3_000);
        assert_eq!(w.counts(2_999), (3, 2));
        // Second 0 has left a 3 s window at second 3.
        assert_eq!(w.counts(3_000), (2, 1));
        assert_eq!(w.counts(10_000), (0, 0));
        w.add(10_000, false, 3_000);
        assert_eq!(w.counts(10_000), (1, 0));
    }
}
