//! Every vector of Wycheproof's `json_web_signature_test.json` through [`verify_jws`]: each group's
//! `public` JWK (or `private` for the HMAC groups, which have no public half) is the whole key
//! set; every `invalid` vector must be rejected and every `valid` one accepted, except the eight
//! listed in [`DEVIATIONS`], each asserted to fail for its stated reason.

mod common;

use serde_json::Value;
use tandem_jwt::{Error, KeySet, verify_jws};

/// Vectors where this crate deliberately disagrees with the file, with the error it returns.
const DEVIATIONS: [(u64, &str, &str); 8] = [
    // The JWK says "alg":"PS256"; the token is PS384 (RFC 7520 figure 20). Our rule: a JWK's
    // `alg` is the only algorithm that key verifies.
    (346, "key_mismatch", "JWK alg PS256, token alg PS384"),
    (350, "key_mismatch", "JWK alg PS256, token alg PS384"),
    // The JWK says "alg":"ES521", which is no registered algorithm (P-521 is ES512): the key is
    // unusable, not silently reinterpreted.
    (347, "key_mismatch", "JWK alg ES521 is not registered"),
    (351, "key_mismatch", "JWK alg ES521 is not registered"),
    // Byte-identical to the valid tcId 357 yet labelled invalid (C2SP/wycheproof issue 236):
    // no verifier can satisfy both labels; we accept, as for 357.
    (367, "accepted", "identical to valid tcId 357"),
    (370, "accepted", "identical to valid tcId 357"),
    // Labelled valid although a `?` sits inside a base64url segment: strict base64url refuses it.
    (372, "malformed", "'?' inside the header segment"),
    (373, "malformed", "'?' inside the payload segment"),
];

fn outcome(result: &Result<tandem_jwt::VerifiedJws, Error>) -> &'static str {
    match result {
        Ok(_) => "accepted",
        Err(e) => e.code(),
    }
}

#[test]
fn wycheproof_json_web_signature() {
    let file = common::wycheproof();
    let groups = file["testGroups"].as_array().expect("testGroups");
    let (mut total, mut valid_ok, mut invalid_ok, mut deviations) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut rejections: std::collections::BTreeMap<&str, usize> = Default::default();

    for (index, group) in groups.iter().enumerate() {
        let jwk = match &group["public"] {
            Value::Null => &group["private"],
            public => public,
        };
        let keys = KeySet::from_jwks(&common::jwks(&[jwk])).expect("one-key JWKS parses");
        let (mut valid, mut invalid, mut deviated) = (0, 0, 0);
        let tests = group["tests"].as_array().expect("tests");
        for test in tests {
            total += 1;
            let id = test["tcId"].as_u64().expect("tcId");
            // A vector that is not a JSON string (a JSON-serialized JWS as an object) is passed
            // as its JSON text: it must be rejected like any non-compact input.
            let token = match &test["jws"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let result = verify_jws(&token, &keys);
            let got = outcome(&result);
            if result.is_err() {
                *rejections.entry(got).or_default() += 1;
            }
            let expected_valid = test["result"] == "valid";
            if let Some((_, want, why)) = DEVIATIONS.iter().find(|(d, ..)| *d == id) {
                deviated += 1;
                if got != *want {
                    failures.push(format!("tcId {id} ({why}): expected {want}, got {got}"));
                }
                continue;
            }
            match (expected_valid, result.is_ok()) {
                (true, true) => valid += 1,
                (false, false) => invalid += 1,
                _ => failures.push(format!(
                    "tcId {id} {:?}: labelled {}, got {got}",
                    test["comment"], test["result"]
                )),
            }
        }
        println!(
            "group {index:2} {:<22} {:>4} {:<7} tests {:3}: valid accepted {valid:3}, \
             invalid rejected {invalid:3}, documented deviations {deviated}",
            group["comment"].as_str().unwrap_or("?"),
            jwk["kty"].as_str().unwrap_or("?"),
            jwk["alg"].as_str().unwrap_or("-"),
            tests.len(),
        );
        valid_ok += valid;
        invalid_ok += invalid;
        deviations += deviated;
    }
    println!(
        "total {total}: valid accepted {valid_ok}, invalid rejected {invalid_ok}, \
         documented deviations {deviations}, failures {}",
        failures.len()
    );
    println!("rejections by code: {rejections:?}");
    assert_eq!(total, file["numberOfTests"].as_u64().unwrap_or(0) as usize);
    assert_eq!(deviations, DEVIATIONS.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The four alg-policy deviations are policy, not broken signatures: without the JWK's `alg`
/// (so the key verifies whatever its `kty`/`crv` allow) the same tokens verify.
#[test]
fn alg_policy_deviations_verify_without_the_jwk_alg() {
    let file = common::wycheproof();
    for group in file["testGroups"].as_array().unwrap() {
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_u64().unwrap();
            if ![346, 347, 350, 351].contains(&id) {
                continue;
            }
            let mut jwk = group["public"].clone();
            jwk.as_object_mut().unwrap().remove("alg");
            let keys = KeySet::from_jwks(&common::jwks(&[&jwk])).unwrap();
            let token = test["jws"].as_str().unwrap();
            assert!(verify_jws(token, &keys).is_ok(), "tcId {id}");
        }
    }
}
