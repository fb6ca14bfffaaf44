//! The signature algorithms this crate verifies, and the one place that runs their cryptography.
//!
//! `Alg` names a JWA algorithm (RFC 7518 section 3.1) exactly as the header spells it; `Verifier`
//! holds a public key (or an HMAC secret) and checks one signature with one algorithm. This module
//! never chooses a key, never reads a token and never reads a clock: `jwk` decides which key may
//! verify which `alg`, `jws` feeds it the bytes. `none` does not exist here, in any spelling.

use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::error::Error;

/// A JWS algorithm this crate verifies. Anything else (`none`, `HS384`, `EdDSA`, ...) is
/// [`Error::UnsupportedAlg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC with SHA-256.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256, salt length 32.
    Ps256,
    /// RSASSA-PSS with SHA-384, MGF1 with SHA-384, salt length 48.
    Ps384,
    /// RSASSA-PSS with SHA-512, MGF1 with SHA-512, salt length 64.
    Ps512,
    /// ECDSA on P-256 with SHA-256; the signature is r || s, 64 bytes.
    Es256,
    /// ECDSA on P-521 with SHA-512; the signature is r || s, 132 bytes.
    Es512,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::Hs256,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es512,
    ];

    /// Parses a header or JWK `alg`. Case-sensitive, as RFC 7515 section 4.1.1 requires: `hs256`
    /// and `None` are unsupported, not aliases.
    pub fn parse(name: &str) -> Result<Alg, Error> {
        Alg::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name)
            .ok_or(Error::UnsupportedAlg)
    }

    /// The registered name, as it appears in a header.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es512 => "ES512",
        }
    }
}

/// The length of an HS256 tag, and the shortest HS256 key RFC 7518 section 3.2 allows.
pub(crate) const HMAC_SHA256_LEN: usize = 32;

/// One key, ready to verify. Built by `jwk`; which algorithms it may run is `jwk`'s decision,
/// [`Verifier::family`] only says which ones are mathematically possible.
pub(crate) enum Verifier {
    Hmac(Vec<u8>),
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl Verifier {
    /// Whether `alg` can run on this kind of key at all (HS* only on secrets, RS*/PS* only on RSA,
    /// ES256 only on P-256, ES512 only on P-521).
    pub(crate) fn family(&self, alg: Alg) -> bool {
        match self {
            Verifier::Hmac(_) => alg == Alg::Hs256,
            Verifier::Rsa(_) => matches!(
                alg,
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ),
            Verifier::P256(_) => alg == Alg::Es256,
            Verifier::P521(_) => alg == Alg::Es512,
        }
    }

    /// Checks `signature` over `signing_input` (the ASCII `header.payload` of the token).
    /// Any mismatch, including a wrong-length or non-canonical signature, is
    /// [`Error::BadSignature`]; an `alg` outside [`Verifier::family`] is [`Error::KeyMismatch`].
    pub(crate) fn verify(
        &self,
        alg: Alg,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        if !self.family(alg) {
            return Err(Error::KeyMismatch);
        }
        let ok = match self {
            Verifier::Hmac(secret) => verify_hmac(secret, signing_input, signature),
            Verifier::Rsa(key) => verify_rsa(key, alg, signing_input, signature),
            Verifier::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok()),
            Verifier::P521(key) => p521::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok()),
        };
        if ok { Ok(()) } else { Err(Error::BadSignature) }
    }
}

/// HMAC-SHA256, compared in constant time.
fn verify_hmac(secret: &[u8], signing_input: &[u8], tag: &[u8]) -> bool {
    if tag.len() != HMAC_SHA256_LEN {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(signing_input);
    mac.verify_slice(tag).is_ok()
}

/// Computes HMAC-SHA256 (used by the signer; verification goes through `verify_hmac`).
pub(crate) fn hmac_sha256(secret: &[u8], signing_input: &[u8]) -> Option<[u8; HMAC_SHA256_LEN]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(signing_input);
    Some(mac.finalize().into_bytes().into())
}

/// RSASSA-PKCS1-v1_5 or RSASSA-PSS. The signature must be exactly the modulus length and, read as
/// an integer, smaller than the modulus: `rsa` 0.9 checks the latter for PKCS#1 v1.5 but not for
/// PSS, where `s` and `s + n` would otherwise both verify.
fn verify_rsa(key: &RsaPublicKey, alg: Alg, signing_input: &[u8], signature: &[u8]) -> bool {
    if signature.len() != key.size() || BigUint::from_bytes_be(signature) >= *key.n() {
        return false;
    }
    let result = match alg {
        Alg::Rs256 => key.verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(signing_input),
            signature,
        ),
        Alg::Rs384 => key.verify(
            Pkcs1v15Sign::new::<Sha384>(),
            &Sha384::digest(signing_input),
            signature,
        ),
        Alg::Rs512 => key.verify(
            Pkcs1v15Sign::new::<Sha512>(),
            &Sha512::digest(signing_input),
            signature,
        ),
        // `Pss::new` fixes the salt length to the digest length, as RFC 7518 section 3.5 requires.
        Alg::Ps256 => key.verify(
            Pss::new::<Sha256>(),
            &Sha256::digest(signing_input),
            signature,
        ),
        Alg::Ps384 => key.verify(
            Pss::new::<Sha384>(),
            &Sha384::digest(signing_input),
            signature,
        ),
        Alg::Ps512 => key.verify(
            Pss::new::<Sha512>(),
            &Sha512::digest(signing_input),
            signature,
        ),
        Alg::Hs256 | Alg::Es256 | Alg::Es512 => return false,
    };
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::{Alg, Verifier};
    use crate::error::Error;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in Alg::ALL {
            assert_eq!(Alg::parse(alg.as_str()), Ok(alg));
            assert_eq!(
                Alg::parse(&alg.as_str().to_lowercase()),
                Err(Error::UnsupportedAlg)
            );
        }
        for name in [
            "none", "None", "NONE", "nOnE", "", "HS384", "EdDSA", "ES384", "ES521",
        ] {
            assert_eq!(Alg::parse(name), Err(Error::UnsupportedAlg), "{name}");
        }
    }

    #[test]
    fn hmac_never_runs_an_asymmetric_alg() {
        let key = Verifier::Hmac(vec![7; 32]);
        for alg in Alg::ALL.into_iter().filter(|a| *a != Alg::Hs256) {
            assert_eq!(key.verify(alg, b"x.y", &[0; 64]), Err(Error::KeyMismatch));
        }
        let tag = super::hmac_sha256(&[7; 32], b"x.y").unwrap();
        assert_eq!(key.verify(Alg::Hs256, b"x.y", &tag), Ok(()));
        assert_eq!(
            key.verify(Alg::Hs256, b"x.y", &tag[..31]),
            Err(Error::BadSignature)
        );
    }
}
