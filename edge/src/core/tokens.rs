//! The caller's token, checked: one isolate's verifier (its keys, a cache of verified tokens, and
//! when to fetch keys again). Signatures and claims are `tandem_jwt`'s; this decides which keys
//! apply, what a failure means for the caller (401, 403, or 503 when no key can be had), and the
//! refresh policy (keys older than [`JWKS_MAX_AGE_MS`] are fetched again after the response; an
//! unknown `kid` triggers a fetch at once, at most every `unknown_kid_refresh_s` of the rules; a
//! failed fetch keeps the last good set).
//!
//! Pure: the adapter fetches and stores the JWKS; time comes in as a parameter.

use std::sync::Arc;

use tandem_jwt::{Error as JwtError, KeySet, TokenCache, Validation};

use super::Millis;
use super::access::{Denial, TokenRules, needed_scope};

/// Keys are fetched again (after the response) once this old: 10 minutes.
pub const JWKS_MAX_AGE_MS: Millis = 10 * 60 * 1000;
/// Verified tokens kept per isolate.
pub const CACHED_TOKENS: usize = 1024;

/// What a check needs from the caller before it can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Refused: answer the client.
    Denied(Denial),
    /// The token names a key this isolate does not have: fetch the JWKS now (if
    /// [`TokenVerifier::may_fetch_for_unknown_kid`] agrees) and check again.
    UnknownKey,
}

/// One isolate's token checks.
pub struct TokenVerifier {
    rules: Arc<TokenRules>,
    validation: Validation,
    keys: Option<KeySet>,
    /// When the JWKS in `keys` was fetched (`None`: never, or no JWKS configured).
    fetched_at: Option<Millis>,
    /// When an unknown `kid` last made us fetch.
    kid_fetch_at: Option<Millis>,
    cache: TokenCache,
}

impl TokenVerifier {
    pub fn new(rules: Arc<TokenRules>) -> Self {
        let validation = Validation {
            issuer: rules.issuer.clone(),
            audience: rules.audience.clone(),
            leeway_s: rules.leeway_s,
        };
        let keys = rules
            .hs256_secret
            .as_deref()
            .and_then(|secret| KeySet::hmac(secret, None).ok());
        Self {
            rules,
            validation,
            keys,
            fetched_at: None,
            kid_fetch_at: None,
            cache: TokenCache::new(CACHED_TOKENS),
        }
    }

    pub fn rules(&self) -> &TokenRules {
        &self.rules
    }

    /// Whether the JWKS must be had before any token can be checked (configured, never fetched).
    pub fn needs_jwks(&self) -> bool {
        self.rules.jwks_url.is_some() && self.fetched_at.is_none()
    }

    /// Whether the keys should be fetched again after this response.
    pub fn refresh_due(&self, now: Millis) -> bool {
        self.rules.jwks_url.is_some()
            && self
                .fetched_at
                .is_none_or(|at| now.saturating_sub(at) >= JWKS_MAX_AGE_MS)
    }

    /// Whether an unknown `kid` may fetch the keys now (and notes that it does).
    pub fn may_fetch_for_unknown_kid(&mut self, now: Millis) -> bool {
        let allowed = self.rules.jwks_url.is_some()
            && self
                .kid_fetch_at
                .is_none_or(|at| now.saturating_sub(at) >= self.rules.unknown_kid_refresh_s * 1000);
        if allowed {
            self.kid_fetch_at = Some(now);
        }
        allowed
    }

    /// Takes a JWKS document fetched at `fetched_at`. A set that cannot be parsed, or holds no
    /// usable key, is refused and the last good one kept.
    pub fn set_jwks(&mut self, document: &[u8], fetched_at: Millis) -> Result<usize, JwtError> {
        let fetched = KeySet::from_jwks(document)?;
        let usable = fetched.usable_len();
        if usable == 0 {
            return Err(JwtError::MalformedKeySet("no usable key"));
        }
        let keys = match self.rules.hs256_secret.as_deref() {
            Some(secret) => KeySet::hmac(secret, None)?.merge(fetched),
            None => fetched,
        };
        self.keys = Some(keys);
        self.fetched_at = Some(fetched_at.max(self.fetched_at.unwrap_or(0)));
        Ok(usable)
    }

    /// The answer to a token whose `kid` the keys still lack after [`Check::UnknownKey`] (and
    /// the fetch, if one was allowed): 401 `unknown_kid`, or 503 `token_keys_unavailable` while
    /// the provider's keys have never been had, as the token may be signed with one of them.
    pub fn unknown_key_denial(&self) -> Denial {
        if self.needs_jwks() {
            Denial::KeysUnavailable
        } else {
            Denial::InvalidToken(JwtError::UnknownKid.code())
        }
    }

    /// Checks the request's `Authorization` value for `method` at `now`: the caller's subject, or
    /// why not.
    pub fn check(
        &mut self,
        authorization: Option<&str>,
        method: &str,
        now: Millis,
    ) -> Result<String, Check> {
        let token = authorization
            .and_then(super::access::bearer_token)
            .ok_or(Check::Denied(Denial::MissingToken))?;
        let keys = self
            .keys
            .as_ref()
            .ok_or(Check::Denied(Denial::KeysUnavailable))?;
        let claims = match self.cache.verify(token, keys, &self.validation, now / 1000) {
            Ok(claims) => claims,
            Err(JwtError::UnknownKid) if self.rules.jwks_url.is_some() => {
                return Err(Check::UnknownKey);
            }
            // No local key fits and the provider's keys were never had: they may well.
            Err(JwtError::KeyMismatch) if self.needs_jwks() => {
                return Err(Check::Denied(Denial::KeysUnavailable));
            }
            Err(e) => return Err(Check::Denied(Denial::InvalidToken(e.code()))),
        };
        let scope = needed_scope(&self.rules, method);
        if !claims.has_scope(scope) {
            return Err(Check::Denied(Denial::InsufficientScope(scope.to_owned())));
        }
        Ok(claims.sub.clone())
    }
}
