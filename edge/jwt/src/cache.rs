//! A small bounded cache of verified tokens, so a client repeating its bearer token pays for one
//! signature check per token instead of one per request.
//!
//! Entries are keyed by SHA-256 over the token *and* its verification context (the key set's
//! fingerprint, issuer, audience, leeway): a cache shared by two audiences, or kept across a JWKS
//! refresh, can never answer for a context it did not verify. An entry answers only inside the
//! token's validity window ([`Validation::window`]), so a hit is exactly what a fresh verification
//! would return. Capacity is bounded; when full, expired entries go first, then the oldest.
//! Only successes are cached. Time is an argument; this module never reads a clock, and it never
//! stores the token itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::claims::{Claims, Validation, verify_jwt};
use crate::error::Error;
use crate::jwk::KeySet;

/// The capacity [`TokenCache::default`] uses: 1,024 tokens.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Verified claims by token hash. Not thread-safe by itself (a Worker isolate is single-threaded);
/// wrap it in a mutex to share it across threads.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    // BTreeMaps, not HashMaps: no random hasher seed is needed (wasm32 has no entropy source
    // without extra crates), and the keys are SHA-256 outputs of verified tokens only.
    entries: BTreeMap<[u8; 32], Entry>,
    /// Insertion order: sequence number to key, for evicting the oldest.
    order: BTreeMap<u64, [u8; 32]>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    claims: Arc<Claims>,
    /// Valid in `[from, until)`, unix seconds.
    from: u64,
    until: u64,
    seq: u64,
}

impl Default for TokenCache {
    /// A cache of [`DEFAULT_CAPACITY`] (1,024) tokens.
    fn default() -> TokenCache {
        TokenCache::new(DEFAULT_CAPACITY)
    }
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables caching: every call verifies).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// [`verify_jwt`], answered from the cache when this token was verified in this context and
    /// `now_s` is still inside its validity window.
    pub fn verify(
        &mut self,
        token: &str,
        keys: &KeySet,
        validation: &Validation,
        now_s: u64,
    ) -> Result<Arc<Claims>, Error> {
        let key = cache_key(token, keys, validation);
        if let Some(entry) = self.entries.get(&key) {
            if entry.from <= now_s && now_s < entry.until {
                return Ok(Arc::clone(&entry.claims));
            }
            self.remove(&key);
        }
        let claims = Arc::new(verify_jwt(token, keys, validation, now_s)?);
        let (from, until) = validation.window(&claims);
        self.insert(key, Arc::clone(&claims), from, until, now_s);
        Ok(claims)
    }

    /// How many tokens are cached (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn insert(&mut self, key: [u8; 32], claims: Arc<Claims>, from: u64, until: u64, now_s: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict_expired(now_s);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        self.entries.insert(
            key,
            Entry {
                claims,
                from,
                until,
                seq,
            },
        );
    }

    fn evict_expired(&mut self, now_s: u64) {
        let expired: Vec<[u8; 32]> = self
            .entries
            .iter()
            .filter(|(_, e)| now_s >= e.until)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.seq);
        }
    }
}

fn cache_key(token: &str, keys: &KeySet, validation: &Validation) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [
        token.as_bytes(),
        &keys.fingerprint(),
        validation.issuer.as_bytes(),
        validation.audience.as_bytes(),
        &validation.leeway_s.to_be_bytes(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::TokenCache;
    use crate::claims::Validation;
    use crate::error::Error;
    use crate::jwk::KeySet;
    use crate::sign::sign_hs256;

    const NOW: u64 = 1_780_000_000;
    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

    fn token(sub: &str, exp: u64) -> String {
        let claims = format!(r#"{{"iss":"i","aud":"a","sub":"{sub}","exp":{exp}}}"#);
        sign_hs256(&claims, SECRET, None).unwrap()
    }

    #[test]
    fn hits_inside_the_window_only() {
        let keys = KeySet::hmac(SECRET, None).unwrap();
        let v = Validation::new("i", "a");
        let mut cache = TokenCache::default();
        let t = token("u", NOW + 10);
        let first = cache.verify(&t, &keys, &v, NOW).unwrap();
        let again = cache.verify(&t, &keys, &v, NOW + 69).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        assert_eq!(
            cache.verify(&t, &keys, &v, NOW + 70).err(),
            Some(Error::Expired)
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn context_is_part_of_the_key() {
        let keys = KeySet::hmac(SECRET, None).unwrap();
        let mut cache = TokenCache::new(8);
        let t = token("u", NOW + 10);
        assert!(
            cache
                .verify(&t, &keys, &Validation::new("i", "a"), NOW)
                .is_ok()
        );
        let other = Validation::new("i", "b");
        assert_eq!(
            cache.verify(&t, &keys, &other, NOW).err(),
            Some(Error::WrongAudience)
        );
        let rotated = KeySet::hmac(b"another-secret-of-at-least-32-bytes!", None).unwrap();
        let v = Validation::new("i", "a");
        assert_eq!(
            cache.verify(&t, &rotated, &v, NOW).err(),
            Some(Error::BadSignature)
        );
    }

    #[test]
    fn bounded_evicting_expired_then_oldest() {
        let keys = KeySet::hmac(SECRET, None).unwrap();
        let v = Validation::new("i", "a");
        let mut cache = TokenCache::new(3);
        let short = token("short", NOW + 1);
        let a = token("a", NOW + 1000);
        let b = token("b", NOW + 1000);
        for t in [&short, &a, &b] {
            cache.verify(t, &keys, &v, NOW).unwrap();
        }
        // At NOW + 61 `short` has expired: it goes, `a` stays.
        cache
            .verify(&token("c", NOW + 1000), &keys, &v, NOW + 61)
            .unwrap();
        assert_eq!(cache.len(), 3);
        let first_a = cache.verify(&a, &keys, &v, NOW + 61).unwrap();
        assert_eq!(cache.len(), 3);
        // Full of live entries: the oldest (`a`) goes.
        cache
            .verify(&token("d", NOW + 1000), &keys, &v, NOW + 61)
            .unwrap();
        assert_eq!(cache.len(), 3);
        let second_a = cache.verify(&a, &keys, &v, NOW + 61).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&first_a, &second_a));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn zero_capacity_disables() {
        let keys = KeySet::hmac(SECRET, None).unwrap();
        let mut cache = TokenCache::new(0);
        cache
            .verify(
                &token("u", NOW + 10),
                &keys,
                &Validation::new("i", "a"),
                NOW,
            )
            .unwrap();
        assert!(cache.is_empty());
    }
}
