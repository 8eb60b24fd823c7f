#!/usr/bin/env bash
# loadtest/stallhunt.sh: hunts the first-round stall (RESULTS.md, "the
# first-round stall"): a round right after ext-authz starts that answers a
# few hundred requests per second with a p99 of seconds instead of
# ~20,000/s. Each attempt starts a fresh ext-authz (memory config), drives
# it at once for one round without warm-up, and meanwhile takes goroutine
# dumps of BOTH the server (admin pprof) and the driver (authzload -pprof)
# and the sockets' TCP state (ss -ti) every DUMP_EVERY, and runs
# `authzload schedprobe` beside them: a process that only sleeps 1 ms and
# prints each wake-up that came over 30 ms late. A stalled round during
# which the probe also woke seconds late was the machine's stall (a run
# queue or a VM not running processes), not ext-authz's. Attempts whose p99
# is over STALL_P99_MS keep their dumps in loadtest/.out/stallhunt/N/; the
# others keep only their result line. Run it under the bench lock:
#
#   flock /work/wt/bench.lock env ATTEMPTS=8 loadtest/stallhunt.sh
#
# Knobs: ATTEMPTS (8), DURATION (2s), WARMUP (0s), WORKERS (64), CONNS (2),
# STALL_P99_MS (100), DUMP_EVERY (0.3s), DUMPS (6).
# Exit 0 when no attempt stalled, 4 when one did (its directory is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh

ATTEMPTS=${ATTEMPTS:-8}
DURATION=${DURATION:-2s}
WARMUP=${WARMUP:-0s}
WORKERS=${WORKERS:-64}
CONNS=${CONNS:-2}
STALL_P99_MS=${STALL_P99_MS:-100}
DUMP_EVERY=${DUMP_EVERY:-0.3}
DUMPS=${DUMPS:-6}

lt_init
lt_build
lt_mint
hunt=$LT_OUT/stallhunt
rm -rf "$hunt"
mkdir -p "$hunt"

# dumps DIR DRIVER_PPROF: DUMPS rounds of server and driver goroutine dumps
# and the gRPC sockets' state, DUMP_EVERY apart (each round's three taken
# together, so the two processes' views are as close in time as they get).
dumps() {
  local dir=$1 drv=$2 i
  for ((i = 1; i <= DUMPS; i++)); do
    sleep "$DUMP_EVERY"
    date -u +%T.%N >"$dir/at-$i.txt"
    ss -tinmoe "( sport = :$LOADTEST_GRPC_PORT or dport = :$LOADTEST_GRPC_PORT )" >"$dir/ss-$i.txt" 2>&1 &
    curl -s -m 3 -o "$dir/server-$i.txt" "http://$AUTHZ_ADMIN/debug/pprof/goroutine?debug=2" &
    curl -s -m 3 -o "$dir/driver-$i.txt" "http://$drv/debug/pprof/goroutine?debug=2" &
  done
  wait
}

stalled=()
for ((n = 1; n <= ATTEMPTS; n++)); do
  dir=$hunt/$n
  mkdir -p "$dir"
  lt_start_authz loadtest/config/memory.yaml "stallhunt-$n"
  drv=127.0.0.1:$(lt_free_port)
  "$LT_BIN/authzload" schedprobe >"$dir/schedprobe.txt" 2>&1 &
  probe=$!
  dumps "$dir" "$drv" &
  dumper=$!
  rc=0
  "$LT_BIN/authzload" -addr "$AUTHZ_ADDR" -pid "$AUTHZ_PID" -scenario jwt -pool "$LT_POOL/jwt.txt" \
    -workers "$WORKERS" -conns "$CONNS" -duration "$DURATION" -warmup "$WARMUP" -rounds 1 \
    -label "stallhunt-$n" -pprof "$drv" >"$dir/driver.txt" 2>&1 || rc=$?
  wait "$dumper" || true
  kill -TERM "$probe" 2>/dev/null || true
  wait "$probe" || true
  lt_stop "$AUTHZ_PID"
  mv "$LT_OUT/ext-authz-stallhunt-$n.log" "$dir/server.log"
  line=$(grep '^round 1' "$dir/driver.txt" || true)
  p99=$(awk '/^round 1/ { for (i = 1; i < NF; i++) if ($i == "p99") { sub(/ms$/, "", $(i + 1)); print $(i + 1) } }' "$dir/driver.txt")
  printf '%s attempt %d rc=%d load %s, %s: %s\n' "$(date -u +%T)" "$n" "$rc" \
    "$(cut -d' ' -f1 /proc/loadavg)" "$(grep -o 'worst wake-up.*' "$dir/schedprobe.txt" || echo 'no probe result')" \
    "${line:-$(tail -1 "$dir/driver.txt")}"
  if [[ -z $p99 ]] || awk -v p="$p99" -v t="$STALL_P99_MS" 'BEGIN { exit !(p > t) }'; then
    stalled+=("$dir")
  else
    rm -f "$dir"/server-*.txt "$dir"/driver-*.txt "$dir"/ss-*.txt "$dir"/at-*.txt
  fi
done
if ((${#stalled[@]} > 0)); then
  lt_log "stalled (p99 over ${STALL_P99_MS} ms, or no result): ${stalled[*]}"
  exit 4
fi
lt_log "no stall in $ATTEMPTS attempts"
