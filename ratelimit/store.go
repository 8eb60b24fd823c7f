package ratelimit

import (
	"context"
	"time"
)

// MaxHits bounds the hits of one Op. Limits are uint32, so any number of
// hits above them is over every limit alike; the Limiter caps a
// descriptor's hits (hits_addend is a uint64 on the wire) to MaxHits, so
// that no store's arithmetic (a GCRA interval times the hits, a count plus
// the hits, Redis's INCRBY on a signed 64-bit integer) can overflow and
// answer an allow or an error for what is plainly over the limit.
const MaxHits = 1 << 32

// Op is one counter increment in a Store batch.
type Op struct {
	// Key is the counter, built with AppendKey.
	Key string
	// Hits is added to the counter; 0 reads it without changing it.
	Hits uint64
	// TTL is how long the counter lives after it is created. The key holds
	// its window start, so the TTL only frees memory: it never decides.
	TTL time.Duration
	// Count is set by the Store to the counter's value after the
	// increment.
	Count uint64

	// Windows, when not empty, make the op a decision instead of an
	// increment (Key, TTL and Count are then unused): the Store checks
	// Hits against every window with Algorithm and, atomically, charges
	// them to every window only when no enforced window is over. Several
	// limits of one descriptor are one decision, so a hit is counted in
	// all of its windows or in none, and concurrent callers cannot see the
	// windows in different orders. The window keys of one op share a Redis
	// Cluster hash slot (AppendWindowKey).
	Windows   []Window
	Algorithm Algorithm
	// Denied is set by the Store when an enforced window was over; nothing
	// was charged then, and the windows that fit report their Remaining
	// without the hits.
	Denied bool
}

// Window is one limit in a decision Op.
type Window struct {
	// Key is the window's state, built with AppendWindowKey.
	Key    string
	Limit  uint64
	Period time.Duration
	// Shadow windows are charged and report Over but never deny.
	Shadow bool
	// Verdict is set by the Store. For FixedWindow its ResetAfter is
	// left 0: the window start is in the key, so the caller knows it.
	Verdict Verdict
}

// Store keeps counters. Implementations: ratelimit/memory and
// ratelimit/redis; both pass ratelimittest.RunStoreContract.
//
// Increment adds ops[i].Hits to each counter and sets ops[i].Count to its new
// value. Each increment is atomic with setting the counter's expiry, so no
// counter is left without one. A counter that does not exist starts at 0 and
// expires TTL after its creation; later increments do not extend it.
// Increment is one round trip to a remote store however many ops there are.
// It returns an error when it could not count every op (the caller then
// applies its failure mode; some counters may have been incremented). It
// must honour ctx's deadline and be safe for concurrent use.
//
// Decision ops (Op.Windows) follow SlidingDecide and GCRADecide with the
// store's own clock (for Redis, the server's), and FixedWindow: a window
// is over when its count plus Hits exceeds its limit; its key expires
// Period after creation.
type Store interface {
	Increment(ctx context.Context, ops []Op) error
}
