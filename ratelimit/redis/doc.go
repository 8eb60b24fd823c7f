// Package redis is the Redis ratelimit.Store, over a go-redis
// UniversalClient (standalone, sentinel or cluster).
//
// Each counter is incremented by a Lua script that runs INCRBY and, when
// the key has no expiry yet, PEXPIRE: increment and expiry are atomic, so no
// key is ever left without a TTL. On a standalone or sentinel Redis one
// script serves every counter of a pipeline (batchScript: Redis runs the
// script machinery and the client builds and parses one command per round
// trip, not one per counter). On Redis Cluster each counter has its own
// script, which touches exactly one key, so no hash tags are needed; a
// check's keys may live on different nodes and go-redis pipelines to each
// node at once.
//
// All increments of one check go in one pipeline (one round trip per node).
// With batching (Run), the increments of concurrent checks share pipelines:
// workers take whatever calls are queued, up to a cap, and send them
// together, so under load the number of round trips grows far slower than
// the number of checks, and with no load a call waits for nothing.
//
// Import rules: redis imports only ratelimit and go-redis.
package redis
