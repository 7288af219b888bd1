#!/usr/bin/env bash
# The API-level suites against the real control plane of scripts/real-cluster.sh. Run as
#   scripts/real-cluster.sh run -- scripts/real-cluster-suites.sh
# (as .ci/run does): inside the cluster's network namespace, with INGRESS_FAILOVER_KUBECONFIG and
# INGRESS_FAILOVER_TEST_BACKEND_IP set. Needs helm (scripts/install-tools.sh) for the chart's RBAC.
#
# 1. tests/conformance.rs, every test.
# (after the chart RBAC, its API Priority and Fairness objects are applied and must bind)
# 2. tests/controller.rs, every test but the embedded-only ones below, with the in-process
#    controller authenticated as the chart's ServiceAccount (chart RBAC rendered by `helm template`
#    and applied): the real authorizer checks every call the controller makes.
# 3. tests/controller_people.rs: what people do mid-incident, every test, controller as above;
#    tests/controller_conflicts.rs: policies claiming one object, renamed references, likewise.
#    (tests/controller_crash.rs needs the embedded plane's latency faults to kill the controller
#    between two writes, and runs in plain `cargo test` only.)
# 4. tests/controller_ha.rs: leader takeover after a kill and after a graceful stop, SIGTERM with
#    the API unreachable, the controller as above; the embedded-only tests below are skipped.
# 5. tests/rbac.rs: its full policy lifecycle, the controller again as the ServiceAccount; then
#    from the apiserver's audit log: the ServiceAccount was never forbidden anything, and used
#    every rule the chart grants.
# 6. tests/confinement.rs: hand-written EndpointSlices and static host names are refused, a CRLF
#    probe path is Invalid, /metrics needs an authorized token; the controller as the
#    ServiceAccount with the chart's --metrics-secure RBAC added (after 5, whose audit check
#    compares against rbac-rules.yaml alone).
# 7. tests/controller_gateway.rs: the Gateway API tier (route copies moved between Gateways,
#    Gateway status as a signal), the vendored Gateway API CRDs installed, the chart's RBAC
#    re-applied with gatewayAPI.enabled, the controller as the ServiceAccount.
# 8. tests/dns_lab.rs: ExternalDNS (the pinned lab build, rfc2136 provider) against this cluster
#    moves a record in a BIND 9 started on loopback inside the namespace; must run here
#    (INGRESS_FAILOVER_DNS_LAB=1: missing named or ExternalDNS is a failure, not a skip).
# 8. tests/controller_dns.rs: the DNS tier (issue 14) — the controller's DNSEndpoints on this
#    cluster, and the end to end through ExternalDNS and BIND 9 as in 7 (controller with the
#    admin kubeconfig: the chart's RBAC for dnsendpoints is a feature, externalDNS.enabled).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${INGRESS_FAILOVER_KUBECONFIG:?run this through scripts/real-cluster.sh run --}"
: "${REAL_CLUSTER_DIR:?run this through scripts/real-cluster.sh run --}"
export CARGO_NET_OFFLINE=true
# kwok's pods run nothing: the harness serves them at their pod IPs (198.18.128.0/17, routed
# locally inside the namespace), and the controller may probe them there.
export INGRESS_FAILOVER_TEST_SERVE_PODS=1
export INGRESS_FAILOVER_TEST_PROBE_ALLOWLIST=198.18.0.0/15
TEST_TIMEOUT="${REAL_CLUSTER_TEST_TIMEOUT:-1200}"

# Tests that need the embedded plane itself; they run in plain `cargo test` and are skipped here
# by exact name (one reason each).
CONTROLLER_EMBEDDED_ONLY=(
  # asserts on the embedded plane's audit log (no managed write at all)
  --skip dry_run_decides_and_reports_but_writes_no_managed_object
  # injects API faults (20 % of calls failing) through the embedded plane
  --skip converges_with_twenty_percent_of_api_calls_failing
  # injects an API outage through the embedded plane
  --skip survives_an_api_outage_and_catches_up_after_it
  # asserts on the embedded plane's audit log; its admission half runs here as
  # conformance::malformed_policy_corpus_meets_the_recorded_admission
  --skip malformed_policies_are_refused_and_cause_no_managed_write
)
CONFINEMENT_EMBEDDED_ONLY=(
  # lists loopback addresses in an EndpointSlice, which a real apiserver refuses at admission
  --skip forged_managed_slice_obeys_the_deny_rules
)
# The same for tests/controller_ha.rs.
HA_EMBEDDED_ONLY=(
  # injects a 60 s API outage through the embedded plane; judges writers by its audit log
  --skip sixty_second_outage_with_two_replicas_keeps_one_writer_at_a_time
  # injects 50 % errors on Lease calls through the embedded plane
  --skip leader_keeps_its_lease_with_half_of_lease_calls_failing
  # injects errors on every Lease call through the embedded plane to take the lease away
  --skip a_replica_that_loses_the_lease_stops_exporting_policy_series
  # forces a 410 by compacting the embedded plane's watch log
  --skip a_watch_410_does_not_hold_decisions
  # injects a 60 s API outage through the embedded plane
  --skip converges_within_seconds_after_a_sixty_second_outage
  # injects errors on Event creation through the embedded plane
  --skip events_are_retried_through_api_errors
  # needs a plane without the CRD (the real one is shared) and an injected outage
  --skip sigterm_stops_run_within_bounds_without_the_crd_and_during_an_outage
)
section() { echo "== real cluster: $*"; }

section "conformance"
timeout "$TEST_TIMEOUT" cargo test --test conformance

section "chart RBAC (helm template, applied)"
OP_NS=ingress-failover-system
SA=ingress-failover
kubectl create namespace "$OP_NS" --dry-run=client -o yaml | kubectl apply -f -
helm template ingress-failover charts/ingress-failover --namespace "$OP_NS" \
  --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml |
  kubectl apply -n "$OP_NS" -f -

section "chart API Priority and Fairness (applied; every suite below runs under it)"
helm template ingress-failover charts/ingress-failover --namespace "$OP_NS" \
  --set kubeApi.priorityAndFairness.enabled=true \
  --show-only templates/priority-and-fairness.yaml |
  kubectl apply -f -
# The apiserver accepted both FlowSchemas and found their priority levels (Dangling=False).
for fs in ingress-failover ingress-failover-leases; do
  dangling=""
  for _ in $(seq 1 30); do
    dangling="$(kubectl get flowschema "$fs" -o jsonpath='{.status.conditions[?(@.type=="Dangling")].status}')"
    [ -n "$dangling" ] && break
    sleep 1
  done
  echo "flowschema $fs: Dangling=$dangling"
  [ "$dangling" = "False" ] || { echo "flowschema $fs is not bound to its priority level"; exit 1; }
done
TOKEN="$(kubectl -n "$OP_NS" create token "$SA" --duration=3h)"
SA_KUBECONFIG="$REAL_CLUSTER_DIR/controller.kubeconfig"
SERVER="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
CA="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
cat >"$SA_KUBECONFIG" <<KC
apiVersion: v1
kind: Config
clusters:
- name: real-cluster
  cluster: {server: "$SERVER", certificate-authority: "$CA"}
users:
- name: $SA
  user: {token: "$TOKEN"}
contexts:
- name: $SA
  context: {cluster: real-cluster, user: $SA}
current-context: $SA
KC
kubectl --kubeconfig="$SA_KUBECONFIG" auth whoami -o jsonpath='{.status.userInfo.username}'
echo

section "controller (controller authenticated as system:serviceaccount:$OP_NS:$SA)"
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test controller -- --exact "${CONTROLLER_EMBEDDED_ONLY[@]}"

section "people mid-incident: invalid edits, dry-run, the reset annotation (controller as the ServiceAccount)"
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test controller_people

section "conflicts between policies: one owner per object, renamed references (controller as the ServiceAccount)"
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test controller_conflicts

section "high availability: takeover, release, bounded shutdown (controller as the ServiceAccount)"
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test controller_ha -- --exact "${HA_EMBEDDED_ONLY[@]}"

section "legacy Endpoints mirror: kube-controller-manager's mirroring controller leaves it alone (controller as the ServiceAccount)"
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test legacy_endpoints

section "rbac: the chart's lifecycle test, controller as the ServiceAccount"
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test rbac -- --exact chart_rbac_equals_the_verbs_the_controller_uses

section "rbac: what the real authorizer allowed the ServiceAccount (audit log)"
INGRESS_FAILOVER_RBAC_USER="system:serviceaccount:$OP_NS:$SA" \
  timeout "$TEST_TIMEOUT" cargo test --test rbac -- --exact --ignored \
  real_authorizer_allowed_exactly_the_chart_rules

section "confinement (controller as the ServiceAccount, with the chart's metrics RBAC)"
helm template ingress-failover charts/ingress-failover --namespace "$OP_NS" \
  --show-only templates/metrics-rbac.yaml |
  kubectl apply -n "$OP_NS" -f -
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test confinement -- --exact "${CONFINEMENT_EMBEDDED_ONLY[@]}"

section "Gateway API tier (CRDs from tests/data/crds/gateway-api; chart RBAC with gatewayAPI.enabled; controller as the ServiceAccount)"
# After the rbac audit check above, which compares against the default chart's rules.
for crd in gatewayclasses gateways httproutes; do
  kubectl apply --server-side --force-conflicts -f "tests/data/crds/gateway-api/gateway.networking.k8s.io_$crd.yaml"
done
kubectl wait --for condition=established --timeout=60s \
  crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
  crd/httproutes.gateway.networking.k8s.io
helm template ingress-failover charts/ingress-failover --namespace "$OP_NS" \
  --set gatewayAPI.enabled=true --set externalDNS.enabled=true --show-only templates/rbac.yaml |
  kubectl apply -n "$OP_NS" -f -
INGRESS_FAILOVER_CONTROLLER_KUBECONFIG="$SA_KUBECONFIG" \
  INGRESS_FAILOVER_TEST_LEASE_NAMESPACE="$OP_NS" \
  timeout "$TEST_TIMEOUT" cargo test --test controller_gateway

section "DNS lab: ExternalDNS (crd source, rfc2136) into BIND 9 on loopback, against this cluster"
INGRESS_FAILOVER_DNS_LAB=1 timeout "$TEST_TIMEOUT" cargo test --test dns_lab -- --nocapture

section "DNS tier end to end: the operator's DNSEndpoints through ExternalDNS into BIND 9, against this cluster"
INGRESS_FAILOVER_DNS_LAB=1 timeout "$TEST_TIMEOUT" cargo test --test controller_dns -- --nocapture
