//! Drill switches, changeable on a running process through the admin route: the status `/health`
//! answers with (`STATUS`), added latency, and a share of requests failed with 503 (or another
//! status; as `injected_fault`, as a throttled table, or as API Gateway answers when Lambda
//! refused the invocation: [`FaultCode`]). Latency
//! applies to every route but the admin one, like failure-lambda's modes; injected errors to
//! every route but the admin one and `/health`, which keeps answering its status: a gray
//! failure, as users meet it (some requests fail while the health check says 200).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The current fault settings, shared by every request.
#[derive(Debug, Default)]
pub struct Faults {
    status: AtomicU16,
    latency_ms: AtomicU64,
    response_delay_ms: AtomicU64,
    /// Share of requests to fail, in millionths.
    error_ppm: AtomicU32,
    /// The status those failures answer with (0: 503).
    error_status: AtomicU16,
    /// What they answer ([`FaultCode`] as a number).
    error_code: AtomicU8,
}

/// What the injected failures answer.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultCode {
    /// `error_status` `injected_fault`.
    #[default]
    InjectedFault,
    /// What the region answers when DynamoDB keeps throttling after the SDK's retries: 503
    /// `throttled` with `Retry-After` and `x-region-limit: dynamodb` (`error_status` must be
    /// 503).
    Throttled,
    /// What API Gateway answers when Lambda refused or failed the invocation (its concurrency
    /// used up, a crash): `error_status` with `{"message": <reason>}` and no `x-region-status`,
    /// since the function never answered.
    Platform,
}

impl FaultCode {
    fn from_u8(n: u8) -> Self {
        match n {
            1 => Self::Throttled,
            2 => Self::Platform,
            _ => Self::InjectedFault,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::InjectedFault => 0,
            Self::Throttled => 1,
            Self::Platform => 2,
        }
    }
}

/// The settings as the admin route shows and takes them (every field optional on update).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Status of `/health` (100..=599).
    pub status: u16,
    /// Delay added before every non-admin request, in milliseconds (at most 60000).
    pub latency_ms: u64,
    /// Delay added after a request was handled (the write is done, the answer is late): the
    /// "response lost on the way" case a router must not turn into a second write (at most 60000).
    pub response_delay_ms: u64,
    /// Share of non-admin requests answered `error_status` `injected_fault`, 0.0..=1.0.
    pub error_rate: f64,
    /// The status of those answers, 500..=599, or 429 (a region at its limit, as API Gateway's
    /// throttle answers; default 503).
    pub error_status: u16,
    /// What those answers say (default `injected_fault`).
    pub error_code: FaultCode,
}

/// A partial update from the admin route.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub response_delay_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub error_code: Option<FaultCode>,
}

/// Longest injectable latency.
pub const MAX_LATENCY_MS: u64 = 60_000;

impl Faults {
    /// Faults off, health answering `status`.
    pub fn new(status: u16) -> Arc<Self> {
        let faults = Self::default();
        faults.status.store(status, Ordering::Relaxed);
        Arc::new(faults)
    }

    pub fn settings(&self) -> FaultSettings {
        FaultSettings {
            status: self.status.load(Ordering::Relaxed),
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            response_delay_ms: self.response_delay_ms.load(Ordering::Relaxed),
            error_rate: f64::from(self.error_ppm.load(Ordering::Relaxed)) / 1e6,
            error_status: match self.error_status.load(Ordering::Relaxed) {
                0 => 503,
                s => s,
            },
            error_code: FaultCode::from_u8(self.error_code.load(Ordering::Relaxed)),
        }
    }

    /// Applies an update after checking every field; nothing changes if one is invalid.
    pub fn apply(&self, update: FaultUpdate) -> Result<FaultSettings, String> {
        if let Some(s) = update.status
            && !(100..=599).contains(&s)
        {
            return Err(format!("status must be 100..=599, got {s}"));
        }
        if update
            .latency_ms
            .into_iter()
            .chain(update.response_delay_ms)
            .any(|l| l > MAX_LATENCY_MS)
        {
            return Err(format!(
                "latency_ms and response_delay_ms must be at most {MAX_LATENCY_MS}"
            ));
        }
        if let Some(r) = update.error_rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err("error_rate must be between 0 and 1".to_owned());
        }
        if let Some(s) = update.error_status
            && !(s == 429 || (500..=599).contains(&s))
        {
            return Err(format!("error_status must be 429 or 500..=599, got {s}"));
        }
        let status_after = update.error_status.unwrap_or(self.settings().error_status);
        let code_after = update.error_code.unwrap_or(self.settings().error_code);
        if code_after == FaultCode::Throttled && status_after != 503 {
            return Err(format!(
                "error_code \"throttled\" answers 503, not error_status {status_after}"
            ));
        }
        if let Some(s) = update.error_status {
            self.error_status.store(s, Ordering::Relaxed);
        }
        if let Some(c) = update.error_code {
            self.error_code.store(c.as_u8(), Ordering::Relaxed);
        }
        if let Some(s) = update.status {
            self.status.store(s, Ordering::Relaxed);
        }
        if let Some(l) = update.latency_ms {
            self.latency_ms.store(l, Ordering::Relaxed);
        }
        if let Some(d) = update.response_delay_ms {
            self.response_delay_ms.store(d, Ordering::Relaxed);
        }
        if let Some(r) = update.error_rate {
            self.error_ppm
                .store((r * 1e6).round() as u32, Ordering::Relaxed);
        }
        Ok(self.settings())
    }

    /// The status `/health` answers with now.
    pub fn health_status(&self) -> u16 {
        self.status.load(Ordering::Relaxed)
    }
}

/// Header on every served response with the status `/health` answers now: a router in front
/// learns from live traffic, not only from probes, that an operator drained this region.
pub static REGION_STATUS: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-region-status");

/// Middleware: delay and fail requests as configured; tag responses with the health status.
pub async fn inject(State(faults): State<Arc<Faults>>, request: Request, next: Next) -> Response {
    let (mut response, by_function) = faulted(&faults, request, next).await;
    if by_function {
        response
            .headers_mut()
            .insert(REGION_STATUS.clone(), faults.health_status().into());
    }
    response
}

/// The response, and whether the function wrote it (not the platform in front of it).
async fn faulted(faults: &Faults, request: Request, next: Next) -> (Response, bool) {
    let latency = faults.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let ppm = faults.error_ppm.load(Ordering::Relaxed);
    let health = request.uri().path() == "/health";
    if ppm > 0 && !health && fastrand::u32(0..1_000_000) < ppm {
        let settings = faults.settings();
        let status = axum::http::StatusCode::from_u16(settings.error_status)
            .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
        return match settings.error_code {
            FaultCode::Throttled => (ApiError::Throttled.into_response(), true),
            FaultCode::Platform => {
                let reason = status.canonical_reason().unwrap_or("Error");
                let body = axum::Json(serde_json::json!({ "message": reason }));
                ((status, body).into_response(), false)
            }
            FaultCode::InjectedFault => {
                let mut response = ApiError::InjectedFault.into_response();
                *response.status_mut() = status;
                (response, true)
            }
        };
    }
    let response = next.run(request).await;
    let delay = faults.response_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    (response, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_updates_change_nothing() {
        let f = Faults::new(200);
        let bad = FaultUpdate {
            status: Some(404),
            error_rate: Some(2.0),
            ..Default::default()
        };
        assert!(f.apply(bad).is_err());
        assert_eq!(f.health_status(), 200);
        let ok = FaultUpdate {
            status: Some(404),
            latency_ms: Some(250),
            error_rate: Some(0.5),
            ..Default::default()
        };
        let s = f.apply(ok).unwrap();
        assert_eq!((s.status, s.latency_ms, s.error_rate), (404, 250, 0.5));
        for status in [200, 404, 428, 430, 600] {
            let bad = FaultUpdate {
                error_status: Some(status),
                ..Default::default()
            };
            assert!(f.apply(bad).is_err(), "{status}");
        }
        let throttle = FaultUpdate {
            error_status: Some(429),
            ..Default::default()
        };
        assert_eq!(f.apply(throttle).unwrap().error_status, 429);
        // A throttled table answers 503: any other status with it is refused, whichever
        // field the update sets.
        let table = FaultUpdate {
            error_code: Some(FaultCode::Throttled),
            ..Default::default()
        };
        assert!(f.apply(table).is_err());
        let table = FaultUpdate {
            error_status: Some(503),
            error_code: Some(FaultCode::Throttled),
            ..Default::default()
        };
        assert_eq!(f.apply(table).unwrap().error_code, FaultCode::Throttled);
        let other_status = FaultUpdate {
            error_status: Some(500),
            ..Default::default()
        };
        assert!(f.apply(other_status).is_err());
        assert_eq!(f.settings().error_status, 503);
    }
}
