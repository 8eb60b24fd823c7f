package ratelimittest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// Algorithms are the algorithms every store decides.
var Algorithms = []ratelimit.Algorithm{ratelimit.FixedWindow, ratelimit.SlidingWindow, ratelimit.GCRA}

// windowKey builds a decision window key unique to the test.
func windowKey(t *testing.T, name string, alg ratelimit.Algorithm, unit ratelimit.Unit) string {
	return string(ratelimit.AppendWindowKey(nil, Key(t, "p"), "contract",
		[]ratelimit.Entry{{Key: "k", Value: name}}, nil, alg, unit, 0))
}

// decide runs one decision op and returns it.
func decide(t *testing.T, s ratelimit.Store, alg ratelimit.Algorithm, hits uint64, ws ...ratelimit.Window) ratelimit.Op {
	t.Helper()
	op := ratelimit.Op{Algorithm: alg, Hits: hits, Windows: append([]ratelimit.Window(nil), ws...)}
	ops := []ratelimit.Op{op}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Increment(ctx, ops); err != nil {
		t.Fatalf("Increment: %v", err)
	}
	return ops[0]
}

// RunDecisionContract checks decision ops (ratelimit.Op.Windows) for every
// algorithm. The periods are long (an hour, a day) so that the store's own
// clock, which the test does not control, cannot refill a window while a
// case runs, except where a case waits for a refill on purpose.
func RunDecisionContract(t *testing.T, newStore NewStore) {
	for _, alg := range Algorithms {
		t.Run(alg.String(), func(t *testing.T) { runDecisionContract(t, newStore, alg) })
	}
}

func runDecisionContract(t *testing.T, newStore NewStore, alg ratelimit.Algorithm) {
	hour := func(t *testing.T, name string, limit uint64) ratelimit.Window {
		return ratelimit.Window{Key: windowKey(t, name, alg, ratelimit.Hour), Limit: limit, Period: time.Hour}
	}
	day := func(t *testing.T, name string, limit uint64) ratelimit.Window {
		return ratelimit.Window{Key: windowKey(t, name, alg, ratelimit.Day), Limit: limit, Period: 24 * time.Hour}
	}
	t.Run("allows the limit then denies without charging", func(t *testing.T) {
		s := newStore(t)
		w := hour(t, "a", 3)
		for i := range 3 {
			op := decide(t, s, alg, 1, w)
			if op.Denied || op.Windows[0].Verdict.Over || op.Windows[0].Verdict.Remaining != uint64(2-i) {
				t.Fatalf("hit %d: %+v", i+1, op)
			}
		}
		for range 3 {
			op := decide(t, s, alg, 1, w)
			v := op.Windows[0].Verdict
			if !op.Denied || !v.Over || v.Remaining != 0 || v.ResetAfter <= 0 && alg != ratelimit.FixedWindow {
				t.Fatalf("over the limit: %+v", op)
			}
		}
		// A read (0 hits) is not over: the denials were not charged.
		if op := decide(t, s, alg, 0, w); op.Denied || op.Windows[0].Verdict.Remaining != 0 {
			t.Fatalf("read after denials: %+v", op)
		}
	})
	t.Run("several windows: the tightest decides and a denial charges none", func(t *testing.T) {
		s := newStore(t)
		short, long := hour(t, "b", 2), day(t, "b", 5)
		for range 2 {
			if op := decide(t, s, alg, 1, short, long); op.Denied {
				t.Fatalf("%+v", op)
			}
		}
		op := decide(t, s, alg, 1, short, long)
		if !op.Denied || !op.Windows[0].Verdict.Over || op.Windows[1].Verdict.Over {
			t.Fatalf("3rd hit: %+v, want denied by the first window only", op)
		}
		if got := op.Windows[1].Verdict.Remaining; got != 3 {
			t.Fatalf("day window remaining %d, want 3 (denied hits are not charged)", got)
		}
		// The day window alone still has its 3.
		if op := decide(t, s, alg, 3, long); op.Denied || op.Windows[0].Verdict.Remaining != 0 {
			t.Fatalf("day window: %+v", op)
		}
	})
	t.Run("hits above the limit are denied", func(t *testing.T) {
		s := newStore(t)
		if op := decide(t, s, alg, 4, hour(t, "c", 3)); !op.Denied {
			t.Fatalf("%+v", op)
		}
		if op := decide(t, s, alg, 3, hour(t, "c", 3)); op.Denied || op.Windows[0].Verdict.Remaining != 0 {
			t.Fatalf("%+v", op)
		}
	})
	t.Run("a period under a microsecond is answered, not a crash", func(t *testing.T) {
		s := newStore(t)
		w := ratelimit.Window{Key: windowKey(t, "tiny", alg, ratelimit.Second), Limit: 1, Period: time.Nanosecond}
		if op := decide(t, s, alg, 2, w); !op.Denied {
			t.Fatalf("%+v", op)
		}
	})
	t.Run("a zero limit denies every hit", func(t *testing.T) {
		s := newStore(t)
		if op := decide(t, s, alg, 1, hour(t, "z", 0)); !op.Denied {
			t.Fatalf("%+v", op)
		}
	})
	t.Run("shadow windows are charged and report but never deny", func(t *testing.T) {
		s := newStore(t)
		sh := hour(t, "d", 1)
		sh.Shadow = true
		en := day(t, "d", 3) // one descriptor: its windows share a Cluster slot
		for i := range 3 {
			op := decide(t, s, alg, 1, sh, en)
			if op.Denied || op.Windows[0].Verdict.Over != (i > 0) {
				t.Fatalf("hit %d: %+v", i+1, op)
			}
		}
		if op := decide(t, s, alg, 1, sh, en); !op.Denied || !op.Windows[0].Verdict.Over {
			t.Fatalf("4th: %+v", op)
		}
	})
	t.Run("a shadow window over its limit is charged as an enforced one would be", func(t *testing.T) {
		// Fixed windows count every hit, over or not (envoyproxy/ratelimit's
		// shadow_mode); the smooth algorithms charge a window only the hits
		// that fit it, so a shadow window's would-be decisions are the ones
		// it would make enforced, and it is not reported over for hours
		// after a burst it would have refused.
		s := newStore(t)
		sh := hour(t, "s", 1)
		sh.Shadow = true
		en := day(t, "s", 5)
		for i := range 3 {
			if op := decide(t, s, alg, 1, sh, en); op.Denied || op.Windows[0].Verdict.Over != (i > 0) {
				t.Fatalf("hit %d: %+v", i+1, op)
			}
		}
		op := decide(t, s, alg, 0, sh)
		if v := op.Windows[0].Verdict; v.Over != (alg == ratelimit.FixedWindow) || v.Remaining != 0 {
			t.Fatalf("read of the shadow window after 3 hits: %+v, want over only for fixed windows (which count every hit)", v)
		}
	})
	t.Run("concurrent decisions over shared windows are exact", func(t *testing.T) {
		s := newStore(t)
		a, b := hour(t, "e", 37), day(t, "e", 50)
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 10 {
					ops := []ratelimit.Op{{Algorithm: alg, Hits: 1, Windows: []ratelimit.Window{a, b}}}
					if err := s.Increment(context.Background(), ops); err != nil {
						t.Error(err)
						return
					}
					if !ops[0].Denied {
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != 37 {
			t.Fatalf("%d allowed, want exactly 37", got)
		}
		if op := decide(t, s, alg, 13, b); op.Denied {
			t.Fatalf("day window after: %+v, want 13 left", op)
		}
	})
	t.Run("every key expires", func(t *testing.T) {
		s := newStore(t)
		w := ratelimit.Window{Key: windowKey(t, "f", alg, ratelimit.Second), Limit: 2, Period: 300 * time.Millisecond}
		start := time.Now()
		decide(t, s, alg, 2, w)
		// (On a machine too loaded to make two calls within the period
		// the window may have ended already.)
		if op := decide(t, s, alg, 1, w); !op.Denied && time.Since(start) < w.Period {
			t.Fatalf("%+v", op)
		}
		time.Sleep(700 * time.Millisecond) // past 2 periods: the key is gone or all its hits have aged out
		if op := decide(t, s, alg, 2, w); op.Denied {
			t.Fatalf("after the window: %+v", op)
		}
	})
	if alg == ratelimit.FixedWindow {
		return
	}
	t.Run("a burst right after a full window is not a second full window", func(t *testing.T) {
		// Fixed windows allow 2×limit within moments when the edge falls
		// between two bursts; the smooth algorithms allow at most
		// limit·(1+t/W) (sliding) or limit+⌊t·limit/W⌋ (GCRA) in any span t,
		// wherever the edge falls (the store's clock decides it here).
		s := newStore(t)
		const limit = 20
		w := ratelimit.Window{Key: windowKey(t, "g", alg, ratelimit.Second), Limit: limit, Period: time.Second}
		start := time.Now()
		n := 0
		for range 2 * limit {
			if op := decide(t, s, alg, 1, w); !op.Denied {
				n++
			}
		}
		span := time.Since(start)
		bound := limit + int(float64(limit)*span.Seconds()) + 1
		if n < limit || n > bound {
			t.Fatalf("%d of %d allowed within %v; want between %d and %d", n, 2*limit, span, limit, bound)
		}
	})
	t.Run("refills with time", func(t *testing.T) {
		s := newStore(t)
		w := ratelimit.Window{Key: windowKey(t, "h", alg, ratelimit.Second), Limit: 10, Period: 200 * time.Millisecond}
		decide(t, s, alg, 10, w)
		op := decide(t, s, alg, 1, w)
		if !op.Denied || op.Windows[0].Verdict.ResetAfter <= 0 || op.Windows[0].Verdict.ResetAfter > 400*time.Millisecond {
			t.Fatalf("%+v, want denied with a retry within 2 periods", op)
		}
		time.Sleep(op.Windows[0].Verdict.ResetAfter + 5*time.Millisecond)
		if op := decide(t, s, alg, 1, w); op.Denied {
			t.Fatalf("after the advertised retry: %+v", op)
		}
	})
}
