//! SigV4 on every origin request, so a region answers only what the edge sent.
//!
//! The edge signs for API Gateway (`execute-api`) in the target region, with credentials from
//! Worker secrets and the time from the platform clock (passed in: Wasm has no clock here). It
//! signs the host, the date, the body's hash and the headers that change what a region does
//! ([`SIGNED_HEADERS`]); the regions refuse a request that carries one of them unsigned.
//!
//! Pure: no I/O, no clock. Never logs or returns the secret.

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::Millis;

/// API Gateway's service name in the signature's scope.
pub const SERVICE: &str = "execute-api";

/// The header carrying the caller's verified subject to the regions (it scopes idempotency
/// keys); signed, so only the edge can set it. Its value is [`subject_header_value`].
pub const SUBJECT_HEADER: &str = "x-tandem-subject";

/// What [`SUBJECT_HEADER`] carries for a token's `sub`: `sub-` and the SHA-256 of it in hex.
/// A `sub` is any JSON string (Unicode, control characters, any length) and a header holds
/// only visible ASCII; the digest always fits, is one per subject, and never equals a scope
/// the regions give another meaning (`anonymous`, for callers without one).
pub fn subject_header_value(subject: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(subject.as_bytes());
    let mut value = String::with_capacity(4 + 2 * digest.len());
    value.push_str("sub-");
    for byte in digest {
        value.push(char::from(HEX[usize::from(byte >> 4)]));
        value.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    value
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Headers signed whenever the request carries them (`host` and `x-amz-date` always are).
pub const SIGNED_HEADERS: [&str; 7] = [
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "x-request-id",
    "x-tandem-deadline-ms",
    "x-tandem-subject",
];

/// The key pair the edge signs with (`SIGV4_ACCESS_KEY_ID`, `SIGV4_SECRET_ACCESS_KEY`).
#[derive(Clone, PartialEq, Eq)]
pub struct OriginCredentials {
    access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for OriginCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Signing failed: the URL or a header could not be signed (never the secret's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the origin request could not be signed")]
pub struct SigningFailed;

impl OriginCredentials {
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The headers to add (`authorization`, `x-amz-date`) to send `method url` with `headers`
    /// (only those in [`SIGNED_HEADERS`] are signed; pass them lowercase) and `body` to the
    /// region named `region`, at `now_ms`.
    pub fn sign<'a>(
        &self,
        region: &str,
        method: &'a str,
        url: &'a str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        body: &'a [u8],
        now_ms: Millis,
    ) -> Result<Vec<(&'static str, String)>, SigningFailed> {
        let identity = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "tandem-edge",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(UNIX_EPOCH + Duration::from_millis(now_ms))
            .settings(SigningSettings::default())
            .build()
            .map_err(|_| SigningFailed)?
            .into();
        // A URL without a host cannot be signed (and aws-sigv4 would panic on it).
        if !url
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'))
        {
            return Err(SigningFailed);
        }
        let signed = headers.filter(|(name, _)| SIGNED_HEADERS.contains(name));
        let request = SignableRequest::new(method, url, signed, SignableBody::Bytes(body))
            .map_err(|_| SigningFailed)?;
        let (instructions, _) = sign(request, &params)
            .map_err(|_| SigningFailed)?
            .into_parts();
        Ok(instructions
            .headers()
            .filter_map(|(name, value)| match name {
                "authorization" => Some(("authorization", value.to_owned())),
                "x-amz-date" => Some(("x-amz-date", value.to_owned())),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> OriginCredentials {
        OriginCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    }

    /// 2026-12-03T07:15:00Z.
    const NOW: Millis = 1_796_282_100_000;

    #[test]
    fn every_subject_becomes_one_visible_ascii_value() {
        let subjects = [
            "alice",
            "josé",
            "用户",
            "a\r\nb\0",
            "anonymous",
            &"x".repeat(4096),
        ];
        let values: Vec<String> = subjects.iter().map(|s| subject_header_value(s)).collect();
        for value in &values {
            assert_eq!(value.len(), 68);
            assert!(value.starts_with("sub-"));
            assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{value}");
        }
        let distinct: std::collections::HashSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), subjects.len());
        assert_eq!(subject_header_value("alice"), values[0]);
        // SHA-256("abc"), FIPS 180-2's example.
        assert_eq!(
            subject_header_value("abc"),
            "sub-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn authorization<'a>(headers: &'a [(&'static str, String)]) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn signs_for_the_region_and_service_at_the_given_time() {
        let headers = creds()
            .sign(
                "eu-west-1",
                "POST",
                "http://127.0.0.1:8081/items",
                [("content-type", "application/json"), ("accept", "*/*")].into_iter(),
                b"{}",
                NOW,
            )
            .unwrap();
        let auth = authorization(&headers);
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/eu-west-1/execute-api/aws4_request, "
            ),
            "{auth}"
        );
        // Only the headers that matter are signed (accept is not).
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date,"),
            "{auth}"
        );
        assert!(
            headers
                .iter()
                .any(|(n, v)| *n == "x-amz-date" && v == "20261203T071500Z")
        );
        assert!(!auth.contains("wJalr"), "the secret never appears");
    }

    #[test]
    fn every_part_changes_the_signature() {
        let sig = |region: &str, method: &str, url: &str, subject: &str, body: &[u8], now| {
            authorization(
                &creds()
                    .sign(
                        region,
                        method,
                        url,
                        [("x-tandem-subject", subject)].into_iter(),
                        body,
                        now,
                    )
                    .unwrap(),
            )
            .to_owned()
        };
        let base = sig("eu-west-1", "PUT", "http://h:1/items/a", "alice", b"x", NOW);
        assert_eq!(
            base,
            sig("eu-west-1", "PUT", "http://h:1/items/a", "alice", b"x", NOW)
        );
        for other in [
            sig(
                "eu-central-1",
                "PUT",
                "http://h:1/items/a",
                "alice",
                b"x",
                NOW,
            ),
            sig("eu-west-1", "GET", "http://h:1/items/a", "alice", b"x", NOW),
            sig("eu-west-1", "PUT", "http://h:1/items/b", "alice", b"x", NOW),
            sig("eu-west-1", "PUT", "http://h:2/items/a", "alice", b"x", NOW),
            sig("eu-west-1", "PUT", "http://h:1/items/a", "bob", b"x", NOW),
            sig("eu-west-1", "PUT", "http://h:1/items/a", "alice", b"y", NOW),
            sig(
                "eu-west-1",
                "PUT",
                "http://h:1/items/a",
                "alice",
                b"x",
                NOW + 1000,
            ),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn a_url_without_a_host_is_refused_not_a_panic() {
        for url in ["", "/items", "http:///items", "not a url"] {
            assert_eq!(
                creds().sign("eu-west-1", "GET", url, std::iter::empty(), b"", NOW),
                Err(SigningFailed),
                "{url}"
            );
        }
    }
}
