#!/usr/bin/env bash
# A real Kubernetes control plane for the API-level test suites (see docs/devcluster.md).
#
#   scripts/real-cluster.sh build            build (or find cached) kube-apiserver,
#                                            kube-controller-manager, kube-scheduler, kubectl,
#                                            kwok, etcd, external-dns; prints the binary directories
#   scripts/real-cluster.sh build-external-dns   only the DNS lab's ExternalDNS (also part of build)
#   scripts/real-cluster.sh run -- CMD ARGS  start the cluster in a private network namespace,
#                                            run CMD inside it, stop everything, exit with CMD's code
#
# Binaries are built from the Go module proxy only, from the pinned build modules in
# scripts/real-cluster/{kube,kwok,etcd,external-dns}/go.mod (+ go.sum), and cached by version under
# ${XDG_CACHE_HOME:-$HOME/.cache}/ingress-failover/real-cluster/<component>-<version>/.
#
# Network: everything (etcd, apiserver, controller-manager, scheduler, kwok and CMD) runs in a
# network namespace created here, with only `lo` up; 127.0.0.0/8 and 198.18.0.0/15 (RFC 2544
# benchmarking range, routed locally onto lo inside the namespace) are the only reachable
# addresses. Nothing can leave the namespace. The namespace is deleted on exit.
#
# Inside CMD the environment carries:
#   KUBECONFIG, INGRESS_FAILOVER_KUBECONFIG   admin (system:masters) kubeconfig
#   INGRESS_FAILOVER_TEST_BACKEND_IP          198.18.0.1, an address the apiserver accepts in
#                                             EndpointSlices (it refuses loopback)
#   REAL_CLUSTER_DIR                          certificates, kubeconfigs, logs
#   REAL_CLUSTER_NETNS                        the namespace's name
#   REAL_CLUSTER_AUDIT_LOG                    apiserver audit log (ServiceAccount requests)
#   INGRESS_FAILOVER_EXTERNAL_DNS             the DNS lab's ExternalDNS binary (tests/dns_lab.rs)
#   PATH                                      with the built kubectl first
# Run as root (ip netns). REAL_CLUSTER_KEEP=1 keeps the directory (logs) after a success too.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODS="$ROOT/scripts/real-cluster"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ingress-failover/real-cluster"
START_TIMEOUT="${REAL_CLUSTER_START_TIMEOUT:-120}"

log() { echo "real-cluster: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# The version a build module pins for its main module ($2), e.g. v1.35.4.
pinned() { awk -v m="$2" '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "$MODS/$1/go.mod" | head -n1; }

# build_component DIR NAME PACKAGES...: builds PACKAGES of the module in DIR into the cache.
build_component() {
  local dir="$1" name="$2"
  shift 2
  local main
  case "$dir" in
    kube) main=k8s.io/kubernetes ;;
    kwok) main=sigs.k8s.io/kwok ;;
    etcd) main=go.etcd.io/etcd/server/v3 ;;
    external-dns) main=sigs.k8s.io/external-dns ;;
  esac
  local version
  version="$(pinned "$dir" "$main")"
  [ -n "$version" ] || die "no pinned version of $main in $MODS/$dir/go.mod"
  local out="$CACHE/$name-$version"
  if [ -f "$out/.complete" ] && { [ "$dir" != kwok ] || [ -d "$out/stages" ]; }; then
    echo "$out"
    return
  fi
  command -v go >/dev/null || die "go is needed to build $name $version"
  log "building $name $version (cold: this takes a while) ..."
  local t0=$SECONDS tmp
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/.build-$name-XXXXXX")"
  # The local Go, unless the module names a newer toolchain (ExternalDNS v0.23 needs Go 1.27): the
  # go command then fetches golang.org/toolchain from the module proxy, once, into its cache.
  local toolchain
  toolchain="$(awk '$1 == "toolchain" { print $2 }' "$MODS/$dir/go.mod")"
  # One `go build` for all packages of a component so they share compiled dependencies. The
  # module proxy only, never `direct` (a refused version must fail here, not fetch from a VCS).
  if ! (cd "$MODS/$dir" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    GOTOOLCHAIN="${toolchain:-local}" GOPROXY="${REAL_CLUSTER_GOPROXY:-https://proxy.golang.org}" \
    nice -n 10 go build -trimpath -ldflags='-s -w' -o "$tmp/" "$@") >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    rm -rf "$tmp"
    die "building $name $version failed"
  fi
  rm -f "$tmp/build.log"
  if [ "$dir" = kwok ]; then
    # kwok's controller needs Stages (how fake Nodes and Pods move): its own "fast" ones, from
    # the same module.
    local src
    src="$(cd "$MODS/kwok" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
    mkdir -p "$tmp/stages"
    cp "$src/node/fast/node-initialize.yaml" "$src/node/heartbeat/node-heartbeat.yaml" \
      "$src/pod/fast/pod-ready.yaml" "$src/pod/fast/pod-complete.yaml" \
      "$src/pod/fast/pod-delete.yaml" "$tmp/stages/"
  fi
  rm -rf "$out"
  mv "$tmp" "$out"
  touch "$out/.complete"
  log "built $name $version in $((SECONDS - t0)) s"
  echo "$out"
}

KUBE_BIN="" KWOK_BIN="" KUBECTL_BIN="" ETCD_BIN="" EXTERNAL_DNS_BIN=""
# The DNS failover lab's ExternalDNS (scripts/real-cluster/external-dns: the CRD source, the
# rfc2136 provider and the registries of sigs.k8s.io/external-dns, see its main.go and go.mod).
build_external_dns() {
  EXTERNAL_DNS_BIN="$(build_component external-dns external-dns ingress-failover.local/real-cluster/external-dns)"
  [ -x "$EXTERNAL_DNS_BIN/external-dns" ] || die "no external-dns binary in $EXTERNAL_DNS_BIN"
}
build_all() {
  KUBE_BIN="$(build_component kube kubernetes \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler)"
  KWOK_BIN="$(build_component kwok kwok sigs.k8s.io/kwok/cmd/kwok)"
  KUBECTL_BIN="$(build_component kube kubectl k8s.io/kubernetes/cmd/kubectl)"
  ETCD_BIN="$(build_component etcd etcd go.etcd.io/etcd/server/v3)"
  # go build names the etcd server binary after its import path (server/v3).
  for n in server v3; do
    if [ -f "$ETCD_BIN/$n" ] && [ ! -e "$ETCD_BIN/etcd" ]; then mv "$ETCD_BIN/$n" "$ETCD_BIN/etcd"; fi
  done
  [ -x "$ETCD_BIN/etcd" ] || die "no etcd binary in $ETCD_BIN"
  build_external_dns
}

# ---------------------------------------------------------------------------------------------
# run: the cluster in a private network namespace
NETNS="" DIR="" PIDS=() NAMES=()
BACKEND_IP=198.18.0.1
SERVICE_CIDR=198.19.0.0/16
POD_CIDR=198.18.128.0/17

in_ns() { ip netns exec "$NETNS" "$@"; }

cleanup() {
  local rc=$?
  set +e
  local i
  # In reverse order of start (kwok ... etcd last), each given 10 s to exit.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null
    local n=0
    while kill -0 "${PIDS[$i]}" 2>/dev/null && [ $n -lt 100 ]; do
      sleep 0.1
      n=$((n + 1))
    done
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
      log "${NAMES[$i]} (pid ${PIDS[$i]}) did not stop: killing it"
      kill -KILL "${PIDS[$i]}" 2>/dev/null
    fi
    wait "${PIDS[$i]}" 2>/dev/null
  done
  [ -n "$NETNS" ] && ip netns del "$NETNS" 2>/dev/null
  if [ -n "$DIR" ]; then
    if [ "$rc" -ne 0 ] || [ -n "${REAL_CLUSTER_KEEP:-}" ]; then
      log "kept $DIR (logs in $DIR/logs)"
    else
      rm -rf "$DIR"
    fi
  fi
  exit "$rc"
}

# start NAME BINARY ARGS...: starts a component inside the namespace, logging to $DIR/logs.
start() {
  local name="$1"
  shift
  ip netns exec "$NETNS" "$@" >"$DIR/logs/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

dump_logs() {
  local f
  for f in "$DIR"/logs/*.log; do
    echo "----- tail of $f" >&2
    tail -n 25 "$f" >&2
  done
}

# wait_for WHAT CMD...: polls CMD (inside the namespace) until it succeeds or START_TIMEOUT.
wait_for() {
  local what="$1" t0=$SECONDS i
  shift
  until in_ns "$@" >/dev/null 2>&1; do
    for i in "${!PIDS[@]}"; do
      kill -0 "${PIDS[$i]}" 2>/dev/null || {
        dump_logs
        die "${NAMES[$i]} exited while waiting for $what"
      }
    done
    if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
      dump_logs
      die "timed out after ${START_TIMEOUT}s waiting for $what"
    fi
    sleep 0.5
  done
}

certs() {
  local d="$DIR/pki"
  mkdir -p "$d"
  cd "$d"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 7 -subj /CN=real-cluster-ca 2>/dev/null
  # sign NAME SUBJECT EXTENSIONS
  sign() {
    openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%b' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  sign apiserver /CN=kube-apiserver \
    "subjectAltName=IP:127.0.0.1,IP:$BACKEND_IP,IP:${SERVICE_CIDR%.0/16}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n"
  sign admin "/O=system:masters/CN=real-cluster-admin" "extendedKeyUsage=clientAuth\n"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

kubeconfig() {
  cat >"$DIR/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: real-cluster
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: $DIR/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $DIR/pki/admin.crt
    client-key: $DIR/pki/admin.key
contexts:
- name: real-cluster
  context: {cluster: real-cluster, user: admin}
current-context: real-cluster
KC
}

run() {
  command -v ip >/dev/null || die "ip (iproute2) is needed"
  command -v openssl >/dev/null || die "openssl is needed"
  build_all
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  DIR="$(mktemp -d "${TMPDIR:-/tmp}/real-cluster.XXXXXX")"
  mkdir -p "$DIR/logs" "$DIR/etcd"
  NETNS="ingress-failover-rc-$$"
  ip netns add "$NETNS"
  in_ns ip link set lo up
  in_ns ip addr add "$BACKEND_IP/32" dev lo
  in_ns ip route add local 198.18.0.0/15 dev lo
  certs
  kubeconfig
  cat >"$DIR/audit-policy.yaml" <<AP
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
AP
  local t0=$SECONDS p="$DIR/pki"
  start etcd "$ETCD_BIN/etcd" --data-dir="$DIR/etcd" --name=real-cluster \
    --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=real-cluster=http://127.0.0.1:2380 --unsafe-no-fsync=true \
    --log-level=warn
  wait_for etcd curl -fsS --max-time 2 http://127.0.0.1:2379/health
  start kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=127.0.0.1 --secure-port=6443 --advertise-address="$BACKEND_IP" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC \
    --audit-policy-file="$DIR/audit-policy.yaml" --audit-log-path="$DIR/logs/audit.jsonl" \
    --audit-log-format=json --audit-log-mode=blocking \
    --cert-dir="$DIR/apiserver" --profiling=false
  local curl_admin=(curl -fsS --max-time 3 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key")
  wait_for "kube-apiserver /readyz" "${curl_admin[@]}" https://127.0.0.1:6443/readyz
  local kc="$DIR/admin.kubeconfig"
  start kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true --cert-dir="$DIR/kcm" --profiling=false
  start kube-scheduler "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false
  start kwok "$KWOK_BIN/kwok" --kubeconfig="$kc" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$POD_CIDR" --node-ip="$BACKEND_IP" \
    --server-address=127.0.0.1:10247 $(for f in "$KWOK_BIN"/stages/*.yaml; do echo "--config=$f"; done)
  local kubectl=("$KUBECTL_BIN/kubectl" --kubeconfig="$kc" --request-timeout=10s)
  wait_for "the default ServiceAccount" "${kubectl[@]}" -n default get serviceaccount default
  "${kubectl[@]}" version -o json >"$DIR/version.json" 2>/dev/null || true
  in_ns "${kubectl[@]}" create -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "64", memory: 256Gi, pods: "1000"}
NODE
  wait_for "kwok-node-0 Ready" "${kubectl[@]}" wait --for=condition=Ready node/kwok-node-0 --timeout=2s
  log "cluster ready in $((SECONDS - t0)) s (dir $DIR, network namespace $NETNS)"
  local rc=0
  in_ns env KUBECONFIG="$kc" INGRESS_FAILOVER_KUBECONFIG="$kc" \
    INGRESS_FAILOVER_TEST_BACKEND_IP="$BACKEND_IP" \
    REAL_CLUSTER_DIR="$DIR" REAL_CLUSTER_NETNS="$NETNS" REAL_CLUSTER_KUBECTL="$KUBECTL_BIN/kubectl" \
    REAL_CLUSTER_AUDIT_LOG="$DIR/logs/audit.jsonl" \
    INGRESS_FAILOVER_EXTERNAL_DNS="$EXTERNAL_DNS_BIN/external-dns" \
    PATH="$KUBECTL_BIN:$PATH" "$@" || rc=$?
  [ "$rc" -eq 0 ] || log "command exited with $rc"
  return "$rc"
}

main() {
  case "${1:-}" in
    build)
      build_all
      echo "$KUBE_BIN"
      echo "$KWOK_BIN"
      echo "$KUBECTL_BIN"
      echo "$ETCD_BIN"
      echo "$EXTERNAL_DNS_BIN"
      ;;
    build-external-dns)
      build_external_dns
      echo "$EXTERNAL_DNS_BIN"
      ;;
    run)
      shift
      [ "${1:-}" = "--" ] && shift
      [ $# -gt 0 ] || die "usage: $0 run -- CMD [ARGS...]"
      run "$@"
      ;;
    *)
      sed -n '2,11p' "$0" >&2
      exit 2
      ;;
  esac
}

# One line, parsed whole before it runs: editing this file during a run cannot derail it.
main "$@"; exit $?
