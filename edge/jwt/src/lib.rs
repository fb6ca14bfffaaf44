//! `tandem-jwt`: verifies JWS/JWT bearer tokens, natively and in the Worker (wasm32), in pure
//! Rust with no clock, no randomness and no network.
//!
//! ```text
//! token ──compact──▶ header, payload, signature ──jwk: pick keys by kid/alg──▶ alg: verify
//!                                                   └──▶ VerifiedJws ──claims──▶ Claims ──cache
//! ```
//!
//! - [`verify_jws`]: the signature only (any payload); [`verify_jwt`]: signature plus claims
//!   ([`Validation`]: issuer, audience, leeway; `now` passed in as unix seconds).
//! - [`KeySet::from_jwks`] / [`KeySet::hmac`]: the trusted keys. Header-borne keys and URLs
//!   (`jwk`, `jku`, `x5u`, `x5c`) are never used; `crit` is refused.
//! - [`TokenCache`]: verified tokens by hash, bounded, valid until `exp`.
//! - [`sign_hs256`]: local throwaway tokens.
//! - Every failure is an [`Error`] with a stable [`Error::code`]. No input makes this crate panic.
//!
//! Modules, one job each: `compact` (parsing), `b64`/`json` (strict decoding), `jwk` (keys and
//! key choice), `alg` (cryptography), `jws` (signature verification), `claims` (JWT rules),
//! `cache`, `sign`, `error`.

mod alg;
mod b64;
mod cache;
mod claims;
mod compact;
mod error;
mod json;
mod jwk;
mod jws;
mod sign;

pub use alg::Alg;
pub use cache::{DEFAULT_CAPACITY, TokenCache};
pub use claims::{Claims, DEFAULT_LEEWAY_S, Validation, verify_jwt};
pub use compact::{Header, MAX_TOKEN_BYTES};
pub use error::Error;
pub use jwk::{KeySet, MAX_JWKS_BYTES, MAX_KEYS, MIN_RSA_BITS, SkippedKey};
pub use jws::{VerifiedJws, verify_jws};
pub use sign::sign_hs256;
