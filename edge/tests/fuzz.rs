//! Property tests over every parser in the edge's core that takes client bytes or operator
//! strings: the affinity token and the `Cookie` header, the `Authorization` header (bearer
//! values, token checks, the operator's token), the path classes, the JWKS documents the
//! identity provider serves, the origin signer fed client paths and headers, and the config vars
//! (`REGIONS`, `ROUTING`, `CORS_ORIGINS`, `FALLBACK_ORIGIN`, `AUTH`, `ORIGIN_AUTH`, `RATE_LIMIT`
//! and the secrets).
//!
//! The promise tried: no input panics; a token refusal is a 401, 403 or 503 with a stable code;
//! a config value is accepted within its bounds or refused naming its field, never echoing a
//! secret; an affinity token is honoured only as signed. JWT parsing itself is fuzzed in
//! `edge/jwt/tests/never_panics.rs`. Bounded: 256 cases per property.

use std::sync::Arc;

use edge::core::access::{
    AccessConfig, Denial, MIN_OPERATOR_TOKEN_BYTES, PageAsset, PathClass, TokenRules, bearer_token,
};
use edge::core::affinity::{self, Affinity, SigningKey};
use edge::core::config::{ConfigError, EdgeConfig, MAX_REGIONS};
use edge::core::origin_signing::{OriginCredentials, SIGNED_HEADERS};
use edge::core::tokens::{Check, TokenVerifier};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

const ISSUER: &str = "https://id.example";
const AUDIENCE: &str = "tandem";
const JWKS_URL: &str = "https://id.example/jwks.json";
const HS256_SECRET: &[u8; 32] = b"local-hs256-secret-0123456789abc";
const JWKS_SECRET: &[u8; 32] = b"jwks-oct-secret-0123456789abcdef";
/// 2026-11-30T00:53:20Z, in milliseconds.
const NOW_MS: u64 = 1_796_000_000_000;
const KNOWN: [&str; 3] = ["eu-west-1", "eu-central-1", "us-east-1"];
/// Every secret the strategies make starts with this, so a leak is easy to see.
const SECRET_MARK: &str = "S3CR3T";

/// `cases` per property; a failure prints its minimal input and writes no regression file (the
/// working tree is shared).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn vars(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Base64url without padding (what JWS segments use).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A printable, non-space ASCII byte other than `old`.
fn other_byte(old: u8, pick: u8) -> u8 {
    let candidates: Vec<u8> = (0x21u8..=0x7e).filter(|&b| b != old).collect();
    candidates[usize::from(pick) % candidates.len()]
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
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A var's value: unset, blank, arbitrary text, or what `structured` makes.
fn var_value(structured: BoxedStrategy<String>) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => prop::sample::select(vec!["", "  ", "null", "{}", "[]"])
            .prop_map(|s| Some(s.to_owned())),
        1 => ".{0,40}".prop_map(Some),
        20 => structured.prop_map(Some),
    ]
}

/// A secret: short or long enough, always marked.
fn secret() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(String::new())),
        1 => "[A-Za-z0-9+/=_-]{0,12}".prop_map(|s| Some(format!("{SECRET_MARK}{s}"))),
        6 => "[A-Za-z0-9+/=_-]{26,40}".prop_map(|s| Some(format!("{SECRET_MARK}{s}"))),
    ]
}

// ---- Affinity tokens and the Cookie header ---------------------------------------------------

fn affinity_key() -> SigningKey {
    SigningKey::new(b"affinity-secret-affinity-secret-0123").unwrap()
}

fn known(region: &str) -> bool {
    KNOWN.contains(&region)
}

proptest! {
    #![proptest_config(config(256))]

    /// Anything a client puts in the cookie or header is ignored unless the edge signed it.
    #[test]
    fn arbitrary_affinity_tokens_are_ignored(
        token in prop_oneof![
            ".{0,80}",
            ("[a-z0-9-]{0,14}", "[0-9+-]{0,16}", "[0-9a-fA-F]{0,40}")
                .prop_map(|(r, e, t)| format!("{r}.{e}.{t}")),
            (prop::sample::select(KNOWN.to_vec()), 0u64..20_000, "[0-9a-f]{32}")
                .prop_map(|(r, e, t)| format!("{r}.{}.{t}", NOW_MS + e)),
        ],
        now in prop_oneof![Just(NOW_MS), any::<u64>()],
        window in 0u64..=3_600_000,
    ) {
        prop_assert_eq!(Affinity::parse(&token, now, window, known, &affinity_key()), None);
    }

    /// A token the edge issued is honoured inside its window; with one byte changed (other
    /// than the case of a hex digit of its MAC, which names the same bytes) it is ignored.
    #[test]
    fn signed_affinity_tokens_round_trip_and_any_change_is_ignored(
        region in prop::sample::select(KNOWN.to_vec()),
        now in 0u64..10_000_000_000_000,
        window in 1_000u64..=3_600_000,
        ahead in any::<Index>(),
        at in any::<Index>(),
        pick in any::<u8>(),
    ) {
        let expires_ms = now + 1 + ahead.index(usize::try_from(window).unwrap()) as u64;
        let issued = Affinity { region: region.to_owned(), expires_ms };
        let token = issued.token(&affinity_key());
        prop_assert_eq!(Affinity::parse(&token, now, window, known, &affinity_key()), Some(issued));
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        let new = other_byte(bytes[i], pick);
        let in_mac = i > token.rfind('.').unwrap();
        if in_mac && new.is_ascii_hexdigit() && new.eq_ignore_ascii_case(&bytes[i]) {
            return Ok(());
        }
        bytes[i] = new;
        let changed = String::from_utf8(bytes).unwrap();
        let parsed = Affinity::parse(&changed, now, window, known, &affinity_key());
        prop_assert_eq!(parsed, None, "{}", changed);
        let other_key = SigningKey::new(&[7u8; 32]).unwrap();
        prop_assert_eq!(Affinity::parse(&token, now, window, known, &other_key), None);
    }

    /// The token is found among any other cookies, and only under its own name.
    #[test]
    fn the_cookie_header_yields_the_affinity_cookie_only(
        others in prop::collection::vec(("[A-Za-z_]{1,16}", "[ -:<-~]{0,20}"), 0..6),
        value in prop::option::of("[A-Za-z0-9.=-]{0,40}"),
        position in any::<Index>(),
        noise in ".{0,60}",
    ) {
        let mut cookies: Vec<String> = others
            .iter()
            .filter(|(name, _)| name != affinity::COOKIE)
            .map(|(name, v)| format!("{name}={v}"))
            .collect();
        if let Some(v) = &value {
            let at = position.index(cookies.len() + 1);
            cookies.insert(at, format!("{}={v}", affinity::COOKIE));
        }
        let header = cookies.join("; ");
        let found = Affinity::from_cookie_header(&header);
        prop_assert_eq!(found, value.as_deref());
        if let Some(v) = Affinity::from_cookie_header(&noise) {
            prop_assert!(noise.contains(v) && !v.contains(';'));
        }
    }
}

// ---- Authorization, paths, tokens -----------------------------------------------------------

fn rules(hs256: bool, jwks: bool) -> TokenRules {
    TokenRules {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        jwks_url: jwks.then(|| JWKS_URL.to_owned()),
        read_scope: "items:read".to_owned(),
        write_scope: "items:write".to_owned(),
        leeway_s: 60,
        unknown_kid_refresh_s: 30,
        hs256_secret: hs256.then(|| HS256_SECRET.to_vec()),
    }
}

fn verifier(hs256: bool, jwks: bool) -> TokenVerifier {
    TokenVerifier::new(Arc::new(rules(hs256, jwks)))
}

/// The claims of a good token, for `sub`, readable and writable.
fn good_claims(sub: &str) -> Value {
    let now_s = NOW_MS / 1000;
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now_s + 600, "iat": now_s,
           "scope": "items:read items:write"})
}

fn hs256(claims: &Value, secret: &[u8], kid: Option<&str>) -> String {
    tandem_jwt::sign_hs256(&claims.to_string(), secret, kid).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The promise on every denial: 401, 403 or 503, a stable code, an RFC 6750 challenge.
fn assert_denial(check: &Result<String, Check>) -> Result<(), TestCaseError> {
    match check {
        Ok(sub) => Err(TestCaseError::fail(format!("accepted as {sub:?}"))),
        Err(Check::UnknownKey) => Ok(()),
        Err(Check::Denied(d)) => {
            prop_assert!([401, 403, 503].contains(&d.status()), "{d:?}");
            prop_assert!(!d.code().is_empty() && !d.message().is_empty());
            prop_assert!(d.www_authenticate().starts_with("Bearer realm=\"tandem\""));
            Ok(())
        }
    }
}

fn methods() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
            .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

/// `Authorization` values: anything, scheme variants, and token-shaped bearer values.
fn authorization() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        (
            prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Token", ""]),
            " {0,3}",
            "[A-Za-z0-9_.=+/ -]{0,120}",
        )
            .prop_map(|(scheme, gap, token)| format!("{scheme}{gap}{token}")),
        (
            prop::collection::vec(any::<u8>(), 0..60),
            prop::collection::vec(any::<u8>(), 0..60),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(h, p, s)| bearer(&format!(
                "{}.{}.{}",
                b64url(&h),
                b64url(&p),
                b64url(&s)
            ))),
        (json_value(), json_value()).prop_map(|(h, p)| {
            bearer(&format!(
                "{}.{}.",
                b64url(h.to_string().as_bytes()),
                b64url(p.to_string().as_bytes())
            ))
        }),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn bearer_values_yield_one_token_or_none(value in authorization()) {
        if let Some(token) = bearer_token(&value) {
            prop_assert!(!token.is_empty() && !token.contains(' '), "{token:?}");
            prop_assert!(value.contains(token));
            let (scheme, _) = value.trim().split_once(' ').unwrap();
            prop_assert!(scheme.eq_ignore_ascii_case("bearer"));
        }
    }

    /// `/_edge/status` answers the operator's bearer token only (and, on a closed edge
    /// without one, no one).
    #[test]
    fn the_status_page_is_for_the_operator_token_only(
        value in prop::option::of(prop_oneof![
            authorization(),
            Just("Bearer operator-token-0123".to_owned()),
            Just("bearer   operator-token-0123 ".to_owned()),
            Just("Bearer operator-token-0124".to_owned()),
        ]),
    ) {
        let closed = AccessConfig {
            tokens: Some(rules(true, false)),
            origin_signing: None,
            operator_token: Some("operator-token-0123".to_owned()),
            rate_limit: None,
        };
        let expected = value.as_deref().and_then(bearer_token) == Some("operator-token-0123");
        prop_assert_eq!(closed.status_allowed(value.as_deref()), expected);
        let nobody = AccessConfig { operator_token: None, ..closed };
        prop_assert!(!nobody.status_allowed(value.as_deref()));
    }

    /// `/admin` and below are never forwarded; only the exact status and health paths are the
    /// edge's own.
    #[test]
    fn path_classes_follow_the_exact_rule(
        path in prop_oneof![
            ".{0,30}",
            ("(/admin|/_edge/status|/health|/items|/Admin|//admin|/app|/index)", "[/A-Za-z0-9%._-]{0,12}")
                .prop_map(|(a, b)| format!("{a}{b}")),
        ],
    ) {
        let expected = match path.as_str() {
            "/" | "/index.html" => PathClass::Page(PageAsset::Html),
            "/app.js" => PathClass::Page(PageAsset::Script),
            "/app.css" => PathClass::Page(PageAsset::Style),
            "/_edge/status" => PathClass::EdgeStatus,
            "/health" => PathClass::Health,
            p if p == "/admin" || p.starts_with("/admin/") => PathClass::Admin,
            _ => PathClass::Api,
        };
        prop_assert_eq!(PathClass::of(&path), expected);
    }

    /// Arbitrary `Authorization` values never pass and never panic: 401 (or a JWKS fetch for
    /// an unknown `kid`), with a code.
    #[test]
    fn arbitrary_authorization_values_are_denied_with_a_code(
        value in prop::option::of(authorization()),
        method in methods(),
        now in prop_oneof![Just(NOW_MS), any::<u64>()],
    ) {
        let mut with_jwks = verifier(true, true);
        let check = with_jwks.check(value.as_deref(), &method, now);
        assert_denial(&check)?;
        if let Err(Check::Denied(d)) = &check {
            prop_assert_eq!(d.status(), 401, "{:?}", d);
        }
        let mut local = verifier(true, false);
        let check = local.check(value.as_deref(), &method, now);
        prop_assert!(!matches!(check, Err(Check::UnknownKey)), "no JWKS to fetch");
        assert_denial(&check)?;
    }

    /// Before any key could be had, every bearer token gets 503 `token_keys_unavailable` (the
    /// edge's fault, retried), a request without one 401.
    #[test]
    fn without_keys_tokens_are_503_and_missing_tokens_401(
        value in prop::option::of(authorization()),
    ) {
        let mut waiting = verifier(false, true);
        let check = waiting.check(value.as_deref(), "GET", NOW_MS);
        assert_denial(&check)?;
        let expected = match value.as_deref().and_then(bearer_token) {
            Some(_) => Denial::KeysUnavailable,
            None => Denial::MissingToken,
        };
        prop_assert_eq!(check, Err(Check::Denied(expected)));
    }

    /// With a local HS256 secret and the provider's keys never had (the provider down since
    /// the isolate started), a token naming a key the isolate lacks, or of an `alg` no local key
    /// takes, is a 503 to retry, not a 401 the client would take as final; once the keys are
    /// had, the same token is a 401.
    #[test]
    fn tokens_for_keys_never_had_are_503_until_the_keys_come(
        alg in prop::sample::select(vec!["RS256", "RS384", "RS512", "PS256", "PS512", "ES256", "ES512"]),
        kid in prop::option::of("[A-Za-z0-9-]{1,12}"),
        fill in any::<u8>(),
    ) {
        // A signature of the right length for the alg (a wrong one is malformed: 401 at once).
        let length = match alg { "ES256" => 64, "ES512" => 132, _ => 256 };
        let signature = vec![fill; length];
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = &kid {
            header["kid"] = json!(kid);
        }
        let header = b64url(header.to_string().as_bytes());
        let payload = b64url(good_claims("sub").to_string().as_bytes());
        let token = bearer(&format!("{header}.{payload}.{}", b64url(&signature)));
        let mut v = verifier(true, true);
        let denial = |v: &mut TokenVerifier| match v.check(Some(&token), "GET", NOW_MS) {
            Ok(sub) => Err(TestCaseError::fail(format!("accepted as {sub:?}"))),
            Err(Check::UnknownKey) => Ok(v.unknown_key_denial()),
            Err(Check::Denied(d)) => Ok(d),
        };
        prop_assert_eq!(denial(&mut v)?, Denial::KeysUnavailable);
        let key = json!({"kty": "oct", "kid": "k1", "alg": "HS256", "k": b64url(JWKS_SECRET)});
        prop_assert_eq!(v.set_jwks(json!({ "keys": [key] }).to_string().as_bytes(), NOW_MS), Ok(1));
        let after = denial(&mut v)?;
        prop_assert_eq!(after.status(), 401, "{:?}", after);
    }

    /// A good token passes (read and write); with one byte changed anywhere it is a 401 (or,
    /// if the change made a `kid`, a JWKS fetch), never a pass and never a 403.
    #[test]
    fn one_changed_byte_in_a_good_token_is_refused(
        sub in "[a-z0-9@.-]{1,20}",
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        at in any::<Index>(),
        pick in any::<u8>(),
    ) {
        let token = hs256(&good_claims(&sub), HS256_SECRET, None);
        let mut v = verifier(true, true);
        prop_assert_eq!(v.check(Some(&bearer(&token)), method, NOW_MS), Ok(sub));
        let mut bytes = token.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = other_byte(bytes[i], pick);
        let changed = String::from_utf8(bytes).unwrap();
        let check = v.check(Some(&bearer(&changed)), method, NOW_MS);
        assert_denial(&check)?;
        if let Err(Check::Denied(d)) = &check {
            prop_assert_eq!(d.status(), 401, "{:?}", d);
        }
    }

    /// Claim sets that break one rule get 401 `token_invalid` naming the rule; a token without
    /// the method's scope gets 403 `insufficient_scope`.
    #[test]
    fn tokens_outside_the_rules_are_refused_with_their_reason(
        rule in 0usize..7,
        by in 61u64..100_000_000,
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    ) {
        let (claims, expected) = claims_breaking(rule, by, method);
        let token = hs256(&claims, HS256_SECRET, None);
        let check = verifier(true, true).check(Some(&bearer(&token)), method, NOW_MS);
        assert_denial(&check)?;
        let Err(Check::Denied(denial)) = check else {
            return Err(TestCaseError::fail("not denied"));
        };
        prop_assert_eq!(denial.code(), expected.0);
        match &denial {
            Denial::InvalidToken(reason) => {
                prop_assert_eq!(denial.status(), 401);
                prop_assert_eq!(*reason, expected.1);
            }
            Denial::InsufficientScope(_) => prop_assert_eq!(denial.status(), 403),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    /// `alg: none` in any spelling, with or without a signature: 401.
    #[test]
    fn unsigned_tokens_are_401(
        alg in prop::sample::select(vec!["none", "None", "NONE", "nOnE", "", "HS256 ", "hs256"]),
        signature in prop::collection::vec(any::<u8>(), 0..40),
        sub in "[a-z]{1,8}",
    ) {
        let header = json!({"alg": alg, "typ": "JWT"}).to_string();
        let payload = good_claims(&sub).to_string();
        let (header, payload) = (b64url(header.as_bytes()), b64url(payload.as_bytes()));
        let token = format!("{header}.{payload}.{}", b64url(&signature));
        let check = verifier(true, true).check(Some(&bearer(&token)), "GET", NOW_MS);
        prop_assert!(matches!(&check, Err(Check::Denied(Denial::InvalidToken(_)))), "{:?}", check);
        assert_denial(&check)?;
    }

    /// A `kid` the keys lack asks for the JWKS, at most once per `unknown_kid_refresh_s` however
    /// many made-up `kid`s arrive; without a JWKS URL it is a 401.
    #[test]
    fn made_up_kids_fetch_the_keys_at_most_once_per_period(
        kids in prop::collection::vec("[A-Za-z0-9-]{1,12}", 1..20),
        gaps in prop::collection::vec(0u64..5_000, 20),
    ) {
        let mut v = verifier(true, true);
        let mut local = verifier(true, false);
        let mut now = NOW_MS;
        let mut fetches: Vec<u64> = Vec::new();
        for (kid, gap) in kids.iter().zip(&gaps) {
            now += gap;
            let token = hs256(&good_claims("x"), HS256_SECRET, Some(kid));
            prop_assert_eq!(v.check(Some(&bearer(&token)), "GET", now), Err(Check::UnknownKey));
            if v.may_fetch_for_unknown_kid(now) {
                fetches.push(now);
            }
            let check = local.check(Some(&bearer(&token)), "GET", now);
            let refused = matches!(check, Err(Check::Denied(Denial::InvalidToken(_))));
            prop_assert!(refused, "{:?}", check);
        }
        prop_assert!(!fetches.is_empty());
        prop_assert!(fetches.windows(2).all(|w| w[1] - w[0] >= 30_000), "{:?}", fetches);
    }

    /// Whatever the identity provider serves: taken (with at least one usable key, which then
    /// verifies its tokens) or refused with a code, and a refused document keeps the last good
    /// keys working.
    #[test]
    fn arbitrary_jwks_documents_keep_the_last_good_keys(
        (document, served) in jwks_document(),
    ) {
        let mut v = verifier(false, true);
        let key = json!({"kty": "oct", "kid": "k1", "alg": "HS256", "k": b64url(JWKS_SECRET)});
        let good = json!({ "keys": [key] });
        prop_assert_eq!(v.set_jwks(good.to_string().as_bytes(), NOW_MS), Ok(1));
        let token = hs256(&good_claims("kept"), JWKS_SECRET, Some("k1"));
        prop_assert_eq!(v.check(Some(&bearer(&token)), "GET", NOW_MS), Ok("kept".to_owned()));
        match v.set_jwks(&document, NOW_MS + 1) {
            Ok(usable) => {
                prop_assert!(usable >= 1);
                if let Some((kid, secret)) = &served {
                    let token = hs256(&good_claims("new"), secret, Some(kid));
                    let check = v.check(Some(&bearer(&token)), "GET", NOW_MS + 2);
                    prop_assert_eq!(check, Ok("new".to_owned()));
                }
            }
            Err(e) => {
                prop_assert!(!e.code().is_empty());
                // A token never seen before (no cache entry): checked with the kept keys.
                let fresh = hs256(&good_claims("fresh"), JWKS_SECRET, Some("k1"));
                let check = v.check(Some(&bearer(&fresh)), "GET", NOW_MS + 2);
                prop_assert_eq!(check, Ok("fresh".to_owned()));
            }
        }
        let after = v.check(Some("Bearer a.b.c"), "GET", NOW_MS + 3);
        assert_denial(&after)?;
    }
}

/// JWKS documents: arbitrary bytes, arbitrary keys, keys of every `kty` with arbitrary members,
/// and HMAC keys near the usable ones (with the `kid` and secret of one that should verify).
fn jwks_document() -> impl Strategy<Value = (Vec<u8>, Option<(String, Vec<u8>)>)> {
    let any_key = (
        prop::sample::select(vec!["oct", "RSA", "EC", "OKP", ""]),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "k", "n", "e", "x", "y", "crv", "alg", "use", "key_ops", "kid",
            ]),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| Value::from(b64url(&b))),
                json_value(),
            ],
            0..6,
        ),
    )
        .prop_map(|(kty, fields)| {
            let mut jwk: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            jwk.insert("kty".to_owned(), json!(kty));
            (json!({ "keys": [jwk] }).to_string().into_bytes(), None)
        });
    let hmac_key = (
        "[a-z0-9]{1,8}",
        prop::collection::vec(any::<u8>(), 16..48),
        prop::sample::select(vec![None, Some("HS256"), Some("RS256")]),
        prop::sample::select(vec![None, Some("sig"), Some("enc")]),
    )
        .prop_map(|(kid, secret, alg, usage)| {
            let mut jwk = json!({"kty": "oct", "kid": kid, "k": b64url(&secret)});
            if let Some(alg) = alg {
                jwk["alg"] = json!(alg);
            }
            if let Some(usage) = usage {
                jwk["use"] = json!(usage);
            }
            let usable = secret.len() >= 32 && alg != Some("RS256") && usage != Some("enc");
            let document = json!({ "keys": [jwk] }).to_string().into_bytes();
            (document, usable.then_some((kid, secret)))
        });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| (b, None)),
        prop::collection::vec(json_value(), 0..4)
            .prop_map(|keys| (json!({ "keys": keys }).to_string().into_bytes(), None)),
        any_key,
        hmac_key,
    ]
}

// ---- The origin signer, fed client paths and headers -----------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// The edge signs whatever path and headers a client sent, or refuses to (`SigningFailed`):
    /// never a panic inside the signer.
    #[test]
    fn client_paths_and_headers_are_signed_or_refused(
        origin in prop_oneof![
            3 => Just("http://127.0.0.1:9001".to_owned()),
            3 => Just("https://abc.execute-api.eu-west-1.amazonaws.com".to_owned()),
            1 => "https?://[a-z0-9.:@\\[\\]%-]{0,24}",
            1 => "https?://.{1,24}",
        ],
        path in prop_oneof![
            1 => ".{0,40}",
            6 => "/[A-Za-z0-9._~%!$'()*+,;=:@/?&#-]{0,40}",
        ],
        headers in prop::collection::vec(
            (
                prop::sample::select(SIGNED_HEADERS.to_vec()),
                prop_oneof![4 => "[ -~]{0,30}", 1 => ".{0,30}"],
            ),
            0..4,
        ),
        method in methods(),
        region in prop_oneof![
            prop::sample::select(KNOWN.to_vec()).prop_map(str::to_owned),
            "[A-Za-z0-9-]{1,16}",
        ],
        body in prop::collection::vec(any::<u8>(), 0..64),
        now in 0u64..4_102_444_800_000,
    ) {
        let creds = OriginCredentials::new("AKIDFUZZ", "fuzz-secret-0123456789");
        let url = format!("{origin}{path}");
        let pairs = headers.iter().map(|(n, v)| (*n, v.as_str()));
        if let Ok(added) = creds.sign(&region, &method, &url, pairs, &body, now) {
            let names: Vec<&str> = added.iter().map(|(n, _)| *n).collect();
            prop_assert_eq!(names.len(), 2, "{:?}", names);
            prop_assert!(names.contains(&"authorization") && names.contains(&"x-amz-date"));
            prop_assert!(added.iter().all(|(_, v)| !v.contains("fuzz-secret")));
        }
    }
}

/// A claim set breaking rule `rule` (by `by` seconds where time matters), and the code and
/// reason it must be refused with.
fn claims_breaking(rule: usize, by: u64, method: &str) -> (Value, (&'static str, &'static str)) {
    let now_s = NOW_MS / 1000;
    let mut claims = good_claims("user-1");
    let invalid = |reason| ("token_invalid", reason);
    let expected = match rule {
        0 => {
            claims["exp"] = json!(now_s.saturating_sub(by));
            invalid("expired")
        }
        1 => {
            claims["nbf"] = json!(now_s + by);
            invalid("not_yet_valid")
        }
        2 => {
            claims["iss"] = json!("https://other.example");
            invalid("wrong_issuer")
        }
        3 => {
            claims["aud"] = json!(["other-api"]);
            invalid("wrong_audience")
        }
        4 => {
            claims.as_object_mut().unwrap().remove("sub");
            invalid("missing_claim")
        }
        5 => {
            claims["exp"] = json!("tomorrow");
            invalid("invalid_claim")
        }
        _ => {
            let read = matches!(method, "GET" | "HEAD");
            claims["scope"] = json!(if read { "items:write" } else { "items:read" });
            ("insufficient_scope", "")
        }
    };
    (claims, expected)
}

// ---- Config vars ------------------------------------------------------------------------------

/// Takes a valid value and, half the time, breaks one thing in it (`fault` says what, `at`
/// where): one fault per case keeps the accepted half large and each refusal attributable.
fn maybe_broken<T: std::fmt::Debug>(
    valid: impl Strategy<Value = T>,
    faults: usize,
    break_one: impl Fn(T, usize, Index, Value) -> T,
) -> impl Strategy<Value = T> {
    (
        valid,
        prop::option::of((0..faults, any::<Index>(), json_value())),
    )
        .prop_map(move |(value, fault)| match fault {
            None => value,
            Some((fault, at, junk)) => break_one(value, fault, at, junk),
        })
}

fn valid_region() -> impl Strategy<Value = Value> {
    (
        "[a-z]{2}-[a-z]{4,7}-[1-9]",
        "https?://[a-z0-9.-]{1,20}(:[0-9]{2,5})?",
        -90.0f64..=90.0,
        -180.0f64..=180.0,
        prop::option::of(0.01f64..100.0),
    )
        .prop_map(|(name, origin, lat, lon, weight)| {
            let mut r = json!({"name": name, "origin": origin, "lat": lat, "lon": lon});
            if let Some(w) = weight {
                r["weight"] = json!(w);
            }
            r
        })
}

/// `REGIONS`: 1 to 5 valid regions, or with one fault (a bad name, origin, coordinate or
/// weight, an unknown field, a duplicate name, junk for a region, no regions, too many).
fn regions_json() -> impl Strategy<Value = String> {
    let regions = prop::collection::vec(valid_region(), 1..=MAX_REGIONS);
    maybe_broken(regions, 10, |mut regions, fault, at, junk| {
        let i = at.index(regions.len());
        let bad_name = ["", "eu west", "é", "eu_west"][at.index(4)];
        match fault {
            0 => regions[i]["name"] = json!(bad_name),
            1 => {
                regions[i]["origin"] = json!(["https://", "ftp://x", "http://x/", ""][at.index(4)])
            }
            2 => regions[i]["lat"] = json!(90.0 + 1.0 + at.index(1000) as f64),
            3 => regions[i]["lon"] = json!(-181.0 - at.index(1000) as f64),
            4 => regions[i]["weight"] = json!(-(at.index(3) as f64)),
            5 => regions[i]["colour"] = junk,
            6 => {
                let name = regions[0]["name"].clone();
                regions.push(json!({"name": name, "origin": "http://dup", "lat": 0, "lon": 0}));
            }
            7 => regions[i] = junk,
            8 => regions.clear(),
            _ => regions.resize(MAX_REGIONS + 1 + at.index(3), json!({})),
        }
        regions
    })
    .prop_map(|r| Value::from(r).to_string())
}

/// A valid `REGIONS` for when another var is the one fuzzed.
const ONE_REGION: &str =
    r#"[{"name":"eu-west-1","origin":"http://127.0.0.1:9001","lat":53.3,"lon":-6.3}]"#;

/// Each setting's bounds as documented on `Settings` (the oracle for valid values).
const BOUNDS: [(&str, f64, f64); 25] = [
    ("per_try_timeout_ms", 10.0, 60_000.0),
    ("deadline_ms", 10.0, 120_000.0),
    ("max_attempts", 1.0, 5.0),
    ("hedge_delay_ms", 0.0, 60_000.0),
    ("hedge_min_ms", 1.0, 60_000.0),
    ("consecutive_failures", 1.0, 1_000_000.0),
    ("base_ejection_ms", 100.0, 600_000.0),
    ("max_ejection_ms", 100.0, 3_600_000.0),
    ("ejection_jitter_ms", 0.0, 60_000.0),
    ("trial_timeout_ms", 100.0, 600_000.0),
    ("retry_ratio", 0.0, 10.0),
    ("retry_floor_per_s", 0.0, 10_000.0),
    ("probe_timeout_ms", 10.0, 60_000.0),
    ("probe_refresh_ms", 1_000.0, 3_600_000.0),
    ("probe_stale_ms", 1_000.0, 86_400_000.0),
    ("ewma_decay_ms", 100.0, 600_000.0),
    ("affinity_window_ms", 1_000.0, 3_600_000.0),
    ("max_body_bytes", 1.0, 104_857_600.0),
    ("sticky_band_ms", 0.0, 1_000.0),
    ("sticky_band_ratio", 0.0, 1.0),
    ("failure_window_ms", 1_000.0, 600_000.0),
    ("failure_rate_ejection", 0.01, 1.0),
    ("failure_rate_min_requests", 1.0, 100_000.0),
    ("failure_penalty_ms", 0.0, 60_000.0),
    ("probe_failures", 1.0, 10.0),
];

/// Fractional settings (the others are whole numbers).
const FRACTIONAL: [&str; 6] = [
    "retry_ratio",
    "retry_floor_per_s",
    "sticky_band_ms",
    "sticky_band_ratio",
    "failure_rate_ejection",
    "failure_penalty_ms",
];

/// One setting within its bounds (at a fraction `at` between them).
fn setting() -> impl Strategy<Value = (String, Value)> {
    let names = prop_oneof![
        12 => prop::sample::select(BOUNDS.to_vec()).prop_map(|b| b.0),
        1 => Just("hedge"),
        1 => Just("probe_path"),
    ];
    (names, 0.0f64..=1.0).prop_map(|(name, at)| {
        let value = match name {
            "hedge" => json!(at < 0.5),
            "probe_path" => json!("/health"),
            name => {
                let (_, min, max) = BOUNDS.iter().find(|b| b.0 == name).copied().unwrap();
                let v = min + at * (max - min);
                if FRACTIONAL.contains(&name) {
                    json!(v)
                } else {
                    json!(v.round() as u64)
                }
            }
        };
        (name.to_owned(), value)
    })
}

/// `ROUTING`: a few settings, each within its bounds (their combination may still break a rule
/// between them, e.g. a deadline under the per-try timeout), or with one fault: a misspelt
/// name, junk for a value, a negative or huge number, a probe path without its slash.
fn routing_json() -> impl Strategy<Value = String> {
    let settings = prop::collection::vec(setting(), 0..5)
        .prop_map(|settings| settings.into_iter().collect::<Map<String, Value>>());
    maybe_broken(settings, 5, |mut settings, fault, at, junk| {
        let name = BOUNDS[at.index(BOUNDS.len())].0.to_owned();
        match fault {
            0 => settings.insert("per_try_timout_ms".to_owned(), json!(500)),
            1 => settings.insert(name, junk),
            2 => settings.insert(name, json!(-1 - at.index(100) as i64)),
            3 => settings.insert(name, json!(u64::MAX - at.index(100) as u64)),
            _ => settings.insert("probe_path".to_owned(), json!("health")),
        };
        settings
    })
    .prop_map(|m| Value::Object(m).to_string())
}

/// `CORS_ORIGINS`: arrays of origins (or `*`), or junk.
fn cors_json() -> impl Strategy<Value = String> {
    let origins = prop::collection::vec(
        prop_oneof![
            1 => Just(json!("*")),
            8 => "https://[a-z]{1,10}\\.example".prop_map(Value::from),
            1 => ".{0,20}".prop_map(Value::from),
        ],
        0..4,
    );
    maybe_broken(origins, 1, |mut origins, _, at, junk| {
        let i = at.index(origins.len() + 1);
        origins.insert(i, junk);
        origins
    })
    .prop_map(|v| Value::from(v).to_string())
}

fn assert_names_its_field(err: &ConfigError, vars: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(
        vars.iter().any(|v| err.field.starts_with(v)) && !err.reason.is_empty(),
        "{err:?}"
    );
    prop_assert!(!err.to_string().contains(SECRET_MARK), "a secret in {err}");
    Ok(())
}

/// `AUTH`: valid rules (some members left to their defaults), `off`, or one fault: a member
/// missing, empty, of the wrong type or out of range, an unknown member (a secret put where
/// it does not belong), a JWKS URL that is not http(s).
fn auth_json() -> impl Strategy<Value = String> {
    let rules = (
        prop::option::of(0u64..=300),
        prop::option::of(1u64..=3600),
        prop::option::of("[a-z]{1,6}:[a-z]{1,6}"),
        any::<bool>(),
    )
        .prop_map(|(leeway, refresh, scope, jwks)| {
            let mut rules = json!({"issuer": ISSUER, "audience": AUDIENCE});
            if jwks {
                rules["jwks_url"] = json!(JWKS_URL);
            }
            for (name, value) in [
                ("leeway_s", leeway.map(Value::from)),
                ("unknown_kid_refresh_s", refresh.map(Value::from)),
                ("read_scope", scope.map(Value::from)),
            ] {
                if let Some(value) = value {
                    rules[name] = value;
                }
            }
            rules
        });
    let rules = maybe_broken(rules, 7, |mut rules, fault, at, junk| {
        let member = ["issuer", "audience", "jwks_url", "read_scope"][at.index(4)];
        match fault {
            0 => {
                rules.as_object_mut().unwrap().remove(member);
            }
            1 => rules[member] = json!(""),
            2 => rules[member] = junk,
            3 => rules["leeway_s"] = json!(301 + at.index(10_000)),
            4 => rules["unknown_kid_refresh_s"] = json!([0, 3601][at.index(2)]),
            5 => rules["hs256_secret"] = json!(format!("{SECRET_MARK}-in-the-wrong-place")),
            _ => rules["jwks_url"] = json!("ftp://id.example/keys"),
        }
        rules
    });
    prop_oneof![
        6 => rules.prop_map(|r| r.to_string()),
        1 => prop::sample::select(vec!["off", " off ", "OFF", "on"]).prop_map(str::to_owned),
    ]
}

/// `RATE_LIMIT`: `off`, a policy, or a policy with a zero limit, another period, junk.
fn rate_limit_json() -> impl Strategy<Value = String> {
    let policy = (1u32..1000, prop::sample::select(vec![10u32, 60]))
        .prop_map(|(limit, period)| json!({"limit": limit, "period_s": period}));
    let policy = maybe_broken(policy, 3, |mut policy, fault, at, junk| {
        match fault {
            0 => policy["limit"] = json!(0),
            1 => policy["period_s"] = json!([0, 1, 30, 61][at.index(4)]),
            _ => policy["limit"] = junk,
        }
        policy
    });
    prop_oneof![
        1 => Just("off".to_owned()),
        6 => policy.prop_map(|p| p.to_string()),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// The routing vars: accepted within every bound, or refused naming the var (and field).
    #[test]
    fn edge_vars_are_accepted_within_bounds_or_name_their_field(
        regions in var_value(regions_json().boxed()),
        routing in var_value(routing_json().boxed()),
        cors in var_value(cors_json().boxed()),
        fallback in var_value(
            prop_oneof![
                6 => "https?://[a-z0-9.-]{1,20}",
                1 => prop::sample::select(vec!["nope", "https://x/", "https://"])
                    .prop_map(str::to_owned),
            ]
            .boxed(),
        ),
        affinity_secret in secret(),
        fuzzed in 0usize..6,
    ) {
        // One var fuzzed at a time (the others valid), or all of them at once.
        let regions = match fuzzed {
            0 | 5 => regions,
            _ => Some(ONE_REGION.to_owned()),
        };
        let only = |i: usize, value: Option<String>| value.filter(|_| fuzzed == i || fuzzed == 5);
        let affinity_secret = only(4, affinity_secret);
        let given: Vec<(&'static str, String)> = [
            ("REGIONS", regions),
            ("ROUTING", only(1, routing)),
            ("CORS_ORIGINS", only(2, cors)),
            ("FALLBACK_ORIGIN", only(3, fallback)),
            ("AFFINITY_SECRET", affinity_secret.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
        let names = ["REGIONS", "ROUTING", "CORS_ORIGINS", "FALLBACK_ORIGIN", "AFFINITY_SECRET"];
        let config = match EdgeConfig::from_vars(vars(given)) {
            Err(err) => return assert_names_its_field(&err, &names),
            Ok(config) => config,
        };
        prop_assert!((1..=MAX_REGIONS).contains(&config.regions.len()));
        for (i, r) in config.regions.iter().enumerate() {
            let name_ok = r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            prop_assert!(!r.name.is_empty() && name_ok, "{:?}", r.name);
            prop_assert!(config.regions[..i].iter().all(|o| o.name != r.name));
            prop_assert!(r.origin.starts_with("http://") || r.origin.starts_with("https://"));
            prop_assert!(!r.origin.ends_with('/'));
            prop_assert!((-90.0..=90.0).contains(&r.lat) && (-180.0..=180.0).contains(&r.lon));
            prop_assert!(r.weight.is_finite() && r.weight > 0.0);
        }
        let s = &config.settings;
        prop_assert!(s.deadline_ms >= s.per_try_timeout_ms && s.per_try_timeout_ms >= 10);
        prop_assert!((1..=MAX_REGIONS as u32).contains(&s.max_attempts));
        prop_assert!(s.max_ejection_ms >= s.base_ejection_ms);
        prop_assert!(s.hedge_min_ms <= s.per_try_timeout_ms);
        prop_assert!(s.probe_stale_ms >= s.probe_refresh_ms && s.probe_path.starts_with('/'));
        prop_assert!((1..=100 * 1024 * 1024).contains(&s.max_body_bytes));
        prop_assert!((1_000..=3_600_000).contains(&s.affinity_window_ms));
        let fractions = [
            s.retry_ratio,
            s.retry_floor_per_s,
            s.sticky_band_ms,
            s.sticky_band_ratio,
            s.failure_rate_ejection,
            s.failure_penalty_ms,
        ];
        for f in fractions {
            prop_assert!(f.is_finite() && f >= 0.0);
        }
        let secret_ok = affinity_secret
            .as_deref()
            .is_some_and(|s| s.len() >= affinity::MIN_SECRET_BYTES);
        prop_assert_eq!(config.affinity_key.is_some(), secret_ok);
    }

    /// The access vars: closed unless told otherwise in so many words, every bound held, or
    /// refused naming the var, never echoing a secret.
    #[test]
    fn access_vars_are_closed_by_default_or_name_their_field(
        auth in var_value(auth_json().boxed()),
        origin_auth in var_value(
            prop_oneof![
                4 => Just("sigv4"),
                4 => Just("none"),
                1 => Just(" none "),
                1 => Just("NONE"),
                1 => Just("hmac"),
            ]
            .prop_map(str::to_owned)
            .boxed(),
        ),
        rate_limit in var_value(rate_limit_json().boxed()),
        hs256_secret in secret(),
        key_id in prop::option::weighted(0.9, "AKID[A-Z0-9]{0,12}"),
        key_secret in secret(),
        operator in secret(),
    ) {
        let given: Vec<(&'static str, String)> = [
            ("AUTH", auth.clone()),
            ("ORIGIN_AUTH", origin_auth.clone()),
            ("RATE_LIMIT", rate_limit),
            ("JWT_HS256_SECRET", hs256_secret),
            ("SIGV4_ACCESS_KEY_ID", key_id),
            ("SIGV4_SECRET_ACCESS_KEY", key_secret),
            ("OPERATOR_TOKEN", operator),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
        let names = [
            "AUTH",
            "ORIGIN_AUTH",
            "RATE_LIMIT",
            "JWT_HS256_SECRET",
            "SIGV4_ACCESS_KEY_ID",
            "SIGV4_SECRET_ACCESS_KEY",
            "OPERATOR_TOKEN",
        ];
        let config = match AccessConfig::from_vars(vars(given.clone())) {
            Err(err) => return assert_names_its_field(&err, &names),
            Ok(config) => config,
        };
        let trimmed = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_owned();
        let open = trimmed(&auth) == "off";
        prop_assert_eq!(config.tokens.is_none(), open, "closed unless AUTH is \"off\"");
        prop_assert_eq!(config.origin_signing.is_none(), trimmed(&origin_auth) == "none");
        if let Some(rules) = &config.tokens {
            prop_assert!(!rules.issuer.is_empty() && !rules.audience.is_empty());
            prop_assert!(rules.leeway_s <= 300);
            prop_assert!((1..=3600).contains(&rules.unknown_kid_refresh_s));
            let local = rules.hs256_secret.as_ref().is_some_and(|s| s.len() >= 32);
            prop_assert!(rules.jwks_url.is_some() || local);
        }
        if let Some(token) = &config.operator_token {
            prop_assert!(token.len() >= MIN_OPERATOR_TOKEN_BYTES);
        }
        if let Some(limit) = config.rate_limit {
            prop_assert!(limit.limit >= 1 && matches!(limit.period_s, 10 | 60));
        }
        if let Some(rules) = &config.tokens {
            prop_assert!(!format!("{rules:?}").contains(SECRET_MARK), "a secret in {rules:?}");
        }
        if let Some(signing) = &config.origin_signing {
            let shown = format!("{signing:?}");
            let secret = given
                .iter()
                .find(|(k, _)| *k == "SIGV4_SECRET_ACCESS_KEY")
                .map(|(_, v)| v.trim());
            prop_assert!(secret.is_none_or(|s| !shown.contains(s)), "the secret key in {shown}");
        }
    }
}
