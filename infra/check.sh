#!/usr/bin/env bash
# Offline checks for infra/: the CloudFormation templates and renderings of table.yaml,
# region.yaml and function-role.yaml for concrete configs, the project's cfn-guard rules (and that
# each rule can fail), checkov, and deploy.py's dry run and config refusals. Nothing here reaches
# the network or AWS.
#
# Tools come from the environment (the project's test command sets them):
#   CFN_LINT   path to cfn-lint        CFN_GUARD  path to cfn-guard (3.x)
#   CHECKOV    path to checkov         PYTHON     python3 (3.8+) with PyYAML (cfn-lint's venv has it)
# Prints one line per check and, last, exactly `infra: N passed, M failed`; exits 1 if any failed.
set -euo pipefail

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$INFRA")"
cd "$ROOT"

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$1"; }
bad() {
  FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$1"
  if [ -n "${2:-}" ]; then sed -n '1,40s/^/      /p' <<<"$2"; fi
}
# Runs "$@" and keeps its combined output in OUT and its exit status in RC (never trips set -e).
# Outputs are searched with `grep -q ... <<<"$OUT"`, never `printf | grep -q`: grep -q stops at
# the first match, printf can then die of SIGPIPE, and with pipefail a match would read as none.
capture() { OUT=$("$@" 2>&1) && RC=0 || RC=$?; }
# A tool named by an env var must be set and executable; otherwise it is one failed check.
have() {
  local var=$1 value=${!1:-}
  if [ -n "$value" ] && command -v "$value" >/dev/null 2>&1; then return 0; fi
  bad "$var is not set to a runnable program (got '${value}')"; return 1
}

templates=("$INFRA"/templates/*.yaml)
relative_templates=("${templates[@]#"$ROOT"/}")

# --- renderings: table.yaml and region.yaml with every condition decided ----------------------------
# cfn-guard cannot evaluate Fn::If, so infra/render.py renders table.yaml with the parameters
# deploy.py passes for five configs (eventual with two, three and five regions, strong with three
# replicas, strong with two and a witness) and region.yaml for five regions (SigV4 with origin
# names, the certificate given or created, N-1 sizing for two, three and five regions, and a
# region without an origin name) and function-role.yaml without and with the function's own VPC
# (two and three zones); it checks the N-1 arithmetic and the network in them, and the
# renderings go through every check below.
RENDERED=$(mktemp -d "${TMPDIR:-/tmp}/tandem-rendered.XXXXXX")
trap 'rm -rf "$RENDERED"' EXIT
rendered=()
python_ok=false
if have PYTHON; then
  python_ok=true
  capture "$PYTHON" "$INFRA/render.py" "$RENDERED"
  while IFS= read -r line; do
    case $line in
      "ok "*) ok "render: ${line#ok }" ;;
      "FAIL "*) bad "render: ${line#FAIL }" ;;
    esac
  done <<<"$OUT"
  if [ "$RC" -ne 0 ] && ! grep -q '^FAIL ' <<<"$OUT"; then
    bad "render.py crashed (exit $RC)" "$OUT"
  fi
  shopt -s nullglob
  rendered=("$RENDERED"/*.json)
  shopt -u nullglob
  [ "${#rendered[@]}" -gt 0 ] || bad "render: no renderings were written"
fi
rendered_names=$(for f in "${rendered[@]}"; do basename "$f"; done | tr '\n' ' ')

# --- cfn-lint: schema, enums, Ref/GetAtt, region availability ----------------------------------
if have CFN_LINT; then
  capture "$CFN_LINT" --regions eu-west-1 eu-central-1 --non-zero-exit-code warning -- "${relative_templates[@]}"
  if [ "$RC" -eq 0 ]; then ok "cfn-lint: ${#templates[@]} templates clean (warnings count as failures)"
  else bad "cfn-lint: findings in infra/templates (exit $RC)" "$OUT"; fi
  if [ "${#rendered[@]}" -gt 0 ]; then
    capture "$CFN_LINT" --regions eu-west-1 eu-central-1 --non-zero-exit-code warning -- "${rendered[@]}"
    if [ "$RC" -eq 0 ]; then ok "cfn-lint: ${#rendered[@]} renderings clean (${rendered_names% })"
    else bad "cfn-lint: findings in the renderings (exit $RC)" "$OUT"; fi
  fi
fi

# --- cfn-guard: the project's rules ---------------------------------------------------------------
# One named rule per file infra/guard/<rule>.guard; infra/guard/bad/<rule>--<case>.yaml are
# templates that rule must reject. "The real templates" are infra/templates and the renderings.
if have CFN_GUARD; then
  guard_data=(--data "$INFRA/templates")
  [ "${#rendered[@]}" -eq 0 ] || guard_data+=(--data "$RENDERED")
  capture "$CFN_GUARD" validate --rules "$INFRA/guard" "${guard_data[@]}" --show-summary all
  guard_all=$OUT
  if [ "$RC" -eq 0 ]; then ok "cfn-guard: the real templates and the renderings pass every rule"
  else bad "cfn-guard: the real templates or the renderings break a rule (exit $RC)" \
    "$(printf '%s\n' "$guard_all" | grep -E 'Status = FAIL| FAIL$|Message +=|Error +=' | sed 's/^ *//')"; fi

  for rule_file in "$INFRA"/guard/*.guard; do
    rule=$(basename "$rule_file" .guard)
    if ! grep -qE "^rule $rule( |\{)" "$rule_file"; then
      bad "cfn-guard rule $rule: $rule_file must define 'rule $rule'"; continue
    fi
    if grep -qE "/$rule +FAIL\$" <<<"$guard_all"; then
      bad "cfn-guard rule $rule: fails on a real template (see above)"; continue
    fi
    # A rule that only ever SKIPs on the real templates checks nothing.
    if ! grep -qE "/$rule +PASS\$" <<<"$guard_all"; then
      bad "cfn-guard rule $rule: applies to none of the real templates (only SKIP)"; continue
    fi
    cases=("$INFRA"/guard/bad/"$rule"--*.yaml)
    if [ ! -e "${cases[0]}" ]; then
      bad "cfn-guard rule $rule: no bad template infra/guard/bad/$rule--*.yaml shows it can fail"; continue
    fi
    ok "cfn-guard rule $rule: passes the real templates, ${#cases[@]} bad template(s)"
    for case_file in "${cases[@]}"; do
      name=${case_file#"$INFRA"/}
      capture "$CFN_GUARD" validate --rules "$rule_file" --data "$case_file" --show-summary fail
      # 19 is cfn-guard's "validation failed"; anything else (0, or 5 for a broken rule) is wrong.
      if [ "$RC" -eq 19 ] && grep -qE "/$rule +FAIL\$" <<<"$OUT"; then
        ok "cfn-guard rule $rule rejects $name"
      else
        bad "cfn-guard rule $rule does not reject $name (exit $RC)" "$OUT"
      fi
    done
  done
  for case_file in "$INFRA"/guard/bad/*.yaml; do
    rule=$(basename "$case_file" .yaml); rule=${rule%%--*}
    [ -f "$INFRA/guard/$rule.guard" ] || bad "cfn-guard: ${case_file#"$INFRA"/} names no rule file guard/$rule.guard"
  done
fi

# --- checkov ---------------------------------------------------------------------------------------
if have CHECKOV; then
  capture "$CHECKOV" -d infra/templates --framework cloudformation --skip-download --quiet --compact \
    --config-file infra/.checkov.yaml
  if [ "$RC" -eq 0 ]; then ok "checkov: no failed checks ($(printf '%s\n' "$OUT" | grep -oE 'Passed checks: [0-9]+' || echo 'none run'))"
  else bad "checkov: failed checks (exit $RC)" "$OUT"; fi
  if [ "${#rendered[@]}" -gt 0 ]; then
    capture "$CHECKOV" -d "$RENDERED" --framework cloudformation --skip-download --quiet --compact \
      --config-file infra/.checkov.yaml
    if [ "$RC" -eq 0 ]; then ok "checkov: no failed checks on the renderings ($(printf '%s\n' "$OUT" | grep -oE 'Passed checks: [0-9]+' || echo 'none run'))"
    else bad "checkov: failed checks on the renderings (exit $RC)" "$OUT"; fi
  fi
  # Every skipped check must say why, in a comment right above it.
  unexplained=$(awk '
    /^skip-check:/ { inside = 1; next }
    inside && /^[^ #]/ { inside = 0 }
    inside && /^ *- / { if (prev !~ /^ *#/) print $2 }
    { prev = $0 }' infra/.checkov.yaml)
  if [ -z "$unexplained" ]; then ok "checkov: every skipped check in infra/.checkov.yaml has its reason"
  else bad "checkov: skipped without a reason: $unexplained"; fi
fi

# --- deploy.py: dry run and config refusals ---------------------------------------------------------
if $python_ok; then
  capture "$PYTHON" "$INFRA/check_deploy.py"
  while IFS= read -r line; do
    case $line in
      "ok "*) ok "deploy.py: ${line#ok }" ;;
      "FAIL "*) bad "deploy.py: ${line#FAIL }" ;;
    esac
  done <<<"$OUT"
  if [ "$RC" -ne 0 ] && ! grep -q '^FAIL ' <<<"$OUT"; then
    bad "deploy.py checks crashed (exit $RC)" "$OUT"
  fi
fi

echo "infra: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
