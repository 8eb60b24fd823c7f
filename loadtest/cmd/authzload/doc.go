// Command authzload is the throughput harness's load driver. It sends
// Envoy-shaped CheckRequests (built by extauthz.BuildCheckRequest, exactly
// as the gateway sends them) or ShouldRateLimit requests over a few HTTP/2
// connections, like a gateway's Envoy workers, and reports throughput,
// p50/p90/p99/p99.9 latency and the decision mix.
//
// With -baseline it drives a second server (loadtest/cmd/noopauthz, which
// answers OK at once) with the same load in the same run, alternating the
// two round by round so that drift on a shared machine hits both, and
// reports the ratios target/baseline: those travel between machines, the
// absolute numbers do not.
//
//	authzload -addr 127.0.0.1:8888 -baseline 127.0.0.1:9999 \
//	    -scenario jwt -pool loadtest/.pool/jwt.txt -workers 64 -conns 2 \
//	    -duration 10s -rounds 3 -pid $(pidof ext-authz)
//
// With -peer it drives a third server too (OPA-Envoy, envoyproxy/ratelimit:
// loadtest/peers.sh), rotating the order of all servers round by round,
// and reports every pair's ratios (RESULT lines, and key=value RATIO lines
// for scripts). -goal holds the target to one of issue 20's goals (GOAL
// lines); with -judge a missed goal exits with status 3.
//
// Closed loop (the default) keeps -workers requests in flight. Open loop
// (-rate N) sends N requests per second whatever the answers do and
// measures latency from each request's scheduled send time.
//
// Answers are read with a lean client codec (-decode lean, the default;
// wire.go): requests are marshalled once, and of each answer only what the
// driver judges is kept (the CheckResponse's status code and response kind,
// the RateLimitResponse's overall_code), validated as proto.Unmarshal
// would, without allocating, so that the driver's own CPU per answer, which
// it shares the machine's cores with the servers for, does not depend on
// what the server answers. -decode full uses grpc-go's codec and the
// generated clients.
//
// -fresh gives every server its own walk over the pool for the whole
// measurement, so no server is sent the same request twice (never-seen
// tokens), and fails the run when the target's or the peer's walk wrapped.
//
// `authzload freeport` prints a free loopback TCP port, for the scripts.
//
// The driver refuses non-loopback addresses unless -allow-remote is set:
// the harness is for this machine, and a load test of someone else's
// server must be a deliberate act.
package main
