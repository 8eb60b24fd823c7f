package memory_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
)

// TestRunLeavesNoGoroutines: the janitor started by Run, mid-sweep or
// idle, is gone once Run has returned.
func TestRunLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	s := memory.New(memory.Options{SweepInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ops := []ratelimit.Op{{Key: "k", Hits: 1, TTL: time.Nanosecond}}
	for range 100 { // keep the janitor busy with expiring counters
		if err := s.Increment(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5s after cancel")
	}
	goleak.VerifyNone(t, before)
}
