package ratelimit

import (
	"math"
	"strings"
	"time"
)

// Algorithm is how a domain's limits count.
type Algorithm int

// Algorithms.
const (
	// FixedWindow counts hits in windows aligned to Unix time, as
	// envoyproxy/ratelimit does (the default). Up to twice the limit can
	// pass around a window edge: a full window's worth just before it and
	// another just after.
	FixedWindow Algorithm = iota
	// SlidingWindow estimates the hits of the last window from two fixed
	// windows: the current one's count plus the previous one's weighted by
	// how much of it the sliding window still covers. Over any interval of
	// length t ≤ the window W it allows at most limit·(1 + t/W), so a burst
	// across an edge is about the limit, not twice it.
	SlidingWindow
	// GCRA is the generic cell rate algorithm, a token bucket of the
	// limit's size refilled at limit per window, kept as one timestamp per
	// key. From rest it allows a burst of the limit, then one hit per
	// window/limit: at most limit + ⌊t·limit/W⌋ in any interval of length
	// t.
	GCRA
)

var algorithmNames = [...]string{"fixed_window", "sliding_window", "gcra"}

func (a Algorithm) String() string {
	if a >= 0 && int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return "unknown"
}

// ParseAlgorithm parses an algorithm name; "token_bucket" is GCRA.
func ParseAlgorithm(s string) (Algorithm, bool) {
	if strings.EqualFold(s, "token_bucket") {
		return GCRA, true
	}
	for i, n := range algorithmNames {
		if strings.EqualFold(s, n) {
			return Algorithm(i), true
		}
	}
	return FixedWindow, false
}

// The decisions below are the semantics of the smooth algorithms, shared by
// every store: ratelimit/memory calls them and ratelimit/redis's Lua script
// computes the same arithmetic (the contract suite checks they agree).
// Times are Unix microseconds; the store's clock supplies now (the Redis
// server's TIME, so replicas with skewed clocks agree).

// Verdict is one window's answer in a decision.
type Verdict struct {
	// Over is set when the hits do not fit the window.
	Over bool
	// Remaining is how many more hits the window allows after this one
	// (when it was charged) or now (when it was not).
	Remaining uint64
	// ResetAfter is how long until the window's quota is whole again when
	// it fits, and how long until the hits would fit when Over.
	ResetAfter time.Duration
}

// SlidingState is a sliding window's stored state: the index of the
// current fixed window (now / period) and the counts of it and of the one
// before.
type SlidingState struct {
	Window    int64
	Cur, Prev uint64
}

// SlidingDecide decides hits against limit per period at now (µs) from
// state st, and returns the state to store if the hits are charged. The
// previous window's count is weighted by the share of it the sliding
// window still covers, rounded up, so the estimate never undercounts.
func SlidingDecide(st SlidingState, now, period int64, limit, hits uint64) (SlidingState, Verdict) {
	idx := now / period
	var cur, prev uint64
	switch st.Window {
	case idx:
		cur, prev = st.Cur, st.Prev
	case idx - 1:
		prev = st.Cur
	}
	e := now - idx*period
	weighted := uint64(math.Ceil(float64(prev) * float64(period-e) / float64(period)))
	used := cur + weighted
	v := Verdict{Over: hits > limit || used+hits > limit} // (hits > limit first: used+hits cannot wrap)
	if !v.Over {
		v.Remaining = limit - used - hits
		v.ResetAfter = time.Duration(period-e) * time.Microsecond
		return SlidingState{Window: idx, Cur: cur + hits, Prev: prev}, v
	}
	if used < limit {
		v.Remaining = limit - used
	}
	v.ResetAfter = time.Duration(slidingWait(cur, prev, e, period, limit, hits)) * time.Microsecond
	return SlidingState{Window: idx, Cur: cur, Prev: prev}, v
}

// slidingWait is how long (µs) until hits fit: later in this window as the
// previous window's weight falls, else in the next one.
func slidingWait(cur, prev uint64, e, period int64, limit, hits uint64) int64 {
	if cur+hits <= limit && prev > 0 {
		r := limit - cur - hits
		at := period - int64(float64(r)*float64(period)/float64(prev))
		return max(1, at-e)
	}
	if hits > limit {
		return period
	}
	wait := period - e
	if cur > 0 {
		r := limit - hits
		at := period - int64(float64(r)*float64(period)/float64(cur))
		wait += max(0, at)
	}
	return max(1, wait)
}

// GCRAInterval is the emission interval of limit per period (µs), at least
// 1µs; the bucket holds limit of them.
func GCRAInterval(period int64, limit uint64) int64 {
	if limit == 0 {
		return period
	}
	return max(1, period/int64(limit))
}

// GCRADecide decides hits against limit per period at now (µs) from the
// theoretical arrival time tat (0 for a fresh key), and returns the tat to
// store if the hits are charged.
func GCRADecide(tat, now, period int64, limit, hits uint64) (int64, Verdict) {
	t := GCRAInterval(period, limit)
	burst := int64(limit) * t
	tat = max(tat, now)
	var next int64
	if hits <= limit {
		next = tat + int64(hits)*t // at most tat + burst: no overflow
	}
	var v Verdict
	if hits > limit || next-now > burst {
		v.Over = true
		if tat-now < burst {
			v.Remaining = uint64((burst - (tat - now)) / t)
		}
		v.ResetAfter = time.Duration(period) * time.Microsecond
		if hits <= limit {
			v.ResetAfter = time.Duration(min(next-now-burst, period)) * time.Microsecond
		}
		return tat, v
	}
	v.Remaining = uint64((burst - (next - now)) / t)
	v.ResetAfter = time.Duration(next-now) * time.Microsecond
	return next, v
}
