#!/usr/bin/env bash
# The chart's alerting rules, checked the way Prometheus will read them:
#   1. render the PrometheusRule (helm template, prometheusRule.enabled=true, the release and
#      namespace the rule tests expect, shards=2 so the shard alert is rendered too) and extract
#      its rule groups;
#   2. promtool check rules;
#   3. promtool test rules tests/alerts/rules.test.yaml (every alert, firing and quiet cases);
#   4. every alert has at least one test in that file, and its runbook_url anchor is a heading of
#      docs/runbook.md.
# Needs helm and promtool (scripts/install-tools.sh). Run by scripts/check-chart.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"

PY=python3
for cand in "$HOME/.local/share/ingress-failover-tools/venv/bin/python" python3; do
  if "$cand" -c 'import yaml' >/dev/null 2>&1; then PY="$cand"; break; fi
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
helm template ingress-failover charts/ingress-failover --namespace ingress-failover \
  --set prometheusRule.enabled=true \
  --set prometheusRule.runbookBaseUrl=https://runbook.test/runbook.md \
  --set shards=2 \
  --show-only templates/prometheusrule.yaml >"$WORK/prometheusrule.yaml"
"$PY" - "$WORK/prometheusrule.yaml" "$WORK/rules.yaml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
yaml.safe_dump({"groups": doc["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False, width=1000)
PY
promtool check rules "$WORK/rules.yaml"
cp tests/alerts/rules.test.yaml "$WORK/"
(cd "$WORK" && promtool test rules rules.test.yaml)
"$PY" - "$WORK/rules.yaml" tests/alerts/rules.test.yaml docs/runbook.md <<'PY'
import re, sys, yaml
rules = [r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r]
tests = yaml.safe_load(open(sys.argv[2]))["tests"]
tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
fired = {t["alertname"] for case in tests for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
def anchor(heading):  # GitHub's: lower case, punctuation dropped, spaces to dashes
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
anchors = {anchor(m) for m in re.findall(r"^#+ (.+)$", open(sys.argv[3]).read(), re.M)}
bad = []
for r in rules:
    name = r["alert"]
    if name not in fired:
        bad.append(f"{name}: no promtool test expects it to fire")
    url = r["annotations"]["runbook_url"]
    if url.split("#", 1)[1] not in anchors:
        bad.append(f"{name}: runbook_url {url} has no heading in docs/runbook.md")
print(f"{len(rules)} alerts; tested: {len(tested)}; firing cases for all: {not [b for b in bad if 'fire' in b]}")
if bad:
    sys.exit("\n".join(bad))
PY
