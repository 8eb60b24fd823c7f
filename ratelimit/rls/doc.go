// Package rls serves Envoy's rate limit API,
// envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit, from the
// same limiter and limits as the Check path, so a gateway that uses Envoy's
// own envoy.filters.http.ratelimit filter with route rate_limits actions can
// point at this service instead of a separate envoyproxy/ratelimit
// deployment.
//
//	Envoy ratelimit filter ─RateLimitRequest─▶ rls.Server ─▶ ratelimit.Limiter
//
// Answers follow envoyproxy/ratelimit: one status per descriptor (code,
// current limit, remaining, time to reset), overall_code, and optionally
// its RateLimit-Limit/-Remaining/-Reset response headers. A store failure
// answers by the domain's failure policy: fail open is OK, fail closed with
// 429 is OVER_LIMIT, and fail closed with 503 is a gRPC UNAVAILABLE error,
// which the filter turns into its own failure_mode_deny decision.
//
// The service runs on a lean wire path (Register): DecodeRequest reads the
// RateLimitRequest's wire form straight into a ratelimit.Request and
// AppendResponse writes the answer's, refusing and answering exactly as
// the generated path (Server.ShouldRateLimit with grpc-go's proto codec)
// does; the differential tests and fuzz targets hold them to it.
//
// Import rules: rls imports ratelimit, gRPC and the Envoy ratelimit protos
// only.
package rls
