#!/usr/bin/env bash
# shellcheck disable=SC2317  # (file-wide) the functions below run indirectly, through check()
# Chart checks, run here and in CI (after scripts/install-tools.sh):
#   - crds/ drift: the chart's CRD is byte-identical to the repository's generated one (cmp)
#   - rbac-rules.yaml is the single source of the rendered Roles/ClusterRoles
#   - helm lint --strict for the value variants below
#   - helm template | kubernetes-validate --strict against the oldest and newest Kubernetes
#     versions we support; CRD kinds (FailoverPolicy, ServiceMonitor, PrometheusRule) are filtered
#     out explicitly (the CRD itself is validated as a CustomResourceDefinition)
#   - PrometheusRule alerts carry severity, summary, description and runbook_url; promtool checks
#     and unit-tests them, and each runbook_url is a heading of docs/runbook.md
#     (scripts/check-alerts.sh)
#   - checkov on the rendered manifests (every finding fixed or waived in the chart with a reason)
#   - manifests/install.yaml drift (re-rendered into a temp file and diffed)
# Exits non-zero if anything failed; prints "chart checks: N passed, M failed" at the end.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$HOME/.local/bin:$PATH"
export BC_SKIP_MAPPING=TRUE   # checkov: never reach the vendor's servers

CHART=charts/ingress-failover
RELEASE=ingress-failover
NAMESPACE=ingress-failover
# Oldest supported (Chart.yaml kubeVersion >=1.30) and newest schema kubernetes-validate ships.
K8S_VERSIONS=(1.30.0 1.37.0)
# Kinds whose schema comes from a CRD, not from Kubernetes: never sent to kubernetes-validate.
CRD_KINDS="FailoverPolicy ServiceMonitor PrometheusRule"

# name|helm --set arguments
VARIANTS=(
  "default|"
  "namespaced-rbac|--set rbac.scope=namespace --set watchNamespaces={shop}"
  "monitoring-networkpolicy|--set metrics.serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafana.dashboard.enabled=true --set networkPolicy.enabled=true --set networkPolicy.apiServerCIDRs={172.18.0.0/16} --set networkPolicy.probeEgress[0].cidr=10.244.0.0/16 --set networkPolicy.probeEgress[0].ports={8080} --set networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring"
  "plain-metrics|--set gatewayAPI.enabled=true --set metrics.secure=false --set kubeApi.priorityAndFairness.enabled=true --set kubeApi.qps=0 --set replicaCount=3 --set shards=6"
  "metrics-cert-secret|--set metrics.certSecret=ingress-failover-metrics-tls --set trustUnmanagedEndpointSlices=true --set metrics.serviceMonitor.enabled=true"
  "external-dns|--set externalDNS.enabled=true"
  "everything-namespaced|--set gatewayAPI.enabled=true --set rbac.scope=namespace --set watchNamespaces={shop} --set externalDNS.enabled=true --set ingressControllerNamespaces={ingress-nginx} --set probeAllowlist={10.0.0.0/8} --set policySelector=team=web --set metrics.serviceMonitor.enabled=true --set prometheusRule.enabled=true --set networkPolicy.enabled=true --set networkPolicy.probeEgress[0].cidr=10.0.0.0/8 --set spreadPolicy=hard"
)

PASS=0
FAIL=0
FAILED=()
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

check() { # <description> <command...>
  local desc="$1"
  shift
  local log="$WORK/log"
  if "$@" >"$log" 2>&1; then
    PASS=$((PASS + 1))
    echo "ok    $desc"
  else
    FAIL=$((FAIL + 1))
    FAILED+=("$desc")
    echo "FAIL  $desc"
    sed 's/^/      /' "$log" | tail -40
  fi
}

# python with PyYAML and jsonschema: the tools virtualenv's (install-tools.sh) or the system one.
PY=python3
for cand in "$HOME/.local/share/ingress-failover-tools/venv/bin/python" python3; do
  if "$cand" -c 'import yaml, jsonschema' >/dev/null 2>&1; then PY="$cand"; break; fi
done

for tool in helm kubernetes-validate checkov promtool; do
  check "tool present: $tool" command -v "$tool"
done

check "crds/ drift: $CHART/crds is byte-identical to crds/" \
  cmp crds/failoverpolicies.ingressfailover.io.yaml "$CHART/crds/failoverpolicies.ingressfailover.io.yaml"

render() { # <variant args> <out>
  # shellcheck disable=SC2086
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --include-crds $1 >"$2"
}

# Drops the CRD kinds, saying which were dropped; fails on an empty result.
filter_crd_kinds() { # <in> <out>
  CRD_KINDS="$CRD_KINDS" "$PY" - "$1" "$2" <<'PY'
import os, sys, yaml
skip = set(os.environ["CRD_KINDS"].split())
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kept = [d for d in docs if d.get("kind") not in skip]
for d in docs:
    if d.get("kind") in skip:
        print(f"skipped (CRD kind, no Kubernetes schema): {d['kind']}/{d['metadata']['name']}")
if not kept:
    sys.exit("nothing left to validate")
yaml.safe_dump_all(kept, open(sys.argv[2], "w"), sort_keys=False)
PY
}

validate() { # <file> <version>
  local out
  out="$(kubernetes-validate --strict --kubernetes-version "$2" "$1" 2>&1)"
  local rc=$?
  echo "$out"
  if grep -q "Couldn't find schema" <<<"$out"; then
    echo "unknown kind above: add it to CRD_KINDS only if its schema comes from a CRD"
    return 1
  fi
  return "$rc"
}

rbac_single_source() { # <rendered file>
  "$PY" - "$1" "$CHART/rbac-rules.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rules = yaml.safe_load(open(sys.argv[2]))
def norm(r):
    return (r["apiGroup"], r["resource"], tuple(r["verbs"]), r.get("scope", "watched"))
# A rule of a feature (`feature: externalDNS`) is wanted exactly when the rendered Deployment
# runs with the feature's flag.
deployments = [d for d in docs if d["kind"] == "Deployment"]
flags = {"externalDNS": "--dns-endpoints", "gatewayAPI": "--gateway-api"}
on = {f for f, flag in flags.items() if any(flag in str(d) for d in deployments)}
unknown = {r["feature"] for r in rules if r.get("feature")} - set(flags)
if unknown:
    sys.exit(f"rbac-rules.yaml names unknown features {sorted(unknown)}")
want = sorted(norm(r) for r in rules if not r.get("feature") or r["feature"] in on)
got = []
# The --metrics-secure roles (templates/metrics-rbac.yaml: TokenReview/SubjectAccessReview for
# the controller, get /metrics for scrapers) and the roles aggregated into view/edit/admin for
# people (templates/aggregated-roles.yaml) are not what the controller does with policies.
METRICS_ROLES = ("-metrics-auth", "-metrics-reader", "-aggregate-view", "-aggregate-edit")
for d in docs:
    if d["kind"] not in ("Role", "ClusterRole") or d["metadata"]["name"].endswith(METRICS_ROLES):
        continue
    scope = "operatorNamespace" if d["metadata"]["name"].endswith("-leader-election") else "watched"
    for r in d["rules"]:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                got.append((g, res, tuple(r["verbs"]), scope))
got.sort()
if got != want:
    print("rendered RBAC rules differ from rbac-rules.yaml")
    print("rendered:", got)
    print("rbac-rules.yaml:", want)
    sys.exit(1)
for d in docs:
    for r in d.get("rules", []) if d["kind"] in ("Role", "ClusterRole") else []:
        if "*" in r["verbs"] or "*" in r.get("resources", []) or "*" in r.get("apiGroups", []):
            sys.exit(f"wildcard in {d['kind']}/{d['metadata']['name']}")
print(f"{len(want)} rules, rendered exactly from rbac-rules.yaml, no wildcards")
PY
}

alerts_complete() { # <rendered file>
  "$PY" - "$1" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rules = [r for d in docs if d["kind"] == "PrometheusRule"
         for g in d["spec"]["groups"] for r in g["rules"]]
if not rules:
    sys.exit("no PrometheusRule rendered")
bad = []
for r in rules:
    missing = [k for k in ("severity",) if k not in r.get("labels", {})]
    missing += [k for k in ("summary", "description", "runbook_url") if k not in r.get("annotations", {})]
    if missing or not r.get("expr"):
        bad.append(f"{r.get('alert')}: missing {missing or ['expr']}")
if bad:
    sys.exit("\n".join(bad))
print(", ".join(r["alert"] for r in rules))
PY
}

for v in "${VARIANTS[@]}"; do
  name="${v%%|*}"
  args="${v#*|}"
  # shellcheck disable=SC2086
  check "helm lint --strict ($name)" helm lint --strict "$CHART" --namespace "$NAMESPACE" $args
  rendered="$WORK/$name.yaml"
  check "helm template ($name)" render "$args" "$rendered"
  [ -s "$rendered" ] || continue
  check "rbac: rendered from rbac-rules.yaml ($name)" rbac_single_source "$rendered"
  check "filter CRD kinds for kubernetes-validate ($name)" filter_crd_kinds "$rendered" "$WORK/$name.k8s.yaml"
  for k in "${K8S_VERSIONS[@]}"; do
    check "kubernetes-validate --strict $k ($name)" validate "$WORK/$name.k8s.yaml" "$k"
  done
  if grep -q '^kind: PrometheusRule' "$rendered"; then
    check "PrometheusRule alerts have severity/summary/description/runbook_url ($name)" alerts_complete "$rendered"
  fi
  check "checkov ($name)" checkov -f "$rendered" --framework kubernetes --skip-download --compact --quiet
done

check "alerting rules: promtool check rules, promtool test rules tests/alerts/rules.test.yaml, runbook anchors (scripts/check-alerts.sh)" \
  scripts/check-alerts.sh
dashboard_configmap() { # the ConfigMap only when enabled, with the sidecar label and valid JSON
  ! grep -q "name: $RELEASE-dashboard" "$WORK/default.yaml" || { echo "rendered by default"; return 1; }
  helm template "$RELEASE" "$CHART" -n "$NAMESPACE" --set grafana.dashboard.enabled=true \
    --set grafana.dashboard.folder=SRE --show-only templates/grafana-dashboard.yaml >"$WORK/dashboard.yaml"
  "$PY" - "$WORK/dashboard.yaml" <<'PY'
import json, sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", cm["metadata"]
assert cm["metadata"]["annotations"]["grafana_folder"] == "SRE", cm["metadata"]
d = json.loads(cm["data"]["ingress-failover.json"])
assert d["uid"] == "ingress-failover" and len(d["panels"]) > 5, d.keys()
print(len(d["panels"]), "panels")
PY
}
check "Grafana dashboard: a ConfigMap with the sidecar label and valid dashboard JSON, only when enabled" \
  dashboard_configmap
check "every value in values.yaml is documented in $CHART/README.md" \
  "$PY" - "$CHART/values.yaml" "$CHART/README.md" <<'PY'
import sys, yaml
values, readme = yaml.safe_load(open(sys.argv[1])), open(sys.argv[2]).read()
def leaves(d, prefix=""):
    for k, v in d.items():
        path = prefix + k
        if isinstance(v, dict) and v:
            yield from leaves(v, path + ".")
        else:
            yield path
missing = []
for path in leaves(values):
    parts = path.split(".")
    if not any(f"`{'.'.join(parts[:i])}`" in readme for i in range(len(parts), 0, -1)):
        missing.append(path)
if missing:
    sys.exit("undocumented values: " + ", ".join(missing))
PY
check "values.schema.json rejects an unknown value" \
  bash -c "! helm template x $CHART --set nosuchvalue=1 >/dev/null 2>&1"
check "a NetworkPolicy with no probeEgress (it would block every probe) is refused, saying why" \
  bash -c "helm template x $CHART --set networkPolicy.enabled=true 2>&1 >/dev/null | grep -q 'would block every health check'"
check "aggregated roles: view reads FailoverPolicies, edit and admin change them" \
  "$PY" - "$WORK/default.yaml" <<'PY'
import sys, yaml
docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ClusterRole"}
view = next(d for n, d in docs.items() if n.endswith("-aggregate-view"))
edit = next(d for n, d in docs.items() if n.endswith("-aggregate-edit"))
assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true", view
assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}, view
labels = edit["metadata"]["labels"]
assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true", edit
assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true", edit
assert "patch" in edit["rules"][0]["verbs"] and "failoverpolicies" in edit["rules"][0]["resources"], edit
print("view:", view["rules"], "edit:", edit["rules"])
PY
check "rbac.scope=namespace without exactly one watchNamespaces entry is refused" \
  bash -c "! helm template x $CHART --set rbac.scope=namespace >/dev/null 2>&1"

check "manifests/install.yaml drift (scripts/render-manifests.sh)" \
  bash -c "scripts/render-manifests.sh '$WORK/install.yaml' >/dev/null && diff -u manifests/install.yaml '$WORK/install.yaml'"
check "manifests/install.yaml: kubernetes-validate --strict ${K8S_VERSIONS[-1]}" \
  bash -c "$(declare -f filter_crd_kinds validate); PY='$PY' CRD_KINDS='$CRD_KINDS'; filter_crd_kinds manifests/install.yaml '$WORK/install.k8s.yaml' && validate '$WORK/install.k8s.yaml' ${K8S_VERSIONS[-1]}"
check "e2e/manifests/backends.yaml: kubernetes-validate --strict ${K8S_VERSIONS[0]} and ${K8S_VERSIONS[-1]}" \
  bash -c "$(declare -f validate); validate e2e/manifests/backends.yaml ${K8S_VERSIONS[0]} && validate e2e/manifests/backends.yaml ${K8S_VERSIONS[-1]}"
check "manifests/examples and e2e policy: FailoverPolicies valid against the CRD's openAPIV3Schema" \
  "$PY" -c '
import glob, sys, yaml, jsonschema
crd = yaml.safe_load(open("crds/failoverpolicies.ingressfailover.io.yaml"))
schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
def strict(n):  # like kubectl --validate=strict: unknown fields are errors, not pruned
    if isinstance(n, dict):
        if "properties" in n and not n.get("x-kubernetes-preserve-unknown-fields"):
            n.setdefault("additionalProperties", False)
        for v in n.values():
            strict(v)
    elif isinstance(n, list):
        for v in n:
            strict(v)
strict(schema)
schema["properties"].update(apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
files = sorted(glob.glob("manifests/examples/*.yaml")) + ["e2e/manifests/policy.yaml"]
assert files, "no examples in manifests/examples"
bad = 0
for f in files:
    for d in yaml.safe_load_all(open(f)):
        if not d:
            continue
        if (d.get("apiVersion"), d.get("kind")) != ("ingressfailover.io/v1alpha1", "FailoverPolicy"):
            print(f"{f}: not a FailoverPolicy"); bad += 1; continue
        for e in jsonschema.Draft4Validator(schema).iter_errors(d):
            print(f"{f}: {list(e.path)}: {e.message}"); bad += 1
print(len(files), "policy files (structural schema; CEL and cross-object rules: ingress-failover check)")
sys.exit(1 if bad else 0)'
bin=""
for cand in "$(command -v ingress-failover 2>/dev/null)" target/release/ingress-failover target/debug/ingress-failover; do
  if [ -n "$cand" ] && [ -x "$cand" ]; then bin="$cand"; break; fi
done
if [ -n "$bin" ]; then
  check "manifests/examples: ingress-failover check (CEL and cross-object rules)" \
    "$bin" check --ingress-controller-namespace ingress-nginx --probe-allowlist 10.0.0.0/8,.example.internal manifests/examples/*.yaml
  check "e2e/manifests/policy.yaml: ingress-failover check (with the e2e operator flags)" \
    "$bin" check --ingress-controller-namespace ingress-primary e2e/manifests/policy.yaml
else
  echo "note  no ingress-failover binary built: skipping \`ingress-failover check manifests/examples\` (the same files are tests/corpus/valid, which cargo test checks)"
fi

echo
if [ "$FAIL" -eq 0 ]; then
  echo "chart checks: $PASS passed, 0 failed"
  exit 0
fi
echo "chart checks: $PASS passed, $FAIL failed"
printf '  failed: %s\n' "${FAILED[@]}"
exit 1
