//! Origin protection: a region answers only what the edge signed.
//!
//! In AWS, API Gateway checks the edge's SigV4 signature (`AWS_IAM` on every route but
//! `/health`) and the function checks, as defence in depth, that the caller API Gateway names is
//! the edge's IAM user ([`caller_is_edge`]). Locally there is no API Gateway, so the region checks
//! the signature itself ([`OriginKey::verify`]), recomputed with the same `aws-sigv4` crate the
//! edge signs with: method, path, query, the signed headers and the body's hash, the credential
//! scope (key, date, this region, `execute-api`) and at most five minutes of clock skew.
//!
//! Pure: no I/O and no clock of its own (the time is passed in). Never logs or returns the
//! secret, and never says which part of a signature was wrong beyond a stable code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::http::HeaderMap;

/// The service name the edge signs for (API Gateway's).
pub const SERVICE: &str = "execute-api";
/// Largest difference between the signature's time and ours.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// The header carrying the verified caller's subject (the edge's token `sub`), trusted only on a
/// signed request: it scopes idempotency keys.
pub const SUBJECT_HEADER: &str = "x-tandem-subject";
/// Headers that change what a region does: a request carrying one of them must have signed it.
pub const MUST_SIGN: [&str; 8] = [
    "host",
    "x-amz-date",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "x-tandem-deadline-ms",
    SUBJECT_HEADER,
];
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request was refused (every one is a 403; the code says which rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed")]
    Missing,
    #[error("the signature is malformed ({0})")]
    Malformed(&'static str),
    #[error("the signature names an unknown access key")]
    UnknownKey,
    #[error("the signature's scope is not this region's ({0})")]
    WrongScope(&'static str),
    #[error("the signature is older or newer than five minutes")]
    Skewed,
    #[error("header {0} was sent but not signed")]
    UnsignedHeader(&'static str),
    #[error("the signature does not match the request")]
    Mismatch,
}

impl SignatureError {
    /// The stable code sent to the caller.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed(_) => "signature_malformed",
            Self::UnknownKey => "signature_unknown_key",
            Self::WrongScope(_) => "signature_wrong_scope",
            Self::Skewed => "signature_expired",
            Self::UnsignedHeader(_) => "signature_header_unsigned",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// The credentials the edge signs with, as this region knows them.
#[derive(Clone)]
pub struct OriginKey {
    access_key_id: String,
    secret_access_key: String,
    region: String,
}

impl std::fmt::Debug for OriginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginKey")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl PartialEq for OriginKey {
    fn eq(&self, other: &Self) -> bool {
        self.access_key_id == other.access_key_id
            && self.region == other.region
            && constant_time_eq(
                self.secret_access_key.as_bytes(),
                other.secret_access_key.as_bytes(),
            )
    }
}

impl Eq for OriginKey {}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(value: &'a str) -> Result<Self, SignatureError> {
        let rest = value
            .strip_prefix(ALGORITHM)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(SignatureError::Malformed("algorithm"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or(SignatureError::Malformed("parameter"))?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(SignatureError::Malformed("parameter")),
            };
            if slot.replace(value).is_some() {
                return Err(SignatureError::Malformed("parameter repeated"));
            }
        }
        let credential = credential.ok_or(SignatureError::Malformed("Credential"))?;
        let signed = signed.ok_or(SignatureError::Malformed("SignedHeaders"))?;
        let signature = signature.ok_or(SignatureError::Malformed("Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
            return Err(SignatureError::Malformed("Credential"));
        };
        if *terminator != "aws4_request" {
            return Err(SignatureError::Malformed("Credential"));
        }
        let signed_headers: Vec<&str> = signed.split(';').collect();
        let sorted = signed_headers.windows(2).all(|w| w[0] < w[1]);
        let lower = signed_headers.iter().all(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if !sorted || !lower {
            return Err(SignatureError::Malformed("SignedHeaders"));
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SignatureError::Malformed("Signature"));
        }
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            signed_headers,
            signature,
        })
    }
}

impl OriginKey {
    /// The key pair the edge signs with and this region's name (the signature's scope).
    pub fn new(access_key_id: &str, secret_access_key: &str, region: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            region: region.to_owned(),
        }
    }

    /// Checks that the request was signed by the edge for this region, at most [`MAX_SKEW`] from
    /// `now`. `path_and_query` is as received; `body` is the whole body.
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        let value = headers
            .get("authorization")
            .ok_or(SignatureError::Missing)?
            .to_str()
            .map_err(|_| SignatureError::Malformed("authorization"))?;
        let auth = Authorization::parse(value)?;
        if !constant_time_eq(auth.access_key_id.as_bytes(), self.access_key_id.as_bytes()) {
            return Err(SignatureError::UnknownKey);
        }
        if auth.region != self.region {
            return Err(SignatureError::WrongScope("region"));
        }
        if auth.service != SERVICE {
            return Err(SignatureError::WrongScope("service"));
        }
        let amz_date =
            header_str(headers, "x-amz-date")?.ok_or(SignatureError::Malformed("x-amz-date"))?;
        if amz_date.get(..8) != Some(auth.date) {
            return Err(SignatureError::WrongScope("date"));
        }
        let signed_at = parse_amz_date(amz_date).ok_or(SignatureError::Malformed("x-amz-date"))?;
        let skew = now
            .duration_since(signed_at)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or(Duration::MAX);
        if skew > MAX_SKEW {
            return Err(SignatureError::Skewed);
        }
        for name in MUST_SIGN {
            if headers.contains_key(name) && !auth.signed_headers.contains(&name) {
                return Err(SignatureError::UnsignedHeader(name));
            }
        }
        let host = header_str(headers, "host")?.ok_or(SignatureError::UnsignedHeader("host"))?;
        let uri = format!("http://{host}{path_and_query}");
        if uri
            .parse::<axum::http::Uri>()
            .is_ok_and(|u| u.host().is_none())
        {
            return Err(SignatureError::Malformed("host"));
        }
        let mut signed = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let mut values = headers.get_all(*name).iter().peekable();
            if values.peek().is_none() {
                return Err(SignatureError::Mismatch);
            }
            for value in values {
                let value = value
                    .to_str()
                    .map_err(|_| SignatureError::Malformed("header value"))?;
                signed.push((*name, value));
            }
        }
        let expected = self
            .signature(method, &uri, signed.into_iter(), body, signed_at)
            .ok_or(SignatureError::Malformed("request"))?;
        if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// The signature `aws-sigv4` computes for this request at `time`, or `None` if it cannot
    /// sign it (an unparsable URI).
    fn signature<'a>(
        &self,
        method: &'a str,
        uri: &'a str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        body: &'a [u8],
        time: SystemTime,
    ) -> Option<String> {
        let identity = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "tandem-origin",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .ok()?
            .into();
        let request = SignableRequest::new(method, uri, headers, SignableBody::Bytes(body)).ok()?;
        let (_, signature) = sign(request, &params).ok()?.into_parts();
        Some(signature)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, SignatureError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| SignatureError::Malformed("header value"))
        })
        .transpose()
}

/// `20261203T071500Z` as a time (UTC), or `None` if it is not one.
pub fn parse_amz_date(raw: &str) -> Option<SystemTime> {
    let bytes = raw.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = raw.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// In Lambda: whether API Gateway says the (already verified) caller is the edge's IAM user.
/// `expected_arn` is the edge user's ARN (`EDGE_CALLER_ARN`).
pub fn caller_is_edge(caller_arn: Option<&str>, expected_arn: &str) -> bool {
    caller_arn.is_some_and(|arn| arn == expected_arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const KEY_ID: &str = "AKIDLOCALTEST";
    const SECRET: &str = "local-secret-for-tests-only-0123456789";

    fn key() -> OriginKey {
        OriginKey::new(KEY_ID, SECRET, "eu-west-1")
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Signs as the edge does (the same crate, the same settings) and returns the headers sent.
    fn signed(
        region: &str,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        time: SystemTime,
    ) -> HeaderMap {
        let identity = Credentials::new(KEY_ID, SECRET, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let mut all = vec![("host", "127.0.0.1:8081")];
        all.extend_from_slice(extra);
        let uri = format!("http://127.0.0.1:8081{path}");
        let request =
            SignableRequest::new(method, uri, all.iter().copied(), SignableBody::Bytes(body))
                .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut headers = HeaderMap::new();
        for (name, value) in all.iter().copied().chain(instructions.headers()) {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    const NOW: u64 = 1_796_000_000;

    #[test]
    fn a_request_signed_by_the_edge_passes() {
        let body = br#"{"item_id":"a1"}"#;
        let extra = [
            ("content-type", "application/json"),
            ("idempotency-key", "k1"),
        ];
        let h = signed("eu-west-1", "POST", "/items?x=1", &extra, body, at(NOW));
        assert_eq!(
            key().verify("POST", "/items?x=1", &h, body, at(NOW)),
            Ok(())
        );
        // Within the skew either way.
        assert_eq!(
            key().verify("POST", "/items?x=1", &h, body, at(NOW + 299)),
            Ok(())
        );
        assert_eq!(
            key().verify("POST", "/items?x=1", &h, body, at(NOW - 299)),
            Ok(())
        );
    }

    #[test]
    fn tampering_is_refused() {
        let body = br#"{"item_id":"a1"}"#;
        let extra = [("idempotency-key", "k1"), ("x-tandem-subject", "alice")];
        let h = signed("eu-west-1", "POST", "/items", &extra, body, at(NOW));
        let k = key();
        let verify = |m: &str, p: &str, h: &HeaderMap, b: &[u8]| k.verify(m, p, h, b, at(NOW));
        assert_eq!(verify("POST", "/items", &h, body), Ok(()));
        assert_eq!(
            verify("POST", "/items/a1", &h, body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("POST", "/items?admin=1", &h, body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("PUT", "/items", &h, body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("POST", "/items", &h, br#"{"item_id":"a2"}"#),
            Err(SignatureError::Mismatch)
        );
        let mut other = h.clone();
        other.insert("x-tandem-subject", HeaderValue::from_static("mallory"));
        assert_eq!(
            verify("POST", "/items", &other, body),
            Err(SignatureError::Mismatch)
        );
        // A header that matters, added but not signed.
        let mut added = h.clone();
        added.insert("if-match", HeaderValue::from_static("*"));
        assert_eq!(
            verify("POST", "/items", &added, body),
            Err(SignatureError::UnsignedHeader("if-match"))
        );
        // Headers nobody signs may change (proxies add them).
        let mut harmless = h.clone();
        harmless.insert("user-agent", HeaderValue::from_static("curl"));
        assert_eq!(verify("POST", "/items", &harmless, body), Ok(()));
    }

    #[test]
    fn old_foreign_and_unsigned_requests_are_refused() {
        let h = signed("eu-west-1", "GET", "/items/a1", &[], b"", at(NOW));
        assert_eq!(
            key().verify("GET", "/items/a1", &h, b"", at(NOW + 301)),
            Err(SignatureError::Skewed)
        );
        assert_eq!(
            key().verify("GET", "/items/a1", &h, b"", at(NOW - 301)),
            Err(SignatureError::Skewed)
        );
        let elsewhere = signed("eu-central-1", "GET", "/items/a1", &[], b"", at(NOW));
        assert_eq!(
            key().verify("GET", "/items/a1", &elsewhere, b"", at(NOW)),
            Err(SignatureError::WrongScope("region"))
        );
        let other_key = OriginKey::new("AKIDOTHER", SECRET, "eu-west-1");
        assert_eq!(
            other_key.verify("GET", "/items/a1", &h, b"", at(NOW)),
            Err(SignatureError::UnknownKey)
        );
        let wrong_secret = OriginKey::new(KEY_ID, "another-secret", "eu-west-1");
        assert_eq!(
            wrong_secret.verify("GET", "/items/a1", &h, b"", at(NOW)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key().verify("GET", "/items/a1", &HeaderMap::new(), b"", at(NOW)),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn malformed_authorization_is_a_clear_refusal() {
        let good = signed("eu-west-1", "GET", "/items", &[], b"", at(NOW));
        for bad in [
            "Bearer abc",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKIDLOCALTEST/20261203/eu-west-1/execute-api/aws4_request, SignedHeaders=x-amz-date;host, Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "AWS4-HMAC-SHA256 Credential=AKIDLOCALTEST/20261203/eu-west-1/execute-api/aws4_request, Credential=x, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let mut h = good.clone();
            h.insert("authorization", HeaderValue::from_static(bad));
            let err = key().verify("GET", "/items", &h, b"", at(NOW)).unwrap_err();
            assert!(
                matches!(err, SignatureError::Malformed(_)),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn amz_dates_parse_exactly() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_amz_date("20261203T071500Z"), Some(at(1_796_282_100)));
        for bad in [
            "",
            "20261203T071500",
            "2026-12-03T07:15Z",
            "20261303T071500Z",
            "2026120xT071500Z",
            "+0261203T071500Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_lambda_caller_must_be_the_edge() {
        let edge = "arn:aws:iam::123456789012:user/tandem-edge";
        assert!(caller_is_edge(Some(edge), edge));
        assert!(!caller_is_edge(
            Some("arn:aws:iam::123456789012:user/other"),
            edge
        ));
        assert!(!caller_is_edge(None, edge));
    }
}
