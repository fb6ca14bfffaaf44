//! Shared by the integration tests and the bench: the Wycheproof JWS vectors, and signers built
//! from their `private` JWKs (this crate only verifies, so tests sign with the `rsa`/`p256` crates
//! directly). Test code: panics on bad fixtures are the point.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// In CI the test data sits next to the repository, at `../shared/testdata`.
pub const WYCHEPROOF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/wycheproof/json_web_signature_test.json"
);

/// The whole Wycheproof file. Missing data fails the test: it must never pass by skipping.
pub fn wycheproof() -> Value {
    let text = std::fs::read_to_string(WYCHEPROOF)
        .unwrap_or_else(|e| panic!("Wycheproof vectors missing at {WYCHEPROOF}: {e}"));
    serde_json::from_str(&text).expect("Wycheproof file is JSON")
}

/// The `private` JWK of the first group whose private key has this `kid` and `alg`.
pub fn private_jwk(kid: &str, alg: &str) -> Value {
    wycheproof()["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["private"])
        .find(|k| k["kid"] == kid && k["alg"] == alg)
        .unwrap_or_else(|| panic!("no private JWK {kid}/{alg}"))
        .clone()
}

/// The public half of a private JWK (what a JWKS publishes).
pub fn public_of(private: &Value) -> Value {
    let mut public = private.clone();
    let map = public.as_object_mut().unwrap();
    for secret in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        map.remove(secret);
    }
    public
}

pub fn jwks(keys: &[&Value]) -> Vec<u8> {
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn big(jwk: &Value, name: &str) -> BigUint {
    BigUint::from_bytes_be(&unb64(jwk[name].as_str().unwrap()))
}

pub fn rsa_private(jwk: &Value) -> RsaPrivateKey {
    let primes = vec![big(jwk, "p"), big(jwk, "q")];
    RsaPrivateKey::from_components(big(jwk, "n"), big(jwk, "e"), big(jwk, "d"), primes).unwrap()
}

pub fn p256_private(jwk: &Value) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&unb64(jwk["d"].as_str().unwrap())).unwrap()
}

/// `base64url(header).base64url(payload)`, ready to sign.
pub fn signing_input(header: &str, payload: &str) -> String {
    format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()))
}

pub fn sign_rs256(header: &str, payload: &str, key: &RsaPrivateKey) -> String {
    let input = signing_input(header, payload);
    let digest = Sha256::digest(input.as_bytes());
    let signature = key.sign(Pkcs1v15Sign::new::<Sha256>(), &digest).unwrap();
    format!("{input}.{}", b64(&signature))
}

/// ES256 in the JWS form: r || s, 64 bytes (RFC 6979, deterministic).
pub fn sign_es256_raw(
    header: &str,
    payload: &str,
    key: &p256::ecdsa::SigningKey,
) -> (String, [u8; 64]) {
    let input = signing_input(header, payload);
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    (input, signature.to_bytes().into())
}

pub fn sign_es256(header: &str, payload: &str, key: &p256::ecdsa::SigningKey) -> String {
    let (input, raw) = sign_es256_raw(header, payload, key);
    format!("{input}.{}", b64(&raw))
}

pub fn sign_hs256_raw(header: &str, payload: &str, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let input = signing_input(header, payload);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}
