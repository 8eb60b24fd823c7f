package memory_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
)

func newStore(t *testing.T) ratelimit.Store { return memory.New(memory.Options{}) }

func TestStoreContract(t *testing.T) { ratelimittest.RunStoreContract(t, newStore) }

func TestLimiterContract(t *testing.T) { ratelimittest.RunLimiterContract(t, newStore) }

// TestWindowsAndSweep runs on the fake clock of a synctest bubble: a limit
// of 3 per second, hit across real window boundaries, and the janitor
// freeing expired counters.
func TestWindowsAndSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New(memory.Options{SweepInterval: time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()

		rules := ratelimittest.Rules(t)
		l := ratelimit.New(s, rules, ratelimit.Options{LocalCacheSize: -1})
		req := ratelimit.Request{Domain: "contract", Descriptors: []ratelimit.Descriptor{{
			Entries: []ratelimit.Entry{{Key: "route", Value: "search"}, {Key: "user", Value: "u"}}, Hits: 1,
		}}}
		// synctest starts at 2000-01-01 00:00:00 UTC: a second boundary.
		for w := range 3 {
			allowed := 0
			for range 5 {
				res, err := l.Check(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if res.Code == ratelimit.OK {
					allowed++
				}
			}
			if allowed != 2 {
				t.Fatalf("window %d: %d allowed, want 2", w, allowed)
			}
			time.Sleep(time.Second)
		}
		if n := s.Len(); n > 1 {
			t.Errorf("%d counters held after sweeps, want at most the current window's", n)
		}
		time.Sleep(3 * time.Second)
		if n := s.Len(); n != 0 {
			t.Errorf("%d counters after expiry and sweep, want 0", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
