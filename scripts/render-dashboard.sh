#!/usr/bin/env bash
# Renders docs/dashboard.png: the chart's Grafana dashboard (charts/ingress-failover/dashboards)
# drawn from a real `ingress-failover demo` run, so a reader sees it before installing.
#   1. the demo (the whole story) serves the controller's /metrics on a loopback port;
#   2. a Prometheus (Debian's prometheus package, see scripts/install-tools.sh) scrapes it every
#      second into a temporary directory;
#   3. when the demo ends, scripts/render_dashboard.py runs every panel's queries through
#      Prometheus' query_range API over the demo's window (variables set to All, $__rate_interval
#      as Grafana computes it) and draws the panels at their gridPos with matplotlib.
# Grafana itself is not run (it is not installable from the package sources here); the picture is
# the dashboard's own queries on the dashboard's own grid. Not part of CI: run it after changing
# the dashboard or the demo, and commit the PNG.
# Usage: scripts/render-dashboard.sh [out.png]   (needs a built target/release/ingress-failover)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/dashboard.png}"
BIN="${BIN:-target/release/ingress-failover}"
[ -x "$BIN" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "prometheus missing (scripts/install-tools.sh)" >&2; exit 1; }

VENV="${TOOLS_VENV:-$HOME/.local/share/ingress-failover-tools/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import matplotlib' 2>/dev/null \
  || timeout 600 "$VENV/bin/python" -m pip install --quiet --timeout 60 "matplotlib==3.10.*"

WORK="$(mktemp -d)"
METRICS=127.0.0.1:19180
PROM=127.0.0.1:19190
cleanup() { kill "${DEMO:-}" "${PROMPID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cat >"$WORK/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: ingress-failover-metrics
    static_configs: [{targets: ["$METRICS"]}]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="$PROM" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROMPID=$!
start=$(date +%s)
"$BIN" demo --metrics-addr "$METRICS" --kubeconfig "$WORK/kubeconfig" &
DEMO=$!
wait "$DEMO" || { echo "the demo failed; not rendering" >&2; exit 1; }
DEMO=""
sleep 3   # the last scrapes
end=$(date +%s)
"$VENV/bin/python" scripts/render_dashboard.py \
  --dashboard charts/ingress-failover/dashboards/ingress-failover.json \
  --prometheus "http://$PROM" --start "$start" --end "$end" --scrape-interval 1 --out "$OUT"
echo "wrote $OUT"
