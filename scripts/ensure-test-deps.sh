#!/usr/bin/env bash
# Installs what the test suite needs and is not on the machine yet:
# redis-server and redis-cli (real Redis and Redis Cluster tests). As root
# with apt-get it installs them; otherwise it says what to install.
# kubectl (for `kubectl kustomize` in the manifest tests) must already be
# there: Debian's kubernetes-client is too old for kustomize v5.
set -euo pipefail
if ! command -v kubectl >/dev/null 2>&1; then
  echo "the manifest tests need kubectl 1.27 or newer (kustomize v5) on PATH" >&2
  exit 1
fi
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq "${need[@]}" </dev/null
  exit 0
fi
echo "the tests need: ${need[*]} (Debian/Ubuntu: sudo apt-get install -y ${need[*]}; macOS: brew install redis)" >&2
exit 1
