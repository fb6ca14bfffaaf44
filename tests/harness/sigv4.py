"""A SigV4 signer of our own (AWS Signature Version 4, `execute-api`), written from the
specification rather than with the SDK the edge uses, so the system tests check the edge's and
the regions' implementation against an independent one. Lets a tool or test call a region
directly as the edge would, with the `signing-key` the local stack prints."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from urllib.parse import quote, urlsplit, parse_qsl

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_path(path: str) -> str:
    # Non-S3 services: each segment URI-encoded twice (the path as sent is encoded once more).
    return quote(quote(path or "/", safe="/-_.~"), safe="/-_.~")


def sign(method: str, url: str, region: str, access_key_id: str, secret_access_key: str,
         headers: dict[str, str] | None = None, body: bytes = b"",
         when: dt.datetime | None = None) -> dict[str, str]:
    """The headers to send (the given ones, `host`, `x-amz-date` and `authorization`) for a
    request signed for `region` at `when` (default now, UTC). Every given header is signed."""
    when = (when or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    parts = urlsplit(url)
    signed = {k.lower(): " ".join(str(v).strip().split()) for k, v in (headers or {}).items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = amz_date
    names = sorted(signed)
    canonical = "\n".join([
        method.upper(),
        _canonical_path(parts.path),
        _canonical_query(parts.query),
        "".join(f"{n}:{signed[n]}\n" for n in names),
        ";".join(names),
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_access_key).encode(), date)
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = dict(headers or {})
    out["x-amz-date"] = amz_date
    out["authorization"] = (f"{ALGORITHM} Credential={access_key_id}/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return out
