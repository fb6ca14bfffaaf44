//! What the edge refuses in a client's request line and headers before any region sees it, so
//! that a client's mistake is answered as the client's (4xx), never sent on to look like a
//! failing region: a method the API has no use for (405), an empty `If-Match`, `If-None-Match`
//! or `Idempotency-Key` (400, as a region would say), and a header the edge would sign whose
//! value is not printable ASCII (400: SigV4 signs text, and HTTP allows other bytes).
//!
//! Pure: no I/O.

/// Methods the edge forwards (anything else is a 405 with these in `Allow`): the API's own;
/// PATCH has no route, so it is refused here rather than by a region.
pub const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];

/// A refusal: the status, the stable code and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn bad(code: &'static str, message: String) -> Self {
        Self {
            status: 400,
            code,
            message,
        }
    }
}

/// The `Allow` header of a 405.
pub fn allow() -> String {
    METHODS.join(", ")
}

/// The client headers the regions are sent: those the API reads. The edge adds its own
/// (request id, client address, subject, deadline, signature); nothing else a client sends
/// (cookies, custom or tracing headers, a flood of them, ones naming the edge's internals)
/// leaves the edge, so none can speak for the edge or push a region (or API Gateway, which
/// takes 10 KB of request headers) past its limits. All of them are signed.
pub const FORWARDED_HEADERS: [&str; 4] = [
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
];

/// Checks the method exactly as the client sent it (for every path, the edge's own included).
pub fn check_method(method: &str) -> Result<(), Refusal> {
    if METHODS.contains(&method) {
        Ok(())
    } else {
        Err(Refusal {
            status: 405,
            code: "method_not_allowed",
            message: format!("method {} is not allowed", printable(method)),
        })
    }
}

/// Headers a region refuses empty: the name, the region's code, the name as clients spell it.
const NOT_EMPTY: [(&str, &str, &str); 3] = [
    (
        "idempotency-key",
        "invalid_idempotency_key",
        "Idempotency-Key",
    ),
    ("if-match", "invalid_if_match", "If-Match"),
    ("if-none-match", "invalid_if_none_match", "If-None-Match"),
];

/// Checks the headers (lowercase names) of a request to be forwarded; `signed`: whether
/// origin requests are signed.
pub fn check_headers<'a>(
    mut headers: impl Iterator<Item = (&'a str, &'a str)>,
    signed: bool,
) -> Result<(), Refusal> {
    headers.try_for_each(|(name, value)| {
        if value.trim().is_empty()
            && let Some((_, code, shown)) = NOT_EMPTY.iter().find(|h| h.0 == name)
        {
            return Err(Refusal::bad(code, format!("{shown} must not be empty")));
        }
        if signed && FORWARDED_HEADERS.contains(&name) && !printable_ascii(value) {
            return Err(Refusal::bad(
                "invalid_header",
                format!("header {name} must be printable ASCII"),
            ));
        }
        Ok(())
    })
}

/// Visible ASCII, spaces and tabs (a tab goes out as a space: [`forwarded_value`]).
fn printable_ascii(value: &str) -> bool {
    value.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
}

/// A forwarded header's value as the regions are sent it: tabs (HTTP's other blank, as in
/// `application/json;\tcharset=utf-8`) become spaces. SigV4 folds runs of spaces; a tab is
/// where two signers are most likely to disagree (a region would refuse the edge's signature,
/// and the edge blame the region).
pub fn forwarded_value(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\t') {
        value.replace('\t', " ").into()
    } else {
        value.into()
    }
}

/// Checks the path: `//` matches no route, and is where signers normalise differently (one
/// folds it, another keeps it), so it is the edge's 404, never a signed request a region could
/// refuse and be blamed for.
pub fn check_path(path: &str) -> Result<(), Refusal> {
    if path.contains("//") {
        Err(Refusal {
            status: 404,
            code: "route_not_found",
            message: format!("no route for {}", printable(path)),
        })
    } else {
        Ok(())
    }
}

/// The query as the regions are sent it: each name and value decoded as a form would be (`+`
/// is a space, bytes that are not UTF-8 become U+FFFD, as the regions' parser makes them) and
/// encoded again with only letters, digits and `-_.~` left bare. The regions read the same
/// pairs, and no `+`, bare reserved character, odd escape or non-UTF-8 byte is left for two
/// SigV4 signers to canonicalise differently.
pub fn canonical_query(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !out.is_empty() {
            out.push('&');
        }
        encode_into(
            &mut out,
            String::from_utf8_lossy(&form_decode(name)).as_bytes(),
        );
        out.push('=');
        encode_into(
            &mut out,
            String::from_utf8_lossy(&form_decode(value)).as_bytes(),
        );
    }
    out
}

fn form_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn encode_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// At most 32 printable characters of a client's token, for a message.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_one(method: &str, headers: &[(&str, &str)], signed: bool) -> Result<(), Refusal> {
        check_method(method)?;
        check_headers(headers.iter().copied(), signed)
    }

    #[test]
    fn methods_the_api_has_no_use_for_are_405() {
        for method in [
            "PATCH", "QUERY", "MOVE", "PROPFIND", "get", "TRACE", "CONNECT", "",
        ] {
            let refusal = check_one(method, &[], true).unwrap_err();
            assert_eq!((refusal.status, refusal.code), (405, "method_not_allowed"));
        }
        for method in METHODS {
            assert_eq!(check_one(method, &[], true), Ok(()));
        }
        assert_eq!(allow(), "GET, HEAD, POST, PUT, DELETE, OPTIONS");
    }

    #[test]
    fn empty_preconditions_and_keys_are_400_as_a_region_says() {
        let code = |h: &[(&str, &str)]| check_one("PUT", h, false).unwrap_err().code;
        assert_eq!(code(&[("if-match", "")]), "invalid_if_match");
        assert_eq!(code(&[("if-match", "  ")]), "invalid_if_match");
        assert_eq!(code(&[("if-none-match", " ")]), "invalid_if_none_match");
        assert_eq!(code(&[("idempotency-key", "")]), "invalid_idempotency_key");
        assert_eq!(check_one("PUT", &[("if-match", "*")], false), Ok(()));
    }

    #[test]
    fn every_forwarded_header_is_signed() {
        use super::super::origin_signing::SIGNED_HEADERS;
        assert!(FORWARDED_HEADERS.iter().all(|h| SIGNED_HEADERS.contains(h)));
    }

    #[test]
    fn queries_are_sent_with_one_spelling() {
        assert_eq!(canonical_query("limit=2&cursor=abc"), "limit=2&cursor=abc");
        assert_eq!(canonical_query("q=a+b%2Bc"), "q=a%20b%2Bc");
        assert_eq!(
            canonical_query("x=%e9&y=%zz&z=%4"),
            "x=%EF%BF%BD&y=%25zz&z=%254"
        );
        assert_eq!(canonical_query("u=%C3%A9"), "u=%C3%A9");
        assert_eq!(canonical_query("a&&b=1&"), "a=&b=1");
        assert_eq!(
            canonical_query("k=(a)*!'/:@,;$"),
            "k=%28a%29%2A%21%27%2F%3A%40%2C%3B%24"
        );
        assert_eq!(canonical_query(""), "");
        // Already in the form: unchanged.
        let once = canonical_query("n=%C3%A9+x&m=1%202");
        assert_eq!(canonical_query(&once), once);
    }

    #[test]
    fn paths_with_empty_segments_are_the_edges_404() {
        assert_eq!(check_path("/items/a%2Fb"), Ok(()));
        for path in ["//items", "/items//x", "//admin/faults"] {
            let refusal = check_path(path).unwrap_err();
            assert_eq!((refusal.status, refusal.code), (404, "route_not_found"));
        }
    }

    #[test]
    fn only_printable_ascii_values_are_signed() {
        let ok = [("idempotency-key", "k 1\t2"), ("accept", "caf\u{e9}")];
        assert_eq!(check_one("POST", &ok, true), Ok(()));
        assert_eq!(forwarded_value("a;\tb\t"), "a; b ");
        for bad in ["caf\u{e9}", "\u{80}", "a\u{7f}", "\u{1f}"] {
            let headers = [("content-type", "application/json"), ("if-match", bad)];
            let refusal = check_one("PUT", &headers, true).unwrap_err();
            assert_eq!(refusal.code, "invalid_header", "{bad:?}");
            assert!(refusal.message.contains("if-match"));
            // Unsigned, the region's own rules answer.
            assert_eq!(check_one("PUT", &headers, false), Ok(()));
        }
    }
}
