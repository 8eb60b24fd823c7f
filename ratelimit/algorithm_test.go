package ratelimit_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// admit runs arrivals (µs, ascending) through one window of alg and returns
// the times of the admitted hits.
func admit(alg ratelimit.Algorithm, limit uint64, period int64, arrivals []int64) []int64 {
	var out []int64
	var fixed map[int64]uint64
	var sl ratelimit.SlidingState
	var tat int64
	for _, now := range arrivals {
		switch alg {
		case ratelimit.FixedWindow:
			if fixed == nil {
				fixed = map[int64]uint64{}
			}
			w := now / period
			if fixed[w]+1 <= limit {
				fixed[w]++
				out = append(out, now)
			}
		case ratelimit.SlidingWindow:
			next, v := ratelimit.SlidingDecide(sl, now, period, limit, 1)
			if !v.Over {
				sl = next
				out = append(out, now)
			}
		case ratelimit.GCRA:
			next, v := ratelimit.GCRADecide(tat, now, period, limit, 1)
			if !v.Over {
				tat = next
				out = append(out, now)
			}
		}
	}
	return out
}

// maxIn is the most admitted hits in any half-open span of length span.
func maxIn(times []int64, span int64) int {
	best, j := 0, 0
	for i := range times {
		for times[i]-times[j] >= span {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// bound is what each algorithm promises for any span t ≤ period:
// fixed 2·limit, sliding limit + ⌊limit·t/W⌋, GCRA limit + ⌊t/T⌋.
func bound(alg ratelimit.Algorithm, limit uint64, period, span int64) int {
	switch alg {
	case ratelimit.SlidingWindow:
		return int(limit) + int(float64(limit)*float64(span)/float64(period))
	case ratelimit.GCRA:
		return int(limit) + int(span/ratelimit.GCRAInterval(period, limit))
	}
	return 2 * int(limit)
}

// TestWindowEdge shows each algorithm's promise at a window edge: a full
// burst just before the edge and another just after. Fixed windows allow
// both (2× the limit within 2ms); the smooth ones allow the second only
// as the first ages out.
func TestWindowEdge(t *testing.T) {
	const limit, period = 10, int64(time.Second / time.Microsecond)
	edge := 1_700_000_000 * period
	var arrivals []int64
	for i := range int64(limit) {
		arrivals = append(arrivals, edge-1000+i) // 1ms before the edge
	}
	for i := range int64(limit) {
		arrivals = append(arrivals, edge+1000+i) // 1ms after
	}
	for _, tt := range []struct {
		give ratelimit.Algorithm
		want int
	}{
		{ratelimit.FixedWindow, 2 * limit},
		{ratelimit.SlidingWindow, limit},
		{ratelimit.GCRA, limit},
	} {
		if got := len(admit(tt.give, limit, period, arrivals)); got != tt.want {
			t.Errorf("%v: %d admitted across the edge, want %d", tt.give, got, tt.want)
		}
	}
}

// TestAlgorithmBounds checks each algorithm's stated bound over random
// traffic, for spans from a moment to a whole window, and that fixed windows
// do exceed the limit by half within a tenth of a window (the test has
// the power to see a burst at an edge).
func TestAlgorithmBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const period = int64(60 * time.Second / time.Microsecond)
	fixedReached := false
	for trial := range 200 {
		limit := uint64(1 + r.IntN(50))
		start := int64(1_700_000_000_000_000) + r.Int64N(period)
		var arrivals []int64
		now := start
		for range 2000 {
			// Bursts and gaps: most arrivals close together.
			if r.IntN(10) == 0 {
				now += r.Int64N(period / 2)
			} else {
				now += r.Int64N(period / 500)
			}
			arrivals = append(arrivals, now)
		}
		for _, alg := range []ratelimit.Algorithm{ratelimit.FixedWindow, ratelimit.SlidingWindow, ratelimit.GCRA} {
			got := admit(alg, limit, period, arrivals)
			for _, span := range []int64{1000, period / 10, period / 2, period} {
				m, b := maxIn(got, span), bound(alg, limit, period, span)
				if m > b {
					t.Fatalf("trial %d, %v, limit %d: %d admitted within %dµs, bound %d", trial, alg, limit, m, span, b)
				}
				if alg == ratelimit.FixedWindow && span == period/10 && m > int(limit)+int(limit)/2 {
					fixedReached = true
				}
				if alg != ratelimit.FixedWindow && span == 1000 && m > int(limit)+1 {
					t.Fatalf("trial %d, %v: %d admitted within 1ms, limit %d", trial, alg, m, limit)
				}
			}
		}
	}
	if !fixedReached {
		t.Error("random traffic never showed fixed windows over the limit within 1ms; the test lost its power")
	}
}

func TestGCRAAndSlidingReportRetry(t *testing.T) {
	const period = int64(time.Second / time.Microsecond)
	now := int64(1_700_000_000) * period
	tat := int64(0)
	for range 4 {
		next, v := ratelimit.GCRADecide(tat, now, period, 4, 1)
		if v.Over {
			t.Fatal("burst of the limit denied")
		}
		tat = next
	}
	_, v := ratelimit.GCRADecide(tat, now, period, 4, 1)
	if !v.Over || v.ResetAfter != 250*time.Millisecond {
		t.Fatalf("GCRA 5th: %+v, want over, retry 250ms", v)
	}
	if _, v := ratelimit.GCRADecide(tat, now+250_000, period, 4, 1); v.Over {
		t.Fatalf("GCRA at the advertised retry: %+v", v)
	}

	st := ratelimit.SlidingState{}
	for range 4 {
		next, v := ratelimit.SlidingDecide(st, now+900_000, period, 4, 1)
		if v.Over {
			t.Fatal("sliding: limit denied")
		}
		st = next
	}
	_, v = ratelimit.SlidingDecide(st, now+900_000, period, 4, 1)
	if !v.Over {
		t.Fatal("sliding: 5th allowed")
	}
	at := now + 900_000 + int64(v.ResetAfter/time.Microsecond)
	if _, v2 := ratelimit.SlidingDecide(st, at, period, 4, 1); v2.Over {
		t.Fatalf("sliding at the advertised retry (%v): over", v.ResetAfter)
	}
	if _, v2 := ratelimit.SlidingDecide(st, at-1000, period, 4, 1); !v2.Over {
		t.Fatalf("sliding 1ms before the advertised retry (%v): allowed; the retry is late", v.ResetAfter)
	}
}

func TestParseAlgorithm(t *testing.T) {
	for _, tt := range []struct {
		give string
		want ratelimit.Algorithm
		ok   bool
	}{
		{"fixed_window", ratelimit.FixedWindow, true},
		{"SLIDING_WINDOW", ratelimit.SlidingWindow, true},
		{"gcra", ratelimit.GCRA, true},
		{"token_bucket", ratelimit.GCRA, true},
		{"leaky", ratelimit.FixedWindow, false},
		{"", ratelimit.FixedWindow, false},
	} {
		got, ok := ratelimit.ParseAlgorithm(tt.give)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v, %v", tt.give, got, ok, tt.want, tt.ok)
		}
	}
}

// TestDecideHugeHits: hits beyond the limit are over whatever their
// size; no product or sum wraps around into an allow.
func TestDecideHugeHits(t *testing.T) {
	const now = int64(1_700_000_000_000_000)
	year := int64(365 * 24 * time.Hour / time.Microsecond)
	for _, hits := range []uint64{2, 1 << 32, 584943, 213503983, 1<<63 - 1, 1 << 63, math.MaxUint64} {
		for _, limit := range []uint64{0, 1, math.MaxUint32} {
			if hits <= limit {
				continue
			}
			tat, v := ratelimit.GCRADecide(now+5, now, year, limit, hits)
			if !v.Over || tat != now+5 || v.ResetAfter != time.Duration(year)*time.Microsecond {
				t.Errorf("GCRA limit %d hits %d: tat %d, %+v; want over, uncharged, retry after the period", limit, hits, tat, v)
			}
			st, v := ratelimit.SlidingDecide(ratelimit.SlidingState{Window: now / year, Cur: 1}, now, year, limit, hits)
			if !v.Over || st.Cur != 1 {
				t.Errorf("sliding limit %d hits %d: %+v, %+v; want over, uncharged", limit, hits, st, v)
			}
		}
	}
}
