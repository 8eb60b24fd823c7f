// Package redis is the Redis implementation of tokens.SessionStore: it reads
// the session hashes the user database writes (layout in docs/tokens.md)
// through a go-redis UniversalClient, so standalone, sentinel and cluster
// deployments all work.
//
// Where it sits in the flow:
//
//	tokens.SessionVerifier ─store key─▶ redis.Store ─HGETALL─▶ Redis
//
// Import rules: imports tokens and go-redis only.
package redis
