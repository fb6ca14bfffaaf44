//! What the edge does about a region that refuses work for load
//! ([`Outcome::refused_for_load`](super::outcome::Outcome::refused_for_load)): a **429** (API
//! Gateway's throttle, which the infra sets to the region's share of N−1 capacity; the
//! regional itself never answers 429), a 503 its function marks `x-region-limit` (its table
//! kept throttling), or a 5xx API Gateway or Lambda gave without the function (Lambda's
//! concurrency used up). The edge must not push such a region past its limit, with its own
//! retries or by passing clients' re-sends on to it:
//!
//! - After a refusal the region is *refusing* for `refusal_hold_ms`, and as long as its first
//!   attempts are being shed: no retry and no hedge goes to it (a first attempt still may, as
//!   below).
//! - First attempts to it are **shed** at the edge in the share
//!   `max(0, (requests − shed_k × accepted) / (requests + 1))` over the last `shed_window_ms`
//!   (client-side adaptive throttling, Google SRE book, "Handling Overload"), where `requests`
//!   counts what the edge meant to send it (answered or shed) and `accepted` its answers that
//!   were not refusals. The region then gets about `shed_k` times what it accepts (1.1 by
//!   default: the 10 % over its limit are how the edge learns the limit still holds), whatever
//!   its clients' demand, their re-sends included. A shed request goes to the next region of
//!   its plan; when there is none the edge answers 503 `regions_overloaded` itself, and the
//!   client's re-send after `Retry-After` costs the region nothing.
//! - Once a whole window passes without a refusal, nothing is shed: a region that recovered
//!   (or whose load went elsewhere) gets all of its traffic back within `shed_window_ms`.
//!
//! Shedding is spread evenly by an accumulator, not drawn at random, so every adapter (the
//! Worker, the simulator, the timelines) sheds the same requests.

use super::Millis;
use super::config::Settings;
use super::window::CountWindow;

/// One region's recent refusals, as this isolate saw them.
#[derive(Debug, Clone, Default)]
pub struct Overload {
    /// Requests meant for the region (answered or shed), and the accepted answers among them.
    window: CountWindow,
    last_refusal: Option<Millis>,
    /// Shed share accumulated since the last shed request.
    credit: f64,
}

impl Overload {
    /// An answer from the region (`refused`: a refusal for load). Transport failures are
    /// health's business.
    pub fn record_answer(&mut self, now: Millis, refused: bool, settings: &Settings) {
        self.window.add(now, !refused, settings.shed_window_ms);
        if refused {
            self.last_refusal = Some(now);
        }
    }

    /// Whether the region refused work within the last `refusal_hold_ms`.
    pub fn refusing(&self, now: Millis, settings: &Settings) -> bool {
        self.refused_within(now, settings.refusal_hold_ms)
    }

    /// Whether the region is at its limit: refusing, or its first attempts being shed. No
    /// retry or hedge goes to it.
    pub fn at_limit(&self, now: Millis, settings: &Settings) -> bool {
        self.refusing(now, settings) || self.shed_share(now, settings) > 0.0
    }

    fn refused_within(&self, now: Millis, ms: u64) -> bool {
        self.last_refusal
            .is_some_and(|at| now.saturating_sub(at) < ms)
    }

    /// The share of first attempts to shed now (0 when shedding is off, or when nothing was
    /// refused within the window).
    pub fn shed_share(&self, now: Millis, settings: &Settings) -> f64 {
        if settings.shed_k <= 0.0 || !self.refused_within(now, settings.shed_window_ms) {
            return 0.0;
        }
        let (requests, accepted) = self.window.counts(now);
        let requests = f64::from(requests);
        ((requests - settings.shed_k * f64::from(accepted)) / (requests + 1.0)).clamp(0.0, 1.0)
    }

    /// Whether this first attempt is shed. A shed request counts as a request the region did
    /// not accept; one sent counts when its answer comes.
    pub fn shed(&mut self, now: Millis, settings: &Settings) -> bool {
        let share = self.shed_share(now, settings);
        if share <= 0.0 {
            self.credit = 0.0;
            return false;
        }
        self.credit += share;
        if self.credit < 1.0 {
            return false;
        }
        self.credit -= 1.0;
        self.window.add(now, false, settings.shed_window_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::default()
    }

    fn k(shed_k: f64) -> Settings {
        Settings {
            shed_k,
            ..Settings::default()
        }
    }

    /// Feeds `n` answers at `now`, every `refused_every`-th a refusal (0: none).
    fn answers(o: &mut Overload, now: Millis, n: u32, refused_every: u32, s: &Settings) {
        for i in 0..n {
            o.record_answer(now, refused_every > 0 && i % refused_every == 0, s);
        }
    }

    #[test]
    fn a_region_that_never_refused_gets_every_request() {
        let mut o = Overload::default();
        answers(&mut o, 0, 100, 0, &settings());
        assert_eq!(o.shed_share(500, &settings()), 0.0);
        assert!((0..100).all(|_| !o.shed(500, &settings())));
        assert!(!o.at_limit(500, &settings()));
    }

    #[test]
    fn with_k_1_sheds_the_share_the_region_refused() {
        let s = k(1.0);
        let mut o = Overload::default();
        // One answer in four was a 429.
        answers(&mut o, 1_000, 400, 4, &s);
        let share = o.shed_share(1_500, &s);
        assert!((share - 0.25).abs() < 0.01, "{share}");
        let shed = (0..100).filter(|_| o.shed(1_500, &s)).count();
        assert!((20..=30).contains(&shed), "{shed}");
    }

    /// The region gets about k times what it accepts, whatever the demand: a region admitting
    /// `capacity` a second, asked for `demand` a second.
    fn sent_per_second(s: &Settings, capacity: u32, demand: u32) -> u32 {
        let mut o = Overload::default();
        let mut last = 0;
        for second in 0..60u64 {
            let mut sent = 0;
            for i in 0..demand {
                let now = second * 1000 + u64::from(i) * 1000 / u64::from(demand);
                if !o.shed(now, s) {
                    sent += 1;
                    o.record_answer(now, sent > capacity, s);
                }
            }
            last = sent;
        }
        last
    }

    #[test]
    fn the_region_gets_about_k_times_what_it_accepts() {
        for demand in [120, 200, 400] {
            let sent = sent_per_second(&settings(), 100, demand);
            assert!((105..=115).contains(&sent), "demand {demand}: sent {sent}");
            let sent = sent_per_second(&k(2.0), 100, demand);
            assert!(
                (185..=215).contains(&sent) || demand < 200,
                "k 2, demand {demand}: {sent}"
            );
        }
        // Below the limit nothing is shed.
        assert_eq!(sent_per_second(&settings(), 100, 90), 90);
    }

    #[test]
    fn a_region_that_stops_refusing_gets_everything_back_within_the_window() {
        let s = settings();
        let mut o = Overload::default();
        // Every answer refused for a second: nearly everything is shed.
        answers(&mut o, 0, 50, 1, &s);
        let shed = (0..50).filter(|i| o.shed(1_000 + i * 20, &s)).count();
        assert!(shed >= 45, "{shed}");
        // The region recovers; what little is still sent is accepted. One window after the last
        // refusal nothing is shed.
        for t in (2_000..s.shed_window_ms).step_by(20) {
            if !o.shed(t, &s) {
                o.record_answer(t, false, &s);
            }
        }
        assert!((0..100).all(|i| !o.shed(s.shed_window_ms + i * 10, &s)));
    }

    #[test]
    fn shedding_off_with_k_zero() {
        let s = k(0.0);
        let mut o = Overload::default();
        answers(&mut o, 0, 10, 1, &s);
        assert!(!o.shed(0, &s));
        // The refusal hold still keeps retries away.
        assert!(o.refusing(0, &s) && o.at_limit(0, &s));
    }

    #[test]
    fn the_refusal_hold_ends() {
        let s = settings();
        let mut o = Overload::default();
        answers(&mut o, 0, 10, 1, &s);
        assert!(o.refusing(s.refusal_hold_ms - 1, &s));
        assert!(!o.refusing(s.refusal_hold_ms, &s));
    }
}
