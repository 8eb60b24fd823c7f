package ratelimit

import (
	"math"
	"time"
)

// Reported is the index of the status the rate-limit response headers
// describe, or -1 when no limit applied: the one envoyproxy/ratelimit
// reports (src/service/ratelimit.go, shouldRateLimitWorker), so a client
// sees the same numbers whichever of the two answers.
//
// That is the LAST descriptor over an enforced limit; with none, the
// first of those with the fewest hits left. A limit exceeded in shadow
// mode has 0 left, so it is reported when nothing is over an enforced
// limit. Unlimited descriptors, and those with no limit or a replaced
// one, are never reported; nor is one with exactly math.MaxUint32 left
// (the reference starts its minimum there and compares strictly).
func (r *Result) Reported() int {
	best := -1
	minLeft := uint32(math.MaxUint32)
	for i := range r.Statuses {
		st := &r.Statuses[i]
		if st.Limit == nil || st.Limit.Unlimited {
			continue
		}
		if st.Code == OverLimit {
			best, minLeft = i, 0
			continue
		}
		if st.Remaining < minLeft {
			best, minLeft = i, st.Remaining
		}
	}
	return best
}

// pick is the status Reported names, or nil.
func (r *Result) pick() *Status {
	if i := r.Reported(); i >= 0 {
		return &r.Statuses[i]
	}
	return nil
}

// retryAfter is the longest wait among the descriptors over an enforced
// limit: a client that waits less is denied again by one of them.
func (r *Result) retryAfter() time.Duration {
	var d time.Duration
	for i := range r.Statuses {
		if st := &r.Statuses[i]; st.Code == OverLimit && st.ResetAfter > d {
			d = st.ResetAfter
		}
	}
	return d
}
