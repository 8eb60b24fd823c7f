package redis_test

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

// TestBatcherStopLeavesNoGoroutines stops the batcher while Redis is
// stalled (SIGSTOP) with pipelines in flight and calls queued: Run returns
// within the callers' deadline, every caller is answered, and no goroutine
// of the batcher or of the calls is left behind, though Redis is still
// stalled.
func TestBatcherStopLeavesNoGoroutines(t *testing.T) {
	srv := redistest.Start(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, MaxRetries: -1, ContextTimeoutEnabled: true, PoolSize: 8})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	base := runtime.NumGoroutine()

	s := rlredis.New(c, rlredis.Options{Workers: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// The batcher is up when a call through it succeeds.
	if err := s.Increment(context.Background(), []ratelimit.Op{{Key: "warm", Hits: 1, TTL: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // Run has loaded the script and started its workers

	srv.Pause()
	defer srv.Resume()
	const callTimeout = 400 * time.Millisecond
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), callTimeout)
			defer ccancel()
			err := s.Increment(cctx, []ratelimit.Op{{Key: "k" + strconv.Itoa(i%10), Hits: 1, TTL: time.Minute}})
			if err == nil {
				t.Error("Increment against a stalled Redis succeeded")
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // pipelines in flight, calls queued
	peak := runtime.NumGoroutine() - base
	stop := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(callTimeout + 2*time.Second):
		t.Fatalf("Run still running %v after cancel", callTimeout+2*time.Second)
	}
	runReturned := time.Since(stop)
	wg.Wait()
	goleak.VerifyNone(t, before)
	t.Logf("%d goroutines during the stall; Run returned %v after cancel (call deadline %v); none left after, Redis still stalled",
		peak, runReturned.Round(time.Millisecond), callTimeout)
}
