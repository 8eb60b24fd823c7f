// Package ratelimittest is the contract every ratelimit.Store must meet,
// run by each backend's tests: memory always, Redis against a real
// redis-server and a real Redis Cluster (internal/redistest).
//
// RunStoreContract checks the Store seam alone; RunLimiterContract checks a
// ratelimit.Limiter over the store with limits loaded from an
// envoyproxy/ratelimit file, so every backend is proven to give the same
// decisions.
package ratelimittest
