//! The request's deadline, as the edge sends it: `x-tandem-deadline-ms` is how many
//! milliseconds the edge will wait for this attempt. The middleware turns it into an instant
//! (less a margin for the answer's way back) that every DynamoDB call in the request is bounded
//! by: a call that cannot finish in time fails with [`Expired`] (504 `deadline_exceeded`, which
//! the edge retries in another region), and no write starts once the deadline has passed. Without
//! the header only the SDK's own timeouts apply.
//!
//! Never reads anything but the header and the monotonic clock.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The header the edge sets on every attempt.
pub const HEADER: &str = "x-tandem-deadline-ms";
/// Longest deadline taken from the header (anything larger is clamped to this).
pub const MAX_MS: u64 = 60_000;
/// A write needs at least this much time left to be started.
pub const MIN_WRITE_MS: u64 = 20;

tokio::task_local! {
    static DEADLINE: Option<Instant>;
}

/// The time this request's work must be done by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's deadline passed")]
pub struct Expired;

/// The margin kept for the answer to reach the edge: a tenth of the budget, 10 to 100 ms.
pub fn margin_ms(budget_ms: u64) -> u64 {
    (budget_ms / 10).clamp(10, 100)
}

/// Parses the header value: whole milliseconds, 1 to [`MAX_MS`] (larger is clamped); anything
/// else is ignored (`None`), as if there were no header.
pub fn parse(raw: &str) -> Option<u64> {
    let ms: u64 = raw.trim().parse().ok()?;
    (ms > 0).then_some(ms.min(MAX_MS))
}

/// Middleware: sets the request's deadline from the header, for everything the handler awaits.
pub async fn track(request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let deadline = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse)
        .map(|ms| arrived + Duration::from_millis(ms.saturating_sub(margin_ms(ms))));
    DEADLINE.scope(deadline, next.run(request)).await
}

/// Time left before the deadline (`None`: no deadline; zero: passed).
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| *d)
        .ok()
        .flatten()
        .map(|d| d.saturating_duration_since(Instant::now()))
}

/// Runs `work` within the deadline. A write is not started with less than [`MIN_WRITE_MS`]
/// left; a call still running at the deadline is dropped (for a write, DynamoDB may still
/// apply it: see the README on the indeterminate window).
pub async fn bounded<T>(write: bool, work: impl Future<Output = T>) -> Result<T, Expired> {
    let Some(left) = remaining() else {
        return Ok(work.await);
    };
    let needed = Duration::from_millis(if write { MIN_WRITE_MS } else { 1 });
    if left < needed {
        return Err(Expired);
    }
    tokio::time::timeout(left, work).await.map_err(|_| Expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        assert_eq!(parse("1500"), Some(1500));
        assert_eq!(parse(" 20 "), Some(20));
        assert_eq!(parse("999999999"), Some(MAX_MS));
        for bad in ["", "0", "-5", "1.5", "soon"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(margin_ms(2000), 100);
        assert_eq!(margin_ms(500), 50);
        assert_eq!(margin_ms(50), 10);
    }

    #[tokio::test]
    async fn work_is_bounded_and_late_writes_never_start() {
        let soon = Some(Instant::now() + Duration::from_millis(30));
        let slow = DEADLINE.scope(soon, async {
            bounded(false, tokio::time::sleep(Duration::from_millis(200))).await
        });
        assert_eq!(slow.await, Err(Expired));

        let passed = Some(Instant::now());
        let started = std::sync::atomic::AtomicBool::new(false);
        let write = DEADLINE.scope(passed, async {
            bounded(true, async {
                started.store(true, std::sync::atomic::Ordering::SeqCst)
            })
            .await
        });
        assert_eq!(write.await, Err(Expired));
        assert!(
            !started.load(std::sync::atomic::Ordering::SeqCst),
            "the write never started"
        );

        let none = DEADLINE.scope(None, async { bounded(true, async { 7 }).await });
        assert_eq!(none.await, Ok(7));
    }
}
