//go:build differential

// The differential test against envoyproxy/ratelimit: `make
// differential-ratelimit` builds the reference from source at the version
// loadtest/peers.sh pins and runs this with RATELIMIT_REFERENCE set to the
// binary. It is not part of `go test ./...` (the build takes about a minute
// on a cold cache).

package rls_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb_struct "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// diffCase is one generated domain: its envoyproxy/ratelimit file and the
// requests sent to both services, in order.
type diffCase struct {
	domain string
	yaml   string
	reqs   []*pb.RateLimitRequest
}

// TestDifferentialReference sends the same generated RateLimitRequest
// sequences to envoyproxy/ratelimit and to ext-authz's ShouldRateLimit,
// each counting in its own redis-server, and compares the overall code,
// every descriptor's code, current limit and limit_remaining, and the
// RateLimit-* response headers. The generator is seeded
// (RATELIMIT_DIFF_SEED, RATELIMIT_DIFF_CASES), so a failure is replayed
// exactly.
func TestDifferentialReference(t *testing.T) {
	bin := os.Getenv("RATELIMIT_REFERENCE")
	if bin == "" {
		t.Skip("RATELIMIT_REFERENCE is not set: run `make differential-ratelimit`")
	}
	seed := envInt(t, "RATELIMIT_DIFF_SEED", 1)
	n := envInt(t, "RATELIMIT_DIFF_CASES", 1500)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	cases := make([]diffCase, n)
	for i := range cases {
		cases[i] = genCase(rng, fmt.Sprintf("d%04d", i))
	}

	// One file per domain, in the reference's runtime layout
	// (RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config/) and loaded by us from that
	// directory.
	root := t.TempDir()
	cfgDir := filepath.Join(root, "rl", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if err := os.WriteFile(filepath.Join(cfgDir, c.domain+".yaml"), []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rules, err := envoyconfig.Load([]string{cfgDir})
	if err != nil {
		t.Fatalf("generated files rejected by ext-authz: %v", err)
	}

	ref := startReference(t, bin, root, redistest.Start(t).Addr)
	// ext-authz three times, each in its own redis-server: ShouldRateLimit
	// with the local over-limit cache (the default) and without (as the
	// reference runs, LOCAL_CACHE_SIZE_IN_BYTES=0); and the limiter as the
	// Check path uses it, whose legacy X-RateLimit-* headers must describe
	// the descriptor the reference's RateLimit-* headers describe.
	ours := []struct {
		name string
		diff func(req *pb.RateLimitRequest, want *pb.RateLimitResponse) (string, error)
	}{
		{"local_cache=on", rlsDiff(startOurs(t, rules, redistest.Start(t).Addr, 0))},
		{"local_cache=off", rlsDiff(startOurs(t, rules, redistest.Start(t).Addr, -1))},
		{"check_path_headers", checkPathDiff(t, rules, redistest.Start(t).Addr)},
	}

	mismatches := make([][]string, len(ours))
	sent := 0
	for ci, c := range cases {
		waitAwayFromMinuteEdge()
		for ri, req := range c.reqs {
			waitAwayFromSecondEdge()
			want, err := ref.ShouldRateLimit(context.Background(), req)
			if err != nil {
				t.Fatalf("case %d request %d: reference: %v\n%s", ci, ri, err, c.yaml)
			}
			sent++
			for oi, o := range ours {
				d, err := o.diff(req, want)
				if err != nil {
					t.Fatalf("case %d request %d: ext-authz %s: %v\n%s", ci, ri, o.name, err, c.yaml)
				}
				if d != "" {
					mismatches[oi] = append(mismatches[oi], fmt.Sprintf("case %d (%s) request %d: %s\nrequest: %v\nreference: %v\nconfig:\n%s",
						ci, c.domain, ri, d, req, want, c.yaml))
				}
			}
		}
	}
	for oi, o := range ours {
		t.Run(o.name, func(t *testing.T) {
			// Printed with -v, and on failure.
			fmt.Printf("differential %s: seed %d, %d cases, %d requests, %d mismatches\n", o.name, seed, len(cases), sent, len(mismatches[oi]))
			for i, m := range mismatches[oi] {
				if i == 10 {
					t.Errorf("... and %d more", len(mismatches[oi])-10)
					break
				}
				t.Error(m)
			}
		})
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// waitAwayFromMinuteEdge keeps a case inside one minute window: the two
// services are asked a few microseconds apart, and a minute boundary
// between them would reset one counter and not the other.
func waitAwayFromMinuteEdge() {
	now := time.Now()
	if left := time.Minute - now.Sub(now.Truncate(time.Minute)); left < 3*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
}

// waitAwayFromSecondEdge keeps the two services' answers to one request
// in the same second window (a request takes well under 10ms).
func waitAwayFromSecondEdge() {
	now := time.Now()
	if left := time.Second - now.Sub(now.Truncate(time.Second)); left < 30*time.Millisecond {
		time.Sleep(left + time.Millisecond)
	}
}

var (
	diffKeys   = []string{"a", "b", "c"}
	diffValues = []string{"x", "y", "xy"}
	diffUnits  = []string{"second", "minute", "hour", "day", "week", "month", "year"}
)

// genCase generates one domain's file and a request sequence that mostly
// hits its descriptors: nested descriptors, keys with and without value,
// wildcards, unlimited, shadow_mode, quota_mode, replaces, detailed_metric
// on and off; requests with several descriptors, limit overrides, hits
// addends (request and descriptor), and now and then an undefined domain.
func genCase(rng *rand.Rand, domain string) diffCase {
	var b strings.Builder
	fmt.Fprintf(&b, "domain: %s\ndescriptors:\n", domain)
	names := 0
	var named []string
	var gen func(depth int, indent string)
	gen = func(depth int, indent string) {
		used := map[string]bool{}
		for range 1 + rng.IntN(3) {
			key := diffKeys[rng.IntN(len(diffKeys))]
			value := ""
			switch rng.IntN(4) {
			case 0, 1:
				value = diffValues[rng.IntN(len(diffValues))]
			case 2:
				if rng.IntN(3) == 0 {
					value = "x*"
				}
			}
			fk := key + "_" + value
			if used[fk] {
				continue
			}
			used[fk] = true
			fmt.Fprintf(&b, "%s- key: %s\n", indent, key)
			if value != "" {
				fmt.Fprintf(&b, "%s  value: %q\n", indent, value)
				if value == "x*" && rng.IntN(2) == 0 {
					fmt.Fprintf(&b, "%s  share_threshold: true\n", indent)
				}
			}
			hasLimit := depth == 2 || rng.IntN(3) != 0
			if hasLimit {
				switch {
				case rng.IntN(8) == 0:
					fmt.Fprintf(&b, "%s  rate_limit: {unlimited: true}\n", indent)
				default:
					var extra string
					if rng.IntN(2) == 0 {
						names++
						name := fmt.Sprintf("n%d", names)
						extra += ", name: " + name
						if len(named) > 0 && rng.IntN(3) == 0 {
							extra += ", replaces: [{name: " + named[rng.IntN(len(named))] + "}]"
						}
						named = append(named, name)
					}
					fmt.Fprintf(&b, "%s  rate_limit: {unit: %s, requests_per_unit: %d%s}\n", indent, diffUnits[rng.IntN(len(diffUnits))], rng.IntN(6), extra)
					switch rng.IntN(6) {
					case 0:
						fmt.Fprintf(&b, "%s  shadow_mode: true\n", indent)
					case 1:
						fmt.Fprintf(&b, "%s  quota_mode: true\n", indent)
					}
				}
			}
			fmt.Fprintf(&b, "%s  detailed_metric: %t\n", indent, rng.IntN(2) == 0)
			if depth < 2 && (!hasLimit || rng.IntN(3) == 0) {
				fmt.Fprintf(&b, "%s  descriptors:\n", indent)
				gen(depth+1, indent+"    ")
			}
		}
	}
	gen(0, "  ")

	c := diffCase{domain: domain, yaml: b.String()}
	for range 8 + rng.IntN(12) {
		req := &pb.RateLimitRequest{Domain: domain}
		if rng.IntN(15) == 0 {
			req.Domain = "undefined-" + domain
		}
		if rng.IntN(4) == 0 {
			req.HitsAddend = uint32(rng.IntN(4))
			if rng.IntN(20) == 0 { // far over any limit, near the top of the type
				req.HitsAddend = math.MaxUint32 - uint32(rng.IntN(2))
			}
		}
		for range 1 + rng.IntN(4) {
			d := &pb_struct.RateLimitDescriptor{}
			// Now and then no entries at all, or an empty value: Envoy
			// sends neither, any other client may.
			for range rng.IntN(4) + min(1, rng.IntN(20)) {
				v := diffValues[rng.IntN(len(diffValues))]
				switch rng.IntN(12) {
				case 0, 1:
					v = "x" + strconv.Itoa(rng.IntN(3))
				case 2:
					v = ""
				case 3:
					v = "x*" // a wildcard's own spelling, as a value
				}
				d.Entries = append(d.Entries, &pb_struct.RateLimitDescriptor_Entry{Key: diffKeys[rng.IntN(len(diffKeys))], Value: v})
			}
			if rng.IntN(6) == 0 {
				d.Limit = &pb_struct.RateLimitDescriptor_RateLimitOverride{
					RequestsPerUnit: uint32(rng.IntN(5)),
					// 7 is WEEK in the response's unit enum, which the
					// reference converts the override's unit to; Envoy's
					// own enum stops at YEAR (6).
					Unit: []typev3.RateLimitUnit{typev3.RateLimitUnit_MINUTE, typev3.RateLimitUnit_HOUR, typev3.RateLimitUnit_DAY, typev3.RateLimitUnit_MONTH, typev3.RateLimitUnit_YEAR, 7}[rng.IntN(6)],
				}
			}
			if rng.IntN(8) == 0 {
				d.HitsAddend = wrapperspb.UInt64(uint64(rng.IntN(3)))
			}
			req.Descriptors = append(req.Descriptors, d)
		}
		c.reqs = append(c.reqs, req)
	}
	return c
}

// diffResponses describes how got differs from want, or "".
func diffResponses(want, got *pb.RateLimitResponse) string {
	var out []string
	if want.GetOverallCode() != got.GetOverallCode() {
		out = append(out, fmt.Sprintf("overall_code %v, reference %v", got.GetOverallCode(), want.GetOverallCode()))
	}
	if len(want.GetStatuses()) != len(got.GetStatuses()) {
		return strings.Join(append(out, fmt.Sprintf("%d statuses, reference %d", len(got.GetStatuses()), len(want.GetStatuses()))), "; ")
	}
	for i, w := range want.GetStatuses() {
		g := got.GetStatuses()[i]
		if w.GetCode() != g.GetCode() {
			out = append(out, fmt.Sprintf("statuses[%d].code %v, reference %v", i, g.GetCode(), w.GetCode()))
		}
		if w.GetLimitRemaining() != g.GetLimitRemaining() {
			out = append(out, fmt.Sprintf("statuses[%d].limit_remaining %d, reference %d", i, g.GetLimitRemaining(), w.GetLimitRemaining()))
		}
		wl, gl := w.GetCurrentLimit(), g.GetCurrentLimit()
		if (wl == nil) != (gl == nil) || wl.GetRequestsPerUnit() != gl.GetRequestsPerUnit() || wl.GetUnit() != gl.GetUnit() || wl.GetName() != gl.GetName() {
			out = append(out, fmt.Sprintf("statuses[%d].current_limit %v, reference %v", i, gl, wl))
		}
		// Deliberate: the reference drops duration_until_reset of a
		// quota_mode descriptor over its limit (it rebuilds the status
		// without it); ext-authz keeps it (docs/rate-limits.md).
		quotaOver := wl != nil && w.GetDurationUntilReset() == nil && g.GetDurationUntilReset() != nil
		if !quotaOver && ((w.GetDurationUntilReset() == nil) != (g.GetDurationUntilReset() == nil) ||
			!within1(w.GetDurationUntilReset().GetSeconds(), g.GetDurationUntilReset().GetSeconds())) {
			out = append(out, fmt.Sprintf("statuses[%d].duration_until_reset %v, reference %v", i, g.GetDurationUntilReset(), w.GetDurationUntilReset()))
		}
	}
	wh, gh := headerMap(want), headerMap(got)
	if !slices.Equal(sortedKeys(wh), sortedKeys(gh)) {
		out = append(out, fmt.Sprintf("headers %v, reference %v", gh, wh))
	} else {
		for k, wv := range wh {
			gv := gh[k]
			if k == "RateLimit-Reset" {
				a, _ := strconv.ParseInt(wv, 10, 64)
				b, _ := strconv.ParseInt(gv, 10, 64)
				if within1(a, b) {
					continue
				}
			}
			if wv != gv {
				out = append(out, fmt.Sprintf("header %s %q, reference %q", k, gv, wv))
			}
		}
	}
	return strings.Join(out, "; ")
}

// within1: the two services read the clock a moment apart, so whole
// seconds to a window's end may differ by one.
func within1(a, b int64) bool { return a-b <= 1 && b-a <= 1 }

func headerMap(r *pb.RateLimitResponse) map[string]string {
	m := map[string]string{}
	for _, h := range r.GetResponseHeadersToAdd() {
		m[h.GetKey()] = h.GetValue()
	}
	return m
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// rlsDiff compares ShouldRateLimit answers of c with the reference's.
func rlsDiff(c pb.RateLimitServiceClient) func(*pb.RateLimitRequest, *pb.RateLimitResponse) (string, error) {
	return func(req *pb.RateLimitRequest, want *pb.RateLimitResponse) (string, error) {
		got, err := c.ShouldRateLimit(context.Background(), req)
		if err != nil {
			return "", err
		}
		if d := diffResponses(want, got); d != "" {
			return d + "\next-authz: " + got.String(), nil
		}
		return "", nil
	}
}

// checkPathDiff runs a limiter over the Redis at addr as the Check path
// does (ratelimit.Result.Headers) and compares its decision and legacy
// headers with the reference's overall code and RateLimit-* headers.
func checkPathDiff(t *testing.T, rules *envoyconfig.Rules, addr string) func(*pb.RateLimitRequest, *pb.RateLimitResponse) (string, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	l := ratelimit.New(rlredis.New(c, rlredis.Options{}), rules, ratelimit.Options{Timeout: time.Second})
	return func(req *pb.RateLimitRequest, want *pb.RateLimitResponse) (string, error) {
		r, err := rls.FromProto(req)
		if err != nil {
			return "", err
		}
		res, err := l.Check(context.Background(), r)
		if err != nil {
			return "", err
		}
		var out []string
		if over := res.Code == ratelimit.OverLimit; over != (want.GetOverallCode() == pb.RateLimitResponse_OVER_LIMIT) {
			out = append(out, fmt.Sprintf("over limit %t, reference %v", over, want.GetOverallCode()))
		}
		wh := headerMap(want)
		got := map[string]string{}
		for _, h := range res.Headers(ratelimit.HeaderOptions{Legacy: true}) {
			got[h.Name] = h.Value
		}
		for _, p := range [][2]string{{"x-ratelimit-limit", "RateLimit-Limit"}, {"x-ratelimit-remaining", "RateLimit-Remaining"}, {"x-ratelimit-reset", "RateLimit-Reset"}} {
			g, w := got[p[0]], wh[p[1]]
			a, _ := strconv.ParseInt(g, 10, 64)
			b, _ := strconv.ParseInt(w, 10, 64)
			if g != w && (p[0] != "x-ratelimit-reset" || g == "" || w == "" || !within1(a, b)) {
				out = append(out, fmt.Sprintf("%s %q, reference %s %q", p[0], g, p[1], w))
			}
		}
		return strings.Join(out, "; "), nil
	}
}

// startOurs serves ShouldRateLimit over rules, counting in the Redis at
// addr, with the local over-limit cache of localCacheSize (0: the default
// size; -1: none).
func startOurs(t *testing.T, rules *envoyconfig.Rules, addr string, localCacheSize int) pb.RateLimitServiceClient {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	st := rlredis.New(c, rlredis.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = st.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	l := ratelimit.New(st, rules, ratelimit.Options{Timeout: time.Second, LocalCacheSize: localCacheSize})
	return serve(t, rls.New(l, rls.Options{ResponseHeaders: true}))
}

// startReference runs envoyproxy/ratelimit with its files under root
// (RUNTIME_SUBDIRECTORY rl), counting in the Redis at addr, response
// headers on, and returns a client once it answers.
func startReference(t *testing.T, bin, root, redisAddr string) pb.RateLimitServiceClient {
	t.Helper()
	c, _ := startReferenceProcess(t, bin, root, redisAddr)
	return c
}

// startReferenceProcess is startReference that also returns a channel
// closed when the process has exited.
func startReferenceProcess(t *testing.T, bin, root, redisAddr string) (pb.RateLimitServiceClient, <-chan struct{}) {
	t.Helper()
	grpcPort, httpPort, debugPort := freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"USE_STATSD=false", "LOG_LEVEL=warn",
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL="+redisAddr,
		"RUNTIME_ROOT="+root, "RUNTIME_SUBDIRECTORY=rl", "RUNTIME_WATCH_ROOT=false", "RUNTIME_IGNOREDOTFILES=true",
		"HOST=127.0.0.1", "PORT="+strconv.Itoa(httpPort),
		"GRPC_HOST=127.0.0.1", "GRPC_PORT="+strconv.Itoa(grpcPort),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT="+strconv.Itoa(debugPort),
		"LIMIT_RESPONSE_HEADERS_ENABLED=true",
	)
	var logs strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			mu.Lock()
			t.Logf("reference log (tail):\n%s", tail(logs.String(), 4000))
			mu.Unlock()
		}
	})
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := pb.NewRateLimitServiceClient(conn)
	probe := &pb.RateLimitRequest{Domain: "probe-undefined", Descriptors: []*pb_struct.RateLimitDescriptor{{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.ShouldRateLimit(ctx, probe)
		cancel()
		if err == nil {
			return c, done
		}
		select {
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("reference exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("reference not answering: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDifferentialReferenceUnknownOverrideUnit: a limit override whose
// unit is UNKNOWN (0) or a number no enum has is where ext-authz departs
// on purpose: the reference panics outside its recover (the process
// exits), ext-authz ignores the override and applies the configured limit.
func TestDifferentialReferenceUnknownOverrideUnit(t *testing.T) {
	bin := os.Getenv("RATELIMIT_REFERENCE")
	if bin == "" {
		t.Skip("RATELIMIT_REFERENCE is not set: run `make differential-ratelimit`")
	}
	const file = "domain: u\ndescriptors:\n  - key: a\n    rate_limit: {unit: hour, requests_per_unit: 5}\n"
	for _, unit := range []typev3.RateLimitUnit{typev3.RateLimitUnit_UNKNOWN, 99} {
		t.Run(unit.String(), func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "rl", "config")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "u.yaml"), []byte(file), 0o644); err != nil {
				t.Fatal(err)
			}
			rules, err := envoyconfig.Load([]string{dir})
			if err != nil {
				t.Fatal(err)
			}
			req := &pb.RateLimitRequest{Domain: "u", Descriptors: []*pb_struct.RateLimitDescriptor{{
				Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: "a", Value: "v"}},
				Limit:   &pb_struct.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: unit},
			}}}
			ref, exited := startReferenceProcess(t, bin, root, redistest.Start(t).Addr)
			if _, err := ref.ShouldRateLimit(context.Background(), req); err == nil {
				t.Errorf("the reference answered an override with unit %v", unit)
			}
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Errorf("the reference is still running after an override with unit %v", unit)
			}
			got, err := startOurs(t, rules, redistest.Start(t).Addr, 0).ShouldRateLimit(context.Background(), req)
			if err != nil || got.GetOverallCode() != pb.RateLimitResponse_OK || got.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() != 5 || got.GetStatuses()[0].GetLimitRemaining() != 4 {
				t.Errorf("ext-authz: %v %v, want OK under the configured 5/hour", got, err)
			}
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestDifferentialReferenceDeliberate shows the documented deviations of
// docs/rate-limits.md ("Differences from envoyproxy/ratelimit") against
// the reference itself, one request each.
func TestDifferentialReferenceDeliberate(t *testing.T) {
	bin := os.Getenv("RATELIMIT_REFERENCE")
	if bin == "" {
		t.Skip("RATELIMIT_REFERENCE is not set: run `make differential-ratelimit`")
	}
	const file = `domain: dev
descriptors:
  - key: a_b
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: a
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: n
    rate_limit: {unit: hour, requests_per_unit: 5}
`
	root := t.TempDir()
	dir := filepath.Join(root, "rl", "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dev.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := envoyconfig.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	refRedis, ourRedis := redistest.Start(t), redistest.Start(t)
	ref := startReference(t, bin, root, refRedis.Addr)
	ours := startOurs(t, rules, ourRedis.Addr, 0)
	entry := func(k, v string) *pb_struct.RateLimitDescriptor {
		return &pb_struct.RateLimitDescriptor{Entries: []*pb_struct.RateLimitDescriptor_Entry{{Key: k, Value: v}}}
	}
	both := func(req *pb.RateLimitRequest) (want, got *pb.RateLimitResponse, wantErr, gotErr error) {
		want, wantErr = ref.ShouldRateLimit(context.Background(), req)
		got, gotErr = ours.ShouldRateLimit(context.Background(), req)
		return
	}

	t.Run("empty requests", func(t *testing.T) {
		for _, req := range []*pb.RateLimitRequest{
			{Descriptors: []*pb_struct.RateLimitDescriptor{entry("n", "v")}},
			{Domain: "dev"},
		} {
			_, _, wantErr, gotErr := both(req)
			if status.Code(wantErr) != codes.Unknown || status.Code(gotErr) != codes.InvalidArgument {
				t.Errorf("%v: reference %v, ext-authz %v; documented Unknown and InvalidArgument", req, wantErr, gotErr)
			}
		}
	})
	t.Run("is_negative_hits", func(t *testing.T) {
		d := entry("n", "neg")
		d.IsNegativeHits = true
		d.HitsAddend = wrapperspb.UInt64(2)
		want, _, wantErr, gotErr := both(&pb.RateLimitRequest{Domain: "dev", Descriptors: []*pb_struct.RateLimitDescriptor{d}})
		if wantErr != nil || want.GetStatuses()[0].GetLimitRemaining() != 3 || status.Code(gotErr) != codes.InvalidArgument {
			t.Errorf("reference %v %v (documented: counts 2 up, 3 left), ext-authz %v (documented: InvalidArgument)", want, wantErr, gotErr)
		}
	})
	t.Run("65 descriptors", func(t *testing.T) {
		req := &pb.RateLimitRequest{Domain: "dev"}
		for i := range 65 {
			req.Descriptors = append(req.Descriptors, entry("other", strconv.Itoa(i)))
		}
		want, _, wantErr, gotErr := both(req)
		if wantErr != nil || want.GetOverallCode() != pb.RateLimitResponse_OK || status.Code(gotErr) != codes.InvalidArgument {
			t.Errorf("reference %v, ext-authz %v; documented OK and InvalidArgument", wantErr, gotErr)
		}
	})
	t.Run("key collision", func(t *testing.T) {
		// a_b=c and a=b_c are one counter key in the reference.
		if want, got, wantErr, gotErr := both(&pb.RateLimitRequest{Domain: "dev", Descriptors: []*pb_struct.RateLimitDescriptor{entry("a_b", "c")}}); wantErr != nil || gotErr != nil ||
			want.GetOverallCode() != pb.RateLimitResponse_OK || got.GetOverallCode() != pb.RateLimitResponse_OK {
			t.Fatalf("first: reference %v %v, ext-authz %v %v", want, wantErr, got, gotErr)
		}
		want, got, wantErr, gotErr := both(&pb.RateLimitRequest{Domain: "dev", Descriptors: []*pb_struct.RateLimitDescriptor{entry("a", "b_c")}})
		if wantErr != nil || gotErr != nil || want.GetOverallCode() != pb.RateLimitResponse_OVER_LIMIT || got.GetOverallCode() != pb.RateLimitResponse_OK {
			t.Errorf("a=b_c after a_b=c: reference %v %v (documented: OVER_LIMIT, shared counter), ext-authz %v %v (documented: OK)", want, wantErr, got, gotErr)
		}
	})
	t.Run("store down", func(t *testing.T) {
		refRedis.Stop()
		ourRedis.Stop()
		_, _, wantErr, gotErr := both(&pb.RateLimitRequest{Domain: "dev", Descriptors: []*pb_struct.RateLimitDescriptor{entry("n", "down")}})
		if wantErr == nil || status.Code(gotErr) != codes.Unavailable {
			t.Errorf("reference %v (documented: an error), ext-authz %v (documented: Unavailable, failing closed by default)", wantErr, gotErr)
		}
		t.Logf("store down: reference %v; ext-authz %v", wantErr, gotErr)
	})
}
