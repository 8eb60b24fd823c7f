package memory

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// Options are the optional parts of a Store; the zero value works.
type Options struct {
	// SweepInterval is how often Run drops expired counters; default 10s.
	SweepInterval time.Duration
	// Now is the store's clock (expiry, and the time of the smooth
	// algorithms' decisions); default time.Now.
	Now func() time.Time
}

// Store keeps counters in memory. The zero value is not usable; call New.
type Store struct {
	seed   maphash.Seed
	shards [64]shard
	sweep  time.Duration
	now    func() time.Time
}

type shard struct {
	mu sync.Mutex
	m  map[string]counter
}

type counter struct {
	n       uint64
	expires int64 // UnixNano
	// Decision state: a sliding window's index and previous count (n is
	// the current one), or GCRA's theoretical arrival time (µs).
	window int64
	prev   uint64
	tat    int64
}

var _ ratelimit.Store = (*Store)(nil)

// New returns an empty Store. It starts no goroutine: run Run to sweep
// expired counters (without it, expired counters are still ignored, only
// not freed until touched).
func New(opts Options) *Store {
	s := &Store{seed: maphash.MakeSeed(), sweep: opts.SweepInterval, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
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
	now := s.now().UnixNano()
	for i := range ops {
		op := &ops[i]
		if len(op.Windows) > 0 {
			s.decide(op, now)
			continue
		}
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
	now := s.now().UnixNano()
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

// decide runs a decision op with every shard it touches locked, in shard
// order, so that concurrent decisions over shared windows are atomic.
func (s *Store) decide(op *ratelimit.Op, now int64) {
	var idxArr [8]int
	idx := idxArr[:0]
	for j := range op.Windows {
		idx = append(idx, s.shardOf(op.Windows[j].Key))
	}
	locked := slices.Clone(idx)
	slices.Sort(locked)
	locked = slices.Compact(locked)
	for _, i := range locked {
		s.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range locked {
			s.shards[i].mu.Unlock()
		}
	}()
	us := now / 1000
	var nextArr [8]counter
	next := nextArr[:0]
	op.Denied = false
	for j := range op.Windows {
		w := &op.Windows[j]
		sh := &s.shards[idx[j]]
		c, ok := sh.m[w.Key]
		if !ok || c.expires <= now {
			c = counter{}
		}
		period := max(1, w.Period.Microseconds()) // as the Redis store sends it: never a division by 0
		switch op.Algorithm {
		case ratelimit.SlidingWindow:
			st, v := ratelimit.SlidingDecide(ratelimit.SlidingState{Window: c.window, Cur: c.n, Prev: c.prev}, us, period, w.Limit, op.Hits)
			w.Verdict = v
			c = counter{n: st.Cur, prev: st.Prev, window: st.Window, expires: now + 2*int64(w.Period)}
		case ratelimit.GCRA:
			tat, v := ratelimit.GCRADecide(c.tat, us, period, w.Limit, op.Hits)
			w.Verdict = v
			c = counter{tat: tat, expires: (tat + 1) * 1000}
		default:
			w.Verdict = ratelimit.Verdict{Over: c.n+op.Hits > w.Limit}
			if !ok || c.expires <= now {
				c.expires = now + int64(w.Period)
			}
			if w.Verdict.Over {
				w.Verdict.Remaining = w.Limit - min(c.n, w.Limit)
			} else {
				w.Verdict.Remaining = w.Limit - c.n - op.Hits
			}
			c.n += op.Hits
		}
		if w.Verdict.Over && !w.Shadow {
			op.Denied = true
		}
		next = append(next, c)
	}
	if op.Denied {
		// Nothing is charged: the windows that fit keep their hits.
		for j := range op.Windows {
			if v := &op.Windows[j].Verdict; !v.Over {
				v.Remaining += op.Hits
			}
		}
		return
	}
	if op.Hits == 0 {
		return
	}
	for j := range op.Windows {
		s.shards[idx[j]].m[op.Windows[j].Key] = next[j]
	}
}

func (s *Store) shardOf(key string) int {
	return int(maphash.String(s.seed, key) % uint64(len(s.shards)))
}
