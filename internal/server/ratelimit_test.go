package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// limitsFile writes an envoyproxy/ratelimit file and returns its path.
func limitsFile(t *testing.T, perUser int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "limits.yaml")
	body := `domain: e2e
descriptors:
  - key: user
    rate_limit: {name: per-user, unit: hour, requests_per_unit: ` + strconv.Itoa(perUser) + `}
  - key: remote_address
    rate_limit: {unit: hour, requests_per_unit: 2}
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const limitedRules = `    - name: public
      match: {path: {prefix: /public/}}
      action: allow
      rate_limits:
        domain: e2e
        descriptors:
          - actions: [{remote_address: {}}]
    - name: limited
      match: {path: {prefix: /limited/}}
      action: authenticate
      authenticators: [keys]
      rate_limits:
        domain: e2e
        descriptors:
          - actions: [{identity: {field: subject, descriptor_key: user}}]
`

// rateLimitSection uses a generous timeout: these tests prove decisions,
// not latency, and run under -race on a loaded 2-core machine (the
// latency bound is TestStalledRedisTimesOut in ratelimit/redis).
func rateLimitSection(files, backend, extra string) string {
	return "rate_limit:\n  files: [\"" + files + "\"]\n  backend: " + backend + "\n  timeout: 2s\n" + extra
}

func checkRequest(path, key string) *authv3.CheckRequest {
	return extauthz.BuildCheckRequest(extauthz.HTTPRequest{
		Method: "GET", Host: "shop.example.com", Path: path, Headers: [][2]string{{"x-api-key", key}}, RequestID: "rid-rl",
	})
}

// TestRateLimitEndToEnd: the real service with the memory backend. Per-user
// limits in Check answer 429 with headers in the denied response; the
// ShouldRateLimit API is served on the same port from the same counters.
func TestRateLimitEndToEnd(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, servicetest.BaseConfig(keys, limitedRules)+rateLimitSection(limitsFile(t, 3), "memory", "  response_headers: {on_allow: true}\n"))

	for i := range 3 {
		resp := h.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice})
		if resp.GetStatus().GetCode() != 0 {
			t.Fatalf("request %d denied: %v", i+1, resp)
		}
		found := false
		for _, hv := range resp.GetOkResponse().GetResponseHeadersToAdd() {
			if hv.GetHeader().GetKey() == "ratelimit-policy" && hv.GetHeader().GetValue() == `"per-user";q=3;w=3600` {
				found = true
			}
		}
		if !found {
			t.Errorf("request %d: no RateLimit-Policy on the allowed response: %v", i+1, resp.GetOkResponse().GetResponseHeadersToAdd())
		}
	}
	resp := h.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice})
	if codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted || resp.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_TooManyRequests {
		t.Fatalf("4th request: %v", resp)
	}
	for _, name := range []string{"retry-after", "ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} {
		if len(deniedHeader(resp, name)) != 1 {
			t.Errorf("429 lacks %s: %v", name, resp.GetDeniedResponse().GetHeaders())
		}
	}
	// Another user is not affected.
	if resp := h.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAdmin}); resp.GetStatus().GetCode() != 0 {
		t.Fatalf("other user denied: %v", resp)
	}
	// Anonymous per-address limit on an allow rule.
	for i := range 3 {
		resp := h.check(t, "GET", "shop.example.com", "/public/x")
		limited := codes.Code(resp.GetStatus().GetCode()) == codes.ResourceExhausted
		if limited != (i == 2) {
			t.Fatalf("public request %d: %v", i+1, resp.GetStatus())
		}
	}

	// ShouldRateLimit on the same port, same counters.
	rls := rlsv3.NewRateLimitServiceClient(h.conn)
	out, err := rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "e2e", Descriptors: []*pb_struct.RateLimitDescriptor{
		{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || out.GetStatuses()[0].GetCurrentLimit().GetName() != "per-user" {
		t.Fatalf("ShouldRateLimit for alice: %v", out)
	}
}

// TestRateLimitRedisTwoInstances: two service instances share one real
// Redis; many concurrent Checks for one user; exactly N are allowed across
// both. Then Redis stops: Checks answer 503 (fail closed, not a gRPC
// error), and recover when Redis is back.
func TestRateLimitRedisTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	keys := servicetest.KeysFile(t, t.TempDir())
	const n = 25
	cfg := servicetest.BaseConfig(keys, limitedRules) + "redis:\n  addrs: [\"" + srv.Addr + "\"]\n" + rateLimitSection(limitsFile(t, n), "redis", "")
	a, b := start(t, cfg), start(t, cfg)

	var allowed, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 120 {
		h := a
		if i%2 == 1 {
			h = b
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := h.client.Check(ctx, checkRequest("/limited/x", servicetest.KeyAlice))
			switch {
			case err != nil:
				t.Error(err)
			case resp.GetStatus().GetCode() == 0:
				allowed.Add(1)
			case codes.Code(resp.GetStatus().GetCode()) == codes.ResourceExhausted:
				limited.Add(1)
			default:
				t.Errorf("unexpected %v", resp.GetStatus())
			}
		})
	}
	wg.Wait()
	if allowed.Load() != n || limited.Load() != 120-n {
		t.Fatalf("allowed %d, limited %d; want exactly %d and %d", allowed.Load(), limited.Load(), n, 120-n)
	}

	srv.Stop()
	resp := a.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAdmin})
	if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable || resp.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_ServiceUnavailable {
		t.Fatalf("with Redis down: %v", resp.GetStatus())
	}
	srv.Restart()
	waitFor(t, func() bool {
		r := a.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAdmin})
		return r.GetStatus().GetCode() == 0
	}, "Check allowed again after Redis restarted")
}

// TestRateLimitReload: a changed rate-limit file is picked up on reload
// with counters kept; a broken one (which makes envoyproxy/ratelimit's
// loader panic) is rejected with its file named, no panic escapes, and the
// old limits keep applying.
func TestRateLimitReload(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	limits := limitsFile(t, 2)
	h := start(t, servicetest.BaseConfig(keys, limitedRules)+rateLimitSection(limits, "memory", ""))
	check := func() codes.Code {
		return codes.Code(h.check(t, "GET", "shop.example.com", "/limited/x", [2]string{"x-api-key", servicetest.KeyAlice}).GetStatus().GetCode())
	}
	for range 2 {
		if c := check(); c != codes.OK {
			t.Fatalf("under limit: %v", c)
		}
	}
	if c := check(); c != codes.ResourceExhausted {
		t.Fatalf("over limit 2: %v", c)
	}

	// Raise the limit: the same counter (3 hits so far) now has room for 2 more.
	body, _ := os.ReadFile(limits)
	servicetest.WriteFile(t, limits, strings.Replace(string(body), "requests_per_unit: 2}", "requests_per_unit: 5}", 1))
	if err := h.svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	if c := check(); c != codes.OK {
		t.Fatalf("after raising the limit: %v", c)
	}

	// A bad unit makes the library panic; reload reports it.
	servicetest.WriteFile(t, limits, strings.Replace(string(body), "unit: hour, requests_per_unit: 2", "unit: fortnight, requests_per_unit: 2", 1))
	err := h.svc.reload("test")
	if err == nil || !strings.Contains(err.Error(), limits) || !strings.Contains(err.Error(), "invalid rate limit unit 'fortnight'") {
		t.Fatalf("reload with a bad file: %v", err)
	}
	if c := check(); c != codes.OK {
		t.Fatalf("old limits stopped applying after a rejected reload: %v", c)
	}
}

// TestRedisRequiredForReadiness: with redis.required_for_readiness, a Redis
// that stops answering makes /readyz and gRPC health fail, and its return
// makes them pass again, without a restart.
func TestRedisRequiredForReadiness(t *testing.T) {
	rs := redistest.Start(t)
	cfg := servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), "") + "redis:\n  addrs: [\"" + rs.Addr + "\"]\n  required_for_readiness: true\n" +
		rateLimitSection(limitsFile(t, 5), "redis", "")
	h := start(t, cfg)
	readyz := func() int {
		resp, err := http.Get(h.admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := readyz(); c != 200 {
		t.Fatalf("readyz with Redis up = %d", c)
	}
	rs.Stop()
	waitFor(t, func() bool { return readyz() == 503 }, "readyz 503 with Redis down")
	hc := healthgrpc.NewHealthClient(h.conn)
	waitFor(t, func() bool {
		r, err := hc.Check(context.Background(), &healthgrpc.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthgrpc.HealthCheckResponse_NOT_SERVING
	}, "gRPC health NOT_SERVING")
	rs.Restart()
	waitFor(t, func() bool { return readyz() == 200 }, "readyz 200 after Redis is back")
	h.waitServing(t)
}
