package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
// zero-hit reads of missing keys and keys another writer left without an
// expiry, on every path a counter takes: one script per pipeline
// (standalone, batched or not), one per counter (PerOpScripts, Cluster),
// and each of them after the script cache was lost (the EVAL fallback).
// Every key in Redis afterwards has an expiry.
func TestEveryKeyHasTTL(t *testing.T) {
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t, 3)
	single, cluster := client(t, srv.Addr), client(t, cl.Addrs()...)
	flushSingle := func() {
		if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
			t.Fatal(err)
		}
	}
	flushCluster := func() {
		for _, s := range cl.Servers {
			if _, err := s.Do("SCRIPT", "FLUSH"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tt := range []struct {
		name  string
		c     goredis.UniversalClient
		store func(t *testing.T) ratelimit.Store
		flush func()
	}{
		{"batch-script", single, func(t *testing.T) ratelimit.Store { return rlredis.New(single, rlredis.Options{}) }, nil},
		{"batch-script/batcher", single, func(t *testing.T) ratelimit.Store { return running(t, single, rlredis.Options{}) }, nil},
		{"batch-script/noscript", single, func(t *testing.T) ratelimit.Store { return rlredis.New(single, rlredis.Options{}) }, flushSingle},
		{"per-op-scripts", single, func(t *testing.T) ratelimit.Store { return rlredis.New(single, rlredis.Options{PerOpScripts: true}) }, nil},
		{"per-op-scripts/noscript", single, func(t *testing.T) ratelimit.Store { return rlredis.New(single, rlredis.Options{PerOpScripts: true}) }, flushSingle},
		{"cluster", cluster, func(t *testing.T) ratelimit.Store { return running(t, cluster, rlredis.Options{}) }, nil},
		{"cluster/noscript", cluster, func(t *testing.T) ratelimit.Store { return rlredis.New(cluster, rlredis.Options{}) }, flushCluster},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := tt.store(t)
			p := "ttl:" + tt.name + ":"
			// A key some other writer left without a TTL gets one too.
			if err := tt.c.Set(ctx, p+"d", "3", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if tt.flush != nil {
				tt.flush()
			}
			ops := []ratelimit.Op{
				{Key: p + "a", Hits: 1, TTL: time.Minute},
				{Key: p + "b", Hits: 0, TTL: time.Minute},
				{Key: p + "c", Hits: 7, TTL: 1500 * time.Millisecond},
				{Key: p + "d", Hits: 1, TTL: time.Minute},
			}
			if err := s.Increment(ctx, ops); err != nil {
				t.Fatal(err)
			}
			if ops[3].Count != 4 {
				t.Errorf("count of the key left without an expiry = %d, want 4", ops[3].Count)
			}
			for _, k := range []string{"a", "b", "c", "d"} {
				ms, err := tt.c.PTTL(ctx, p+k).Result()
				if err != nil {
					t.Fatal(err)
				}
				if ms <= 0 || ms > time.Minute {
					t.Errorf("PTTL %s = %v, want (0, 1m]", k, ms)
				}
			}
			// Many concurrent calls, batched together where the store
			// batches.
			var wg sync.WaitGroup
			for i := range 64 {
				wg.Go(func() {
					ops := []ratelimit.Op{{Key: p + "m" + strconv.Itoa(i%16), Hits: 1, TTL: time.Hour}, {Key: p + "g", Hits: 1, TTL: time.Hour}}
					if err := s.Increment(ctx, ops); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			noExpiry(t, tt.c, p)
		})
	}
}

// noExpiry fails t for every key under prefix that has no expiry, on every
// master when c is a Cluster client.
func noExpiry(t *testing.T, c goredis.UniversalClient, prefix string) {
	t.Helper()
	ctx := context.Background()
	scan := func(ctx context.Context, c goredis.UniversalClient) error {
		n := 0
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			n++
			ms, err := c.PTTL(ctx, iter.Val()).Result()
			if err != nil {
				return err
			}
			if ms < 0 {
				t.Errorf("key %q has no expiry (PTTL %v)", iter.Val(), ms)
			}
		}
		return iter.Err()
	}
	if cc, ok := c.(*goredis.ClusterClient); ok {
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return scan(ctx, m) }); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := scan(ctx, c); err != nil {
		t.Fatal(err)
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

// cmdCounter records the commands of each pipeline the client sends.
type cmdCounter struct {
	mu    sync.Mutex
	sizes []int
	names []string
	// numKeys is each script's number of keys (its third argument).
	numKeys []string
}

func (r *cmdCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (r *cmdCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return next
}
func (r *cmdCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.mu.Lock()
		r.sizes = append(r.sizes, len(cmds))
		for _, c := range cmds {
			r.names = append(r.names, c.Name())
			if a := c.Args(); len(a) > 2 && strings.HasPrefix(c.Name(), "eval") {
				r.numKeys = append(r.numKeys, fmt.Sprint(a[2]))
			}
		}
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (r *cmdCounter) take() ([]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, n := r.sizes, r.names
	r.sizes, r.names, r.numKeys = nil, nil, nil
	return s, n
}

// TestOneScriptPerPipeline: on a standalone Redis the counters of every
// call in a shared pipeline are one EVALSHA, which names the key they all
// share once; after the script cache is lost they are one EVAL more, and
// every counter is counted once.
func TestOneScriptPerPipeline(t *testing.T) {
	srv := redistest.Start(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	rec := &cmdCounter{}
	c.AddHook(rec)
	s := rlredis.New(c, rlredis.Options{})
	calls := func() [][]ratelimit.Op {
		out := make([][]ratelimit.Op, 5)
		for i := range out {
			out[i] = []ratelimit.Op{{Key: "one:u" + strconv.Itoa(i), Hits: 1, TTL: time.Minute}, {Key: "one:g", Hits: 2, TTL: time.Minute}}
		}
		return out
	}
	for _, tt := range []struct {
		name      string
		flush     bool
		wantSizes []int
		wantNames []string
		wantG     uint64
	}{
		{"loaded", false, []int{1}, []string{"evalsha"}, 0},
		{"noscript", true, []int{1, 1}, []string{"evalsha", "eval"}, 10},
		{"reloaded", false, []int{1}, []string{"evalsha"}, 20},
	} {
		if tt.flush {
			if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
				t.Fatal(err)
			}
		}
		if tt.name == "loaded" {
			// Load the script; the first batch below finds it.
			if err := s.Increment(context.Background(), []ratelimit.Op{{Key: "one:warm", Hits: 1, TTL: time.Minute}}); err != nil {
				t.Fatal(err)
			}
			rec.take()
		}
		cs := calls()
		for i, err := range s.ExecBatch(context.Background(), cs) {
			if err != nil {
				t.Fatalf("%s: call %d: %v", tt.name, i, err)
			}
		}
		rec.mu.Lock()
		numKeys := rec.numKeys
		rec.mu.Unlock()
		for _, n := range numKeys {
			if n != "6" { // 5 keys of one call each, and "one:g" once
				t.Errorf("%s: a script of %s keys, want 6", tt.name, n)
			}
		}
		sizes, names := rec.take()
		if !slices.Equal(sizes, tt.wantSizes) || !slices.Equal(names, tt.wantNames) {
			t.Errorf("%s: pipelines %v of %v, want %v of %v", tt.name, sizes, names, tt.wantSizes, tt.wantNames)
		}
		// "one:g" takes 2 hits from each of the 5 calls, in call order.
		for i, ops := range cs {
			if want := tt.wantG + uint64(2*(i+1)); ops[1].Count != want {
				t.Errorf("%s: call %d: shared counter %d, want %d", tt.name, i, ops[1].Count, want)
			}
		}
	}
}

// TestYields: with no yield and with several, concurrent calls through the
// batcher are all answered and every hit is counted once.
func TestYields(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv.Addr)
	for _, yields := range []int{-1, 1, 8} {
		t.Run(strconv.Itoa(yields), func(t *testing.T) {
			s := running(t, c, rlredis.Options{Yields: yields, Workers: 2})
			key := "yields:" + strconv.Itoa(yields)
			var wg sync.WaitGroup
			for range 100 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := s.Increment(ctx, []ratelimit.Op{{Key: key, Hits: 1, TTL: time.Minute}}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if out, err := srv.Do("GET", key); err != nil || out != "100" {
				t.Fatalf("counted %q (%v), want 100", out, err)
			}
		})
	}
}
