//! The edge's configuration, from wrangler vars, parsed and checked once per isolate.
//!
//! Vars (all strings):
//! - `REGIONS`: JSON array of `{"name", "origin", "lat", "lon", "weight"?}` (1 to 5 regions).
//! - `FALLBACK_ORIGIN`: base URL tried once when every region failed (the Route 53 name); optional.
//! - `ROUTING`: JSON object overriding any field of [`Settings`]; optional.
//! - `CORS_ORIGINS`: JSON array of allowed browser origins (or `["*"]`); optional.
//! - `AFFINITY_SECRET` (a Worker secret): at least 32 bytes; signs the affinity tokens. Without
//!   it no token is issued or honoured (requests are routed by proximity, latency and health
//!   alone).

use serde::Deserialize;

use super::affinity::{MIN_SECRET_BYTES, SigningKey};
use super::geo::Coordinates;

/// One region the edge may send requests to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// The region's name, e.g. `eu-west-1`; what `x-served-by` says.
    pub name: String,
    /// Base URL of the region's own endpoint, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com`.
    pub origin: String,
    pub lat: f64,
    pub lon: f64,
    /// Relative preference (default 1). A region of weight 2 looks half as far away.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

impl RegionConfig {
    pub fn coordinates(&self) -> Coordinates {
        Coordinates {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// Timeouts, thresholds and switches. Every default is stated on its field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// One attempt's timeout (default 2000 ms).
    pub per_try_timeout_ms: u64,
    /// The whole request's deadline, all attempts included (default 6000 ms).
    pub deadline_ms: u64,
    /// Most attempts per request across regions, fallback excluded (default 3).
    pub max_attempts: u32,
    /// Send a second copy of a slow GET to the next region (default true).
    pub hedge: bool,
    /// Hedge delay; 0 means automatic: three times the region's recent latency EWMA (`hedge_min_ms` when
    /// unknown, stale or on trial), within
    /// `hedge_min_ms..=per_try_timeout_ms / 2` (default 0).
    pub hedge_delay_ms: u64,
    /// Lower bound of the automatic hedge delay (default 50 ms).
    pub hedge_min_ms: u64,
    /// Consecutive failures that eject a region (default 3; Envoy's consecutive_5xx is 5).
    pub consecutive_failures: u32,
    /// First ejection time; the n-th ejection lasts n times this (default 5000 ms).
    pub base_ejection_ms: u64,
    /// Longest ejection (default 60000 ms).
    pub max_ejection_ms: u64,
    /// Random extra on each ejection, up to this (default 1000 ms).
    pub ejection_jitter_ms: u64,
    /// A trial request that has not reported back after this is presumed lost (default 10000 ms).
    pub trial_timeout_ms: u64,
    /// Retries allowed per request served, on top of the floor (default 0.2).
    pub retry_ratio: f64,
    /// Retries always allowed per second whatever the traffic (default 10).
    pub retry_floor_per_s: f64,
    /// Path the probes call on each region (default `/health`).
    pub probe_path: String,
    /// A probe's timeout (default 2000 ms).
    pub probe_timeout_ms: u64,
    /// How often an isolate re-reads shared probe results (default 5000 ms).
    pub probe_refresh_ms: u64,
    /// Probe results older than this are ignored (default 180000 ms: three cron periods).
    pub probe_stale_ms: u64,
    /// Latency EWMA time constant (default 10000 ms).
    pub ewma_decay_ms: u64,
    /// How long after a write its region is preferred for the writer's reads (default 10000 ms,
    /// above global tables' usual replication lag of about a second).
    pub affinity_window_ms: u64,
    /// Largest request body buffered for re-sending (default 409600 bytes: the item limit).
    pub max_body_bytes: usize,
    /// Near-equal regions: a region whose cost is within `max(sticky_band_ratio × best,
    /// sticky_band_ms / weight of the best)` of the best joins the band of near-equal regions,
    /// and leaves it only when it falls twice that far behind (hysteresis). Within the band each
    /// client keeps one region, chosen by a hash of the client and the region name; beyond it,
    /// regions follow by cost. Both 0: no band, strict cost order (default 5 ms: below that,
    /// latency differences are mostly noise; Route 53 latency records likewise keep one resolver
    /// on one region).
    pub sticky_band_ms: f64,
    /// See `sticky_band_ms` (default 0.2).
    pub sticky_band_ratio: f64,
    /// The failure-rate rule's sliding window (default 10000 ms, Envoy's outlier-detection
    /// interval).
    pub failure_window_ms: u64,
    /// Share of failed attempts in the window that ejects a region, beside the consecutive rule
    /// (default 0.5). Envoy's failure-percentage rule ejects at 85 %, made for large fleets;
    /// with 2 to 5 regions a region failing half its requests is worth leaving at once (the
    /// last region in service is never ejected). Lesser failure rates make a region rank worse
    /// instead (`failure_penalty_ms`): a region failing one request in five is avoided, not
    /// ejected, so a small sample's bad luck never ejects it.
    pub failure_rate_ejection: f64,
    /// Attempts a region needs in the window before the failure-rate rule judges it (default 20;
    /// Envoy's request volume is 50, for one host of many).
    pub failure_rate_min_requests: u32,
    /// What failing costs a region in the ranking, in ms per unit of its smoothed failure share
    /// beyond 10 % (default 1000: a failed attempt costs the client a retry's round trip, a
    /// share of the retry budget, and the chance of an error if the retry fails too, so it
    /// weighs as a second; a region failing 20 % of requests ranks 100 ms worse, enough to
    /// send its clients to a healthy region an ocean away rather than retry). Finagle's and Linkerd's balancers
    /// likewise weigh errors as latency.
    pub failure_penalty_ms: f64,
    /// Failed probes in a row that drain a region (default 3, Route 53's FailureThreshold); a
    /// passing probe, or the region's own `x-region-status`, ends it.
    pub probe_failures: u32,
    /// Load shedding for a region that answers 429 (`core::overload`): first attempts to it are
    /// shed at the edge in the share `(requests − shed_k × accepted) / (requests + 1)` of the
    /// last `shed_window_ms`, so the region gets about `shed_k` times what it accepts (default
    /// 1.1; the SRE book's 2 lets twice through; closer to 1 recovers more slowly; 0 turns
    /// shedding off).
    pub shed_k: f64,
    /// See `shed_k`; a window without a refusal ends shedding (default 5000 ms: short enough to
    /// follow a survivor's first seconds at its limit, long enough for a few dozen answers at an
    /// isolate's usual 10 requests/s).
    pub shed_window_ms: u64,
    /// After a 429, how long no retry or hedge goes to that region (default 1000 ms: API
    /// Gateway's token bucket refills per second).
    pub refusal_hold_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            per_try_timeout_ms: 2000,
            deadline_ms: 6000,
            max_attempts: 3,
            hedge: true,
            hedge_delay_ms: 0,
            hedge_min_ms: 50,
            consecutive_failures: 3,
            base_ejection_ms: 5000,
            max_ejection_ms: 60_000,
            ejection_jitter_ms: 1000,
            trial_timeout_ms: 10_000,
            retry_ratio: 0.2,
            retry_floor_per_s: 10.0,
            probe_path: "/health".to_owned(),
            probe_timeout_ms: 2000,
            probe_refresh_ms: 5000,
            probe_stale_ms: 180_000,
            ewma_decay_ms: 10_000,
            affinity_window_ms: 10_000,
            max_body_bytes: 400 * 1024,
            sticky_band_ms: 5.0,
            sticky_band_ratio: 0.2,
            failure_window_ms: 10_000,
            failure_rate_ejection: 0.5,
            failure_rate_min_requests: 20,
            failure_penalty_ms: 1000.0,
            probe_failures: 3,
            shed_k: 1.1,
            shed_window_ms: 5_000,
            refusal_hold_ms: 1_000,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub regions: Vec<RegionConfig>,
    pub fallback_origin: Option<String>,
    pub settings: Settings,
    pub cors_origins: Vec<String>,
    /// Signs affinity tokens (`AFFINITY_SECRET`); `None`: no affinity.
    pub affinity_key: Option<SigningKey>,
}

/// A configuration problem, naming the var (and field) at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Most regions the edge routes between.
pub const MAX_REGIONS: usize = 5;

fn check_origin(field: &str, origin: &str) -> Result<(), ConfigError> {
    let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
        && origin.len() > "https://".len()
        && !origin.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!("{origin:?} must be an http(s) base URL without a trailing slash"),
        ))
    }
}

impl EdgeConfig {
    /// Parses the vars; `var(name)` returns a var's value if set.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let raw = var("REGIONS").ok_or_else(|| err("REGIONS", "is not set"))?;
        let regions: Vec<RegionConfig> =
            serde_json::from_str(&raw).map_err(|e| err("REGIONS", e.to_string()))?;
        if regions.is_empty() || regions.len() > MAX_REGIONS {
            return Err(err(
                "REGIONS",
                format!("needs 1 to {MAX_REGIONS} regions, got {}", regions.len()),
            ));
        }
        for (i, r) in regions.iter().enumerate() {
            let field = |f: &str| format!("REGIONS[{i}].{f}");
            if r.name.is_empty()
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(err(
                    field("name"),
                    format!("{:?} must be letters, digits and '-'", r.name),
                ));
            }
            if regions[..i].iter().any(|o| o.name == r.name) {
                return Err(err(field("name"), format!("{:?} appears twice", r.name)));
            }
            check_origin(&field("origin"), &r.origin)?;
            if !(-90.0..=90.0).contains(&r.lat) {
                return Err(err(field("lat"), "must be within -90..=90"));
            }
            if !(-180.0..=180.0).contains(&r.lon) {
                return Err(err(field("lon"), "must be within -180..=180"));
            }
            if !(r.weight.is_finite() && r.weight > 0.0) {
                return Err(err(field("weight"), "must be a positive number"));
            }
        }
        let fallback_origin = var("FALLBACK_ORIGIN").filter(|s| !s.trim().is_empty());
        if let Some(origin) = &fallback_origin {
            check_origin("FALLBACK_ORIGIN", origin)?;
        }
        let settings: Settings = match var("ROUTING").filter(|s| !s.trim().is_empty()) {
            None => Settings::default(),
            Some(raw) => serde_json::from_str(&raw).map_err(|e| err("ROUTING", e.to_string()))?,
        };
        check_settings(&settings)?;
        let cors_origins = match var("CORS_ORIGINS").filter(|s| !s.trim().is_empty()) {
            None => Vec::new(),
            Some(raw) => {
                serde_json::from_str(&raw).map_err(|e| err("CORS_ORIGINS", e.to_string()))?
            }
        };
        let affinity_key = match var("AFFINITY_SECRET").filter(|s| !s.is_empty()) {
            None => None,
            Some(secret) => Some(SigningKey::new(secret.as_bytes()).ok_or_else(|| {
                err(
                    "AFFINITY_SECRET",
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                )
            })?),
        };
        Ok(Self {
            regions,
            fallback_origin,
            settings,
            cors_origins,
            affinity_key,
        })
    }
}

fn check_settings(s: &Settings) -> Result<(), ConfigError> {
    // Every whole-number setting and its bounds (inclusive).
    let whole: [(&str, u64, u64, u64); 21] = [
        ("per_try_timeout_ms", s.per_try_timeout_ms, 10, 60_000),
        ("deadline_ms", s.deadline_ms, 10, 120_000),
        (
            "max_attempts",
            u64::from(s.max_attempts),
            1,
            MAX_REGIONS as u64,
        ),
        ("hedge_delay_ms", s.hedge_delay_ms, 0, 60_000),
        ("hedge_min_ms", s.hedge_min_ms, 1, 60_000),
        (
            "consecutive_failures",
            u64::from(s.consecutive_failures),
            1,
            1_000_000,
        ),
        ("base_ejection_ms", s.base_ejection_ms, 100, 600_000),
        ("max_ejection_ms", s.max_ejection_ms, 100, 3_600_000),
        ("ejection_jitter_ms", s.ejection_jitter_ms, 0, 60_000),
        ("trial_timeout_ms", s.trial_timeout_ms, 100, 600_000),
        ("probe_timeout_ms", s.probe_timeout_ms, 10, 60_000),
        ("probe_refresh_ms", s.probe_refresh_ms, 1_000, 3_600_000),
        ("probe_stale_ms", s.probe_stale_ms, 1_000, 86_400_000),
        ("ewma_decay_ms", s.ewma_decay_ms, 100, 600_000),
        ("affinity_window_ms", s.affinity_window_ms, 1_000, 3_600_000),
        (
            "max_body_bytes",
            s.max_body_bytes as u64,
            1,
            100 * 1024 * 1024,
        ),
        ("failure_window_ms", s.failure_window_ms, 1_000, 600_000),
        (
            "failure_rate_min_requests",
            u64::from(s.failure_rate_min_requests),
            1,
            100_000,
        ),
        ("probe_failures", u64::from(s.probe_failures), 1, 10),
        ("shed_window_ms", s.shed_window_ms, 1_000, 600_000),
        ("refusal_hold_ms", s.refusal_hold_ms, 0, 60_000),
    ];
    for (field, value, min, max) in whole {
        if !(min..=max).contains(&value) {
            return Err(err(
                format!("ROUTING.{field}"),
                format!("must be within {min}..={max}, got {value}"),
            ));
        }
    }
    let fractional = [
        ("retry_ratio", s.retry_ratio, 0.0, 10.0),
        ("retry_floor_per_s", s.retry_floor_per_s, 0.0, 10_000.0),
        ("sticky_band_ms", s.sticky_band_ms, 0.0, 1_000.0),
        ("sticky_band_ratio", s.sticky_band_ratio, 0.0, 1.0),
        ("failure_rate_ejection", s.failure_rate_ejection, 0.01, 1.0),
        ("failure_penalty_ms", s.failure_penalty_ms, 0.0, 60_000.0),
        ("shed_k", s.shed_k, 0.0, 10.0),
    ];
    for (field, value, min, max) in fractional {
        if !(value.is_finite() && (min..=max).contains(&value)) {
            return Err(err(
                format!("ROUTING.{field}"),
                format!("must be within {min}..={max}, got {value}"),
            ));
        }
    }
    if s.shed_k > 0.0 && s.shed_k < 1.0 {
        // Below 1 the edge would shed requests of a region that refuses nothing.
        return Err(err("ROUTING.shed_k", "must be 0 (off) or within 1..=10"));
    }
    if s.deadline_ms < s.per_try_timeout_ms {
        return Err(err(
            "ROUTING.deadline_ms",
            "must be at least per_try_timeout_ms",
        ));
    }
    if s.max_ejection_ms < s.base_ejection_ms {
        return Err(err(
            "ROUTING.max_ejection_ms",
            "must be at least base_ejection_ms",
        ));
    }
    if s.hedge_min_ms > s.per_try_timeout_ms {
        return Err(err(
            "ROUTING.hedge_min_ms",
            "must be at most per_try_timeout_ms",
        ));
    }
    if s.probe_stale_ms < s.probe_refresh_ms {
        return Err(err(
            "ROUTING.probe_stale_ms",
            "must be at least probe_refresh_ms",
        ));
    }
    if !s.probe_path.starts_with('/') {
        return Err(err("ROUTING.probe_path", "must start with '/'"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const TWO: &str = r#"[
        {"name":"eu-west-1","origin":"http://127.0.0.1:9001","lat":53.35,"lon":-6.26},
        {"name":"eu-central-1","origin":"http://127.0.0.1:9002","lat":50.11,"lon":8.68,"weight":2}
    ]"#;

    /// A `var` lookup over fixed pairs, as the Worker's vars would answer.
    pub(crate) fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn parses_regions_and_defaults() {
        let c = EdgeConfig::from_vars(vars(&[
            ("REGIONS", TWO),
            ("FALLBACK_ORIGIN", "https://api.example.com"),
        ]))
        .unwrap();
        assert_eq!(c.regions.len(), 2);
        assert_eq!(c.regions[0].weight, 1.0);
        assert_eq!(c.regions[1].weight, 2.0);
        assert_eq!(c.settings, Settings::default());
        assert_eq!(
            c.fallback_origin.as_deref(),
            Some("https://api.example.com")
        );
    }

    #[test]
    fn overrides_settings() {
        let c = EdgeConfig::from_vars(vars(&[
            ("REGIONS", TWO),
            ("ROUTING", r#"{"per_try_timeout_ms":500,"hedge":false}"#),
        ]))
        .unwrap();
        assert_eq!(c.settings.per_try_timeout_ms, 500);
        assert!(!c.settings.hedge);
        assert_eq!(c.settings.deadline_ms, 6000);
    }

    #[test]
    fn errors_name_the_field() {
        let field = |pairs: &[(&str, &str)]| EdgeConfig::from_vars(vars(pairs)).unwrap_err().field;
        assert_eq!(field(&[]), "REGIONS");
        assert_eq!(field(&[("REGIONS", "[")]), "REGIONS");
        assert_eq!(
            field(&[(
                "REGIONS",
                r#"[{"name":"a","origin":"ftp://x","lat":0,"lon":0}]"#
            )]),
            "REGIONS[0].origin"
        );
        assert_eq!(
            field(&[(
                "REGIONS",
                r#"[{"name":"a","origin":"http://host-x","lat":99,"lon":0}]"#
            )]),
            "REGIONS[0].lat"
        );
        assert_eq!(
            field(&[(
                "REGIONS",
                r#"[{"name":"a","origin":"http://host-x","lat":0,"lon":0},{"name":"a","origin":"http://host-y","lat":0,"lon":0}]"#
            )]),
            "REGIONS[1].name"
        );
        assert_eq!(
            field(&[("REGIONS", TWO), ("ROUTING", r#"{"per_try_timout_ms":5}"#)]),
            "ROUTING"
        );
        assert_eq!(
            field(&[("REGIONS", TWO), ("ROUTING", r#"{"deadline_ms":5}"#)]),
            "ROUTING.deadline_ms"
        );
        assert_eq!(
            field(&[("REGIONS", TWO), ("FALLBACK_ORIGIN", "nope")]),
            "FALLBACK_ORIGIN"
        );
        assert_eq!(
            field(&[("REGIONS", TWO), ("AFFINITY_SECRET", "short")]),
            "AFFINITY_SECRET"
        );
        assert_eq!(
            field(&[("REGIONS", TWO), ("ROUTING", r#"{"sticky_band_ratio":2}"#)]),
            "ROUTING.sticky_band_ratio"
        );
        // Settings that would make every request a trial, or a KV read per request.
        assert_eq!(
            field(&[("REGIONS", TWO), ("ROUTING", r#"{"trial_timeout_ms":0}"#)]),
            "ROUTING.trial_timeout_ms"
        );
        assert_eq!(
            field(&[("REGIONS", TWO), ("ROUTING", r#"{"probe_refresh_ms":0}"#)]),
            "ROUTING.probe_refresh_ms"
        );
        assert_eq!(
            field(&[
                ("REGIONS", TWO),
                ("ROUTING", r#"{"failure_rate_ejection":0}"#)
            ]),
            "ROUTING.failure_rate_ejection"
        );
    }
}
