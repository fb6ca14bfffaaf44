//! One client request: ask the core for a plan, send attempts (with per-try timeouts, a hedge
//! for slow reads, retries elsewhere), report every outcome back, and answer.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{Either, select};
use worker::{
    AbortController, Context, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    Result,
};

use super::{ensure_router, now_ms, random, reply, with_router};
use crate::core::affinity::{self, Affinity};
use crate::core::geo::Coordinates;
use crate::core::outcome::{self, Outcome, Verdict};
use crate::core::router::{EdgeRouter, Plan, RequestFacts};

/// An origin's full answer (body buffered so the edge can decide before the client sees it).
struct Answer {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

/// One finished attempt.
struct Attempt {
    region: usize,
    answer: std::result::Result<Answer, Outcome>,
    latency_ms: f64,
}

impl Attempt {
    fn outcome(&self) -> Outcome {
        match &self.answer {
            Ok(a) => Outcome::Answered {
                status: a.status,
                region_status: a
                    .headers
                    .get("x-region-status")
                    .ok()
                    .flatten()
                    .and_then(|s| s.parse().ok()),
            },
            Err(o) => *o,
        }
    }
}

/// What the client sent, kept so it can be sent again.
struct Outgoing {
    method: Method,
    path_and_query: String,
    headers: Headers,
    body: Option<Vec<u8>>,
}

impl Outgoing {
    fn request_to(&self, origin: &str) -> Result<Request> {
        let mut init = RequestInit::new();
        init.with_method(self.method.clone())
            .with_headers(self.headers.clone());
        if let Some(body) = &self.body {
            init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        }
        Request::new_with_init(&format!("{origin}{}", self.path_and_query), &init)
    }
}

/// Aborts an attempt's fetch (once; later calls do nothing).
#[derive(Clone)]
pub struct Abort(Rc<RefCell<Option<AbortController>>>);

impl Abort {
    fn new() -> (Self, worker::AbortSignal) {
        let controller = AbortController::default();
        let signal = controller.signal();
        (Self(Rc::new(RefCell::new(Some(controller)))), signal)
    }

    pub fn fire(&self) {
        if let Some(controller) = self.0.borrow_mut().take() {
            controller.abort();
        }
    }
}

/// Sends one attempt to `origin`, reading the whole answer, within `timeout_ms`.
/// Returns its abort handle too, so a losing hedge can be stopped.
fn send<'a>(
    out: &'a Outgoing,
    origin: &str,
    region: usize,
    timeout_ms: u64,
) -> (Abort, impl std::future::Future<Output = Attempt> + 'a) {
    let (abort, signal) = Abort::new();
    let on_timeout = abort.clone();
    let origin = origin.to_owned();
    let future = async move {
        let started = now_ms();
        let work = async {
            let request = out.request_to(&origin).map_err(|_| Outcome::ConnectError)?;
            let mut response = Fetch::Request(request)
                .send_with_signal(&signal)
                .await
                .map_err(|_| Outcome::ConnectError)?;
            let body = response.bytes().await.map_err(|_| Outcome::ConnectError)?;
            Ok(Answer {
                status: response.status_code(),
                headers: response.headers().clone(),
                body,
            })
        };
        let timer = Delay::from(Duration::from_millis(timeout_ms));
        futures_util::pin_mut!(work);
        let answer = match select(work, timer).await {
            Either::Left((answer, _)) => answer,
            Either::Right(_) => {
                on_timeout.fire();
                Err(Outcome::Timeout)
            }
        };
        Attempt {
            region,
            answer,
            latency_ms: now_ms().saturating_sub(started) as f64,
        }
    };
    (abort, future)
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
}

fn new_request_id() -> String {
    format!(
        "{:016x}{:016x}",
        (random() * u64::MAX as f64) as u64,
        (random() * u64::MAX as f64) as u64
    )
}

/// Handles one client request.
pub async fn handle(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let started = now_ms();
    let request_id = header(&req, "x-request-id")
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(new_request_id);
    let config = match ensure_router(&env) {
        Ok(c) => c,
        Err(e) => {
            worker::console_error!(
                "{}",
                serde_json::json!({"event": "edge_config_invalid", "field": e.field, "reason": e.reason})
            );
            return reply::error(
                500,
                "edge_config_invalid",
                &format!("edge configuration is invalid: {e}"),
                &request_id,
            );
        }
    };
    let method = req.method();
    let path = req.path();
    let cors = reply::cors_origin(&config, header(&req, "origin").as_deref());

    if method == Method::Options && header(&req, "access-control-request-method").is_some() {
        return match cors {
            Some(origin) => reply::preflight(&origin),
            None => reply::error(
                403,
                "cors_origin_not_allowed",
                "this origin may not call the API",
                &request_id,
            ),
        };
    }
    if path == "/_edge/status" {
        super::probe::refresh(&env).await;
        let status = with_router(|r| r.status(now_ms()));
        let mut response = Response::from_json(&status)?;
        response.headers_mut().set("x-served-by", reply::EDGE)?;
        response.headers_mut().set("cache-control", "no-store")?;
        return Ok(response);
    }
    super::probe::refresh(&env).await;

    // Buffer the body so it can be re-sent to another region.
    let limit = config.settings.max_body_bytes;
    let declared = header(&req, "content-length").and_then(|v| v.parse::<usize>().ok());
    let body = if matches!(method, Method::Get | Method::Head) {
        None
    } else if declared.is_some_and(|n| n > limit) {
        return finish(
            reply::error(
                413,
                "payload_too_large",
                &format!("request body is larger than {limit} bytes"),
                &request_id,
            )?,
            cors.as_deref(),
        );
    } else {
        let bytes = req.bytes().await.unwrap_or_default();
        if bytes.len() > limit {
            return finish(
                reply::error(
                    413,
                    "payload_too_large",
                    &format!("request body is larger than {limit} bytes"),
                    &request_id,
                )?,
                cors.as_deref(),
            );
        }
        Some(bytes)
    };

    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !reply::hop_by_hop(&name) {
            headers.append(&name, &value)?;
        }
    }
    headers.set("x-request-id", &request_id)?;
    if let Some(ip) = header(&req, "cf-connecting-ip") {
        headers.set("x-forwarded-for", &ip)?;
    }
    let method_name = method.to_string();
    let mut has_key = header(&req, "idempotency-key").is_some();
    if method == Method::Post && !has_key {
        headers.set("idempotency-key", &format!("edge-{}", new_request_id()))?;
        has_key = true;
    }
    let url = req.url()?;
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let out = Outgoing {
        method: method.clone(),
        path_and_query,
        headers,
        body,
    };

    let cf = req.cf();
    let client = cf
        .and_then(|cf| cf.coordinates())
        .map(|(lat, lon)| Coordinates {
            lat: f64::from(lat),
            lon: f64::from(lon),
        });
    let continent = cf.and_then(|cf| cf.continent());
    let affinity_token = header(&req, affinity::HEADER).or_else(|| {
        header(&req, "cookie").and_then(|c| Affinity::from_cookie_header(&c).map(str::to_owned))
    });
    let facts = RequestFacts {
        method: &method_name,
        client,
        continent: continent.as_deref(),
        affinity: affinity_token.as_deref(),
        has_idempotency_key: has_key,
    };
    let plan = with_router(|r| r.plan(&facts, started)).unwrap_or(Plan {
        order: Vec::new(),
        retryable: false,
        hedge_after_ms: None,
    });
    let origins: Vec<&str> = config.regions.iter().map(|r| r.origin.as_str()).collect();
    let deadline = started + config.settings.deadline_ms;
    let per_try = config.settings.per_try_timeout_ms;

    let mut attempts = 0u32;
    let mut skip: Option<usize> = None;
    let mut delivered: Option<(Option<usize>, Answer)> = None;
    for (n, &region) in plan.order.iter().enumerate() {
        if Some(region) == skip {
            continue;
        }
        let now = now_ms();
        if now >= deadline {
            break;
        }
        if n > 0 && !(plan.retryable && with_router(|r| r.allow_retry(now, false)).unwrap_or(false))
        {
            break;
        }
        let timeout = per_try.min(deadline - now);
        let hedge = match (n, plan.hedge_after_ms, plan.order.get(1)) {
            (0, Some(delay), Some(&next)) if delay < timeout => Some((delay, next)),
            _ => None,
        };
        with_router(|r| r.on_attempt(region, now));
        attempts += 1;
        let finished = match hedge {
            None => vec![
                send(&out, origin_of(&origins, region), region, timeout)
                    .1
                    .await,
            ],
            Some((delay, next)) => {
                let (hedged, results) =
                    hedged_read(&out, &origins, region, next, delay, timeout).await;
                if hedged {
                    attempts += 1;
                    skip = Some(next);
                }
                results
            }
        };
        for attempt in finished {
            let outcome = attempt.outcome();
            let verdict = with_router(|r| {
                r.record(
                    attempt.region,
                    outcome,
                    attempt.latency_ms,
                    now_ms(),
                    random(),
                )
            })
            .unwrap_or(Verdict::Deliver);
            if delivered.is_none()
                && let Ok(answer) = attempt.answer
                && (verdict == Verdict::Deliver || !plan.retryable)
            {
                delivered = Some((Some(attempt.region), answer));
            }
        }
        if delivered.is_some() || !plan.retryable {
            break;
        }
    }

    if delivered.is_none()
        && (plan.retryable || attempts == 0)
        && let Some(fallback) = &config.fallback_origin
    {
        with_router(EdgeRouter::on_fallback);
        let timeout = per_try.min(deadline.saturating_sub(now_ms()).max(1));
        attempts += 1;
        let attempt = send(&out, fallback, usize::MAX, timeout).1.await;
        let outcome = attempt.outcome();
        if let Ok(answer) = attempt.answer
            && outcome.verdict(false) == Verdict::Deliver
        {
            delivered = Some((None, answer));
        }
    }

    let total_ms = now_ms().saturating_sub(started);
    let Some((region, answer)) = delivered else {
        with_router(EdgeRouter::on_unavailable);
        log(
            &request_id,
            &method_name,
            &path,
            503,
            "edge",
            attempts,
            total_ms,
        );
        let mut response = reply::error(
            503,
            "no_region_available",
            "no region could serve this request; retry shortly",
            &request_id,
        )?;
        response
            .headers_mut()
            .set("x-edge-attempts", &attempts.to_string())?;
        return finish(response, cors.as_deref());
    };

    let region_name = match region {
        Some(i) => config
            .regions
            .get(i)
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        None => answer
            .headers
            .get("x-served-by")
            .ok()
            .flatten()
            .unwrap_or_else(|| "fallback".to_owned()),
    };
    let headers = Headers::new();
    for (name, value) in answer.headers.entries() {
        if !reply::not_copied(&name) {
            headers.append(&name, &value)?;
        }
    }
    headers.set("x-served-by", &region_name)?;
    headers.set("x-request-id", &request_id)?;
    headers.set("x-edge-attempts", &attempts.to_string())?;
    headers.set(
        "server-timing",
        &format!("edge;dur={total_ms};desc=\"{region_name}\""),
    )?;
    if let Some(i) = region
        && outcome::is_write(&method_name)
        && (200..300).contains(&answer.status)
    {
        let now = now_ms();
        if let Some(affinity) = with_router(|r| r.affinity_for_write(i, now)) {
            headers.set(affinity::HEADER, &affinity.token())?;
            headers.append(
                "set-cookie",
                &affinity.set_cookie(config.settings.affinity_window_ms, url.scheme() == "https"),
            )?;
        }
    }
    log(
        &request_id,
        &method_name,
        &path,
        answer.status,
        &region_name,
        attempts,
        total_ms,
    );
    let body = if answer.status == 204 || answer.status == 304 || method == Method::Head {
        None
    } else {
        Some(answer.body)
    };
    let response = match body {
        Some(bytes) => Response::from_bytes(bytes)?,
        None => Response::empty()?,
    }
    .with_status(answer.status)
    .with_headers(headers);
    finish(response, cors.as_deref())
}

/// Sends a read to `first`; if it has not answered after `delay_ms`, also to `second` (budget
/// permitting). The first good answer wins and the other is aborted. Returns whether the hedge
/// was sent, and the finished attempts (one or two).
async fn hedged_read(
    out: &Outgoing,
    origins: &[&str],
    first: usize,
    second: usize,
    delay_ms: u64,
    timeout_ms: u64,
) -> (bool, Vec<Attempt>) {
    let first_started = now_ms();
    let (first_ctl, first_fut) = send(out, origin_of(origins, first), first, timeout_ms);
    futures_util::pin_mut!(first_fut);
    let timer = Delay::from(Duration::from_millis(delay_ms));
    let first_fut = match select(first_fut, timer).await {
        Either::Left((attempt, _)) => return (false, vec![attempt]),
        Either::Right((_, pending)) => pending,
    };
    let now = now_ms();
    if !with_router(|r| r.allow_retry(now, true)).unwrap_or(false) {
        return (false, vec![first_fut.await]);
    }
    with_router(|r| r.on_attempt(second, now));
    let (second_ctl, second_fut) = send(
        out,
        origin_of(origins, second),
        second,
        timeout_ms.saturating_sub(delay_ms).max(1),
    );
    futures_util::pin_mut!(second_fut);
    match select(first_fut, second_fut).await {
        Either::Left((attempt, other)) => {
            if good(&attempt) {
                second_ctl.fire();
                (true, vec![attempt])
            } else {
                (true, vec![attempt, other.await])
            }
        }
        Either::Right((hedge, first_pending)) => {
            if outcome::hedge_may_win(&hedge.outcome()) {
                first_ctl.fire();
                // The first region had a head start and still lost: that counts against its
                // health like a timeout, so a region that stops answering is ejected even when
                // only reads (always hedged around) reach it. A losing hedge is not counted.
                let lost = Attempt {
                    region: first,
                    answer: Err(Outcome::Timeout),
                    latency_ms: now_ms().saturating_sub(first_started) as f64,
                };
                (true, vec![hedge, lost])
            } else {
                // A hedge's 4xx may be a replica that has not caught up: the first region's
                // answer comes first, the hedge's is the fallback.
                (true, vec![first_pending.await, hedge])
            }
        }
    }
}

/// A region's origin (plan indexes come from the same configuration; an impossible index gives an
/// empty origin, which fails as a connection error rather than a panic).
fn origin_of<'a>(origins: &[&'a str], region: usize) -> &'a str {
    origins.get(region).copied().unwrap_or_default()
}

fn good(attempt: &Attempt) -> bool {
    !attempt.outcome().is_failure()
}

fn finish(mut response: Response, cors: Option<&str>) -> Result<Response> {
    if let Some(origin) = cors {
        reply::add_cors(response.headers_mut(), origin)?;
    }
    Ok(response)
}

fn log(
    request_id: &str,
    method: &str,
    path: &str,
    status: u16,
    region: &str,
    attempts: u32,
    latency_ms: u64,
) {
    worker::console_log!(
        "{}",
        serde_json::json!({"request_id": request_id, "method": method, "path": path, "status": status,
                           "region": region, "attempts": attempts, "latency_ms": latency_ms})
    );
}
