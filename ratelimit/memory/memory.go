package memory

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// Options are the optional parts of a Store; the zero value works.
type Options struct {
	// SweepInterval is how often Run drops expired counters; default 10s.
	SweepInterval time.Duration
}

// Store keeps counters in memory. The zero value is not usable; call New.
type Store struct {
	seed   maphash.Seed
	shards [64]shard
	sweep  time.Duration
}

type shard struct {
	mu sync.Mutex
	m  map[string]counter
}

type counter struct {
	n       uint64
	expires int64 // UnixNano
}

var _ ratelimit.Store = (*Store)(nil)

// New returns an empty Store. It starts no goroutine: run Run to sweep
// expired counters (without it, expired counters are still ignored, only
// not freed until touched).
func New(opts Options) *Store {
	s := &Store{seed: maphash.MakeSeed(), sweep: opts.SweepInterval}
	if s.sweep <= 0 {
		s.sweep = 10 * time.Second
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]counter)
	}
	return s
}

// Increment implements ratelimit.Store. It never waits, so it refuses only
// a cancelled context: a deadline that passed while the goroutine was not
// scheduled (a GC pause, a loaded machine) is no reason to fail a check
// that costs microseconds.
func (s *Store) Increment(ctx context.Context, ops []ratelimit.Op) error {
	if err := ctx.Err(); errors.Is(err, context.Canceled) {
		return err
	}
	now := time.Now().UnixNano()
	for i := range ops {
		op := &ops[i]
		sh := &s.shards[maphash.String(s.seed, op.Key)%uint64(len(s.shards))]
		sh.mu.Lock()
		c, ok := sh.m[op.Key]
		if !ok || c.expires <= now {
			c = counter{expires: now + int64(op.TTL)}
		}
		c.n += op.Hits
		sh.m[op.Key] = c
		sh.mu.Unlock()
		op.Count = c.n
	}
	return nil
}

// Run drops expired counters every SweepInterval until ctx ends; it returns
// nil then.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep drops expired counters now.
func (s *Store) Sweep() {
	now := time.Now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, c := range sh.m {
			if c.expires <= now {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// Len is the number of counters held, expired or not.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].m)
		s.shards[i].mu.Unlock()
	}
	return n
}
