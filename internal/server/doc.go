// Package server runs the service: it owns the listeners (gRPC, the HTTP
// ext_authz transport, admin), serving, readiness and health, the admin
// endpoints, config reloads, the Redis readiness watch and the drain.
//
// Place in the data flow:
//
//	cmd/ext-authz ──New(path, cfg, telemetry)──▶ Server ──Listen, Serve(ctx), Close
//	   Serve: errgroup{gRPC server, HTTP server, admin server, readiness, Redis watch, config watch, drain}
//	   gRPC: internal/grpcedge listener ─▶ interceptors (internal/grpcserver, admission) ─▶ authz/extauthz, ratelimit/rls
//	   HTTP: authz/httpauthz over the same authz.Live, admission and decision series
//	   reload: internal/filewatch settles ─▶ generation.Parse ─▶ generation.Compile ─▶ Ready ─▶ swap (authz.Live) ─▶ release the old
//
// A reload builds a whole new generation (internal/generation) and swaps
// it in atomically; settings a reload cannot apply keep their running
// values (generation.KeepRestartOnly). The drain order is internal/drain's:
// health NOT_SERVING, keep serving drain_delay, graceful stop bounded by
// drain_timeout, then cut; then the admin server and background work.
//
// Import rules: it may import the domain, its transports and every
// internal package, but never cmd: flags, the environment and the process
// (the shutdown signal, exit codes) stay in cmd/ext-authz, which passes
// what they say in through Options.
package server
