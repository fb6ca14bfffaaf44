//! JWT claim validation (RFC 7519 section 4.1) on top of a verified JWS: time window, issuer,
//! audience, subject, scopes.
//!
//! Time is an argument (unix seconds), never read here: Wasm has no `SystemTime`, and tests replay
//! edges to the second. This module never sees a key or a signature; it runs only on payloads
//! `jws` has already verified.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::json::{ObjectError, parse_object};
use crate::jwk::KeySet;
use crate::jws::verify_jws;

/// The clock skew tolerated on `exp` and `nbf` unless configured otherwise: 60 seconds.
pub const DEFAULT_LEEWAY_S: u64 = 60;

/// What a token must say to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The exact `iss` required.
    pub issuer: String,
    /// The audience that `aud` (a string, or an array of strings) must contain.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds ([`DEFAULT_LEEWAY_S`] by default).
    pub leeway_s: u64,
}

impl Validation {
    /// Requires `iss == issuer` and `audience` in `aud`, with a leeway of [`DEFAULT_LEEWAY_S`]
    /// (60 s).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Validation {
        Validation {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_s: DEFAULT_LEEWAY_S,
        }
    }

    /// The half-open span of unix seconds `[from, until)` in which `claims` are valid:
    /// `from = nbf - leeway` (0 without `nbf`), `until = exp + leeway`. The cache uses the same
    /// window, so a cached answer is the answer a fresh verification would give.
    pub fn window(&self, claims: &Claims) -> (u64, u64) {
        let from = claims
            .nbf
            .map_or(0, |nbf| nbf.saturating_sub(self.leeway_s));
        (from, claims.exp.saturating_add(self.leeway_s))
    }
}

/// The validated claims of a JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `sub`: who the token is about.
    pub sub: String,
    /// `iss`: equal to the configured issuer.
    pub iss: String,
    /// `aud`, as an array (a single string becomes one element).
    pub aud: Vec<String>,
    /// `exp`, unix seconds (a fractional value is rounded down).
    pub exp: u64,
    /// `nbf`, unix seconds, if present (a fractional value is rounded up).
    pub nbf: Option<u64>,
    /// `iat`, unix seconds, if present; informational, never compared with the clock.
    pub iat: Option<u64>,
    /// The scopes granted: `scope` (a space-separated string) and `scp` (an array of strings, or a
    /// space-separated string as some providers send it), in token order, without duplicates.
    pub scopes: Vec<String>,
    /// Every claim of the token, for the ones this struct does not lift out.
    pub all: Map<String, Value>,
}

impl Claims {
    /// Whether `scope` was granted (exact, case-sensitive match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Verifies `token`'s signature with `keys`, then its claims against `validation` at `now_s`
/// (unix seconds).
///
/// Besides [`verify_jws`]'s errors: [`Error::Malformed`] if the payload is not a JSON object,
/// [`Error::MissingClaim`] / [`Error::InvalidClaim`] for an absent or ill-typed `exp`, `iss`,
/// `aud` or `sub`, then [`Error::Expired`], [`Error::NotYetValid`], [`Error::WrongIssuer`],
/// [`Error::WrongAudience`].
pub fn verify_jwt(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
    now_s: u64,
) -> Result<Claims, Error> {
    let jws = verify_jws(token, keys)?;
    validate(&jws.payload, validation, now_s)
}

/// Checks a verified payload's claims.
pub(crate) fn validate(
    payload: &[u8],
    validation: &Validation,
    now_s: u64,
) -> Result<Claims, Error> {
    let all = parse_object(payload).map_err(|e| match e {
        ObjectError::NotAnObject => Error::Malformed("claims are not a JSON object"),
        ObjectError::DuplicateMember => Error::Malformed("duplicate claim"),
    })?;
    let exp = match all.get("exp") {
        None => return Err(Error::MissingClaim("exp")),
        Some(v) => numeric_date(v, Round::Down).ok_or(Error::InvalidClaim("exp"))?,
    };
    let nbf = match all.get("nbf") {
        None => None,
        Some(v) => Some(numeric_date(v, Round::Up).ok_or(Error::InvalidClaim("nbf"))?),
    };
    let iat = match all.get("iat") {
        None => None,
        Some(v) => Some(numeric_date(v, Round::Down).ok_or(Error::InvalidClaim("iat"))?),
    };
    let iss = required_string(&all, "iss")?;
    let aud = audiences(&all)?;
    let sub = required_string(&all, "sub")?;
    let scopes = scopes(&all)?;
    let claims = Claims {
        sub,
        iss,
        aud,
        exp,
        nbf,
        iat,
        scopes,
        all,
    };

    let (from, until) = validation.window(&claims);
    if now_s >= until {
        return Err(Error::Expired);
    }
    if now_s < from {
        return Err(Error::NotYetValid);
    }
    if claims.iss != validation.issuer {
        return Err(Error::WrongIssuer);
    }
    if !claims.aud.contains(&validation.audience) {
        return Err(Error::WrongAudience);
    }
    Ok(claims)
}

#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// A NumericDate: a non-negative JSON number of seconds. Fractions round in the direction that
/// shortens the validity window.
fn numeric_date(value: &Value, round: Round) -> Option<u64> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(whole) = n.as_u64() {
        return Some(whole);
    }
    let f = n.as_f64()?;
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    // `as` saturates at u64::MAX for values beyond it, which is the right answer for a date.
    Some(match round {
        Round::Down => f.floor() as u64,
        Round::Up => f.ceil() as u64,
    })
}

fn required_string(all: &Map<String, Value>, name: &'static str) -> Result<String, Error> {
    match all.get(name) {
        None => Err(Error::MissingClaim(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(Error::InvalidClaim(name)),
    }
}

fn audiences(all: &Map<String, Value>) -> Result<Vec<String>, Error> {
    match all.get("aud") {
        None => Err(Error::MissingClaim("aud")),
        Some(Value::String(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(many)) => many
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .ok_or(Error::InvalidClaim("aud"))
            })
            .collect(),
        Some(_) => Err(Error::InvalidClaim("aud")),
    }
}

fn scopes(all: &Map<String, Value>) -> Result<Vec<String>, Error> {
    let mut scopes: Vec<String> = Vec::new();
    let mut add = |scope: &str| {
        if !scope.is_empty() && !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    };
    match all.get("scope") {
        None => {}
        Some(Value::String(list)) => list.split(' ').for_each(&mut add),
        Some(_) => return Err(Error::InvalidClaim("scope")),
    }
    match all.get("scp") {
        None => {}
        Some(Value::String(list)) => list.split(' ').for_each(&mut add),
        Some(Value::Array(items)) => {
            for item in items {
                add(item.as_str().ok_or(Error::InvalidClaim("scp"))?);
            }
        }
        Some(_) => return Err(Error::InvalidClaim("scp")),
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Claims, Validation, validate};
    use crate::error::Error;

    const NOW: u64 = 1_780_000_000;

    fn check(claims: serde_json::Value) -> Result<Claims, Error> {
        validate(
            claims.to_string().as_bytes(),
            &Validation::new("https://issuer.example", "api"),
            NOW,
        )
    }

    fn base() -> serde_json::Value {
        json!({"iss":"https://issuer.example","aud":"api","sub":"user-1","exp":NOW + 300})
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut claims = base();
        claims[key] = value;
        claims
    }

    fn without(key: &str) -> serde_json::Value {
        let mut claims = base();
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    #[test]
    fn accepts_a_good_token() {
        let claims = check(base()).unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.aud, ["api"]);
        assert!(claims.scopes.is_empty());
    }

    #[test]
    fn exp_edges_with_the_leeway() {
        assert_eq!(
            check(with("exp", json!(NOW - 60))).err(),
            Some(Error::Expired)
        );
        assert!(check(with("exp", json!(NOW - 59))).is_ok());
        assert!(check(with("exp", json!(NOW as f64 - 59.5))).is_err());
        assert_eq!(
            check(without("exp")).err(),
            Some(Error::MissingClaim("exp"))
        );
        for bad in [json!("soon"), json!(-1), json!(null), json!([NOW])] {
            assert_eq!(
                check(with("exp", bad)).err(),
                Some(Error::InvalidClaim("exp"))
            );
        }
        assert!(check(with("exp", json!(u64::MAX))).is_ok());
        assert!(check(with("exp", json!(1e300))).is_ok());
    }

    #[test]
    fn nbf_edges_with_the_leeway() {
        assert!(check(with("nbf", json!(NOW + 60))).is_ok());
        assert_eq!(
            check(with("nbf", json!(NOW + 61))).err(),
            Some(Error::NotYetValid)
        );
        assert_eq!(
            check(with("nbf", json!(NOW as f64 + 60.5))).err(),
            Some(Error::NotYetValid)
        );
        assert!(check(with("nbf", json!(0))).is_ok());
        assert_eq!(
            check(with("nbf", json!("0"))).err(),
            Some(Error::InvalidClaim("nbf"))
        );
        let mut strict = Validation::new("https://issuer.example", "api");
        strict.leeway_s = 0;
        let payload = with("nbf", json!(NOW + 1)).to_string();
        assert_eq!(
            validate(payload.as_bytes(), &strict, NOW).err(),
            Some(Error::NotYetValid)
        );
        assert!(validate(payload.as_bytes(), &strict, NOW + 1).is_ok());
    }

    #[test]
    fn iat_is_typed_but_not_compared() {
        assert_eq!(
            check(with("iat", json!(NOW + 10_000))).unwrap().iat,
            Some(NOW + 10_000)
        );
        assert_eq!(
            check(with("iat", json!(true))).err(),
            Some(Error::InvalidClaim("iat"))
        );
    }

    #[test]
    fn issuer_audience_subject() {
        assert_eq!(
            check(with("iss", json!("https://evil.example"))).err(),
            Some(Error::WrongIssuer)
        );
        assert_eq!(
            check(with("iss", json!("https://issuer.example/"))).err(),
            Some(Error::WrongIssuer)
        );
        assert_eq!(
            check(without("iss")).err(),
            Some(Error::MissingClaim("iss"))
        );
        assert_eq!(
            check(with("aud", json!("other"))).err(),
            Some(Error::WrongAudience)
        );
        assert_eq!(
            check(with("aud", json!([]))).err(),
            Some(Error::WrongAudience)
        );
        assert!(check(with("aud", json!(["other", "api"]))).is_ok());
        assert_eq!(
            check(with("aud", json!(["api", 1]))).err(),
            Some(Error::InvalidClaim("aud"))
        );
        assert_eq!(
            check(without("aud")).err(),
            Some(Error::MissingClaim("aud"))
        );
        assert_eq!(
            check(without("sub")).err(),
            Some(Error::MissingClaim("sub"))
        );
        assert_eq!(
            check(with("sub", json!(""))).err(),
            Some(Error::InvalidClaim("sub"))
        );
        assert_eq!(
            check(with("sub", json!(42))).err(),
            Some(Error::InvalidClaim("sub"))
        );
    }

    #[test]
    fn scopes_from_scope_and_scp() {
        let claims = check(with("scope", json!("read  write read"))).unwrap();
        assert_eq!(claims.scopes, ["read", "write"]);
        assert!(claims.has_scope("write") && !claims.has_scope("Write") && !claims.has_scope(""));
        assert_eq!(
            check(with("scp", json!(["a", "b"]))).unwrap().scopes,
            ["a", "b"]
        );
        assert_eq!(check(with("scp", json!("a b"))).unwrap().scopes, ["a", "b"]);
        assert_eq!(
            check(with("scp", json!(["a", 1]))).err(),
            Some(Error::InvalidClaim("scp"))
        );
        assert_eq!(
            check(with("scope", json!(["a"]))).err(),
            Some(Error::InvalidClaim("scope"))
        );
    }

    #[test]
    fn payload_must_be_one_object() {
        for bad in [&b"[]"[..], b"", b"null", br#"{"sub":"a","sub":"b"}"#] {
            let err = validate(bad, &Validation::new("i", "a"), NOW).unwrap_err();
            assert_eq!(err.code(), "malformed");
        }
    }
}
