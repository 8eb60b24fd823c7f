package ratelimittest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// NewStore returns a fresh store for one subtest, whose counters no other
// subtest shares (use a unique key prefix or an empty database).
type NewStore func(t *testing.T) ratelimit.Store

var keySeq struct {
	sync.Mutex
	n int
}

// Key returns a key unique within the process, for tests sharing a store.
func Key(t *testing.T, name string) string {
	keySeq.Lock()
	defer keySeq.Unlock()
	keySeq.n++
	return fmt.Sprintf("test:%s:%s:%d", t.Name(), name, keySeq.n)
}

func incr(t *testing.T, s ratelimit.Store, ops ...ratelimit.Op) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Increment(ctx, ops); err != nil {
		t.Fatalf("Increment: %v", err)
	}
	out := make([]uint64, len(ops))
	for i, op := range ops {
		out[i] = op.Count
	}
	return out
}

// RunStoreContract runs the Store contract against stores made by newStore.
func RunStoreContract(t *testing.T, newStore NewStore) {
	t.Run("decisions", func(t *testing.T) { RunDecisionContract(t, newStore) })
	t.Run("accumulates", func(t *testing.T) {
		s := newStore(t)
		k := Key(t, "a")
		for i, want := range []uint64{1, 3, 6} {
			got := incr(t, s, ratelimit.Op{Key: k, Hits: uint64(i + 1), TTL: time.Minute})
			if got[0] != want {
				t.Fatalf("increment %d: count %d, want %d", i, got[0], want)
			}
		}
	})
	t.Run("keys are independent and a batch is applied in order", func(t *testing.T) {
		s := newStore(t)
		a, b := Key(t, "a"), Key(t, "b")
		got := incr(t, s,
			ratelimit.Op{Key: a, Hits: 1, TTL: time.Minute},
			ratelimit.Op{Key: b, Hits: 5, TTL: time.Minute},
			ratelimit.Op{Key: a, Hits: 1, TTL: time.Minute},
		)
		if !slices.Equal(got, []uint64{1, 5, 2}) {
			t.Fatalf("counts %v, want [1 5 2]", got)
		}
	})
	t.Run("zero hits reads without counting", func(t *testing.T) {
		s := newStore(t)
		k := Key(t, "a")
		incr(t, s, ratelimit.Op{Key: k, Hits: 2, TTL: time.Minute})
		for range 2 {
			if got := incr(t, s, ratelimit.Op{Key: k, Hits: 0, TTL: time.Minute}); got[0] != 2 {
				t.Fatalf("count %d, want 2", got[0])
			}
		}
		if got := incr(t, s, ratelimit.Op{Key: Key(t, "fresh"), TTL: time.Minute}); got[0] != 0 {
			t.Fatalf("fresh key read %d, want 0", got[0])
		}
	})
	t.Run("counter expires after its TTL and later increments do not extend it", func(t *testing.T) {
		s := newStore(t)
		k := Key(t, "a")
		incr(t, s, ratelimit.Op{Key: k, Hits: 1, TTL: 400 * time.Millisecond})
		time.Sleep(200 * time.Millisecond)
		if got := incr(t, s, ratelimit.Op{Key: k, Hits: 1, TTL: 400 * time.Millisecond}); got[0] != 2 {
			t.Fatalf("before expiry: count %d, want 2", got[0])
		}
		time.Sleep(350 * time.Millisecond) // 550ms after creation: expired if the TTL was not extended
		if got := incr(t, s, ratelimit.Op{Key: k, Hits: 1, TTL: 400 * time.Millisecond}); got[0] != 1 {
			t.Fatalf("after expiry: count %d, want 1 (a fresh counter)", got[0])
		}
	})
	t.Run("concurrent increments are atomic", func(t *testing.T) {
		s := newStore(t)
		k := Key(t, "a")
		const workers, each = 16, 40
		var mu sync.Mutex
		var seen []uint64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range each {
					ops := []ratelimit.Op{{Key: k, Hits: 1, TTL: time.Minute}, {Key: k + ":other", Hits: 1, TTL: time.Minute}}
					if err := s.Increment(context.Background(), ops); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					seen = append(seen, ops[0].Count)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(seen)
		for i, n := range seen {
			if n != uint64(i+1) {
				t.Fatalf("counts seen are not exactly 1..%d: position %d holds %d", workers*each, i, n)
			}
		}
	})
	t.Run("keys with any bytes", func(t *testing.T) {
		s := newStore(t)
		base := Key(t, "a")
		keys := []string{base + "\x00\xff{x}", base + " \r\n*", base + strings.Repeat("z", 2000)}
		for i, k := range keys {
			if got := incr(t, s, ratelimit.Op{Key: k, Hits: uint64(i + 1), TTL: time.Minute}); got[0] != uint64(i+1) {
				t.Fatalf("key %d: count %d", i, got[0])
			}
		}
	})
	t.Run("cancelled context is an error", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Increment(ctx, []ratelimit.Op{{Key: Key(t, "a"), Hits: 1, TTL: time.Minute}}); err == nil {
			t.Fatal("Increment with a cancelled context returned nil")
		}
	})
	t.Run("many ops in one call", func(t *testing.T) {
		s := newStore(t)
		ops := make([]ratelimit.Op, 300)
		for i := range ops {
			ops[i] = ratelimit.Op{Key: Key(t, "k"), Hits: uint64(i), TTL: time.Minute}
		}
		got := incr(t, s, ops...)
		for i, n := range got {
			if n != uint64(i) {
				t.Fatalf("op %d: count %d", i, n)
			}
		}
	})
}
