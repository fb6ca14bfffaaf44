//! Mints HS256 tokens, for local throwaway tokens and tests. Only HS256: this crate holds no
//! private keys, and production tokens come from the identity provider.
//!
//! It never adds, checks or rewrites claims (no clock here either): the caller writes `exp`.

use serde_json::json;

use crate::alg::{HMAC_SHA256_LEN, hmac_sha256};
use crate::b64;
use crate::error::Error;
use crate::json::parse_object;

/// Signs `claims_json` (one JSON object, used byte for byte as the payload) with HS256 under a
/// header `{"alg":"HS256","kid":..,"typ":"JWT"}` (`kid` only if given). Refuses a secret shorter
/// than 32 bytes ([`Error::WeakKey`]) and a payload that is not a JSON object with unique member
/// names ([`Error::Malformed`]), since [`crate::verify_jwt`] would refuse those.
pub fn sign_hs256(claims_json: &str, secret: &[u8], kid: Option<&str>) -> Result<String, Error> {
    if secret.len() < HMAC_SHA256_LEN {
        return Err(Error::WeakKey);
    }
    parse_object(claims_json.as_bytes())
        .map_err(|_| Error::Malformed("claims are not a unique-member JSON object"))?;
    let header = match kid {
        Some(kid) => json!({"alg": "HS256", "kid": kid, "typ": "JWT"}),
        None => json!({"alg": "HS256", "typ": "JWT"}),
    };
    let mut token = b64::encode(header.to_string().as_bytes());
    token.push('.');
    token.push_str(&b64::encode(claims_json.as_bytes()));
    let tag = hmac_sha256(secret, token.as_bytes()).ok_or(Error::WeakKey)?;
    token.push('.');
    token.push_str(&b64::encode(&tag));
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::sign_hs256;
    use crate::error::Error;
    use crate::jwk::KeySet;
    use crate::jws::verify_jws;

    #[test]
    fn signs_what_verify_accepts() {
        let secret = [9u8; 32];
        let token = sign_hs256(r#"{"sub":"me"}"#, &secret, Some("local")).unwrap();
        let keys = KeySet::hmac(&secret, Some("local")).unwrap();
        let jws = verify_jws(&token, &keys).unwrap();
        assert_eq!(jws.payload, br#"{"sub":"me"}"#);
        assert_eq!(jws.header.kid.as_deref(), Some("local"));
        assert_eq!(jws.header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn refuses_weak_secrets_and_non_objects() {
        assert_eq!(sign_hs256("{}", &[1; 31], None), Err(Error::WeakKey));
        assert!(matches!(
            sign_hs256("[1]", &[1; 32], None),
            Err(Error::Malformed(_))
        ));
    }
}
