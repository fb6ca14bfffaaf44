#!/usr/bin/env python3
"""Offline checks of infra/deploy.py, run by infra/check.sh.

Drives `deploy.py --dry-run` (deploy and teardown) against infra/config.example.json and a few
variants, and feeds it broken configs. Prints one line per check, `ok <name>` or
`FAIL <name>: <why>`, and never touches the network: the dry run runs with a PATH holding only
recording stand-ins for aws, cargo and wrangler, and one check asserts none of them was called.

Standard library only; usage: check_deploy.py (no arguments).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
DEPLOY = INFRA / "deploy.py"
EXAMPLE = INFRA / "config.example.json"
STRONG_EXAMPLE = INFRA / "config.strong.example.json"

RESULTS = []


def check(name, ok, why=""):
    RESULTS.append(ok)
    print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)


def run_deploy(args, path_dir, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUDFLARE_", "TANDEM_"))}
    env["PATH"] = str(path_dir)
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, str(DEPLOY)] + args, cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def template_parameters(template):
    """Names under the template's top-level Parameters: section (two-space indented keys)."""
    names, inside = [], False
    for line in (INFRA / "templates" / template).read_text().splitlines():
        if re.match(r"^\S", line):
            inside = line.startswith("Parameters:")
            continue
        m = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if inside and m:
            names.append(m.group(1))
    return names


def steps(stdout):
    """[(header, [lines])] for each `== step N: header` block."""
    blocks = []
    for line in stdout.splitlines():
        m = re.match(r"^== step \d+: (.*)$", line)
        if m:
            blocks.append((m.group(1), []))
        elif blocks:
            blocks[-1][1].append(line)
    return blocks


def kv_title(cfg):
    cf = cfg.get("cloudflare", {})
    env = cf.get("env") or ""
    return f"{cf.get('worker_name') or 'tandem-edge'}{'-' + env if env else ''}-EDGE_STATE"


def expected_capacity(cfg):
    """The N-1 sizing, written out here again (not taken from deploy.py): docs/infra.md."""
    capacity = cfg.get("capacity", {})
    n, peak = len(cfg["regions"]), capacity.get("peak_rps_per_region", 50)
    survivor = -(-n * peak // (n - 1))
    reserved = max(10, -(-survivor * capacity.get("request_ms", 100) // 1000))
    rate = cfg.get("api", {}).get("throttling_rate_limit", survivor)
    return {"survivor": survivor, "reserved": reserved, "alarm": -(-reserved * 80 // 100),
            "rate": rate, "burst": cfg.get("api", {}).get("throttling_burst_limit", 2 * rate),
            "warm_read": max(2 * survivor, 12000), "warm_write": max(3 * n * peak, 4000)}


def expected_deploy_headers(cfg):
    regions = [r["name"] for r in cfg["regions"]]
    p = cfg.get("stack_prefix", "tandem")
    want = [f"stack {p}-table in {regions[0]} from infra/templates/table.yaml",
            "build the regional function once (arm64)",
            f"stack {p}-edge-identity in {regions[0]} from infra/templates/edge-identity.yaml"]
    for r in regions:
        want += [f"stack {p}-role-{r} in {r} from infra/templates/function-role.yaml",
                 f"function {cfg['function']['name']} in {r}",
                 f"capacity of {cfg['function']['name']} in {r}: reserved concurrency "
                 f"{expected_capacity(cfg)['reserved']}",
                 f"stack {p}-region-{r} in {r} from infra/templates/region.yaml"]
    want += [f"stack {p}-dns in us-east-1 from infra/templates/dns.yaml",
             f"KV namespace {kv_title(cfg)} (binding EDGE_STATE)",
             f"edge Worker via wrangler ({cfg['cloudflare']['worker_dir']}/)"]
    user = f"<{p}-edge-identity:UserName>"
    if origin_auth(cfg) == "sigv4":
        want.append(f"edge signing key: rotate the access key of {user}")
    else:
        want.append(f'edge signing key: none with origin_auth "none"; delete any of {user}')
    want.append("edge secrets OPERATOR_TOKEN and JWT_HS256_SECRET")
    return want


def origin_auth(cfg):
    return cfg.get("api", {}).get("origin_auth", "sigv4")


def expected_teardown_headers(cfg):
    regions = [r["name"] for r in cfg["regions"]]
    p = cfg.get("stack_prefix", "tandem")
    want = [f"delete the edge Worker ({cfg['cloudflare']['worker_dir']}/)",
            f"KV namespace {kv_title(cfg)} (binding EDGE_STATE)",
            f"delete stack {p}-dns in us-east-1"]
    for r in reversed(regions):
        want += [f"delete stack {p}-region-{r} in {r}"]
        if cfg.get("vpc", {}).get("enabled"):
            want += [f"detach function {cfg['function']['name']} in {r} from its VPC"]
        want += [f"delete function {cfg['function']['name']} in {r}",
                 f"delete stack {p}-role-{r} in {r}"]
    want += [f"delete the edge user's access keys ({p}-edge-identity output UserName)",
             f"delete stack {p}-edge-identity in {regions[0]}",
             f"delete stack {p}-table in {regions[0]}"]
    return want


# Stand-ins for the operator's secrets in the dry runs: none of them may appear in any output.
SENTINELS = {"TANDEM_OPERATOR_TOKEN": "operator-token-sentinel-0123456789abcdef",
             "TANDEM_JWT_HS256_SECRET": "hs256-secret-sentinel-0123456789abcdefgh"}


def check_plan(label, cfg, cfg_path, bin_dir, calls_log):
    code, out, err = run_deploy(["--config", str(cfg_path), "--dry-run"], bin_dir, SENTINELS)
    check(f"{label}: dry run exits 0", code == 0, f"exit {code}: {err.strip()}")
    if code != 0:
        return
    calls = calls_log.read_text() if calls_log.exists() else ""
    check(f"{label}: dry run calls nothing (no aws, cargo or wrangler run)", calls == "",
          f"called: {calls.strip()}")

    blocks = steps(out)
    headers = [h for h, _ in blocks]
    want = expected_deploy_headers(cfg)
    check(f"{label}: every stack and step in order (table, build, edge identity, "
          "role/function/reserved concurrency/region per region, dns, edge, signing key, edge "
          "secrets)", headers == want, f"got {headers}, want {want}")

    regions = [r["name"] for r in cfg["regions"]]
    missing = [r for r in regions if sum(r in h for h in headers) < 3]
    check(f"{label}: names every region ({', '.join(regions)})", not missing, f"missing {missing}")

    builds = [l for l in out.splitlines() if l.startswith("+ cargo lambda build")]
    check(f"{label}: one arm64 release build of the regional package",
          builds == ["+ cargo lambda build --release --arm64 -p regional"], f"got {builds}")

    deploys = [l for l in out.splitlines() if l.startswith("+ cargo lambda deploy")]
    prefix = cfg.get("stack_prefix", "tandem")
    sigv4 = origin_auth(cfg) == "sigv4"
    caller = f"'EDGE_CALLER_ARN=<{prefix}-edge-identity:UserArn>'"
    bad = [l for l in deploys if "--iam-role" not in l or "TABLE_NAME=" not in l
           or "ADMIN_TOKEN" in l or "STATUS=" in l or l.count("--env-var") != (2 if sigv4 else 1)
           or (caller in l) != sigv4]
    check(f"{label}: cargo lambda deploy per region with its role, TABLE_NAME and "
          f"{'EDGE_CALLER_ARN (the edge user)' if sigv4 else 'no EDGE_CALLER_ARN (origin_auth none)'} only",
          len(deploys) == len(regions) and not bad
          and all(f"--region {r} " in d for r, d in zip(regions, deploys)),
          f"got {deploys}")

    # Each region stack: routes behind AWS_IAM unless opted out, the region's own origin name
    # (default <region>.<domain>) in the config's zone, and the edge's group.
    wrong = []
    for r in cfg["regions"]:
        lines = next((ls for h, ls in blocks if h.startswith(f"stack {prefix}-region-{r['name']} ")), [])
        got = dict(l.strip().split("=", 1) for l in lines if re.match(r"^    [A-Za-z0-9]+=", l))
        origin = r.get("origin_domain", f"{r['name']}.{cfg['domain']}")
        want_params = {"RouteAuthorization": "AWS_IAM" if sigv4 else "NONE",
                       "OriginDomainName": origin,
                       "OriginHostedZoneId": cfg["hosted_zone_id"] if origin else "",
                       "EdgeGroupName": f"<{prefix}-edge-identity:GroupName>"}
        if {k: got.get(k) for k in want_params} != want_params:
            wrong.append(f"{r['name']}: got {({k: got.get(k) for k in want_params})}, want {want_params}")
    check(f"{label}: region stacks get RouteAuthorization {'AWS_IAM' if sigv4 else 'NONE'}, their "
          "origin name and zone, and the edge's group", not wrong, "; ".join(wrong))
    # Capacity for N-1 regions: the table is pre-warmed, each stage throttles at the share, each
    # function's concurrency is reserved after the checks a real run makes (printed, not run).
    cap = expected_capacity(cfg)
    fn = cfg["function"]["name"]
    wrong = []
    for r in cfg["regions"]:
        name = r["name"]
        lines = next((ls for h, ls in blocks if h.startswith(f"stack {prefix}-region-{name} ")), [])
        got = dict(l.strip().split("=", 1) for l in lines if re.match(r"^    [A-Za-z0-9]+=", l))
        want_params = {"ThrottlingRateLimit": str(cap["rate"]), "ThrottlingBurstLimit": str(cap["burst"]),
                       "SurvivorRequestsPerSecond": str(cap["survivor"]),
                       "ReservedConcurrency": str(cap["reserved"]),
                       "ConcurrencyAlarmThreshold": str(cap["alarm"]),
                       "AlarmTopicArn": r.get("alarm_topic_arn", "")}
        if {k: got.get(k) for k in want_params} != want_params:
            wrong.append(f"{name}: got {({k: got.get(k) for k in want_params})}, want {want_params}")
        lines = next((ls for h, ls in blocks if h.startswith(f"capacity of {fn} in {name}:")), [])
        commands = [re.sub(r"^\+ aws --region \S+ (--profile \S+ )?", "", l) for l in lines if l.startswith("+ ")]
        want_commands = ["lambda get-account-settings --output json",
                         f"lambda get-function-concurrency --function-name {fn} --output json",
                         "apigateway get-account --output json",
                         f"lambda put-function-concurrency --function-name {fn} "
                         f"--reserved-concurrent-executions {cap['reserved']}"]
        checks = [l for l in lines if l.startswith("  check (a real run stops unless): ")]
        if commands != want_commands or len(checks) != 2 or not all(f"--region {name} " in l for l in lines if l.startswith("+ ")) \
                or f">= {cap['reserved']} + 100" not in checks[0] or f">= {cap['survivor']} " not in checks[1]:
            wrong.append(f"{name}: commands {commands}, checks {checks}")
    check(f"{label}: N-1 sizing for {len(regions)} regions: stages throttle at {cap['rate']}/{cap['burst']} "
          f"(share {cap['survivor']}), {cap['reserved']} reserved executions per function after the "
          "account checks a real run makes (printed in the dry run, alarm at "
          f"{cap['alarm']})", not wrong, "; ".join(wrong))
    warm = {"WarmReadUnitsPerSecond": str(cap["warm_read"]), "WarmWriteUnitsPerSecond": str(cap["warm_write"])}
    table_block = next((ls for h, ls in blocks if h.startswith("stack") and "table.yaml" in h), [])
    got_warm = {k: v for k, v in (l.strip().split("=", 1) for l in table_block
                                  if re.match(r"^    [A-Za-z0-9]+=", l)) if k in warm}
    header = [l for l in out.splitlines() if l.startswith("# capacity: ")]
    check(f"{label}: table pre-warmed to {cap['warm_read']} reads/{cap['warm_write']} writes per "
          "second; the plan states the sizing", got_warm == warm and len(header) == 3
          and f"= {cap['survivor']}" in header[0], f"warm {got_warm}, header {header}")

    # The vpc option: the role stack makes the function's network, and cargo lambda puts the
    # function in its subnets with its security group; without it, neither.
    vpc = cfg.get("vpc", {})
    import ipaddress
    if vpc.get("enabled"):
        net = ipaddress.IPv4Network(vpc.get("cidr", "10.64.0.0/16"))
        subnets = [str(n) for n in list(net.subnets(prefixlen_diff=2))[:vpc.get("availability_zones", 2)]]
        want_role = {"VpcCidr": str(net), "SubnetCidrs": ",".join(subnets)}
    else:
        want_role = {"VpcCidr": "", "SubnetCidrs": ""}
    wrong = []
    for r, d in zip(regions, deploys):
        lines = next((ls for h, ls in blocks if h.startswith(f"stack {prefix}-role-{r} ")), [])
        got = dict(l.strip().split("=", 1) for l in lines if re.match(r"^    [A-Za-z0-9]+=", l))
        placed = (f"--subnet-ids '<{prefix}-role-{r}:FunctionSubnetIds>' --security-group-ids "
                  f"'<{prefix}-role-{r}:FunctionSecurityGroupId>'")
        if {k: got.get(k) for k in want_role} != want_role or (placed in d) != bool(vpc.get("enabled")) \
                or ("--subnet-ids" in d) != bool(vpc.get("enabled")):
            wrong.append(f"{r}: role parameters {({k: got.get(k) for k in want_role})}, want {want_role}; deploy {d}")
    check(f"{label}: " + (f"the function in a VPC of its own ({want_role['VpcCidr']}, subnets "
                          f"{want_role['SubnetCidrs']}) made by the role stack, its subnets and "
                          "security group given to cargo lambda deploy" if vpc.get("enabled")
                          else "no VPC: the role stack makes no network, cargo lambda gets no subnets"),
          not wrong, "; ".join(wrong))

    open_warning = 'WARNING: api.origin_auth is "none"' in out and 'WARNING: api.origin_auth is "none"' in err
    check(f"{label}: {'no warning about open origins' if sigv4 else 'warns, on stdout and stderr, that the origins are open'}",
          open_warning != sigv4, f"stdout/stderr warning present: {open_warning}")

    # Every template parameter is printed, with no stray ones.
    wrong = []
    for header, lines in blocks:
        m = re.match(r"^stack \S+ in \S+ from infra/templates/(\S+)$", header)
        if not m:
            continue
        printed = [re.match(r"^    ([A-Za-z0-9]+)=", l).group(1) for l in lines
                   if re.match(r"^    [A-Za-z0-9]+=", l)]
        if sorted(printed) != sorted(template_parameters(m.group(1))):
            wrong.append(f"{header}: printed {printed}, template has {template_parameters(m.group(1))}")
    check(f"{label}: prints every template parameter of every stack", not wrong, "; ".join(wrong))

    table = next((lines for h, lines in blocks if h.startswith("stack") and "table.yaml" in h), [])
    table_params = dict(l.strip().split("=", 1) for l in table if re.match(r"^    [A-Za-z0-9]+=", l))
    consistency = cfg.get("consistency", "eventual")
    want_table = {"ReplicaRegions": ",".join(regions),
                  "MultiRegionConsistency": consistency.upper(),
                  "WitnessRegion": cfg.get("witness_region", "")}
    got_table = {k: table_params.get(k) for k in want_table}
    check(f"{label}: table stack gets every replica region, consistency {consistency.upper()} and "
          f"witness '{want_table['WitnessRegion']}'", got_table == want_table,
          f"got {got_table}, want {want_table}")

    dns = next((lines for h, lines in blocks if h.startswith("stack") and "dns.yaml" in h), [])
    dns_regions = next((l.split("=", 1)[1] for l in dns if l.startswith("    Regions=")), "")
    dns_hosts = next((l.split("=", 1)[1] for l in dns if l.startswith("    ApiHosts=")), "")
    check(f"{label}: DNS stack gets one health check target per region, in order",
          dns_regions == ",".join(regions) and len(dns_hosts.split(",")) == len(regions)
          and all(f"-region-{r}:ApiHost>" in h for r, h in zip(regions, dns_hosts.split(","))),
          f"Regions={dns_regions} ApiHosts={dns_hosts}")

    wrangler = [l for l in out.splitlines() if l.startswith("+ ") and " deploy --config wrangler.deploy.toml --var " in l
                and "wrangler" in l]
    edge = next((lines for h, lines in blocks if h.startswith("edge Worker")), [])
    regions_line = next((l for l in edge if l.startswith("  REGIONS=")), "")
    try:
        edge_regions = json.loads(regions_line.split("=", 1)[1])
    except (IndexError, ValueError):
        edge_regions = None
    fallback = "--var FALLBACK_ORIGIN: " if sigv4 else f"--var FALLBACK_ORIGIN:https://{cfg['domain']} "
    ok = (len(wrangler) == 1 and "--var 'REGIONS:[" in wrangler[0]
          and fallback in wrangler[0]
          and isinstance(edge_regions, list)
          and [e.get("name") for e in edge_regions] == regions
          and all(set(e) == {"name", "origin", "lat", "lon", "weight"} for e in edge_regions)
          and all(isinstance(e["lat"], (int, float)) and isinstance(e["lon"], (int, float))
                  for e in edge_regions)
          and all(e["origin"] == f"<{cfg.get('stack_prefix', 'tandem')}-region-{e['name']}:ApiEndpoint>"
                  for e in edge_regions))
    check(f"{label}: wrangler deploy with REGIONS (name, origin, lat, lon, weight per region) and "
          f"FALLBACK_ORIGIN {'empty (a signature names its region)' if sigv4 else 'the shared name'}",
          ok, f"wrangler: {wrangler}; REGIONS: {regions_line}")

    auth = cfg["auth"]
    want_auth = {"issuer": auth["issuer"], "audience": auth["audience"],
                 "jwks_url": auth.get("jwks_url") or None, "read_scope": auth["read_scope"],
                 "write_scope": auth["write_scope"]}
    auth_arg = re.search(r"--var 'AUTH:(\{[^']*\})'", wrangler[0]) if len(wrangler) == 1 else None
    try:
        got_auth = json.loads(auth_arg.group(1)) if auth_arg else None
    except ValueError:
        got_auth = None
    check(f"{label}: wrangler deploy with ORIGIN_AUTH {origin_auth(cfg)} and AUTH (issuer, audience, "
          "jwks_url, read_scope, write_scope from the config)",
          len(wrangler) == 1 and f"--var ORIGIN_AUTH:{origin_auth(cfg)} " in wrangler[0]
          and got_auth == want_auth, f"wrangler: {wrangler}; AUTH: {got_auth}, want {want_auth}")

    # Secrets: every one goes to wrangler on stdin; none is in an argument or the output.
    commands = [l for l in out.splitlines() if l.startswith("+ ")]
    puts = [l for l in commands if re.search(r" secret (put|bulk)\b", l)]
    put_names = [re.search(r" secret (?:put (\S+)|(bulk))", l).group(1) or "bulk" for l in puts]
    want_names = ["AFFINITY_SECRET"] + (["bulk"] if sigv4 else []) + ["OPERATOR_TOKEN"] \
        + (["JWT_HS256_SECRET"] if auth.get("hs256") else [])
    on_stdin = all(l.endswith("  # value on stdin, not shown") for l in puts)
    leaked = [name for name, value in SENTINELS.items() if value in out or value in err]
    in_argv = [l for l in commands if re.search(r"SIGV4_|SecretAccessKey|--secret|=[0-9a-f]{64}", l)]
    check(f"{label}: secrets {', '.join(want_names)} go to wrangler on stdin; no secret in any "
          "argument or in the output", put_names == want_names and on_stdin and not leaked
          and not in_argv and not re.search(r"[0-9a-f]{64}", out),
          f"secret commands {put_names} (want {want_names}), all on stdin: {on_stdin}, "
          f"leaked: {leaked}, in arguments: {in_argv}")
    keys = next((lines for h, lines in blocks if h.startswith("edge signing key")), [])
    key_commands = [m.group(1) for m in (re.search(r" (iam \S+ --user-name|secret \S+)", l)
                                         for l in keys if l.startswith("+ ")) if m]
    want_keys = (["iam list-access-keys --user-name", "iam create-access-key --user-name",
                  "secret bulk", "iam delete-access-key --user-name"] if sigv4 else
                 ["iam list-access-keys --user-name", "iam delete-access-key --user-name"])
    check(f"{label}: signing key {'listed, created, handed to the Worker, then the older deleted' if sigv4 else 'none: the edge user keys are deleted'}",
          key_commands == want_keys, f"got {key_commands}, want {want_keys}")

    code, out, err = run_deploy(["--config", str(cfg_path), "--dry-run", "teardown"], bin_dir)
    blocks = steps(out)
    headers = [h for h, _ in blocks]
    want = expected_teardown_headers(cfg)
    check(f"{label}: teardown dry run runs the deploy backwards", code == 0 and headers == want,
          f"exit {code}, got {headers}, want {want}")
    keys = next((lines for h, lines in blocks if h.startswith("delete the edge user's access keys")), [])
    check(f"{label}: teardown deletes the edge user's access keys before its stack",
          any(" iam delete-access-key --user-name " in l for l in keys), f"got {keys}")


def check_operator_secrets(write):
    """A real deploy takes OPERATOR_TOKEN and JWT_HS256_SECRET from the environment; checked in
    process (a real run here would reach the build), with the environment patched."""
    sys.path.insert(0, str(INFRA))
    import deploy  # noqa: E402

    example = json.loads(EXAMPLE.read_text())
    hs = json.loads(json.dumps(example))
    hs["auth"].update(jwks_url="", hs256=True)
    cfg_jwks = deploy.load_config(write("secrets-jwks.json", example))
    cfg_hs = deploy.load_config(write("secrets-hs.json", hs))
    saved = {k: os.environ.pop(k) for k in SENTINELS if k in os.environ}

    def attempt(cfg, env):
        os.environ.update(env)
        try:
            return deploy.operator_secrets(cfg)
        except deploy.ConfigError as err:
            return str(err)
        finally:
            for k in env:
                os.environ.pop(k, None)

    try:
        got = attempt(cfg_hs, {})
        check("a real deploy with auth.hs256 stops before any step without TANDEM_JWT_HS256_SECRET",
              isinstance(got, str) and "TANDEM_JWT_HS256_SECRET" in got, f"got {got!r}")
        got = attempt(cfg_jwks, {"TANDEM_OPERATOR_TOKEN": "short"})
        check("a real deploy refuses an OPERATOR_TOKEN under 32 characters",
              isinstance(got, str) and "at least 32" in got, f"got {got!r}")
        got = attempt(cfg_hs, SENTINELS)
        check("a real deploy takes OPERATOR_TOKEN and JWT_HS256_SECRET from the environment",
              got == {"OPERATOR_TOKEN": SENTINELS["TANDEM_OPERATOR_TOKEN"],
                      "JWT_HS256_SECRET": SENTINELS["TANDEM_JWT_HS256_SECRET"]}, "wrong values")
        got = attempt(cfg_jwks, {})
        check("without TANDEM_OPERATOR_TOKEN (and JWKS tokens) no secret is taken from the environment",
              got == {"OPERATOR_TOKEN": None, "JWT_HS256_SECRET": None}, f"got {got}")
    finally:
        os.environ.update(saved)


FAKE_AWS = r"""#!PYTHON
# Stand-in for `aws iam ...access-key...`: keys in a JSON state file; every call logged.
import json, sys
state_file, log = sys.argv[0] + ".state", sys.argv[0] + ".log"
args = sys.argv[1:]
with open(log, "a") as f:
    f.write("aws " + " ".join(args) + "\n")
keys = json.load(open(state_file))
if "list-access-keys" in args:
    print(json.dumps({"AccessKeyMetadata": [{"AccessKeyId": k, "CreateDate": d} for k, d in keys]}))
elif "create-access-key" in args:
    keys.append(["AKIANEWKEY0000000001", "2030-01-01T00:00:00Z"])
    print(json.dumps({"AccessKey": {"AccessKeyId": "AKIANEWKEY0000000001", "SecretAccessKey": "SECRET"}}))
elif "delete-access-key" in args:
    keys = [k for k in keys if k[0] != args[args.index("--access-key-id") + 1]]
json.dump(keys, open(state_file, "w"))
"""
FAKE_WRANGLER = r"""#!PYTHON
# Stand-in for `wrangler secret ...`: logs the call and what it read on stdin.
import json, sys
with open(sys.argv[0] + ".log", "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "stdin": sys.stdin.read()}) + "\n")
"""


FAKE_AWS_LIMITS = r"""#!PYTHON
# Stand-in for the account limits reserve_concurrency reads: values from a JSON state file.
import json, sys
state = json.load(open(sys.argv[0] + ".state"))
with open(sys.argv[0] + ".log", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if "get-account-settings" in args:
    print(json.dumps({"AccountLimit": {"ConcurrentExecutions": 1000,
                                       "UnreservedConcurrentExecutions": state["unreserved"]}}))
elif "get-function-concurrency" in args:
    print(json.dumps({"ReservedConcurrentExecutions": state["mine"]} if state["mine"] else {}))
elif "get-account" in args:
    print(json.dumps({"throttleSettings": {"burstLimit": 5000, "rateLimit": state["rate"]}}))
"""


def check_capacity_checks(tmp, cfg, write):
    """What a real run checks before reserving concurrency, against a stand-in for aws: enough
    room reserves; too little unreserved concurrency, or an API Gateway account limit under the
    share, stops the run before put-function-concurrency; the function's own reservation counts."""
    import contextlib
    import io

    sys.path.insert(0, str(INFRA))
    import deploy  # noqa: E402

    c = json.loads(json.dumps(cfg))
    c["capacity"] = {"peak_rps_per_region": 500}          # 2 regions: share 1000, 100 reserved
    config = deploy.load_config(write("limits.json", c))
    fake_bin = tmp / "fake-limits"
    fake_bin.mkdir()
    aws = fake_bin / "aws"
    aws.write_text(FAKE_AWS_LIMITS.replace("#!PYTHON", "#!" + sys.executable))
    aws.chmod(0o755)
    saved_path = os.environ["PATH"]
    for label, state, stops in (
            ("a fresh account (1000 unreserved)", {"unreserved": 1000, "mine": 0, "rate": 10000}, None),
            ("150 unreserved: 100 must stay unreserved", {"unreserved": 150, "mine": 0, "rate": 10000},
             "can reserve at most 50"),
            ("a redeploy: its own 100 count (110 unreserved)", {"unreserved": 110, "mine": 100, "rate": 10000}, None),
            ("API Gateway's account limit 500 requests/s", {"unreserved": 1000, "mine": 0, "rate": 500},
             "allows this account 500 requests/s")):
        (fake_bin / "aws.state").write_text(json.dumps(state))
        (fake_bin / "aws.log").write_text("")
        out, error = io.StringIO(), None
        os.environ["PATH"] = f"{fake_bin}:{saved_path}"
        try:
            with contextlib.redirect_stdout(out):
                deploy.reserve_concurrency(config, deploy.Runner(config, dry=False), "eu-west-1")
        except deploy.StepFailed as err:
            error = str(err)
        finally:
            os.environ["PATH"] = saved_path
        calls = (fake_bin / "aws.log").read_text()
        reserved = "put-function-concurrency" in calls and "--reserved-concurrent-executions 100" in calls
        if stops:
            check(f"reserved concurrency, {label}: the run stops before reserving",
                  error is not None and stops in error and not reserved, f"error {error}, calls {calls}")
        else:
            check(f"reserved concurrency, {label}: checks, then reserves 100",
                  error is None and reserved, f"error {error}, calls {calls}")


def check_key_rotation(tmp, cfg, write):
    """The signing key's rotation, for real against stand-ins for aws and wrangler: the new
    key reaches the Worker on stdin, in one bulk put, before the old key is deleted; the secret is
    never in an argument or the output; two existing keys stop the run."""
    import contextlib
    import io

    sys.path.insert(0, str(INFRA))
    import deploy  # noqa: E402

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSENTINELKEY"
    fake_bin = tmp / "fake-bin"
    fake_bin.mkdir()
    for name, text in (("aws", FAKE_AWS), ("wrangler", FAKE_WRANGLER)):
        path = fake_bin / name
        path.write_text(text.replace("#!PYTHON", "#!" + sys.executable).replace('"SECRET"', json.dumps(secret)))
        path.chmod(0o755)
    config = deploy.load_config(write("rotation.json", cfg))
    deploy.KEY_PROPAGATION_S = deploy.KEY_GRACE_S = 0
    saved_path = os.environ["PATH"]

    for label, existing in (("first deploy (no key yet)", []),
                            ("redeploy (one key in use)", [["AKIAOLDKEY0000000001", "2029-01-01T00:00:00Z"]]),
                            ("interrupted earlier run (two keys)",
                             [["AKIAOLDKEY0000000001", "2029-01-01T00:00:00Z"],
                              ["AKIAOLDKEY0000000002", "2029-06-01T00:00:00Z"]])):
        (fake_bin / "aws.state").write_text(json.dumps(existing))
        for log in ("aws.log", "wrangler.log"):
            (fake_bin / log).write_text("")
        out, error = io.StringIO(), None
        os.environ["PATH"] = f"{fake_bin}:{saved_path}"
        try:
            with contextlib.redirect_stdout(out):
                deploy.rotate_edge_key(config, deploy.Runner(config, dry=False), "tandem-edge-user",
                                       "wrangler.deploy.toml")
        except deploy.StepFailed as err:
            error = str(err)
        finally:
            os.environ["PATH"] = saved_path
        aws_calls = [w[w.index("iam") + 1] for w in
                     (l.split() for l in (fake_bin / "aws.log").read_text().splitlines())]
        puts = [json.loads(l) for l in (fake_bin / "wrangler.log").read_text().splitlines()]
        keys_after = [k for k, _ in json.loads((fake_bin / "aws.state").read_text())]
        argv_text = (fake_bin / "aws.log").read_text() + json.dumps([p["argv"] for p in puts])
        leaked = secret in out.getvalue() or secret in argv_text or secret in (error or "")
        if len(existing) == 2:
            check(f"key rotation, {label}: stops before creating a key, deletes nothing",
                  error is not None and "already has two access keys" in error
                  and aws_calls == ["list-access-keys"] and not puts
                  and keys_after == [k for k, _ in existing], f"error {error}, calls {aws_calls}")
            continue
        bulk = puts[0] if len(puts) == 1 else {}
        try:
            given = json.loads(bulk.get("stdin", ""))
        except ValueError:
            given = None
        want_calls = ["list-access-keys", "create-access-key"] + ["delete-access-key"] * len(existing)
        check(f"key rotation, {label}: new key to the Worker on stdin in one bulk put "
              f"({'then the old key deleted' if existing else 'nothing to delete'}); secret never "
              "in an argument or the output",
              error is None and aws_calls == want_calls
              and bulk.get("argv", [])[:2] == ["secret", "bulk"]
              and given == {"SIGV4_ACCESS_KEY_ID": "AKIANEWKEY0000000001",
                            "SIGV4_SECRET_ACCESS_KEY": secret}
              and keys_after == ["AKIANEWKEY0000000001"] and not leaked,
              f"error {error}, aws calls {aws_calls}, wrangler {[p['argv'] for p in puts]}, "
              f"keys after {keys_after}, leaked {leaked}")


def main():
    example = json.loads(EXAMPLE.read_text())
    with tempfile.TemporaryDirectory(prefix="tandem-infra-check-") as tmp:
        tmp = Path(tmp)
        bin_dir, calls_log = tmp / "bin", tmp / "calls.log"
        bin_dir.mkdir()
        for tool in ("aws", "cargo", "wrangler", "npx", "node"):
            stub = bin_dir / tool
            stub.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> '{calls_log}'\nexit 0\n")
            stub.chmod(0o755)

        def write(name, cfg):
            path = tmp / name
            path.write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
            return path

        # The example, with wrangler found on PATH so the stand-in would see any call.
        cfg = json.loads(json.dumps(example))
        cfg["cloudflare"]["wrangler"] = "wrangler"
        check_plan("example config", cfg, write("example.json", cfg), bin_dir, calls_log)

        # Five regions, certificates created through the validation zone, a custom prefix.
        five = json.loads(json.dumps(cfg))
        five["stack_prefix"] = "tdm"
        five["certificate_validation_zone_id"] = five["hosted_zone_id"]
        five["regions"] = [{"name": n} for n in
                           ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-northeast-1")]
        five["capacity"] = {"peak_rps_per_region": 2000}
        check_plan("five regions at 2000 requests/s each", five, write("five.json", five), bin_dir, calls_log)

        # The vpc option, three availability zones in a /20.
        in_vpc = json.loads(json.dumps(cfg))
        in_vpc["vpc"] = {"enabled": True, "cidr": "10.20.0.0/20", "availability_zones": 3}
        check_plan("vpc option, three zones", in_vpc, write("vpc.json", in_vpc), bin_dir, calls_log)
        code, out, err = run_deploy(["--config", str(tmp / "vpc.json"), "--dry-run", "teardown"], bin_dir)
        detach = [l for l in out.splitlines() if "update-function-configuration" in l]
        check("vpc option: teardown takes each function out of its VPC (empty vpc-config) before "
              "deleting it", len(detach) == len(in_vpc["regions"])
              and all("--vpc-config 'SubnetIds=[],SecurityGroupIds=[]'" in l for l in detach), f"got {detach}")

        # Multi-Region strong consistency: three replicas (the strong example), and two replicas
        # plus a witness region, which gets no stacks of its own and is no edge region.
        strong_example = json.loads(STRONG_EXAMPLE.read_text())
        strong = json.loads(json.dumps(strong_example))
        strong["cloudflare"]["wrangler"] = "wrangler"
        # ... with the throttling raised above the share, and a capacity alarm topic.
        strong["api"]["throttling_rate_limit"] = 200
        strong["regions"][0]["alarm_topic_arn"] = "arn:aws:sns:eu-west-1:123456789012:tandem-capacity"
        check_plan("strong example config", strong, write("strong.json", strong), bin_dir, calls_log)
        witness = json.loads(json.dumps(strong))
        witness["witness_region"] = witness["regions"].pop()["name"]
        check_plan("strong, two replicas and a witness", witness, write("witness.json", witness),
                   bin_dir, calls_log)

        # The explicit opt-out: routes open, nothing signs (and so no key), the shared name as
        # fallback; and client tokens checked with an HS256 secret from the environment.
        opened = json.loads(json.dumps(cfg))
        opened["api"]["origin_auth"] = "none"
        opened["auth"].update(jwks_url="", hs256=True)
        check_plan("origin_auth none, HS256 tokens", opened, write("opened.json", opened), bin_dir,
                   calls_log)

        # The older switch still reads (true is SigV4), and a region without an origin name keeps
        # its execute-api endpoint as its address.
        legacy = json.loads(json.dumps(cfg))
        del legacy["api"]["origin_auth"]
        legacy["api"]["require_iam_auth"] = True
        legacy["regions"][1]["origin_domain"] = ""
        check_plan("require_iam_auth true, one region without an origin name", legacy,
                   write("legacy.json", legacy), bin_dir, calls_log)
        code, out, err = run_deploy(["--config", str(tmp / "legacy.json"), "--dry-run"], bin_dir)
        check("a region without an origin name is named in a note (its execute-api endpoint stays)",
              "# note: region eu-central-1 has no origin_domain" in out
              and "region eu-west-1 has no origin_domain" not in out, out[:300])

        check_operator_secrets(write)
        check_key_rotation(tmp, cfg, write)
        check_capacity_checks(tmp, cfg, write)

        # The unmodified example files themselves also plan cleanly.
        for shipped in (EXAMPLE, STRONG_EXAMPLE):
            code, out, err = run_deploy(["--config", str(shipped), "--dry-run"], bin_dir)
            check(f"infra/{shipped.name} as shipped: dry run exits 0 and ends with the edge",
                  code == 0 and "wrangler deploy --config wrangler.deploy.toml --var 'REGIONS:" in out,
                  f"exit {code}: {err.strip()}")

        # Broken configs: exit 2 and one clear line on stderr.
        def broken(name, mutate):
            c = json.loads(json.dumps(example))
            mutate(c)
            return name, write(name.replace(" ", "-") + ".json", c)

        def no_cert(c):
            del c["regions"][1]["certificate_arn"]

        def strong_variant(name, mutate):
            c = json.loads(json.dumps(strong_example))
            mutate(c)
            return name, write(name.replace(" ", "-").replace(",", "") + ".json", c)

        def pop_third(c):
            c["regions"].pop()

        def add_fourth(c):
            c["regions"].append({"name": "eu-west-3", "certificate_arn": ""})
            c["certificate_validation_zone_id"] = c["hosted_zone_id"]

        def witness_and_three(c):
            c["witness_region"] = "eu-west-3"

        def witness_is_replica(c):
            c["regions"].pop()
            c["witness_region"] = "eu-central-1"

        def across_sets(c):
            c["regions"][2] = {"name": "us-east-1", "certificate_arn": ""}
            c["certificate_validation_zone_id"] = c["hosted_zone_id"]

        def witness_in_other_set(c):
            c["regions"].pop()
            c["witness_region"] = "us-east-2"

        cases = [
            (broken("one region", lambda c: c.update(regions=c["regions"][:1])), "need 2 to 5 regions"),
            (broken("six regions", lambda c: c.update(regions=[{"name": n, "certificate_arn": ""} for n in (
                "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "us-east-1")],
                certificate_validation_zone_id=c["hosted_zone_id"])), "need 2 to 5 regions"),
            (broken("duplicate region", lambda c: c["regions"][1].update(name="eu-west-1")),
             "duplicate region eu-west-1"),
            (broken("region without certificate", no_cert),
             "region eu-central-1 has no certificate_arn"),
            (broken("certificate from another region",
                    lambda c: c["regions"][1].update(certificate_arn=c["regions"][0]["certificate_arn"])),
             "certificate_arn is in eu-west-1"),
            (broken("missing domain", lambda c: c.pop("domain")), "missing domain"),
            (broken("missing hosted zone", lambda c: c.pop("hosted_zone_id")), "missing hosted_zone_id"),
            (broken("bad health check interval", lambda c: c["route53"].update(interval=5)),
             "route53.interval"),
            (broken("unknown key", lambda c: c.update(region="eu-west-1")), "unknown key 'region'"),
            (broken("unknown region without coordinates",
                    lambda c: (c["regions"][1].update(name="xx-nowhere-9", certificate_arn=""),
                               c.update(certificate_validation_zone_id=c["hosted_zone_id"]))),
             "region xx-nowhere-9: coordinates unknown"),
            (broken("unknown consistency", lambda c: c.update(consistency="STRONG")),
             'consistency must be "eventual" or "strong"'),
            (broken("witness without strong", lambda c: c.update(witness_region="eu-west-2")),
             'witness_region is only for consistency "strong"'),
            (strong_variant("strong with two regions and no witness", pop_third),
             'consistency "strong" needs exactly 3 regions'),
            (strong_variant("strong with four regions", add_fourth),
             'consistency "strong" needs exactly 3 regions'),
            (strong_variant("strong with three regions and a witness", witness_and_three),
             'consistency "strong" needs exactly 3 regions'),
            (strong_variant("strong, witness also a replica", witness_is_replica),
             "witness_region eu-central-1 is also in regions"),
            (strong_variant("strong across region sets", across_sets),
             "are not all in one MRSC region set"),
            (strong_variant("strong, witness in another region set", witness_in_other_set),
             "are not all in one MRSC region set"),
            (broken("no auth section", lambda c: c.pop("auth")), 'missing "auth"'),
            (broken("auth jwks_url over http", lambda c: c["auth"].update(
                jwks_url="http://auth.example.com/jwks.json")), "auth.jwks_url is not valid"),
            (broken("auth with jwks_url and hs256", lambda c: c["auth"].update(hs256=True)),
             "give jwks_url or hs256 true, not both"),
            (broken("auth with neither jwks_url nor hs256", lambda c: c["auth"].update(jwks_url="")),
             "missing auth.jwks_url"),
            (broken("auth without audience", lambda c: c["auth"].pop("audience")), "missing auth.audience"),
            (broken("auth scope with a space", lambda c: c["auth"].update(read_scope="items read")),
             "auth.read_scope is not valid"),
            (broken("auth with one scope for reads and writes",
                    lambda c: c["auth"].update(write_scope=c["auth"]["read_scope"])),
             "auth.read_scope and auth.write_scope must differ"),
            (broken("unknown auth key", lambda c: c["auth"].update(secret="x")), "unknown key 'secret' in \"auth\""),
            (broken("unknown origin_auth", lambda c: c["api"].update(origin_auth="open")),
             'api.origin_auth must be "sigv4" or "none"'),
            (broken("require_iam_auth false", lambda c: c["api"].update(require_iam_auth=False)),
             "api.require_iam_auth false is no longer read"),
            (broken("origin_domain is the shared domain",
                    lambda c: c["regions"][0].update(origin_domain=c["domain"])),
             "origin_domain must be this region's own name"),
            (broken("two regions with one origin_domain",
                    lambda c: [r.update(origin_domain="origin.tandem.example.com") for r in c["regions"]]),
             "is already another region's"),
            (broken("malformed origin_domain", lambda c: c["regions"][0].update(origin_domain="Not A Name")),
             "origin_domain is not valid"),
            (broken("throttling below the N-1 share",
                    lambda c: c.update(capacity={"peak_rps_per_region": 500},
                                       api=dict(c["api"], throttling_rate_limit=900))),
             "api.throttling_rate_limit 900 is below the N-1 share, 1000 requests/s"),
            (broken("burst below the rate", lambda c: c["api"].update(throttling_burst_limit=10)),
             "api.throttling_burst_limit 10 is below api.throttling_rate_limit 100"),
            (broken("no peak", lambda c: c.update(capacity={"peak_rps_per_region": 0})),
             "capacity.peak_rps_per_region must be between 1 and"),
            (broken("peak as a string", lambda c: c.update(capacity={"peak_rps_per_region": "500"})),
             "capacity.peak_rps_per_region must be an integer"),
            (broken("unknown capacity key", lambda c: c.update(capacity={"peak_rps": 500})),
             "unknown key 'peak_rps' in \"capacity\""),
            (broken("alarm topic in another region", lambda c: c["regions"][0].update(
                alarm_topic_arn="arn:aws:sns:us-east-1:123456789012:tandem-capacity")),
             "alarm_topic_arn is in us-east-1"),
            (broken("vpc with a public range", lambda c: c.update(vpc={"enabled": True, "cidr": "8.8.0.0/16"})),
             "vpc.cidr must be a private range"),
            (broken("vpc range too large", lambda c: c.update(vpc={"enabled": True, "cidr": "10.0.0.0/8"})),
             "vpc.cidr must be a /16 to /24 network"),
            (broken("vpc range not a network", lambda c: c.update(vpc={"enabled": True, "cidr": "10.64.1.0/16"})),
             "vpc.cidr is not an IPv4 network"),
            (broken("vpc in four zones", lambda c: c.update(vpc={"enabled": True, "availability_zones": 4})),
             "vpc.availability_zones must be between 2 and 3"),
            (broken("vpc enabled as a string", lambda c: c.update(vpc={"enabled": "yes"})),
             "vpc.enabled must be true or false"),
            (broken("unknown vpc key", lambda c: c.update(vpc={"enabled": True, "subnet_ids": ["subnet-1"]})),
             "unknown key 'subnet_ids' in \"vpc\""),
            (("not JSON", write("not-json.json", "{ regions: ")), "not valid JSON"),
            (("missing file", tmp / "absent.json"), "cannot read config"),
        ]
        for (name, path), expect in cases:
            code, out, err = run_deploy(["--config", str(path), "--dry-run"], bin_dir)
            lines = err.strip().splitlines()
            check(f"refuses config: {name} (exit 2, one line)",
                  code == 2 and len(lines) == 1 and lines[0].startswith("deploy.py: config error: ")
                  and expect in lines[0] and out == "",
                  f"exit {code}, stderr {lines}, stdout {out[:200]!r}")

    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
