#!/usr/bin/env bash
# make throughput: the Go throughput harness. Measures ext-authz against
# the no-op baseline (noopauthz) in the same run, on loopback, and prints
# the ratios recorded in loadtest/RESULTS.md:
#
#   jwt        JWT path, verifications cached (memory config, /api/)
#   udb        UDB ticket path (memory config, /app/)
#   jwt-redis  JWT + two Redis-counted descriptors (redis config, /limited/)
#   rls        ShouldRateLimit with the same two descriptors, Redis store
#   jwt-open   JWT path open loop at OPEN_RATE/s: latency at a fixed load
#   jwt-fresh  JWT path, never-seen tokens: every server is sent each token
#              of a FRESH_POOL-token pool at most once (authzload -fresh),
#              so ext-authz verifies every JWT; report only, not in the
#              default list (minting the pool the first time takes minutes)
#
#   loadtest/throughput.sh [measurement...]      (default: all of them)
#
# Knobs: DURATION (per round and server, 10s), WARMUP (2s), ROUNDS (3),
# WORKERS (64), CONNS (2), OPEN_RATE (2500), POOL_SIZE (1000), FRESH_POOL
# (400000), FRESH_WARMUP (WARMUP), DECODE (lean; full: the driver decodes
# whole answers, as before). Results and
# JSON summaries go to loadtest/.out/. Peak RSS is each server's VmHWM at
# the end of its measurement. With PROFILE=1, a 10s CPU profile of ext-authz
# is taken during each measurement (loadtest/.out/cpu-NAME.pprof).
#
# PEERS=1 adds a peer to the same rotating rounds, built from source at a
# pinned version by loadtest/peers.sh: OPA-Envoy with a JWT policy to jwt,
# envoyproxy/ratelimit on the same redis-server to rls. jwt, jwt-redis and
# rls print GOAL lines for issue 20's goals (report only); JUDGE=1 makes a
# missed goal fail the script (exit 3). `make throughput-goals` is
# PEERS=1 JUDGE=1 with jwt, jwt-redis and rls.
set -euo pipefail
# A measurement whose answers were not the expected ones (expired tokens,
# a wrong rule) fails, the others still run, and the script exits 1; when
# every measurement was sound but a judged goal was missed, it exits 3.
cd "$(dirname "$0")/.."
source loadtest/lib.sh

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-64}
CONNS=${CONNS:-2}
OPEN_RATE=${OPEN_RATE:-2500}
FRESH_POOL=${FRESH_POOL:-400000}
FRESH_WARMUP=${FRESH_WARMUP:-$WARMUP}
DECODE=${DECODE:-lean}

measurements=("$@")
if ((${#measurements[@]} == 0)); then
  measurements=(jwt udb jwt-redis rls jwt-open)
fi

failed=()
missed=()
measured=()
lt_init
lt_build
if [[ ${PEERS:-} == 1 ]]; then
  lt_peers
fi
lt_mint
for m in "${measurements[@]}"; do
  if [[ $m == jwt-fresh ]]; then
    lt_mint_fresh "$FRESH_POOL"
  fi
done
lt_start_noop

# drive NAME CONFIG SCENARIO POOL EXPECT PEER [extra authzload flags]: one
# measurement against a fresh ext-authz, and against a fresh PEER
# (opa-envoy, ratelimit) when PEERS=1.
drive() {
  local name=$1 config=$2 scenario=$3 pool=$4 expect=$5 peer=$6
  shift 6
  rm -f "$LT_OUT/throughput-$name".* "$LT_OUT/cpu-$name.pprof"
  measured+=("$name")
  lt_start_authz "loadtest/config/$config.yaml" "$name"
  local args=(-addr "$AUTHZ_ADDR" -baseline "$NOOP_ADDR" -pid "$AUTHZ_PID" -baseline-pid "$NOOP_PID"
    -scenario "$scenario" -workers "$WORKERS" -conns "$CONNS" -duration "$DURATION" -warmup "$WARMUP"
    -rounds "$ROUNDS" -expect "$expect" -label "$name" -json "$LT_OUT/throughput-$name.json" -decode "$DECODE" "$@")
  if [[ -n $pool ]]; then
    args+=(-pool "$LT_POOL/$pool.txt")
  fi
  if [[ $config == redis ]]; then
    args+=(-aux-pid "$REDIS_PID") # redis-server shares the cores: show its CPU per request
  fi
  local peer_pid=
  if [[ -n $peer && ${PEERS:-} == 1 ]]; then
    case $peer in
      opa-envoy) lt_start_opa_envoy ;;
      ratelimit) lt_start_ratelimit ;;
    esac
    peer_pid=$PEER_PID
    args+=(-peer "$PEER_ADDR" -peer-pid "$PEER_PID" -peer-name "$peer")
  fi
  if [[ ${JUDGE:-} == 1 ]]; then
    args+=(-judge)
  fi
  local prof=
  if [[ ${PROFILE:-} == 1 ]]; then
    (sleep 5 && curl -fsS -o "$LT_OUT/cpu-$name.pprof" "http://$AUTHZ_ADMIN/debug/pprof/profile?seconds=10") &
    prof=$!
  fi
  local rc=0
  "$LT_BIN/authzload" "${args[@]}" | tee "$LT_OUT/throughput-$name.txt" || rc=${PIPESTATUS[0]}
  case $rc in
    0) ;;
    3) missed+=("$name") ;;
    *) failed+=("$name") ;;
  esac
  if [[ -n $prof ]]; then
    wait "$prof" || lt_log "profile of $name failed"
  fi
  lt_stop "$AUTHZ_PID"
  if [[ -n $peer_pid ]]; then
    lt_stop "$peer_pid"
  fi
}

for m in "${measurements[@]}"; do
  case $m in
    jwt) drive jwt memory jwt jwt ok opa-envoy -goal jwt-cached ;;
    udb) drive udb memory udb udb ok "" ;;
    jwt-open) drive jwt-open memory jwt jwt ok "" -rate "$OPEN_RATE" ;;
    # Warm-ups draw from the same walk: they send never-seen tokens too.
    jwt-fresh) drive jwt-fresh memory jwt jwt-fresh ok opa-envoy -fresh -warmup "$FRESH_WARMUP" ;;
    jwt-redis | rls)
      if [[ -z ${REDIS_PID:-} ]]; then
        lt_start_redis
      fi
      if [[ $m == jwt-redis ]]; then
        drive jwt-redis redis jwt-ratelimit jwt ok "" -goal jwt-redis
      else
        drive rls redis rls "" ok ratelimit -users "$POOL_SIZE" -goal rls
      fi
      ;;
    *) echo "unknown measurement $m (jwt, udb, jwt-redis, rls, jwt-open, jwt-fresh)" >&2; exit 2 ;;
  esac
done

lt_log "summary"
for name in "${measured[@]}"; do
  grep -h '^RESULT\|^target\|^peer' "$LT_OUT/throughput-$name.txt" || true
done
# The machine-readable lines of every measurement, in one place.
for name in "${measured[@]}"; do
  grep -h '^RATIO\|^GOAL' "$LT_OUT/throughput-$name.txt" || true
done | tee "$LT_OUT/throughput-summary.txt"
if ((${#failed[@]} > 0)); then
  lt_log "failed: ${failed[*]}"
  exit 1
fi
if ((${#missed[@]} > 0)); then
  lt_log "goals missed: ${missed[*]}"
  exit 3
fi
