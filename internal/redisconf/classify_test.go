package redisconf

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
)

// closedAddr is an address nothing listens on: dials are refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// hangupServer accepts connections, reads the first command and closes
// the connection without answering: a proxy or server going away mid-call.
func hangupServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			_, _ = c.Read(buf)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	return l.Addr().String()
}

// TestErrorClassesOfRealFailures produces each failure against a real
// redis-server (or a real closed port) through a client built as the
// service builds it, and checks the class the hook records. Each call has
// a context deadline, as every Check's Redis call has: the refused cases
// used to be recorded as "timeout", because go-redis retries the dial
// until the deadline and then returns only context.DeadlineExceeded.
func TestErrorClassesOfRealFailures(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		name string
		// addr is the server to use; "" is srv.
		addr string
		// call makes the failing call with ctx.
		call func(t *testing.T, ctx context.Context, c redis.UniversalClient) error
		// timeout is the call's deadline.
		timeout time.Duration
		command string
		want    string
	}{
		{
			name: "refused, short deadline", addr: "closed", timeout: 100 * time.Millisecond, command: "get", want: "network",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error { return c.Get(ctx, "k").Err() },
		},
		{
			name: "refused, long deadline", addr: "closed", timeout: 3 * time.Second, command: "get", want: "network",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error { return c.Get(ctx, "k").Err() },
		},
		{
			name: "refused, pipeline", addr: "closed", timeout: 100 * time.Millisecond, command: "pipeline", want: "network",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error {
				_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "n"); return nil })
				return err
			},
		},
		{
			name: "stalled server (SIGSTOP)", timeout: 100 * time.Millisecond, command: "get", want: "timeout",
			call: func(t *testing.T, ctx context.Context, c redis.UniversalClient) error {
				if err := c.Ping(context.Background()).Err(); err != nil { // a live connection first
					t.Fatal(err)
				}
				srv.Pause()
				defer srv.Resume()
				return c.Get(ctx, "k").Err()
			},
		},
		{
			name: "stalled server on a new connection", timeout: 100 * time.Millisecond, command: "get", want: "timeout",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error {
				srv.Pause() // the kernel still accepts: the dial succeeds, the reply never comes
				defer srv.Resume()
				return c.Get(ctx, "k").Err()
			},
		},
		{
			name: "server error reply", timeout: time.Second, command: "nosuchcommand", want: "server",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error {
				return c.Do(ctx, "NOSUCHCOMMAND").Err()
			},
		},
		{
			name: "wrong type", timeout: time.Second, command: "incr", want: "server",
			call: func(t *testing.T, ctx context.Context, c redis.UniversalClient) error {
				if err := c.Set(ctx, "str", "abc", 0).Err(); err != nil {
					t.Fatal(err)
				}
				return c.Incr(ctx, "str").Err()
			},
		},
		{
			name: "connection closed mid-call", addr: "hangup", timeout: time.Second, command: "get", want: "network",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error { return c.Get(ctx, "k").Err() },
		},
		{
			name: "canceled", timeout: time.Second, command: "get", want: "canceled",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				return c.Get(ctx, "k").Err()
			},
		},
		{
			name: "closed client", timeout: time.Second, command: "get", want: "network",
			call: func(_ *testing.T, ctx context.Context, c redis.UniversalClient) error {
				_ = c.Close()
				return c.Get(ctx, "k").Err()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := srv.Addr
			switch tt.addr {
			case "closed":
				addr = closedAddr(t)
			case "hangup":
				addr = hangupServer(t)
			}
			cfg := Config{Addrs: []string{addr}, DialTimeout: 2 * time.Second}
			c, err := cfg.NewClient()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			reg := prometheus.NewRegistry()
			c.AddHook(NewMetricsHook(reg))
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			if err := tt.call(t, ctx, c); err == nil {
				t.Fatal("the call did not fail")
			}
			got := testutil.ToFloat64(mustVec(t, reg, tt.command, tt.want))
			if got != 1 {
				var b strings.Builder
				mfs, _ := reg.Gather()
				for _, mf := range mfs {
					if mf.GetName() == "ext_authz_redis_errors_total" {
						for _, m := range mf.GetMetric() {
							b.WriteString(m.String() + "\n")
						}
					}
				}
				t.Errorf("errors_total{command=%q,class=%q} = %v; recorded:\n%s", tt.command, tt.want, got, b.String())
			}
		})
	}
}

// mustVec is the errors_total child for command and class.
func mustVec(t *testing.T, reg *prometheus.Registry, command, class string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "ext_authz_redis_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["command"] == command && labels["class"] == class {
				g.Set(m.GetCounter().GetValue())
			}
		}
	}
	return g
}

// TestErrorClassDialTimeoutStaysTimeout: a dial that itself times out (no
// answer to the SYN) is a timeout, and a failed dial before the call
// started does not relabel a later timeout.
func TestErrorClassDialFailureOnlyDuringTheCall(t *testing.T) {
	h := NewMetricsHook(prometheus.NewRegistry())
	before := time.Now()
	h.dialFailed.Store(&dialFailure{at: before, class: "network"})
	if got := h.classify(context.DeadlineExceeded, before.Add(time.Millisecond)); got != "timeout" {
		t.Errorf("a dial failure before the call relabelled its timeout as %q", got)
	}
	if got := h.classify(context.DeadlineExceeded, before.Add(-time.Millisecond)); got != "network" {
		t.Errorf("a dial failure during the call: %q, want network", got)
	}
	if got := h.classify(redis.ErrPoolTimeout, before.Add(-time.Millisecond)); got != "pool" {
		t.Errorf("pool timeout: %q", got)
	}
	h.dialFailed.Store(nil)
	if got := h.classify(context.DeadlineExceeded, before.Add(-time.Millisecond)); got != "timeout" {
		t.Errorf("after a successful dial: %q, want timeout", got)
	}
}
