package ratelimit

import (
	"context"
	"time"
)

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
type Store interface {
	Increment(ctx context.Context, ops []Op) error
}
