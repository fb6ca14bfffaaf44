//! The event queue: a calendar of one-millisecond buckets over the next few seconds, and a
//! binary heap for anything later. Events come out in (time, sequence) order, exactly as from
//! one binary heap, but most pushes are an append to a small vector and most pops take from a
//! sorted bucket: ten million requests make about sixty million events, and a heap of tens of
//! thousands of them spends its time in cache misses.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Bucket width, in the time unit of the events (microseconds).
const WIDTH: u64 = 1_000;
/// Buckets in the ring (about 4 s ahead).
const RING: usize = 4_096;

/// Something that happens at `at` (ties broken by `seq`, the order of scheduling).
pub trait Timed: Copy {
    fn key(&self) -> (u64, u64);
}

struct ByKey<E>(E);

impl<E: Timed> PartialEq for ByKey<E> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}
impl<E: Timed> Eq for ByKey<E> {}
impl<E: Timed> PartialOrd for ByKey<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E: Timed> Ord for ByKey<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(&other.0.key())
    }
}

/// A calendar queue of events that never go back in time.
pub struct Calendar<E: Timed> {
    ring: Vec<Vec<E>>,
    /// The bucket being drained, sorted latest first (pop from the end).
    current: Vec<E>,
    /// Index (absolute) of the bucket `current` holds.
    at_bucket: u64,
    later: BinaryHeap<Reverse<ByKey<E>>>,
    len: usize,
}

impl<E: Timed> Default for Calendar<E> {
    fn default() -> Self {
        Self {
            ring: (0..RING).map(|_| Vec::new()).collect(),
            current: Vec::new(),
            at_bucket: 0,
            later: BinaryHeap::new(),
            len: 0,
        }
    }
}

fn latest_first<E: Timed>(a: &E, b: &E) -> std::cmp::Ordering {
    b.key().cmp(&a.key())
}

impl<E: Timed> Calendar<E> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `event` (never before the last event popped).
    pub fn push(&mut self, event: E) {
        self.len += 1;
        let bucket = (event.key().0 / WIDTH).max(self.at_bucket);
        if bucket == self.at_bucket {
            // Into the bucket being drained, at its place.
            let i = self
                .current
                .partition_point(|e| latest_first(e, &event).is_lt());
            self.current.insert(i, event);
        } else if bucket < self.at_bucket + RING as u64 {
            self.ring[(bucket % RING as u64) as usize].push(event);
        } else {
            self.later.push(Reverse(ByKey(event)));
        }
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<E> {
        loop {
            if let Some(event) = self.current.pop() {
                self.len -= 1;
                return Some(event);
            }
            if self.len == 0 {
                return None;
            }
            self.at_bucket += 1;
            // Later events whose bucket is now within the ring move into it.
            let horizon = self.at_bucket + RING as u64;
            while let Some(Reverse(ByKey(e))) = self.later.peek() {
                let bucket = e.key().0 / WIDTH;
                if bucket >= horizon {
                    break;
                }
                let e = *e;
                self.later.pop();
                if bucket <= self.at_bucket {
                    self.current.push(e);
                } else {
                    self.ring[(bucket % RING as u64) as usize].push(e);
                }
            }
            let slot = (self.at_bucket % RING as u64) as usize;
            if !self.ring[slot].is_empty() {
                // Swap so both vectors keep their capacity.
                std::mem::swap(&mut self.current, &mut self.ring[slot]);
                self.current.append(&mut self.ring[slot]);
            }
            self.current.sort_unstable_by(latest_first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Ev(u64, u64);

    impl Timed for Ev {
        fn key(&self) -> (u64, u64) {
            (self.0, self.1)
        }
    }

    #[test]
    fn pops_in_the_order_of_one_heap_while_events_are_added() {
        let mut rng = Rng::stream(3, "queue");
        let mut calendar = Calendar::default();
        let mut heap = BinaryHeap::new();
        let mut seq = 0;
        let mut now = 0;
        let mut popped = 0;
        for round in 0..200_000 {
            // Mostly near events, some far beyond the ring, some at the same instant.
            for _ in 0..rng.below(3) {
                seq += 1;
                let ahead = match rng.below(10) {
                    0 => 0,
                    1 => 20_000_000 + rng.below(40_000_000) as u64,
                    _ => rng.below(3_000_000) as u64,
                };
                let e = Ev(now + ahead, seq);
                calendar.push(e);
                heap.push(Reverse((e.0, e.1)));
            }
            if round % 2 == 0 {
                let a = calendar.pop();
                let b = heap.pop().map(|Reverse((at, s))| Ev(at, s));
                assert_eq!(a, b);
                if let Some(e) = a {
                    assert!(e.0 >= now);
                    now = e.0;
                    popped += 1;
                }
            }
        }
        while let Some(Reverse((at, s))) = heap.pop() {
            assert_eq!(calendar.pop(), Some(Ev(at, s)));
        }
        assert!(calendar.is_empty() && calendar.pop().is_none());
        assert!(popped > 50_000);
    }
}
