//! Strict base64url (RFC 7515 section 2): the URL-safe alphabet, no padding, no whitespace, and
//! canonical only (the unused low bits of the last character must be zero), so every byte string
//! has exactly one accepted encoding.
//!
//! Never relax this to "be liberal in what you accept": two spellings of one token would hash to
//! two cache entries, and a lenient decoder is where signature-malleability bugs hide.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes one base64url segment, rejecting padding, foreign bytes and non-zero trailing bits.
pub(crate) fn decode(segment: &str) -> Option<Vec<u8>> {
    // `URL_SAFE_NO_PAD` decodes with `DecodePaddingMode::RequireNone` and without
    // `decode_allow_trailing_bits`: exactly the canonical form. The tests below pin that down so
    // a change of the base64 crate's defaults cannot loosen it silently.
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// Encodes bytes as unpadded base64url.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn round_trips() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes)).as_deref(), Some(&bytes[..]));
        }
    }

    #[test]
    fn rejects_padding_whitespace_and_the_standard_alphabet() {
        assert_eq!(decode("VGVzdA").as_deref(), Some(&b"Test"[..]));
        for bad in [
            "VGVzdA==", "VGVzdA=", " VGVzdA", "VGVz dA", "VGVzdA\n", "a+b/", "V", "?",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_non_zero_trailing_bits() {
        // "AA" is the one canonical spelling of a single zero byte; "AB".."AP" set unused bits.
        assert_eq!(decode("AA").as_deref(), Some(&[0u8][..]));
        assert_eq!(decode("AB"), None);
        assert_eq!(decode("AAB"), None);
    }
}
