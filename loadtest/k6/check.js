// k6 scenarios against ext-authz's Check API over gRPC, as the gateway's
// Envoy calls it. The service definitions come from PROTOSET (written by
// loadtest/cmd/protoset), or else from server reflection, which costs every
// VU a descriptor download when it connects: use it only for a few VUs.
//
//   go run ./loadtest/cmd/protoset -o /tmp/envoy.protoset
//   k6 run -e GRPC_ADDR=127.0.0.1:8888 -e PROTOSET=/tmp/envoy.protoset \
//          -e POOL_DIR=$PWD/loadtest/.pool loadtest/k6/check.js
//
// `make loadtest` mints the pools, starts ext-authz and the no-op server
// (cmd/noopauthz) on loopback and runs this against each in alternating
// rounds (ROLE=authz, ROLE=baseline); cmd/k6judge then judges ext-authz's
// latency and throughput relative to the no-op's. This script itself holds
// no millisecond threshold, only the correctness ones (see lib.js).
import grpc from 'k6/net/grpc';
import exec from 'k6/execution';
import { env, record, requests, scenarios, thresholds } from './lib.js';

export const options = {
  scenarios,
  thresholds: thresholds('grpc_req_duration', 'relative'),
  summaryTrendStats: ['count', 'avg', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

// handleSummary writes k6's end-of-test summary (every metric and tracked
// per-scenario submetric, and whether each threshold passed) as JSON to
// SUMMARY_OUT for cmd/k6judge, and prints one line per threshold crossed.
export function handleSummary(data) {
  const crossed = [];
  for (const [name, m] of Object.entries(data.metrics)) {
    for (const [cond, r] of Object.entries(m.thresholds || {})) {
      if (!r.ok) crossed.push(`${name} ${cond}`);
    }
  }
  const line = crossed.length === 0
    ? `k6 (${__ENV.ROLE || 'authz'}): all thresholds passed\n`
    : `k6 (${__ENV.ROLE || 'authz'}): thresholds crossed: ${crossed.join('; ')}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY_OUT) out[__ENV.SUMMARY_OUT] = JSON.stringify(data, null, 1);
  return out;
}

const addr = __ENV.GRPC_ADDR || '127.0.0.1:8888';
const client = new grpc.Client();
const protoset = __ENV.PROTOSET || '';
if (protoset) {
  client.loadProtoset(protoset);
}
let connected = false;

// The decision names of ext-authz (README, "result") by the gRPC code in
// CheckResponse.status.
const byCode = { 0: 'ok', 16: 'unauthenticated', 7: 'forbidden', 8: 'rate_limited', 14: 'unavailable', 3: 'bad_request' };

function check(build) {
  if (!connected) {
    client.connect(addr, { plaintext: true, reflect: !protoset, timeout: '5s' });
    connected = true;
  }
  const r = build();
  const headers = Object.assign(
    { ':authority': env.host, ':path': r.path, ':method': 'GET', ':scheme': 'https', 'user-agent': 'k6', 'x-request-id': `k6-${exec.vu.idInTest}-${exec.vu.iterationInScenario}` },
    r.headers,
  );
  const res = client.invoke('envoy.service.auth.v3.Authorization/Check', {
    attributes: {
      source: { address: { socketAddress: { address: '127.0.0.1', portValue: 50000 } } },
      destination: { address: { socketAddress: { address: '10.0.0.1', portValue: 8443 } } },
      request: { http: { id: headers['x-request-id'], method: 'GET', headers, path: r.path, host: env.host, scheme: 'https', protocol: 'HTTP/2' } },
    },
  }, { timeout: '2s' });
  let decision = 'error';
  if (res && res.status === grpc.StatusOK && res.message) {
    const code = (res.message.status && res.message.status.code) || 0;
    decision = byCode[code] || `code_${code}`;
  }
  record(decision, r.want);
}

export function jwtUsers() { check(requests.jwtUsers); }
export function udbUsers() { check(requests.udbUsers); }
export function limitedUsers() { check(requests.limitedUsers); }
export function hotUser() { check(requests.hotUser); }
export function badTokens() { check(requests.badTokens); }
export function publicPaths() { check(requests.publicPaths); }
export function warmup() { check(requests.warmup); }
