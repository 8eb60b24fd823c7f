package ratelimittest

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
)

// Limits is the envoyproxy/ratelimit file the limiter contract runs with.
const Limits = `
domain: contract
descriptors:
  - key: user
    rate_limit: {name: per-user, unit: minute, requests_per_unit: 5}
  - key: user
    value: robot
    rate_limit: {unlimited: true}
  - key: route
    value: search
    descriptors:
      - key: user
        rate_limit: {unit: second, requests_per_unit: 2}
  - key: tenant
    value: trial-*
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: plan
    value: vip
    rate_limit: {name: vip, unit: minute, requests_per_unit: 100, replaces: [{name: per-user}]}
  - key: exact
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: files
    value: /shared/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 3}
`

// Clock is a settable clock for Options.Now.
type Clock struct{ ns atomic.Int64 }

// NewClock starts at t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Add moves the clock.
func (c *Clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// countingStore counts calls that reach the store.
type countingStore struct {
	ratelimit.Store
	calls atomic.Int64
}

func (s *countingStore) Increment(ctx context.Context, ops []ratelimit.Op) error {
	s.calls.Add(1)
	return s.Store.Increment(ctx, ops)
}

// Rules parses Limits.
func Rules(t testing.TB) *envoyconfig.Rules {
	t.Helper()
	r, err := envoyconfig.Parse([]envoyconfig.File{{Name: "contract.yaml", Content: []byte(Limits)}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func d(kv ...string) ratelimit.Descriptor {
	out := ratelimit.Descriptor{Hits: 1}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Entries = append(out.Entries, ratelimit.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// RunLimiterContract checks ratelimit.Limiter decisions over stores made by
// newStore, which must not share counters between calls.
func RunLimiterContract(t *testing.T, newStore NewStore) {
	t.Run("algorithms", func(t *testing.T) { runAlgorithmContract(t, newStore) })
	rules := Rules(t)
	// Windows are aligned to Unix time; start mid-window of every unit.
	start := time.Unix(1_700_000_000, 0).Add(10 * time.Second)
	setup := func(t *testing.T) (*ratelimit.Limiter, *Clock, *countingStore) {
		cs := &countingStore{Store: newStore(t)}
		clk := NewClock(start)
		l := ratelimit.New(cs, rules, ratelimit.Options{
			Now: clk.Now, Timeout: 5 * time.Second, KeyPrefix: Key(t, "p") + ":",
		})
		return l, clk, cs
	}
	check := func(t *testing.T, l *ratelimit.Limiter, descs ...ratelimit.Descriptor) ratelimit.Result {
		t.Helper()
		res, err := l.Check(context.Background(), ratelimit.Request{Domain: "contract", Descriptors: descs})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if len(res.Statuses) != len(descs) {
			t.Fatalf("%d statuses for %d descriptors", len(res.Statuses), len(descs))
		}
		return res
	}

	t.Run("per-user limit counts each user apart", func(t *testing.T) {
		l, _, _ := setup(t)
		for i := range 5 {
			res := check(t, l, d("user", "alice"))
			if res.Code != ratelimit.OK || res.Statuses[0].Remaining != uint32(4-i) {
				t.Fatalf("hit %d: %+v", i+1, res)
			}
		}
		if res := check(t, l, d("user", "alice")); res.Code != ratelimit.OverLimit {
			t.Fatalf("6th hit: %v, want over_limit", res.Code)
		}
		if res := check(t, l, d("user", "bob")); res.Code != ratelimit.OK {
			t.Fatalf("bob: %v, want ok", res.Code)
		}
	})
	t.Run("exactly N of many concurrent checks are allowed", func(t *testing.T) {
		l, _, _ := setup(t)
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				res, err := l.Check(context.Background(), ratelimit.Request{Domain: "contract", Descriptors: []ratelimit.Descriptor{d("exact", "k")}})
				if err != nil {
					t.Error(err)
					return
				}
				if res.Code == ratelimit.OK {
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != 20 {
			t.Fatalf("%d allowed, want exactly 20", got)
		}
	})
	t.Run("window roll-over", func(t *testing.T) {
		l, clk, _ := setup(t)
		for range 2 {
			check(t, l, d("route", "search", "user", "carol"))
		}
		res := check(t, l, d("route", "search", "user", "carol"))
		if res.Code != ratelimit.OverLimit {
			t.Fatalf("3rd hit in one second: %v", res.Code)
		}
		if got := res.Statuses[0].ResetAfter; got != time.Second {
			t.Errorf("ResetAfter = %v, want 1s (window aligned to the second)", got)
		}
		clk.Add(time.Second)
		if res := check(t, l, d("route", "search", "user", "carol")); res.Code != ratelimit.OK || res.Statuses[0].Remaining != 1 {
			t.Fatalf("next window: %+v", res)
		}
	})
	t.Run("window alignment", func(t *testing.T) {
		l, clk, _ := setup(t)
		clk.Add(15 * time.Second) // 1_700_000_025: minute window [1_699_999_980, 1_700_000_040)
		res := check(t, l, d("user", "dora"))
		if got := res.Statuses[0].ResetAfter; got != 15*time.Second {
			t.Errorf("ResetAfter = %v, want 15s", got)
		}
	})
	t.Run("nested descriptor parent alone is not limited", func(t *testing.T) {
		l, _, cs := setup(t)
		res := check(t, l, d("route", "search"))
		if res.Code != ratelimit.OK || res.Statuses[0].Limit != nil || cs.calls.Load() != 0 {
			t.Fatalf("%+v, store calls %d", res, cs.calls.Load())
		}
	})
	t.Run("wildcard values share one limit per value", func(t *testing.T) {
		l, _, _ := setup(t)
		for range 3 {
			check(t, l, d("tenant", "trial-1"))
		}
		if res := check(t, l, d("tenant", "trial-1")); res.Code != ratelimit.OverLimit {
			t.Fatalf("trial-1 4th: %v", res.Code)
		}
		if res := check(t, l, d("tenant", "trial-2")); res.Code != ratelimit.OK {
			t.Fatalf("trial-2: %v", res.Code)
		}
		if res := check(t, l, d("tenant", "paid-1")); res.Statuses[0].Limit != nil {
			t.Fatalf("paid-1 matched %+v", res.Statuses[0].Limit)
		}
	})
	t.Run("share_threshold: values matching the wildcard share one counter", func(t *testing.T) {
		l, _, _ := setup(t)
		for _, v := range []string{"/shared/a", "/shared/b", "/shared/c"} {
			if res := check(t, l, d("files", v)); res.Code != ratelimit.OK {
				t.Fatalf("%s: %v", v, res.Code)
			}
		}
		if res := check(t, l, d("files", "/shared/d")); res.Code != ratelimit.OverLimit {
			t.Fatalf("4th value under one shared counter: %v", res.Code)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		l, _, cs := setup(t)
		for range 20 {
			res := check(t, l, d("user", "robot"))
			if res.Code != ratelimit.OK || res.Statuses[0].Remaining != math.MaxUint32 {
				t.Fatalf("%+v", res)
			}
		}
		if cs.calls.Load() != 0 {
			t.Errorf("unlimited descriptors reached the store %d times", cs.calls.Load())
		}
	})
	t.Run("shadow mode allows and reports", func(t *testing.T) {
		l, _, _ := setup(t)
		check(t, l, d("shadow", "x"))
		for range 3 {
			res := check(t, l, d("shadow", "x"))
			if res.Code != ratelimit.OK || !res.Statuses[0].ShadowOverLimit || res.Statuses[0].Code != ratelimit.OK {
				t.Fatalf("%+v", res)
			}
		}
	})
	t.Run("replaces drops the replaced limit", func(t *testing.T) {
		l, _, _ := setup(t)
		for range 10 {
			res := check(t, l, d("user", "erin"), d("plan", "vip"))
			if res.Code != ratelimit.OK || res.Statuses[0].Limit != nil {
				t.Fatalf("%+v", res)
			}
		}
	})
	t.Run("several descriptors in one check and one store call", func(t *testing.T) {
		l, _, cs := setup(t)
		res := check(t, l, d("user", "fay"), d("tenant", "trial-9"), d("route", "search", "user", "fay"), d("nothing", "x"))
		if res.Code != ratelimit.OK || cs.calls.Load() != 1 {
			t.Fatalf("%+v, store calls %d, want 1", res, cs.calls.Load())
		}
		if res.Statuses[0].Remaining != 4 || res.Statuses[1].Remaining != 2 || res.Statuses[2].Remaining != 1 || res.Statuses[3].Limit != nil {
			t.Fatalf("statuses %+v", res.Statuses)
		}
	})
	t.Run("over one limit is over", func(t *testing.T) {
		l, _, _ := setup(t)
		for range 2 {
			check(t, l, d("route", "search", "user", "gus"))
		}
		res := check(t, l, d("user", "gus"), d("route", "search", "user", "gus"))
		if res.Code != ratelimit.OverLimit || res.Statuses[0].Code != ratelimit.OK || res.Statuses[1].Code != ratelimit.OverLimit {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("local cache answers over-limit keys without the store", func(t *testing.T) {
		l, clk, cs := setup(t)
		for range 6 {
			check(t, l, d("user", "hal"))
		}
		before := cs.calls.Load()
		for range 50 {
			res := check(t, l, d("user", "hal"))
			if res.Code != ratelimit.OverLimit || !res.Statuses[0].LocalCache {
				t.Fatalf("%+v", res)
			}
		}
		if got := cs.calls.Load() - before; got != 0 {
			t.Fatalf("%d store calls for a cached over-limit key", got)
		}
		clk.Add(time.Minute)
		if res := check(t, l, d("user", "hal")); res.Code != ratelimit.OK {
			t.Fatalf("next window: %v", res.Code)
		}
	})
	t.Run("zero hits checks without counting", func(t *testing.T) {
		l, _, _ := setup(t)
		q := d("user", "ivy")
		q.Hits = 0
		for range 10 {
			if res := check(t, l, q); res.Code != ratelimit.OK || res.Statuses[0].Remaining != 5 {
				t.Fatalf("%+v", res)
			}
		}
	})
	t.Run("override limit", func(t *testing.T) {
		l, _, _ := setup(t)
		q := d("anything", "x")
		q.Override = &ratelimit.Limit{Policy: "override", Requests: 1, Unit: ratelimit.Minute}
		check(t, l, q)
		if res := check(t, l, q); res.Code != ratelimit.OverLimit {
			t.Fatalf("%v", res.Code)
		}
	})
}
