//! Who may use the edge, and how the edge proves itself to the regions: the access settings
//! (vars and Worker secrets, read once per isolate) and the pure decisions on them — which scope a
//! request needs, what a refusal says, who may read `/_edge/status`, what a rate-limited client
//! is told. Token checks are `tokens`'s; fetching keys and calling the platform's rate limiter
//! are the adapter's.
//!
//! Closed by default: with no `AUTH` var the edge refuses to serve ("edge misconfigured"), and
//! with no `ORIGIN_AUTH` it signs (and so needs its keys). Turning either off takes an explicit
//! `"off"` / `"none"`.
//!
//! Vars: `AUTH` (JSON, below, or `"off"`), `ORIGIN_AUTH` (`"sigv4"`, the default, or `"none"`),
//! `RATE_LIMIT` (JSON `{"limit", "period_s"}` matching the `[[ratelimits]]` binding, or
//! `"off"`). Secrets: `JWT_HS256_SECRET` (local HS256 tokens, 32 bytes or more),
//! `SIGV4_ACCESS_KEY_ID` and `SIGV4_SECRET_ACCESS_KEY`, `OPERATOR_TOKEN` (16 characters or more;
//! without it `/_edge/status` answers no one, unless the whole edge is open).

use serde::Deserialize;

use super::config::ConfigError;
use super::origin_signing::OriginCredentials;

/// The rules a caller's token must meet (`AUTH`).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRules {
    /// The token's `iss`, exactly.
    pub issuer: String,
    /// A value the token's `aud` must hold.
    pub audience: String,
    /// Where the identity provider publishes its signing keys (RS256, ES256, ...); optional when
    /// `JWT_HS256_SECRET` is set.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Scope needed for GET and HEAD (default `items:read`).
    #[serde(default = "read_scope")]
    pub read_scope: String,
    /// Scope needed for POST, PUT, DELETE and PATCH (default `items:write`).
    #[serde(default = "write_scope")]
    pub write_scope: String,
    /// Clock skew allowed on `exp` and `nbf` (default 60 s, at most 300 s).
    #[serde(default = "leeway_s")]
    pub leeway_s: u64,
    /// A token naming a key this isolate lacks fetches the JWKS at once, but at most this often
    /// (default 30 s, within 1..=3600): a flood of made-up `kid`s never becomes a flood of
    /// fetches, and a rotated key is picked up within this time.
    #[serde(default = "unknown_kid_refresh_s")]
    pub unknown_kid_refresh_s: u64,
    /// The HS256 key (`JWT_HS256_SECRET`), for local use.
    #[serde(skip)]
    pub hs256_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for TokenRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRules")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("hs256", &self.hs256_secret.is_some())
            .finish_non_exhaustive()
    }
}

fn read_scope() -> String {
    "items:read".to_owned()
}
fn write_scope() -> String {
    "items:write".to_owned()
}
fn leeway_s() -> u64 {
    60
}
fn unknown_kid_refresh_s() -> u64 {
    30
}

/// The per-client limit (`RATE_LIMIT`), as the `[[ratelimits]]` binding enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// Requests allowed per client per period.
    pub limit: u32,
    /// The period: 10 or 60 seconds (what the binding supports).
    pub period_s: u32,
}

impl RateLimitPolicy {
    /// The headers of a 429: `Retry-After` and the IETF RateLimit fields
    /// (draft-ietf-httpapi-ratelimit-headers: the policy, and nothing remaining until the
    /// window ends, at most one period away).
    pub fn limited_headers(&self) -> [(&'static str, String); 3] {
        [
            ("retry-after", self.period_s.to_string()),
            (
                "ratelimit-policy",
                format!("\"client\";q={};w={}", self.limit, self.period_s),
            ),
            ("ratelimit", format!("\"client\";r=0;t={}", self.period_s)),
        ]
    }
}

/// Everything about access, parsed once per isolate.
#[derive(Clone, PartialEq)]
pub struct AccessConfig {
    /// Token rules; `None` when `AUTH` is `"off"` (an open edge, the seed's flow).
    pub tokens: Option<TokenRules>,
    /// The keys origin requests are signed with; `None` when `ORIGIN_AUTH` is `"none"`.
    pub origin_signing: Option<OriginCredentials>,
    /// The bearer token `/_edge/status` needs; `None`: nobody may read it.
    pub operator_token: Option<String>,
    /// The per-client rate limit; `None` when `RATE_LIMIT` is unset or `"off"`.
    pub rate_limit: Option<RateLimitPolicy>,
}

impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("tokens", &self.tokens)
            .field("origin_signing", &self.origin_signing)
            .field(
                "operator_token",
                &self.operator_token.as_ref().map(|_| "<set>"),
            )
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Shortest secrets accepted.
pub const MIN_HS256_SECRET_BYTES: usize = 32;
pub const MIN_OPERATOR_TOKEN_BYTES: usize = 16;

impl AccessConfig {
    /// Parses the vars and secrets; `var(name)` returns one if set.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let hs256_secret = match get("JWT_HS256_SECRET") {
            Some(s) if s.len() < MIN_HS256_SECRET_BYTES => {
                return Err(err(
                    "JWT_HS256_SECRET",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
                ));
            }
            other => other.map(String::into_bytes),
        };
        let tokens = match get("AUTH").as_deref().map(str::trim) {
            None => {
                return Err(err(
                    "AUTH",
                    "is not set: a JSON object {\"issuer\", \"audience\", \"jwks_url\"}, or \"off\" for an open edge",
                ));
            }
            Some("off") => None,
            Some(raw) => {
                let mut rules: TokenRules =
                    serde_json::from_str(raw).map_err(|e| err("AUTH", e.to_string()))?;
                check_rules(&rules)?;
                rules.hs256_secret = hs256_secret;
                if rules.jwks_url.is_none() && rules.hs256_secret.is_none() {
                    return Err(err(
                        "AUTH.jwks_url",
                        "is needed when JWT_HS256_SECRET is not set",
                    ));
                }
                Some(rules)
            }
        };
        let origin_signing = match get("ORIGIN_AUTH").as_deref().map(str::trim) {
            None | Some("sigv4") => {
                let id = get("SIGV4_ACCESS_KEY_ID");
                let secret = get("SIGV4_SECRET_ACCESS_KEY");
                match (id, secret) {
                    (Some(id), Some(secret)) => Some(OriginCredentials::new(&id, &secret)),
                    (None, _) => {
                        return Err(err(
                            "SIGV4_ACCESS_KEY_ID",
                            "is not set (origin requests are signed unless ORIGIN_AUTH is \"none\")",
                        ));
                    }
                    (_, None) => return Err(err("SIGV4_SECRET_ACCESS_KEY", "is not set")),
                }
            }
            Some("none") => None,
            Some(other) => {
                return Err(err(
                    "ORIGIN_AUTH",
                    format!("must be \"sigv4\" or \"none\", got {other:?}"),
                ));
            }
        };
        let operator_token = match get("OPERATOR_TOKEN") {
            Some(t) if t.len() < MIN_OPERATOR_TOKEN_BYTES => {
                return Err(err(
                    "OPERATOR_TOKEN",
                    format!("must be at least {MIN_OPERATOR_TOKEN_BYTES} characters"),
                ));
            }
            other => other,
        };
        let rate_limit = match get("RATE_LIMIT").as_deref().map(str::trim) {
            None | Some("off") => None,
            Some(raw) => {
                let policy: RateLimitPolicy =
                    serde_json::from_str(raw).map_err(|e| err("RATE_LIMIT", e.to_string()))?;
                if policy.limit == 0 {
                    return Err(err("RATE_LIMIT.limit", "must be at least 1"));
                }
                if !matches!(policy.period_s, 10 | 60) {
                    return Err(err("RATE_LIMIT.period_s", "must be 10 or 60"));
                }
                Some(policy)
            }
        };
        Ok(Self {
            tokens,
            origin_signing,
            operator_token,
            rate_limit,
        })
    }

    /// Whether `authorization` may read `/_edge/status`: it must carry the operator token
    /// (compared in constant time) when one is set. Without one, only an open edge (`AUTH` off,
    /// the seed's flow) shows its status to anyone; a closed edge shows it to no one.
    pub fn status_allowed(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = self.operator_token.as_deref() else {
            return self.tokens.is_none();
        };
        let Some(given) = authorization.and_then(bearer_token) else {
            return false;
        };
        expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn check_rules(rules: &TokenRules) -> Result<(), ConfigError> {
    if rules.issuer.is_empty() {
        return Err(err("AUTH.issuer", "must not be empty"));
    }
    if rules.audience.is_empty() {
        return Err(err("AUTH.audience", "must not be empty"));
    }
    if let Some(url) = &rules.jwks_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(err("AUTH.jwks_url", "must be an http(s) URL"));
    }
    if rules.read_scope.is_empty() || rules.write_scope.is_empty() {
        return Err(err("AUTH.read_scope", "scopes must not be empty"));
    }
    if rules.leeway_s > 300 {
        return Err(err("AUTH.leeway_s", "must be within 0..=300"));
    }
    if !(1..=3600).contains(&rules.unknown_kid_refresh_s) {
        return Err(err("AUTH.unknown_kid_refresh_s", "must be within 1..=3600"));
    }
    Ok(())
}

/// The token in an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// Which scope a method needs.
pub fn needed_scope<'a>(rules: &'a TokenRules, method: &str) -> &'a str {
    match method {
        // Safe methods read (an OPTIONS that is no CORS preflight reaches a region's 405).
        "GET" | "HEAD" | "OPTIONS" => &rules.read_scope,
        _ => &rules.write_scope,
    }
}

/// What the edge does with a path before any region sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathClass {
    /// The page bundled with the Worker (`/`, `/app.js`, `/app.css`): served by the edge, open
    /// (it asks for the token itself).
    Page(PageAsset),
    /// `/_edge/status`: the edge answers, for operators only.
    EdgeStatus,
    /// `/health`: forwarded without a token (clients and monitors may check it).
    Health,
    /// `/admin/...`: never forwarded (the regions' drill switches are for operators, directly).
    Admin,
    /// Everything else: the API, behind the token.
    Api,
}

/// One file of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAsset {
    Html,
    Script,
    Style,
}

impl PathClass {
    pub fn of(path: &str) -> Self {
        match path {
            "/" | "/index.html" => Self::Page(PageAsset::Html),
            "/app.js" => Self::Page(PageAsset::Script),
            "/app.css" => Self::Page(PageAsset::Style),
            "/_edge/status" => Self::EdgeStatus,
            "/health" => Self::Health,
            p if p == "/admin" || p.starts_with("/admin/") => Self::Admin,
            _ => Self::Api,
        }
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization: Bearer` token.
    MissingToken,
    /// The token failed a check; the code names which (e.g. `expired`, `bad_signature`).
    InvalidToken(&'static str),
    /// The token is valid but lacks this scope.
    InsufficientScope(String),
    /// No key to check tokens with could be had (the identity provider's JWKS unreachable and
    /// none kept): the edge's fault, not the caller's, so a 503 to retry.
    KeysUnavailable,
}

impl Denial {
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => 401,
            Self::InsufficientScope(_) => 403,
            Self::KeysUnavailable => 503,
        }
    }

    /// The stable code in the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "token_missing",
            Self::InvalidToken(_) => "token_invalid",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::KeysUnavailable => "token_keys_unavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::MissingToken => "send a bearer token: Authorization: Bearer <token>".to_owned(),
            Self::InvalidToken(reason) => format!("the bearer token is not valid ({reason})"),
            Self::InsufficientScope(scope) => format!("the token lacks the {scope} scope"),
            Self::KeysUnavailable => {
                "the keys to check tokens with are unavailable; retry shortly".to_owned()
            }
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750).
    pub fn www_authenticate(&self) -> String {
        match self {
            Self::MissingToken | Self::KeysUnavailable => "Bearer realm=\"tandem\"".to_owned(),
            Self::InvalidToken(reason) => format!(
                "Bearer realm=\"tandem\", error=\"invalid_token\", error_description=\"{reason}\""
            ),
            Self::InsufficientScope(scope) => {
                format!("Bearer realm=\"tandem\", error=\"insufficient_scope\", scope=\"{scope}\"")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::tests::vars;

    const AUTH: &str = r#"{"issuer":"https://id.example","audience":"tandem","jwks_url":"https://id.example/jwks.json"}"#;
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn field(pairs: &[(&str, &str)]) -> String {
        AccessConfig::from_vars(vars(pairs)).unwrap_err().field
    }

    #[test]
    fn closed_unless_told_otherwise() {
        assert_eq!(field(&[]), "AUTH");
        assert_eq!(field(&[("AUTH", AUTH)]), "SIGV4_ACCESS_KEY_ID");
        assert_eq!(
            field(&[("AUTH", AUTH), ("SIGV4_ACCESS_KEY_ID", "AKID")]),
            "SIGV4_SECRET_ACCESS_KEY"
        );
        let open =
            AccessConfig::from_vars(vars(&[("AUTH", "off"), ("ORIGIN_AUTH", "none")])).unwrap();
        assert_eq!(open.tokens, None);
        assert_eq!(open.origin_signing, None);
        assert_eq!(open.rate_limit, None);
        // An open edge without an operator token shows its status (names only) to anyone.
        assert!(open.status_allowed(None));
    }

    #[test]
    fn parses_a_closed_edge() {
        let c = AccessConfig::from_vars(vars(&[
            ("AUTH", AUTH),
            ("SIGV4_ACCESS_KEY_ID", "AKID"),
            ("SIGV4_SECRET_ACCESS_KEY", "secret"),
            ("OPERATOR_TOKEN", "operator-token-0123"),
            ("RATE_LIMIT", r#"{"limit":100,"period_s":60}"#),
        ]))
        .unwrap();
        let rules = c.tokens.as_ref().unwrap();
        assert_eq!(rules.read_scope, "items:read");
        assert_eq!(rules.write_scope, "items:write");
        assert_eq!(rules.leeway_s, 60);
        assert_eq!(needed_scope(rules, "GET"), "items:read");
        assert_eq!(needed_scope(rules, "DELETE"), "items:write");
        assert_eq!(needed_scope(rules, "OPTIONS"), "items:read");
        assert_eq!(needed_scope(rules, "PATCH"), "items:write");
        assert_eq!(c.origin_signing.as_ref().unwrap().access_key_id(), "AKID");
        assert!(c.status_allowed(Some("Bearer operator-token-0123")));
        assert!(c.status_allowed(Some("bearer operator-token-0123")));
        assert!(!c.status_allowed(Some("Bearer operator-token-0124")));
        assert!(!c.status_allowed(Some("operator-token-0123")));
        assert!(!c.status_allowed(None));
        // A closed edge without an operator token shows its status to no one.
        let no_operator = AccessConfig {
            operator_token: None,
            ..c.clone()
        };
        assert!(!no_operator.status_allowed(Some("Bearer operator-token-0123")));
        let limited = c.rate_limit.unwrap().limited_headers();
        assert_eq!(limited[0], ("retry-after", "60".to_owned()));
        assert_eq!(
            limited[1],
            ("ratelimit-policy", "\"client\";q=100;w=60".to_owned())
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("secret\"") && !shown.contains("operator-token-0123"),
            "no secret in Debug: {shown}"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = [
            ("SIGV4_ACCESS_KEY_ID", "A"),
            ("SIGV4_SECRET_ACCESS_KEY", "S"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            field(&all)
        };
        assert_eq!(with(&[("AUTH", "{")]), "AUTH");
        assert_eq!(
            with(&[("AUTH", r#"{"issuer":"i","audience":"a"}"#)]),
            "AUTH.jwks_url"
        );
        assert_eq!(
            with(&[(
                "AUTH",
                r#"{"issuer":"i","audience":"a","jwks_url":"ftp://x"}"#
            )]),
            "AUTH.jwks_url"
        );
        assert_eq!(
            with(&[("AUTH", AUTH), ("JWT_HS256_SECRET", "short")]),
            "JWT_HS256_SECRET"
        );
        assert_eq!(
            with(&[(
                "AUTH",
                r#"{"issuer":"i","audience":"a","leeway_s":3600,"jwks_url":"https://x"}"#
            )]),
            "AUTH.leeway_s"
        );
        assert_eq!(
            with(&[("AUTH", "off"), ("ORIGIN_AUTH", "maybe")]),
            "ORIGIN_AUTH"
        );
        assert_eq!(
            with(&[("AUTH", "off"), ("OPERATOR_TOKEN", "short")]),
            "OPERATOR_TOKEN"
        );
        assert_eq!(
            with(&[
                ("AUTH", "off"),
                ("RATE_LIMIT", r#"{"limit":5,"period_s":30}"#)
            ]),
            "RATE_LIMIT.period_s"
        );
        // An HS256 secret alone is enough for a local edge.
        let local = AccessConfig::from_vars(vars(&[
            ("AUTH", r#"{"issuer":"i","audience":"a"}"#),
            ("JWT_HS256_SECRET", SECRET),
            ("ORIGIN_AUTH", "none"),
        ]))
        .unwrap();
        assert!(local.tokens.unwrap().hs256_secret.is_some());
    }

    #[test]
    fn paths_and_bearer_values() {
        assert_eq!(PathClass::of("/_edge/status"), PathClass::EdgeStatus);
        assert_eq!(PathClass::of("/health"), PathClass::Health);
        assert_eq!(PathClass::of("/admin/faults"), PathClass::Admin);
        assert_eq!(PathClass::of("/admin"), PathClass::Admin);
        assert_eq!(PathClass::of("/administrator"), PathClass::Api);
        assert_eq!(PathClass::of("/items"), PathClass::Api);
        assert_eq!(PathClass::of("/"), PathClass::Page(PageAsset::Html));
        assert_eq!(PathClass::of("/app.js"), PathClass::Page(PageAsset::Script));
        assert_eq!(PathClass::of("/app.jsx"), PathClass::Api);
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
    }

    #[test]
    fn denials_say_what_rfc_6750_says() {
        let d = Denial::InvalidToken("expired");
        assert_eq!(d.status(), 401);
        assert!(d.www_authenticate().contains("error=\"invalid_token\""));
        assert_eq!(Denial::MissingToken.status(), 401);
        let s = Denial::InsufficientScope("items:write".into());
        assert_eq!(s.status(), 403);
        assert_eq!(s.code(), "insufficient_scope");
    }
}
