//! Read-your-writes: after a write served by region R, the client gets a token naming R and an
//! expiry; its requests within that window (reads and writes) go to R first while R is healthy.
//! The token travels as a cookie (browsers) and a header (mobile clients).
//!
//! Tokens are signed: `<region>.<expires_ms>.<mac>`, where `mac` is the first 16 bytes of
//! HMAC-SHA-256 over `<region>.<expires_ms>` with the edge's secret, in hex. A token that is
//! malformed, forged or altered, expired, valid for longer than the window allows, or naming an
//! unknown region is ignored: the request is routed as if it carried none. Never an error.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Millis;

/// Cookie that carries the token.
pub const COOKIE: &str = "tandem_affinity";
/// Header that carries the token (response and request).
pub const HEADER: &str = "x-tandem-affinity";
/// Shortest secret accepted for signing tokens.
pub const MIN_SECRET_BYTES: usize = 32;
/// Bytes of the MAC kept in the token.
const MAC_BYTES: usize = 16;

/// A region preference with its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub region: String,
    pub expires_ms: Millis,
}

/// The key tokens are signed with (an HMAC keyed once, cloned per token).
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// A key from the secret's bytes; `None` when shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Option<Self> {
        if secret.len() < MIN_SECRET_BYTES {
            return None;
        }
        Hmac::<Sha256>::new_from_slice(secret).ok().map(Self)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(payload.as_bytes());
        mac
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Affinity {
    /// The signed token text.
    pub fn token(&self, key: &SigningKey) -> String {
        let payload = format!("{}.{}", self.region, self.expires_ms);
        let tag = key.mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", hex(&tag[..MAC_BYTES]))
    }

    /// Parses and verifies a token; `None` when malformed, badly signed, expired at `now`,
    /// expiring later than `now + window_ms` (no token outlives the window it was issued for),
    /// or naming no known region.
    pub fn parse(
        token: &str,
        now: Millis,
        window_ms: Millis,
        known: impl Fn(&str) -> bool,
        key: &SigningKey,
    ) -> Option<Self> {
        let (payload, tag) = token.trim().rsplit_once('.')?;
        let (region, expires) = payload.rsplit_once('.')?;
        let expires_ms: Millis = expires.parse().ok()?;
        // The cheap checks first: most stale tokens never cost a MAC.
        if expires_ms <= now || expires_ms > now.saturating_add(window_ms) {
            return None;
        }
        if !known(region) {
            return None;
        }
        let tag = unhex(tag).filter(|t| t.len() == MAC_BYTES)?;
        key.mac(payload).verify_truncated_left(&tag).ok()?;
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
}

/// A `Set-Cookie` value carrying `token` for `window_ms` (Secure when the client came over https).
pub fn set_cookie(token: &str, window_ms: Millis, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        window_ms / 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 2] = ["eu-west-1", "eu-central-1"];

    fn known(region: &str) -> bool {
        KNOWN.contains(&region)
    }
    const WINDOW: Millis = 10_000;

    fn key() -> SigningKey {
        SigningKey::new(b"test-secret-test-secret-test-secret!").unwrap()
    }

    fn dublin(expires_ms: Millis) -> Affinity {
        Affinity {
            region: "eu-west-1".into(),
            expires_ms,
        }
    }

    #[test]
    fn round_trips_and_expires() {
        let a = dublin(5000);
        let t = a.token(&key());
        assert_eq!(Affinity::parse(&t, 4000, WINDOW, known, &key()), Some(a));
        assert_eq!(
            Affinity::parse(&t, 5000, WINDOW, known, &key()),
            None,
            "expired"
        );
    }

    #[test]
    fn forged_altered_and_overlong_tokens_are_ignored() {
        let k = key();
        let t = dublin(5000).token(&k);
        let other = SigningKey::new(&[7u8; 32]).unwrap();
        assert_eq!(
            Affinity::parse(&t, 0, WINDOW, known, &other),
            None,
            "other key"
        );
        let moved = t.replacen("eu-west-1", "eu-central-1", 1);
        assert_eq!(
            Affinity::parse(&moved, 0, WINDOW, known, &k),
            None,
            "region changed"
        );
        let later = t.replacen(".5000.", ".9000.", 1);
        assert_eq!(
            Affinity::parse(&later, 0, WINDOW, known, &k),
            None,
            "expiry changed"
        );
        let mut flipped = t.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            Affinity::parse(&flipped, 0, WINDOW, known, &k),
            None,
            "mac changed"
        );
        for garbage in [
            "",
            "garbage",
            "eu-west-1.5000",
            "eu-west-1.5000.zz",
            "..",
            "a.b.c",
        ] {
            assert_eq!(
                Affinity::parse(garbage, 0, WINDOW, known, &k),
                None,
                "{garbage:?}"
            );
        }
        // Signed with the right key but for longer than the window: not honoured.
        let long = dublin(60_000).token(&k);
        assert_eq!(
            Affinity::parse(&long, 0, WINDOW, known, &k),
            None,
            "outlives the window"
        );
        let unknown = Affinity {
            region: "us-east-1".into(),
            expires_ms: 5000,
        }
        .token(&k);
        assert_eq!(
            Affinity::parse(&unknown, 0, WINDOW, known, &k),
            None,
            "unknown region"
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(SigningKey::new(&[1u8; 31]).is_none());
        assert!(SigningKey::new(&[1u8; 32]).is_some());
    }

    #[test]
    fn reads_the_cookie() {
        assert_eq!(
            Affinity::from_cookie_header("a=b; tandem_affinity=eu-west-1.9.ab; c=d"),
            Some("eu-west-1.9.ab")
        );
        assert_eq!(Affinity::from_cookie_header("a=b"), None);
        let c = set_cookie(&dublin(1).token(&key()), 10_000, true);
        assert!(c.starts_with("tandem_affinity=eu-west-1.1."), "{c}");
        assert!(c.contains("; Path=/; Max-Age=10;") && c.ends_with("Secure"));
    }
}
