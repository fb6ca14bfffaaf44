//! The retry budget: each request served deposits `retry_ratio` tokens, time adds
//! `retry_floor_per_s`, each retry or hedge withdraws one. When all regions brown out together,
//! retries stop at about ratio × traffic instead of multiplying it.

use super::Millis;

/// A token bucket of retries.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio: f64,
    floor_per_s: f64,
    cap: f64,
    balance: f64,
    refilled_at: Option<Millis>,
}

impl RetryBudget {
    /// A full budget; holds at most `cap` tokens (default callers use 10 s of floor, at least 10).
    pub fn new(ratio: f64, floor_per_s: f64) -> Self {
        let cap = (floor_per_s * 10.0).max(10.0);
        Self {
            ratio,
            floor_per_s,
            cap,
            balance: cap,
            refilled_at: None,
        }
    }

    fn refill(&mut self, now: Millis) {
        if let Some(at) = self.refilled_at {
            let secs = now.saturating_sub(at) as f64 / 1000.0;
            self.balance = (self.balance + secs * self.floor_per_s).min(self.cap);
        }
        self.refilled_at = Some(now);
    }

    /// A request arrived.
    pub fn deposit(&mut self, now: Millis) {
        self.refill(now);
        self.balance = (self.balance + self.ratio).min(self.cap);
    }

    /// Asks for one retry; true (and one token spent) when the budget allows it.
    pub fn withdraw(&mut self, now: Millis) -> bool {
        self.refill(now);
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn balance(&self) -> f64 {
        self.balance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_retries_to_a_share_of_traffic() {
        let mut b = RetryBudget::new(0.2, 0.0);
        // Drain the initial balance.
        while b.withdraw(0) {}
        let mut allowed = 0;
        for _ in 0..100 {
            b.deposit(0);
            if b.withdraw(0) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20);
    }

    #[test]
    fn floor_refills_with_time() {
        let mut b = RetryBudget::new(0.0, 10.0);
        while b.withdraw(0) {}
        assert!(!b.withdraw(50));
        assert!(b.withdraw(200));
    }
}
