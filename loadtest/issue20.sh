#!/usr/bin/env bash
# make loadtest-issue20: issue 20's measurements in one command, on
# loopback, stopping by itself (about 10 minutes on two cores):
#
#   1. the goals: loadtest/throughput.sh jwt jwt-redis rls with the peers
#      (PEERS=1: OPA-Envoy beside jwt, envoyproxy/ratelimit beside rls,
#      built from pinned sources by loadtest/peers.sh) and the no-op
#      server in the same rotating rounds, judged (JUDGE=1) on the goals:
#      JWT cached >= 100 % of the no-op with p99 and CPU/request <= the
#      no-op's; JWT + two Redis descriptors >= 85 %; ShouldRateLimit >= 2x
#      envoyproxy/ratelimit at <= its p99. ROUNDS 5, DURATION 4s, WARMUP 2s
#      unless set.
#      Then, report only (no goal): jwt-fresh, JWT with never-seen tokens
#      against OPA-Envoy and the no-op in the same rotating rounds, with
#      FRESH_ROUNDS 3, FRESH_DURATION 3s, FRESH_WARMUP 1s: ext-authz spends
#      ~15,000 tokens a second here, and the FRESH_POOL (400,000) tokens are
#      minted once (~1 ms of CPU each) and cached in loadtest/.out/fresh-pool/.
#   2. the scale run: loadtest/scale.sh (rules, API keys, descriptors).
#
# It prints the date, the commit, `uptime` before and after (the machine
# may be shared: read the rounds' ranges), and writes every machine-readable
# line (RATIO, GOAL, SCALE) to loadtest/.out/issue20-summary.txt.
# Exit status: 1 when a measurement itself failed (wrong answers, a server
# that did not start), 3 when everything was measured but a goal was
# missed, 0 when every goal was met.
set -uo pipefail
cd "$(dirname "$0")/.."

export ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-4s} WARMUP=${WARMUP:-2s}
summary=loadtest/.out/issue20-summary.txt
mkdir -p loadtest/.out
start=$SECONDS
{
  echo "# issue 20 load tests, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty')"
  echo "# uptime before: $(uptime)"
} | tee "$summary"
echo "== expected duration: about 11 minutes (goals ~6, scale ~5; the first run also builds the peers, ~2 minutes more, and mints the never-seen-tokens pool, ~3-10 minutes more)" >&2

rc_goals=0
ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP PEERS=1 JUDGE=1 \
  loadtest/throughput.sh jwt jwt-redis rls || rc_goals=$?
# Each throughput.sh run rewrites throughput-summary.txt: keep the goals'.
goal_lines=$(grep -h '^RATIO\|^GOAL' loadtest/.out/throughput-summary.txt 2>/dev/null)
rc_fresh=0
ROUNDS=${FRESH_ROUNDS:-3} DURATION=${FRESH_DURATION:-3s} WARMUP=${FRESH_WARMUP:-1s} PEERS=1 \
  loadtest/throughput.sh jwt-fresh || rc_fresh=$?
fresh_lines=$(grep -h '^RATIO' loadtest/.out/throughput-summary.txt 2>/dev/null)
# scale.sh has its own, shorter rounds.
rc_scale=0
env -u ROUNDS -u DURATION -u WARMUP loadtest/scale.sh || rc_scale=$?

{
  printf '%s\n' "$goal_lines" "$fresh_lines"
  cat loadtest/.out/scale-summary.txt 2>/dev/null
  echo "# uptime after: $(uptime)"
  echo "# took $((SECONDS - start)) s; goals exit $rc_goals, never-seen tokens exit $rc_fresh, scale exit $rc_scale"
} | tee -a "$summary"

if ((rc_goals == 1 || rc_fresh != 0 || rc_scale != 0)); then
  exit 1
fi
exit "$rc_goals"
