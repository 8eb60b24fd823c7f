#!/usr/bin/env bash
# loadtest/peers.sh: builds the peers the throughput harness can measure
# ext-authz against, from their sources at pinned versions, through the Go
# module proxy only (no other download), and caches the binaries under
# loadtest/.bin/peers/ (git-ignored). Prints the two binaries' paths.
#
#   opa-envoy   github.com/open-policy-agent/opa-envoy-plugin, its
#               cmd/opa-envoy-plugin (OPA with the Envoy ext_authz gRPC
#               plugin), run with a JWT-verifying Rego policy
#   ratelimit   github.com/envoyproxy/ratelimit, its src/service_cmd
#
# Each module is downloaded with `go mod download`, its h1: hash checked
# against the one pinned here, and built inside a copy of its own source
# tree with its own go.mod and go.sum, so every dependency is the version
# upstream pinned (and go.sum-verified). `go install pkg@version` is not
# used: for opa-envoy-plugin it asks the proxy for the module's version
# list, which the proxy here refuses (403).
#
# Why these versions: the module proxy reachable from this machine serves
# only some versions. envoyproxy/ratelimit has no tagged version on it; the
# pseudo-version (@latest) is main at 3fb702589d36 (2026-01-22), the same
# one go.mod pins for ratelimit/envoyconfig. For opa-envoy-plugin the proxy
# refuses the version list (403), so tags can only be tried one by one: of
# those tried, v1.0.0-envoy and v1.10.0-envoy (2025-10-31, OPA v1.10.0) are
# served, v1.1.0 to v1.5.0, v1.21.0, v1.22.0 and v1.22.3 (-envoy) are not.
# The checksum database has no entry for v1.10.0-envoy (404), so it is
# fetched with GONOSUMDB for that one module and checked against
# OPA_ENVOY_SUM below instead.
#
# Build time: about one minute each on two shared cores with a warm module
# cache, a few minutes cold. Built once; PEERS_REBUILD=1 builds again.
set -euo pipefail
cd "$(dirname "$0")/.."

OPA_ENVOY_MODULE=github.com/open-policy-agent/opa-envoy-plugin
OPA_ENVOY_VERSION=v1.10.0-envoy
OPA_ENVOY_SUM=h1:N+Le+sDTrGfqoBNVrSk2CoZNWWxQT9pxA94Lnq3Pn0A=
OPA_ENVOY_PKG=./cmd/opa-envoy-plugin

RATELIMIT_MODULE=github.com/envoyproxy/ratelimit
RATELIMIT_VERSION=v1.4.1-0.20260122083618-3fb702589d36
RATELIMIT_SUM=h1:nEi1OH2qhE8NtcuBgO/uKpTw/P0nVu4i8mZvL6oD9CQ=
RATELIMIT_PKG=./src/service_cmd

PEERS_DIR=${PEERS_DIR:-loadtest/.bin/peers}

log() { printf '== %s\n' "$*" >&2; }

# build NAME MODULE VERSION SUM PKG: prints the binary's path.
build() {
  local name=$1 module=$2 version=$3 sum=$4 pkg=$5
  local bin=$PEERS_DIR/$name-$version
  if [[ -x $bin && ${PEERS_REBUILD:-} != 1 ]]; then
    echo "$bin"
    return 0
  fi
  mkdir -p "$PEERS_DIR"
  local tmp
  tmp=$(mktemp -d)
  # A throw-away module, so `go mod download` runs outside this repository's go.mod.
  (cd "$tmp" && go mod init peerbuild >/dev/null 2>&1)
  log "downloading $module@$version"
  local json
  json=$(cd "$tmp" && GONOSUMDB=$module GOFLAGS=-mod=mod go mod download -json "$module@$version")
  local got dir
  got=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$json")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  if [[ $got != "$sum" ]]; then
    log "$module@$version: hash $got, pinned $sum; refusing to build"
    rm -rf "$tmp"
    return 1
  fi
  cp -r "$dir" "$tmp/src"
  chmod -R u+w "$tmp/src"
  log "building $name ($module@$version, $pkg) with $(go env GOVERSION); about a minute"
  local abs
  abs=$(cd "$PEERS_DIR" && pwd)/$name-$version
  if ! (cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off \
    go build -trimpath -o "$abs.tmp" "$pkg"); then
    rm -rf "$tmp"
    return 1
  fi
  mv "$abs.tmp" "$abs"
  rm -rf "$tmp"
  echo "$bin"
}

want=("$@")
if ((${#want[@]} == 0)); then
  want=(opa-envoy ratelimit)
fi
for p in "${want[@]}"; do
  case $p in
    opa-envoy) build opa-envoy "$OPA_ENVOY_MODULE" "$OPA_ENVOY_VERSION" "$OPA_ENVOY_SUM" "$OPA_ENVOY_PKG" ;;
    ratelimit) build ratelimit "$RATELIMIT_MODULE" "$RATELIMIT_VERSION" "$RATELIMIT_SUM" "$RATELIMIT_PKG" ;;
    *) log "unknown peer $p (opa-envoy, ratelimit)"; exit 2 ;;
  esac
done
