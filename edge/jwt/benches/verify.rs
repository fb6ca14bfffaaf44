//! The cost of verifying one bearer token, per algorithm, and of a cache hit: what the edge adds
//! to an authenticated request.
//!
//! - `verify_jwt/HS256`, `verify_jwt/RS256-2048`, `verify_jwt/ES256`: parse, key choice, signature
//!   and claims, from the token string to `Claims`.
//! - `cache_hit/RS256-2048`: the same RS256 token answered by `TokenCache` (hash + lookup).
//!
//! Keys are Wycheproof's `kid-rsa-sign` (RSA 2048, e = 65537) and `kid-ec-sign` (P-256) JWKs,
//! signed here with the `rsa`/`p256` crates; the HS256 token uses a local 32-byte secret.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tandem_jwt::{KeySet, TokenCache, Validation, sign_hs256, verify_jwt};

const NOW: u64 = 1_780_000_000;

fn claims() -> String {
    serde_json::json!({
        "iss": "https://issuer.example", "aud": "tandem-api", "sub": "user-42",
        "exp": NOW + 3600, "iat": NOW, "scope": "orders:read orders:write"
    })
    .to_string()
}

fn bench(c: &mut Criterion) {
    let validation = Validation::new("https://issuer.example", "tandem-api");
    let claims = claims();

    let secret = [0x5a; 32];
    let hs_keys = KeySet::hmac(&secret, Some("local")).unwrap();
    let hs_token = sign_hs256(&claims, &secret, Some("local")).unwrap();

    let rsa_jwk = common::private_jwk("kid-rsa-sign", "RS256");
    let ec_jwk = common::private_jwk("kid-ec-sign", "ES256");
    let jwks = KeySet::from_jwks(&common::jwks(&[
        &common::public_of(&rsa_jwk),
        &common::public_of(&ec_jwk),
    ]))
    .unwrap();
    let rs_token = common::sign_rs256(
        r#"{"alg":"RS256","kid":"kid-rsa-sign","typ":"JWT"}"#,
        &claims,
        &common::rsa_private(&rsa_jwk),
    );
    let es_token = common::sign_es256(
        r#"{"alg":"ES256","kid":"kid-ec-sign","typ":"JWT"}"#,
        &claims,
        &common::p256_private(&ec_jwk),
    );

    let mut group = c.benchmark_group("verify_jwt");
    group.measurement_time(Duration::from_secs(5));
    for (name, token, keys) in [
        ("HS256", &hs_token, &hs_keys),
        ("RS256-2048", &rs_token, &jwks),
        ("ES256", &es_token, &jwks),
    ] {
        assert!(verify_jwt(token, keys, &validation, NOW).is_ok(), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| verify_jwt(black_box(token), keys, &validation, NOW).unwrap())
        });
    }
    group.finish();

    let mut cache = TokenCache::default();
    cache.verify(&rs_token, &jwks, &validation, NOW).unwrap();
    c.bench_function("cache_hit/RS256-2048", |b| {
        b.iter(|| {
            cache
                .verify(black_box(&rs_token), &jwks, &validation, NOW)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
