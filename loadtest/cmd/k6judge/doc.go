// Command k6judge judges a `make loadtest` run: it reads the k6 summaries
// (check.js's handleSummary JSON) of the rounds against ext-authz and of
// the rounds against the no-op server (cmd/noopauthz) run beside it, pairs
// them round by round, and passes or fails ext-authz per scenario on
// ratios to that baseline, never on absolute milliseconds:
//
//   - latency: median over rounds of ext-authz's p50 ≤ K × the median of
//     the no-op's p50 + SLACK, and the same for p99 (the slack keeps
//     sub-millisecond noise on a sub-millisecond baseline from failing a
//     run; p50 catches a uniform slowdown that the p99's scatter hides);
//   - throughput: median over rounds of completed Checks, ext-authz over
//     no-op, ≥ R (the scenarios are arrival-rate executors: a server that
//     falls behind shows up as iterations k6 dropped);
//   - correctness: every threshold of the ext-authz summaries passed (the
//     decision mix, who is rate limited, transport errors; absolute, set
//     in k6/lib.js), and no transport errors in the baseline's.
//
// Usage, as loadtest/run.sh calls it:
//
//	k6judge -label memory -k 2 -slack 2ms -min-throughput 0.97 \
//	  -authz a1.json,a2.json,a3.json -baseline b1.json,b2.json,b3.json
//
// It prints one line per scenario and a RESULT line, and exits 1 when a
// judgement fails, 2 on bad input.
package main
