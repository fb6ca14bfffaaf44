//! What one attempt produced, and what it means: for the region's health, and for whether the
//! request may go to another region.

/// Header a region's function puts on an answer that refuses the request for load (its value
/// names the limit, e.g. `dynamodb`).
pub const LIMIT_HEADER: &str = "x-region-limit";

/// The result of sending a request to a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The region answered with this status (`region_status`: its `x-region-status` header;
    /// `at_limit`: its function marked the answer as a refusal for load with `x-region-limit`,
    /// as it does when its table keeps throttling).
    Answered {
        status: u16,
        region_status: Option<u16>,
        at_limit: bool,
    },
    /// The region refused a request the edge had signed (403): its keys or clock disagree with
    /// the edge's. A misconfigured region, so a failure, never an answer for the client.
    Refused,
    /// No connection or the connection broke (refused, reset, DNS).
    ConnectError,
    /// No answer within the per-try timeout.
    Timeout,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Give this answer to the client.
    Deliver,
    /// Try another region (if method, budget and deadline allow). If none serves, the client
    /// gets the edge's own 503, not this answer.
    TryElsewhere,
}

impl Outcome {
    /// What an answer means: a 403 to a request the edge signed (`signed`) is the region
    /// refusing the edge's signature ([`Outcome::Refused`]); anything else is an answer. The
    /// `x-region-limit` marker (`at_limit`) counts on a 503 only, the one answer a region marks:
    /// on any other status it would take a region that answers (or fails) for a full one.
    pub fn of_answer(
        status: u16,
        region_status: Option<u16>,
        at_limit: bool,
        signed: bool,
    ) -> Self {
        if signed && status == 403 {
            Self::Refused
        } else {
            Self::Answered {
                status,
                region_status,
                at_limit: at_limit && status == 503,
            }
        }
    }

    /// True when the attempt counts against the region's health. A refusal the function marked
    /// as its limit does not: the region works, it is full (see [`Outcome::refused_for_load`]).
    pub fn is_failure(&self) -> bool {
        match self {
            Self::Answered { at_limit: true, .. } => false,
            Self::Answered { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            Self::Refused | Self::ConnectError | Self::Timeout => true,
        }
    }

    /// True when the region refused this request for load, so that no retry or hedge should go
    /// to it for a while and its first attempts may be shed (`overload`):
    /// - a **429**: API Gateway's throttle;
    /// - an answer the function marked `x-region-limit` (its table kept throttling);
    /// - a **500, 502 or 503 the function did not write** (no `x-region-status`): API Gateway
    ///   or Lambda answered for it, as when Lambda's concurrency is used up. A crash of the
    ///   function looks the same from here; for that region, too, retries are wasted.
    ///
    /// A 504 is not one: a timeout says the region is slow, which health and hedging handle.
    pub fn refused_for_load(&self) -> bool {
        match *self {
            Self::Answered {
                status,
                region_status,
                at_limit,
            } => {
                at_limit
                    || status == 429
                    || (region_status.is_none() && matches!(status, 500 | 502 | 503))
            }
            Self::Refused | Self::ConnectError | Self::Timeout => false,
        }
    }

    /// Whether a 500 goes to another region whatever the region's health: for a read (sending
    /// it again harms nothing, and a region failing a share of its reads with 500s while its
    /// health says 200 must not show them), or when the function did not write it (no
    /// `x-region-status`: API Gateway's, the function crashed or never ran, as a timeout
    /// would). A write's 500 from the function itself stays [`Outcome::verdict`]'s to judge.
    pub fn is_500_worth_another_region(&self, read: bool) -> bool {
        matches!(self, Self::Answered { status: 500, region_status, .. }
            if read || region_status.is_none())
    }

    /// Deliver or try elsewhere. A 500 goes elsewhere only when the region's health also fails
    /// (`region_unhealthy`): otherwise it is most likely this request's own fault (but see
    /// [`Outcome::is_500_worth_another_region`]).
    pub fn verdict(&self, region_unhealthy: bool) -> Verdict {
        match self {
            Self::Answered {
                status: 502..=504, ..
            } => Verdict::TryElsewhere,
            Self::Answered { status: 500, .. } if region_unhealthy => Verdict::TryElsewhere,
            Self::Answered { .. } => Verdict::Deliver,
            Self::Refused | Self::ConnectError | Self::Timeout => Verdict::TryElsewhere,
        }
    }
}

/// Whether a hedge's answer may end the race before the first region answers. Only a success:
/// a 4xx from the hedge may come from a replica that has not caught up (a 404 for an item just
/// written in the first region), so the first region's answer is awaited instead.
pub fn hedge_may_win(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Answered {
            status: 200..=399,
            ..
        }
    )
}

/// Whether a request with this method may be sent again to another region. POST only with an
/// `Idempotency-Key` (the edge adds one to every POST that lacks it).
pub fn method_is_retryable(method: &str, has_idempotency_key: bool) -> bool {
    match method {
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" => true,
        "POST" => has_idempotency_key,
        _ => false,
    }
}

/// Whether a request is a read (may be hedged, follows affinity).
pub fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}

/// Whether a request is a write whose success should pin the writer's reads to its region.
pub fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "DELETE" | "PATCH")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer the region's function wrote (it carries `x-region-status`).
    fn answered(status: u16) -> Outcome {
        Outcome::Answered {
            status,
            region_status: Some(200),
            at_limit: false,
        }
    }

    /// An answer API Gateway or Lambda gave without the function (no `x-region-status`).
    fn from_platform(status: u16) -> Outcome {
        Outcome::Answered {
            status,
            region_status: None,
            at_limit: false,
        }
    }

    #[test]
    fn gateway_errors_and_transport_failures_go_elsewhere() {
        for o in [
            answered(502),
            answered(503),
            answered(504),
            Outcome::ConnectError,
            Outcome::Timeout,
        ] {
            assert_eq!(o.verdict(false), Verdict::TryElsewhere, "{o:?}");
            assert!(o.is_failure());
        }
    }

    #[test]
    fn a_refused_signature_is_the_region_failing_not_an_answer() {
        let refused = Outcome::of_answer(403, None, false, true);
        assert_eq!(refused, Outcome::Refused);
        assert!(refused.is_failure());
        assert_eq!(refused.verdict(false), Verdict::TryElsewhere);
        assert!(!hedge_may_win(&refused));
        // Unsigned (origin auth off), a 403 is the region's answer to this request.
        assert_eq!(
            Outcome::of_answer(403, Some(200), false, false),
            answered(403)
        );
        assert!(!Outcome::of_answer(200, Some(404), false, true).is_failure());
    }

    #[test]
    fn client_errors_are_delivered_and_healthy() {
        for s in [200, 201, 204, 400, 404, 409, 412, 413, 429] {
            assert_eq!(answered(s).verdict(true), Verdict::Deliver);
            assert!(!answered(s).is_failure());
        }
    }

    #[test]
    fn a_500_moves_only_when_the_region_is_unhealthy() {
        assert_eq!(answered(500).verdict(false), Verdict::Deliver);
        assert_eq!(answered(500).verdict(true), Verdict::TryElsewhere);
        assert!(answered(500).is_failure());
    }

    #[test]
    fn refusals_for_load_are_429s_marked_answers_and_the_platforms_5xx() {
        let marked = Outcome::of_answer(503, Some(200), true, true);
        assert!(marked.refused_for_load());
        assert!(!marked.is_failure(), "a full region is not a failing one");
        assert_eq!(marked.verdict(false), Verdict::TryElsewhere);
        assert!(answered(429).refused_for_load());
        assert!(from_platform(429).refused_for_load());
        for s in [500, 502, 503] {
            assert!(from_platform(s).refused_for_load(), "{s}");
            assert!(from_platform(s).is_failure(), "{s}: a crash looks the same");
            // The function's own 5xx is a failure (gray, or its table down), not its limit.
            assert!(!answered(s).refused_for_load(), "{s}");
        }
        assert!(!from_platform(504).refused_for_load());
        // The marker means something on a 503 only.
        for s in [200, 201, 404, 500, 504] {
            let marked = Outcome::of_answer(s, Some(200), true, true);
            assert!(!marked.refused_for_load(), "{s}");
            assert_eq!(marked.is_failure(), matches!(s, 500 | 504), "{s}");
        }
        for o in [
            answered(200),
            Outcome::Timeout,
            Outcome::ConnectError,
            Outcome::Refused,
        ] {
            assert!(!o.refused_for_load(), "{o:?}");
        }
    }

    #[test]
    fn only_a_successful_hedge_ends_the_race() {
        assert!(hedge_may_win(&answered(200)));
        assert!(hedge_may_win(&answered(304)));
        assert!(!hedge_may_win(&answered(404)));
        assert!(!hedge_may_win(&answered(503)));
        assert!(!hedge_may_win(&Outcome::Timeout));
    }

    #[test]
    fn post_needs_a_key() {
        assert!(!method_is_retryable("POST", false));
        assert!(method_is_retryable("POST", true));
        assert!(method_is_retryable("DELETE", false));
        assert!(!method_is_retryable("PATCH", true));
    }
}
