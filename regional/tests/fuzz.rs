//! Property tests over every parser in the region that takes client bytes: the JSON body, item
//! ids, `Idempotency-Key`, `If-Match`, `x-tandem-deadline-ms`, JSON → DynamoDB values (and the
//! size rule), the edge's SigV4 signature, and the whole router for requests refused before any
//! DynamoDB call.
//!
//! The promise tried: no input panics, and every refusal is a 4xx with a stable, non-empty code
//! (a refused signature: a 403 whose code starts with `signature_`). Bounded: 256 cases per
//! property, fewer through the router. The router's store points at no table: every request sent
//! to it is one the region must refuse before calling DynamoDB, so a request that reached the
//! store would show up as a 5xx and fail the property.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use regional::api::AppState;
use regional::api::caller::OriginGuard;
use regional::error::ApiError;
use regional::faults::Faults;
use regional::item::{self, EntityTags, Item};
use regional::origin_auth::{MAX_SKEW, OriginKey, SERVICE, parse_amz_date};
use regional::store::ItemStore;
use regional::{app, attributes, deadline};
use serde_json::Value;
use tower::ServiceExt;

const KEY_ID: &str = "AKIDFUZZTEST";
const SECRET: &str = "fuzz-secret-for-tests-only-0123456789";
const REGION: &str = "eu-west-1";
const HOST: &str = "127.0.0.1:8081";
/// Top-level names a client may not write (the id is taken out of the attributes).
const SERVICE_OWNED: [&str; 6] = [
    "item_id",
    "region",
    "created_at",
    "updated_at",
    "version",
    "expires_at",
];
/// 2026-11-30T00:53:20Z: a fixed "now" for the pure signature properties.
const NOW: u64 = 1_796_000_000;

/// `cases` per property; a failure prints its minimal input and writes no regression file (the
/// working tree is shared).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn key() -> OriginKey {
    OriginKey::new(KEY_ID, SECRET, REGION)
}

/// The promise on every refusal: a 4xx with a stable, non-empty code.
fn assert_refusal(err: &ApiError) -> Result<(), TestCaseError> {
    let (code, status) = err.code_and_status();
    prop_assert!(
        status.is_client_error() && !code.is_empty(),
        "{err:?} answers {status} {code:?}"
    );
    Ok(())
}

// ---- Strategies ------------------------------------------------------------------------------

/// Number literals as clients write them, from tiny to far beyond what DynamoDB keeps.
fn number_literal() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?"
}

/// Attribute names, including the service's own and the empty one.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "item_id",
            "region",
            "created_at",
            "updated_at",
            "version",
            "expires_at",
            "_idempotency",
            "_request",
            "_x",
            "",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,8}",
        ".{0,6}",
    ]
}

/// JSON text a few levels deep, numbers written as literals (so no float rounding on the way).
fn json_text() -> impl Strategy<Value = String> {
    json_text_of(number_literal().boxed(), name().boxed())
}

/// Top-level names a client may write.
fn client_name() -> impl Strategy<Value = String> {
    "[a-z][a-z_]{0,7}".prop_filter("service-owned", |n| !SERVICE_OWNED.contains(&n.as_str()))
}

/// JSON text the item rules accept: at most 14 significant digits well inside DynamoDB's
/// range, non-empty names.
fn storable_json_text() -> impl Strategy<Value = String> {
    let numbers = "-?(0|[1-9][0-9]{0,7})(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?";
    json_text_of(numbers.boxed(), "[a-z_]{1,6}".boxed())
}

fn json_text_of(
    numbers: BoxedStrategy<String>,
    names: BoxedStrategy<String>,
) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        numbers,
        ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop::sample::select(vec!["true", "false", "null", "\"\\u0000\"", "\"\\\"\""])
            .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((names.clone(), inner), 0..5)
                .prop_map(|members| object(&members)),
        ]
    })
}

fn object(members: &[(String, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// An item id as JSON: usually a string (some invalid), sometimes another type.
fn id_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => id().prop_map(|id| serde_json::to_string(&id).unwrap()),
        1 => json_text(),
    ]
}

/// Item ids: ordinary ones, empty, control characters, and around the 1024-byte limit.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9/ _.-]{1,24}",
        ".{0,12}",
        "[\\x00-\\x1f\\x7f-\\x9f]{1,3}",
        (1_015usize..1_035).prop_map(|n| "a".repeat(n)),
        (505usize..520).prop_map(|n| "é".repeat(n)),
    ]
}

/// Request bodies: JSON objects near valid items, arbitrary bytes, and valid bodies with one
/// byte changed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let item = (
        prop::option::of(id_value()),
        prop::collection::vec((name(), json_text()), 0..6),
    )
        .prop_map(|(id, mut members)| {
            if let Some(id) = id {
                members.insert(0, ("item_id".to_owned(), id));
            }
            object(&members).into_bytes()
        })
        .boxed();
    prop_oneof![
        6 => item.clone(),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        2 => (item, any::<Index>(), any::<u8>()).prop_map(|(mut bytes, i, b)| {
            if !bytes.is_empty() {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        }),
        1 => json_text().prop_map(String::into_bytes),
    ]
}

/// Header value bytes: anything a header may carry (visible ASCII, space, tab, obs-text).
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(|bytes| {
        bytes
            .into_iter()
            .map(|b| {
                if (b < 0x20 && b != b'\t') || b == 0x7f {
                    b' '
                } else {
                    b
                }
            })
            .collect()
    })
}

fn header_value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).expect("header_bytes makes valid values")
}

/// The `x-amz-date` for a time.
fn amz_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap(), 0)
        .unwrap()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// Signs as the edge does (the same crate, the same settings): the request's headers, `host`,
/// `x-amz-date` and `authorization` included.
fn signed(
    method: &str,
    path: &str,
    extra: &[(String, String)],
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity = Credentials::new(KEY_ID, SECRET, None, None, "fuzz").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let mut all = vec![("host".to_owned(), HOST.to_owned())];
    all.extend_from_slice(extra);
    let uri = format!("http://{HOST}{path}");
    let headers = all.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let request = SignableRequest::new(method, uri, headers, SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    all.extend(
        instructions
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned())),
    );
    all
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

/// Headers a region requires to be signed when present, with values clients might send (no
/// spaces: SigV4 trims and folds them, so a space is not always a change).
fn signed_extras() -> impl Strategy<Value = Vec<(String, String)>> {
    let pick = |name: &'static str, value: &'static str| {
        prop::option::of(value.prop_map(move |v| (name.to_owned(), v)))
    };
    (
        pick("content-type", "application/(json|x-www-form-urlencoded)"),
        pick("idempotency-key", "[A-Za-z0-9_-]{1,20}"),
        pick("if-match", "\\*|\"[0-9]-[0-9a-f]{12}\""),
        pick("if-none-match", "\\*|(W/)?\"[0-9]-[0-9a-f]{12}\""),
        pick("x-tandem-subject", "[a-z0-9@.]{1,16}"),
        pick("x-tandem-deadline-ms", "[0-9]{1,5}"),
    )
        .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f].into_iter().flatten().collect())
}

/// A printable, non-space ASCII byte other than `old`.
fn other_byte(old: u8, pick: u8) -> u8 {
    let candidates: Vec<u8> = (0x21u8..=0x7e).filter(|&b| b != old).collect();
    candidates[usize::from(pick) % candidates.len()]
}

fn replace_byte(text: &str, i: Index, pick: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = i.index(bytes.len());
    bytes[i] = other_byte(bytes[i], pick);
    String::from_utf8(bytes).expect("ASCII in, ASCII out")
}

/// One of the signed headers (every header but `authorization`).
fn not_authorization(headers: &[(String, String)], pick: Index) -> usize {
    let signed: Vec<usize> = (0..headers.len())
        .filter(|&i| headers[i].0 != "authorization")
        .collect();
    signed[pick.index(signed.len())]
}

// ---- Item bodies, ids, headers ---------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// JSON → item → DynamoDB value → item: a body is either refused with a 400 and a code,
    /// or stored exactly as sent (with the service's stamps) and sized by DynamoDB's rules.
    #[test]
    fn item_bodies_are_stored_exactly_or_refused_with_a_400(body in body()) {
        let parsed = item::parse_object(&body).and_then(item::client_item);
        let client = match parsed {
            Err(e) => return assert_refusal(&ApiError::from(e)),
            Ok(client) => client,
        };
        if let Some(id) = &client.id {
            prop_assert!(item::validate_id(id).is_ok());
        }
        for name in client.attributes.keys() {
            prop_assert!(!name.is_empty() && !name.starts_with('_'), "{name:?} accepted");
            prop_assert!(!SERVICE_OWNED.contains(&name.as_str()), "{name:?} accepted");
        }
        let stamp = item::WriteStamp { region: REGION, now: "2026-11-29T10:00:00.000Z" };
        let id = client.id.clone().unwrap_or_else(|| "generated".to_owned());
        let stored = item::new_item(&id, client.attributes, stamp, None);
        let attrs = attributes::to_attributes(&stored);
        let back = attributes::to_item(&attrs);
        let sent = String::from_utf8_lossy(&body);
        prop_assert_eq!(back.as_ref(), Ok(&stored), "round trip of {}", sent);
        let names: usize = stored.keys().map(String::len).sum();
        prop_assert!(attributes::item_size(&attrs) >= names);
    }

    /// Items the rules accept come back from their DynamoDB form exactly as sent.
    #[test]
    fn accepted_items_round_trip_through_dynamodb_values(
        members in prop::collection::vec((client_name(), storable_json_text()), 1..8),
    ) {
        let text = object(&members);
        let client = item::parse_object(text.as_bytes())
            .and_then(item::client_item)
            .map_err(|e| TestCaseError::fail(format!("{text} refused: {e}")))?;
        let attrs = attributes::to_attributes(&client.attributes);
        let back = attributes::to_item(&attrs);
        prop_assert_eq!(back.as_ref(), Ok(&client.attributes), "{}", text);
    }

    /// A number of at most 15 significant digits reaches DynamoDB as the number sent: the
    /// double it names, correctly rounded. (Without serde_json's `float_roundtrip`, about one
    /// in five with an exponent came out one unit off: 3.42482894932798e-98 was stored as
    /// 3.4248289493279803e-98.) The comparison is against the standard library's parser.
    #[test]
    fn numbers_of_15_digits_are_stored_as_sent(
        mantissa in 1u64..1_000_000_000_000_000,
        exp in -115i32..=110,
    ) {
        let literal = format!("{mantissa}e{exp}");
        let text = format!("{{\"n\": {literal}}}");
        let client = item::parse_object(text.as_bytes())
            .and_then(item::client_item)
            .map_err(|e| TestCaseError::fail(format!("{text} refused: {e}")))?;
        let attrs = attributes::to_attributes(&client.attributes);
        let stored = attrs.get("n").and_then(|v| v.as_n().ok()).cloned().unwrap_or_default();
        prop_assert_eq!(stored.parse::<f64>().ok(), literal.parse::<f64>().ok(), "{} -> {}", literal, stored);
    }

    #[test]
    fn item_ids_follow_the_rule_or_get_invalid_item_id(id in id()) {
        let expected = !id.is_empty() && id.len() <= item::MAX_ID_BYTES
            && !id.chars().any(char::is_control);
        match item::validate_id(&id) {
            Ok(()) => prop_assert!(expected, "{id:?} accepted"),
            Err(e) => {
                prop_assert!(!expected, "{id:?} refused");
                prop_assert_eq!(e.code(), "invalid_item_id");
                assert_refusal(&ApiError::from(e))?;
            }
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_or_refused(
        key in prop_oneof![".{0,20}", "[ -~]{250,260}", "[ -~]{1,30}"],
    ) {
        let expected = !key.is_empty() && key.len() <= item::MAX_IDEMPOTENCY_KEY_LEN
            && key.bytes().all(|b| (b' '..=b'~').contains(&b));
        match item::validate_idempotency_key(&key) {
            Ok(()) => prop_assert!(expected, "{key:?} accepted"),
            Err(e) => {
                prop_assert!(!expected, "{key:?} refused");
                prop_assert_eq!(e.code(), "invalid_idempotency_key");
                assert_refusal(&ApiError::from(e))?;
            }
        }
    }

    /// `If-Match`: `*`, strong tags (kept), weak tags (never match), or a 400.
    #[test]
    fn if_match_values_parse_to_tags_or_a_400(raw in prop_oneof![
        "[ ,\"W/*a-z0-9-]{0,30}",
        ".{0,20}",
        ("[0-9]{1,3}", "[0-9a-f]{12}").prop_map(|(v, h)| format!("\"{v}-{h}\", W/\"{v}\"")),
    ]) {
        match EntityTags::if_match(&raw) {
            None => assert_refusal(&ApiError::BadIfMatch)?,
            Some(EntityTags::Any) => prop_assert_eq!(raw.trim(), "*"),
            Some(EntityTags::Tags(tags)) => {
                for tag in tags {
                    let quoted = tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"');
                    prop_assert!(quoted, "{tag:?}");
                }
            }
        }
    }

    /// A well-formed list (a strong tag and a weak one) always parses, keeping the strong tag.
    #[test]
    fn well_formed_if_match_lists_are_kept(v in "[0-9]{1,3}", h in "[0-9a-f]{12}") {
        let strong = format!("\"{v}-{h}\"");
        match EntityTags::if_match(&format!(" {strong}, W/\"{v}\" ")) {
            Some(EntityTags::Tags(tags)) => prop_assert!(tags.contains(&strong), "{tags:?}"),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    /// The tag the service sends back parses and matches the write it names, and only it.
    #[test]
    fn the_etag_sent_is_the_one_that_matches(
        version in 0u64..1_000,
        region in "[a-z]{2}-[a-z]{4,7}-[1-3]",
    ) {
        let stamp = item::WriteStamp { region: &region, now: "2026-11-29T10:00:00.000Z" };
        let mut stored = item::new_item("a", Item::new(), stamp, None);
        stored.insert(item::VERSION.into(), version.into());
        let tag = item::etag(&stored);
        let parsed = EntityTags::if_match(&tag).expect("our own tag parses");
        prop_assert!(parsed.matches(Some(&stored)));
        let mut later = stored.clone();
        later.insert(item::VERSION.into(), (version + 1).into());
        prop_assert!(!parsed.matches(Some(&later)));
        prop_assert!(!parsed.matches(None));
    }

    /// A deadline is whole milliseconds, 1 to 60 s; anything else is as if it were absent.
    #[test]
    fn deadline_headers_are_bounded_or_ignored(
        raw in prop_oneof![".{0,12}", "[ 0-9+-]{0,25}"],
    ) {
        if let Some(ms) = deadline::parse(&raw) {
            prop_assert!((1..=deadline::MAX_MS).contains(&ms), "{raw:?} -> {ms}");
        }
    }

    /// Whole milliseconds from 1 are the deadline, capped at 60 s; surrounding spaces are fine.
    #[test]
    fn whole_milliseconds_are_the_deadline(ms in 1u64..200_000) {
        prop_assert_eq!(deadline::parse(&format!(" {ms} ")), Some(ms.min(deadline::MAX_MS)));
    }

    #[test]
    fn amz_dates_parse_or_not_without_panicking(raw in prop_oneof![
        ".{0,20}",
        "[0-9]{8}T[0-9]{6}Z",
        "[0-9+-]{8}T[0-9+-]{6}Z",
    ]) {
        // On a real calendar date after 1970 it agrees with chrono; elsewhere it may say
        // anything but panic (the date is also checked against the signed scope).
        let real = chrono::NaiveDateTime::parse_from_str(&raw, "%Y%m%dT%H%M%SZ")
            .ok()
            .filter(|t| t.and_utc().timestamp() >= 0 && !raw[13..15].starts_with('6'));
        if let Some(t) = real {
            let secs = u64::try_from(t.and_utc().timestamp()).unwrap();
            prop_assert_eq!(parse_amz_date(&raw), Some(at(secs)));
        } else {
            let _ = parse_amz_date(&raw);
        }
    }
}

// ---- The edge's signature -------------------------------------------------------------------

/// The code and status a signature refusal is sent with.
fn assert_signature_refusal(
    verdict: Result<(), regional::origin_auth::SignatureError>,
) -> Result<(), TestCaseError> {
    let err = match verdict {
        Ok(()) => return Err(TestCaseError::fail("an unsigned or forged request passed")),
        Err(e) => e,
    };
    prop_assert!(err.code().starts_with("signature_"), "{err:?}");
    let api = ApiError::Forbidden(err.code());
    prop_assert_eq!(api.code_and_status().1, StatusCode::FORBIDDEN);
    assert_refusal(&api)
}

fn signed_header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "host",
            "x-amz-date",
            "content-type",
            "idempotency-key",
            "x-tandem-subject",
            "if-match",
            "if-none-match",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9-]{1,12}",
    ]
}

fn methods() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
            .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Anything in `Authorization`, `x-amz-date` and `host`, any method, path and body.
    #[test]
    fn arbitrary_signature_headers_are_refused_with_a_signature_code(
        authorization in prop::option::of(prop_oneof![
            header_bytes(120),
            header_bytes(100).prop_map(|b| [b"AWS4-HMAC-SHA256 ".to_vec(), b].concat()),
        ]),
        date in prop::option::of(prop_oneof![
            header_bytes(20),
            Just(amz_date(at(NOW)).into_bytes()),
        ]),
        host in prop::option::of(header_bytes(30)),
        method in methods(),
        path in ".{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut headers = HeaderMap::new();
        let given = [("authorization", authorization), ("x-amz-date", date), ("host", host)];
        for (name, value) in given {
            if let Some(value) = value {
                headers.insert(name, header_value(&value));
            }
        }
        assert_signature_refusal(key().verify(&method, &path, &headers, &body, at(NOW)))?;
    }

    /// Well-formed `Authorization` values with this region's scope and a fresh date, so the
    /// check goes all the way to recomputing the signature, over arbitrary signed-header lists,
    /// hosts, paths and header values: refused, never a panic inside the signer.
    #[test]
    fn well_formed_forgeries_reach_the_signer_and_are_refused(
        key_id in prop_oneof![4 => Just(KEY_ID.to_owned()), 1 => "[A-Z0-9]{0,16}"],
        signed_names in prop::collection::btree_set(signed_header_name(), 0..6),
        signature in "[0-9a-fA-F]{64}",
        host in prop_oneof![
            Just(HOST.as_bytes().to_vec()),
            header_bytes(30),
            "[a-z0-9.:@\\[\\]%-]{0,24}".prop_map(String::into_bytes),
        ],
        values in prop::collection::vec(header_bytes(24), 5),
        skew in 0u64..=300,
        method in methods(),
        path in prop_oneof![".{0,40}", "/[a-z0-9/%?=&.#+-]{0,40}"],
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let time = at(NOW - skew);
        let date = amz_date(time);
        let signed_list: Vec<&str> = signed_names.iter().map(String::as_str).collect();
        let scope = format!("{key_id}/{}/{REGION}/{SERVICE}/aws4_request", &date[..8]);
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={}, Signature={signature}",
            signed_list.join(";")
        );
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(&authorization).unwrap());
        headers.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
        headers.insert("host", header_value(&host));
        let names = [
            "content-type",
            "idempotency-key",
            "x-tandem-subject",
            "if-match",
            "if-none-match",
        ];
        for (name, value) in names.iter().zip(&values) {
            if signed_list.contains(name) {
                headers.insert(*name, header_value(value));
            }
        }
        assert_signature_refusal(key().verify(&method, &path, &headers, &body, at(NOW)))?;
    }

    /// A request signed as the edge signs passes; the same request with one byte changed
    /// anywhere (method, path or query, a signed header, the `Authorization` value, the body)
    /// is refused.
    #[test]
    fn one_changed_byte_in_a_signed_request_is_refused(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        path in "/(items|create|get)(/[a-z0-9]{1,8})?(\\?[a-z]{1,3}=[a-z0-9]{1,4}){0,2}",
        extra in signed_extras(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        skew in 0u64..=300,
        target in 0usize..5,
        at_index in any::<Index>(),
        header_index in any::<Index>(),
        pick in any::<u8>(),
    ) {
        let mut headers = signed(method, &path, &extra, &body, at(NOW - skew));
        let verdict = key().verify(method, &path, &header_map(&headers), &body, at(NOW));
        prop_assert_eq!(verdict, Ok(()));
        let (mut method, mut path, mut body) = (method.to_owned(), path, body);
        match target {
            0 => method = replace_byte(&method, at_index, pick),
            1 => path = replace_byte(&path, at_index, pick),
            2 => {
                let i = not_authorization(&headers, header_index);
                headers[i].1 = replace_byte(&headers[i].1, at_index, pick);
            }
            3 => {
                let auth = headers.iter_mut().find(|(n, _)| n == "authorization").unwrap();
                auth.1 = replace_byte(&auth.1, at_index, pick);
            }
            _ if body.is_empty() => body.push(pick),
            _ => {
                let i = at_index.index(body.len());
                body[i] ^= pick.max(1);
            }
        }
        let headers = header_map(&headers);
        assert_signature_refusal(key().verify(&method, &path, &headers, &body, at(NOW)))?;
    }

    /// More than five minutes either way: `signature_expired`, however good the signature.
    #[test]
    fn requests_signed_more_than_five_minutes_away_are_refused(
        offset in (MAX_SKEW.as_secs() + 1)..10_000_000,
        future in any::<bool>(),
    ) {
        let time = if future { at(NOW + offset) } else { at(NOW - offset) };
        let headers = header_map(&signed("GET", "/items", &[], b"", time));
        let verdict = key().verify("GET", "/items", &headers, b"", at(NOW));
        prop_assert_eq!(verdict.as_ref().map_err(|e| e.code()), Err("signature_expired"));
        assert_signature_refusal(verdict)?;
    }
}

// ---- The whole router -------------------------------------------------------------------------

/// One runtime and one store for every router property (the store is never called).
fn runtime() -> &'static (tokio::runtime::Runtime, ItemStore) {
    static RUNTIME: OnceLock<(tokio::runtime::Runtime, ItemStore)> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(ItemStore::connect(REGION, "fuzz-no-such-table"));
        (runtime, store)
    })
}

fn router(guard: OriginGuard) -> Router {
    let (_, store) = runtime();
    app::router(AppState {
        store: store.clone(),
        region: REGION.into(),
        faults: Faults::new(200),
        admin_token: None,
        origin_guard: guard.into(),
        list_page_max_bytes: regional::config::LIST_PAGE_MAX_BYTES,
    })
}

fn open() -> &'static Router {
    static OPEN: OnceLock<Router> = OnceLock::new();
    OPEN.get_or_init(|| router(OriginGuard::Open))
}

fn closed() -> &'static Router {
    static CLOSED: OnceLock<Router> = OnceLock::new();
    CLOSED.get_or_init(|| router(OriginGuard::Signature(key())))
}

/// Sends a request; the status and the error code of the JSON body (if any).
fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>) {
    let (runtime, _) = runtime();
    runtime.block_on(async {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        (status, code)
    })
}

/// A refusal through the router: a 4xx with a JSON error code.
fn assert_http_refusal(answer: &(StatusCode, Option<String>)) -> Result<(), TestCaseError> {
    let (status, code) = answer;
    prop_assert!(status.is_client_error(), "answered {status} {code:?}");
    prop_assert!(
        code.as_deref().is_some_and(|c| !c.is_empty()),
        "{status} without a code"
    );
    Ok(())
}

fn request(
    method: &str,
    path: &str,
    headers: &[(String, Vec<u8>)],
    body: Vec<u8>,
) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(name.as_str(), header_value(value));
    }
    builder.body(Body::from(body)).ok()
}

fn as_bytes(headers: Vec<(String, String)>) -> Vec<(String, Vec<u8>)> {
    headers
        .into_iter()
        .map(|(n, v)| (n, v.into_bytes()))
        .collect()
}

/// Paths a client might send: the routes, their neighbours, and URI-safe noise.
fn paths() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "/items",
            "/items/",
            "/create",
            "/get/",
            "/health",
            "/admin/faults",
            "/",
            "//items",
            "/Items",
        ]),
        "[A-Za-z0-9._~%!$'()*+,;=:@/?&-]{0,30}",
    )
        .prop_map(|(route, rest)| format!("{route}{rest}"))
}

fn client_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "authorization",
                "x-amz-date",
                "content-type",
                "idempotency-key",
                "if-match",
                "if-none-match",
                "x-tandem-subject",
                "x-tandem-deadline-ms",
                "x-request-id",
                "content-length",
                "cookie",
            ])
            .prop_map(str::to_owned),
            header_bytes(40),
        ),
        0..5,
    )
}

proptest! {
    #![proptest_config(config(96))]

    /// A region started closed refuses every unsigned or garbled request (only `/health` is
    /// open): a 4xx with a code, and for the API routes a 403 `signature_*`.
    #[test]
    fn a_closed_region_refuses_what_the_edge_did_not_sign(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        path in paths(),
        headers in client_headers(),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let Some(request) = request(method, &path, &headers, body) else {
            return Ok(());
        };
        let uri_path = request.uri().path().to_owned();
        let answer = send(closed(), request);
        if uri_path == "/health" && method == "GET" {
            prop_assert_eq!(answer.0, StatusCode::OK);
            return Ok(());
        }
        assert_http_refusal(&answer)?;
        let one_id = uri_path
            .strip_prefix("/items/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'));
        let api = uri_path == "/items" && ["GET", "POST"].contains(&method)
            || one_id && ["GET", "PUT", "DELETE"].contains(&method);
        if api {
            prop_assert_eq!(answer.0, StatusCode::FORBIDDEN);
            let code = answer.1.unwrap_or_default();
            prop_assert!(code.starts_with("signature_"), "{code:?}");
        }
    }

    /// A body the item rules refuse gets exactly their 400 through the router (an invalid
    /// `Idempotency-Key` is checked first); the open region and the signed path agree.
    #[test]
    fn refused_bodies_get_the_parsers_answer_through_the_router(
        body in body(),
        key in prop::option::of(prop_oneof![
            header_bytes(20),
            "[a-z0-9-]{1,20}".prop_map(String::into_bytes),
        ]),
        sign_it in any::<bool>(),
    ) {
        let key_error = key.as_ref().and_then(|k| {
            let value = header_value(k);
            let valid = value.to_str().is_ok_and(|t| item::validate_idempotency_key(t).is_ok());
            (!valid).then_some("invalid_idempotency_key")
        });
        let parsed = item::parse_object(&body).and_then(item::client_item);
        let body_error = parsed.err().map(|e| e.code());
        let Some(expected) = key_error.or(body_error) else {
            return Ok(()); // Acceptable: it would be written, and this store has no table.
        };
        let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
        if let Some(k) = key {
            headers.push(("idempotency-key".to_owned(), k));
        }
        let (app, headers) = match sign_it {
            false => (open(), headers),
            true => {
                // Signed values here are visible ASCII only: a signed value with bytes of 0x80
                // or more is refused as malformed (`a_signed_header_with_obs_text_is_refused_as_malformed`),
                // and the edge answers such a client header with its own 400 before signing.
                let text = headers.iter().map(|(n, v)| {
                    let value = header_value(v).to_str().ok()?.to_owned();
                    Some((n.clone(), value))
                });
                let Some(text) = text.collect::<Option<Vec<_>>>() else {
                    return Ok(());
                };
                let all = signed("POST", "/items", &text, &body, SystemTime::now());
                (closed(), as_bytes(all))
            }
        };
        let answer = send(app, request("POST", "/items", &headers, body).unwrap());
        prop_assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{:?}", answer.1);
        prop_assert_eq!(answer.1.as_deref(), Some(expected));
    }

    /// Ids in the path, percent-encoded byte by byte (invalid UTF-8 included): a bad one is a
    /// 400 `invalid_item_id` for every method that takes one, before any body or `If-Match`.
    #[test]
    fn bad_ids_in_the_path_are_400(
        raw in prop_oneof![
            prop::collection::vec(any::<u8>(), 1..12),
            id().prop_map(String::into_bytes),
        ],
        method in prop::sample::select(vec!["GET", "PUT", "DELETE"]),
        if_match in header_bytes(12),
    ) {
        let valid = std::str::from_utf8(&raw).is_ok_and(|id| item::validate_id(id).is_ok());
        if valid || raw.is_empty() {
            return Ok(());
        }
        let encoded: String = raw.iter().map(|b| format!("%{b:02X}")).collect();
        let headers = [("if-match".to_owned(), if_match)];
        let path = format!("/items/{encoded}");
        let answer = send(open(), request(method, &path, &headers, b"{}".to_vec()).unwrap());
        prop_assert_eq!(answer.0, StatusCode::BAD_REQUEST);
        prop_assert_eq!(answer.1.as_deref(), Some("invalid_item_id"));
    }

    /// `If-Match` or `If-None-Match` on a PUT with a body that is not an object: whichever is
    /// checked first, a 400 with its code (`invalid_if_match` / `invalid_if_none_match` for a
    /// bad header; both take the same grammar).
    #[test]
    fn bad_precondition_headers_are_400(
        name in prop::sample::select(vec!["if-match", "if-none-match"]),
        value in prop_oneof![
            header_bytes(30),
            "[ ,\"W/*a-z0-9-]{0,30}".prop_map(String::into_bytes),
        ],
    ) {
        let text = header_value(&value).to_str().ok().map(str::to_owned);
        let parsed = text.as_deref().and_then(EntityTags::if_match);
        prop_assert_eq!(parsed.is_some(), text.as_deref().and_then(EntityTags::if_none_match).is_some());
        let headers = [(name.to_owned(), value)];
        let put = request("PUT", "/items/fuzz-1", &headers, b"[1]".to_vec()).unwrap();
        let answer = send(open(), put);
        let refused = format!("invalid_{}", name.replace('-', "_"));
        let expected = if parsed.is_some() { "body_not_object" } else { refused.as_str() };
        prop_assert_eq!(answer.0, StatusCode::BAD_REQUEST);
        prop_assert_eq!(answer.1.as_deref(), Some(expected));
    }

    /// The tag the service sends back, strong or weak, names its write in `If-None-Match` (a 304
    /// or 412 follows) and no other write.
    #[test]
    fn the_etag_sent_is_named_by_if_none_match_strong_or_weak(
        version in 0u64..1_000,
        weak in any::<bool>(),
    ) {
        let stamp = item::WriteStamp { region: "eu-west-1", now: "2026-11-29T10:00:00.000Z" };
        let mut stored = item::new_item("a", Item::new(), stamp, None);
        stored.insert(item::VERSION.into(), version.into());
        let tag = item::etag(&stored);
        let sent = if weak { format!("W/{tag}") } else { tag };
        let parsed = EntityTags::if_none_match(&sent).expect("our own tag parses");
        prop_assert!(parsed.matches(Some(&stored)));
        let mut later = stored.clone();
        later.insert(item::VERSION.into(), (version + 1).into());
        prop_assert!(!parsed.matches(Some(&later)));
    }

    /// `GET /items?limit=&cursor=` with a bad limit or a cursor the API never returned: 400
    /// `invalid_query`.
    #[test]
    fn bad_list_queries_are_400(
        limit in prop::option::of(prop_oneof![".{0,6}", "-?[0-9]{1,12}"]),
        cursor in prop::option::of(prop_oneof![
            ".{0,16}",
            id().prop_map(|id| URL_SAFE_NO_PAD.encode(id)),
        ]),
    ) {
        let limit_ok = limit
            .as_deref()
            .is_none_or(|l| l.parse::<i32>().is_ok_and(|n| (1..=100).contains(&n)));
        let cursor_ok = cursor.as_deref().is_none_or(|c| {
            URL_SAFE_NO_PAD.decode(c).ok()
                .and_then(|b| String::from_utf8(b).ok())
                .is_some_and(|id| item::validate_id(&id).is_ok())
        });
        if limit_ok && cursor_ok {
            return Ok(());
        }
        let mut query = Vec::new();
        for (name, value) in [("limit", &limit), ("cursor", &cursor)] {
            if let Some(v) = value {
                let encoded: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
                query.push(format!("{name}={encoded}"));
            }
        }
        let path = format!("/items?{}", query.join("&"));
        let answer = send(open(), request("GET", &path, &[], Vec::new()).unwrap());
        prop_assert_eq!(answer.0, StatusCode::BAD_REQUEST);
        prop_assert_eq!(answer.1.as_deref(), Some("invalid_query"));
    }

    /// Bodies over the item limit once counted the DynamoDB way are refused (413) before a write.
    #[test]
    fn the_item_size_rule_counts_every_byte(
        len in prop_oneof![
            0usize..2_000,
            (item::MAX_ITEM_BYTES - 20)..(item::MAX_ITEM_BYTES + 20),
            0usize..600_000,
        ],
        name in "[a-z]{1,8}",
    ) {
        let text = format!("{{\"{name}\":\"{}\"}}", "x".repeat(len));
        let client = item::client_item(item::parse_object(text.as_bytes()).unwrap()).unwrap();
        let size = attributes::item_size(&attributes::to_attributes(&client.attributes));
        prop_assert_eq!(size, name.len() + len);
        if size > item::MAX_ITEM_BYTES {
            assert_refusal(&ApiError::TooLarge { limit: item::MAX_ITEM_BYTES })?;
        }
    }

    /// A body over the limit, declared or not (no `Content-Length`, as a chunked body arrives):
    /// 413 `payload_too_large`, open or closed.
    #[test]
    fn bodies_over_the_limit_are_413(
        extra in 1usize..100_000,
        declare in any::<bool>(),
        closed_region in any::<bool>(),
    ) {
        let len = item::MAX_ITEM_BYTES + extra;
        let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
        if declare {
            headers.push(("content-length".to_owned(), len.to_string().into_bytes()));
        }
        let app = if closed_region { closed() } else { open() };
        let answer = send(app, request("POST", "/items", &headers, vec![b' '; len]).unwrap());
        prop_assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE);
        prop_assert_eq!(answer.1.as_deref(), Some("payload_too_large"));
    }

    /// A request signed as the edge signs, with one byte of its body or of a signed header
    /// changed on the way: 403 `signature_*` from the router, nothing reaches the handler.
    #[test]
    fn tampered_signed_requests_are_403_through_the_router(
        extra in signed_extras(),
        body in prop::collection::vec(any::<u8>(), 1..64),
        change_header in any::<bool>(),
        at_index in any::<Index>(),
        header_index in any::<Index>(),
        pick in any::<u8>(),
    ) {
        let mut headers = signed("POST", "/items", &extra, &body, SystemTime::now());
        let mut body = body;
        if change_header {
            let i = not_authorization(&headers, header_index);
            headers[i].1 = replace_byte(&headers[i].1, at_index, pick);
        } else {
            let i = at_index.index(body.len());
            body[i] ^= pick.max(1);
        }
        let answer = send(closed(), request("POST", "/items", &as_bytes(headers), body).unwrap());
        prop_assert_eq!(answer.0, StatusCode::FORBIDDEN, "{:?}", answer.1);
        let code = answer.1.unwrap_or_default();
        prop_assert!(code.starts_with("signature_"), "{code:?}");
    }
}

/// Found by `refused_bodies_get_the_parsers_answer_through_the_router` (minimal input:
/// `Idempotency-Key` bytes `C2 80`, body `{}`, signed): a header value with a byte of 0x80 or
/// more (obs-text, which HTTP allows) has no agreed text form to sign, so a region cannot check a
/// signature over it and refuses it as malformed (403). The edge never sends one: it answers the
/// client 400 `invalid_header` before signing (`edge::core::origin_signing::unsignable_header`,
/// tried through workerd in tests/test_security.py), so a client's bad header never reaches a
/// region and never looks like a failing region.
#[test]
fn a_signed_header_with_obs_text_is_refused_as_malformed() {
    for (name, value, method, path) in [
        ("idempotency-key", "caf\u{e9}", "POST", "/items"),
        ("idempotency-key", "\u{80}", "POST", "/items"),
        ("if-match", "\"\u{e9}\"", "PUT", "/items/obs-1"),
    ] {
        let extra = [
            ("content-type".to_owned(), "application/json".to_owned()),
            (name.to_owned(), value.to_owned()),
        ];
        let headers = signed(method, path, &extra, b"{}", SystemTime::now());
        let answer = send(
            closed(),
            request(method, path, &as_bytes(headers), b"{}".to_vec()).unwrap(),
        );
        assert_eq!(
            answer,
            (
                StatusCode::FORBIDDEN,
                Some("signature_malformed".to_owned())
            ),
            "{name}: {value:?}"
        );
    }
}
