#!/usr/bin/env bash
# make loadtest-scale: how ext-authz's costs grow with the size of its
# configuration. Three dimensions, three sizes each:
#
#   rules        10, 1k, 10k policy rules; the request matches the last one
#   keys         10, 100k, 1M API keys (plain key-file format)
#   descriptors  10, 1k, 10k rate-limit descriptor entries; the request's
#                two descriptors are the last two (in-memory counters)
#
# For each dimension loadtest/cmd/scalegen writes the three configs, the
# script starts the three servers one after the other (start-up time:
# from exec to /readyz answering; peak RSS once ready), then drives all
# three with authzload in the same rotating rounds (the largest as the
# target, the middle as the "peer", the smallest as the baseline), so the
# Check throughput and server CPU per request of each size are ratios to
# the smallest measured beside it. Peak RSS at the end covers start-up and
# load.
#
#   loadtest/scale.sh [rules|keys|descriptors...]     (default: all three)
#
# Knobs: DURATION (4s per round and server), WARMUP (1s), ROUNDS (3),
# WORKERS (64), CONNS (2), RULES_SIZES, KEYS_SIZES, DESCRIPTORS_SIZES
# (three sizes each, smallest first). About 4-6 minutes with the defaults
# (most of it starting the 1M-key server); it stops by itself.
# Output: loadtest/.out/scale-DIM.txt/.json and the SCALE lines in
# loadtest/.out/scale-summary.txt.
#
# The machine is protected: a server whose RSS passes SCALE_MAX_RSS_MIB
# (8192) while starting, or that is not ready within SCALE_START_TIMEOUT
# seconds (180), is stopped and reported (status=rss_limit / timeout) and
# the dimension is measured with the sizes that did start.
#
# ext-authz runs with the Deployment's memory setting, SCALE_GOMEMLIMIT
# (230MiB, as deploy/base/deployment.yaml sets for its 256Mi limit; empty:
# none), so peak RSS is what the deployed replica would reach: since serve
# defaults to GOGC=400 (docs/operations.md), an unbounded heap may grow to
# five times the live one, which a 1M-key config does only where there is
# no limit.
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh

DURATION=${DURATION:-4s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-64}
CONNS=${CONNS:-2}
RULES_SIZES=${RULES_SIZES:-10 1000 10000}
KEYS_SIZES=${KEYS_SIZES:-10 100000 1000000}
DESCRIPTORS_SIZES=${DESCRIPTORS_SIZES:-10 1000 10000}
SCALE_MAX_RSS_MIB=${SCALE_MAX_RSS_MIB:-8192}
SCALE_START_TIMEOUT=${SCALE_START_TIMEOUT:-180}

dims=("$@")
if ((${#dims[@]} == 0)); then
  dims=(rules keys descriptors)
fi

secs() { local d=${1%s}; echo "${d%%.*}"; }
per_dim=$((3 * ROUNDS * ($(secs "$DURATION") + $(secs "$WARMUP")) + 20))
lt_log "scale run: ${dims[*]}; expect about $((${#dims[@]} * per_dim / 60 + 2)) minutes (${per_dim}s a dimension, plus start-up of the largest sizes: up to ~2 min for 1M API keys)"

lt_init
lt_build
go build -o "$LT_BIN/" ./loadtest/cmd/scalegen
lt_mint
SCALE_OUT=$LT_OUT/scale
mkdir -p "$SCALE_OUT"
: >"$LT_OUT/scale-summary.txt"
failed=()

# vmhwm PID: the process's peak RSS in KiB; vmrss PID: its RSS now.
vmhwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
vmrss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# start_sized DIM N: starts ext-authz on DIR/config.yaml and times it from
# exec to /readyz. Sets PID_<N>, ADDR_<N>, STARTUP_MS_<N>, READY_KIB_<N>;
# on failure STATUS_<N> (exited, rss_limit, timeout), the server stopped.
start_sized() {
  local dim=$1 n=$2 dir=$SCALE_OUT/$1-$2
  LOADTEST_GRPC_PORT=$(lt_free_port)
  LOADTEST_ADMIN_PORT=$(lt_free_port)
  export LOADTEST_GRPC_PORT LOADTEST_ADMIN_PORT
  local t0 t1 pid status= rss=0
  t0=$(date +%s%N)
  GOMEMLIMIT=${SCALE_GOMEMLIMIT-230MiB} "$AUTHZ_BIN" serve --config "$dir/config.yaml" >"$LT_OUT/ext-authz-scale-$dim-$n.log" 2>&1 &
  pid=$!
  LT_PIDS+=("$pid")
  while :; do
    if curl -fsS -o /dev/null "http://127.0.0.1:$LOADTEST_ADMIN_PORT/readyz" 2>/dev/null; then
      break
    fi
    rss=$(vmrss "$pid")
    if ! kill -0 "$pid" 2>/dev/null; then
      status=exited
    elif ((rss > SCALE_MAX_RSS_MIB * 1024)); then
      status=rss_limit
    elif (($(date +%s) - t0 / 1000000000 > SCALE_START_TIMEOUT)); then
      status=timeout
    fi
    if [[ -n $status ]]; then
      t1=$(date +%s%N)
      lt_log "ext-authz $dim=$n not ready ($status) after $(((t1 - t0) / 1000000)) ms, RSS $((rss / 1024)) MiB: $(tail -3 "$LT_OUT/ext-authz-scale-$dim-$n.log")"
      lt_stop "$pid"
      printf -v "STATUS_$n" %s "$status"
      printf -v "STARTUP_MS_$n" %s "$(((t1 - t0) / 1000000))"
      printf -v "READY_KIB_$n" %s "$rss"
      return 1
    fi
    sleep 0.02
  done
  t1=$(date +%s%N)
  printf -v "PID_$n" %s "$pid"
  printf -v "ADDR_$n" %s "127.0.0.1:$LOADTEST_GRPC_PORT"
  printf -v "STARTUP_MS_$n" %s "$(((t1 - t0) / 1000000))"
  printf -v "READY_KIB_$n" %s "$(vmhwm "$pid")"
  local ms=STARTUP_MS_$n kib=READY_KIB_$n
  lt_log "ext-authz $dim=$n ready in ${!ms} ms, peak RSS $((${!kib} / 1024)) MiB (pid $pid)"
}

# ratio FILE OF VS FIELD: a field of authzload's RATIO line.
ratio() {
  awk -v of="$2" -v vs="$3" -v f="$4" '$1 == "RATIO" {
      ok = 0; val = ""
      for (i = 2; i <= NF; i++) { split($i, kv, "="); m[kv[1]] = kv[2] }
      if (m["of"] == of && m["vs"] == vs) print m[f]
    }' "$1"
}

scale_dim() {
  local dim=$1 sizes scenario pool
  case $dim in
    rules) sizes=($RULES_SIZES) scenario=jwt pool=$LT_POOL/jwt.txt ;;
    keys) sizes=($KEYS_SIZES) scenario=apikey pool= ;;
    descriptors) sizes=($DESCRIPTORS_SIZES) scenario=jwt-ratelimit pool=$LT_POOL/jwt.txt ;;
    *) lt_log "unknown dimension $dim (rules, keys, descriptors)"; return 2 ;;
  esac
  if ((${#sizes[@]} != 3)); then
    lt_log "$dim: want three sizes, smallest first, got ${sizes[*]}"
    return 2
  fi
  local n s=${sizes[0]} m=${sizes[1]} l=${sizes[2]}
  for n in "${sizes[@]}"; do
    unset "STATUS_$n" "PID_$n"
  done
  for n in "${sizes[@]}"; do
    local t0=$SECONDS
    rm -rf "$SCALE_OUT/$dim-$n"
    "$LT_BIN/scalegen" -kind "$dim" -n "$n" -dir "$SCALE_OUT/$dim-$n"
    lt_log "generated $dim=$n in $((SECONDS - t0))s"
  done
  if [[ $dim == keys ]]; then
    # The same requests for every size: the smallest file's keys, which
    # every larger file holds too.
    pool=$SCALE_OUT/keys-$s/apikey-pool.txt
  fi
  local started=()
  for n in "${sizes[@]}"; do
    if start_sized "$dim" "$n"; then
      started+=("$n")
    fi
  done
  local out=$LT_OUT/scale-$dim
  rm -f "$out.txt" "$out.json"
  if ((${#started[@]} >= 2)) && [[ ${started[0]} == "$s" ]]; then
    # The largest started size is the target, the smallest the baseline,
    # a size between them the peer.
    local ts=${started[-1]} args=()
    local tp=PID_$ts ta=ADDR_$ts ps=PID_$s as=ADDR_$s
    args=(-addr "${!ta}" -pid "${!tp}" -target-name "$dim-$ts" -baseline "${!as}" -baseline-pid "${!ps}" -baseline-name "$dim-$s")
    if ((${#started[@]} == 3)); then
      local pm=PID_$m am=ADDR_$m
      args+=(-peer "${!am}" -peer-pid "${!pm}" -peer-name "$dim-$m")
    fi
    local rc=0
    "$LT_BIN/authzload" "${args[@]}" -scenario "$scenario" -pool "$pool" -workers "$WORKERS" -conns "$CONNS" \
      -duration "$DURATION" -warmup "$WARMUP" -rounds "$ROUNDS" -expect ok \
      -label "scale-$dim" -json "$out.json" | tee "$out.txt" || rc=$?
    if ((rc != 0)); then
      failed+=("$dim")
    fi
  else
    lt_log "$dim: fewer than two sizes (with the smallest) started; no load measured"
    failed+=("$dim")
  fi
  local sms=STARTUP_MS_$s speak=0
  local sstatus=STATUS_$s
  if [[ -z ${!sstatus:-} ]]; then
    local ps=PID_$s
    speak=$(vmhwm "${!ps}")
  fi
  for n in "${sizes[@]}"; do
    local p=PID_$n ms=STARTUP_MS_$n kib=READY_KIB_$n st=STATUS_$n
    local peak=0 name=$dim-$n tput=1 cpu=1 status=${!st:-ok}
    if [[ $status == ok ]]; then
      peak=$(vmhwm "${!p}")
      if [[ $n != "$s" && -f $out.txt ]]; then
        tput=$(ratio "$out.txt" "$name" "$dim-$s" throughput)
        cpu=$(ratio "$out.txt" "$name" "$dim-$s" cpu)
      fi
    else
      peak=${!kib} tput=- cpu=-
    fi
    awk -v dim="$dim" -v n="$n" -v ms="${!ms}" -v sms="${!sms}" -v ready="${!kib}" -v peak="$peak" \
      -v speak="$speak" -v tput="${tput:--}" -v cpu="${cpu:--}" -v status="$status" 'BEGIN {
        printf "SCALE dim=%s n=%s status=%s startup_ms=%d startup_x=%.2f ready_rss_mib=%.1f peak_rss_mib=%.1f peak_rss_x=%.2f throughput_x=%s cpu_per_check_x=%s\n",
          dim, n, status, ms, (sms > 0 ? ms / sms : 0), ready / 1024, peak / 1024, (speak > 0 ? peak / speak : 0), tput, cpu
      }' | tee -a "$LT_OUT/scale-summary.txt"
  done
  for n in "${started[@]}"; do
    local p=PID_$n
    lt_stop "${!p}"
  done
}

for d in "${dims[@]}"; do
  scale_dim "$d"
done
lt_log "summary (ratios to the smallest size, same rounds)"
cat "$LT_OUT/scale-summary.txt"
if ((${#failed[@]} > 0)); then
  lt_log "failed: ${failed[*]}"
  exit 1
fi
