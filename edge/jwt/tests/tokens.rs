//! End-to-end: real RS256/ES256/HS256 signatures through [`verify_jwt`], and the attacks a JWT
//! verifier must shrug off (alg `none`, HMAC with a public key as secret, header-borne keys,
//! `crit`, unknown `kid`, keys marked for encryption, DER-encoded ECDSA).

mod common;

use serde_json::json;
use tandem_jwt::{Error, KeySet, Validation, sign_hs256, verify_jws, verify_jwt};

const NOW: u64 = 1_780_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "tandem-api";

fn claims(extra: serde_json::Value) -> String {
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "user-42", "exp": NOW + 600, "iat": NOW});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn validation() -> Validation {
    Validation::new(ISS, AUD)
}

struct Rsa {
    private: rsa::RsaPrivateKey,
    keys: KeySet,
    public: serde_json::Value,
}

/// Wycheproof's `kid-rsa-sign` key (2048-bit, `alg` RS256, `use` sig) as the JWKS.
fn rsa() -> Rsa {
    let jwk = common::private_jwk("kid-rsa-sign", "RS256");
    let public = common::public_of(&jwk);
    Rsa {
        private: common::rsa_private(&jwk),
        keys: KeySet::from_jwks(&common::jwks(&[&public])).unwrap(),
        public,
    }
}

const RS_HEADER: &str = r#"{"alg":"RS256","kid":"kid-rsa-sign","typ":"JWT"}"#;

#[test]
fn rs256_jwt_is_accepted_with_its_claims() {
    let rsa = rsa();
    let token = common::sign_rs256(
        RS_HEADER,
        &claims(json!({"scope": "read write"})),
        &rsa.private,
    );
    let c = verify_jwt(&token, &rsa.keys, &validation(), NOW).unwrap();
    assert_eq!(
        (c.sub.as_str(), c.exp, c.iat),
        ("user-42", NOW + 600, Some(NOW))
    );
    assert!(c.has_scope("read") && c.has_scope("write") && !c.has_scope("admin"));
}

#[test]
fn es256_jwt_is_accepted_and_der_signatures_are_not() {
    let jwk = common::private_jwk("kid-ec-sign", "ES256");
    let key = common::p256_private(&jwk);
    let keys = KeySet::from_jwks(&common::jwks(&[&common::public_of(&jwk)])).unwrap();
    let header = r#"{"alg":"ES256","kid":"kid-ec-sign"}"#;
    let payload = claims(json!({"scp": ["orders:read"]}));
    let token = common::sign_es256(header, &payload, &key);
    let c = verify_jwt(&token, &keys, &validation(), NOW).unwrap();
    assert_eq!(c.scopes, ["orders:read"]);

    // The same signature, DER-encoded (as X.509 and OpenSSL emit it), must not verify.
    let (input, raw) = common::sign_es256_raw(header, &payload, &key);
    let der = der_ecdsa(&raw[..32], &raw[32..]);
    let der_token = format!("{input}.{}", common::b64(&der));
    assert_eq!(
        verify_jws(&der_token, &keys).err(),
        Some(Error::BadSignature)
    );
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from fixed-size big-endian r and s.
fn der_ecdsa(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let mut body = if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
            vec![0]
        } else {
            vec![]
        };
        body.extend(trimmed);
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    }
    let mut seq = integer(r);
    seq.extend(integer(s));
    let mut out = vec![0x30, seq.len() as u8];
    out.extend(seq);
    out
}

#[test]
fn time_issuer_audience_subject_are_enforced_end_to_end() {
    let secret = [7u8; 32];
    let keys = KeySet::hmac(&secret, None).unwrap();
    let check = |extra: serde_json::Value, now: u64| {
        verify_jwt(
            &sign_hs256(&claims(extra), &secret, None).unwrap(),
            &keys,
            &validation(),
            now,
        )
    };
    assert!(check(json!({}), NOW).is_ok());
    assert_eq!(
        check(json!({"exp": NOW - 61}), NOW).err(),
        Some(Error::Expired)
    );
    assert!(check(json!({"exp": NOW - 59}), NOW).is_ok());
    assert_eq!(check(json!({}), NOW + 660).err(), Some(Error::Expired));
    assert!(check(json!({}), NOW + 659).is_ok());
    assert_eq!(
        check(json!({"nbf": NOW + 61}), NOW).err(),
        Some(Error::NotYetValid)
    );
    assert!(check(json!({"nbf": NOW + 60}), NOW).is_ok());
    assert_eq!(
        check(json!({"iss": "https://other.example"}), NOW).err(),
        Some(Error::WrongIssuer)
    );
    assert_eq!(
        check(json!({"aud": ["a", "b"]}), NOW).err(),
        Some(Error::WrongAudience)
    );
    assert!(check(json!({"aud": ["a", AUD]}), NOW).is_ok());
    let no_sub = json!({"iss": ISS, "aud": AUD, "exp": NOW + 600}).to_string();
    let token = sign_hs256(&no_sub, &secret, None).unwrap();
    assert_eq!(
        verify_jwt(&token, &keys, &validation(), NOW).err(),
        Some(Error::MissingClaim("sub"))
    );
}

#[test]
fn alg_none_is_refused_in_every_spelling() {
    let rsa = rsa();
    let payload = claims(json!({}));
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("kid-rsa-sign")] {
            let header = match kid {
                Some(kid) => json!({"alg": alg, "kid": kid}),
                None => json!({"alg": alg}),
            };
            let unsigned = common::signing_input(&header.to_string(), &payload);
            // With an empty signature (the RFC 7519 "unsecured JWT") and with a stray one.
            for token in [format!("{unsigned}."), format!("{unsigned}.c2ln")] {
                let err = verify_jwt(&token, &rsa.keys, &validation(), NOW).unwrap_err();
                assert!(
                    matches!(err, Error::UnsupportedAlg | Error::Malformed(_)),
                    "{token}"
                );
            }
        }
    }
}

/// The classic confusion: HS256 "signed" with the RSA public key's bytes as the secret, sent to
/// a verifier whose JWKS holds that RSA key. Whatever bytes the attacker picks, an RSA key never
/// acts as an HMAC secret.
#[test]
fn hs256_with_the_rsa_public_key_as_secret_is_refused() {
    let rsa = rsa();
    let n = common::unb64(rsa.public["n"].as_str().unwrap());
    let secrets: Vec<Vec<u8>> = vec![
        n.clone(),
        rsa.public.to_string().into_bytes(),
        rsa.public["n"].as_str().unwrap().as_bytes().to_vec(),
        common::jwks(&[&rsa.public]),
    ];
    let payload = claims(json!({}));
    for secret in &secrets {
        for header in [
            r#"{"alg":"HS256","kid":"kid-rsa-sign"}"#,
            r#"{"alg":"HS256"}"#,
        ] {
            let token = common::sign_hs256_raw(header, &payload, secret);
            assert_eq!(
                verify_jwt(&token, &rsa.keys, &validation(), NOW).err(),
                Some(Error::KeyMismatch),
                "{header}"
            );
        }
    }
    // The same holds for a JWK without `alg` (only `kty` decides) and for EC keys.
    let mut no_alg = rsa.public.clone();
    no_alg.as_object_mut().unwrap().remove("alg");
    let ec = common::public_of(&common::private_jwk("kid-ec-sign", "ES256"));
    let keys = KeySet::from_jwks(&common::jwks(&[&no_alg, &ec])).unwrap();
    let token = common::sign_hs256_raw(r#"{"alg":"HS256"}"#, &payload, &n);
    assert_eq!(verify_jws(&token, &keys).err(), Some(Error::KeyMismatch));
}

#[test]
fn unknown_kid_is_its_own_error() {
    let rsa = rsa();
    let header = r#"{"alg":"RS256","kid":"rotated-away"}"#;
    let token = common::sign_rs256(header, &claims(json!({})), &rsa.private);
    let err = verify_jwt(&token, &rsa.keys, &validation(), NOW).unwrap_err();
    assert_eq!((err, err.code()), (Error::UnknownKid, "unknown_kid"));
    // A key without a kid does not answer for a token that names one.
    let keys = KeySet::hmac(&[3; 32], None).unwrap();
    let token = sign_hs256(&claims(json!({})), &[3; 32], Some("k")).unwrap();
    assert_eq!(verify_jws(&token, &keys).err(), Some(Error::UnknownKid));
}

#[test]
fn crit_is_refused_even_with_a_good_signature() {
    let rsa = rsa();
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let header =
            json!({"alg": "RS256", "kid": "kid-rsa-sign", "crit": crit, "exp": 1, "b64": false});
        let token = common::sign_rs256(&header.to_string(), &claims(json!({})), &rsa.private);
        assert_eq!(
            verify_jwt(&token, &rsa.keys, &validation(), NOW).err(),
            Some(Error::UnknownCrit)
        );
    }
}

#[test]
fn header_borne_keys_and_urls_are_ignored() {
    let rsa = rsa();
    let payload = claims(json!({}));
    // Signed by the trusted key, decorated with keys and URLs: accepted, none of them used.
    let header = json!({
        "alg": "RS256", "kid": "kid-rsa-sign",
        "jku": "https://attacker.example/jwks.json", "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIB"], "jwk": rsa.public,
    });
    let token = common::sign_rs256(&header.to_string(), &payload, &rsa.private);
    assert!(verify_jwt(&token, &rsa.keys, &validation(), NOW).is_ok());

    // Signed by the attacker's own key, which the header embeds as `jwk`: refused.
    let attacker = common::private_jwk("RS256_2048", "RS256");
    let mut embedded = common::public_of(&attacker);
    embedded["kid"] = json!("kid-rsa-sign");
    let header = json!({"alg": "RS256", "kid": "kid-rsa-sign", "jwk": embedded, "jku": "https://attacker.example"});
    let token = common::sign_rs256(
        &header.to_string(),
        &payload,
        &common::rsa_private(&attacker),
    );
    assert_eq!(
        verify_jwt(&token, &rsa.keys, &validation(), NOW).err(),
        Some(Error::BadSignature)
    );
}

#[test]
fn keys_not_for_verification_never_verify() {
    let rsa = rsa();
    let token = common::sign_rs256(RS_HEADER, &claims(json!({})), &rsa.private);
    for (member, value) in [
        ("use", json!("enc")),
        ("use", json!("SIG")),
        ("key_ops", json!(["sign"])),
        ("key_ops", json!(["sign, verify"])),
        ("key_ops", json!([])),
        ("key_ops", json!("verify")),
    ] {
        let mut jwk = rsa.public.clone();
        jwk[member] = value.clone();
        let keys = KeySet::from_jwks(&common::jwks(&[&jwk])).unwrap();
        assert_eq!(keys.usable_len(), 0);
        assert_eq!(
            verify_jwt(&token, &keys, &validation(), NOW).err(),
            Some(Error::KeyMismatch),
            "{member}: {value}"
        );
    }
    let mut jwk = rsa.public.clone();
    jwk["key_ops"] = json!(["verify"]);
    let keys = KeySet::from_jwks(&common::jwks(&[&jwk])).unwrap();
    assert!(verify_jwt(&token, &keys, &validation(), NOW).is_ok());
}

#[test]
fn without_kid_every_fitting_key_is_tried() {
    let rsa = rsa();
    let other = common::public_of(&common::private_jwk("RS256_2048", "RS256"));
    let keys = KeySet::from_jwks(&common::jwks(&[&other, &rsa.public])).unwrap();
    let token = common::sign_rs256(r#"{"alg":"RS256"}"#, &claims(json!({})), &rsa.private);
    assert!(verify_jwt(&token, &keys, &validation(), NOW).is_ok());
    // A local secret merged in does not change that, and verifies its own tokens.
    let keys = keys.merge(KeySet::hmac(&[5; 32], Some("local")).unwrap());
    assert!(verify_jwt(&token, &keys, &validation(), NOW).is_ok());
    let local = sign_hs256(&claims(json!({})), &[5; 32], Some("local")).unwrap();
    assert!(verify_jwt(&local, &keys, &validation(), NOW).is_ok());
}

#[test]
fn rs256_key_cannot_verify_ps256_or_rs384_when_its_jwk_says_rs256() {
    let rsa = rsa();
    for alg in ["PS256", "RS384", "ES256"] {
        let header = json!({"alg": alg, "kid": "kid-rsa-sign"}).to_string();
        let token = common::sign_rs256(&header, &claims(json!({})), &rsa.private);
        assert_eq!(
            verify_jws(&token, &rsa.keys).err(),
            Some(Error::KeyMismatch),
            "{alg}"
        );
    }
}
