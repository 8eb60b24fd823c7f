package admission

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newController(c Config) *Controller {
	c.ApplyDefaults()
	return New(c, prometheus.NewRegistry())
}

func TestConfig(t *testing.T) {
	var c Config
	c.ApplyDefaults()
	if c != (Config{MaxInFlight: 1024, MaxQueued: 1024, MaxQueueWait: 100 * time.Millisecond}) {
		t.Errorf("defaults = %+v", c)
	}
	for _, tc := range []struct {
		give Config
		want string
	}{
		{Config{MaxQueueWait: -time.Second}, "max_queue_wait: must not be negative"},
		{Config{MaxInFlight: -1, MaxQueued: -1, MaxQueueWait: time.Second}, ""},
	} {
		err := tc.give.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && err.Error() != tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.give, err, tc.want)
		}
	}
}

func TestAcquire(t *testing.T) {
	t.Run("a caller that has left gets no turn", func(t *testing.T) {
		a := newController(Config{MaxInFlight: 2})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := a.Acquire(ctx)
		if !errors.Is(err, ErrCallerGone) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want ErrCallerGone wrapping Canceled", err)
		}
		if a.InFlight() != 0 || a.Rejected(ReasonCallerGone) != 1 {
			t.Errorf("in flight %d, caller_gone %v", a.InFlight(), a.Rejected(ReasonCallerGone))
		}
	})

	t.Run("full: queue, refuse, time out, deadline, first free turn", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newController(Config{MaxInFlight: 2, MaxQueued: 1, MaxQueueWait: 100 * time.Millisecond})
			for range 2 {
				if err := a.Acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			queued := make(chan error, 1)
			go func() { queued <- a.Acquire(context.Background()) }()
			synctest.Wait()
			if a.Queued() != 1 {
				t.Fatalf("queued = %d, want 1", a.Queued())
			}
			if err := a.Acquire(context.Background()); !errors.Is(err, ErrOverloaded) || a.Rejected(ReasonQueueFull) != 1 {
				t.Fatalf("over the queue: %v, queue_full %v", err, a.Rejected(ReasonQueueFull))
			}
			time.Sleep(100 * time.Millisecond)
			if err := <-queued; !errors.Is(err, ErrOverloaded) || a.Rejected(ReasonQueueTimeout) != 1 {
				t.Fatalf("queued past max_queue_wait: %v, queue_timeout %v", err, a.Rejected(ReasonQueueTimeout))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if err := a.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrCallerGone) {
				t.Fatalf("deadline in the queue: %v", err)
			}
			go func() { queued <- a.Acquire(context.Background()) }()
			synctest.Wait()
			a.Release()
			if err := <-queued; err != nil {
				t.Fatalf("the queued call did not get the free turn: %v", err)
			}
			a.Release()
			a.Release()
			if a.InFlight() != 0 || a.Queued() != 0 {
				t.Errorf("in flight %d, queued %d after all released", a.InFlight(), a.Queued())
			}
		})
	})

	t.Run("off admits everything and counts late calls", func(t *testing.T) {
		a := newController(Config{MaxInFlight: -1})
		for range 5000 {
			if err := a.Acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		a.Done(context.Background())
		cancel()
		a.Done(ctx)
		if !a.Off() || a.Late() != 1 {
			t.Errorf("off %v, late %v; want true, 1", a.Off(), a.Late())
		}
		a.Release() // a no-op when off
	})

	t.Run("series registered", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		New(Config{MaxInFlight: 1}, reg)
		if n, err := testutil.GatherAndCount(reg, "ext_authz_overload_rejected_total", "ext_authz_overload_late_total", "ext_authz_overload_queued"); err != nil || n != 5 {
			t.Errorf("series = %d, %v; want 3 reasons + late + queued", n, err)
		}
	})
}
