package redis_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/tokens"
)

// TestStalledStoreLeavesNoGoroutines: callers give up on a Redis that
// stopped answering (SIGSTOP) long before the session timeout. Their
// lookups run on in single flights detached from them (so one caller
// giving up does not fail the others), but every one of those goroutines
// ends within the session timeout, while Redis is still stalled: a stalled
// store cannot pile up goroutines.
func TestStalledStoreLeavesNoGoroutines(t *testing.T) {
	f := newFixture(t, true) // ContextTimeoutEnabled, as internal/redisconf builds it
	const sessions, callersEach = 10, 20
	for i := range sessions {
		f.write(t, token+strconv.Itoa(i), "uid", "u-"+strconv.Itoa(i))
	}
	if err := f.client.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	base := runtime.NumGoroutine()

	f.srv.Pause()
	defer f.srv.Resume()
	var wg sync.WaitGroup
	for i := range sessions * callersEach {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := f.v.Verify(ctx, token+strconv.Itoa(i%sessions)); err == nil || errors.Is(err, tokens.ErrInvalid) {
				t.Errorf("Verify = %v, want could-not-decide", err)
			}
		})
	}
	wg.Wait()
	returned := time.Now()
	left := runtime.NumGoroutine() - base

	// Timeout is 150ms; the margin absorbs a loaded, race-enabled run.
	const within = 150*time.Millisecond + time.Second
	for goleak.Find(before) != nil {
		if time.Since(returned) > within {
			goleak.VerifyNone(t, before)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d callers over %d sessions gave up after 20ms; %d goroutines were still running then, none %v later (session timeout %v)",
		sessions*callersEach, sessions, left, time.Since(returned).Round(time.Millisecond), f.cfg.Timeout)
}
