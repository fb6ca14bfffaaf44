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

use super::{ensure_access, ensure_router, ids, now_ms, random, reply, tokens, with_router};
use crate::core::Millis;
use crate::core::access::{AccessConfig, Denial, PathClass};
use crate::core::affinity::{self, Affinity};
use crate::core::attempts::{AttemptLoop, Report, Step};
use crate::core::client_request;
use crate::core::config::EdgeConfig;
use crate::core::geo::Coordinates;
use crate::core::origin_signing::{OriginCredentials, SUBJECT_HEADER, subject_header_value};
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
    /// Whether the edge signed it (then a 403 is the region refusing the edge).
    signed: bool,
}

impl Attempt {
    fn outcome(&self) -> Outcome {
        match &self.answer {
            Ok(a) => Outcome::of_answer(
                a.status,
                a.headers
                    .get("x-region-status")
                    .ok()
                    .flatten()
                    .and_then(|s| s.parse().ok()),
                a.headers.has(outcome::LIMIT_HEADER).unwrap_or(false),
                self.signed,
            ),
            Err(o) => *o,
        }
    }
}

/// What the client sent, kept so it can be sent again.
struct Outgoing<'a> {
    method: Method,
    path_and_query: String,
    headers: Headers,
    body: Option<Vec<u8>>,
    /// Signs each attempt for its region (`None`: origin auth is off).
    signing: Option<&'a OriginCredentials>,
}

/// Header telling a region how long it has for this attempt, in milliseconds (the attempt's
/// timeout: the per-try timeout, or less when the request's deadline is nearer).
pub const DEADLINE_HEADER: &str = "x-tandem-deadline-ms";

impl Outgoing<'_> {
    /// The request for one attempt at `origin`, signed (when origin auth is on) for the region
    /// named `region`: the target's own, or for the fallback the region the edge ranked first.
    fn request_to(&self, origin: &str, region: &str, timeout_ms: u64) -> Result<Request> {
        let headers = self.headers.clone();
        headers.set(DEADLINE_HEADER, &timeout_ms.to_string())?;
        let url = format!("{origin}{}", self.path_and_query);
        if let Some(credentials) = self.signing {
            let method = self.method.to_string();
            let entries: Vec<(String, String)> = headers.entries().collect();
            let signature = credentials
                .sign(
                    region,
                    &method,
                    &url,
                    entries.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                    self.body.as_deref().unwrap_or_default(),
                    now_ms(),
                )
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            for (name, value) in signature {
                headers.set(name, &value)?;
            }
        }
        let mut init = RequestInit::new();
        init.with_method(self.method.clone()).with_headers(headers);
        if let Some(body) = &self.body {
            init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        }
        Request::new_with_init(&url, &init)
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
    out: &'a Outgoing<'a>,
    target: Target<'_>,
    region: usize,
    timeout_ms: u64,
) -> (Abort, impl std::future::Future<Output = Attempt> + 'a) {
    let (abort, signal) = Abort::new();
    let on_timeout = abort.clone();
    let origin = target.origin.to_owned();
    let name = target.name.to_owned();
    let future = async move {
        let started = now_ms();
        let work = async {
            let request = out
                .request_to(&origin, &name, timeout_ms)
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
            signed: out.signing.is_some(),
        }
    };
    (abort, future)
}

/// Where an attempt goes: the origin URL and the region name it is signed for.
#[derive(Clone, Copy)]
struct Target<'a> {
    origin: &'a str,
    name: &'a str,
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
}

/// Handles one client request.
pub async fn handle(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = now_ms();
    let secure = req.url().is_ok_and(|u| u.scheme() == "https");
    let request_id = header(&req, "x-request-id")
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(ids::request_id);
    let (config, access) = match (ensure_router(&env), ensure_access(&env)) {
        (Ok(config), Ok(access)) => (config, access),
        (Err(e), _) | (_, Err(e)) => {
            // The detail is for the operator's log; the client learns only that it is ours.
            worker::console_error!(
                "{}",
                serde_json::json!({"event": "edge_config_invalid", "field": e.field, "reason": e.reason, "request_id": request_id})
            );
            return finish(misconfigured(&request_id)?, None, secure);
        }
    };
    let method = req.method();
    let cors = reply::cors_origin(&config, header(&req, "origin").as_deref());
    if method == Method::Options && header(&req, "access-control-request-method").is_some() {
        let response = match &cors {
            Some(cors) => reply::preflight(cors)?,
            None => reply::error(
                403,
                "cors_origin_not_allowed",
                "this origin may not call the API",
                &request_id,
            )?,
        };
        return finish(response, None, secure);
    }
    // The method as sent, for every path (worker-rs names only some methods, the rest as GET).
    if let Err(refusal) = client_request::check_method(&req.inner().method()) {
        let mut response =
            reply::error(refusal.status, refusal.code, &refusal.message, &request_id)?;
        response
            .headers_mut()
            .set("allow", &client_request::allow())?;
        return finish(response, cors.as_ref(), secure);
    }
    let path = req.path();
    let subject = match admit(&env, &ctx, &access, &req, &path, &request_id).await? {
        Admission::Forward { subject } => subject,
        Admission::Answer(response) => return finish(response, cors.as_ref(), secure),
    };
    // The client's headers, read once: checked here, copied to the regions below.
    let entries: Vec<(String, String)> = req.headers().entries().collect();
    let pairs = entries.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let checked = client_request::check_path(&path)
        .and_then(|()| client_request::check_headers(pairs, access.origin_signing.is_some()));
    if let Err(refusal) = checked {
        let response = reply::error(refusal.status, refusal.code, &refusal.message, &request_id)?;
        return finish(response, cors.as_ref(), secure);
    }
    super::probe::refresh(&env, &ctx).await;

    let limit = config.settings.max_body_bytes;
    let body = match read_body(&mut req, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let message = format!("request body is larger than {limit} bytes");
            let response = reply::error(413, "payload_too_large", &message, &request_id)?;
            return finish(response, cors.as_ref(), secure);
        }
        Err(BodyError::Unreadable) => {
            let message = "the request body could not be read";
            let response = reply::error(400, "body_unreadable", message, &request_id)?;
            return finish(response, cors.as_ref(), secure);
        }
    };
    let signing = access.origin_signing.as_ref();
    let (out, has_key) = outgoing(
        &req,
        &entries,
        body,
        &request_id,
        subject.as_deref(),
        signing,
    )?;
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
        read: false,
        hedge_after_ms: None,
        authoritative: None,
        overloaded: false,
    });
    let overloaded = plan.overloaded;
    let (attempts, delivered) = run_plan(&out, plan, &config, started).await;
    let served = Served {
        request_id: &request_id,
        method: &method_name,
        path: &path,
        attempts,
        total_ms: now_ms().saturating_sub(started),
        secure,
    };
    let response = match delivered {
        Some((region, answer)) => served.answer(&config, region, answer)?,
        None if overloaded => served.overloaded()?,
        None => served.unavailable()?,
    };
    finish(response, cors.as_ref(), secure)
}

/// What the edge does with a request before any region sees it.
enum Admission {
    /// Send it on, for this caller (the token's subject, when tokens are checked).
    Forward { subject: Option<String> },
    /// The edge answers itself: the page, the status, a refusal.
    Answer(Response),
}

/// Sorts the path, checks the caller's token and the client's rate limit.
async fn admit(
    env: &Env,
    ctx: &Context,
    access: &AccessConfig,
    req: &Request,
    path: &str,
    request_id: &str,
) -> Result<Admission> {
    let method = req.method();
    let subject = match PathClass::of(path) {
        PathClass::EdgeStatus => {
            return Ok(Admission::Answer(
                edge_status(env, ctx, access, req, request_id).await?,
            ));
        }
        PathClass::Admin => {
            let message = format!("no route for {path}");
            let response = reply::error(404, "route_not_found", &message, request_id)?;
            return Ok(Admission::Answer(response));
        }
        PathClass::Page(asset) => {
            return Ok(Admission::Answer(super::page::serve(
                asset, &method, request_id,
            )?));
        }
        PathClass::Health => None,
        PathClass::Api => match &access.tokens {
            None => None,
            Some(rules) => {
                let authorization = header(req, "authorization");
                match tokens::authenticate(env, ctx, rules, authorization.as_deref(), &method).await
                {
                    Ok(subject) => Some(subject),
                    Err(denial) => {
                        log_refusal(request_id, &method, path, &denial);
                        return Ok(Admission::Answer(denied(&denial, request_id)?));
                    }
                }
            }
        },
    };
    let Some(policy) = access.rate_limit else {
        return Ok(Admission::Forward { subject });
    };
    let limiter = match env.rate_limiter(RATE_LIMITER) {
        Ok(limiter) => limiter,
        Err(e) => {
            worker::console_error!(
                "{}",
                serde_json::json!({"event": "edge_config_invalid", "field": RATE_LIMITER, "reason": e.to_string(), "request_id": request_id})
            );
            return Ok(Admission::Answer(misconfigured(request_id)?));
        }
    };
    let client = subject
        .clone()
        .or_else(|| header(req, "cf-connecting-ip"))
        .unwrap_or_default();
    // A limiter that cannot answer lets the request through: it guards the regions from one
    // client, and must not become an outage itself.
    if limiter.limit(client).await.map_or(true, |o| o.success) {
        return Ok(Admission::Forward { subject });
    }
    let message = "too many requests from this client; retry after the period";
    let mut response = reply::error(429, "rate_limited", message, request_id)?;
    for (name, value) in policy.limited_headers() {
        response.headers_mut().set(name, &value)?;
    }
    Ok(Admission::Answer(response))
}

/// The answer to any configuration error: the detail went to the log, never to the client.
fn misconfigured(request_id: &str) -> Result<Response> {
    reply::error(500, "edge_misconfigured", "edge misconfigured", request_id)
}

/// The `[[ratelimits]]` binding that limits each client.
pub const RATE_LIMITER: &str = "CLIENT_RATE_LIMITER";

/// `/_edge/status` for operators: each region's state by name (never an origin URL).
async fn edge_status(
    env: &Env,
    ctx: &Context,
    access: &AccessConfig,
    req: &Request,
    request_id: &str,
) -> Result<Response> {
    if !matches!(req.method(), Method::Get | Method::Head) {
        let mut response = reply::error(
            405,
            "method_not_allowed",
            "the edge's status is read with GET",
            request_id,
        )?;
        response.headers_mut().set("allow", "GET, HEAD")?;
        return Ok(response);
    }
    if !access.status_allowed(header(req, "authorization").as_deref()) {
        let mut response = reply::error(
            401,
            "operator_token_required",
            "the edge's status needs the operator token",
            request_id,
        )?;
        response
            .headers_mut()
            .set("www-authenticate", "Bearer realm=\"tandem-operator\"")?;
        return Ok(response);
    }
    super::probe::refresh(env, ctx).await;
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
    Ok(response)
}

/// A refusal: 401 or 403, with `WWW-Authenticate` (RFC 6750).
fn denied(denial: &Denial, request_id: &str) -> Result<Response> {
    let mut response = reply::error(
        denial.status(),
        denial.code(),
        &denial.message(),
        request_id,
    )?;
    response
        .headers_mut()
        .set("www-authenticate", &denial.www_authenticate())?;
    Ok(response)
}

fn log_refusal(request_id: &str, method: &Method, path: &str, denial: &Denial) {
    worker::console_log!(
        "{}",
        serde_json::json!({"request_id": request_id, "method": method.to_string(), "path": path,
                           "status": denial.status(), "region": reply::EDGE, "refused": denial.code(),
                           "reason": denial.message()})
    );
}

/// Why a request body was not read.
enum BodyError {
    /// Over the limit (declared, or counted while reading).
    TooLarge,
    /// The client's stream failed.
    Unreadable,
}

/// The request body, read so it can be re-sent: refused as soon as it passes `limit`, whether
/// or not it declared a length (a chunked body is counted as it arrives, never read whole first).
async fn read_body(
    req: &mut Request,
    limit: usize,
) -> std::result::Result<Option<Vec<u8>>, BodyError> {
    use futures_util::StreamExt;
    if matches!(req.method(), Method::Get | Method::Head) {
        return Ok(None);
    }
    let declared = header(req, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let Ok(mut stream) = req.stream() else {
        // No body at all.
        return Ok(Some(Vec::new()));
    };
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if body.len() + chunk.len() > limit {
            // Refused; the rest is read and dropped (never kept) up to a bound, so the client's
            // connection ends cleanly and it reads the 413 instead of a reset.
            let mut seen = body.len() + chunk.len();
            drop(body);
            while seen <= DISCARD_LIMIT {
                match stream.next().await {
                    Some(Ok(more)) => seen += more.len(),
                    _ => break,
                }
            }
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// How much of a refused body is read and dropped so its connection ends cleanly (4 MiB).
const DISCARD_LIMIT: usize = 4 * 1024 * 1024;

/// What is sent to the regions: the client's method, path, body and the headers the API reads,
/// with the request id, the caller's subject (scopes its idempotency keys), and an
/// `Idempotency-Key` added to a POST that lacks one (so a retry in another region is the same
/// create). Returns whether the request carries a key.
fn outgoing<'a>(
    req: &Request,
    entries: &[(String, String)],
    body: Option<Vec<u8>>,
    request_id: &str,
    subject: Option<&str>,
    signing: Option<&'a OriginCredentials>,
) -> Result<(Outgoing<'a>, bool)> {
    let headers = Headers::new();
    for (name, value) in entries {
        if client_request::FORWARDED_HEADERS.contains(&name.as_str()) {
            headers.append(name, &client_request::forwarded_value(value))?;
        }
    }
    headers.set("x-request-id", request_id)?;
    if let Some(ip) = header(req, "cf-connecting-ip") {
        headers.set("x-forwarded-for", &ip)?;
    }
    if let Some(subject) = subject {
        headers.set(SUBJECT_HEADER, &subject_header_value(subject))?;
    }
    let method = req.method();
    let mut has_key = header(req, "idempotency-key").is_some();
    if method == Method::Post && !has_key {
        headers.set("idempotency-key", &format!("edge-{}", ids::request_id()))?;
        has_key = true;
    }
    let url = req.url()?;
    let path_and_query = match url.query() {
        Some(q) => match client_request::canonical_query(q) {
            query if query.is_empty() => url.path().to_owned(),
            query => format!("{}?{query}", url.path()),
        },
        None => url.path().to_owned(),
    };
    let out = Outgoing {
        method,
        path_and_query,
        headers,
        body,
        signing,
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
    out: &Outgoing<'_>,
    plan: Plan,
    config: &EdgeConfig,
    started: Millis,
) -> (u32, Option<(Option<usize>, Answer)>) {
    let targets: Vec<Target> = config
        .regions
        .iter()
        .map(|r| Target {
            origin: &r.origin,
            name: &r.name,
        })
        .collect();
    let fallback = config.fallback_origin.as_deref();
    // The fallback name resolves to a region the edge cannot see: it is signed for the region
    // the edge ranks first (the one latency-routed DNS most likely picks); a region that is not
    // it refuses the signature, and the client gets the edge's 503.
    let fallback_region = plan
        .order
        .first()
        .and_then(|&i| config.regions.get(i))
        .map_or("", |r| r.name.as_str());
    let mut attempts = AttemptLoop::new(plan, &config.settings, started, fallback.is_some());
    // Every answer received, kept until the request ends: the loop may deliver one it held
    // from an earlier step (a 404 kept while the authoritative region is asked).
    let mut held = Vec::new();
    loop {
        let step = with_router(|r| attempts.next_step(r, now_ms())).unwrap_or(Step::Stop);
        match step {
            // Nothing more to try: an answer held for that case (a 500 that went elsewhere in
            // vain, a 404 whose check could not be sent) rather than the edge's 503.
            Step::Stop => {
                let answer = attempts.held_at_stop().and_then(|r| take(&mut held, r));
                return (attempts.attempts(), answer);
            }
            Step::Fallback { timeout_ms } => {
                let target = Target {
                    origin: fallback.unwrap_or_default(),
                    name: fallback_region,
                };
                let attempt = send(out, target, usize::MAX, timeout_ms).1.await;
                let delivered = attempts.report_fallback(attempt.outcome());
                let answer = attempt.answer.ok().filter(|_| delivered);
                return (attempts.attempts(), answer.map(|a| (None, a)));
            }
            Step::Send {
                region,
                timeout_ms,
                hedge,
            } => {
                let delivered = race(
                    out,
                    &targets,
                    &mut attempts,
                    &mut held,
                    region,
                    hedge,
                    timeout_ms,
                )
                .await;
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
    out: &Outgoing<'_>,
    targets: &[Target<'_>],
    attempts: &mut AttemptLoop,
    held: &mut Vec<(usize, Answer)>,
    first: usize,
    hedge: Option<(u64, usize)>,
    timeout_ms: u64,
) -> Option<(Option<usize>, Answer)> {
    let (first_ctl, first_fut) = send(out, target_of(targets, first), first, timeout_ms);
    futures_util::pin_mut!(first_fut);
    let Some((delay_ms, second)) = hedge else {
        let attempt = first_fut.await;
        return match report(attempts, attempt, held) {
            Report::Deliver(r) => take(held, r),
            Report::Wait | Report::Continue => None,
        };
    };
    let timer = Delay::from(Duration::from_millis(delay_ms));
    let first_fut = match select(first_fut, timer).await {
        Either::Left((attempt, _)) => {
            return match report(attempts, attempt, held) {
                Report::Deliver(r) => take(held, r),
                Report::Wait | Report::Continue => None,
            };
        }
        Either::Right((_, pending)) => pending,
    };
    let now = now_ms();
    if !with_router(|r| attempts.hedge_due(r, second, now)).unwrap_or(false) {
        let attempt = first_fut.await;
        return match report(attempts, attempt, held) {
            Report::Deliver(r) => take(held, r),
            Report::Wait | Report::Continue => None,
        };
    }
    let (second_ctl, second_fut) = send(
        out,
        target_of(targets, second),
        second,
        timeout_ms.saturating_sub(delay_ms).max(1),
    );
    futures_util::pin_mut!(second_fut);
    let (early, late, late_region, late_ctl) = match select(first_fut, second_fut).await {
        Either::Left((attempt, other)) => (attempt, Either::Right(other), second, Some(second_ctl)),
        Either::Right((attempt, other)) => (attempt, Either::Left(other), first, None),
    };
    match report(attempts, early, held) {
        Report::Deliver(r) => {
            // The loser is aborted; the loop learns how long it had taken.
            match &late_ctl {
                Some(ctl) => ctl.fire(),
                None => first_ctl.fire(),
            }
            let now = now_ms();
            with_router(|r| attempts.abandoned(r, late_region, now, random()));
            take(held, r)
        }
        Report::Continue => None,
        Report::Wait => {
            let attempt = match late {
                Either::Left(first) => first.await,
                Either::Right(second) => second.await,
            };
            match report(attempts, attempt, held) {
                Report::Deliver(r) => take(held, r),
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
            if !reply::not_copied(&name) && !reply::internal_response_header(&name) {
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

    /// Every region of the plan is refusing work for load and the edge shed this request
    /// (`core::overload`): 503 with `Retry-After`, no region asked.
    fn overloaded(&self) -> Result<Response> {
        self.log(503, reply::EDGE);
        reply::error(
            503,
            "regions_overloaded",
            "every region is at its capacity; retry after the Retry-After delay",
            self.request_id,
        )
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

/// A region's target (plan indexes come from the same configuration; an impossible index gives an
/// empty origin, which fails as a connection error rather than a panic).
fn target_of<'a>(targets: &[Target<'a>], region: usize) -> Target<'a> {
    targets.get(region).copied().unwrap_or(Target {
        origin: "",
        name: "",
    })
}

/// Every response's last step: CORS for an allowed origin, and the security headers (no
/// sniffing, no caching of API answers, HSTS over HTTPS).
fn finish(mut response: Response, cors: Option<&reply::Cors>, secure: bool) -> Result<Response> {
    let headers = response.headers_mut();
    if let Some(cors) = cors {
        reply::add_cors(headers, cors)?;
    }
    reply::add_security_headers(headers, secure)?;
    Ok(response)
}
