package ratelimittest

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// runAlgorithmContract checks the Limiter over decision ops: each
// algorithm on a domain, several limits on one descriptor, and the local
// cache keyed by the limit.
func runAlgorithmContract(t *testing.T, newStore NewStore) {
	rules := Rules(t)
	start := time.Unix(1_700_000_000, 0).Add(10 * time.Second)
	setup := func(t *testing.T, alg ratelimit.Algorithm) (*ratelimit.Limiter, *countingStore) {
		cs := &countingStore{Store: newStore(t)}
		clk := NewClock(start)
		return ratelimit.New(cs, rules, ratelimit.Options{
			Now: clk.Now, Timeout: 5 * time.Second, KeyPrefix: Key(t, "p") + ":",
			Algorithms: map[string]ratelimit.Algorithm{"contract": alg},
		}), cs
	}
	check := func(t *testing.T, l *ratelimit.Limiter, descs ...ratelimit.Descriptor) ratelimit.Result {
		t.Helper()
		res, err := l.Check(context.Background(), ratelimit.Request{Domain: "contract", Descriptors: descs})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return res
	}
	for _, alg := range Algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			t.Run("file limits under the domain's algorithm", func(t *testing.T) {
				l, _ := setup(t, alg)
				for i := range 5 {
					res := check(t, l, d("user", "alice"), d("user", "robot"))
					if res.Code != ratelimit.OK || res.Statuses[0].Remaining != uint32(4-i) || res.Statuses[0].Limit.Name != "per-user" {
						t.Fatalf("hit %d: %+v", i+1, res)
					}
				}
				res := check(t, l, d("user", "alice"))
				if res.Code != ratelimit.OverLimit || res.Statuses[0].ResetAfter <= 0 {
					t.Fatalf("6th: %+v", res)
				}
				if res := check(t, l, d("user", "bob")); res.Code != ratelimit.OK {
					t.Fatalf("bob: %v", res.Code)
				}
			})
			t.Run("several limits: the tightest decides and is named", func(t *testing.T) {
				l, cs := setup(t, alg)
				perHour := &ratelimit.Limit{Policy: "pro/api/hour", Requests: 3, Unit: ratelimit.Hour, Plan: "pro"}
				perDay := &ratelimit.Limit{Policy: "pro/api/day", Requests: 100, Unit: ratelimit.Day, Plan: "pro"}
				q := d("user", "carol")
				q.Limits = []*ratelimit.Limit{perDay, perHour}
				for i := range 3 {
					res := check(t, l, q)
					st := res.Statuses[0]
					if res.Code != ratelimit.OK || st.Limit != perHour || st.Remaining != uint32(2-i) || len(st.Windows) != 2 || st.Windows[0].Remaining != uint32(99-i) {
						t.Fatalf("hit %d: %+v", i+1, st)
					}
				}
				calls := cs.calls.Load()
				res := check(t, l, q)
				st := res.Statuses[0]
				if res.Code != ratelimit.OverLimit || st.Limit != perHour || !st.Windows[1].Over || st.Windows[0].Over {
					t.Fatalf("4th: %+v", st)
				}
				if cs.calls.Load() != calls+1 {
					t.Fatalf("%d store calls for one check of two windows, want 1", cs.calls.Load()-calls)
				}
				// Now over: answered from the local cache, still naming the hour.
				res = check(t, l, q)
				if st := res.Statuses[0]; res.Code != ratelimit.OverLimit || !st.LocalCache || st.Limit != perHour {
					t.Fatalf("cached: %+v", st)
				}
				// The day window was charged only the 3 allowed hits.
				q2 := d("user", "carol")
				q2.Limits = []*ratelimit.Limit{perDay}
				q2.Hits = 0
				if res := check(t, l, q2); res.Statuses[0].Remaining != 97 {
					t.Fatalf("day window alone: %+v, want 97 left", res.Statuses[0])
				}
			})
			t.Run("a huge hits addend is over the limit, never an error or a wrap-around", func(t *testing.T) {
				// hits_addend is a uint64 on the wire. Multiplied by a GCRA
				// interval, added to a count or handed to INCRBY, a large one
				// overflowed: allowed (memory) or a store error (Redis, which
				// the failure mode may answer with an allow).
				for i, hits := range []uint64{1 << 32, 584943, 213503983, 1<<63 - 1, 1 << 63, 1<<63 + 5, math.MaxUint64} {
					l, _ := setup(t, alg)
					for _, lims := range [][]*ratelimit.Limit{
						nil, // the file's per-user 5/minute
						{{Requests: 1, Unit: ratelimit.Year}},
						{{Requests: 1, Unit: ratelimit.Day}, {Requests: 4294967295, Unit: ratelimit.Month}},
					} {
						q := d("user", "huge-"+strconv.Itoa(i))
						q.Limits = lims
						if res := check(t, l, q); res.Code != ratelimit.OK {
							t.Fatalf("first hit under %v: %+v", lims, res)
						}
						q.Hits = hits
						if res := check(t, l, q); res.Code != ratelimit.OverLimit {
							t.Fatalf("hits %d under %v: %v, want over_limit", hits, lims, res.Code)
						}
					}
				}
			})
			t.Run("an unlimited limit among several makes the descriptor unlimited", func(t *testing.T) {
				l, cs := setup(t, alg)
				q := d("user", "dan")
				q.Limits = []*ratelimit.Limit{{Requests: 1, Unit: ratelimit.Hour}, {Unlimited: true}}
				for range 3 {
					if res := check(t, l, q); res.Code != ratelimit.OK {
						t.Fatalf("%+v", res)
					}
				}
				if cs.calls.Load() != 0 {
					t.Fatalf("store called %d times", cs.calls.Load())
				}
			})
			t.Run("a verdict cached under one limit does not answer for another", func(t *testing.T) {
				l, _ := setup(t, alg)
				low := d("user", "eve")
				low.Limits = []*ratelimit.Limit{{Requests: 1, Unit: ratelimit.Hour, Plan: "free"}}
				check(t, l, low)
				if res := check(t, l, low); res.Code != ratelimit.OverLimit {
					t.Fatalf("free 2nd: %v", res.Code)
				}
				if res := check(t, l, low); !res.Statuses[0].LocalCache {
					t.Fatalf("free 3rd not cached: %+v", res.Statuses[0])
				}
				high := d("user", "eve")
				high.Limits = []*ratelimit.Limit{{Requests: 10, Unit: ratelimit.Hour, Plan: "pro"}}
				res := check(t, l, high)
				if res.Statuses[0].LocalCache {
					t.Fatalf("after an upgrade to 10/hour: %+v answered from the cache", res.Statuses[0])
				}
				// GCRA keeps the debt in time (an hour, for 1/hour): a new
				// limit reinterprets it rather than starting afresh.
				if alg != ratelimit.GCRA && res.Code != ratelimit.OK {
					t.Fatalf("after an upgrade to 10/hour: %+v", res.Statuses[0])
				}
			})
		})
	}
	t.Run("fixed window override: the cache is keyed by the limit", func(t *testing.T) {
		l, _ := setup(t, ratelimit.FixedWindow)
		q := d("anything", "y")
		q.Override = &ratelimit.Limit{Policy: "override", Requests: 1, Unit: ratelimit.Minute}
		check(t, l, q)
		check(t, l, q)
		if res := check(t, l, q); res.Code != ratelimit.OverLimit || !res.Statuses[0].LocalCache {
			t.Fatalf("3rd under 1/minute: %+v", res.Statuses[0])
		}
		q.Override = &ratelimit.Limit{Policy: "override", Requests: 100, Unit: ratelimit.Minute}
		if res := check(t, l, q); res.Code != ratelimit.OK || res.Statuses[0].LocalCache || res.Statuses[0].Remaining != 97 { // 2 counted, 1 answered by the cache
			t.Fatalf("under 100/minute: %+v", res.Statuses[0])
		}
	})
}
