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
use crate::core::Millis;
use crate::core::affinity::{self, Affinity};
use crate::core::attempts::{AttemptLoop, Report, Step};
use crate::core::config::EdgeConfig;
use crate::core::geo::Coordinates;
use crate::core::outcome::{self, Outcome};
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

/// Header telling a region how long it has for this attempt, in milliseconds (the attempt's
/// timeout: the per-try timeout, or less when the request's deadline is nearer).
pub const DEADLINE_HEADER: &str = "x-tandem-deadline-ms";

impl Outgoing {
    fn request_to(&self, origin: &str, timeout_ms: u64) -> Result<Request> {
        let headers = self.headers.clone();
        headers.set(DEADLINE_HEADER, &timeout_ms.to_string())?;
        let mut init = RequestInit::new();
        init.with_method(self.method.clone()).with_headers(headers);
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
            let request = out
                .request_to(&origin, timeout_ms)
                .map_err(|_| Outcome::ConnectError)?;
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
pub async fn handle(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
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
            let message = format!("edge configuration is invalid: {e}");
            return reply::error(500, "edge_config_invalid", &message, &request_id);
        }
    };
    let method = req.method();
    let cors = reply::cors_origin(&config, header(&req, "origin").as_deref());
    if method == Method::Options && header(&req, "access-control-request-method").is_some() {
        return match cors {
            Some(cors) => reply::preflight(&cors),
            None => reply::error(
                403,
                "cors_origin_not_allowed",
                "this origin may not call the API",
                &request_id,
            ),
        };
    }
    super::probe::refresh(&env, &ctx).await;
    if req.path() == "/_edge/status" {
        let mut status = serde_json::to_value(with_router(|r| r.status(now_ms())))
            .unwrap_or(serde_json::Value::Null);
        if let Some(map) = status.as_object_mut() {
            // The isolate's Wasm linear memory: flat after warm-up, or the soak test says why.
            map.insert(
                "wasm_memory_bytes".to_owned(),
                super::wasm_memory_bytes().into(),
            );
        }
        let mut response = Response::from_json(&status)?;
        response.headers_mut().set("x-served-by", reply::EDGE)?;
        response.headers_mut().set("cache-control", "no-store")?;
        return Ok(response);
    }

    let limit = config.settings.max_body_bytes;
    let Some(body) = buffer_body(&mut req, limit).await else {
        let message = format!("request body is larger than {limit} bytes");
        let response = reply::error(413, "payload_too_large", &message, &request_id)?;
        return finish(response, cors.as_ref());
    };
    let (out, has_key) = outgoing(&req, body, &request_id)?;
    let method_name = method.to_string();
    let client = ClientFacts::of(&req);
    let facts = RequestFacts {
        method: &method_name,
        client: client.coordinates,
        continent: client.continent.as_deref(),
        affinity: client.affinity.as_deref(),
        client_key: Some(&client.key),
        has_idempotency_key: has_key,
    };
    let plan = with_router(|r| r.plan(&facts, started)).unwrap_or(Plan {
        order: Vec::new(),
        retryable: false,
        hedge_after_ms: None,
    });
    let (attempts, delivered) = run_plan(&out, plan, &config, started).await;
    let served = Served {
        request_id: &request_id,
        method: &method_name,
        path: &req.path(),
        attempts,
        total_ms: now_ms().saturating_sub(started),
        secure: req.url().is_ok_and(|u| u.scheme() == "https"),
    };
    let response = match delivered {
        Some((region, answer)) => served.answer(&config, region, answer)?,
        None => served.unavailable()?,
    };
    finish(response, cors.as_ref())
}

/// The request body, read whole so it can be re-sent (`None` when over `limit`).
async fn buffer_body(req: &mut Request, limit: usize) -> Option<Option<Vec<u8>>> {
    if matches!(req.method(), Method::Get | Method::Head) {
        return Some(None);
    }
    let declared = header(req, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return None;
    }
    let bytes = req.bytes().await.ok()?;
    (bytes.len() <= limit).then_some(Some(bytes))
}

/// What is sent to the regions: the client's request without hop-by-hop headers, with the
/// request id, and with an `Idempotency-Key` added to a POST that lacks one (so a retry in
/// another region is the same create). Returns whether the request carries a key.
fn outgoing(req: &Request, body: Option<Vec<u8>>, request_id: &str) -> Result<(Outgoing, bool)> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !reply::hop_by_hop(&name) {
            headers.append(&name, &value)?;
        }
    }
    headers.set("x-request-id", request_id)?;
    if let Some(ip) = header(req, "cf-connecting-ip") {
        headers.set("x-forwarded-for", &ip)?;
    }
    let method = req.method();
    let mut has_key = header(req, "idempotency-key").is_some();
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
        method,
        path_and_query,
        headers,
        body,
    };
    Ok((out, has_key))
}

/// Where the client is and what affinity it carries, from `request.cf` and its headers.
struct ClientFacts {
    coordinates: Option<Coordinates>,
    continent: Option<String>,
    affinity: Option<String>,
    /// The client's address and the edge location: one client keeps one of several
    /// near-equal regions.
    key: String,
}

impl ClientFacts {
    fn of(req: &Request) -> Self {
        let cf = req.cf();
        Self {
            coordinates: cf
                .and_then(|cf| cf.coordinates())
                .map(|(lat, lon)| Coordinates {
                    lat: f64::from(lat),
                    lon: f64::from(lon),
                }),
            continent: cf.and_then(|cf| cf.continent()),
            affinity: header(req, affinity::HEADER).or_else(|| {
                header(req, "cookie")
                    .and_then(|c| Affinity::from_cookie_header(&c).map(str::to_owned))
            }),
            key: format!(
                "{}|{}",
                header(req, "cf-connecting-ip").unwrap_or_default(),
                cf.map(|cf| cf.colo()).unwrap_or_default()
            ),
        }
    }
}

/// Carries out a plan: every step the core's attempt loop gives, each finished attempt reported
/// to it, the hedge sent when it says so, the race's loser aborted. Returns the number of
/// attempts and the answer to deliver (with the region index; `None` for the fallback).
async fn run_plan(
    out: &Outgoing,
    plan: Plan,
    config: &EdgeConfig,
    started: Millis,
) -> (u32, Option<(Option<usize>, Answer)>) {
    let origins: Vec<&str> = config.regions.iter().map(|r| r.origin.as_str()).collect();
    let fallback = config.fallback_origin.as_deref();
    let mut attempts = AttemptLoop::new(plan, &config.settings, started, fallback.is_some());
    loop {
        let step = with_router(|r| attempts.next_step(r, now_ms())).unwrap_or(Step::Stop);
        match step {
            Step::Stop => return (attempts.attempts(), None),
            Step::Fallback { timeout_ms } => {
                let attempt = send(out, fallback.unwrap_or_default(), usize::MAX, timeout_ms)
                    .1
                    .await;
                let delivered = attempts.report_fallback(attempt.outcome());
                let answer = attempt.answer.ok().filter(|_| delivered);
                return (attempts.attempts(), answer.map(|a| (None, a)));
            }
            Step::Send {
                region,
                timeout_ms,
                hedge,
            } => {
                let delivered = race(out, &origins, &mut attempts, region, hedge, timeout_ms).await;
                if let Some(answer) = delivered {
                    return (attempts.attempts(), Some(answer));
                }
            }
        }
    }
}

/// Reports a finished attempt to the loop; keeps its answer when the loop may deliver it later.
fn report(attempts: &mut AttemptLoop, attempt: Attempt, held: &mut Vec<(usize, Answer)>) -> Report {
    let outcome = attempt.outcome();
    let report = with_router(|r| {
        attempts.report(
            r,
            attempt.region,
            outcome,
            attempt.latency_ms,
            now_ms(),
            random(),
        )
    })
    .unwrap_or(Report::Continue);
    if let Ok(answer) = attempt.answer {
        held.push((attempt.region, answer));
    }
    report
}

/// The held answer of `region`, for delivery.
fn take(held: &mut Vec<(usize, Answer)>, region: usize) -> Option<(Option<usize>, Answer)> {
    let i = held.iter().position(|(r, _)| *r == region)?;
    let (r, answer) = held.swap_remove(i);
    Some((Some(r), answer))
}

/// One step's attempts: the first, and the hedge when the loop arms and grants it. The loop
/// decides the race (who wins, what each reports); this only sends, waits and aborts.
async fn race(
    out: &Outgoing,
    origins: &[&str],
    attempts: &mut AttemptLoop,
    first: usize,
    hedge: Option<(u64, usize)>,
    timeout_ms: u64,
) -> Option<(Option<usize>, Answer)> {
    let mut held = Vec::new();
    let (first_ctl, first_fut) = send(out, origin_of(origins, first), first, timeout_ms);
    futures_util::pin_mut!(first_fut);
    let Some((delay_ms, second)) = hedge else {
        let attempt = first_fut.await;
        return match report(attempts, attempt, &mut held) {
            Report::Deliver(r) => take(&mut held, r),
            Report::Wait | Report::Continue => None,
        };
    };
    let timer = Delay::from(Duration::from_millis(delay_ms));
    let first_fut = match select(first_fut, timer).await {
        Either::Left((attempt, _)) => {
            return match report(attempts, attempt, &mut held) {
                Report::Deliver(r) => take(&mut held, r),
                Report::Wait | Report::Continue => None,
            };
        }
        Either::Right((_, pending)) => pending,
    };
    let now = now_ms();
    if !with_router(|r| attempts.hedge_due(r, second, now)).unwrap_or(false) {
        let attempt = first_fut.await;
        return match report(attempts, attempt, &mut held) {
            Report::Deliver(r) => take(&mut held, r),
            Report::Wait | Report::Continue => None,
        };
    }
    let (second_ctl, second_fut) = send(
        out,
        origin_of(origins, second),
        second,
        timeout_ms.saturating_sub(delay_ms).max(1),
    );
    futures_util::pin_mut!(second_fut);
    let (early, late, late_region, late_ctl) = match select(first_fut, second_fut).await {
        Either::Left((attempt, other)) => (attempt, Either::Right(other), second, Some(second_ctl)),
        Either::Right((attempt, other)) => (attempt, Either::Left(other), first, None),
    };
    match report(attempts, early, &mut held) {
        Report::Deliver(r) => {
            // The loser is aborted; the loop learns how long it had taken.
            match &late_ctl {
                Some(ctl) => ctl.fire(),
                None => first_ctl.fire(),
            }
            let now = now_ms();
            with_router(|r| attempts.abandoned(r, late_region, now, random()));
            take(&mut held, r)
        }
        Report::Continue => None,
        Report::Wait => {
            let attempt = match late {
                Either::Left(first) => first.await,
                Either::Right(second) => second.await,
            };
            match report(attempts, attempt, &mut held) {
                Report::Deliver(r) => take(&mut held, r),
                Report::Wait | Report::Continue => None,
            }
        }
    }
}

/// What the client is told about how its request was served.
struct Served<'a> {
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    attempts: u32,
    total_ms: u64,
    secure: bool,
}

impl Served<'_> {
    /// The region's answer, with the edge's headers (and an affinity token after a write).
    fn answer(
        &self,
        config: &EdgeConfig,
        region: Option<usize>,
        answer: Answer,
    ) -> Result<Response> {
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
        headers.set("x-request-id", self.request_id)?;
        headers.set("x-edge-attempts", &self.attempts.to_string())?;
        let timing = format!("edge;dur={};desc=\"{region_name}\"", self.total_ms);
        headers.set("server-timing", &timing)?;
        if let Some(i) = region
            && outcome::is_write(self.method)
            && (200..300).contains(&answer.status)
        {
            let now = now_ms();
            if let Some(token) = with_router(|r| r.affinity_token_for_write(i, now)).flatten() {
                let window = config.settings.affinity_window_ms;
                headers.set(affinity::HEADER, &token)?;
                headers.append(
                    "set-cookie",
                    &affinity::set_cookie(&token, window, self.secure),
                )?;
            }
        }
        self.log(answer.status, &region_name);
        let empty = matches!(answer.status, 204 | 304) || self.method == "HEAD";
        let response = if empty {
            Response::empty()?
        } else {
            Response::from_bytes(answer.body)?
        };
        Ok(response.with_status(answer.status).with_headers(headers))
    }

    /// No region (nor the fallback) could serve: 503 with `Retry-After`.
    fn unavailable(&self) -> Result<Response> {
        with_router(EdgeRouter::on_unavailable);
        self.log(503, reply::EDGE);
        let mut response = reply::error(
            503,
            "no_region_available",
            "no region could serve this request; retry shortly",
            self.request_id,
        )?;
        response
            .headers_mut()
            .set("x-edge-attempts", &self.attempts.to_string())?;
        Ok(response)
    }

    /// The one log line for this request.
    fn log(&self, status: u16, region: &str) {
        worker::console_log!(
            "{}",
            serde_json::json!({"request_id": self.request_id, "method": self.method, "path": self.path,
                               "status": status, "region": region, "attempts": self.attempts,
                               "latency_ms": self.total_ms})
        );
    }
}

/// A region's origin (plan indexes come from the same configuration; an impossible index gives an
/// empty origin, which fails as a connection error rather than a panic).
fn origin_of<'a>(origins: &[&'a str], region: usize) -> &'a str {
    origins.get(region).copied().unwrap_or_default()
}

fn finish(mut response: Response, cors: Option<&reply::Cors>) -> Result<Response> {
    if let Some(cors) = cors {
        reply::add_cors(response.headers_mut(), cors)?;
    }
    Ok(response)
}
