// Package ratelimit is the rate limiter: descriptors in, a decision per
// descriptor out, counted in fixed windows in a Store.
//
// Where it sits in the flow:
//
//	authz.Pipeline ─ratelimit.Request─▶ Limiter.Check ─▶ Matcher (which limit?)
//	ratelimit/rls (Envoy ShouldRateLimit) ─┘        └──▶ Store (memory | redis)
//
// The file format and matching are envoyproxy/ratelimit's own (see
// ratelimit/envoyconfig, the only package here that speaks Envoy protos).
// Windows are aligned like envoyproxy/ratelimit's: a window starts at the
// current Unix time truncated to the limit's unit, so every replica and
// every Redis key agree on where a window begins.
//
// Keys are built here, never by a backend (see AppendKey): they are
// length-prefixed, so no descriptor value can collide with another
// descriptor, and each Store script touches exactly one key, so they are
// safe for Redis Cluster without hash tags.
//
// Import rules: ratelimit imports neither authz nor any Envoy proto;
// backends (memory, redis) import only this package and their client.
package ratelimit
