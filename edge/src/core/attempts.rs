//! The attempt loop of one request, as decisions only: which region to send to next and with
//! what timeout, whether to send the armed hedge, which finished attempt's answer goes to the
//! client (the hedge race included), what an aborted loser reports, and whether the fallback
//! origin gets its one try. The Worker adapter (and the native timeline simulator) only send,
//! time and abort; both run this same policy.
//!
//! The race, when a read is hedged: a success (2xx/3xx) ends it, whichever attempt it comes
//! from; a failure, or a 500, waits for the other attempt; the first region's 4xx ends it, a
//! hedge's 4xx waits for the first region (another replica may not have the item yet) and is
//! delivered only if the first then fails. The loser is aborted and reported with
//! [`AttemptLoop::abandoned`]: a latency sample (it took at least that long), not a failure,
//! unless the per-try timeout had passed.

use super::Millis;
use super::config::Settings;
use super::health::Availability;
use super::outcome::{self, Outcome, Verdict};
use super::router::{EdgeRouter, Plan};

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send to `region` within `timeout_ms`. With `hedge = Some((delay_ms, other))`: if it has
    /// not answered after `delay_ms`, ask [`AttemptLoop::hedge_due`] whether to send a copy to
    /// `other`.
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

/// What a finished attempt means for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Give the client the answer of this region (the attempt just reported, or one reported
    /// earlier and held); abort whatever is still in flight and report it as abandoned.
    Deliver(usize),
    /// Another attempt is still in flight: wait for it.
    Wait,
    /// Nothing in flight and nothing to deliver: ask [`AttemptLoop::next_step`].
    Continue,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    region: usize,
    sent_at: Millis,
    hedge: bool,
}

/// The state of one request's attempts.
#[derive(Debug, Clone)]
pub struct AttemptLoop {
    plan: Plan,
    deadline: Millis,
    per_try_timeout_ms: u64,
    has_fallback: bool,
    next: usize,
    /// Regions already sent to (a hedged region is not tried again).
    tried: Vec<usize>,
    in_flight: Vec<InFlight>,
    /// An answer kept while the other attempt of a race is awaited (a hedge's 4xx, a 500), or
    /// while the plan's authoritative region is asked about a 404.
    held: Option<usize>,
    /// A 404 is held and the authoritative region is to be asked: that attempt is a check of
    /// the client's own write, not a retry, so the retry budget does not gate it.
    confirming: bool,
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
            tried: Vec::new(),
            in_flight: Vec::new(),
            held: None,
            confirming: false,
            attempts: 0,
            delivered: false,
            done: false,
        }
    }

    /// Whether every region of the plan shed the request (the edge answers
    /// `regions_overloaded`).
    pub fn overloaded(&self) -> bool {
        self.plan.overloaded
    }

    /// At [`Step::Stop`] with nothing delivered: the region whose held answer to give the
    /// client (a 500 that was tried elsewhere in vain, a 404 whose check could not be sent)
    /// rather than the edge's own 503.
    pub fn held_at_stop(&self) -> Option<usize> {
        self.held.filter(|_| !self.delivered)
    }

    /// Attempts sent so far (hedges and the fallback included).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next step at `now` (called when nothing is in flight). Retries after the first
    /// attempt, and the fallback after any attempt, need the request to be retryable and the
    /// retry budget to allow them; nothing starts after the deadline.
    pub fn next_step(&mut self, router: &mut EdgeRouter, now: Millis) -> Step {
        if self.done || self.delivered || now >= self.deadline {
            self.done = true;
            return Step::Stop;
        }
        let confirming = std::mem::take(&mut self.confirming);
        // A retry skips regions already tried and regions at their limit (a 429 within
        // `refusal_hold_ms`, or first attempts being shed): the edge never retries into a
        // region's limit. (The check of a held 404 with its authoritative region is not a retry.)
        let retry = self.attempts > 0 && !confirming;
        while self
            .plan
            .order
            .get(self.next)
            .is_some_and(|&r| self.tried.contains(&r) || (retry && router.at_limit(r, now)))
        {
            self.next += 1;
        }
        let timeout_ms = self.per_try_timeout_ms.min(self.deadline - now);
        let target = self.plan.order.get(self.next).copied();
        // (Short-circuit: the budget is only asked when there is something left to send.) A
        // request every region shed does not go to the fallback: it leads to the same regions.
        let nothing_left = target.is_none() && (!self.has_fallback || self.plan.overloaded);
        if nothing_left
            || !(self.attempts == 0
                || confirming
                || (self.plan.retryable && router.allow_retry(now, false)))
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
        self.send(router, region, now, false);
        Step::Send {
            region,
            timeout_ms,
            hedge,
        }
    }

    fn send(&mut self, router: &mut EdgeRouter, region: usize, now: Millis, hedge: bool) {
        self.attempts += 1;
        self.tried.push(region);
        self.in_flight.push(InFlight {
            region,
            sent_at: now,
            hedge,
        });
        router.on_attempt(region, now);
    }

    /// The hedge delay of the last [`Step::Send`] passed with its attempt still in flight:
    /// whether to send the copy to `other` now. Not to a region due its trial (its real answer
    /// must decide), nor to one at its limit, nor beyond the retry budget. When it says yes, the
    /// hedge counts as sent.
    pub fn hedge_due(&mut self, router: &mut EdgeRouter, other: usize, now: Millis) -> bool {
        let trial_due =
            router.availability(other, now, &router.config().settings) == Availability::TrialDue;
        if self.done
            || self.tried.contains(&other)
            || trial_due
            || router.at_limit(other, now)
            || !router.allow_retry(now, true)
        {
            return false;
        }
        self.send(router, other, now, true);
        true
    }

    /// Reports a finished attempt on `region` and says what the request does now.
    /// (`jitter`: a random number in `0.0..1.0` for the ejection time.)
    pub fn report(
        &mut self,
        router: &mut EdgeRouter,
        region: usize,
        outcome: Outcome,
        latency_ms: f64,
        now: Millis,
        jitter: f64,
    ) -> Report {
        let was_hedge = match self.in_flight.iter().position(|f| f.region == region) {
            Some(i) => self.in_flight.remove(i).hedge,
            None => false,
        };
        let verdict = match router.record(region, outcome, latency_ms, now, jitter) {
            Verdict::Deliver if outcome.is_500_worth_another_region(self.plan.read) => {
                Verdict::TryElsewhere
            }
            verdict => verdict,
        };
        let answered = matches!(outcome, Outcome::Answered { .. });
        if self.delivered {
            return Report::Continue;
        }
        let deliverable = answered && (verdict == Verdict::Deliver || !self.plan.retryable);
        let is_500 = matches!(outcome, Outcome::Answered { status: 500, .. });
        // A read pinned to a gray region went elsewhere first: a 404 there may only mean the
        // client's last write has not replicated yet, so the authoritative region is asked
        // before the 404 is believed (it is delivered if that region fails).
        if let Some(authority) = self.plan.authoritative
            && matches!(outcome, Outcome::Answered { status: 404, .. })
            && region != authority
            && !self.tried.contains(&authority)
            && self.in_flight.is_empty()
        {
            self.held = Some(region);
            self.confirming = true;
            return Report::Continue;
        }
        let deliver = if self.in_flight.is_empty() {
            if deliverable { Some(region) } else { self.held }
        } else if outcome::hedge_may_win(&outcome) || (deliverable && !was_hedge && !is_500) {
            // A success ends the race whichever attempt it is; so does the first region's own
            // 4xx (the hedge might read a replica that has not caught up).
            Some(region)
        } else {
            // A failure, a 500, or a hedge's 4xx: the other attempt may still succeed.
            if answered && (deliverable || is_500) && self.held.is_none() {
                self.held = Some(region);
            }
            return Report::Wait;
        };
        match deliver {
            Some(r) => {
                self.delivered = true;
                self.done = true;
                Report::Deliver(r)
            }
            None => {
                // A 500 tried elsewhere is still the answer if nothing better comes.
                if is_500 && self.held.is_none() {
                    self.held = Some(region);
                }
                if !self.plan.retryable {
                    self.done = true;
                }
                Report::Continue
            }
        }
    }

    /// Reports an attempt the adapter aborted because another one was delivered, at `now`: a
    /// latency sample for its region (it took at least this long), or a timeout if the per-try
    /// timeout had passed. Never a failure otherwise: a region merely slower than the hedge
    /// delay is not ejected by lost races.
    pub fn abandoned(&mut self, router: &mut EdgeRouter, region: usize, now: Millis, jitter: f64) {
        let Some(i) = self.in_flight.iter().position(|f| f.region == region) else {
            return;
        };
        let lost = self.in_flight.remove(i);
        let elapsed = now.saturating_sub(lost.sent_at);
        if elapsed >= self.per_try_timeout_ms {
            router.record(region, Outcome::Timeout, elapsed as f64, now, jitter);
        } else {
            router.record_lost_race(region, elapsed as f64, now);
        }
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
        region_status: Some(200),
        at_limit: false,
    };

    /// An answer the region's function wrote (it carries `x-region-status`).
    fn answered(status: u16) -> Outcome {
        Outcome::Answered {
            status,
            region_status: Some(200),
            at_limit: false,
        }
    }

    /// A read whose first attempt (region 0) is hedged to region 1 at 100 ms.
    fn hedged() -> (EdgeRouter, AttemptLoop) {
        let mut r = router(r#"{"hedge_delay_ms":100}"#, false);
        let plan = r.plan(&facts("GET"), 0);
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 0, false);
        assert!(matches!(
            l.next_step(&mut r, 0),
            Step::Send {
                region: 0,
                hedge: Some((100, 1)),
                ..
            }
        ));
        assert!(l.hedge_due(&mut r, 1, 100));
        (r, l)
    }

    #[test]
    fn a_hedges_success_beats_the_first_regions_500_that_came_first() {
        let (mut r, mut l) = hedged();
        assert_eq!(
            l.report(&mut r, 0, answered(500), 120.0, 120, 0.0),
            Report::Wait
        );
        assert_eq!(l.report(&mut r, 1, OK, 30.0, 130, 0.0), Report::Deliver(1));
        // Had the hedge failed too, the first region's 500 would have been delivered.
        let (mut r, mut l) = hedged();
        assert_eq!(
            l.report(&mut r, 0, answered(500), 120.0, 120, 0.0),
            Report::Wait
        );
        assert_eq!(
            l.report(&mut r, 1, DOWN, 30.0, 130, 0.0),
            Report::Deliver(0)
        );
    }

    /// An unhedged request's first attempt, to region 0.
    fn first_attempt(method: &str) -> (EdgeRouter, AttemptLoop) {
        let mut r = router(r#"{"hedge":false}"#, false);
        let plan = r.plan(&facts(method), 0);
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 0, false);
        assert!(matches!(
            l.next_step(&mut r, 0),
            Step::Send { region: 0, .. }
        ));
        (r, l)
    }

    #[test]
    fn a_healthy_regions_500_goes_elsewhere_for_a_read_and_is_the_answer_if_nothing_better() {
        // A read: the other region's 200 is delivered.
        let (mut r, mut l) = first_attempt("GET");
        assert_eq!(
            l.report(&mut r, 0, answered(500), 10.0, 10, 0.0),
            Report::Continue
        );
        assert!(matches!(
            l.next_step(&mut r, 10),
            Step::Send { region: 1, .. }
        ));
        assert_eq!(l.report(&mut r, 1, OK, 10.0, 20, 0.0), Report::Deliver(1));
        // The other region down too: the 500 is the answer, not the edge's 503.
        let (mut r, mut l) = first_attempt("GET");
        l.report(&mut r, 0, answered(500), 10.0, 10, 0.0);
        l.next_step(&mut r, 10);
        assert_eq!(l.report(&mut r, 1, DOWN, 10.0, 20, 0.0), Report::Deliver(0));
        // No retry allowed (the deadline passed): still the 500.
        let (mut r, mut l) = first_attempt("HEAD");
        l.report(&mut r, 0, answered(500), 10.0, 10, 0.0);
        assert_eq!(l.next_step(&mut r, 60_000), Step::Stop);
        assert_eq!(l.held_at_stop(), Some(0));
    }

    #[test]
    fn a_writes_500_goes_elsewhere_only_when_the_function_did_not_write_it() {
        // The function's own 500 to a PUT: delivered (most likely this request's fault).
        let (mut r, mut l) = first_attempt("PUT");
        assert_eq!(
            l.report(&mut r, 0, answered(500), 10.0, 10, 0.0),
            Report::Deliver(0)
        );
        // API Gateway's 500 (no `x-region-status`: the function crashed or never ran).
        let (mut r, mut l) = first_attempt("PUT");
        let platform = Outcome::Answered {
            status: 500,
            region_status: None,
            at_limit: false,
        };
        assert_eq!(
            l.report(&mut r, 0, platform, 10.0, 10, 0.0),
            Report::Continue
        );
        assert!(matches!(
            l.next_step(&mut r, 10),
            Step::Send { region: 1, .. }
        ));
        assert_eq!(l.report(&mut r, 1, OK, 10.0, 20, 0.0), Report::Deliver(1));
        assert_eq!(l.held_at_stop(), None, "delivered");
    }

    #[test]
    fn a_hedges_4xx_waits_for_the_first_region() {
        let (mut r, mut l) = hedged();
        assert_eq!(
            l.report(&mut r, 1, answered(404), 20.0, 120, 0.0),
            Report::Wait
        );
        assert_eq!(l.report(&mut r, 0, OK, 150.0, 150, 0.0), Report::Deliver(0));
        let (mut r, mut l) = hedged();
        assert_eq!(
            l.report(&mut r, 1, answered(404), 20.0, 120, 0.0),
            Report::Wait
        );
        assert_eq!(
            l.report(&mut r, 0, answered(503), 150.0, 150, 0.0),
            Report::Deliver(1),
            "the first failed: the hedge's answer is what there is"
        );
    }

    #[test]
    fn a_lost_race_is_a_latency_sample_not_a_failure() {
        let (mut r, mut l) = hedged();
        assert_eq!(l.report(&mut r, 1, OK, 20.0, 120, 0.0), Report::Deliver(1));
        l.abandoned(&mut r, 0, 120, 0.0);
        let first = &r.status(120).regions[0];
        assert_eq!(first.consecutive_failures, 0);
        assert_eq!(
            first.ewma_latency_ms,
            Some(120.0),
            "it took at least 120 ms"
        );
    }

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
        assert_eq!(l.report(&mut r, 0, DOWN, 1.0, 1, 0.0), Report::Continue);
        assert!(matches!(
            l.next_step(&mut r, 1),
            Step::Send { region: 1, .. }
        ));
        assert_eq!(l.report(&mut r, 1, DOWN, 1.0, 2, 0.0), Report::Continue);
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
            at_limit: false,
        };
        assert_eq!(
            l.report(&mut r, 0, gateway, 1.0, 1, 0.0),
            Report::Deliver(0),
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
        assert!(l.hedge_due(&mut r, other, 100));
        assert_eq!(l.report(&mut r, 0, DOWN, 1.0, 150, 0.0), Report::Wait);
        assert_eq!(
            l.report(&mut r, other, DOWN, 1.0, 160, 0.0),
            Report::Continue
        );
        assert_eq!(
            l.next_step(&mut r, 160),
            Step::Stop,
            "both regions were tried"
        );
        assert_eq!(l.attempts(), 2);
    }

    #[test]
    fn a_request_every_region_shed_stops_without_the_fallback() {
        let mut r = router("{}", true);
        // Both regions answered nothing but 429s.
        for region in [0, 1] {
            for _ in 0..20 {
                r.record(region, answered(429), 5.0, 0, 0.5);
            }
        }
        let plans: Vec<_> = (0..10).map(|_| r.plan(&facts("GET"), 100)).collect();
        let shed = plans.iter().filter(|p| p.overloaded).count();
        assert!(shed >= 8, "{shed} of 10 shed");
        let plan = plans.into_iter().find(|p| p.overloaded).unwrap();
        assert!(plan.order.is_empty());
        let mut l = AttemptLoop::new(plan, &r.config().settings.clone(), 100, true);
        assert!(l.overloaded());
        assert_eq!(l.next_step(&mut r, 100), Step::Stop);
        assert_eq!(l.attempts(), 0);
        assert_eq!(r.status(100).counters.fallbacks, 0);
        assert!(r.status(100).counters.overloaded >= 8);
    }
}
