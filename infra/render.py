#!/usr/bin/env python3
"""Renders infra/templates/table.yaml, region.yaml and function-role.yaml for concrete configs, for the offline
checks in check.sh.

    infra/render.py OUT_DIR

The table template chooses its shape with parameters and conditions (two to five replicas,
EVENTUAL or STRONG, a witness region or none), the region template too (SigV4 on the routes or
the opt-out, an origin name with the execute-api endpoint off or none with it on, a certificate
given or created; sized for N-1 regions), the role template too (the function's own VPC or
none), and cfn-guard rules cannot evaluate a condition. So for each variant below this script
takes the parameters deploy.py would pass (deploy.table_parameters, deploy.region_parameters,
deploy.role_parameters), checks them against the template's parameter constraints and its
Rules, resolves Ref to parameters, parameters named in Fn::Sub, Conditions, Fn::If, Fn::Select,
Fn::Split, Fn::Join and AWS::NoValue, and writes OUT_DIR/table.<variant>.json,
OUT_DIR/region.<variant>-<region>.json and OUT_DIR/role.<variant>-<region>.json: the templates
with nothing left to choose. check.sh
gives those renderings to cfn-lint, every cfn-guard rule and checkov.

Table variants: `example` (infra/config.example.json), `five` (five regions at 2000 requests/s,
eventual), `three` (three at 500: docs/infra.md's worked example), `strong`
(infra/config.strong.example.json, three replicas) and `strong-witness` (two of its replicas
and the third region as witness); each is checked against this file's own copy of the N-1
arithmetic. Region variants: `example` (both regions: SigV4, origin names, certificates given),
`five` (its first region: the certificate created, with the origin name as a second name),
`three` (a region of the worked example, with an alarm topic), `no-origin` (a region without an
origin name); and `open` (origin_auth "none"), checked here but not written, since it is the
opt-out the guard rules exist to refuse. Role variants: `example` (no VPC), `vpc` (the vpc
option's defaults: two zones) and `vpc3` (a /20, three zones).

This is this project's own evaluation of the few intrinsic functions the templates use, not
CloudFormation's; anything else (GetAtt, resources and pseudo parameters in Sub) is left as it
is. Prints one line per check, `ok <name>` or `FAIL <name>: <why>`. Needs PyYAML (cfn-lint's venv
has it).
"""

import json
import re
import sys
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parent
sys.path.insert(0, str(INFRA))
import deploy  # noqa: E402  (the same config checks and table parameters as a deploy)

TEMPLATE = INFRA / "templates" / "table.yaml"
REGION_TEMPLATE = INFRA / "templates" / "region.yaml"
ROLE_TEMPLATE = INFRA / "templates" / "function-role.yaml"
# Stands in for the edge-identity stack's GroupName output (a name IAM could have made).
EDGE_GROUP = "tandem-edge-identity-EdgeGroup-1A2B3C4D5E6F"
NO_VALUE = object()
RESULTS = []


def check(name, ok, why=""):
    RESULTS.append(ok)
    print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)


class RenderError(Exception):
    pass


# --- CloudFormation YAML: short-form tags become their long forms --------------------------------

class CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _tag)


def load_template(path):
    return yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 (SafeLoader subclass)


# --- Evaluation ------------------------------------------------------------------------------------

class Context:
    def __init__(self, template, params):
        self.template, self.params = template, params
        self.conditions = template.get("Conditions", {})
        self.memo = {}

    def condition(self, name):
        if name not in self.memo:
            if name not in self.conditions:
                raise RenderError(f"unknown condition {name}")
            self.memo[name] = self.boolean(self.conditions[name])
        return self.memo[name]

    def boolean(self, node):
        value = self.resolve(node)
        if not isinstance(value, bool):
            raise RenderError(f"cannot decide {json.dumps(node)[:120]}")
        return value

    def known(self, value):
        if isinstance(value, (str, int, bool)):
            return True
        return isinstance(value, list) and all(self.known(v) for v in value)

    def resolve(self, node):
        if isinstance(node, list):
            out = [self.resolve(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                return self.params[arg] if arg in self.params else node
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Sub" and isinstance(arg, str):
                text = re.sub(r"\$\{([A-Za-z0-9]+)\}",
                              lambda m: str(self.params.get(m.group(1), m.group(0))), arg)
                return text if "${" not in text else {key: text}
            if key in FUNCTIONS:
                args = self.resolve(arg)
                if self.known(args):
                    return FUNCTIONS[key](args)
                if key in BOOLEAN:
                    raise RenderError(f"cannot decide {key} of {json.dumps(arg)[:120]}")
                return {key: args}
        out = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}


def _select(args):
    index, items = args
    return items[int(index)]


FUNCTIONS = {
    "Fn::Join": lambda a: a[0].join(a[1]),
    "Fn::Split": lambda a: a[1].split(a[0]),
    "Fn::Select": _select,
    "Fn::Equals": lambda a: a[0] == a[1],
    "Fn::Not": lambda a: not a[0],
    "Fn::And": all,
    "Fn::Or": any,
    # Rule functions
    "Fn::Contains": lambda a: a[1] in a[0],
    "Fn::EachMemberIn": lambda a: all(v in a[1] for v in a[0]),
    "Fn::EachMemberEquals": lambda a: all(v == a[1] for v in a[0]),
}
BOOLEAN = {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::Contains", "Fn::EachMemberIn",
           "Fn::EachMemberEquals"}


def parameters(template, given):
    """Parameter values as CloudFormation would take them, or RenderError naming the broken one."""
    values = {}
    for name, spec in template.get("Parameters", {}).items():
        if name in given:
            raw = str(given[name])
        elif "Default" in spec:
            raw = str(spec["Default"])
        else:
            raise RenderError(f"parameter {name} has no value and no default")
        if spec.get("Type") == "CommaDelimitedList":
            values[name] = raw.split(",")
            continue
        if "AllowedValues" in spec and raw not in [str(v) for v in spec["AllowedValues"]]:
            raise RenderError(f"{name}={raw!r} is not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], raw):
            raise RenderError(f"{name}={raw!r} does not match {spec['AllowedPattern']}")
        if spec.get("Type") == "Number":
            try:
                number = float(raw)
            except ValueError:
                raise RenderError(f"{name}={raw!r} is not a number") from None
            for bound, ok in (("MinValue", lambda b: number >= b), ("MaxValue", lambda b: number <= b)):
                if bound in spec and not ok(float(spec[bound])):
                    raise RenderError(f"{name}={raw} breaks its {bound} {spec[bound]}")
            values[name] = int(number) if number.is_integer() else number
            continue
        values[name] = raw
    unknown = sorted(set(given) - set(values))
    if unknown:
        raise RenderError(f"the template has no parameter {unknown[0]}")
    return values


def broken_rules(template, ctx):
    """Descriptions of the template's Rules assertions these parameters break."""
    broken = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not ctx.boolean(rule["RuleCondition"]):
            continue
        for assertion in rule["Assertions"]:
            if not ctx.boolean(assertion["Assert"]):
                broken.append(f"{name}: {assertion.get('AssertDescription', 'assertion fails')}")
    return broken


def render(template, ctx, label):
    out = {"AWSTemplateFormatVersion": template["AWSTemplateFormatVersion"],
           "Description": f"{template.get('Description', '').strip()} [rendered for {label} by "
                          "infra/render.py]"}
    for section in ("Resources", "Outputs"):
        kept = {}
        for name, body in template.get(section, {}).items():
            if "Condition" in body and not ctx.condition(body["Condition"]):
                continue
            kept[name] = ctx.resolve({k: v for k, v in body.items() if k != "Condition"})
        out[section] = kept
    text = json.dumps(out)
    for leftover in ("Fn::If", "AWS::NoValue"):
        if leftover in text:
            raise RenderError(f"{leftover} left in the rendering")
    if _condition_left(out):
        raise RenderError("a Condition function left in the rendering")
    return out


def _condition_left(node):
    """True if a {"Condition": name} function is left (an IAM policy's Condition block is not
    one: it maps operators to keys)."""
    if isinstance(node, list):
        return any(_condition_left(v) for v in node)
    if isinstance(node, dict):
        if len(node) == 1 and isinstance(node.get("Condition"), str):
            return True
        return any(_condition_left(v) for v in node.values())
    return False


def variants():
    example = json.loads((INFRA / "config.example.json").read_text())
    five = json.loads(json.dumps(example))
    five["certificate_validation_zone_id"] = five["hosted_zone_id"]
    five["regions"] = [{"name": n} for n in
                       ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-northeast-1")]
    five["capacity"] = {"peak_rps_per_region": 2000}
    # docs/infra.md's worked example: three regions at 500 requests/s each.
    three = json.loads(json.dumps(five))
    three["regions"] = three["regions"][:3]
    three["capacity"] = {"peak_rps_per_region": 500}
    three["regions"][2]["alarm_topic_arn"] = "arn:aws:sns:us-east-1:123456789012:tandem-capacity"
    strong = json.loads((INFRA / "config.strong.example.json").read_text())
    witness = json.loads(json.dumps(strong))
    witness["witness_region"] = witness["regions"].pop()["name"]
    return [("example", example), ("five", five), ("three", three), ("strong", strong),
            ("strong-witness", witness)]


def load(out_dir, label, raw):
    """The config as deploy.py reads it, or None (and a failed check)."""
    path = out_dir / f"{label}.json"
    path.write_text(json.dumps(raw))
    try:
        return deploy.load_config(path)
    except deploy.ConfigError as err:
        check(f"{label}: deploy.py accepts the config", False, str(err))
        return None
    finally:
        path.unlink()


def region_variants():
    """(label, config, region names to render, written?)."""
    by_label = dict(variants())
    example, five, three = by_label["example"], by_label["five"], by_label["three"]
    no_origin = json.loads(json.dumps(example))
    no_origin["regions"][1]["origin_domain"] = ""
    opened = json.loads(json.dumps(example))
    opened["api"]["origin_auth"] = "none"
    return [("example", example, ["eu-west-1", "eu-central-1"], True),
            ("five", five, ["eu-west-1"], True),
            ("three", three, ["us-east-1"], True),
            ("no-origin", no_origin, ["eu-central-1"], True),
            ("open", opened, ["eu-west-1"], False)]


# The N-1 sizing, written out again here rather than taken from deploy.py, so that a change to
# either shows up as a difference (docs/infra.md, "Capacity for N-1 regions").
def expected_capacity(regions, peak, request_ms=100):
    survivor = -(-regions * peak // (regions - 1))          # ceil(N x peak / (N - 1))
    reserved = max(10, -(-survivor * request_ms // 1000))
    return {"survivor": survivor,
            "warm_read": max(2 * survivor, 12000),           # 2 read units per request, local
            "warm_write": max(3 * regions * peak, 4000),     # 3 write units, every replica
            "rate": survivor, "burst": 2 * survivor,
            "reserved": reserved, "concurrency_alarm": -(-reserved * 80 // 100)}


# docs/infra.md's worked example, by hand: 3 regions x 500 = 1500 requests/s; 1500 / 2 = 750 per
# survivor; reads 750 x 2 = 1500 (below the on-demand 12000); writes 1500 x 3 = 4500; 750 x 0.1 s
# = 75 reserved executions, alarm at 60.
WORKED_EXAMPLE = {"survivor": 750, "warm_read": 12000, "warm_write": 4500, "rate": 750,
                  "burst": 1500, "reserved": 75, "concurrency_alarm": 60}


def capacity_of(raw):
    capacity = raw.get("capacity", {})
    return expected_capacity(len(raw["regions"]), capacity.get("peak_rps_per_region", 50),
                             capacity.get("request_ms", 100))


def alarm_metrics(alarm):
    """(namespace, metric name, dimensions) of every metric an alarm reads."""
    props = alarm["Properties"]
    if "MetricName" in props:
        return [(props["Namespace"], props["MetricName"],
                 {d["Name"]: d["Value"] for d in props.get("Dimensions", [])})]
    return [(m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"],
             {d["Name"]: d["Value"] for d in m["MetricStat"]["Metric"].get("Dimensions", [])})
            for m in props.get("Metrics", []) if "MetricStat" in m]


def check_capacity(label, raw, cfg, region, rendered):
    """The region's N-1 sizing and its capacity alarms, against this file's own arithmetic."""
    want = capacity_of(raw)
    resources, outputs = rendered["Resources"], rendered.get("Outputs", {})
    stage = resources["Stage"]["Properties"]["DefaultRouteSettings"]
    got = {"rate": stage.get("ThrottlingRateLimit"), "burst": stage.get("ThrottlingBurstLimit"),
           "survivor": outputs.get("SurvivorRequestsPerSecond", {}).get("Value"),
           "reserved": outputs.get("ReservedConcurrency", {}).get("Value"),
           "concurrency_alarm": resources.get("FunctionConcurrencyAlarm", {}).get(
               "Properties", {}).get("Threshold")}
    keys = ("rate", "burst", "survivor", "reserved", "concurrency_alarm")
    check(f"{label}: sized for N-1 of {len(raw['regions'])} regions: throttling {want['rate']}/"
          f"{want['burst']} requests/s, share {want['survivor']}, {want['reserved']} reserved "
          f"executions (alarm at {want['concurrency_alarm']})",
          got == {k: want[k] for k in keys}, f"got {got}, want {({k: want[k] for k in keys})}")
    if label.startswith("region.three-"):
        check(f"{label}: docs/infra.md's worked example: throttling 750/1500, 75 reserved, alarm at 60",
              got == {k: WORKED_EXAMPLE[k] for k in keys}, f"got {got}")
    metrics = [m for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
               for m in alarm_metrics(r)]
    fn, table = cfg["function"]["name"], cfg["table"]
    api = {"Ref": "Api"}
    want_metrics = [("AWS/DynamoDB", "ReadThrottleEvents", {"TableName": table}),
                    ("AWS/DynamoDB", "WriteThrottleEvents", {"TableName": table}),
                    ("AWS/Lambda", "Throttles", {"FunctionName": fn}),
                    ("AWS/Lambda", "ConcurrentExecutions", {"FunctionName": fn}),
                    ("AWS/ApiGateway", "5xx", {"ApiId": api}),
                    ("AWS/ApiGateway", "Count", {"ApiId": api}),
                    ("tandem", "Api429", {"ApiId": api})]
    missing = [m for m in want_metrics if m not in metrics]
    filters = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::MetricFilter"]
    counts_429 = any(f.get("FilterPattern") == '{ $.status = "429" }'
                     and f.get("LogGroupName") == {"Ref": "AccessLogGroup"}
                     and f["MetricTransformations"][0]["MetricName"] == "Api429" for f in filters)
    topic = region["alarm_topic"]
    actions = {json.dumps(r["Properties"].get("AlarmActions")) for r in resources.values()
               if r["Type"] == "AWS::CloudWatch::Alarm"}
    check(f"{label}: alarms on DynamoDB throttles ({table}), Lambda throttles and concurrency "
          f"({fn}), API 5xx and 429 rates (429s counted from the access log); notify "
          f"{topic or 'nothing'}", not missing and counts_429
          and actions == {json.dumps([topic] if topic else None)},
          f"missing metrics {missing}, 429 filter {counts_429}, alarm actions {actions}")


def check_region(label, cfg, region, rendered):
    """What the rendering of region.yaml must say for this config and region."""
    resources, outputs = rendered["Resources"], rendered.get("Outputs", {})
    sigv4 = cfg["api"]["origin_auth"] == "sigv4"
    origin = region["origin_domain"]
    routes = {r["Properties"]["RouteKey"]: r["Properties"].get("AuthorizationType")
              for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    want_routes = {k: "NONE" if k == "GET /health" or not sigv4 else "AWS_IAM" for k in routes}
    check(f"{label}: routes: GET /health open, every other route "
          f"{'AWS_IAM' if sigv4 else 'NONE (the opt-out)'}",
          routes == want_routes and "GET /health" in routes and "$default" in routes,
          f"got {routes}")
    api = resources["Api"]["Properties"]
    names = sorted(r["Properties"]["DomainName"] for r in resources.values()
                   if r["Type"] == "AWS::ApiGatewayV2::DomainName")
    records = [r["Properties"]["Name"] for r in resources.values() if r["Type"] == "AWS::Route53::RecordSet"]
    host = outputs.get("ApiHost", {}).get("Value")
    if origin:
        ok = (api.get("DisableExecuteApiEndpoint") is True and names == sorted([cfg["domain"], origin])
              and records == [origin] and host == origin
              and outputs.get("ApiEndpoint", {}).get("Value") == f"https://{origin}")
        what = f"execute-api endpoint off; reached as {origin} (domain, alias record, ApiHost)"
    else:
        ok = (api.get("DisableExecuteApiEndpoint") is False and names == [cfg["domain"]]
              and not records and isinstance(host, dict))
        what = "no origin name: execute-api endpoint kept as the region's address"
    check(f"{label}: {what}", ok, f"Disable={api.get('DisableExecuteApiEndpoint')} domains={names} "
          f"records={records} ApiHost={host}")
    policy = resources.get("EdgeInvokePolicy", {}).get("Properties", {})
    check(f"{label}: the edge group may invoke this API only",
          policy.get("Groups") == [EDGE_GROUP] and all(
              st["Action"] == "execute-api:Invoke" for st in policy["PolicyDocument"]["Statement"]),
          f"got {policy}")
    cert = resources.get("Certificate")
    if cert:
        sans = cert["Properties"].get("SubjectAlternativeNames", [])
        validated = [o["DomainName"] for o in cert["Properties"]["DomainValidationOptions"]]
        check(f"{label}: the certificate it creates names {cfg['domain']}"
              f"{' and ' + origin if origin else ''}",
              sans == ([origin] if origin else []) and validated == [cfg["domain"]] + ([origin] if origin else []),
              f"SANs {sans}, validated {validated}")


def render_regions(out_dir):
    template = load_template(REGION_TEMPLATE)
    for label, raw, names, written in region_variants():
        cfg = load(out_dir, f"region-{label}", raw)
        if cfg is None:
            continue
        for region in (r for r in cfg["regions"] if r["name"] in names):
            name = f"region.{label}-{region['name']}"
            given = deploy.region_parameters(cfg, region, EDGE_GROUP)
            try:
                ctx = Context(template, parameters(template, given))
                broken = broken_rules(template, ctx)
                check(f"{name}: the region parameters deploy.py passes meet the template's "
                      "constraints and Rules", not broken, "; ".join(broken))
                rendered = render(template, ctx, f"{label}, {region['name']}")
            except (RenderError, KeyError, IndexError, ValueError, TypeError) as err:
                check(f"{name}: region.yaml renders", False, f"{type(err).__name__}: {err}")
                continue
            try:
                check_region(name, cfg, region, rendered)
                check_capacity(name, raw, cfg, region, rendered)
            except (KeyError, TypeError, AttributeError) as err:
                check(f"{name}: rendering has the expected shape", False, f"{type(err).__name__}: {err}")
            if written:
                (out_dir / f"{name}.json").write_text(json.dumps(rendered, indent=2) + "\n")

    # The region template's own Rules can fail too.
    for what, given, expect in [
        ("an origin name without its zone",
         {"OriginDomainName": "eu-west-1.api.example.com", "OriginHostedZoneId": ""},
         "OriginNameNeedsZone:"),
        ("no certificate and no validation zone", {"CertificateArn": "", "HostedZoneId": ""},
         "CertificateOrZone:"),
    ]:
        base = {"DomainName": "api.example.com", "EdgeGroupName": EDGE_GROUP,
                "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/1",
                "OriginDomainName": "", "OriginHostedZoneId": ""}
        try:
            broken = broken_rules(template, Context(template, parameters(template, {**base, **given})))
        except RenderError as err:
            broken = [f"error: {err}"]
        check(f"region.yaml's Rules refuse {what}", any(b.startswith(expect) for b in broken),
              f"broken rules: {broken}")


def role_variants():
    """(label, config) for function-role.yaml: without a VPC (the default), and the vpc option
    with two and with three availability zones."""
    example = dict(variants())["example"]
    vpc2 = json.loads(json.dumps(example))
    vpc2["vpc"] = {"enabled": True}
    vpc3 = json.loads(json.dumps(example))
    vpc3["vpc"] = {"enabled": True, "cidr": "10.20.0.0/20", "availability_zones": 3}
    return [("example", example), ("vpc", vpc2), ("vpc3", vpc3)]


def ref_name(value):
    return value.get("Ref") if isinstance(value, dict) else None


def check_role(label, cfg, rendered):
    """The function's network in a rendering of function-role.yaml: none without the vpc option;
    with it, a VPC of the config's range, one private subnet per zone, every subnet on a route
    table that the DynamoDB gateway endpoint serves, no internet or NAT gateway, and a security
    group with no inbound rule and only HTTPS out; the outputs deploy.py gives cargo lambda."""
    resources, outputs = rendered["Resources"], rendered.get("Outputs", {})
    by_type = {}
    for name, body in resources.items():
        by_type.setdefault(body["Type"], {})[name] = body["Properties"]
    ec2 = sorted(t for t in by_type if t.startswith("AWS::EC2::"))
    vpc = cfg["vpc"]
    if not vpc["enabled"]:
        check(f"{label}: no vpc option: no network resources and no subnet outputs",
              not ec2 and "FunctionSubnetIds" not in outputs, f"EC2 types {ec2}, outputs {sorted(outputs)}")
        return
    vpcs = by_type.get("AWS::EC2::VPC", {})
    subnets = by_type.get("AWS::EC2::Subnet", {})
    assoc = by_type.get("AWS::EC2::SubnetRouteTableAssociation", {}).values()
    endpoints = [e for e in by_type.get("AWS::EC2::VPCEndpoint", {}).values()
                 if e.get("VpcEndpointType") == "Gateway"
                 and e.get("ServiceName") == {"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"}]
    served = {ref_name(t) for e in endpoints for t in e.get("RouteTableIds", [])}
    tables_of = {ref_name(a["SubnetId"]): ref_name(a["RouteTableId"]) for a in assoc}
    ok = (list(vpcs.values()) == [dict(list(vpcs.values())[0], CidrBlock=vpc["cidr"])]
          and sorted(s_["CidrBlock"] for s_ in subnets.values()) == sorted(vpc["subnets"])
          and all(s_.get("MapPublicIpOnLaunch") is False for s_ in subnets.values())
          and len(endpoints) == 1 and all(tables_of.get(n) in served for n in subnets)
          and not {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::Route"} & set(ec2))
    check(f"{label}: VPC {vpc['cidr']}, {len(vpc['subnets'])} private subnets "
          f"({', '.join(vpc['subnets'])}), each on a route table the DynamoDB gateway endpoint "
          "serves; no internet gateway, NAT or other route", ok,
          f"VPC {list(vpcs.values())}, subnets {[s_['CidrBlock'] for s_ in subnets.values()]}, "
          f"route tables {tables_of}, endpoint tables {served}, EC2 types {ec2}")
    groups = by_type.get("AWS::EC2::SecurityGroup", {})
    rules = [r for t in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
             for r in by_type.get(t, {})]
    egress = [g.get("SecurityGroupEgress") for g in groups.values()]
    check(f"{label}: the function's security group: no inbound rule, out only TCP 443",
          len(groups) == 1 and not rules and not any("SecurityGroupIngress" in g for g in groups.values())
          and all(len(e or []) == 1 and e[0]["IpProtocol"] == "tcp" and e[0]["FromPort"] == 443
                  and e[0]["ToPort"] == 443 for e in egress), f"groups {groups}, separate rules {rules}")
    subnet_output = outputs.get("FunctionSubnetIds", {}).get("Value")
    want = {"Fn::Join": [",", [{"Ref": n} for n in sorted(subnets)]]}
    check(f"{label}: outputs the function's subnets and security group for cargo lambda deploy",
          subnet_output == want and "FunctionSecurityGroupId" in outputs,
          f"FunctionSubnetIds {subnet_output}, want {want}; outputs {sorted(outputs)}")


def render_roles(out_dir):
    template = load_template(ROLE_TEMPLATE)
    for label, raw in role_variants():
        cfg = load(out_dir, f"role-{label}", raw)
        if cfg is None:
            continue
        region = cfg["regions"][0]["name"]
        name = f"role.{label}-{region}"
        try:
            ctx = Context(template, parameters(template, deploy.role_parameters(cfg)))
            broken = broken_rules(template, ctx)
            check(f"{name}: the role parameters deploy.py passes meet the template's constraints "
                  "and Rules", not broken, "; ".join(broken))
            rendered = render(template, ctx, f"{label}, {region}")
        except (RenderError, KeyError, IndexError, ValueError, TypeError) as err:
            check(f"{name}: function-role.yaml renders", False, f"{type(err).__name__}: {err}")
            continue
        try:
            check_role(name, cfg, rendered)
        except (KeyError, TypeError, AttributeError, IndexError) as err:
            check(f"{name}: rendering has the expected shape", False, f"{type(err).__name__}: {err}")
        (out_dir / f"{name}.json").write_text(json.dumps(rendered, indent=2) + "\n")
    try:
        broken = broken_rules(template, Context(template, parameters(template, {
            "VpcCidr": "10.64.0.0/16", "SubnetCidrs": "10.64.0.0/18"})))
    except RenderError as err:
        broken = [f"error: {err}"]
    check("function-role.yaml's Rules refuse a VPC with one subnet",
          any(b.startswith("SubnetsWithTheVpc:") for b in broken), f"broken rules: {broken}")


def main(argv):
    if len(argv) != 2:
        print("usage: infra/render.py OUT_DIR", file=sys.stderr)
        return 2
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    template = load_template(TEMPLATE)

    for label, raw in variants():
        cfg = load(out_dir, label, raw)
        if cfg is None:
            continue
        given = deploy.table_parameters(cfg)
        try:
            ctx = Context(template, parameters(template, given))
            broken = broken_rules(template, ctx)
            check(f"{label}: the table parameters deploy.py passes meet the template's constraints "
                  "and Rules", not broken, "; ".join(broken))
            rendered = render(template, ctx, label)
        except (RenderError, KeyError, IndexError, ValueError, TypeError) as err:
            check(f"{label}: table.yaml renders", False, f"{type(err).__name__}: {err}")
            continue

        table = rendered["Resources"]["Table"]["Properties"]
        want = {
            "replicas": [r["name"] for r in cfg["regions"]],
            "witnesses": [cfg["witness"]] if cfg["witness"] else [],
            "consistency": "STRONG" if cfg["consistency"] == "strong" else None,
            "ttl": None if cfg["consistency"] == "strong" else {"AttributeName": "expires_at",
                                                                 "Enabled": True},
            "warm": {"ReadUnitsPerSecond": capacity_of(raw)["warm_read"],
                     "WriteUnitsPerSecond": capacity_of(raw)["warm_write"]},
        }
        got = {
            "replicas": [r.get("Region") for r in table.get("Replicas", [])],
            "witnesses": [w.get("Region") for w in table.get("GlobalTableWitnesses", [])],
            "consistency": table.get("MultiRegionConsistency"),
            "ttl": table.get("TimeToLiveSpecification"),
            "warm": table.get("WarmThroughput"),
        }
        check(f"{label}: rendering has replicas {', '.join(want['replicas'])}"
              f"{', witness ' + cfg['witness'] if cfg['witness'] else ''}, "
              f"{'MultiRegionConsistency STRONG and no TTL' if want['consistency'] else 'TTL on expires_at'}, "
              f"warm throughput {want['warm']['ReadUnitsPerSecond']} reads/"
              f"{want['warm']['WriteUnitsPerSecond']} writes per second",
              got == want, f"got {got}, want {want}")
        if label == "three":
            worked = {"ReadUnitsPerSecond": WORKED_EXAMPLE["warm_read"],
                      "WriteUnitsPerSecond": WORKED_EXAMPLE["warm_write"]}
            check("three: docs/infra.md's worked example (3 regions x 500 requests/s): warm "
                  "throughput 12000 reads/4500 writes per second", got["warm"] == worked,
                  f"got {got['warm']}, want {worked}")
        (out_dir / f"table.{label}.json").write_text(json.dumps(rendered, indent=2) + "\n")

    # The template's own Rules can fail: a witness on an EVENTUAL table, a witness that is a replica.
    for name, given, expect in [
        ("a witness region on an EVENTUAL table",
         {"ReplicaRegions": "eu-west-1,eu-central-1", "WitnessRegion": "eu-west-2"},
         "WitnessOnlyForStrong: A witness region exists only in a STRONG"),
        ("a witness region that is also a replica",
         {"ReplicaRegions": "eu-west-1,eu-central-1", "WitnessRegion": "eu-central-1",
          "MultiRegionConsistency": "STRONG"},
         "WitnessOnlyForStrong: The witness region must not also be a replica region"),
    ]:
        try:
            broken = broken_rules(template, Context(template, parameters(template, given)))
        except RenderError as err:
            broken = [f"error: {err}"]
        check(f"table.yaml's Rules refuse {name}", any(b.startswith(expect) for b in broken),
              f"broken rules: {broken}")

    render_regions(out_dir)
    render_roles(out_dir)
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
