"""Bearer tokens for the local stack and the tests: HS256 JWTs signed with the stack's throwaway
secret (`hs256`), and the claims the local edge expects (`LOCAL_ISSUER`, `LOCAL_AUDIENCE`, both
scopes). Never used outside this machine; made fresh for every stack start."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

LOCAL_ISSUER = "tandem-local"
LOCAL_AUDIENCE = "tandem"
READ, WRITE = "items:read", "items:write"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict, secret: str, header: dict | None = None) -> str:
    """A compact JWS over `claims`, HMAC-SHA-256 with `secret` (the edge's JWT_HS256_SECRET)."""
    head = {"alg": "HS256", "typ": "JWT", **(header or {})}
    signing_input = (b64url(json.dumps(head, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def claims(sub: str = "local-user", scopes: tuple[str, ...] = (READ, WRITE),
           lifetime_s: int = 7 * 24 * 3600, **extra) -> dict:
    """Claims the local edge accepts: its issuer and audience, `sub`, the scopes, valid from now
    for `lifetime_s`."""
    now = int(time.time())
    return {"iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": sub, "scope": " ".join(scopes),
            "iat": now, "nbf": now, "exp": now + lifetime_s, **extra}


# --- asymmetric keys, as an identity provider would publish them ---------------------------------

def _jws(header: dict, claims: dict, sign) -> str:
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + b64url(sign(signing_input.encode()))


class RsaKey:
    """An RSA-2048 key pair for RS256 tokens and its public JWK."""

    def __init__(self, kid: str):
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        numbers = self.private.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                "n": b64url(n), "e": b64url(e)}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict, header: dict | None = None) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        head = {"alg": "RS256", "typ": "JWT", "kid": self.kid, **(header or {})}
        return _jws(head, claims,
                    lambda data: self.private.sign(data, padding.PKCS1v15(), hashes.SHA256()))


class EcKey:
    """A P-256 key pair for ES256 tokens and its public JWK."""

    def __init__(self, kid: str):
        from cryptography.hazmat.primitives.asymmetric import ec
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict:
        numbers = self.private.public_key().public_numbers()
        return {"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": b64url(numbers.x.to_bytes(32, "big")),
                "y": b64url(numbers.y.to_bytes(32, "big"))}

    def sign(self, claims: dict) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        def raw(data: bytes) -> bytes:
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return _jws({"alg": "ES256", "typ": "JWT", "kid": self.kid}, claims, raw)


def unsigned(claims: dict) -> str:
    """An `alg: none` token (must always be refused)."""
    return _jws({"alg": "none", "typ": "JWT"}, claims, lambda _: b"")


def hs256_with_key_bytes(claims: dict, key_bytes: bytes, kid: str) -> str:
    """The key-confusion attack: HS256 'signed' with an RSA public key's bytes as the secret."""
    return _jws({"alg": "HS256", "typ": "JWT", "kid": kid}, claims,
                lambda data: hmac.new(key_bytes, data, hashlib.sha256).digest())
