#!/usr/bin/env python3
"""Deploy tandem to AWS and Cloudflare with one command, or tear it down.

    infra/deploy.py [--config FILE] [--dry-run] [deploy]
    infra/deploy.py [--config FILE] [--dry-run] teardown

Deploy order (teardown runs it backwards):
  1. table stack      the DynamoDB global table, in the first region
  2. build            `cargo lambda build --release --arm64 -p regional`, once
  3. edge identity    the edge's IAM user and group (SigV4 signing identity), in the first region
  4. for each region  role stack (with the vpc option, the function's own network too) ->
                      `cargo lambda deploy` -> reserved concurrency for the N-1 share (after
                      checking the account's limits) -> region stack (API, domains, throttling,
                      capacity alarms, the edge group's execute-api:Invoke on this API)
  5. DNS stack        health checks, latency records and alarms, in us-east-1
  6. edge             `wrangler deploy` with REGIONS, FALLBACK_ORIGIN, ORIGIN_AUTH and AUTH; then
                      the Worker's secrets on stdin: AFFINITY_SECRET, a new access key of the edge
                      user (SIGV4_ACCESS_KEY_ID, SIGV4_SECRET_ACCESS_KEY; the older key is deleted
                      once the Worker has the new one), OPERATOR_TOKEN, JWT_HS256_SECRET (HS256 only)

--dry-run prints every command and every template parameter, then stops: it calls nothing (no
AWS, no cargo, no wrangler) and stands in for stack outputs with <stack:Output> placeholders.
A missing or inconsistent config is refused with one line on stderr and exit status 2; a failed
step stops the run with exit status 1. No secret is ever put in a command's arguments, written to
a file or printed: secrets go to wrangler on stdin.

Python 3.8+ standard library only. See infra/README.md for the config file and prerequisites.
"""

import argparse
import ipaddress
import json
import math
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
TEMPLATES = INFRA / "templates"

# Route 53 publishes health check metrics only in us-east-1, so the DNS stack (and its alarms)
# lives there whatever the regions are.
DNS_REGION = "us-east-1"
MIN_REGIONS, MAX_REGIONS = 2, 5

# Multi-Region strong consistency (MRSC, `"consistency": "strong"`) takes exactly three regions,
# three replicas or two replicas and a witness, all in one of these region sets (the list in
# the CloudFormation reference for AWS::DynamoDB::GlobalTable GlobalTableWitness; extend it
# when AWS adds regions).
MRSC_REGION_SETS = {
    "US": ("us-east-1", "us-east-2", "us-west-2"),
    "EU": ("eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"),
    "AP": ("ap-northeast-1", "ap-northeast-2", "ap-northeast-3"),
}
MRSC_REGIONS = 3

# Approximate location (lat, lon) of each AWS region's metro area, for the edge's distance
# ranking. A region not listed here needs "lat" and "lon" in the config.
REGION_COORDINATES = {
    "us-east-1": (38.9, -77.4),        # N. Virginia
    "us-east-2": (40.0, -83.0),        # Ohio
    "us-west-1": (37.4, -121.9),       # N. California
    "us-west-2": (45.8, -119.7),       # Oregon
    "ca-central-1": (45.5, -73.6),     # Montreal
    "ca-west-1": (51.0, -114.1),       # Calgary
    "mx-central-1": (20.6, -100.4),    # Queretaro
    "sa-east-1": (-23.5, -46.6),       # Sao Paulo
    "eu-west-1": (53.3, -6.3),         # Dublin
    "eu-west-2": (51.5, -0.1),         # London
    "eu-west-3": (48.9, 2.4),          # Paris
    "eu-central-1": (50.1, 8.7),       # Frankfurt
    "eu-central-2": (47.4, 8.5),       # Zurich
    "eu-north-1": (59.3, 18.1),        # Stockholm
    "eu-south-1": (45.5, 9.2),         # Milan
    "eu-south-2": (41.6, -0.9),        # Aragon
    "il-central-1": (32.1, 34.8),      # Tel Aviv
    "me-south-1": (26.1, 50.6),        # Bahrain
    "me-central-1": (25.2, 55.3),      # UAE
    "af-south-1": (-33.9, 18.4),       # Cape Town
    "ap-south-1": (19.1, 72.9),        # Mumbai
    "ap-south-2": (17.4, 78.5),        # Hyderabad
    "ap-east-1": (22.3, 114.2),        # Hong Kong
    "ap-southeast-1": (1.35, 103.8),   # Singapore
    "ap-southeast-2": (-33.9, 151.2),  # Sydney
    "ap-southeast-3": (-6.2, 106.8),   # Jakarta
    "ap-southeast-4": (-37.8, 145.0),  # Melbourne
    "ap-southeast-5": (3.1, 101.7),    # Kuala Lumpur
    "ap-southeast-7": (13.8, 100.5),   # Bangkok
    "ap-northeast-1": (35.7, 139.7),   # Tokyo
    "ap-northeast-2": (37.6, 127.0),   # Seoul
    "ap-northeast-3": (34.7, 135.5),   # Osaka
}

REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
DOMAIN_RE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ZONE_RE = re.compile(r"^Z[A-Z0-9]{5,31}$")
CERT_RE = re.compile(r"^arn:aws[a-z-]*:acm:([a-z0-9-]+):\d{12}:certificate/[0-9a-f-]+$")
TOPIC_RE = re.compile(r"^arn:aws[a-z-]*:sns:us-east-1:\d{12}:[\w-]{1,256}$")
ANY_TOPIC_RE = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[\w-]{1,256}$")
TABLE_RE = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")
FUNCTION_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
PREFIX_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,30}$")
URL_RE = re.compile(r"^https://[a-z0-9.-]+(:\d{1,5})?(/[^\s]*)?$")
# A JWT claim value (iss, aud): printable, no spaces; a scope token as RFC 6749 defines it.
CLAIM_RE = re.compile(r"^[\x21-\x7e]{1,512}$")
SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")
ORIGIN_AUTH = ("sigv4", "none")
# Secrets deploy.py takes from the operator's environment (never from the config file).
OPERATOR_TOKEN_ENV = "TANDEM_OPERATOR_TOKEN"
HS256_SECRET_ENV = "TANDEM_JWT_HS256_SECRET"
MIN_SECRET_CHARS = 32
# IAM: a new access key can take a few seconds to be accepted everywhere; the old one is deleted
# only after the Worker has had time to pick up the new one.
KEY_PROPAGATION_S = 15
KEY_GRACE_S = 30
LOG_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653}

# Capacity for N-1 regions (docs/infra.md, "Capacity for N-1 regions"). From one figure, the
# expected peak requests/s of each region, every region is sized to carry its share of all the
# traffic when one region is down: ceil(N x peak / (N - 1)).
#
# DynamoDB units one request may use, at most (items up to 1 KB written, 4 KB read):
#   reads, local to the region serving the request: a strongly consistent GetItem is 1 read
#   unit; PUT reads then writes; a replayed keyed create reads the key record and then the item:
#   at most 2;
#   writes: a create with Idempotency-Key writes the key claim, the item and the result: 3 (a
#   failed conditional write costs its unit too). Every replica applies every write, wherever it
#   was made (replicated writes), so a replica's writes are all regions' writes.
# A page of GET /items is a Scan: about 0.5 read units per 4 KB scanned, 2.5 for the default
# 20 items of 1 KB; list-heavy traffic needs a higher peak figure.
DEFAULT_PEAK_RPS = 50
READ_UNITS_PER_REQUEST = 2
WRITE_UNITS_PER_REQUEST = 3
# A new on-demand table can take this much at once; warm throughput below it would pre-warm
# nothing (and asks DynamoDB for less than the table already has).
ON_DEMAND_WARM_READ, ON_DEMAND_WARM_WRITE = 12000, 4000
# Lambda: concurrency = requests/s x seconds per request (Little's law). 100 ms is ten times the
# regional function's warm cost with a DynamoDB round trip, room for cold starts and slow calls.
DEFAULT_REQUEST_MS = 100
MIN_RESERVED_CONCURRENCY = 10
CONCURRENCY_ALARM_PERCENT = 80
# Lambda refuses a reservation that would leave fewer than 100 unreserved executions.
LAMBDA_MIN_UNRESERVED = 100
# The function's own network (optional, "vpc" in the config).
DEFAULT_VPC_CIDR = "10.64.0.0/16"


class ConfigError(Exception):
    """A config problem, worded as the one line the user sees."""


class StepFailed(Exception):
    """A command returned non-zero."""


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

def _section(raw, key, allowed):
    """Returns the sub-object `key` (or {}), refusing unknown keys so a typo is not ignored."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f'"{key}" must be an object')
    _no_unknown_keys(value, allowed, f'"{key}"')
    return value


def _no_unknown_keys(obj, allowed, where):
    unknown = sorted(k for k in obj if k not in allowed and not k.startswith("_"))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")


def _string(obj, key, where, pattern=None, default=None, required=False):
    value = obj.get(key, default)
    if value is None or value == "":
        if required:
            raise ConfigError(f"missing {where}{key}")
        return "" if default is None else default
    if not isinstance(value, str):
        raise ConfigError(f"{where}{key} must be a string")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(f"{where}{key} is not valid: {value!r}")
    return value


def _int(obj, key, where, default, low, high, allowed=None):
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}{key} must be an integer")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{where}{key} must be one of {sorted(allowed)}, got {value}")
    if not low <= value <= high:
        raise ConfigError(f"{where}{key} must be between {low} and {high}, got {value}")
    return value


def _bool(obj, key, where, default):
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}{key} must be true or false")
    return value


def _number(obj, key, where, low, high):
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}{key} must be a number")
    if not low <= value <= high:
        raise ConfigError(f"{where}{key} must be between {low} and {high}, got {value}")
    return value


def _check_strong(cfg):
    """MRSC's shape: three regions in one region set, the witness (if any) not a replica."""
    names = [r["name"] for r in cfg["regions"]]
    witness = cfg["witness"]
    if witness in names:
        raise ConfigError(f"witness_region {witness} is also in regions: a witness region holds no "
                          "replica, it is the third region of a two-replica table")
    total = len(names) + (1 if witness else 0)
    if total != MRSC_REGIONS:
        got = f"{len(names)} regions" + (f" plus witness_region {witness}" if witness else "")
        raise ConfigError(f'consistency "strong" needs exactly {MRSC_REGIONS} regions: 3 in regions, '
                          f"or 2 plus witness_region (got {got})")
    everything = names + ([witness] if witness else [])
    if not any(all(r in members for r in everything) for members in MRSC_REGION_SETS.values()):
        sets = "; ".join(f"{k}: {', '.join(v)}" for k, v in MRSC_REGION_SETS.items())
        raise ConfigError(f'consistency "strong": {", ".join(everything)} are not all in one MRSC '
                          f"region set ({sets})")


def _origin_auth(api):
    """api.origin_auth: "sigv4" (the default) or the explicit opt-out "none". The older switch
    api.require_iam_auth is still read: true means sigv4; false is refused, since it used to
    mean "open" and openness must now be asked for by name."""
    legacy = api.get("require_iam_auth")
    if legacy is not None and not isinstance(legacy, bool):
        raise ConfigError("api.require_iam_auth must be true or false")
    if legacy is False:
        raise ConfigError('api.require_iam_auth false is no longer read: origins are closed by default; '
                          'to open every route anyway say api.origin_auth "none", else remove the key')
    value = _string(api, "origin_auth", "api.", default="sigv4")
    if value not in ORIGIN_AUTH:
        raise ConfigError(f'api.origin_auth must be "sigv4" or "none", got {value!r}')
    return value


def _auth(raw):
    """The edge's client authentication (its AUTH var): tokens from `issuer` for `audience`,
    verified with the keys at `jwks_url`, or with a shared HS256 secret when `hs256` is true
    (for tests; the secret then comes from the environment, never from this file)."""
    if "auth" not in raw:
        raise ConfigError('missing "auth" (issuer, audience, jwks_url, read_scope, write_scope; '
                          "see infra/README.md)")
    auth = _section(raw, "auth", {"issuer", "audience", "jwks_url", "read_scope", "write_scope",
                                  "hs256"})
    out = {
        "issuer": _string(auth, "issuer", "auth.", CLAIM_RE, required=True),
        "audience": _string(auth, "audience", "auth.", CLAIM_RE, required=True),
        "jwks_url": _string(auth, "jwks_url", "auth.", URL_RE),
        "read_scope": _string(auth, "read_scope", "auth.", SCOPE_RE, required=True),
        "write_scope": _string(auth, "write_scope", "auth.", SCOPE_RE, required=True),
        "hs256": _bool(auth, "hs256", "auth.", False),
    }
    if out["hs256"] and out["jwks_url"]:
        raise ConfigError("auth: give jwks_url or hs256 true, not both")
    if not out["hs256"] and not out["jwks_url"]:
        raise ConfigError("missing auth.jwks_url (https URL of the issuer's JSON Web Key Set; "
                          "hs256 true is for tests)")
    if out["read_scope"] == out["write_scope"]:
        raise ConfigError("auth.read_scope and auth.write_scope must differ (else every reader "
                          "may write)")
    return out


def capacity_plan(regions, peak, request_ms):
    """What each region is sized for, from the expected peak requests/s per region: with one of
    the N regions down, the other N-1 carry all N x peak (docs/infra.md has the arithmetic)."""
    total = regions * peak
    survivor = math.ceil(total / (regions - 1))
    read_need = survivor * READ_UNITS_PER_REQUEST
    write_need = total * WRITE_UNITS_PER_REQUEST
    reserved = max(MIN_RESERVED_CONCURRENCY, math.ceil(survivor * request_ms / 1000))
    return {
        "regions": regions,
        "peak": peak,
        "request_ms": request_ms,
        "total": total,
        "survivor": survivor,
        "read_need": read_need,
        "write_need": write_need,
        "warm_read": max(read_need, ON_DEMAND_WARM_READ),
        "warm_write": max(write_need, ON_DEMAND_WARM_WRITE),
        "reserved": reserved,
        "concurrency_alarm": math.ceil(reserved * CONCURRENCY_ALARM_PERCENT / 100),
    }


def _throttling(api, plan):
    """The stage's throttling: the N-1 share and twice that as burst, unless the config raises
    them; a limit below the share is refused (it would throttle a survivor at failover)."""
    rate = _int(api, "throttling_rate_limit", "api.", plan["survivor"], 1, 100000)
    if rate < plan["survivor"]:
        raise ConfigError(f"api.throttling_rate_limit {rate} is below the N-1 share, {plan['survivor']} "
                          f"requests/s ({plan['regions']} regions x capacity.peak_rps_per_region "
                          f"{plan['peak']} / {plan['regions'] - 1}): raise it, or remove it to use the share")
    burst = _int(api, "throttling_burst_limit", "api.", 2 * rate, 1, 200000)
    if burst < rate:
        raise ConfigError(f"api.throttling_burst_limit {burst} is below api.throttling_rate_limit {rate}")
    return {"rate": rate, "burst": burst}


def _vpc(raw):
    """The optional VPC for the function (off by default): {"enabled", "cidr", "azs", "subnets"}.
    The VPC is the function's own, made by the role stack in every region (the same range in each
    is fine: they are never connected)."""
    vpc = _section(raw, "vpc", {"enabled", "cidr", "availability_zones"})
    enabled = _bool(vpc, "enabled", "vpc.", False)
    cidr = _string(vpc, "cidr", "vpc.", default=DEFAULT_VPC_CIDR)
    try:
        net = ipaddress.IPv4Network(cidr)
    except ValueError:
        raise ConfigError(f"vpc.cidr is not an IPv4 network: {cidr!r}") from None
    if not 16 <= net.prefixlen <= 24:
        raise ConfigError(f"vpc.cidr must be a /16 to /24 network (a VPC is /16 to /28 and each "
                          f"subnet a quarter of it), got /{net.prefixlen}")
    if not net.is_private:
        raise ConfigError(f"vpc.cidr must be a private range (RFC 1918), got {cidr}")
    azs = _int(vpc, "availability_zones", "vpc.", 2, 2, 3)
    # One subnet per availability zone, each a quarter of the VPC (a fourth stays free).
    subnets = [str(n) for n in list(net.subnets(prefixlen_diff=2))[:azs]]
    return {"enabled": enabled, "cidr": str(net), "azs": azs, "subnets": subnets}


def load_config(path):
    """Reads and checks the config file; returns a plain dict every later step can trust."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config {path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a JSON object")

    _no_unknown_keys(raw, {
        "stack_prefix", "aws_profile", "domain", "hosted_zone_id", "certificate_validation_zone_id",
        "table_name", "consistency", "witness_region", "function", "regions", "route53", "api",
        "auth", "cloudflare", "capacity", "vpc"}, "the config")

    cfg = {
        "prefix": _string(raw, "stack_prefix", "", PREFIX_RE, default="tandem"),
        "profile": _string(raw, "aws_profile", ""),
        "domain": _string(raw, "domain", "", DOMAIN_RE, required=True),
        "zone": _string(raw, "hosted_zone_id", "", ZONE_RE, required=True),
        "validation_zone": _string(raw, "certificate_validation_zone_id", "", ZONE_RE),
        "table": _string(raw, "table_name", "", TABLE_RE, default="tandem-items"),
        "consistency": _string(raw, "consistency", "", default="eventual"),
        "witness": _string(raw, "witness_region", "", REGION_RE),
    }
    if cfg["consistency"] not in ("eventual", "strong"):
        raise ConfigError(f'consistency must be "eventual" or "strong", got {cfg["consistency"]!r}')
    if cfg["witness"] and cfg["consistency"] != "strong":
        raise ConfigError('witness_region is only for consistency "strong" (an MRSC table with two '
                          "replicas and a witness)")

    function = _section(raw, "function", {"name", "package", "binary", "memory_mb", "timeout_s",
                                          "log_retention_days"})
    cfg["function"] = {
        "name": _string(function, "name", "function.", FUNCTION_RE, default="tandem-regional"),
        "package": _string(function, "package", "function.", FUNCTION_RE, default="regional"),
        "binary": _string(function, "binary", "function.", FUNCTION_RE, default="regional"),
        "memory_mb": _int(function, "memory_mb", "function.", 256, 128, 10240),
        "timeout_s": _int(function, "timeout_s", "function.", 10, 1, 900),
        "log_retention_days": _int(function, "log_retention_days", "function.", 30, 1, 3653,
                                   LOG_RETENTION_DAYS),
    }

    regions = raw.get("regions")
    if not isinstance(regions, list) or not regions:
        raise ConfigError('missing "regions" (a list of 2 to 5 objects with "name")')
    if not MIN_REGIONS <= len(regions) <= MAX_REGIONS:
        raise ConfigError(f"need {MIN_REGIONS} to {MAX_REGIONS} regions, got {len(regions)}")
    cfg["regions"] = []
    seen = set()
    for index, region in enumerate(regions):
        where = f"regions[{index}]."
        if not isinstance(region, dict):
            raise ConfigError(f"regions[{index}] must be an object")
        _no_unknown_keys(region, {"name", "certificate_arn", "origin_domain", "lat", "lon", "weight",
                                  "alarm_topic_arn"}, f"regions[{index}]")
        name = _string(region, "name", where, REGION_RE, required=True)
        if name in seen:
            raise ConfigError(f"duplicate region {name}")
        seen.add(name)
        cert = _string(region, "certificate_arn", where, CERT_RE)
        if cert and CERT_RE.match(cert).group(1) != name:
            raise ConfigError(f"region {name}: certificate_arn is in {CERT_RE.match(cert).group(1)}; "
                              "API Gateway needs a certificate in the same region")
        if not cert and not cfg["validation_zone"]:
            raise ConfigError(f"region {name} has no certificate_arn and no "
                              "certificate_validation_zone_id is set to create one")
        if ("lat" in region) != ("lon" in region):
            raise ConfigError(f"region {name}: give both lat and lon, or neither")
        if "lat" in region:
            lat = _number(region, "lat", where, -90, 90)
            lon = _number(region, "lon", where, -180, 180)
        elif name in REGION_COORDINATES:
            lat, lon = REGION_COORDINATES[name]
        else:
            raise ConfigError(f"region {name}: coordinates unknown, add \"lat\" and \"lon\"")
        weight = region.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"region {name}: weight must be a positive number")
        # The region's own name, which the edge calls and Route 53 probes; "" keeps the
        # execute-api endpoint as its address instead.
        origin = region.get("origin_domain", f"{name}.{cfg['domain']}")
        if not isinstance(origin, str) or (origin and not DOMAIN_RE.match(origin)):
            raise ConfigError(f"region {name}: origin_domain is not valid: {origin!r}")
        if origin == cfg["domain"]:
            raise ConfigError(f"region {name}: origin_domain must be this region's own name, not the "
                              f"shared domain {origin}")
        if origin and origin in {r["origin_domain"] for r in cfg["regions"]}:
            raise ConfigError(f"region {name}: origin_domain {origin} is already another region's")
        # CloudWatch alarms may only notify a topic in their own region.
        topic = _string(region, "alarm_topic_arn", where, ANY_TOPIC_RE)
        if topic and ANY_TOPIC_RE.match(topic).group(1) != name:
            raise ConfigError(f"region {name}: alarm_topic_arn is in {ANY_TOPIC_RE.match(topic).group(1)}; "
                              "a CloudWatch alarm can only notify a topic in its own region")
        cfg["regions"].append({"name": name, "cert": cert, "origin_domain": origin, "lat": lat,
                               "lon": lon, "weight": weight, "alarm_topic": topic})
    if cfg["consistency"] == "strong":
        _check_strong(cfg)

    route53 = _section(raw, "route53", {"interval", "failure_threshold", "ttl", "record_mode",
                                        "alarm_topic_arn"})
    cfg["route53"] = {
        "interval": _int(route53, "interval", "route53.", 10, 10, 30, {10, 30}),
        "threshold": _int(route53, "failure_threshold", "route53.", 1, 1, 10),
        "ttl": _int(route53, "ttl", "route53.", 60, 0, 86400),
        "mode": _string(route53, "record_mode", "route53.", re.compile(r"^(alias|cname)$"),
                        default="alias"),
        "alarm_topic": _string(route53, "alarm_topic_arn", "route53.", TOPIC_RE),
    }

    capacity = _section(raw, "capacity", {"peak_rps_per_region", "request_ms"})
    cfg["capacity"] = capacity_plan(
        len(cfg["regions"]),
        _int(capacity, "peak_rps_per_region", "capacity.", DEFAULT_PEAK_RPS, 1, 100000),
        _int(capacity, "request_ms", "capacity.", DEFAULT_REQUEST_MS, 1, 900000))

    api = _section(raw, "api", {"origin_auth", "require_iam_auth", "throttling_rate_limit",
                                "throttling_burst_limit", "access_log_retention_days"})
    cfg["api"] = {
        "origin_auth": _origin_auth(api),
        "log_days": _int(api, "access_log_retention_days", "api.", 30, 1, 3653, LOG_RETENTION_DAYS),
    }
    cfg["api"].update(_throttling(api, cfg["capacity"]))

    cfg["auth"] = _auth(raw)
    cfg["vpc"] = _vpc(raw)

    cloudflare = _section(raw, "cloudflare", {"account_id", "worker_dir", "wrangler",
                                              "worker_name", "route", "env"})
    cfg["cloudflare"] = {
        "account_id": _string(cloudflare, "account_id", "cloudflare.", re.compile(r"^[0-9a-f]{32}$")),
        "worker_dir": _string(cloudflare, "worker_dir", "cloudflare.", default="."),
        "wrangler": _string(cloudflare, "wrangler", "cloudflare.", default="node_modules/.bin/wrangler"),
        "worker_name": _string(cloudflare, "worker_name", "cloudflare.", re.compile(r"^[a-z0-9-]{1,63}$")),
        "route": _string(cloudflare, "route", "cloudflare."),
        "env": _string(cloudflare, "env", "cloudflare.", re.compile(r"^[a-zA-Z0-9_-]+$")),
    }
    return cfg


# ---------------------------------------------------------------------------------------------
# Running (or, in a dry run, only printing) commands
# ---------------------------------------------------------------------------------------------

class Outputs(dict):
    """Stack outputs; in a dry run every lookup answers with a <stack:Output> placeholder."""

    def __init__(self, stack, values=None, dry=False):
        super().__init__(values or {})
        self.stack, self.dry = stack, dry

    def __missing__(self, key):
        if self.dry:
            return f"<{self.stack}:{key}>"
        raise StepFailed(f"stack {self.stack} has no output {key}")


class Runner:
    def __init__(self, cfg, dry):
        self.cfg, self.dry = cfg, dry
        self.step = 0

    def header(self, text):
        self.step += 1
        print(f"\n== step {self.step}: {text}", flush=True)

    def run(self, argv, cwd=ROOT, env=None, may_fail=False, capture=False, secret_input=None):
        """Runs (or in a dry run prints) a command. `secret_input` goes to its stdin and is
        never printed."""
        shown = shlex.join(argv)
        if env:
            shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shown
        if cwd != ROOT:
            shown = f"(cd {shlex.quote(os.path.relpath(cwd, ROOT))} && {shown})"
        if secret_input is not None:
            shown += "  # value on stdin, not shown"
        print(f"+ {shown}", flush=True)
        if self.dry:
            return ""
        result = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                                stdout=subprocess.PIPE if capture else None, input=secret_input)
        if result.returncode != 0:
            if may_fail:
                print(f"  (exit {result.returncode}; carrying on)", flush=True)
                return ""
            short = shown if len(shown) <= 160 else shown[:157] + "..."
            raise StepFailed(f"exit {result.returncode} from: {short}")
        return result.stdout if capture else ""

    def aws(self, region, *args):
        argv = ["aws", "--region", region]
        if self.cfg["profile"]:
            argv += ["--profile", self.cfg["profile"]]
        return argv + list(args)

    def deploy_stack(self, stack, region, template, params, iam=False, outputs=True):
        self.header(f"stack {stack} in {region} from infra/templates/{template}")
        print("  parameters:" if params else "  parameters: none")
        for key, value in params.items():
            print(f"    {key}={value}")
        argv = self.aws(region, "cloudformation", "deploy", "--stack-name", stack,
                        "--template-file", f"infra/templates/{template}",
                        "--no-fail-on-empty-changeset", "--tags", "project=tandem")
        if iam:
            argv += ["--capabilities", "CAPABILITY_IAM"]
        if params:
            argv += ["--parameter-overrides"] + [f"{k}={v}" for k, v in params.items()]
        self.run(argv)
        return self.outputs(stack, region) if outputs else None

    def outputs(self, stack, region):
        argv = self.aws(region, "cloudformation", "describe-stacks", "--stack-name", stack,
                        "--query", "Stacks[0].Outputs", "--output", "json")
        text = self.run(argv, capture=True)
        if self.dry:
            return Outputs(stack, dry=True)
        values = {o["OutputKey"]: o["OutputValue"] for o in json.loads(text or "[]") or []}
        return Outputs(stack, values)

    def delete_stack(self, stack, region):
        self.header(f"delete stack {stack} in {region}")
        self.run(self.aws(region, "cloudformation", "delete-stack", "--stack-name", stack))
        self.run(self.aws(region, "cloudformation", "wait", "stack-delete-complete",
                          "--stack-name", stack))


# ---------------------------------------------------------------------------------------------
# The two plans
# ---------------------------------------------------------------------------------------------

def stack_names(cfg):
    p = cfg["prefix"]
    return {
        "table": f"{p}-table",
        "role": {r["name"]: f"{p}-role-{r['name']}" for r in cfg["regions"]},
        "region": {r["name"]: f"{p}-region-{r['name']}" for r in cfg["regions"]},
        "dns": f"{p}-dns",
        "identity": f"{p}-edge-identity",
    }


def edge_vars(cfg, origins):
    """The Worker's vars, in order: REGIONS (JSON), FALLBACK_ORIGIN, ORIGIN_AUTH, AUTH (JSON).

    With SigV4 there is no fallback origin: the shared name answers from whichever region Route 53
    picks, and a signature names its region, so a signed request to it would be refused whenever
    the guess is wrong (and an unsigned one always)."""
    regions = [{"name": r["name"], "origin": origins[r["name"]], "lat": r["lat"], "lon": r["lon"],
                "weight": r["weight"]} for r in cfg["regions"]]
    sigv4 = cfg["api"]["origin_auth"] == "sigv4"
    auth = cfg["auth"]
    auth_var = {"issuer": auth["issuer"], "audience": auth["audience"],
                "jwks_url": auth["jwks_url"] or None, "read_scope": auth["read_scope"],
                "write_scope": auth["write_scope"]}
    compact = {"separators": (",", ":")}
    return {
        "REGIONS": json.dumps(regions, **compact),
        "FALLBACK_ORIGIN": "" if sigv4 else f"https://{cfg['domain']}",
        "ORIGIN_AUTH": cfg["api"]["origin_auth"],
        "AUTH": json.dumps(auth_var, **compact),
    }


def operator_secrets(cfg):
    """The secrets deploy.py takes from the operator's environment, checked before a real run
    starts: {"OPERATOR_TOKEN": value or None, "JWT_HS256_SECRET": value or None (HS256 only)}."""
    got = {}
    token = os.environ.get(OPERATOR_TOKEN_ENV, "")
    if token and len(token) < MIN_SECRET_CHARS:
        raise ConfigError(f"{OPERATOR_TOKEN_ENV} must be at least {MIN_SECRET_CHARS} characters "
                          "(or unset, to keep the Worker's OPERATOR_TOKEN as it is)")
    got["OPERATOR_TOKEN"] = token or None
    got["JWT_HS256_SECRET"] = None
    if cfg["auth"]["hs256"]:
        secret = os.environ.get(HS256_SECRET_ENV, "")
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(f"auth.hs256 is true: set {HS256_SECRET_ENV} to the HS256 secret "
                              f"(at least {MIN_SECRET_CHARS} characters) in the environment")
        got["JWT_HS256_SECRET"] = secret
    return got


def wrangler_base(cfg):
    cf = cfg["cloudflare"]
    cwd = ROOT / cf["worker_dir"]
    wrangler = cf["wrangler"]
    # A relative path (the default, node_modules/.bin/wrangler) is relative to the repo root;
    # wrangler runs in the Worker's directory, so it is rewritten relative to that.
    if "/" in wrangler and not os.path.isabs(wrangler):
        wrangler = os.path.relpath(ROOT / wrangler, cwd)
    env = {"WRANGLER_SEND_METRICS": "false"}
    if cf["account_id"]:
        env["CLOUDFLARE_ACCOUNT_ID"] = cf["account_id"]
    return [wrangler], env, cwd


KV_BINDING = "EDGE_STATE"


def kv_title(cfg):
    """The title of the Worker's KV namespace (probe results shared by every isolate)."""
    cf = cfg["cloudflare"]
    return f"{cf['worker_name'] or 'tandem-edge'}{'-' + cf['env'] if cf['env'] else ''}-{KV_BINDING}"


def kv_namespace(cfg, runner, create):
    """The id of the Worker's KV namespace, looked up by title; created first when `create`.
    In a dry run, a placeholder."""
    argv, env, cwd = wrangler_base(cfg)
    title = kv_title(cfg)
    runner.header(f"KV namespace {title} (binding {KV_BINDING})")

    def lookup():
        listed = runner.run(argv + ["kv", "namespace", "list"], cwd=cwd, env=env, capture=True,
                            may_fail=not create)
        return next((ns["id"] for ns in json.loads(listed or "[]") if ns.get("title") == title), None)

    found = lookup()
    if runner.dry:
        return f"<id of KV namespace {title}>"
    if found or not create:
        return found
    runner.run(argv + ["kv", "namespace", "create", title], cwd=cwd, env=env)
    found = lookup()
    if not found:
        raise StepFailed(f"KV namespace {title} was created but is not listed")
    return found


def deploy_config(cfg, runner, kv_id):
    """wrangler.toml with the real KV namespace id, written beside it (ignored by git)."""
    cwd = ROOT / cfg["cloudflare"]["worker_dir"]
    source = (cwd / "wrangler.toml").read_text()
    pattern = re.compile(r'(binding = "' + KV_BINDING + r'"\nid = ")[^"]*(")')
    if not pattern.search(source):
        raise StepFailed(f"wrangler.toml has no kv_namespaces entry for {KV_BINDING}")
    target = cwd / "wrangler.deploy.toml"
    print(f"  writing {os.path.relpath(target, ROOT)} with the KV namespace id")
    if not runner.dry:
        target.write_text(pattern.sub(lambda m: m.group(1) + kv_id + m.group(2), source))
    return target.name


def table_parameters(cfg):
    """The table stack's parameters (infra/render.py renders the template with the same ones)."""
    return {
        "TableName": cfg["table"],
        "ReplicaRegions": ",".join(r["name"] for r in cfg["regions"]),
        "MultiRegionConsistency": cfg["consistency"].upper(),
        "WitnessRegion": cfg["witness"],
        "WarmReadUnitsPerSecond": cfg["capacity"]["warm_read"],
        "WarmWriteUnitsPerSecond": cfg["capacity"]["warm_write"],
    }


def wrangler_secret_argv(cfg, config_file, *args):
    """`wrangler secret ...` for the deployed Worker (name and env as in the deploy)."""
    argv, env, cwd = wrangler_base(cfg)
    cf = cfg["cloudflare"]
    argv += ["secret"] + list(args)
    if config_file:
        argv += ["--config", config_file]
    if cf["worker_name"]:
        argv += ["--name", cf["worker_name"]]
    if cf["env"]:
        argv += ["--env", cf["env"]]
    return argv, env, cwd


def access_keys(cfg, runner, user):
    """The edge user's access keys, oldest first: [(id, create date)]. Ids are not secret. In a
    dry run, one placeholder."""
    text = runner.run(runner.aws(cfg["regions"][0]["name"], "iam", "list-access-keys",
                                 "--user-name", user, "--output", "json"), capture=True)
    if runner.dry:
        return [("<each key listed>", "")]
    keys = json.loads(text or "{}").get("AccessKeyMetadata", [])
    return sorted(((k["AccessKeyId"], k["CreateDate"]) for k in keys), key=lambda k: k[1])


def delete_access_keys(cfg, runner, user, keys):
    for key_id, _ in keys:
        runner.run(runner.aws(cfg["regions"][0]["name"], "iam", "delete-access-key",
                              "--user-name", user, "--access-key-id", key_id))


def rotate_edge_key(cfg, runner, user, config_file):
    """A new access key for the edge user goes to the Worker, then the older keys are deleted.

    IAM allows two keys per user: one in use, one being introduced. The new key's secret is read
    from `aws iam create-access-key`'s captured output, kept in memory only and handed to
    `wrangler secret bulk` on stdin as one JSON object, so the Worker gets the key id and its
    secret in one version (two `secret put`s would leave it, between them, with a mismatched
    pair). Found two keys already (an earlier run stopped halfway): the run stops rather than
    guess which one the Worker uses."""
    region = cfg["regions"][0]["name"]
    runner.header(f"edge signing key: rotate the access key of {user}")
    old = access_keys(cfg, runner, user)
    if len(old) >= 2:
        raise StepFailed(f"{user} already has two access keys ({', '.join(k for k, _ in old)}), so a "
                         "new one cannot be made; delete the one the Worker does not use "
                         f"(aws iam delete-access-key --user-name {user} --access-key-id ...) and "
                         "run again")
    created = runner.run(runner.aws(region, "iam", "create-access-key", "--user-name", user,
                                    "--output", "json"), capture=True)
    if runner.dry:
        key_id, secret = "<new access key id>", None
    else:
        try:
            key = json.loads(created)["AccessKey"]
            key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
        except (ValueError, KeyError, TypeError):
            raise StepFailed("aws iam create-access-key gave no access key") from None
        print(f"  new access key {key_id}; waiting {KEY_PROPAGATION_S} s for IAM to accept it")
        time.sleep(KEY_PROPAGATION_S)
    argv, env, cwd = wrangler_secret_argv(cfg, config_file, "bulk")
    print("  the Worker gets SIGV4_ACCESS_KEY_ID and SIGV4_SECRET_ACCESS_KEY in one version:")
    runner.run(argv, cwd=cwd, env=env, secret_input="" if runner.dry else json.dumps(
        {"SIGV4_ACCESS_KEY_ID": key_id, "SIGV4_SECRET_ACCESS_KEY": secret}))
    secret = None
    if old:
        print(f"  waiting {KEY_GRACE_S} s for every Worker instance to take the new key, then "
              f"deleting the older key: {', '.join(k for k, _ in old)}", flush=True)
        if not runner.dry:
            time.sleep(KEY_GRACE_S)
        delete_access_keys(cfg, runner, user, old)


def put_secret(cfg, runner, config_file, name, value):
    argv, env, cwd = wrangler_secret_argv(cfg, config_file, "put", name)
    runner.run(argv, cwd=cwd, env=env, secret_input="" if value is None else value)


def worker_secrets(cfg, runner, config_file, operator):
    """OPERATOR_TOKEN and JWT_HS256_SECRET (HS256 only), from the operator's environment.

    Without TANDEM_OPERATOR_TOKEN the Worker's OPERATOR_TOKEN is left as it is; a Worker that has
    none lets nobody read /_edge/status (edge/src/core/access.rs), so nothing opens by default."""
    runner.header("edge secrets OPERATOR_TOKEN and JWT_HS256_SECRET")
    if operator["OPERATOR_TOKEN"] or runner.dry:
        print(f"  OPERATOR_TOKEN from ${OPERATOR_TOKEN_ENV}, when set:")
        put_secret(cfg, runner, config_file, "OPERATOR_TOKEN", operator["OPERATOR_TOKEN"])
    if not operator["OPERATOR_TOKEN"]:
        print(f"  without ${OPERATOR_TOKEN_ENV}, OPERATOR_TOKEN is left as it is (none: /_edge/status "
              "answers no one)")
    if cfg["auth"]["hs256"]:
        print(f"  JWT_HS256_SECRET from ${HS256_SECRET_ENV} (auth.hs256 is true):")
        put_secret(cfg, runner, config_file, "JWT_HS256_SECRET", operator["JWT_HS256_SECRET"])
    else:
        print(f"  JWT_HS256_SECRET not used: tokens are checked against {cfg['auth']['jwks_url']}")


def deploy(cfg, runner, operator=None):
    operator = operator or {"OPERATOR_TOKEN": None, "JWT_HS256_SECRET": None}
    names = stack_names(cfg)
    regions = [r["name"] for r in cfg["regions"]]
    fn = cfg["function"]
    sigv4 = cfg["api"]["origin_auth"] == "sigv4"
    print(f"# tandem deploy: regions {', '.join(regions)}; table stack in {regions[0]}; "
          f"DNS stack in {DNS_REGION}; domain {cfg['domain']}")

    if sigv4:
        print("# origins: SigV4 (AWS_IAM) on every regional route but GET /health; only the edge's "
              "IAM user may invoke them (infra/README.md, origin protection)")
    else:
        print('# WARNING: api.origin_auth is "none": every regional route is open to anyone who '
              "knows a region's address, and the edge does not sign (infra/README.md, origin "
              "protection)")
        print('WARNING: api.origin_auth is "none": the regional APIs are open to anyone',
              file=sys.stderr)
    for region in cfg["regions"]:
        if not region["origin_domain"]:
            print(f"# note: region {region['name']} has no origin_domain: its execute-api endpoint "
                  "stays enabled, as its own address")

    for line in capacity_lines(cfg):
        print(f"# {line}")
    if cfg["vpc"]["enabled"]:
        v = cfg["vpc"]
        print(f"# vpc: each region's function in a VPC of its own ({v['cidr']}, subnets "
              f"{', '.join(v['subnets'])}), no internet or NAT gateway, DynamoDB through a gateway "
              "endpoint (docs/infra.md)")

    if cfg["consistency"] == "strong":
        witness = f", witness {cfg['witness']}" if cfg["witness"] else ""
        print(f"# note: consistency strong (MRSC): replicas {', '.join(regions)}{witness}; RPO 0, "
              "slower writes, no TTL (expired idempotency-key records are ignored, not deleted); "
              "the three regions are chosen for good (docs/infra.md)")

    runner.deploy_stack(names["table"], regions[0], "table.yaml", table_parameters(cfg),
                        outputs=False)

    runner.header("build the regional function once (arm64)")
    runner.run(["cargo", "lambda", "build", "--release", "--arm64", "-p", fn["package"]])

    identity = runner.deploy_stack(names["identity"], regions[0], "edge-identity.yaml", {}, iam=True)

    api_outputs = {}
    for region in cfg["regions"]:
        name = region["name"]
        role = runner.deploy_stack(names["role"][name], name, "function-role.yaml",
                                   role_parameters(cfg), iam=True)

        runner.header(f"function {fn['name']} in {name}")
        argv = ["cargo", "lambda", "deploy", "--region", name]
        if cfg["profile"]:
            argv += ["--profile", cfg["profile"]]
        # TABLE_NAME, and with SigV4 the edge's ARN (the function compares it with the caller
        # API Gateway authenticated). STATUS stays unset (200) and ADMIN_TOKEN stays unset
        # (admin routes off). A deploy therefore also ends a failover test that set STATUS=404.
        argv += ["--iam-role", role["RoleArn"], "--env-var", f"TABLE_NAME={cfg['table']}"]
        if sigv4:
            argv += ["--env-var", f"EDGE_CALLER_ARN={identity['UserArn']}"]
        if cfg["vpc"]["enabled"]:
            # The role stack made the function's network: its subnets and security group.
            argv += ["--subnet-ids", role["FunctionSubnetIds"],
                     "--security-group-ids", role["FunctionSecurityGroupId"]]
        argv += ["--memory", str(fn["memory_mb"]), "--timeout", str(fn["timeout_s"]),
                 "--tag", "project=tandem", "--binary-name", fn["binary"], fn["name"]]
        runner.run(argv)
        reserve_concurrency(cfg, runner, name)

        api_outputs[name] = runner.deploy_stack(names["region"][name], name, "region.yaml",
                                                region_parameters(cfg, region, identity["GroupName"]),
                                                iam=True)

    r53 = cfg["route53"]
    runner.deploy_stack(names["dns"], DNS_REGION, "dns.yaml", {
        "HostedZoneId": cfg["zone"],
        "DomainName": cfg["domain"],
        "Regions": ",".join(regions),
        "ApiHosts": ",".join(api_outputs[r]["ApiHost"] for r in regions),
        "TargetDomainNames": ",".join(api_outputs[r]["RegionalDomainName"] for r in regions),
        "TargetHostedZoneIds": ",".join(api_outputs[r]["RegionalHostedZoneId"] for r in regions),
        "HealthCheckInterval": r53["interval"],
        "HealthCheckFailureThreshold": r53["threshold"],
        "RecordMode": r53["mode"],
        "RecordTtl": r53["ttl"],
        "AlarmTopicArn": r53["alarm_topic"],
    }, outputs=False)

    variables = edge_vars(cfg, {r: api_outputs[r]["ApiEndpoint"] for r in regions})
    cf = cfg["cloudflare"]
    kv_id = kv_namespace(cfg, runner, create=True)
    argv, env, cwd = wrangler_base(cfg)
    runner.header(f"edge Worker via wrangler ({cf['worker_dir']}/)")
    runner.run([str(ROOT / "scripts" / "build-edge.sh")], cwd=ROOT, env=env)
    for key, value in variables.items():
        print(f"  {key}={value}")
    config_file = deploy_config(cfg, runner, kv_id)
    argv += ["deploy", "--config", config_file]
    for key, value in variables.items():
        argv += ["--var", f"{key}:{value}"]
    if cf["worker_name"]:
        argv += ["--name", cf["worker_name"]]
    if cf["route"]:
        argv += ["--route", cf["route"]]
    if cf["env"]:
        argv += ["--env", cf["env"]]
    runner.run(argv, cwd=cwd, env=env)
    # The affinity tokens' signing secret: new at each deploy (tokens live 10 s, so rotating it
    # costs at most one read-your-writes window), handed to wrangler on stdin, never written or
    # printed.
    put_secret(cfg, runner, config_file, "AFFINITY_SECRET", secrets.token_hex(32))

    if sigv4:
        rotate_edge_key(cfg, runner, identity["UserName"], config_file)
    else:
        # Nothing signs: an earlier deploy's keys would only be long-lived credentials lying about.
        runner.header(f"edge signing key: none with origin_auth \"none\"; delete any of "
                      f"{identity['UserName']}")
        delete_access_keys(cfg, runner, identity["UserName"],
                           access_keys(cfg, runner, identity["UserName"]))
    worker_secrets(cfg, runner, config_file, operator)
    print(f"\n# done: {', '.join(regions)} behind https://{cfg['domain']} (Route 53) and the edge Worker")


def capacity_lines(cfg):
    """The N-1 sizing in words, for the plan's header."""
    c = cfg["capacity"]
    n = c["regions"]
    return [
        f"capacity: {n} regions x {c['peak']} requests/s peak = {c['total']} requests/s; with one "
        f"region down, the remaining {n - 1} carry ceil({c['total']} / {n - 1}) = {c['survivor']} each",
        f"capacity: DynamoDB warm throughput per replica: reads {c['survivor']} x "
        f"{READ_UNITS_PER_REQUEST} = {c['read_need']} -> {c['warm_read']} units/s; writes (every "
        f"replica applies every region's) {c['total']} x {WRITE_UNITS_PER_REQUEST} = {c['write_need']} -> "
        f"{c['warm_write']} units/s (at least the on-demand start, {ON_DEMAND_WARM_READ}/{ON_DEMAND_WARM_WRITE})",
        f"capacity: API throttling {cfg['api']['rate']} requests/s, burst {cfg['api']['burst']}; "
        f"reserved concurrency {c['survivor']} x {c['request_ms']} ms = {c['reserved']} "
        f"(alarm at {c['concurrency_alarm']})",
    ]


def reserve_concurrency(cfg, runner, region):
    """Reserves the function's concurrency for the N-1 share, after checking the account can.

    A real run reads the account's Lambda and API Gateway limits in the region and stops, before
    reserving anything, when they cannot carry the share: Lambda keeps 100 executions unreserved,
    so UnreservedConcurrentExecutions plus what this function holds already must cover the
    reservation and 100 more; the account's API Gateway rate limit (shared by every API in the
    region) must cover the share. A dry run calls nothing and prints the checks it would make."""
    c = cfg["capacity"]
    fn = cfg["function"]["name"]
    runner.header(f"capacity of {fn} in {region}: reserved concurrency {c['reserved']}")
    print(f"  {c['survivor']} requests/s (the N-1 share) x {c['request_ms']} ms = "
          f"{c['survivor'] * c['request_ms'] / 1000:g} concurrent executions, reserved "
          f"{c['reserved']} (at least {MIN_RESERVED_CONCURRENCY})")
    settings = runner.run(runner.aws(region, "lambda", "get-account-settings", "--output", "json"),
                          capture=True)
    current = runner.run(runner.aws(region, "lambda", "get-function-concurrency", "--function-name",
                                    fn, "--output", "json"), capture=True)
    account = runner.run(runner.aws(region, "apigateway", "get-account", "--output", "json"),
                         capture=True)
    checks = (f"AccountLimit.UnreservedConcurrentExecutions + this function's current reservation "
              f">= {c['reserved']} + {LAMBDA_MIN_UNRESERVED}",
              f"throttleSettings.rateLimit >= {c['survivor']} (API Gateway's account limit in {region})")
    if runner.dry:
        for check in checks:
            print(f"  check (a real run stops unless): {check}")
    else:
        try:
            unreserved = int(json.loads(settings)["AccountLimit"]["UnreservedConcurrentExecutions"])
            mine = int(json.loads(current or "{}").get("ReservedConcurrentExecutions", 0))
            rate = float(json.loads(account)["throttleSettings"]["rateLimit"])
        except (ValueError, KeyError, TypeError):
            raise StepFailed(f"cannot read the Lambda or API Gateway account limits in {region}") from None
        available = unreserved + mine - LAMBDA_MIN_UNRESERVED
        print(f"  Lambda in {region}: {unreserved} unreserved, {mine} reserved by {fn}: up to "
              f"{available} can be reserved; API Gateway account rate limit {rate:g} requests/s")
        if available < c["reserved"]:
            raise StepFailed(f"Lambda in {region} can reserve at most {available} concurrent executions "
                             f"for {fn}, the N-1 share needs {c['reserved']}: ask for a higher "
                             "concurrency quota (Service Quotas, Lambda, Concurrent executions), or "
                             "lower capacity.peak_rps_per_region")
        if rate < c["survivor"]:
            raise StepFailed(f"API Gateway in {region} allows this account {rate:g} requests/s, the "
                             f"N-1 share is {c['survivor']}: ask for a higher throttle quota, or lower "
                             "capacity.peak_rps_per_region")
    runner.run(runner.aws(region, "lambda", "put-function-concurrency", "--function-name", fn,
                          "--reserved-concurrent-executions", str(c["reserved"])))


def role_parameters(cfg):
    """The role stack's parameters (infra/render.py renders the template with the same ones)."""
    vpc = cfg["vpc"]
    return {
        "TableName": cfg["table"],
        "FunctionName": cfg["function"]["name"],
        "LogRetentionDays": cfg["function"]["log_retention_days"],
        "VpcCidr": vpc["cidr"] if vpc["enabled"] else "",
        "SubnetCidrs": ",".join(vpc["subnets"]) if vpc["enabled"] else "",
    }


def region_parameters(cfg, region, edge_group):
    """The region stack's parameters (infra/render.py renders the template with the same ones)."""
    origin = region["origin_domain"]
    return {
        "FunctionName": cfg["function"]["name"],
        "DomainName": cfg["domain"],
        "CertificateArn": region["cert"],
        "HostedZoneId": "" if region["cert"] else cfg["validation_zone"],
        "OriginDomainName": origin,
        "OriginHostedZoneId": cfg["zone"] if origin else "",
        "RouteAuthorization": "AWS_IAM" if cfg["api"]["origin_auth"] == "sigv4" else "NONE",
        "EdgeGroupName": edge_group,
        "ThrottlingRateLimit": cfg["api"]["rate"],
        "ThrottlingBurstLimit": cfg["api"]["burst"],
        "AccessLogRetentionDays": cfg["api"]["log_days"],
        "TableName": cfg["table"],
        "SurvivorRequestsPerSecond": cfg["capacity"]["survivor"],
        "ReservedConcurrency": cfg["capacity"]["reserved"],
        "ConcurrencyAlarmThreshold": cfg["capacity"]["concurrency_alarm"],
        "AlarmTopicArn": region["alarm_topic"],
    }


def teardown(cfg, runner):
    names = stack_names(cfg)
    regions = [r["name"] for r in cfg["regions"]]
    fn = cfg["function"]
    cf = cfg["cloudflare"]
    print(f"# tandem teardown (reverse of deploy): regions {', '.join(reversed(regions))}")

    argv, env, cwd = wrangler_base(cfg)
    runner.header(f"delete the edge Worker ({cf['worker_dir']}/)")
    argv += ["delete"]
    if cf["worker_name"]:
        argv += ["--name", cf["worker_name"]]
    if cf["env"]:
        argv += ["--env", cf["env"]]
    runner.run(argv, cwd=cwd, env=env, may_fail=True)
    kv_id = kv_namespace(cfg, runner, create=False)
    if kv_id:
        argv, env, cwd = wrangler_base(cfg)
        runner.run(argv + ["kv", "namespace", "delete", "--namespace-id", kv_id, "--skip-confirmation"],
                   cwd=cwd, env=env, may_fail=True)

    runner.delete_stack(names["dns"], DNS_REGION)
    for name in reversed(regions):
        runner.delete_stack(names["region"][name], name)
        if cfg["vpc"]["enabled"]:
            # Out of the VPC first, while the role that manages its network interfaces still
            # exists, so Lambda can release them before the role stack deletes the subnets.
            runner.header(f"detach function {fn['name']} in {name} from its VPC")
            runner.run(runner.aws(name, "lambda", "update-function-configuration", "--function-name",
                                  fn["name"], "--vpc-config", "SubnetIds=[],SecurityGroupIds=[]"),
                       may_fail=True)
            runner.run(runner.aws(name, "lambda", "wait", "function-updated", "--function-name",
                                  fn["name"]), may_fail=True)
        runner.header(f"delete function {fn['name']} in {name}")
        runner.run(runner.aws(name, "lambda", "delete-function", "--function-name", fn["name"]),
                   may_fail=True)
        runner.delete_stack(names["role"][name], name)

    # The edge user's access keys were made by deploy.py, not by the stack, and IAM refuses to
    # delete a user that still has keys.
    runner.header(f"delete the edge user's access keys ({names['identity']} output UserName)")
    found = runner.run(runner.aws(regions[0], "cloudformation", "describe-stacks", "--stack-name",
                                  names["identity"], "--query",
                                  "Stacks[0].Outputs[?OutputKey=='UserName'].OutputValue",
                                  "--output", "text"), capture=True, may_fail=True)
    user = f"<{names['identity']}:UserName>" if runner.dry else (found or "").strip()
    if user and user != "None":
        delete_access_keys(cfg, runner, user, access_keys(cfg, runner, user))
    runner.delete_stack(names["identity"], regions[0])

    runner.delete_stack(names["table"], regions[0])
    print(f"\n# the table {cfg['table']} is kept (DeletionPolicy Retain, deletion protection on);"
          " infra/README.md says how to delete it for good")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="infra/deploy.py",
        description="Deploy tandem (AWS stacks, the regional function, the edge Worker) or tear it down.")
    parser.add_argument("command", nargs="?", choices=["deploy", "teardown"], default="deploy")
    parser.add_argument("--config", default=str(INFRA / "config.json"),
                        help="config file (default: infra/config.json; see infra/config.example.json)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every command and template parameter, call nothing")
    args = parser.parse_args(argv)

    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"deploy.py: config error: {err}", file=sys.stderr)
        return 2

    operator = {"OPERATOR_TOKEN": None, "JWT_HS256_SECRET": None}
    if args.command == "deploy":
        try:
            operator = operator_secrets(cfg)
        except ConfigError as err:
            if not args.dry_run:
                print(f"deploy.py: config error: {err}", file=sys.stderr)
                return 2
            print(f"# note: a real deploy would stop here: {err}")

    runner = Runner(cfg, dry=args.dry_run)
    if args.dry_run:
        print(f"# dry run: nothing is called; config {args.config}")
    try:
        if args.command == "deploy":
            deploy(cfg, runner, operator)
        else:
            teardown(cfg, runner)
    except StepFailed as err:
        print(f"deploy.py: step {runner.step} failed: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"deploy.py: step {runner.step} failed: {err.filename} not found (see prerequisites "
              "in infra/README.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
