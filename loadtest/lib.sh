# Shared by loadtest/run.sh (k6) and loadtest/throughput.sh (Go driver).
# Sourced from the repository root. Everything started here listens on
# 127.0.0.1 only, on free ports, and is stopped by lt_cleanup (an EXIT
# trap), which kills only the processes these scripts started, by PID.

LT_DIR=loadtest
LT_BIN=$LT_DIR/.bin
LT_POOL=$LT_DIR/.pool
LT_OUT=$LT_DIR/.out
K6_VERSION=v1.8.1
POOL_SIZE=${POOL_SIZE:-1000}
LT_PIDS=()

lt_log() { printf '== %s\n' "$*" >&2; }

lt_cleanup() {
  local pid
  for pid in "${LT_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${LT_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  LT_PIDS=()
}

lt_init() {
  mkdir -p "$LT_BIN" "$LT_POOL" "$LT_OUT"
  trap lt_cleanup EXIT
  trap 'exit 130' INT TERM
}

# lt_build builds the server, the no-op baseline, the driver and the
# protoset. EXT_AUTHZ_BIN=path measures a given ext-authz binary instead
# (another build, a release) against the same harness.
lt_build() {
  lt_log "building noopauthz, authzload, protoset${EXT_AUTHZ_BIN:+ (ext-authz: $EXT_AUTHZ_BIN)} into $LT_BIN"
  local pkgs=(./loadtest/cmd/noopauthz ./loadtest/cmd/authzload ./loadtest/cmd/protoset)
  if [[ -z ${EXT_AUTHZ_BIN:-} ]]; then
    pkgs+=(./cmd/ext-authz)
  fi
  go build -o "$LT_BIN/" "${pkgs[@]}"
  AUTHZ_BIN=${EXT_AUTHZ_BIN:-$LT_BIN/ext-authz}
  "$LT_BIN/protoset" -o "$LT_OUT/envoy.protoset"
}

# lt_k6 sets K6 to a k6 binary (K6, else k6 on PATH, else loadtest/.bin/k6,
# else GOPATH/bin/k6), installing the pinned version from the Go module
# proxy when missing (a build of a few minutes, once).
lt_k6() {
  K6=${K6:-$(command -v k6 || true)}
  if [[ -z $K6 && -x $LT_BIN/k6 ]]; then
    K6=$LT_BIN/k6
  fi
  if [[ -z $K6 ]]; then
    K6="$(go env GOPATH)/bin/k6"
  fi
  if [[ ! -x $K6 ]]; then
    lt_log "installing k6 $K6_VERSION (go install go.k6.io/k6@$K6_VERSION; takes a few minutes)"
    go install "go.k6.io/k6@$K6_VERSION"
    K6="$(go env GOPATH)/bin/k6"
  fi
}

# lt_mint mints the token pools with the quickstart's development keys:
# POOL_SIZE JWT users, POOL_SIZE UDB ticket users, and the one hot user.
# Pools are never committed (.gitignore) and live two hours.
lt_mint() {
  lt_log "minting token pools ($POOL_SIZE users) into $LT_POOL"
  local mint=("$AUTHZ_BIN" token mint --ttl 2h)
  local jwt=(--kind jwt --key-file examples/quickstart/keys/jwt-rs256.pem --kid dev-rs256-1
    --issuer https://issuer.quickstart.example --audience quickstart --app loadtest --scope "orders:read")
  "${mint[@]}" "${jwt[@]}" --count "$POOL_SIZE" >"$LT_POOL/jwt.txt"
  "${mint[@]}" "${jwt[@]}" --count 1 --subject hot-user >"$LT_POOL/hot.txt"
  "${mint[@]}" --kind udb-ticket --key-file examples/quickstart/keys/ticket-hs256.key --kid dev-1 \
    --app loadtest --count "$POOL_SIZE" --user-prefix udb-user- >"$LT_POOL/udb.txt"
}

# lt_mint_fresh N: a pool of N RS256 JWTs for the never-seen-tokens
# measurement (jwt-fresh), each for its own user, into $LT_POOL/jwt-fresh.txt.
# Minting costs ~1 ms of CPU per token (an RSA-2048 signature), so tokens
# are minted in chunks of FRESH_CHUNK (10000), MINT_JOBS (the number of
# cores) at a time, and cached in $LT_OUT/fresh-pool/KEY/, KEY a SHA-256 of
# the signing key and the claims; a chunk is reused for 20 hours (tokens
# live 24). Nothing in it is secret beyond the published development key.
lt_mint_fresh() {
  local n=$1 chunk=${FRESH_CHUNK:-10000} jobs=${MINT_JOBS:-$(nproc)}
  local key=examples/quickstart/keys/jwt-rs256.pem
  local claims="dev-rs256-1 https://issuer.quickstart.example quickstart loadtest orders:read $chunk"
  local id
  id=$({ cat "$key"; echo "$claims"; } | sha256sum | cut -c1-16)
  local dir=$LT_OUT/fresh-pool/$id
  mkdir -p "$dir"
  find "$dir" -name 'chunk-*.txt' -mmin +1200 -delete
  local chunks=$(((n + chunk - 1) / chunk)) i missing=()
  for ((i = 1; i <= chunks; i++)); do
    [[ -s $dir/chunk-$i.txt ]] || missing+=("$i")
  done
  if ((${#missing[@]} > 0)); then
    lt_log "minting ${#missing[@]} chunk(s) of $chunk fresh JWTs ($jobs at a time; ~1 ms of CPU per token) into $dir"
    printf '%s\n' "${missing[@]}" | xargs -P "$jobs" -I{} sh -c \
      'nice -n 10 "$0" token mint --ttl 24h --kind jwt --key-file "$1" --kid dev-rs256-1 --issuer https://issuer.quickstart.example \
        --audience quickstart --app loadtest --scope orders:read --count "$2" --user-prefix "fresh-{}-" >"$3/chunk-{}.tmp" &&
        mv "$3/chunk-{}.tmp" "$3/chunk-{}.txt"' "$AUTHZ_BIN" "$key" "$chunk" "$dir"
  fi
  for ((i = 1; i <= chunks; i++)); do
    cat "$dir/chunk-$i.txt"
  done | awk -v n="$n" 'NR <= n' >"$LT_POOL/jwt-fresh.txt"
  lt_log "fresh pool: $(wc -l <"$LT_POOL/jwt-fresh.txt") tokens"
}

lt_free_port() { "$LT_BIN/authzload" freeport; }

# lt_wait_http URL: waits up to 20s for a 200.
lt_wait_http() {
  local i
  for i in $(seq 1 200); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  lt_log "timed out waiting for $1"
  return 1
}

# lt_start_redis starts a throw-away redis-server on a free loopback port.
lt_start_redis() {
  command -v redis-server >/dev/null || { lt_log "redis-server is not installed (apt-get install redis-server)"; return 1; }
  LOADTEST_REDIS_PORT=$(lt_free_port)
  export LOADTEST_REDIS_PORT
  redis-server --bind 127.0.0.1 --port "$LOADTEST_REDIS_PORT" --save '' --appendonly no \
    --protected-mode yes --daemonize no >"$LT_OUT/redis.log" 2>&1 &
  LT_PIDS+=($!)
  REDIS_PID=$!
  local i
  for i in $(seq 1 100); do
    if redis-cli -h 127.0.0.1 -p "$LOADTEST_REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
      lt_log "redis-server on 127.0.0.1:$LOADTEST_REDIS_PORT (pid $REDIS_PID)"
      return 0
    fi
    sleep 0.1
  done
  lt_log "redis-server did not start: $(tail -5 "$LT_OUT/redis.log")"
  return 1
}

# lt_start_authz CONFIG NAME: starts ext-authz on free loopback ports and
# waits until it is ready. Sets AUTHZ_ADDR, AUTHZ_ADMIN, AUTHZ_PID.
lt_start_authz() {
  LOADTEST_GRPC_PORT=$(lt_free_port)
  LOADTEST_ADMIN_PORT=$(lt_free_port)
  export LOADTEST_GRPC_PORT LOADTEST_ADMIN_PORT
  "$AUTHZ_BIN" serve --config "$1" >"$LT_OUT/ext-authz-$2.log" 2>&1 &
  AUTHZ_PID=$!
  LT_PIDS+=("$AUTHZ_PID")
  AUTHZ_ADDR=127.0.0.1:$LOADTEST_GRPC_PORT
  AUTHZ_ADMIN=127.0.0.1:$LOADTEST_ADMIN_PORT
  if ! lt_wait_http "http://$AUTHZ_ADMIN/readyz"; then
    tail -20 "$LT_OUT/ext-authz-$2.log" >&2
    return 1
  fi
  lt_log "ext-authz ($1) on $AUTHZ_ADDR, admin $AUTHZ_ADMIN (pid $AUTHZ_PID)"
}

# lt_stop PID: stops one process this script started.
lt_stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() pid
  for pid in "${LT_PIDS[@]}"; do
    [[ $pid == "$1" ]] || keep+=("$pid")
  done
  LT_PIDS=("${keep[@]}")
}

# lt_start_noop starts the no-op baseline. Sets NOOP_ADDR, NOOP_PID.
lt_start_noop() {
  local port
  port=$(lt_free_port)
  NOOP_ADDR=127.0.0.1:$port
  "$LT_BIN/noopauthz" -addr "$NOOP_ADDR" >"$LT_OUT/noopauthz.log" 2>&1 &
  NOOP_PID=$!
  LT_PIDS+=("$NOOP_PID")
  local i
  for i in $(seq 1 100); do
    if grep -q serving "$LT_OUT/noopauthz.log" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  lt_log "noopauthz did not start: $(cat "$LT_OUT/noopauthz.log")"
  return 1
}

# lt_wait_tcp PORT: waits up to 20s until 127.0.0.1:PORT accepts.
lt_wait_tcp() {
  local i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  lt_log "timed out waiting for 127.0.0.1:$1"
  return 1
}

# lt_peers builds the peers (loadtest/peers.sh: pinned versions, from
# source through the Go module proxy, cached) and sets OPA_ENVOY_BIN and
# RATELIMIT_BIN.
lt_peers() {
  local bins
  mapfile -t bins < <(loadtest/peers.sh opa-envoy ratelimit)
  OPA_ENVOY_BIN=${bins[0]}
  RATELIMIT_BIN=${bins[1]}
  lt_log "peers: $OPA_ENVOY_BIN, $RATELIMIT_BIN"
}

# lt_start_opa_envoy starts OPA-Envoy (opa-envoy-plugin) with the JWT policy
# (loadtest/config/opa/) on free loopback ports. Sets PEER_ADDR, PEER_PID.
lt_start_opa_envoy() {
  local grpc http diag
  grpc=$(lt_free_port)
  http=$(lt_free_port)
  diag=$(lt_free_port)
  mkdir -p "$LT_OUT/opa"
  # The quickstart's JWKS as data.loadtest.jwks, a string, as
  # io.jwt.decode_verify takes it ("cert").
  printf 'package loadtest\n\njwks := `%s`\n' "$(cat examples/quickstart/keys/jwks.json)" >"$LT_OUT/opa/jwks.rego"
  "$OPA_ENVOY_BIN" run --server --disable-telemetry --log-level error \
    --addr "127.0.0.1:$http" --diagnostic-addr "127.0.0.1:$diag" \
    --config-file loadtest/config/opa/config.yaml --set "plugins.envoy_ext_authz_grpc.addr=127.0.0.1:$grpc" \
    loadtest/config/opa/policy.rego "$LT_OUT/opa/jwks.rego" >"$LT_OUT/opa-envoy.log" 2>&1 &
  PEER_PID=$!
  LT_PIDS+=("$PEER_PID")
  PEER_ADDR=127.0.0.1:$grpc
  if ! lt_wait_http "http://127.0.0.1:$diag/health?plugins" || ! lt_wait_tcp "$grpc"; then
    tail -20 "$LT_OUT/opa-envoy.log" >&2
    return 1
  fi
  lt_log "OPA-Envoy on $PEER_ADDR (pid $PEER_PID)"
}

# lt_start_ratelimit starts envoyproxy/ratelimit on free loopback ports
# against the redis-server lt_start_redis started, with the same rules
# file ext-authz reads (loadtest/config/ratelimit/). Sets PEER_ADDR,
# PEER_PID. Redis writes are flushed every RL_PIPELINE_WINDOW (150us), the
# upstream README's recommendation "for optimal performance" (the default,
# 0, flushes each command on its own); ext-authz batches its increments too.
lt_start_ratelimit() {
  local grpc http debug rt=$LT_OUT/ratelimit-runtime
  grpc=$(lt_free_port)
  http=$(lt_free_port)
  debug=$(lt_free_port)
  rm -rf "$rt"
  mkdir -p "$rt/ratelimit/config"
  cp loadtest/config/ratelimit/*.yaml "$rt/ratelimit/config/"
  env USE_STATSD=false LOG_LEVEL=warn BACKEND_TYPE=redis \
    REDIS_SOCKET_TYPE=tcp REDIS_URL="127.0.0.1:$LOADTEST_REDIS_PORT" \
    REDIS_PIPELINE_WINDOW="${RL_PIPELINE_WINDOW:-150us}" \
    RUNTIME_ROOT="$rt" RUNTIME_SUBDIRECTORY=ratelimit RUNTIME_WATCH_ROOT=false \
    HOST=127.0.0.1 PORT="$http" GRPC_HOST=127.0.0.1 GRPC_PORT="$grpc" \
    DEBUG_HOST=127.0.0.1 DEBUG_PORT="$debug" \
    "$RATELIMIT_BIN" >"$LT_OUT/ratelimit.log" 2>&1 &
  PEER_PID=$!
  LT_PIDS+=("$PEER_PID")
  PEER_ADDR=127.0.0.1:$grpc
  if ! lt_wait_http "http://127.0.0.1:$http/healthcheck" || ! lt_wait_tcp "$grpc"; then
    tail -20 "$LT_OUT/ratelimit.log" >&2
    return 1
  fi
  lt_log "envoyproxy/ratelimit on $PEER_ADDR (pid $PEER_PID)"
}
