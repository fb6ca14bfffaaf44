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
