//! Splits a compact-serialized JWS (`header.payload.signature`, RFC 7515 section 7.1) and reads
//! its protected header.
//!
//! It accepts only the canonical form: exactly three segments, strict base64url in each, a
//! non-empty header and signature, a header that is one JSON object with unique member names and
//! a string `alg`. The JSON serialization is refused (it is not three base64url segments).
//!
//! It never trusts key material or URLs from the header: `jku`, `x5u`, `x5c`, `jwk` and `x5t` are
//! not even read, so no code path can fetch or use them. A `crit` header is refused outright: we
//! implement no extension, and RFC 7515 section 4.1.11 says a recipient must then reject.
//! This module never verifies anything; `jws` does.

use serde_json::{Map, Value};

use crate::alg::Alg;
use crate::b64;
use crate::error::Error;
use crate::json::{ObjectError, parse_object};

/// The longest token accepted, in bytes (16 KiB). Real access tokens are a few KiB; anything much
/// larger is refused before any decoding or hashing is spent on it.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The protected header members this crate reads. Everything else in the header is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The signature algorithm (`alg`).
    pub alg: Alg,
    /// The key ID (`kid`), if any.
    pub kid: Option<String>,
    /// The media type (`typ`), if any; informational, never checked.
    pub typ: Option<String>,
}

/// A token cut into its parts, not yet verified.
pub(crate) struct Compact<'a> {
    pub(crate) header: Header,
    /// The bytes the signature covers: `base64url(header) || '.' || base64url(payload)`.
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

/// Parses `token` into its three parts and reads the header.
pub(crate) fn parse(token: &str) -> Result<Compact<'_>, Error> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::Malformed("token too long"));
    }
    let mut parts = token.splitn(4, '.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed("not three dot-separated segments"));
    };
    if header_b64.is_empty() {
        return Err(Error::Malformed("empty header"));
    }
    if signature_b64.is_empty() {
        return Err(Error::Malformed("empty signature"));
    }
    let header_json = b64::decode(header_b64).ok_or(Error::Malformed("header is not base64url"))?;
    let payload = b64::decode(payload_b64).ok_or(Error::Malformed("payload is not base64url"))?;
    let signature =
        b64::decode(signature_b64).ok_or(Error::Malformed("signature is not base64url"))?;
    let header = parse_header(&header_json)?;
    // The signing input ends just before the second dot.
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    Ok(Compact {
        header,
        signing_input,
        payload,
        signature,
    })
}

/// Reads the members we act on. Order matters only for which error is reported: `crit` first
/// (whatever else is wrong, we could not honour it), then `alg`, then `kid` and `typ`.
fn parse_header(json: &[u8]) -> Result<Header, Error> {
    let members = parse_object(json).map_err(|e| match e {
        ObjectError::NotAnObject => Error::Malformed("header is not a JSON object"),
        ObjectError::DuplicateMember => Error::Malformed("duplicate header member"),
    })?;
    if members.contains_key("crit") {
        return Err(Error::UnknownCrit);
    }
    let alg = match members.get("alg") {
        Some(Value::String(name)) => Alg::parse(name)?,
        Some(_) => return Err(Error::Malformed("alg is not a string")),
        None => return Err(Error::Malformed("no alg")),
    };
    Ok(Header {
        alg,
        kid: optional_string(&members, "kid")?,
        typ: optional_string(&members, "typ")?,
    })
}

fn optional_string(
    members: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, Error> {
    match members.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::Malformed("kid or typ is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_TOKEN_BYTES, parse};
    use crate::alg::Alg;
    use crate::b64::encode;
    use crate::error::Error;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            encode(header.as_bytes()),
            encode(payload.as_bytes())
        )
    }

    #[test]
    fn splits_and_reads_the_header() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT","x5u":"http://evil"}"#,
            "{}",
        );
        let c = parse(&t).unwrap();
        assert_eq!(c.header.alg, Alg::Rs256);
        assert_eq!(c.header.kid.as_deref(), Some("k1"));
        assert_eq!(c.header.typ.as_deref(), Some("JWT"));
        assert_eq!(c.payload, b"{}");
        assert_eq!(c.signature, b"sig");
        assert_eq!(c.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn allows_an_empty_payload() {
        let t = format!("{}..c2ln", encode(br#"{"alg":"HS256"}"#));
        assert!(parse(&t).unwrap().payload.is_empty());
    }

    #[test]
    fn refuses_non_canonical_shapes() {
        let good = token(r#"{"alg":"HS256"}"#, "{}");
        let (h, rest) = good.split_once('.').unwrap();
        let cases = [
            String::new(),
            h.to_owned(),
            format!("{h}.e30"),
            format!("{good}."),
            format!("{good}.c2ln"),
            format!(".{rest}"),
            format!("{h}.e30."),
            format!("{h}=.{rest}"),
            format!("{h} .{rest}"),
            format!(" {good}"),
            format!("{good}\n"),
            format!(r#"{{"payload":"e30","protected":"{h}","signature":"c2ln"}}"#),
            "a".repeat(MAX_TOKEN_BYTES + 1),
        ];
        for case in cases {
            assert!(matches!(parse(&case), Err(Error::Malformed(_))), "{case:?}");
        }
    }

    #[test]
    fn header_rules() {
        let err = |h: &str| parse(&token(h, "{}")).err();
        assert_eq!(err(r#"{"alg":"none"}"#), Some(Error::UnsupportedAlg));
        assert_eq!(err(r#"{"alg":"NoNe"}"#), Some(Error::UnsupportedAlg));
        assert_eq!(
            err(r#"{"alg":"HS256","crit":["exp"]}"#),
            Some(Error::UnknownCrit)
        );
        assert_eq!(err(r#"{"alg":"none","crit":[]}"#), Some(Error::UnknownCrit));
        for bad in [
            r#"{"alg":256}"#,
            r#"{"kid":"k"}"#,
            r#"{"alg":"HS256","kid":7}"#,
            r#"{"alg":"HS256","alg":"HS256"}"#,
            r#"["alg","HS256"]"#,
            r#"{"alg":"HS256"} x"#,
            "",
        ] {
            assert!(matches!(err(bad), Some(Error::Malformed(_))), "{bad}");
        }
        assert_eq!(
            err(r#"{ "alg" : "ES256", "jwk": {"kty":"EC"}, "jku": "x" }"#),
            None
        );
    }
}
