package server

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/status"
)

// The resilience tests drive the server with sustained concurrent Checks
// while they break its dependencies, and then judge every single call.
// loadRun is that driver: workers call Check back to back until Stop, and
// each call is recorded with when it started, how long it took and what it
// answered.

// soak stretches the load phases of the resilience tests: `make soak`
// runs them with -soak=10m. Zero (the default, and CI) keeps every phase a
// few seconds long.
var soak = flag.Duration("soak", 0, "length of each sustained-load phase in the resilience tests (0: short CI phases)")

// phase is how long a sustained-load phase lasts: short, or -soak.
func phase(short time.Duration) time.Duration {
	if *soak > short {
		return *soak
	}
	return short
}

// callResult is one Check as the client saw it.
type callResult struct {
	Worker int
	Start  time.Time
	Took   time.Duration
	// HTTP is the status Envoy would send downstream: 200 for an OK
	// CheckResponse, the denied response's status otherwise; 0 when the
	// RPC itself failed.
	HTTP int
	// Code is the gRPC status code of the RPC (0 for success).
	Code int
	Err  error
}

// loadRun runs workers that call Check until Stop.
type loadRun struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []callResult
}

// loadOptions shape a loadRun.
type loadOptions struct {
	// Workers is the number of concurrent callers; default 16.
	Workers int
	// CallTimeout is each call's deadline (Envoy's ext_authz timeout);
	// default 5s, generous so that the server's own bounds are what the
	// test measures.
	CallTimeout time.Duration
	// Pause is slept between a worker's calls; default none.
	Pause time.Duration
}

// startLoad starts the workers; req builds worker w's i-th request.
func startLoad(t *testing.T, client authv3.AuthorizationClient, opts loadOptions, req func(w, i int) *authv3.CheckRequest) *loadRun {
	t.Helper()
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &loadRun{cancel: cancel}
	for w := range opts.Workers {
		l.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				r := req(w, i)
				cctx, ccancel := context.WithTimeout(context.Background(), opts.CallTimeout)
				began := time.Now()
				resp, err := client.Check(cctx, r)
				res := callResult{Worker: w, Start: began, Took: time.Since(began), Err: err}
				ccancel()
				if err != nil {
					res.Code = int(status.Code(err))
				} else {
					res.HTTP = httpStatusOf(resp)
				}
				l.mu.Lock()
				l.results = append(l.results, res)
				l.mu.Unlock()
				if opts.Pause > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(opts.Pause):
					}
				}
			}
		})
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// Stop ends the run, waits for the calls in flight and returns every call
// in start order. It is safe to call more than once.
func (l *loadRun) Stop() []callResult {
	l.cancel()
	l.wg.Wait()
	return l.Results()
}

// Results returns the calls completed so far, in start order.
func (l *loadRun) Results() []callResult {
	l.mu.Lock()
	out := slices.Clone(l.results)
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Count is the number of calls completed so far.
func (l *loadRun) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.results)
}

// httpStatusOf is the downstream status a CheckResponse gives.
func httpStatusOf(resp *authv3.CheckResponse) int {
	if resp.GetStatus().GetCode() == 0 {
		return 200
	}
	if s := int(resp.GetDeniedResponse().GetStatus().GetCode()); s != 0 {
		return s
	}
	return 403 // Envoy's default for a denial without a status
}

// between returns the calls that started in [from, to).
func between(rs []callResult, from, to time.Time) []callResult {
	var out []callResult
	for _, r := range rs {
		if !r.Start.Before(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// loadStats summarises calls for assertions and for RESILIENCE.md.
type loadStats struct {
	N        int
	Outcomes map[string]int // "http 200", "grpc Unavailable", ...
	P50, P99 time.Duration
	Max      time.Duration
}

func summarize(rs []callResult) loadStats {
	s := loadStats{N: len(rs), Outcomes: map[string]int{}}
	took := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		s.Outcomes[outcome(r)]++
		took = append(took, r.Took)
	}
	if len(took) == 0 {
		return s
	}
	slices.Sort(took)
	s.P50 = took[len(took)/2]
	s.P99 = took[(len(took)*99)/100]
	s.Max = took[len(took)-1]
	return s
}

func outcome(r callResult) string {
	if r.Err != nil {
		return "grpc " + status.Code(r.Err).String()
	}
	return fmt.Sprintf("http %d", r.HTTP)
}

// String is one line for logs: n, outcomes, latency.
func (s loadStats) String() string {
	keys := make([]string, 0, len(s.Outcomes))
	for k := range s.Outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, s.Outcomes[k]))
	}
	return fmt.Sprintf("n=%d [%s] p50=%v p99=%v max=%v", s.N, strings.Join(parts, ", "),
		s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.Max.Round(time.Microsecond))
}
