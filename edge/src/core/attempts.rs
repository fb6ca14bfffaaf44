//! The attempt loop of one request, as decisions only: which region to send to next and with
//! what timeout, whether to arm a hedge, whether a finished attempt's answer goes to the client,
//! and whether the fallback origin gets its one try. The Worker adapter (and the native timeline
//! simulator) do the sending and timing; this says what to do, so both run the same policy.

use super::Millis;
use super::config::Settings;
use super::outcome::{Outcome, Verdict};
use super::router::{EdgeRouter, Plan};

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send to `region` within `timeout_ms`. With `hedge = Some((delay_ms, other))`, also send to
    /// `other` if the first has not answered after `delay_ms` (and [`EdgeRouter::allow_retry`]
    /// grants it); report that with [`AttemptLoop::hedge_sent`].
    Send {
        region: usize,
        timeout_ms: u64,
        hedge: Option<(u64, usize)>,
    },
    /// Send once to the fallback origin within `timeout_ms`.
    Fallback { timeout_ms: u64 },
    /// Nothing more to try: answer with what was delivered, or the edge's 503.
    Stop,
}

/// The state of one request's attempts.
#[derive(Debug, Clone)]
pub struct AttemptLoop {
    plan: Plan,
    deadline: Millis,
    per_try_timeout_ms: u64,
    has_fallback: bool,
    next: usize,
    skip: Option<usize>,
    attempts: u32,
    delivered: bool,
    done: bool,
}

impl AttemptLoop {
    /// The loop for `plan`, for a request that arrived at `started`.
    pub fn new(plan: Plan, settings: &Settings, started: Millis, has_fallback: bool) -> Self {
        Self {
            plan,
            deadline: started + settings.deadline_ms,
            per_try_timeout_ms: settings.per_try_timeout_ms,
            has_fallback,
            next: 0,
            skip: None,
            attempts: 0,
            delivered: false,
            done: false,
        }
    }

    /// Attempts sent so far (hedges and the fallback included).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next step at `now`. Retries after the first attempt, and the fallback after any
    /// attempt, need the request to be retryable and the retry budget to allow them; nothing
    /// starts after the deadline.
    pub fn next_step(&mut self, router: &mut EdgeRouter, now: Millis) -> Step {
        if self.done || self.delivered || now >= self.deadline {
            self.done = true;
            return Step::Stop;
        }
        while self
            .plan
            .order
            .get(self.next)
            .is_some_and(|&r| Some(r) == self.skip)
        {
            self.next += 1;
        }
        let timeout_ms = self.per_try_timeout_ms.min(self.deadline - now);
        let target = self.plan.order.get(self.next).copied();
        // (Short-circuit: the budget is only asked when there is something left to send.)
        let nothing_left = target.is_none() && !self.has_fallback;
        if nothing_left
            || !(self.attempts == 0 || (self.plan.retryable && router.allow_retry(now, false)))
        {
            self.done = true;
            return Step::Stop;
        }
        let Some(region) = target else {
            self.done = true;
            router.on_fallback();
            self.attempts += 1;
            return Step::Fallback { timeout_ms };
        };
        let hedge = match (self.next, self.plan.hedge_after_ms, self.plan.order.get(1)) {
            (0, Some(delay), Some(&other)) if delay < timeout_ms => Some((delay, other)),
            _ => None,
        };
        self.next += 1;
        self.attempts += 1;
        router.on_attempt(region, now);
        Step::Send {
            region,
            timeout_ms,
            hedge,
        }
    }

    /// The hedge armed by the last [`Step::Send`] was sent to `other` (at `now`).
    pub fn hedge_sent(&mut self, router: &mut EdgeRouter, other: usize, now: Millis) {
        self.attempts += 1;
        self.skip = Some(other);
        router.on_attempt(other, now);
    }

    /// Reports a finished attempt on `region`; true when its answer is the one to deliver.
    /// (`jitter`: a random number in `0.0..1.0` for the ejection time.)
    pub fn report(
        &mut self,
        router: &mut EdgeRouter,
        region: usize,
        outcome: Outcome,
        latency_ms: f64,
        now: Millis,
        jitter: f64,
    ) -> bool {
        let verdict = router.record(region, outcome, latency_ms, now, jitter);
        let answered = matches!(outcome, Outcome::Answered { .. });
        let deliver =
            !self.delivered && answered && (verdict == Verdict::Deliver || !self.plan.retryable);
        if deliver || !self.plan.retryable {
            self.delivered |= deliver;
            self.done = true;
        }
        deliver
    }

    /// Reports the fallback's outcome; true when its answer is the one to deliver.
    pub fn report_fallback(&mut self, outcome: Outcome) -> bool {
        let deliver = matches!(outcome, Outcome::Answered { .. })
            && outcome.verdict(false) == Verdict::Deliver;
        self.delivered |= deliver;
        deliver
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::EdgeConfig;
    use crate::core::router::RequestFacts;

    fn router(routing: &str, fallback: bool) -> EdgeRouter {
        let regions = r#"[{"name":"a","origin":"http://host-a","lat":0,"lon":0},
                          {"name":"b","origin":"http://host-b","lat":0,"lon":10}]"#;
        EdgeRouter::new(
            EdgeConfig::from_vars(|name| match name {
                "REGIONS" => Some(regions.to_owned()),
                "ROUTING" => Some(routing.to_owned()),
                "FALLBACK_ORIGIN" if fallback => Some("https://fallback.example".to_owned()),
                _ => None,
            })
            .unwrap(),
        )
    }

    fn facts(method: &str) -> RequestFacts<'_> {
        RequestFacts {
            method,
            has_idempotency_key: false,
            ..RequestFacts::default()
        }
    }

    const DOWN: Outcome = Outcome::ConnectError;
    const OK: Outcome = Outcome::Answered {
        status: 200,
        region_status: None,
    };

    #[test]
    fn retries_then_the_fallback_once_then_stops() {
        let mut r = router(r#"{"hedge":false}"#, true);
        let plan = r.plan(&facts("GET"), 0);
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 0, true);
        assert!(matches!(
            l.next_step(&mut r, 0),
            Step::Send {
                region: 0,
                timeout_ms: 2000,
                ..
            }
        ));
        assert!(!l.report(&mut r, 0, DOWN, 1.0, 1, 0.0));
        assert!(matches!(
            l.next_step(&mut r, 1),
            Step::Send { region: 1, .. }
        ));
        assert!(!l.report(&mut r, 1, DOWN, 1.0, 2, 0.0));
        assert_eq!(l.next_step(&mut r, 2), Step::Fallback { timeout_ms: 2000 });
        assert!(l.report_fallback(OK));
        assert_eq!(l.next_step(&mut r, 3), Step::Stop);
        assert_eq!(l.attempts(), 3);
    }

    #[test]
    fn nothing_starts_after_the_deadline_and_timeouts_shrink_towards_it() {
        let mut r = router(r#"{"hedge":false,"deadline_ms":3000}"#, true);
        let plan = r.plan(&facts("GET"), 0);
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 0, true);
        l.next_step(&mut r, 0);
        l.report(&mut r, 0, Outcome::Timeout, 2000.0, 2000, 0.0);
        assert!(matches!(
            l.next_step(&mut r, 2000),
            Step::Send {
                region: 1,
                timeout_ms: 1000,
                ..
            }
        ));
        l.report(&mut r, 1, Outcome::Timeout, 1000.0, 3000, 0.0);
        assert_eq!(
            l.next_step(&mut r, 3000),
            Step::Stop,
            "no fallback after the deadline"
        );
    }

    #[test]
    fn a_post_without_a_key_is_sent_once_and_its_answer_delivered() {
        let mut r = router(r#"{"hedge":false}"#, true);
        let plan = r.plan(&facts("POST"), 0);
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 0, true);
        l.next_step(&mut r, 0);
        let gateway = Outcome::Answered {
            status: 503,
            region_status: None,
        };
        assert!(
            l.report(&mut r, 0, gateway, 1.0, 1, 0.0),
            "not retryable: its answer stands"
        );
        assert_eq!(l.next_step(&mut r, 1), Step::Stop);
    }

    #[test]
    fn an_empty_budget_stops_retries_and_the_fallback() {
        let mut r = router(
            r#"{"hedge":false,"retry_ratio":0,"retry_floor_per_s":0}"#,
            true,
        );
        while r.allow_retry(0, false) {}
        let plan = r.plan(&facts("GET"), 0);
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 0, true);
        l.next_step(&mut r, 0);
        l.report(&mut r, 0, DOWN, 1.0, 1, 0.0);
        assert_eq!(l.next_step(&mut r, 1), Step::Stop);
        assert_eq!(l.attempts(), 1);
    }

    #[test]
    fn a_hedged_region_is_not_tried_again() {
        let mut r = router(r#"{"hedge_delay_ms":100}"#, false);
        let plan = r.plan(&facts("GET"), 0);
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 0, false);
        let Step::Send {
            hedge: Some((100, other)),
            ..
        } = l.next_step(&mut r, 0)
        else {
            panic!("the first read should arm a hedge");
        };
        l.hedge_sent(&mut r, other, 100);
        l.report(&mut r, 0, DOWN, 1.0, 150, 0.0);
        l.report(&mut r, other, DOWN, 1.0, 160, 0.0);
        assert_eq!(
            l.next_step(&mut r, 160),
            Step::Stop,
            "both regions were tried"
        );
        assert_eq!(l.attempts(), 2);
    }
}
