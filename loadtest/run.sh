#!/usr/bin/env bash
# make loadtest / make loadtest-redis: runs the k6 scenarios (k6/check.js)
# against ext-authz on loopback and exits non-zero when a threshold fails.
#
#   loadtest/run.sh [memory|redis]
#
# It builds the binaries, mints the token pools, starts redis-server (redis
# variant) and ext-authz on free 127.0.0.1 ports, runs k6 with its
# thresholds, and stops everything it started. Knobs: DURATION, RATE_SCALE,
# RAMP_PEAK, P99_MS... (see k6/lib.js), POOL_SIZE, K6 (a k6 binary).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh

variant=${1:-memory}
case $variant in
  memory | redis) ;;
  *) echo "usage: $0 [memory|redis]" >&2; exit 2 ;;
esac

lt_init
lt_k6
lt_build
lt_mint
if [[ $variant == redis ]]; then
  lt_start_redis
fi
lt_start_authz "loadtest/config/$variant.yaml" "$variant"

lt_log "k6 run loadtest/k6/check.js against $AUTHZ_ADDR ($variant)"
status=0
"$K6" run --quiet \
  -e GRPC_ADDR="$AUTHZ_ADDR" -e POOL_DIR="$PWD/$LT_POOL" -e PROTOSET="$PWD/$LT_OUT/envoy.protoset" \
  --summary-export "$LT_OUT/k6-$variant-summary.json" \
  loadtest/k6/check.js || status=$?
# The server's own view (Check latency histograms, decisions, store
# errors), to tell server time from load-generator time.
curl -fsS -o "$LT_OUT/metrics-$variant.txt" "http://$AUTHZ_ADMIN/metrics" || true
if [[ -r /proc/$AUTHZ_PID/status ]]; then
  lt_log "ext-authz peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$AUTHZ_PID/status")"
fi
if ((status != 0)); then
  lt_log "k6 failed (exit $status): a threshold was crossed or k6 could not run; server log: $LT_OUT/ext-authz-$variant.log"
else
  lt_log "all thresholds passed ($variant)"
fi
exit "$status"
