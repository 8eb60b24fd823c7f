package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
)

// The Redis resilience tests run the real service with Redis behind both
// the rate limiter and the session store, drive it with sustained
// concurrent Checks, break Redis (kill, SIGSTOP, DEBUG SLEEP, a cluster
// master killed), heal it, and judge every call by when it started and
// ended relative to the injection.

// Timeouts and cache times of the resilience config; the judging below is
// derived from them.
const (
	redisResLimitTimeout   = 100 * time.Millisecond
	redisResSessionTimeout = 100 * time.Millisecond
	redisResCacheTTL       = time.Second
	redisResStaleFor       = time.Second
	// redisResMargin is what a call may take beyond the longest Redis
	// timeout: scheduling on a loaded 2-core machine under -race. 99% of
	// the calls from the injection on must stay within it, every call
	// within redisResHardMargin (a call waiting on the stalled Redis would
	// take the whole outage, 3s).
	redisResMargin     = 400 * time.Millisecond
	redisResHardMargin = 1500 * time.Millisecond
	// redisResGuard is the uncertainty around a cache boundary: the
	// server's clock reading lags the client's call start.
	redisResGuard = 200 * time.Millisecond
	// redisResRecovery is how soon after Redis is back every Redis-backed
	// decision must be made by Redis again: a second, plus a margin. (After
	// PoolSize failed dials go-redis stops dialling and probes the server
	// once a second, so a restarted Redis is found again within ~1s.)
	redisResRecovery = time.Second + 300*time.Millisecond
	// redisResPrefix puts every key of these tests in one cluster slot
	// (the hash tag), so killing that slot's master takes all of them.
	redisResPrefix = "{rr}:"
)

// redisResClass is one kind of request in the load mix.
type redisResClass int

const (
	redisResStrict  redisResClass = iota // rate limited, failure_mode deny
	redisResLenient                      // rate limited, failure_mode allow
	redisResCached                       // a session verified just before the outage
	redisResStale                        // the same, through the stale_if_error authenticator
	redisResUnseen                       // a session token never seen before (not in Redis)
	redisResAPIKey                       // API key only, no Redis
	redisResClasses
)

func (c redisResClass) String() string {
	return [...]string{"strict (deny)", "lenient (allow)", "cached session", "stale_if_error session", "unseen session", "api key"}[c]
}

// redisResConfig is the service config over the given redis section.
func redisResConfig(t *testing.T, redisSection string) string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for _, d := range []string{"strict", "lenient"} {
		p := filepath.Join(dir, d+".yaml")
		body := "domain: " + d + "\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 1000000000}\n"
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, `"`+p+`"`)
	}
	session := fmt.Sprintf("key_prefix: %q, timeout: %s, cache_ttl: %s, negative_cache_ttl: 50ms",
		redisResPrefix+"s:", redisResSessionTimeout, redisResCacheTTL)
	limited := func(name string) string {
		return `    - name: ` + name + `
      match: {path: {prefix: /` + name + `/}}
      action: authenticate
      authenticators: [keys]
      rate_limits:
        domain: ` + name + `
        descriptors:
          - actions: [{identity: {field: subject, descriptor_key: user}}]
`
	}
	return `server:
  grpc_address: "127.0.0.1:0"
  drain_delay: 10ms
  reload_interval: -1s
admin:
  address: "127.0.0.1:0"
` + redisSection + `authenticators:
  - name: keys
    source: {header: x-api-key}
    api_key: {file: "` + servicetest.KeysFile(t, dir) + `"}
  - name: session
    source: {cookie: sid}
    udb_session: {` + session + `}
  - name: stale_session
    source: {cookie: ssid}
    udb_session: {` + session + `, stale_if_error: ` + redisResStaleFor.String() + `}
policy:
  rules:
` + limited("strict") + limited("lenient") + `    - name: app
      match: {path: {prefix: /app/}}
      action: authenticate
      authenticators: [session]
    - name: stale
      match: {path: {prefix: /stale/}}
      action: authenticate
      authenticators: [stale_session]
    - name: api
      match: {path: {prefix: /api/}}
      action: authenticate
      authenticators: [keys]
rate_limit:
  files: [` + strings.Join(files, ", ") + `]
  backend: redis
  key_prefix: "` + redisResPrefix + `rl:"
  timeout: ` + redisResLimitTimeout.String() + `
  failure_mode: deny
  domains:
    lenient: {failure_mode: allow}
`
}

// redisResSessionKey is where the UDB would write token's session.
func redisResSessionKey(token string) string {
	c := tokens.SessionConfig{KeyPrefix: redisResPrefix + "s:"}
	c.ApplyDefaults()
	return c.SessionKey(token)
}

// redisResRequest builds one request of class c.
func redisResRequest(c redisResClass, session string, w, i int) *authv3.CheckRequest {
	r := extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", RequestID: "rid-res"}
	switch c {
	case redisResStrict:
		r.Path, r.Headers = "/strict/x", [][2]string{{"x-api-key", servicetest.KeyAlice}}
	case redisResLenient:
		r.Path, r.Headers = "/lenient/x", [][2]string{{"x-api-key", servicetest.KeyAlice}}
	case redisResCached:
		r.Path, r.Headers = "/app/x", [][2]string{{"cookie", "sid=" + session}}
	case redisResStale:
		r.Path, r.Headers = "/stale/x", [][2]string{{"cookie", "ssid=" + session}}
	case redisResUnseen:
		r.Path, r.Headers = "/app/x", [][2]string{{"cookie", fmt.Sprintf("sid=redisResUnseen_%d_%d_%d", time.Now().UnixNano(), w, i)}}
	case redisResAPIKey:
		r.Path, r.Headers = "/api/x", [][2]string{{"x-api-key", servicetest.KeyAdmin}}
	}
	return extauthz.BuildCheckRequest(r)
}

// redisResFault is one way of breaking Redis: inject breaks it and returns
// when it is broken; heal repairs it and returns when Redis answers again
// (the time the recovery clock starts).
type redisResFault struct {
	inject func(t *testing.T)
	heal   func(t *testing.T) time.Time
	// lostData: the healed Redis starts empty (a restart without
	// persistence, or a promoted replica that had not synced), so the run
	// writes the sessions again, as the UDB would, before the recovery
	// clock starts.
	lostData bool
}

// redisResTimeline is what happened when.
type redisResTimeline struct {
	cachedFrom, cachedTo time.Time // the explicit lookup of the cached session
	inject, heal         time.Time
}

// redisResGoroutines samples runtime.NumGoroutine.
type redisResGoroutines struct {
	mu      sync.Mutex
	samples []redisResSample
	stop    chan struct{}
	done    chan struct{}
}

type redisResSample struct {
	at time.Time
	n  int
}

func redisResSampleGoroutines() *redisResGoroutines {
	g := &redisResGoroutines{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-g.stop:
				return
			case now := <-tick.C:
				g.mu.Lock()
				g.samples = append(g.samples, redisResSample{now, runtime.NumGoroutine()})
				g.mu.Unlock()
			}
		}
	}()
	return g
}

func (g *redisResGoroutines) Stop() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

// max is the largest sample in [from, to).
func (g *redisResGoroutines) max(from, to time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := 0
	for _, s := range g.samples {
		if !s.at.Before(from) && s.at.Before(to) && s.n > m {
			m = s.n
		}
	}
	return m
}

// redisResRun drives the service through healthy → fault → healed and
// judges every call. It returns the measurements for the results file.
func redisResRun(t *testing.T, h *harness, seed func(key string, fields ...string), fault redisResFault) {
	t.Helper()
	// Two sessions: k0 is used before the outage, k1 is verified once just
	// before it, so its cache time is known to the millisecond.
	k0, k1 := "redisResSessionZero0000", "redisResSessionOne00000"
	seed(redisResSessionKey(k0), "uid", "u-zero")
	seed(redisResSessionKey(k1), "uid", "u-one")

	var useK1 atomic.Bool
	load := startLoad(t, h.client, loadOptions{Workers: 12}, func(w, i int) *authv3.CheckRequest {
		c := redisResClass((w + i) % int(redisResClasses))
		session := k0
		if useK1.Load() {
			session = k1
		}
		return redisResRequest(c, session, w, i)
	})
	gor := redisResSampleGoroutines()
	defer gor.Stop()

	start := time.Now()
	time.Sleep(phase(time.Second)) // healthy
	var tl redisResTimeline
	tl.cachedFrom = time.Now()
	for _, c := range []redisResClass{redisResCached, redisResStale} {
		if got := redisResCall(t, h, redisResRequest(c, k1, 0, 0)); got != 200 {
			t.Fatalf("%v before the outage: %d", c, got)
		}
	}
	tl.cachedTo = time.Now()
	useK1.Store(true)
	// Calls built with k0 start before the injection (but for a worker
	// descheduled this long between building a request and sending it).
	time.Sleep(100 * time.Millisecond)

	fault.inject(t)
	tl.inject = time.Now()
	time.Sleep(phase(3 * time.Second)) // hold the outage
	tl.heal = fault.heal(t)
	if fault.lostData {
		seed(redisResSessionKey(k0), "uid", "u-zero")
		seed(redisResSessionKey(k1), "uid", "u-one")
		tl.heal = time.Now()
	}
	time.Sleep(phase(2 * time.Second)) // recovery
	results := load.Stop()
	end := time.Now()
	gor.Stop()

	redisResJudge(t, results, tl)

	// Goroutines: bounded during the outage (not growing with the calls
	// made), back near the baseline afterwards.
	base := gor.max(start.Add(300*time.Millisecond), tl.cachedFrom)
	during := gor.max(tl.inject, tl.heal)
	after := gor.max(end.Add(-500*time.Millisecond), end)
	calls := len(between(results, tl.inject, tl.heal))
	t.Logf("goroutines: healthy max %d, outage max %d (%d calls in the outage), last 500ms max %d", base, during, calls, after)
	if during > base+150 {
		t.Errorf("goroutines grew from %d to %d during the outage", base, during)
	}
	if after > base+30 {
		t.Errorf("goroutines at the end %d, healthy %d: not back to the baseline", after, base)
	}

	// The metrics count the failures, and the deny domain's failures match
	// the 503s the strict class got one for one.
	fams := servicetest.Scrape(t, h.admin)
	strict503 := 0
	for _, r := range redisResClassify(results) {
		if r.Class == redisResStrict && r.HTTP == 503 {
			strict503++
		}
	}
	closed, _ := servicetest.Value(fams, "ext_authz_ratelimit_checks_total", map[string]string{"domain": "strict", "code": "failed_closed"})
	open, _ := servicetest.Value(fams, "ext_authz_ratelimit_checks_total", map[string]string{"domain": "lenient", "code": "failed_open"})
	sessErr, _ := servicetest.Value(fams, "ext_authz_session_lookups_total", map[string]string{"result": "error"})
	stale, _ := servicetest.Value(fams, "ext_authz_session_lookups_total", map[string]string{"result": "stale"})
	redisErr, _ := servicetest.Value(fams, "ext_authz_redis_errors_total", nil)
	t.Logf("metrics: ratelimit failed_closed(strict)=%v failed_open(lenient)=%v session error=%v stale=%v redis errors=%v", closed, open, sessErr, stale, redisErr)
	if int(closed) != strict503 {
		t.Errorf("failed_closed{domain=strict} = %v, strict calls answered 503 = %d", closed, strict503)
	}
	for name, v := range map[string]float64{"failed_open": open, "session error": sessErr, "session stale": stale, "redis errors": redisErr} {
		if v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
}

// redisResCallResult is a call with its request class.
type redisResCallResult struct {
	callResult
	Class redisResClass
}

// redisResClassify recovers each call's class: worker w's i-th call is of
// class (w+i) % classes, and a worker's calls are sequential, so i is the
// call's rank by start time among its worker's calls.
func redisResClassify(rs []callResult) []redisResCallResult {
	next := map[int]int{}
	out := make([]redisResCallResult, len(rs))
	for j, r := range rs { // rs is in start order
		i := next[r.Worker]
		next[r.Worker] = i + 1
		out[j] = redisResCallResult{r, redisResClass((r.Worker + i) % int(redisResClasses))}
	}
	return out
}

// redisResCall makes one Check and returns its HTTP status.
func redisResCall(t *testing.T, h *harness, req *authv3.CheckRequest) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return httpStatusOf(resp)
}

// redisResInjectLag is how long after inject returns a call may still be
// served by the healthy Redis (DEBUG SLEEP is sent from a goroutine).
const redisResInjectLag = 20 * time.Millisecond

// redisResHealLag is how long before the heal is noticed Redis may already
// answer (a promoted replica is found by polling).
const redisResHealLag = 50 * time.Millisecond

// redisResHealthy is a class's outcome while Redis answers.
func redisResHealthy(c redisResClass) int {
	if c == redisResUnseen {
		return 401 // Redis says there is no such session
	}
	return 200
}

// redisResDuringOutage is a class's outcome for a call starting at s while
// Redis fails, or 0 when s is too close to a cache boundary to tell.
func redisResDuringOutage(c redisResClass, s time.Time, tl redisResTimeline) int {
	window := func(d time.Duration) int {
		switch {
		case s.Before(tl.cachedFrom.Add(d - redisResGuard)):
			return 200
		case !s.Before(tl.cachedTo.Add(d + redisResGuard)):
			return 503
		}
		return 0
	}
	switch c {
	case redisResStrict, redisResUnseen:
		return 503 // deny domain; a session Redis cannot look up: fail closed
	case redisResCached:
		return window(redisResCacheTTL)
	case redisResStale:
		return window(redisResCacheTTL + redisResStaleFor)
	}
	return 200 // the allow domain, and API keys that need no Redis
}

// redisResJudge checks every call against the timeline and logs per-class
// numbers.
func redisResJudge(t *testing.T, results []callResult, tl redisResTimeline) {
	t.Helper()
	bound := max(redisResLimitTimeout, redisResSessionTimeout) + redisResMargin
	calls := redisResClassify(results)
	type key = redisResKey
	byPhase := map[key][]callResult{}
	wrong := 0
	var firstOK, lastFail time.Duration = -1, -1
	var slow, judged int
	timeouts := map[string]int{}
	for _, r := range calls {
		end := r.Start.Add(r.Took)
		healthy := redisResHealthy(r.Class)
		var phase string
		var want []int
		switch {
		case end.Before(tl.inject):
			phase, want = "healthy", []int{healthy}
		case !r.Start.Before(tl.inject.Add(redisResInjectLag)) && end.Before(tl.heal.Add(-redisResHealLag)):
			phase = "outage"
			if w := redisResDuringOutage(r.Class, r.Start, tl); w != 0 {
				want = []int{w}
			} else {
				want = []int{200, 503}
			}
		case !r.Start.Before(tl.heal.Add(redisResRecovery)):
			phase, want = "recovered", []int{healthy}
		default:
			phase = "transition"
			want = []int{healthy, 503}
			if r.Class == redisResLenient || r.Class == redisResAPIKey {
				want = []int{200}
			}
		}
		byPhase[key{r.Class, phase}] = append(byPhase[key{r.Class, phase}], r.callResult)
		// With Redis healthy, a call starved of CPU for longer than its
		// Redis timeout gets the configured failure answer; that is the
		// timeout working, counted and bounded below, not an outage.
		if (phase == "healthy" || phase == "recovered") && r.Err == nil && r.HTTP == 503 &&
			r.Took >= redisResLimitTimeout && r.Class != redisResLenient && r.Class != redisResAPIKey {
			timeouts[phase]++
			continue
		}
		if r.Err != nil || !slices.Contains(want, r.HTTP) {
			if wrong++; wrong <= 10 {
				t.Errorf("%s call (%s) started %v after the injection, took %v: %s, want %v",
					r.Class, phase, r.Start.Sub(tl.inject).Round(time.Millisecond), r.Took.Round(time.Millisecond), outcome(r.callResult), want)
			}
		}
		if !r.Start.Before(tl.inject) {
			judged++
			if r.Took > bound {
				slow++
			}
		}
		if !r.Start.Before(tl.inject) && r.Took > bound+redisResHardMargin-redisResMargin {
			if wrong++; wrong <= 10 {
				t.Errorf("%s call started %v after the injection took %v, bound %v", r.Class, r.Start.Sub(tl.inject).Round(time.Millisecond), r.Took.Round(time.Millisecond), bound)
			}
		}
		// Recovery: the first Redis-backed decision after the heal, and
		// the last Redis failure.
		if r.Class == redisResStrict || r.Class == redisResUnseen {
			if r.HTTP == healthy && !end.Before(tl.heal) && (firstOK < 0 || end.Sub(tl.heal) < firstOK) {
				firstOK = end.Sub(tl.heal)
			}
			if r.HTTP == 503 && !r.Start.Before(tl.inject) && r.Start.Sub(tl.heal) > lastFail {
				lastFail = r.Start.Sub(tl.heal)
			}
		}
	}
	if wrong > 10 {
		t.Errorf("... %d wrong calls in all", wrong)
	}
	t.Logf("from the injection on: %d of %d calls took longer than %v; healthy-Redis timeouts (503 after >= the timeout): %v", slow, judged, bound, timeouts)
	// The shares are loose because the machine is: under -race beside
	// other test runs, CPU starvation alone stretches calls past the bound
	// (seen: 37 of 974 in one run, with Redis-free calls slow too). The
	// hard bound above is what catches a call waiting on Redis.
	if slow*20 > judged {
		t.Errorf("%d of %d calls took longer than %v: more than 5%%", slow, judged, bound)
	}
	for phase, n := range timeouts {
		if all := redisResCount(byPhase, phase); n*10 > all {
			t.Errorf("%s: %d of %d calls timed out with Redis healthy: more than 10%%", phase, n, all)
		}
	}
	for _, phase := range []string{"healthy", "outage", "transition", "recovered"} {
		for c := range redisResClasses {
			if rs := byPhase[key{c, phase}]; len(rs) > 0 {
				t.Logf("%-10s %-22s %v", phase, c, summarize(rs))
			}
		}
	}
	t.Logf("outage %v; first Redis-backed decision %v after the heal; last Redis failure started %v after it",
		tl.heal.Sub(tl.inject).Round(time.Millisecond), firstOK.Round(time.Millisecond), lastFail.Round(time.Millisecond))
	if firstOK < 0 || firstOK > redisResRecovery {
		t.Errorf("first Redis-backed decision %v after the heal, want within %v", firstOK, redisResRecovery)
	}
	for c := range redisResClasses {
		if len(byPhase[key{c, "outage"}]) == 0 || len(byPhase[key{c, "recovered"}]) == 0 {
			t.Errorf("%s: no calls judged in the outage or after recovery", c)
		}
	}
}

// redisResCount is the number of calls judged in phase.
func redisResCount(byPhase map[redisResKey][]callResult, phase string) int {
	n := 0
	for k, rs := range byPhase {
		if k.phase == phase {
			n += len(rs)
		}
	}
	return n
}

// redisResKey groups calls by class and phase.
type redisResKey struct {
	c     redisResClass
	phase string
}

// TestRedisResStandalone: one standalone Redis, killed, stalled (SIGSTOP)
// and busy (DEBUG SLEEP) under load.
func TestRedisResStandalone(t *testing.T) {
	for _, f := range []struct {
		name string
		make func(srv *redistest.Server) redisResFault
	}{
		{"killed", func(srv *redistest.Server) redisResFault {
			return redisResFault{
				inject:   func(*testing.T) { srv.Stop() },
				heal:     func(*testing.T) time.Time { srv.Restart(); return time.Now() },
				lostData: true,
			}
		}},
		{"sigstop", func(srv *redistest.Server) redisResFault {
			return redisResFault{
				inject: func(*testing.T) { srv.Pause() },
				heal:   func(*testing.T) time.Time { srv.Resume(); return time.Now() },
			}
		}},
		{"debug-sleep", func(srv *redistest.Server) redisResFault {
			done := make(chan time.Time, 1)
			return redisResFault{
				inject: func(t *testing.T) {
					secs := strconv.FormatFloat(phase(3*time.Second).Seconds(), 'f', 3, 64)
					go func() {
						// Do answers when the sleep ends, or gives up after
						// 5s (a -soak sleep): then PING until it answers.
						_, err := srv.Do("DEBUG", "SLEEP", secs)
						for err != nil {
							_, err = srv.Do("PING")
						}
						done <- time.Now()
					}()
					time.Sleep(redisResInjectLag / 2)
				},
				heal: func(t *testing.T) time.Time {
					select {
					case at := <-done:
						return at
					case <-time.After(phase(3*time.Second) + 10*time.Second):
						t.Fatal("DEBUG SLEEP did not end")
					}
					return time.Time{}
				},
			}
		}},
	} {
		t.Run(f.name, func(t *testing.T) {
			srv := redistest.Start(t, "--enable-debug-command", "yes")
			h := start(t, redisResConfig(t, "redis:\n  addrs: [\""+srv.Addr+"\"]\n"))
			seed := func(key string, fields ...string) {
				if _, err := srv.Do(append([]string{"HSET", key}, fields...)...); err != nil {
					t.Fatal(err)
				}
			}
			redisResRun(t, h, seed, f.make(srv))
		})
	}
}

// TestRedisResClusterFailover: a Redis Cluster of 3 masters with a replica
// each; the master that owns every key of the test (one hash slot) is
// killed under load and its replica takes over.
func TestRedisResClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster with replicas and a failover take ~15s")
	}
	c := redistest.StartClusterReplicas(t, 3, 1, time.Second)
	h := start(t, redisResConfig(t, "redis:\n  mode: cluster\n  addrs: [\""+strings.Join(c.Addrs(), `", "`)+"\"]\n"))
	seed := func(key string, fields ...string) {
		owner := c.Owner(t, key)
		if _, err := owner.Do(append([]string{"HSET", key}, fields...)...); err != nil {
			t.Fatal(err)
		}
		// The session is on the replica before the master dies.
		if n, err := owner.Do("WAIT", "1", "2000"); err != nil || n != "1" {
			t.Fatalf("WAIT 1 = %q, %v", n, err)
		}
	}
	var (
		promoted = make(chan time.Time, 1)
		failed   = make(chan error, 1)
		victim   *redistest.Server
	)
	redisResRun(t, h, seed, redisResFault{
		inject: func(t *testing.T) {
			victim = c.Owner(t, redisResPrefix)
			nodes, err := victim.Nodes()
			if err != nil {
				t.Fatal(err)
			}
			var id string
			for _, n := range nodes {
				if n.Addr == victim.Addr {
					id = n.ID
				}
			}
			victim.Stop()
			go func() {
				_, at, err := c.WaitFailover(id, victim, 20*time.Second)
				if err != nil {
					failed <- err
					return
				}
				promoted <- at
			}()
		},
		heal: func(t *testing.T) time.Time {
			select {
			case at := <-promoted:
				return at
			case err := <-failed:
				t.Fatal(err)
			}
			return time.Time{}
		},
	})
}
