//! Property tests: arbitrary input into the token parser, the JWKS parser and the claims layer
//! never panics, and every refusal carries a non-empty code. Bounded at 256 cases per property.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use tandem_jwt::{Error, KeySet, TokenCache, Validation, sign_hs256, verify_jws, verify_jwt};

const NOW: u64 = 1_780_000_000;
const SECRET: [u8; 32] = [0x42; 32];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// An RSA and an EC key from Wycheproof plus a local secret, built once.
fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = common::public_of(&common::private_jwk("kid-rsa-sign", "RS256"));
        let ec = common::public_of(&common::private_jwk("kid-ec-sign", "ES256"));
        KeySet::from_jwks(&common::jwks(&[&rsa, &ec]))
            .unwrap()
            .merge(KeySet::hmac(&SECRET, None).unwrap())
    })
}

fn coded(err: &Error) -> bool {
    !err.code().is_empty() && !err.to_string().is_empty()
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![Just("iss"), Just("aud"), Just("sub"), Just("read write")]
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Claim sets near the valid ones: each standard claim absent, well-typed or arbitrary.
fn claim_set() -> impl Strategy<Value = Value> {
    let time = prop_oneof![
        Just(None),
        (0u64..4_000_000_000).prop_map(|t| Some(json!(t))),
        json_value().prop_map(Some),
    ];
    let text = |good: &'static str| {
        prop_oneof![
            Just(None),
            Just(Some(json!(good))),
            json_value().prop_map(Some)
        ]
    };
    (
        time.clone(),
        time.clone(),
        time,
        text("i"),
        prop_oneof![text("a"), Just(Some(json!(["x", "a"])))],
        text("s"),
        text("read write"),
        prop::collection::btree_map(".{0,6}", json_value(), 0..3),
    )
        .prop_map(|(exp, nbf, iat, iss, aud, sub, scope, extra)| {
            let mut claims: serde_json::Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
                ("iss", iss),
                ("aud", aud),
                ("sub", sub),
                ("scope", scope),
            ] {
                match value {
                    Some(v) => claims.insert(name.to_owned(), v),
                    None => claims.remove(name),
                };
            }
            Value::Object(claims)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_strings_are_refused_with_a_code(token in ".{0,300}") {
        let keys = keys();
        let err = verify_jws(&token, keys).unwrap_err();
        prop_assert!(coded(&err));
    }

    #[test]
    fn token_shaped_strings_are_refused_with_a_code(token in "[A-Za-z0-9_=+/ .-]{0,200}") {
        let keys = keys();
        let result = verify_jwt(&token, keys, &Validation::new("i", "a"), NOW);
        prop_assert!(coded(&result.unwrap_err()));
    }

    #[test]
    fn arbitrary_headers_never_panic(header in json_value(), payload in ".{0,40}", sig in prop::collection::vec(any::<u8>(), 0..140)) {
        let keys = keys();
        let token = format!(
            "{}.{}",
            common::signing_input(&header.to_string(), &payload),
            common::b64(&sig)
        );
        if let Err(err) = verify_jws(&token, keys) {
            prop_assert!(coded(&err));
        }
    }

    #[test]
    fn arbitrary_bytes_into_the_jwks_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Err(err) = KeySet::from_jwks(&bytes) {
            prop_assert!(coded(&err));
        }
    }

    #[test]
    fn arbitrary_jwks_documents_never_panic(keys in prop::collection::vec(json_value(), 0..5), kty in prop_oneof![Just("RSA"), Just("EC"), Just("oct"), Just("OKP")], fields in prop::collection::btree_map(prop_oneof![Just("n"), Just("e"), Just("x"), Just("y"), Just("k"), Just("crv"), Just("alg"), Just("use"), Just("key_ops"), Just("kid")], prop_oneof![".{0,90}".prop_map(Value::from), json_value()], 0..8)) {
        let mut jwk: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        jwk.insert("kty".to_owned(), json!(kty));
        let mut all = keys;
        all.push(Value::Object(jwk));
        let set = KeySet::from_jwks(json!({"keys": all}).to_string().as_bytes());
        if let Ok(set) = set {
            let token = sign_hs256(r#"{"sub":"x"}"#, &SECRET, None).unwrap();
            if let Err(err) = verify_jws(&token, &set) {
                prop_assert!(coded(&err));
            }
            prop_assert_eq!(set.usable_len() + set.skipped().len(), all.len());
        }
    }

    #[test]
    fn arbitrary_claims_never_panic_and_acceptance_means_valid(claims in claim_set(), now in 0u64..4_000_000_000) {
        let keys = KeySet::hmac(&SECRET, None).unwrap();
        let token = sign_hs256(&claims.to_string(), &SECRET, None).unwrap();
        let validation = Validation::new("i", "a");
        let mut cache = TokenCache::new(4);
        match verify_jwt(&token, &keys, &validation, now) {
            Ok(c) => {
                prop_assert_eq!(&c.iss, "i");
                prop_assert!(c.aud.iter().any(|a| a == "a"));
                prop_assert!(!c.sub.is_empty());
                let (from, until) = validation.window(&c);
                prop_assert!(from <= now && now < until);
                let cached = cache.verify(&token, &keys, &validation, now).unwrap();
                prop_assert_eq!(&*cached, &c);
            }
            Err(err) => {
                prop_assert!(coded(&err));
                prop_assert_eq!(cache.verify(&token, &keys, &validation, now).unwrap_err(), err);
            }
        }
    }

    #[test]
    fn arbitrary_payload_bytes_never_panic(payload in prop::collection::vec(any::<u8>(), 0..200)) {
        let keys = KeySet::hmac(&SECRET, None).unwrap();
        let token = common::sign_hs256_raw(r#"{"alg":"HS256"}"#, "", &SECRET);
        let (header, _) = token.split_once('.').unwrap();
        let input = format!("{header}.{}", common::b64(&payload));
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&SECRET).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", common::b64(&mac.finalize().into_bytes()));
        prop_assert!(verify_jws(&token, &keys).is_ok());
        if let Err(err) = verify_jwt(&token, &keys, &Validation::new("i", "a"), NOW) {
            prop_assert!(coded(&err));
        }
    }
}
