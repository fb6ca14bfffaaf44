//! Verifies a compact JWS against a key set: parse, pick candidate keys, check the signature.
//!
//! The payload is returned as bytes and never interpreted here (Wycheproof's vectors sign plain
//! text); `claims` builds JWT validation on top. This module never reads a clock and never
//! accepts a token whose signature no trusted key produced.

use crate::compact::{self, Header};
use crate::error::Error;
use crate::jwk::KeySet;

/// A token whose signature verified under one of the set's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJws {
    /// The protected header's members this crate reads.
    pub header: Header,
    /// The decoded payload, exactly as signed.
    pub payload: Vec<u8>,
}

/// Verifies `token` (compact serialization) with `keys`.
///
/// Keys are chosen by `kid` (if the header has one, only keys with that `kid`; if not, every key)
/// and then by `alg` (see [`KeySet`]); the first that verifies wins. Errors, in the order they
/// are checked: [`Error::Malformed`], [`Error::UnknownCrit`], [`Error::UnsupportedAlg`],
/// [`Error::UnknownKid`], [`Error::KeyMismatch`], [`Error::BadSignature`].
pub fn verify_jws(token: &str, keys: &KeySet) -> Result<VerifiedJws, Error> {
    let parts = compact::parse(token)?;
    let alg = parts.header.alg;
    let candidates = keys.candidates(parts.header.kid.as_deref(), alg)?;
    if candidates.into_iter().any(|key| {
        key.verify(alg, parts.signing_input, &parts.signature)
            .is_ok()
    }) {
        Ok(VerifiedJws {
            header: parts.header,
            payload: parts.payload,
        })
    } else {
        Err(Error::BadSignature)
    }
}
