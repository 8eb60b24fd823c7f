package redis_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

func client(t testing.TB, addrs ...string) goredis.UniversalClient {
	t.Helper()
	var c goredis.UniversalClient
	if len(addrs) > 1 {
		c = goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, MaxRetries: -1, ContextTimeoutEnabled: true})
	} else {
		c = goredis.NewClient(&goredis.Options{Addr: addrs[0], MaxRetries: -1, ContextTimeoutEnabled: true})
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// running returns a store whose batcher runs until the test ends.
func running(t testing.TB, c goredis.UniversalClient, opts rlredis.Options) *rlredis.Store {
	s := rlredis.New(c, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func TestContractStandalone(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.Addr)
	for _, mode := range []struct {
		name string
		new  ratelimittest.NewStore
	}{
		{"batching", func(t *testing.T) ratelimit.Store { return running(t, c, rlredis.Options{}) }},
		{"no-batcher", func(t *testing.T) ratelimit.Store { return rlredis.New(c, rlredis.Options{}) }},
	} {
		t.Run(mode.name+"/store", func(t *testing.T) { ratelimittest.RunStoreContract(t, mode.new) })
		t.Run(mode.name+"/limiter", func(t *testing.T) { ratelimittest.RunLimiterContract(t, mode.new) })
	}
}

func TestContractCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := client(t, cl.Addrs()...)
	newStore := func(t *testing.T) ratelimit.Store { return running(t, c, rlredis.Options{}) }
	t.Run("store", func(t *testing.T) { ratelimittest.RunStoreContract(t, newStore) })
	t.Run("limiter", func(t *testing.T) { ratelimittest.RunLimiterContract(t, newStore) })

	// The keys of one check spread over the masters: the pipeline really
	// crossed nodes.
	s := newStore(t)
	ops := make([]ratelimit.Op, 30)
	for i := range ops {
		ops[i] = ratelimit.Op{Key: "spread:" + strconv.Itoa(i), Hits: 1, TTL: time.Minute}
	}
	if err := s.Increment(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for _, srv := range cl.Servers {
		n, err := srv.Do("DBSIZE")
		if err != nil || n == "0" {
			t.Errorf("master %s holds %q keys (%v): keys did not spread", srv.Addr, n, err)
		}
	}
}

// TestEveryKeyHasTTL: increment and expiry are set together, including for
// zero-hit reads of missing keys.
func TestEveryKeyHasTTL(t *testing.T) {
	srv := redistest.Start(t)
	s := rlredis.New(client(t, srv.Addr), rlredis.Options{})
	ops := []ratelimit.Op{
		{Key: "ttl:a", Hits: 1, TTL: time.Minute},
		{Key: "ttl:b", Hits: 0, TTL: time.Minute},
		{Key: "ttl:c", Hits: 7, TTL: 1500 * time.Millisecond},
	}
	if err := s.Increment(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	// A key some other writer left without a TTL gets one too.
	if _, err := srv.Do("SET", "ttl:d", "3"); err != nil {
		t.Fatal(err)
	}
	if err := s.Increment(context.Background(), []ratelimit.Op{{Key: "ttl:d", Hits: 1, TTL: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ttl:a", "ttl:b", "ttl:c", "ttl:d"} {
		out, err := srv.Do("PTTL", k)
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := strconv.Atoi(out)
		if ms <= 0 || ms > 60000 {
			t.Errorf("PTTL %s = %s, want (0, 60000]", k, out)
		}
	}
}

// TestExactAcrossInstances: two limiters, each with its own client and
// batcher, share one Redis; 2×128 concurrent callers; for every algorithm,
// with one limit and with two windows on a descriptor, exactly N allowed.
func TestExactAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	exactAcross(t, []string{srv.Addr})
}

func TestExactAcrossInstancesCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	exactAcross(t, cl.Addrs())
}

func exactAcross(t *testing.T, addrs []string) {
	rules := ratelimittest.Rules(t)
	hour := &ratelimit.Limit{Policy: "hour", Requests: 100, Unit: ratelimit.Hour}
	day := &ratelimit.Limit{Policy: "day", Requests: 150, Unit: ratelimit.Day}
	tightDay := &ratelimit.Limit{Policy: "tight-day", Requests: 70, Unit: ratelimit.Day}
	for _, alg := range ratelimittest.Algorithms {
		for _, tt := range []struct {
			name   string
			limits []*ratelimit.Limit // nil: the file's "exact" limit, 20/minute
			want   int64
		}{
			{"file-limit", nil, 20},
			{"two-windows", []*ratelimit.Limit{hour, day}, 100},
			{"two-windows-day-tighter", []*ratelimit.Limit{hour, tightDay}, 70},
		} {
			t.Run(alg.String()+"/"+tt.name, func(t *testing.T) {
				// Two limiters, each with its own client and batcher (two
				// gateway replicas), share the store; the limiters' clocks
				// are fixed so no fixed window ends during the test, and
				// the smooth algorithms' periods are long enough that the
				// server's clock refills nothing meanwhile.
				clk := ratelimittest.NewClock(time.Unix(1_700_000_010, 0))
				prefix := ratelimittest.Key(t, "x") + ":"
				var limiters []*ratelimit.Limiter
				for range 2 {
					s := running(t, client(t, addrs...), rlredis.Options{})
					limiters = append(limiters, ratelimit.New(s, rules, ratelimit.Options{
						Timeout: 5 * time.Second, Now: clk.Now, KeyPrefix: prefix, Algorithm: alg,
					}))
				}
				const callers, each = 128, 3
				var allowed, denied atomic.Int64
				var wg sync.WaitGroup
				for i := range 2 * callers {
					l := limiters[i%2]
					wg.Go(func() {
						for j := range each {
							shared := ratelimit.Descriptor{Entries: []ratelimit.Entry{{Key: "exact", Value: "shared"}}, Hits: 1, Limits: tt.limits}
							other := ratelimit.Descriptor{Entries: []ratelimit.Entry{{Key: "user", Value: "u" + strconv.Itoa(i*each+j)}}, Hits: 1} // another key, likely on another node
							res, err := l.Check(context.Background(), ratelimit.Request{Domain: "contract", Descriptors: []ratelimit.Descriptor{shared, other}})
							switch {
							case err != nil:
								t.Error(err)
							case res.Code == ratelimit.OK:
								allowed.Add(1)
							case res.Code == ratelimit.OverLimit:
								denied.Add(1)
							}
						}
					})
				}
				wg.Wait()
				total := int64(2 * callers * each)
				if allowed.Load() != tt.want || denied.Load() != total-tt.want {
					t.Fatalf("allowed %d, denied %d; want exactly %d and %d", allowed.Load(), denied.Load(), tt.want, total-tt.want)
				}
			})
		}
	}
}

// TestFailureModes stops Redis mid-test: fail-closed answers 503 (or 429),
// fail-open allows, both within the timeout; when Redis is back (with an
// empty script cache) checks count again.
func TestFailureModes(t *testing.T) {
	srv := redistest.Start(t)
	// "open" and "dense" are defined (without descriptors), so the limit
	// overrides below apply there.
	rules, err := envoyconfig.Parse([]envoyconfig.File{
		{Name: "contract.yaml", Content: []byte(ratelimittest.Limits)},
		{Name: "open.yaml", Content: []byte("domain: open\ndescriptors: []\n")},
		{Name: "dense.yaml", Content: []byte("domain: dense\ndescriptors: []\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	s := running(t, c, rlredis.Options{})
	l := ratelimit.New(s, rules, ratelimit.Options{
		Timeout:        50 * time.Millisecond,
		LocalCacheSize: -1,
		Failure:        ratelimit.FailurePolicy{Mode: ratelimit.FailClosed, DenyStatus: 503},
		Domains: map[string]ratelimit.FailurePolicy{
			"open":  {Mode: ratelimit.FailOpen},
			"dense": {Mode: ratelimit.FailClosed, DenyStatus: 429},
		},
	})
	req := func(domain string) ratelimit.Request {
		return ratelimit.Request{Domain: domain, Descriptors: []ratelimit.Descriptor{{Entries: []ratelimit.Entry{{Key: "user", Value: "u"}}, Hits: 1}}}
	}
	// "open" and "dense" have no limits of their own; give them one.
	over := &ratelimit.Limit{Policy: "o", Requests: 100, Unit: ratelimit.Minute}
	reqO := func(domain string) ratelimit.Request {
		r := req(domain)
		r.Descriptors[0].Override = over
		return r
	}
	// Before the stop Redis answers (allow for a slow first connection
	// under -race on a loaded machine: the timeout is 50ms).
	waitChecks(t, l, req("contract"))

	srv.Stop()
	for _, tt := range []struct {
		give     ratelimit.Request
		wantCode ratelimit.Code
		wantOpen bool
	}{
		{req("contract"), ratelimit.Unavailable, false},
		{reqO("dense"), ratelimit.OverLimit, false},
		{reqO("open"), ratelimit.OK, true},
	} {
		start := time.Now()
		res, err := l.Check(context.Background(), tt.give)
		took := time.Since(start)
		if !errors.Is(err, ratelimit.ErrStore) {
			t.Errorf("%s: err = %v, want ErrStore", tt.give.Domain, err)
		}
		if res.Code != tt.wantCode || res.FailedOpen != tt.wantOpen || !res.Failed {
			t.Errorf("%s: %+v, want code %v failedOpen %v", tt.give.Domain, res, tt.wantCode, tt.wantOpen)
		}
		if took > time.Second {
			t.Errorf("%s: took %v with Redis down (timeout 50ms)", tt.give.Domain, took)
		}
	}

	srv.Restart()
	// Redis restarted empty and without the script: checks count again.
	// (A try that timed out may still have counted, so Remaining is 4 or
	// a little less.)
	if res := waitChecks(t, l, req("contract")); res.Code != ratelimit.OK || res.Statuses[0].Limit == nil || res.Statuses[0].Remaining < 2 {
		t.Fatalf("after restart: %+v", res)
	}
	if n, err := srv.Do("DBSIZE"); err != nil || n == "0" {
		t.Fatalf("after restart nothing was counted in Redis: %q %v", n, err)
	}
}

// waitChecks retries until a check succeeds (5s at most) and returns it.
func waitChecks(t *testing.T, l *ratelimit.Limiter, r ratelimit.Request) ratelimit.Result {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := l.Check(context.Background(), r)
		if err == nil {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful check within 5s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStalledRedisTimesOut: a paused Redis (connections open, no answers)
// costs a check its timeout, not more.
func TestStalledRedisTimesOut(t *testing.T) {
	srv := redistest.Start(t)
	s := running(t, client(t, srv.Addr), rlredis.Options{})
	l := ratelimit.New(s, ratelimittest.Rules(t), ratelimit.Options{Timeout: 40 * time.Millisecond})
	req := ratelimit.Request{Domain: "contract", Descriptors: []ratelimit.Descriptor{{Entries: []ratelimit.Entry{{Key: "user", Value: "p"}}, Hits: 1}}}
	if _, err := l.Check(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	for i := range 5 {
		start := time.Now()
		res, err := l.Check(context.Background(), req)
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("check %d took %v against a stalled Redis", i, took)
		}
		if err == nil || res.Code != ratelimit.Unavailable {
			t.Errorf("check %d: %+v %v, want unavailable", i, res, err)
		}
	}
	srv.Resume()
}

// TestBatcherStopFallsBack: calls made while or after the batcher stops
// are still answered (each with its own pipeline), so a drain that stops
// background work first does not fail in-flight checks.
func TestBatcherStopFallsBack(t *testing.T) {
	srv := redistest.Start(t)
	s := rlredis.New(client(t, srv.Addr), rlredis.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 50 {
		wg.Go(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			if err := s.Increment(cctx, []ratelimit.Op{{Key: "stop:" + strconv.Itoa(i%5), Hits: 1, TTL: time.Minute}}); err != nil {
				t.Error(err)
				return
			}
			ok.Add(1)
		})
		if i == 25 {
			cancel()
		}
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ok.Load() != 50 {
		t.Fatalf("%d of 50 calls succeeded", ok.Load())
	}
	var total int
	for i := range 5 {
		out, _ := srv.Do("GET", "stop:"+strconv.Itoa(i))
		n, _ := strconv.Atoi(out)
		total += n
	}
	if total != 50 {
		t.Fatalf("counted %d hits, want 50", total)
	}
}

// TestOneRoundTripPerCheck: two descriptors with two windows each, under
// every algorithm, are one pipeline once the server has the scripts.
func TestOneRoundTripPerCheck(t *testing.T) {
	srv := redistest.Start(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	s := rlredis.New(c, rlredis.Options{})
	rt := &roundTrips{}
	c.AddHook(rt)
	perSecond := &ratelimit.Limit{Requests: 10, Unit: ratelimit.Second}
	perDay := &ratelimit.Limit{Requests: 10000, Unit: ratelimit.Day}
	for _, alg := range ratelimittest.Algorithms {
		l := ratelimit.New(s, nil, ratelimit.Options{Algorithm: alg, Timeout: 5 * time.Second})
		req := ratelimit.Request{Domain: "d", Descriptors: []ratelimit.Descriptor{
			{Entries: []ratelimit.Entry{{Key: "user", Value: "a"}}, Hits: 1, Limits: []*ratelimit.Limit{perSecond, perDay}},
			{Entries: []ratelimit.Entry{{Key: "route", Value: "b"}}, Hits: 1, Limits: []*ratelimit.Limit{perSecond, perDay}},
		}}
		if _, err := l.Check(context.Background(), req); err != nil { // loads the script (NOSCRIPT, then EVAL)
			t.Fatal(err)
		}
		rt.n.Store(0)
		res, err := l.Check(context.Background(), req)
		if err != nil || res.Code != ratelimit.OK || len(res.Statuses[1].Windows) != 2 {
			t.Fatalf("%v: %+v %v", alg, res, err)
		}
		if n := rt.n.Load(); n != 1 {
			t.Errorf("%v: %d round trips for 2 descriptors × 2 windows, want 1", alg, n)
		}
	}
}

// TestDecisionKeysHaveTTL: every key a decision writes expires: a fixed
// window after its period, a sliding window after two, a GCRA key when
// its bucket is full again.
func TestDecisionKeysHaveTTL(t *testing.T) {
	srv := redistest.Start(t)
	s := rlredis.New(client(t, srv.Addr), rlredis.Options{})
	for _, tt := range []struct {
		alg    ratelimit.Algorithm
		maxTTL int
	}{{ratelimit.FixedWindow, 60000}, {ratelimit.SlidingWindow, 120000}, {ratelimit.GCRA, 12001}} {
		key := string(ratelimit.AppendWindowKey(nil, "ttl:", "d", []ratelimit.Entry{{Key: "k", Value: "v"}}, nil, tt.alg, ratelimit.Minute, 0))
		ops := []ratelimit.Op{{Algorithm: tt.alg, Hits: 1, Windows: []ratelimit.Window{{Key: key, Limit: 10, Period: time.Minute}}}}
		for range 2 {
			if err := s.Increment(context.Background(), ops); err != nil || ops[0].Denied {
				t.Fatalf("%v: %+v %v", tt.alg, ops[0], err)
			}
		}
		out, err := srv.Do("PTTL", key)
		if err != nil {
			t.Fatal(err)
		}
		// GCRA: 2 hits of 6s each owe 12s.
		ms, _ := strconv.Atoi(out)
		if ms <= 0 || ms > tt.maxTTL {
			t.Errorf("%v: PTTL %s, want (0, %d]", tt.alg, out, tt.maxTTL)
		}
	}
}
