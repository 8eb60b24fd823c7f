// Package pool shares long-lived components between configuration
// generations, counting their users, as caddy's UsagePool does.
//
// A configuration reload builds a whole new generation from the new file.
// Components that carry state worth keeping (a JWT verifier's key sets, a
// session verifier's cache and stale_if_error copies, a Redis client's
// connections) are not built again when their configuration did not
// change: the new generation acquires them from the pool under a key made
// of their kind and their canonical configuration, and so shares the
// running instance with the old generation. A changed configuration is a
// different key, so it gets a fresh instance. When the old generation is
// released, every component only it used loses its last reference and is
// stopped.
//
//	gen 1 ──Acquire(k1)──┐            ┌── Release(k1) after the swap
//	gen 2 ──Acquire(k1)──┴─ entry k1 ─┘   (refs 2 → 1: k1 keeps running)
//
// # Capabilities
//
// A pooled value is any Go value. The pool discovers what it can do by type
// assertion:
//
//   - Runner (Run(ctx) error): background work. Start runs it once, under
//     the context given to the first Start, in a goroutine the pool owns;
//     the last Release cancels that context and waits for Run to return.
//   - Closer (Close() error): resources to free. The last Release calls it
//     after Run has returned.
//
// Keys are made of configuration and may hold secrets (a Redis password, a
// JWKS URL's userinfo): the pool never puts a key in an error, and callers
// log only the part before the first NUL byte, which by convention names
// the component's kind and name.
//
// Readiness (Ready() error) is not the pool's business: the generation that
// holds a component asks it.
//
// Building never starts goroutines (constructors start nothing); Start
// does, and only for values that are Runners. A generation that fails to
// build releases what it acquired, so a failed reload leaves nothing
// running (see the goleak checks in the tests).
package pool
