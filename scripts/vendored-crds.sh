#!/usr/bin/env bash
# Upstream CRDs vendored under tests/data/crds/ for the DNS and Gateway API tiers (issue 14), and
# the check that they are byte for byte what the pinned Go modules ship:
#   tests/data/crds/external-dns/  sigs.k8s.io/external-dns, the version
#                                  scripts/real-cluster/external-dns/go.mod pins (the ExternalDNS
#                                  the DNS lab runs), config/crd/standard/
#   tests/data/crds/gateway-api/   sigs.k8s.io/gateway-api $GATEWAY_API, config/crd/standard/
#                                  (the standard channel; the tests install its CRDs, not the
#                                  ValidatingAdmissionPolicy beside them)
#
#   scripts/vendored-crds.sh check    fail (and show the diff) when a file differs or is missing
#   scripts/vendored-crds.sh update   copy them again from the module cache
#
# Modules come from the Go module proxy only (into the Go module cache).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GATEWAY_API=v1.6.3
DATA="$ROOT/tests/data/crds"
WRAPPER="$ROOT/scripts/real-cluster/external-dns"
# The toolchain the ExternalDNS build module names (ExternalDNS v0.23 needs Go 1.27).
GOTOOLCHAIN="$(awk '$1 == "toolchain" { print $2 }' "$WRAPPER/go.mod")"
export GOPROXY="${REAL_CLUSTER_GOPROXY:-https://proxy.golang.org}" GOFLAGS=-mod=readonly GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { echo "vendored-crds: $*" >&2; }

# module_dir MODULE VERSION: the module's directory in the Go module cache (downloaded if needed).
module_dir() {
  local json dir
  json="$(cd "$WRAPPER" && go mod download -json "$1@$2")" || true
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] || {
    printf '%s\n' "$json" >&2
    log "cannot download $1@$2"
    exit 1
  }
  echo "$dir"
}

external_dns_version() {
  awk '$1 == "sigs.k8s.io/external-dns" { print $2; exit }' "$WRAPPER/go.mod"
}

EDNS_VERSION="$(external_dns_version)"
EDNS_DIR="$(module_dir sigs.k8s.io/external-dns "$EDNS_VERSION")"
GW_DIR="$(module_dir sigs.k8s.io/gateway-api "$GATEWAY_API")"

# pairs: lines "SOURCE_FILE DEST_FILE"
pairs() {
  local f
  echo "$EDNS_DIR/config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml $DATA/external-dns/dnsendpoints.externaldns.k8s.io.yaml"
  for f in "$GW_DIR"/config/crd/standard/*.yaml; do
    echo "$f $DATA/gateway-api/$(basename "$f")"
  done
}

case "${1:-}" in
  check)
    bad=0
    while read -r src dst; do
      if ! diff -u "$src" "$dst" >/dev/null 2>&1; then
        diff -u "$src" "$dst" | head -n 40 >&2 || true
        log "DRIFT: $dst differs from $src"
        bad=1
      fi
    done < <(pairs)
    # Nothing vendored that upstream does not ship.
    for f in "$DATA"/gateway-api/*.yaml; do
      [ -f "$GW_DIR/config/crd/standard/$(basename "$f")" ] || {
        log "DRIFT: $f is not in gateway-api $GATEWAY_API"
        bad=1
      }
    done
    [ "$bad" = 0 ] || { log "run scripts/vendored-crds.sh update (and review the diff)"; exit 1; }
    log "ok: external-dns $EDNS_VERSION, gateway-api $GATEWAY_API"
    ;;
  update)
    rm -f "$DATA"/gateway-api/*.yaml
    mkdir -p "$DATA/gateway-api" "$DATA/external-dns"
    while read -r src dst; do
      install -m 0644 "$src" "$dst"
    done < <(pairs)
    log "updated from external-dns $EDNS_VERSION, gateway-api $GATEWAY_API"
    ;;
  *)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
