#!/usr/bin/env bash
# Probing vs HAProxy, side by side in one run (see benches/README.md).
#
# Installs HAProxy if missing, builds the bench binary, runs it bounded in time, and kills
# everything it started on exit. Only loopback (127.0.0.0/8) is used. The last four lines of
# output are the figures the check reads.
set -euo pipefail

cd "$(dirname "$0")/.."
WINDOW="${WINDOW_SECS:-20}"
LIMIT="${TIME_LIMIT_SECS:-900}"
WORK="$(mktemp -d /tmp/probe-vs-haproxy.XXXXXX)"
RUNNER=""

cleanup() {
  set +e
  if [[ -n "$RUNNER" ]]; then kill "$RUNNER" 2>/dev/null; fi
  if [[ -f "$WORK/pids" ]]; then
    while read -r pid; do kill -9 "$pid" 2>/dev/null; done <"$WORK/pids"
  fi
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]]; then
  echo "installing haproxy" >&2
  apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy >&2
fi
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
echo "haproxy: $("$HAPROXY" -v | head -1)" >&2

cargo build --release --example probe_bench >&2
BIN=target/release/examples/probe_bench

# Our prober holds one socket per endpoint and HAProxy reserves about one per server plus
# 2x maxconn: 10,000 endpoints need a soft limit of about 16,384 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt 16384 ]]; then
  echo "warning: open-files limit $(ulimit -n) is below 16384; the 10,000-endpoint run may fail" >&2
fi

timeout --signal=TERM --kill-after=10 "$LIMIT" \
  "$BIN" run --haproxy "$HAPROXY" --dir "$WORK" --clk-tck "$(getconf CLK_TCK)" \
  --scales 1000,10000 --window-secs "$WINDOW" &
RUNNER=$!
wait "$RUNNER"
RUNNER=""
