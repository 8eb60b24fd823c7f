// The same scenarios as check.js, sent as HTTP requests through a real
// gateway (Istio ingress gateway with the ext_authz filter in front of an
// upstream), for operators with a cluster:
//
//   k6 run -e GATEWAY_URL=https://gateway.example.com -e HOST=example.com \
//          -e POOL_DIR=$PWD/loadtest/.pool loadtest/k6/gateway.js
//
// HOST is the Host header the gateway's routes match (default: the URL's
// host). The routes /api/, /app/, /limited/ and /public/ must reach an
// upstream that answers 2xx or 404 for allowed requests, and the gateway
// must run ext-authz with the policy of loadtest/config/*.yaml (or one with
// the same paths and a per-user limit on /limited/). Token pools must be
// minted with that deployment's keys. Allowed means any status that is not
// one of ext-authz's denials (401, 403, 429, 503, 400).
//
// This is the only script with millisecond thresholds (P99_MS, RAMP_P99_MS,
// MAX_DROPPED; see lib.js): a real gateway run is judged in absolute
// numbers because its operator owns the machine and the service-level
// objective. `make loadtest` judges ext-authz relative to a no-op server
// instead (check.js, cmd/k6judge).
//
// This script never runs in `make loadtest`: it targets whatever
// GATEWAY_URL says, so it only ever runs when an operator points it
// somewhere deliberately.
import http from 'k6/http';
import { env, record, requests, scenarios, thresholds } from './lib.js';

if (!__ENV.GATEWAY_URL) {
  throw new Error('set GATEWAY_URL, e.g. -e GATEWAY_URL=https://gateway.example.com');
}
if ((__ENV.ROLE || 'authz') !== 'authz') {
  throw new Error('ROLE is for check.js only: a gateway run is always judged on its decisions');
}
const base = __ENV.GATEWAY_URL.replace(/\/+$/, '');
const hostHeader = __ENV.HOST || '';

export const options = {
  scenarios,
  thresholds: thresholds('http_req_duration', 'absolute'),
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  insecureSkipTLSVerify: __ENV.INSECURE === '1',
};

const byStatus = { 401: 'unauthenticated', 403: 'forbidden', 429: 'rate_limited', 503: 'unavailable', 400: 'bad_request' };

function send(build) {
  const r = build();
  const headers = Object.assign({ 'user-agent': 'k6-gateway' }, r.headers);
  if (hostHeader) headers.host = hostHeader;
  const res = http.get(`${base}${r.path}`, { headers, timeout: '5s', tags: { name: r.path.split('?')[0] } });
  let decision;
  if (res.status === 0) {
    decision = 'error';
  } else {
    decision = byStatus[res.status] || 'ok';
  }
  record(decision, r.want);
}

export function jwtUsers() { send(requests.jwtUsers); }
export function udbUsers() { send(requests.udbUsers); }
export function limitedUsers() { send(requests.limitedUsers); }
export function hotUser() { send(requests.hotUser); }
export function badTokens() { send(requests.badTokens); }
export function publicPaths() { send(requests.publicPaths); }
export function warmup() { send(requests.warmup); }
