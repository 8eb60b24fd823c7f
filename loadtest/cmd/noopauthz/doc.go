// Command noopauthz is the baseline of the throughput harness: an Envoy
// ext_authz (envoy.service.auth.v3.Authorization/Check) and rate limit
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) gRPC server
// that answers OK at once, with the same gRPC transport settings as
// ext-authz. Driving it and ext-authz with the same load in the same run
// gives the ratio ext-authz/no-op, the number that travels between
// machines: the cost of gRPC, HTTP/2 and the load driver itself is in both.
//
//	noopauthz --addr 127.0.0.1:9999
//
// It serves grpc.health.v1 and reflection too, so every client that works
// against ext-authz (k6, grpcurl, authzload) works against it. It runs until
// SIGINT or SIGTERM. It only listens on the address it is given; the load
// test scripts always give it a loopback address.
package main
