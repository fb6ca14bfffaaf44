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


def run_deploy(args, path_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUDFLARE_"))}
    env["PATH"] = str(path_dir)
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


def expected_deploy_headers(cfg):
    regions = [r["name"] for r in cfg["regions"]]
    p = cfg.get("stack_prefix", "tandem")
    want = [f"stack {p}-table in {regions[0]} from infra/templates/table.yaml",
            "build the regional function once (arm64)"]
    for r in regions:
        want += [f"stack {p}-role-{r} in {r} from infra/templates/function-role.yaml",
                 f"function {cfg['function']['name']} in {r}",
                 f"stack {p}-region-{r} in {r} from infra/templates/region.yaml"]
    want += [f"stack {p}-dns in us-east-1 from infra/templates/dns.yaml",
             f"KV namespace {kv_title(cfg)} (binding EDGE_STATE)",
             f"edge Worker via wrangler ({cfg['cloudflare']['worker_dir']}/)"]
    return want


def expected_teardown_headers(cfg):
    regions = [r["name"] for r in cfg["regions"]]
    p = cfg.get("stack_prefix", "tandem")
    want = [f"delete the edge Worker ({cfg['cloudflare']['worker_dir']}/)",
            f"KV namespace {kv_title(cfg)} (binding EDGE_STATE)",
            f"delete stack {p}-dns in us-east-1"]
    for r in reversed(regions):
        want += [f"delete stack {p}-region-{r} in {r}",
                 f"delete function {cfg['function']['name']} in {r}",
                 f"delete stack {p}-role-{r} in {r}"]
    want += [f"delete stack {p}-table in {regions[0]}"]
    return want


def check_plan(label, cfg, cfg_path, bin_dir, calls_log):
    code, out, err = run_deploy(["--config", str(cfg_path), "--dry-run"], bin_dir)
    check(f"{label}: dry run exits 0", code == 0, f"exit {code}: {err.strip()}")
    if code != 0:
        return
    calls = calls_log.read_text() if calls_log.exists() else ""
    check(f"{label}: dry run calls nothing (no aws, cargo or wrangler run)", calls == "",
          f"called: {calls.strip()}")

    blocks = steps(out)
    headers = [h for h, _ in blocks]
    want = expected_deploy_headers(cfg)
    check(f"{label}: every stack and step in order (table, build, role/function/region per "
          "region, dns, edge)", headers == want,
          f"got {headers}, want {want}")

    regions = [r["name"] for r in cfg["regions"]]
    missing = [r for r in regions if sum(r in h for h in headers) < 3]
    check(f"{label}: names every region ({', '.join(regions)})", not missing, f"missing {missing}")

    builds = [l for l in out.splitlines() if l.startswith("+ cargo lambda build")]
    check(f"{label}: one arm64 release build of the regional package",
          builds == ["+ cargo lambda build --release --arm64 -p regional"], f"got {builds}")

    deploys = [l for l in out.splitlines() if l.startswith("+ cargo lambda deploy")]
    bad = [l for l in deploys if "--iam-role" not in l or "TABLE_NAME=" not in l
           or "ADMIN_TOKEN" in l or "STATUS=" in l]
    check(f"{label}: cargo lambda deploy per region with its role and TABLE_NAME only",
          len(deploys) == len(regions) and not bad
          and all(f"--region {r} " in d for r, d in zip(regions, deploys)),
          f"got {deploys}")

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
    ok = (len(wrangler) == 1 and "--var 'REGIONS:[" in wrangler[0]
          and f"--var FALLBACK_ORIGIN:https://{cfg['domain']}" in wrangler[0]
          and isinstance(edge_regions, list)
          and [e.get("name") for e in edge_regions] == regions
          and all(set(e) == {"name", "origin", "lat", "lon", "weight"} for e in edge_regions)
          and all(isinstance(e["lat"], (int, float)) and isinstance(e["lon"], (int, float))
                  for e in edge_regions)
          and all(e["origin"] == f"<{cfg.get('stack_prefix', 'tandem')}-region-{e['name']}:ApiEndpoint>"
                  for e in edge_regions))
    check(f"{label}: wrangler deploy with REGIONS (name, origin, lat, lon, weight per region) "
          "and FALLBACK_ORIGIN", ok, f"wrangler: {wrangler}; REGIONS: {regions_line}")
    secret = [l for l in out.splitlines() if l.startswith("+ ") and " secret put AFFINITY_SECRET " in l]
    check(f"{label}: the affinity secret goes to wrangler secret put on stdin, never printed",
          len(secret) == 1 and secret[0].endswith("# value on stdin, not shown")
          and not re.search(r"[0-9a-f]{64}", out), f"secret lines: {secret}")

    code, out, err = run_deploy(["--config", str(cfg_path), "--dry-run", "teardown"], bin_dir)
    headers = [h for h, _ in steps(out)]
    want = expected_teardown_headers(cfg)
    check(f"{label}: teardown dry run runs the deploy backwards", code == 0 and headers == want,
          f"exit {code}, got {headers}, want {want}")


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
        check_plan("five regions", five, write("five.json", five), bin_dir, calls_log)

        # Multi-Region strong consistency: three replicas (the strong example), and two replicas
        # plus a witness region, which gets no stacks of its own and is no edge region.
        strong_example = json.loads(STRONG_EXAMPLE.read_text())
        strong = json.loads(json.dumps(strong_example))
        strong["cloudflare"]["wrangler"] = "wrangler"
        check_plan("strong example config", strong, write("strong.json", strong), bin_dir, calls_log)
        witness = json.loads(json.dumps(strong))
        witness["witness_region"] = witness["regions"].pop()["name"]
        check_plan("strong, two replicas and a witness", witness, write("witness.json", witness),
                   bin_dir, calls_log)

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
