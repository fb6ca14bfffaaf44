//! Every way a token, a key set or a claim set can be refused, each with a stable `code()`.
//!
//! The codes are an API: the Worker logs them, counts them and answers with them, so they never
//! change spelling once released. Messages never echo token content (a `kid`, an `alg`, a claim
//! value): tokens are attacker input, and logs must stay small and safe to print.

/// Why verification failed. Match on the variant or on [`Error::code`]; never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is not a canonical compact JWS (`h.p.s`, strict base64url, a JSON object
    /// header with a string `alg`), or its payload is not a JSON object where claims are expected.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not one this crate verifies (`none`, in any case, included).
    #[error("unsupported algorithm")]
    UnsupportedAlg,
    /// The header names a `kid` that no key in the set carries: the caller may refresh its JWKS.
    #[error("no key with the token's kid")]
    UnknownKid,
    /// Keys were found, but none may verify this `alg` (the JWK's `alg`, `kty`/`crv`, `use` or
    /// `key_ops` forbid it).
    #[error("no key in the set may verify this algorithm")]
    KeyMismatch,
    /// The signature does not verify under any candidate key.
    #[error("bad signature")]
    BadSignature,
    /// The header carries `crit`: it asks for extensions this crate does not implement.
    #[error("unknown critical header parameter")]
    UnknownCrit,
    /// `exp` has passed (leeway included).
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future (leeway included).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim (`exp`, `iss`, `aud`, `sub`) is absent.
    #[error("missing claim: {0}")]
    MissingClaim(&'static str),
    /// A claim is present with the wrong type or an impossible value.
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
    /// The JWKS document itself is unusable (not JSON, no `keys` array, too large).
    #[error("malformed key set: {0}")]
    MalformedKeySet(&'static str),
    /// An HMAC secret is shorter than the 32 bytes HS256 requires (RFC 7518 section 3.2).
    #[error("HMAC secret shorter than 32 bytes")]
    WeakKey,
}

impl Error {
    /// A stable, lowercase identifier for logs, metrics and error responses.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed",
            Error::UnsupportedAlg => "unsupported_alg",
            Error::UnknownKid => "unknown_kid",
            Error::KeyMismatch => "key_mismatch",
            Error::BadSignature => "bad_signature",
            Error::UnknownCrit => "unknown_crit",
            Error::Expired => "expired",
            Error::NotYetValid => "not_yet_valid",
            Error::WrongIssuer => "wrong_issuer",
            Error::WrongAudience => "wrong_audience",
            Error::MissingClaim(_) => "missing_claim",
            Error::InvalidClaim(_) => "invalid_claim",
            Error::MalformedKeySet(_) => "malformed_key_set",
            Error::WeakKey => "weak_key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn codes_are_distinct_snake_case() {
        let all = [
            Error::Malformed("x"),
            Error::UnsupportedAlg,
            Error::UnknownKid,
            Error::KeyMismatch,
            Error::BadSignature,
            Error::UnknownCrit,
            Error::Expired,
            Error::NotYetValid,
            Error::WrongIssuer,
            Error::WrongAudience,
            Error::MissingClaim("sub"),
            Error::InvalidClaim("exp"),
            Error::MalformedKeySet("x"),
            Error::WeakKey,
        ];
        let mut codes: Vec<&str> = all.iter().map(Error::code).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
