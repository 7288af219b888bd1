#!/usr/bin/env bash
# End-to-end on kind: a cluster, two ingress-nginx controllers (classes primary and backup),
# sample backends, the operator installed from charts/ingress-failover with an image built from
# this tree, the integration suite against the cluster, then a failure drill:
#   1. backends fail (3 of 4 not ready)      -> EmergencyActive, emergency Deployment scaled up
#      backends recover                      -> EmergencyActive=False
#   2. primary ingress controller scaled to 0 -> FailoverActive, Ingress web on class backup
#      controller back                       -> FailoverActive=False, Ingress web on class primary
# Every wait is a `kubectl wait` on a condition or field, never a fixed sleep.
# Needs: docker, kind, kubectl, helm, cargo.
# Env: CLUSTER, IMAGE, KEEP_CLUSTER=1, WAIT (kubectl wait timeout), E2E_KUBECONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-ingress-failover-e2e}"
IMAGE="${IMAGE:-ingress-failover:e2e}"
WAIT="${WAIT:-300s}"
INGRESS_NGINX_CHART_VERSION="${INGRESS_NGINX_CHART_VERSION:-4.12.1}"
OPERATOR_NS=ingress-failover
APP_NS=e2e-web
# A kubeconfig of its own: never touches ~/.kube/config.
export KUBECONFIG="${E2E_KUBECONFIG:-${RUNNER_TEMP:-/tmp}/ingress-failover-e2e.kubeconfig}"

step() { echo; echo "=== $*"; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    step "FAILED (exit $rc): diagnostics"
    kubectl get fp -A -o yaml || true
    kubectl -n "$APP_NS" get deploy,pods,svc,endpointslices,ingress -o wide || true
    kubectl -n "$OPERATOR_NS" get pods,lease -o wide || true
    kubectl -n "$OPERATOR_NS" logs -l app.kubernetes.io/name=ingress-failover --tail=200 --prefix || true
    kubectl get events -A --sort-by=.lastTimestamp | tail -50 || true
  fi
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    echo "keeping cluster $CLUSTER (KUBECONFIG=$KUBECONFIG)"
  else
    kind delete cluster --name "$CLUSTER" || true
  fi
  exit "$rc"
}
trap cleanup EXIT

step "kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --config e2e/kind-config.yaml --kubeconfig "$KUBECONFIG" --wait 180s

step "two ingress-nginx controllers: classes primary and backup"
helm repo add ingress-nginx https://kubernetes.github.io/ingress-nginx --force-update
helm repo update ingress-nginx
for tier in primary backup; do
  helm upgrade --install "ingress-$tier" ingress-nginx/ingress-nginx \
    --version "$INGRESS_NGINX_CHART_VERSION" \
    --namespace "ingress-$tier" --create-namespace \
    --set fullnameOverride="ingress-$tier" \
    --set controller.ingressClass="$tier" \
    --set controller.ingressClassResource.name="$tier" \
    --set controller.ingressClassResource.controllerValue="k8s.io/ingress-nginx-$tier" \
    --set controller.ingressClassByName=true \
    --set controller.electionID="ingress-$tier-leader" \
    --set controller.service.type=NodePort \
    --set controller.admissionWebhooks.enabled=false \
    --wait --timeout 5m
done

step "sample backends"
kubectl apply -f e2e/manifests/backends.yaml
kubectl -n "$APP_NS" rollout status deploy/web --timeout="$WAIT"

step "operator image $IMAGE"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "helm install the operator"
helm upgrade --install ingress-failover charts/ingress-failover \
  --namespace "$OPERATOR_NS" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set ingressControllerNamespaces="{ingress-primary}" \
  --set policySelector=e2e=drill \
  --set logFormat=text \
  --wait --timeout 5m
kubectl -n "$OPERATOR_NS" rollout status deploy/ingress-failover --timeout="$WAIT"
kubectl wait --for=condition=Established crd/failoverpolicies.ingressfailover.io --timeout="$WAIT"
helm test ingress-failover --namespace "$OPERATOR_NS" --timeout 5m

step "integration suite against the cluster"
# The suite runs the controller in this process: its loopback-free test backends bind to the
# kind network's gateway address (EndpointSlices refuse loopback addresses), and pod IPs are
# reached through a route via the kind node, as the in-cluster operator would reach them.
KIND_GATEWAY="$(docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' | awk '{print $1}')"
NODE_IP="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${CLUSTER}-control-plane")"
sudo ip route replace 10.244.0.0/16 via "$NODE_IP"
INGRESS_FAILOVER_KUBECONFIG="$KUBECONFIG" \
INGRESS_FAILOVER_TEST_BACKEND_IP="$KIND_GATEWAY" \
INGRESS_FAILOVER_TEST_POD_IMAGE="registry.k8s.io/e2e-test-images/agnhost:2.53" \
  cargo test --test controller -- --test-threads=1

step "drill: the FailoverPolicy"
kubectl apply -f e2e/manifests/policy.yaml
kubectl -n "$APP_NS" wait --for=condition=Ready fp/web --timeout="$WAIT"
kubectl -n "$APP_NS" wait --for=jsonpath='{.status.phase}'=Normal fp/web --timeout="$WAIT"
kubectl -n "$APP_NS" get fp web

step "drill 1: 3 of 4 backends fail -> EmergencyActive"
mapfile -t pods < <(kubectl -n "$APP_NS" get pods -l app=web -o name | head -3)
for p in "${pods[@]}"; do kubectl -n "$APP_NS" exec "$p" -- touch /tmp/broken; done
kubectl -n "$APP_NS" wait --for=condition=EmergencyActive fp/web --timeout="$WAIT"
kubectl -n "$APP_NS" wait --for=jsonpath='{.status.readyReplicas}'=2 deploy/web-emergency --timeout="$WAIT"
kubectl -n "$APP_NS" get fp web

step "drill 1: backends recover -> EmergencyActive=False, emergency scaled back to 0"
for p in "${pods[@]}"; do kubectl -n "$APP_NS" exec "$p" -- rm -f /tmp/broken; done
kubectl -n "$APP_NS" wait --for=condition=EmergencyActive=false fp/web --timeout="$WAIT"
kubectl -n "$APP_NS" wait --for=jsonpath='{.spec.replicas}'=0 deploy/web-emergency --timeout="$WAIT"
kubectl -n "$APP_NS" get fp web

step "drill 2: primary ingress controller down -> FailoverActive, Ingress on class backup"
kubectl -n ingress-primary scale deploy/ingress-primary-controller --replicas=0
kubectl -n "$APP_NS" wait --for=condition=FailoverActive fp/web --timeout="$WAIT"
kubectl -n "$APP_NS" wait --for=jsonpath='{.spec.ingressClassName}'=backup ingress/web --timeout="$WAIT"
kubectl -n "$APP_NS" get fp web

step "drill 2: primary back -> FailoverActive=False, Ingress on class primary"
kubectl -n ingress-primary scale deploy/ingress-primary-controller --replicas=1
kubectl -n "$APP_NS" wait --for=condition=FailoverActive=false fp/web --timeout="$WAIT"
kubectl -n "$APP_NS" wait --for=jsonpath='{.spec.ingressClassName}'=primary ingress/web --timeout="$WAIT"
kubectl -n "$APP_NS" get fp web

step "e2e passed"
