package load

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(i + 1)
	}
	tests := []struct {
		name string
		give []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{ms(7)}, 99.9, ms(7)},
		{"p50 of 1..100", hundred, 50, ms(50)},
		{"p99 of 1..100", hundred, 99, ms(99)},
		{"p99.9 of 1..100 is the max", hundred, 99.9, ms(100)},
		{"p0 is the min", hundred, 0, ms(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.give, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestMixString(t *testing.T) {
	r := Result{Mix: map[string]uint64{"ok": 3, "unauthenticated": 1, "forbidden": 1, "error": 3}}
	want := "error=37.5% ok=37.5% forbidden=12.5% unauthenticated=12.5%"
	if got := r.MixString(); got != want {
		t.Errorf("MixString() = %q, want %q", got, want)
	}
}

// TestClosedLoopCounts checks that every measured answer is counted once,
// under its outcome, and failed calls under "error".
func TestClosedLoopCounts(t *testing.T) {
	var calls atomic.Uint64
	call := func(ctx context.Context, seq uint64) (string, error) {
		calls.Add(1)
		time.Sleep(100 * time.Microsecond)
		switch seq % 4 {
		case 0:
			return "", errors.New("transport broke")
		case 1:
			return "unauthenticated", nil
		}
		return "ok", nil
	}
	res, err := Run(context.Background(), call, Options{Workers: 4, Duration: 150 * time.Millisecond, Warmup: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "closed" || res.Workers != 4 {
		t.Errorf("mode %q workers %d, want closed 4", res.Mode, res.Workers)
	}
	if res.Requests == 0 || res.Requests > calls.Load() {
		t.Fatalf("Requests = %d, calls made %d", res.Requests, calls.Load())
	}
	var sum uint64
	for _, v := range res.Mix {
		sum += v
	}
	if sum != res.Requests {
		t.Errorf("mix sums to %d, want Requests %d (%v)", sum, res.Requests, res.Mix)
	}
	if res.Errors == 0 || res.Errors != res.Mix["error"] {
		t.Errorf("Errors = %d, mix error = %d; want equal and positive", res.Errors, res.Mix["error"])
	}
	if res.Mix["ok"] == 0 || res.Mix["unauthenticated"] == 0 {
		t.Errorf("mix %v lacks ok or unauthenticated", res.Mix)
	}
	if !(res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.P999 && res.P999 <= res.Max) {
		t.Errorf("percentiles not ordered: %v %v %v %v %v", res.P50, res.P90, res.P99, res.P999, res.Max)
	}
	if res.P50 < 100*time.Microsecond {
		t.Errorf("p50 %v is below the call's own sleep", res.P50)
	}
	if res.Throughput <= 0 || res.Elapsed != 150*time.Millisecond {
		t.Errorf("Throughput %v Elapsed %v", res.Throughput, res.Elapsed)
	}
}

// TestOpenLoopChargesQueueing is the coordinated-omission check: one
// worker, a 10ms server and 500 requests/s scheduled. A closed loop would
// report 10ms; measured from the scheduled send time, requests wait behind
// each other and the tail grows far beyond the service time.
func TestOpenLoopChargesQueueing(t *testing.T) {
	call := func(ctx context.Context, seq uint64) (string, error) {
		select {
		case <-time.After(10 * time.Millisecond):
			return "ok", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	res, err := Run(context.Background(), call, Options{Workers: 1, Rate: 500, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "open" {
		t.Errorf("mode %q, want open", res.Mode)
	}
	// At most 30 of the 150 scheduled requests can be served in 300ms.
	if res.Requests == 0 || res.Requests > 31 {
		t.Errorf("Requests = %d, want 1..31", res.Requests)
	}
	if res.Late == 0 {
		t.Error("no request counted late although the one worker was always busy")
	}
	if res.P99 < 50*time.Millisecond {
		t.Errorf("p99 = %v: queueing behind a 10ms server is not charged", res.P99)
	}
}

// TestOpenLoopRate checks that a fast server gets the scheduled number of
// requests and none late... within what a loaded test machine allows.
func TestOpenLoopRate(t *testing.T) {
	call := func(ctx context.Context, seq uint64) (string, error) { return "ok", nil }
	res, err := Run(context.Background(), call, Options{Workers: 8, Rate: 1000, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// 200 requests are scheduled inside the window; none beyond it.
	if res.Requests > 200 || res.Requests < 50 {
		t.Errorf("Requests = %d, want about 200 (never more)", res.Requests)
	}
	if res.Mix["ok"] != res.Requests {
		t.Errorf("mix %v, want all ok", res.Mix)
	}
}

func TestRunRejectsBadRate(t *testing.T) {
	call := func(ctx context.Context, seq uint64) (string, error) { return "ok", nil }
	if _, err := Run(context.Background(), call, Options{Rate: -1}); err == nil {
		t.Error("Run with a negative rate: no error")
	}
}

func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	call := func(ctx context.Context, seq uint64) (string, error) {
		if seq == 10 {
			cancel()
		}
		return "ok", nil
	}
	res, err := Run(ctx, call, Options{Workers: 2, Duration: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if res.Elapsed >= time.Minute {
		t.Errorf("Elapsed = %v: the run did not stop with its context", res.Elapsed)
	}
}

// TestCutCallsCountInLatency: a call that hangs until the measured part
// ends is not answered, so it is not in Requests or Mix, but the wait it
// had by then is in the percentiles: a stall at the end of a round must
// show in its tail, not vanish with the calls it held.
func TestCutCallsCountInLatency(t *testing.T) {
	for _, rate := range []float64{0, 200} {
		call := func(ctx context.Context, seq uint64) (string, error) {
			if seq == 0 {
				<-ctx.Done()
				return "", ctx.Err()
			}
			time.Sleep(100 * time.Microsecond)
			return "ok", nil
		}
		res, err := Run(context.Background(), call, Options{Workers: 2, Duration: 120 * time.Millisecond, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		if res.Cut == 0 {
			t.Errorf("rate %v: Cut = 0, want the hung call counted", rate)
		}
		if res.Max < 100*time.Millisecond {
			t.Errorf("rate %v: Max %v, want the hung call's wait (~120ms)", rate, res.Max)
		}
		if res.Mix["error"] != 0 || res.Errors != 0 {
			t.Errorf("rate %v: the cut call was counted as answered: mix %v errors %d", rate, res.Mix, res.Errors)
		}
		var sum uint64
		for _, v := range res.Mix {
			sum += v
		}
		if sum != res.Requests || res.Requests == 0 {
			t.Errorf("rate %v: mix sums to %d, Requests %d", rate, sum, res.Requests)
		}
	}
}
