//! The trusted keys: a JWKS (RFC 7517) fetched by the caller, or a locally configured HS256
//! secret, and the rule that picks which of them may verify a given token.
//!
//! Parsing never fails the whole set because of one key: a key we cannot use is kept as an
//! *unusable* entry, with its `kid` and the reason, so a token naming it gets
//! [`Error::KeyMismatch`] (refreshing the JWKS would not help) rather than
//! [`Error::UnknownKid`] (refreshing might). A key whose `use` is not `sig`, or whose `key_ops`
//! lacks `verify`, is always unusable.
//!
//! Which `alg` a key may verify: exactly the JWK's `alg` when it has one; otherwise what its
//! `kty`/`crv` allow (RS*/PS* for RSA, ES256 for P-256, ES512 for P-521, HS256 for `oct`). So an
//! RSA or EC key can never act as an HMAC secret. This module never reads a token or a clock,
//! never fetches anything, and never accepts private key material as a reason to trust more.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};

use crate::alg::{Alg, HMAC_SHA256_LEN, Verifier};
use crate::b64;
use crate::error::Error;
use crate::json::parse_object;

/// The largest JWKS document accepted, in bytes (512 KiB).
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// The most keys one JWKS may hold (100); identity providers publish two or three.
pub const MAX_KEYS: usize = 100;
/// The smallest RSA modulus accepted, in bits (RFC 7518 section 3.3). The largest is 4096, the
/// `rsa` crate's limit.
pub const MIN_RSA_BITS: usize = 2048;

/// A set of verification keys. Cheap to share behind an `Rc`/`Arc`; immutable once built.
pub struct KeySet {
    entries: Vec<Entry>,
    fingerprint: [u8; 32],
}

struct Entry {
    kid: Option<String>,
    key: Result<Key, &'static str>,
}

struct Key {
    /// The JWK's own `alg`, which then is the only algorithm this key verifies.
    alg: Option<Alg>,
    verifier: Verifier,
}

impl Key {
    fn accepts(&self, alg: Alg) -> bool {
        self.verifier.family(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// A key from the JWKS that will never verify anything, and why (for the caller's logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it had a string one.
    pub kid: Option<String>,
    /// Why it is unusable, e.g. `"use is not sig"` or `"RSA modulus under 2048 bits"`.
    pub reason: &'static str,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys":[...]}`). Fails only when the document as a whole is
    /// unusable (not a JSON object, no `keys` array, over [`MAX_JWKS_BYTES`] or [`MAX_KEYS`]);
    /// individual keys that cannot be used become [`KeySet::skipped`] entries. Base64url fields
    /// are decoded strictly, like tokens.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, Error> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(Error::MalformedKeySet("document too large"));
        }
        let document = parse_object(json)
            .map_err(|_| Error::MalformedKeySet("not a unique-member JSON object"))?;
        let Some(Value::Array(keys)) = document.get("keys") else {
            return Err(Error::MalformedKeySet("no keys array"));
        };
        if keys.len() > MAX_KEYS {
            return Err(Error::MalformedKeySet("too many keys"));
        }
        let entries = keys.iter().map(parse_entry).collect();
        Ok(KeySet {
            entries,
            fingerprint: fingerprint(&[b"jwks", json]),
        })
    }

    /// A set holding one HS256 secret, e.g. a locally configured one. With `kid: None` it verifies
    /// only tokens without a `kid`; with `Some(kid)`, only tokens naming that `kid`. Refuses
    /// secrets shorter than 32 bytes ([`Error::WeakKey`], RFC 7518 section 3.2).
    pub fn hmac(secret: &[u8], kid: Option<&str>) -> Result<KeySet, Error> {
        if secret.len() < HMAC_SHA256_LEN {
            return Err(Error::WeakKey);
        }
        let kid_bytes = kid.map(str::as_bytes);
        Ok(KeySet {
            entries: vec![Entry {
                kid: kid.map(str::to_owned),
                key: Ok(Key {
                    alg: Some(Alg::Hs256),
                    verifier: Verifier::Hmac(secret.to_vec()),
                }),
            }],
            fingerprint: fingerprint(&[b"hmac", kid_bytes.unwrap_or(b"\xff"), secret]),
        })
    }

    /// Both sets' keys in one (e.g. the identity provider's JWKS plus a local secret).
    pub fn merge(mut self, other: KeySet) -> KeySet {
        self.fingerprint = fingerprint(&[b"merge", &self.fingerprint, &other.fingerprint]);
        self.entries.extend(other.entries);
        self
    }

    /// How many keys can verify something.
    pub fn usable_len(&self) -> usize {
        self.entries.iter().filter(|e| e.key.is_ok()).count()
    }

    /// The keys that will never verify anything, with the reason.
    pub fn skipped(&self) -> Vec<SkippedKey> {
        self.entries
            .iter()
            .filter_map(|e| {
                e.key.as_ref().err().map(|reason| SkippedKey {
                    kid: e.kid.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// A SHA-256 over what the set was built from: equal sets, equal fingerprints. The token cache
    /// mixes it into its keys, so a refreshed JWKS never answers from the old set's entries.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The keys that may verify a token with this `kid` and `alg`. With a `kid`, only keys
    /// carrying that `kid`; without one, every key. Errors: [`Error::UnknownKid`] when the `kid`
    /// matches no entry at all, [`Error::KeyMismatch`] when entries match but none may verify
    /// `alg`.
    pub(crate) fn candidates(&self, kid: Option<&str>, alg: Alg) -> Result<Vec<&Verifier>, Error> {
        let mut named = self
            .entries
            .iter()
            .filter(|e| kid.is_none() || e.kid.as_deref() == kid)
            .peekable();
        if kid.is_some() && named.peek().is_none() {
            return Err(Error::UnknownKid);
        }
        let fitting: Vec<&Verifier> = named
            .filter_map(|e| e.key.as_ref().ok())
            .filter(|k| k.accepts(alg))
            .map(|k| &k.verifier)
            .collect();
        if fitting.is_empty() {
            return Err(Error::KeyMismatch);
        }
        Ok(fitting)
    }
}

impl std::fmt::Debug for KeySet {
    /// Lists `kid`s and state only: never key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for e in &self.entries {
            let state = match &e.key {
                Ok(key) => key.alg.map_or("usable", Alg::as_str),
                Err(reason) => reason,
            };
            list.entry(&(e.kid.as_deref(), state));
        }
        list.finish()
    }
}

fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

fn parse_entry(value: &Value) -> Entry {
    let Value::Object(jwk) = value else {
        return Entry {
            kid: None,
            key: Err("not a JSON object"),
        };
    };
    let kid = match jwk.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        _ => None,
    };
    Entry {
        key: parse_key(jwk),
        kid,
    }
}

fn parse_key(jwk: &Map<String, Value>) -> Result<Key, &'static str> {
    if jwk.get("kid").is_some_and(|kid| !kid.is_string()) {
        return Err("kid is not a string");
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("use is not sig"),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let Value::Array(ops) = ops else {
            return Err("key_ops is not an array");
        };
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("key_ops lacks verify");
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(Alg::parse(name).map_err(|_| "unsupported alg")?),
        Some(_) => return Err("alg is not a string"),
    };
    let verifier = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => rsa_key(jwk)?,
        Some("EC") => ec_key(jwk)?,
        Some("oct") => {
            let secret = field(jwk, "k")?;
            if secret.len() < HMAC_SHA256_LEN {
                return Err("HMAC key under 32 bytes");
            }
            Verifier::Hmac(secret)
        }
        _ => return Err("unsupported kty"),
    };
    if alg.is_some_and(|alg| !verifier.family(alg)) {
        return Err("alg does not fit kty/crv");
    }
    Ok(Key { alg, verifier })
}

fn rsa_key(jwk: &Map<String, Value>) -> Result<Verifier, &'static str> {
    let n = BigUint::from_bytes_be(&field(jwk, "n")?);
    let e = BigUint::from_bytes_be(&field(jwk, "e")?);
    let key = RsaPublicKey::new(n, e).map_err(|_| "invalid RSA public key")?;
    if key.n().bits() < MIN_RSA_BITS {
        return Err("RSA modulus under 2048 bits");
    }
    Ok(Verifier::Rsa(key))
}

fn ec_key(jwk: &Map<String, Value>) -> Result<Verifier, &'static str> {
    let crv = jwk.get("crv").and_then(Value::as_str);
    let size = match crv {
        Some("P-256") => 32,
        Some("P-521") => 66,
        _ => return Err("unsupported curve"),
    };
    let (x, y) = (field(jwk, "x")?, field(jwk, "y")?);
    if x.len() != size || y.len() != size {
        return Err("EC coordinate of the wrong length");
    }
    // SEC1 uncompressed point: 0x04 || x || y. Both constructors check the point is on the curve.
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    if size == 32 {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .map(Verifier::P256)
            .map_err(|_| "EC point not on P-256")
    } else {
        p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .map(Verifier::P521)
            .map_err(|_| "EC point not on P-521")
    }
}

/// A required base64url member.
fn field(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, &'static str> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or("missing key parameter")?;
    b64::decode(text).ok_or("key parameter is not base64url")
}

#[cfg(test)]
mod tests {
    use super::KeySet;
    use crate::alg::Alg;
    use crate::error::Error;

    const K32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn set(keys: &str) -> KeySet {
        KeySet::from_jwks(format!(r#"{{"keys":[{keys}]}}"#).as_bytes()).unwrap()
    }

    #[test]
    fn document_errors() {
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"keys":{}}"#,
            br#"{"keys":[],"keys":[]}"#,
        ] {
            assert!(matches!(
                KeySet::from_jwks(bad),
                Err(Error::MalformedKeySet(_))
            ));
        }
        let many = format!(r#"{{"keys":[{}]}}"#, vec!["1"; 101].join(","));
        assert!(KeySet::from_jwks(many.as_bytes()).is_err());
    }

    #[test]
    fn unusable_keys_are_kept_by_kid() {
        let keys = set(&format!(
            r#"{{"kty":"oct","kid":"enc","use":"enc","k":"{K32}"}},
               {{"kty":"oct","kid":"ops","key_ops":["sign"],"k":"{K32}"}},
               {{"kty":"oct","kid":"short","k":"AAEC"}},
               {{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"AA"}},
               {{"kty":"oct","kid":"alg","alg":"ES256","k":"{K32}"}},
               {{"kty":"oct","kid":"ok","alg":"HS256","k":"{K32}"}},
               "not a key""#
        ));
        assert_eq!(keys.usable_len(), 1);
        assert_eq!(keys.skipped().len(), 6);
        for kid in ["enc", "ops", "short", "ed", "alg"] {
            assert_eq!(
                keys.candidates(Some(kid), Alg::Hs256).err(),
                Some(Error::KeyMismatch),
                "{kid}"
            );
        }
        assert_eq!(
            keys.candidates(Some("ok"), Alg::Hs256).map(|c| c.len()),
            Ok(1)
        );
        assert_eq!(
            keys.candidates(Some("nope"), Alg::Hs256).err(),
            Some(Error::UnknownKid)
        );
        assert_eq!(keys.candidates(None, Alg::Hs256).map(|c| c.len()), Ok(1));
        assert_eq!(
            keys.candidates(None, Alg::Rs256).err(),
            Some(Error::KeyMismatch)
        );
    }

    #[test]
    fn hmac_secrets() {
        assert_eq!(KeySet::hmac(&[1; 31], None).err(), Some(Error::WeakKey));
        let keys = KeySet::hmac(&[1; 32], Some("local")).unwrap();
        assert_eq!(keys.candidates(None, Alg::Hs256).map(|c| c.len()), Ok(1));
        assert_eq!(
            keys.candidates(Some("x"), Alg::Hs256).err(),
            Some(Error::UnknownKid)
        );
        assert_ne!(
            keys.fingerprint(),
            KeySet::hmac(&[1; 32], None).unwrap().fingerprint()
        );
    }
}
