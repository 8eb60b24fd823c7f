#!/usr/bin/env bash
# make loadtest / make loadtest-redis: runs the k6 scenarios (k6/check.js)
# against ext-authz AND against the no-op server (cmd/noopauthz) beside it,
# in alternating rounds, and judges ext-authz relative to that baseline
# (cmd/k6judge): latency and throughput as ratios to the no-op measured in
# the same run, correctness (the decision mix) absolutely. No millisecond
# threshold: on a busy machine those measured the machine, not ext-authz.
#
#   loadtest/run.sh [memory|redis]
#
# It builds the binaries, mints the token pools, starts redis-server (redis
# variant), ext-authz and noopauthz on free 127.0.0.1 ports, runs ROUNDS
# rounds of one k6 run against each (ext-authz first in odd rounds, the
# no-op first in even ones, so drift on the machine hits both), stops
# everything it started and exits non-zero when a judgement fails.
#
# Knobs: ROUNDS (3), DURATION (steady part per k6 run, 10s), WARMUP (3s),
# RAMP_TIME (6s), RAMP_HOLD (3s), RAMP_GAP (1s), RATE_SCALE, RAMP_PEAK (see
# k6/lib.js); the limits P99_K (2), P99_SLACK (2ms), MIN_THROUGHPUT (0.97)
# (see README.md for why these); POOL_SIZE, K6 (a k6 binary).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh

variant=${1:-memory}
case $variant in
  memory | redis) ;;
  *) echo "usage: $0 [memory|redis]" >&2; exit 2 ;;
esac

ROUNDS=${ROUNDS:-3}
P99_K=${P99_K:-2}
P99_SLACK=${P99_SLACK:-2ms}
MIN_THROUGHPUT=${MIN_THROUGHPUT:-0.97}
export DURATION=${DURATION:-10s} WARMUP=${WARMUP:-3s} RAMP_TIME=${RAMP_TIME:-6s} \
  RAMP_HOLD=${RAMP_HOLD:-3s} RAMP_GAP=${RAMP_GAP:-1s}

lt_init
lt_k6
lt_build
go build -o "$LT_BIN/" ./loadtest/cmd/k6judge
lt_mint
if [[ $variant == redis ]]; then
  lt_start_redis
fi
lt_start_authz "loadtest/config/$variant.yaml" "$variant"
lt_start_noop
lt_log "no-op baseline on $NOOP_ADDR (pid $NOOP_PID)"
lt_log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# k6run ROLE ADDR ROUND: one k6 run of check.js; its summary goes to
# .out/k6-VARIANT-ROLE-ROUND.json. Exit 99 (a threshold crossed) is judged
# by k6judge from the summary; any other failure stops the run.
summaries_authz=()
summaries_noop=()
k6run() {
  local role=$1 addr=$2 round=$3
  local out=$LT_OUT/k6-$variant-$role-$round.json
  rm -f "$out"
  lt_log "round $round/$ROUNDS: k6 run loadtest/k6/check.js against $role ($addr)"
  local st=0
  "$K6" run --quiet --no-usage-report \
    -e ROLE="$role" -e SUMMARY_OUT="$out" \
    -e GRPC_ADDR="$addr" -e POOL_DIR="$PWD/$LT_POOL" -e PROTOSET="$PWD/$LT_OUT/envoy.protoset" \
    loadtest/k6/check.js || st=$?
  if [[ ! -s $out ]] || ((st != 0 && st != 99)); then
    lt_log "k6 could not run against $role (exit $st)"
    exit 1
  fi
  # A server that is gone (crashed, or signalled from outside) makes every
  # later answer a transport error: say so instead of judging the wreck.
  local name pid
  for name in ext-authz:$AUTHZ_PID noopauthz:$NOOP_PID; do
    pid=${name#*:}
    if ! kill -0 "$pid" 2>/dev/null; then
      lt_log "${name%%:*} (pid $pid) is no longer running after round $round ($role); last lines of its log:"
      tail -3 "$LT_OUT/$([[ ${name%%:*} == ext-authz ]] && echo "ext-authz-$variant" || echo noopauthz).log" >&2
      exit 1
    fi
  done
  if [[ $role == authz ]]; then summaries_authz+=("$out"); else summaries_noop+=("$out"); fi
}

for round in $(seq 1 "$ROUNDS"); do
  if ((round % 2 == 1)); then
    k6run authz "$AUTHZ_ADDR" "$round"
    k6run baseline "$NOOP_ADDR" "$round"
  else
    k6run baseline "$NOOP_ADDR" "$round"
    k6run authz "$AUTHZ_ADDR" "$round"
  fi
done
lt_log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# The server's own view (Check latency histograms, decisions, store
# errors), to tell server time from load-generator time.
curl -fsS -o "$LT_OUT/metrics-$variant.txt" "http://$AUTHZ_ADMIN/metrics" || true
for p in "ext-authz:$AUTHZ_PID" "noopauthz:$NOOP_PID"; do
  if [[ -r /proc/${p#*:}/status ]]; then
    lt_log "${p%%:*} peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/${p#*:}/status")"
  fi
done

join() { local IFS=,; echo "$*"; }
status=0
"$LT_BIN/k6judge" -label "$variant" -k "$P99_K" -slack "$P99_SLACK" -min-throughput "$MIN_THROUGHPUT" \
  -authz "$(join "${summaries_authz[@]}")" -baseline "$(join "${summaries_noop[@]}")" |
  tee "$LT_OUT/k6judge-$variant.txt" || status=$?
if ((status != 0)); then
  lt_log "failed ($variant): see above; server log: $LT_OUT/ext-authz-$variant.log"
else
  lt_log "passed ($variant): ext-authz within its limits relative to the no-op server, decisions as expected"
fi
exit "$status"
