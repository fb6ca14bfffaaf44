//! Read-your-writes: after a write served by region R, the client gets a token naming R and an
//! expiry; its reads within that window go to R first while R is healthy. The token travels as a
//! cookie (browsers) and a header (mobile clients). Tokens naming an unknown region, or expired,
//! or malformed, are ignored.

use super::Millis;

/// Cookie that carries the token.
pub const COOKIE: &str = "tandem_affinity";
/// Header that carries the token (response and request).
pub const HEADER: &str = "x-tandem-affinity";

/// A region preference with its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub region: String,
    pub expires_ms: Millis,
}

impl Affinity {
    /// The token text: `<region>.<expires_ms>`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.region, self.expires_ms)
    }

    /// Parses a token; `None` when malformed, expired at `now`, or naming no known region.
    pub fn parse(token: &str, now: Millis, known: &[&str]) -> Option<Self> {
        let (region, expires) = token.trim().rsplit_once('.')?;
        let expires_ms: Millis = expires.parse().ok()?;
        if expires_ms <= now || !known.contains(&region) {
            return None;
        }
        Some(Self {
            region: region.to_owned(),
            expires_ms,
        })
    }

    /// The token from a `Cookie` header value, if present.
    pub fn from_cookie_header(cookies: &str) -> Option<&str> {
        cookies
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, v)| v)
    }

    /// A `Set-Cookie` value for this token (Secure when the client came over https).
    pub fn set_cookie(&self, window_ms: Millis, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!(
            "{COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            self.token(),
            window_ms / 1000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_tokens() {
        let known = ["eu-west-1", "eu-central-1"];
        let a = Affinity {
            region: "eu-west-1".into(),
            expires_ms: 5000,
        };
        assert_eq!(Affinity::parse(&a.token(), 4000, &known), Some(a.clone()));
        assert_eq!(Affinity::parse(&a.token(), 5000, &known), None, "expired");
        assert_eq!(
            Affinity::parse("us-east-1.9999", 0, &known),
            None,
            "unknown region"
        );
        assert_eq!(Affinity::parse("garbage", 0, &known), None);
        assert_eq!(Affinity::parse("eu-west-1.notanumber", 0, &known), None);
    }

    #[test]
    fn reads_the_cookie() {
        assert_eq!(
            Affinity::from_cookie_header("a=b; tandem_affinity=eu-west-1.9; c=d"),
            Some("eu-west-1.9")
        );
        assert_eq!(Affinity::from_cookie_header("a=b"), None);
        let c = Affinity {
            region: "r".into(),
            expires_ms: 1,
        }
        .set_cookie(10_000, true);
        assert!(c.starts_with("tandem_affinity=r.1; Path=/; Max-Age=10;") && c.ends_with("Secure"));
    }
}
