// Shared by check.js (gRPC Check against ext-authz) and gateway.js (HTTP
// through a gateway): the traffic mix, the token pools and the thresholds,
// so both scripts load the same scenarios and judge them the same way.
//
// The rates are modest on purpose: k6's JavaScript runtime costs far more
// CPU per request than ext-authz does, so on a small machine k6 saturates
// first (the Go driver, cmd/authzload, measures throughput). Scale them
// with RATE_SCALE on a bigger load generator.
//
// Every scenario is its own arrival-rate executor (requests per second
// stay fixed whatever the latency does, as real clients behave), so its
// latency, error rate and decision mix are reported and judged separately:
//
//   jwt_users      valid JWTs from a pool of many users      → allowed
//   udb_users      valid UDB tickets from a pool              → allowed
//   limited_users  pool JWTs on a rate-limited route          → allowed (under their limit)
//   hot_user       one user far over its per-user limit       → mostly 429, some allowed
//   bad_tokens     missing and tampered credentials           → 401
//   public         public paths, no credential                → allowed
//   ramp           JWT users ramping up after the steady part → allowed
//
// A warmup scenario (WARMUP, default 5s, not judged) runs first.
//
// Two kinds of thresholds, on purpose:
//
//   - Correctness (the decision mix per scenario, nobody but the hot user
//     limited, transport errors) is absolute everywhere: a 401 for a valid
//     token is wrong on any machine.
//   - Latency and throughput are judged in milliseconds ONLY by gateway.js
//     (thresholds(..., 'absolute')), a run against a real gateway where the
//     operator owns the machine and the numbers. check.js, which
//     `make loadtest` runs on loopback next to k6 on a possibly busy
//     machine, gets no millisecond threshold at all ('relative'): run.sh
//     runs the same script against the no-op server (cmd/noopauthz) in
//     alternating rounds and cmd/k6judge passes or fails ext-authz on its
//     p99 and throughput relative to that baseline. An absolute p99 there
//     measured the machine, not ext-authz (loadtest/RESULTS.md).
//
// Knobs (environment): DURATION (steady part, default 40s), RATE_SCALE
// (multiplies every rate, default 1), RAMP_PEAK (default 300/s), RAMP_TIME
// (default 20s), RAMP_HOLD (the peak held, default 5s), RAMP_GAP (pause
// between the steady part and the ramp, default 2s), POOL_DIR (the minted token pools: jwt.txt, udb.txt,
// hot.txt); gateway.js only: P99_MS (default 50), RAMP_P99_MS (default 150),
// MAX_DROPPED (default 200); check.js only: ROLE (authz, the default, or
// baseline: the target is the no-op server, whose answers are all OK, so
// the decision mix is not judged), SUMMARY_OUT (where handleSummary writes
// the summary JSON that cmd/k6judge reads).
import { SharedArray } from 'k6/data';
import { Counter, Rate } from 'k6/metrics';

export const env = {
  duration: __ENV.DURATION || '40s',
  warmup: __ENV.WARMUP || '5s',
  scale: parseFloat(__ENV.RATE_SCALE || '1'),
  rampPeak: parseInt(__ENV.RAMP_PEAK || '300', 10),
  rampTime: __ENV.RAMP_TIME || '20s',
  rampHold: __ENV.RAMP_HOLD || '5s',
  rampGap: __ENV.RAMP_GAP || '2s',
  p99: parseInt(__ENV.P99_MS || '50', 10),
  rampP99: parseInt(__ENV.RAMP_P99_MS || '150', 10),
  maxDropped: parseInt(__ENV.MAX_DROPPED || '200', 10),
  role: __ENV.ROLE || 'authz',
  poolDir: __ENV.POOL_DIR || '../.pool',
  host: __ENV.HOST || 'example.com',
};

function pool(name) {
  return new SharedArray(name, () => {
    const lines = open(`${env.poolDir}/${name}.txt`).split('\n').map((l) => l.trim()).filter((l) => l !== '');
    if (lines.length === 0) {
      throw new Error(`${env.poolDir}/${name}.txt is empty: mint it with ext-authz token mint --count N`);
    }
    return lines;
  });
}

export const pools = { jwt: pool('jwt'), udb: pool('udb'), hot: pool('hot') };

// decision_expected: the answer was the one this scenario expects;
// rate_limited: the answer was 429 / RESOURCE_EXHAUSTED; transport_errors:
// no answer at all. decisions counts each decision by name.
export const expected = new Rate('decision_expected');
export const rateLimited = new Rate('rate_limited');
export const transportErrors = new Rate('transport_errors');
export const decisions = new Counter('decisions');

function rate(r) {
  return Math.max(1, Math.round(r * env.scale));
}

function seconds(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) throw new Error(`duration ${d}: use e.g. 500ms, 40s, 2m`);
  const n = parseInt(m[1], 10);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'm' ? n * 60 : n;
}

function steady(exec, perSecond, vus, fixed) {
  return {
    executor: 'constant-arrival-rate',
    exec,
    startTime: env.warmup,
    rate: fixed ? perSecond : rate(perSecond),
    timeUnit: '1s',
    duration: env.duration,
    preAllocatedVUs: vus,
    maxVUs: vus * 2,
  };
}

export const scenarios = {
  // Not judged: connects the VUs and fills the verification caches, so
  // that the judged scenarios measure the steady state, not start-up.
  warmup: {
    executor: 'constant-arrival-rate',
    exec: 'warmup',
    rate: 100,
    timeUnit: '1s',
    duration: env.warmup,
    preAllocatedVUs: 10,
    maxVUs: 20,
  },
  jwt_users: steady('jwtUsers', 100, 8),
  udb_users: steady('udbUsers', 50, 4),
  limited_users: steady('limitedUsers', 40, 4),
  // Not scaled: it must stay well above the hot user's limit (10/s).
  hot_user: steady('hotUser', 25, 4, true),
  bad_tokens: steady('badTokens', 30, 4),
  public: steady('publicPaths', 20, 2),
  ramp: {
    executor: 'ramping-arrival-rate',
    exec: 'jwtUsers',
    startTime: `${seconds(env.warmup) + seconds(env.duration) + seconds(env.rampGap)}s`,
    startRate: rate(100),
    timeUnit: '1s',
    preAllocatedVUs: 20,
    maxVUs: 60,
    stages: [
      { target: rate(env.rampPeak), duration: env.rampTime },
      { target: rate(env.rampPeak), duration: env.rampHold },
    ],
  },
};

export const judged = Object.keys(scenarios).filter((n) => n !== 'warmup');

// thresholds: pass/fail per scenario. latencyMetric is grpc_req_duration
// or http_req_duration. mode is 'absolute' (gateway.js: millisecond p99
// and dropped-iteration limits) or 'relative' (check.js: no latency limit
// here; the per-scenario latency and counts are only tracked, with
// always-true thresholds, so that they appear in the summary cmd/k6judge
// compares with the no-op baseline's).
export function thresholds(latencyMetric, mode) {
  if (mode !== 'absolute' && mode !== 'relative') {
    throw new Error(`thresholds mode ${mode}: use absolute or relative`);
  }
  if (env.role !== 'authz' && env.role !== 'baseline') {
    throw new Error(`ROLE=${env.role}: use authz or baseline`);
  }
  const t = { transport_errors: ['rate<0.01'] };
  if (mode === 'absolute') {
    t.dropped_iterations = [`count<${env.maxDropped}`];
  } else {
    t.dropped_iterations = ['count>=0'];
  }
  for (const name of judged) {
    t[`${latencyMetric}{scenario:${name}}`] = mode === 'absolute'
      ? [`p(99)<${name === 'ramp' ? env.rampP99 : env.p99}`]
      : ['max>=0'];
    t[`dropped_iterations{scenario:${name}}`] = ['count>=0'];
    if (env.role === 'authz') {
      t[`decision_expected{scenario:${name}}`] = ['rate>0.99'];
    }
  }
  if (env.role === 'baseline') {
    return t; // the no-op server allows everything: only transport errors count
  }
  // Allowed where expected: nobody but the hot user is ever limited...
  for (const name of ['jwt_users', 'udb_users', 'limited_users', 'public', 'ramp']) {
    t[`rate_limited{scenario:${name}}`] = ['rate<0.001'];
  }
  // ...and the hot user is, mostly (25/s against its 10/s: about 60%).
  t['rate_limited{scenario:hot_user}'] = ['rate>0.3'];
  return t;
}

// record files one answer. decision is ok, unauthenticated, forbidden,
// rate_limited, unavailable, bad_request or error; want lists the
// decisions this scenario expects.
export function record(decision, want) {
  decisions.add(1, { decision });
  expected.add(want.includes(decision));
  rateLimited.add(decision === 'rate_limited');
  transportErrors.add(decision === 'error');
}

export function pick(arr) {
  return arr[Math.floor(Math.random() * arr.length)];
}

// tamper breaks a token's signature without changing its shape.
export function tamper(token) {
  const last = token.charAt(token.length - 2);
  return token.slice(0, -2) + (last === 'A' ? 'B' : 'A') + token.slice(-1);
}

// The requests of each scenario: method, path, headers, wanted decisions.
export const requests = {
  jwtUsers: () => ({ path: '/api/orders?page=2', headers: { authorization: `Bearer ${pick(pools.jwt)}` }, want: ['ok'] }),
  udbUsers: () => ({ path: '/app/profile', headers: { 'x-udb-token': pick(pools.udb) }, want: ['ok'] }),
  limitedUsers: () => ({ path: '/limited/orders', headers: { authorization: `Bearer ${pick(pools.jwt)}` }, want: ['ok'] }),
  hotUser: () => ({ path: '/limited/orders', headers: { authorization: `Bearer ${pools.hot[0]}` }, want: ['ok', 'rate_limited'] }),
  badTokens: () => {
    switch (Math.floor(Math.random() * 3)) {
      case 0:
        return { path: '/api/orders', headers: {}, want: ['unauthenticated'] };
      case 1:
        return { path: '/api/orders', headers: { authorization: `Bearer ${tamper(pick(pools.jwt))}` }, want: ['unauthenticated'] };
      default:
        return { path: '/app/profile', headers: { 'x-udb-token': tamper(pick(pools.udb)) }, want: ['unauthenticated'] };
    }
  },
  publicPaths: () => ({ path: '/public/index.html', headers: {}, want: ['ok'] }),
  warmup: () => (Math.random() < 0.5
    ? { path: '/api/orders', headers: { authorization: `Bearer ${pick(pools.jwt)}` }, want: ['ok'] }
    : { path: '/app/profile', headers: { 'x-udb-token': pick(pools.udb) }, want: ['ok'] }),
};
