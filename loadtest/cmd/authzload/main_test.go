package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

func TestParseVmHWM(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    int64
		wantErr bool
	}{
		{"linux status", "Name:\text-authz\nVmPeak:\t 1262880 kB\nVmHWM:\t   35840 kB\nVmRSS:\t   30000 kB\n", 35840 << 10, false},
		{"missing", "Name:\tx\n", 0, true},
		{"odd unit", "VmHWM:\t12 MB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmHWM(tt.give)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseVmHWM = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	// utime 250 and stime 50 ticks; the command name holds ") (".
	stat := "4242 (ext) (authz) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 2"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

func TestProcessCPUOfThisProcess(t *testing.T) {
	if _, err := processCPU(os.Getpid()); err != nil {
		t.Skipf("no /proc on this system: %v", err)
	}
	if _, err := processCPU(0); err == nil {
		t.Error("processCPU(0): no error")
	}
}

func TestPeakRSSOfThisProcess(t *testing.T) {
	rss, err := peakRSS(os.Getpid())
	if err != nil {
		t.Skipf("no /proc on this system: %v", err)
	}
	if rss < 1<<20 {
		t.Errorf("peak RSS of the test binary = %d bytes, implausibly small", rss)
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		give    string
		wantErr bool
	}{
		{"127.0.0.1:8888", false},
		{"[::1]:8888", false},
		{"localhost:8888", false},
		{"10.0.0.5:8888", true},
		{"ext-authz.istio-system:8888", true},
		{"8888", true},
	}
	for _, tt := range tests {
		if err := checkLoopback(tt.give); (err != nil) != tt.wantErr {
			t.Errorf("checkLoopback(%q) = %v, want error %v", tt.give, err, tt.wantErr)
		}
	}
}

func TestBuildScenario(t *testing.T) {
	tests := []struct {
		name       string
		give       scenarioOptions
		wantHeader string // header name → value of the first request
		wantValue  string
		wantPath   string
		wantN      int
	}{
		{"jwt bearer", scenarioOptions{Name: "jwt", Tokens: []string{"t1", "t2"}}, "authorization", "Bearer t1", "/api/orders?page=2", 2},
		{"udb header", scenarioOptions{Name: "udb", Tokens: []string{"u1"}}, "x-udb-token", "u1", "/app/profile", 1},
		{"api key header", scenarioOptions{Name: "apikey", Tokens: []string{"k1", "k2", "k3"}}, "x-api-key", "k1", "/api/orders?page=2", 3},
		{"jwt with limits", scenarioOptions{Name: "jwt-ratelimit", Tokens: []string{"t1"}, Path: "/limited/x"}, "authorization", "Bearer t1", "/limited/x", 1},
		{"public needs no pool", scenarioOptions{Name: "public"}, "authorization", "", "/public/index.html", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := buildScenario(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.checks) != tt.wantN {
				t.Fatalf("%d requests, want %d", len(s.checks), tt.wantN)
			}
			h := s.checks[0].GetAttributes().GetRequest().GetHttp()
			if got := h.GetHeaders()[tt.wantHeader]; got != tt.wantValue {
				t.Errorf("header %s = %q, want %q", tt.wantHeader, got, tt.wantValue)
			}
			if h.GetPath() != tt.wantPath || h.GetHeaders()[":path"] != tt.wantPath {
				t.Errorf("path %q / :path %q, want %q", h.GetPath(), h.GetHeaders()[":path"], tt.wantPath)
			}
			if h.GetHost() != "example.com" {
				t.Errorf("host %q, want the default example.com", h.GetHost())
			}
		})
	}
}

func TestBuildScenarioRLS(t *testing.T) {
	s, err := buildScenario(scenarioOptions{Name: "rls", Users: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.limits) != 3 {
		t.Fatalf("%d requests, want one per user (3)", len(s.limits))
	}
	r := s.limits[2]
	if r.GetDomain() != "loadtest" || len(r.GetDescriptors()) != 2 {
		t.Fatalf("request %v: want domain loadtest and two descriptors", r)
	}
	if e := r.GetDescriptors()[0].GetEntries(); len(e) != 2 || e[1].GetKey() != "user" || e[1].GetValue() != "user-3" {
		t.Errorf("first descriptor %v, want generic_key=limited, user=user-3", e)
	}
}

func TestBuildScenarioErrors(t *testing.T) {
	for _, give := range []scenarioOptions{{Name: "jwt"}, {Name: "udb"}, {Name: "apikey"}, {Name: "bogus"}} {
		if _, err := buildScenario(give); err == nil {
			t.Errorf("buildScenario(%+v): no error", give)
		}
	}
}

func TestReadPool(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pool.txt")
	if err := os.WriteFile(p, []byte("a\n\n b \nc"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readPool(p)
	if err != nil || strings.Join(got, ",") != "a,b,c" {
		t.Errorf("readPool = %q, %v; want a,b,c", got, err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPool(empty); err == nil {
		t.Error("readPool of an empty file: no error")
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		give []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}}
	for _, tt := range tests {
		if got := median(tt.give); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

// fakeAuthz answers like ext-authz would for a rule that needs a bearer
// token: OK with one, 401 without. It also serves ShouldRateLimit with
// OVER_LIMIT, so the rls scenario's outcomes are distinguishable.
type fakeAuthz struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (fakeAuthz) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	code := codes.OK
	if !strings.HasPrefix(r.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"], "Bearer ") {
		code = codes.Unauthenticated
	}
	return &authv3.CheckResponse{Status: &status.Status{Code: int32(code)}}, nil
}

func (fakeAuthz) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, nil
}

func startFake(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, fakeAuthz{})
	rlsv3.RegisterRateLimitServiceServer(srv, fakeAuthz{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestRunAgainstServers drives two real gRPC servers over sockets, one as
// target and one as baseline, and checks the report and the JSON summary.
func TestRunAgainstServers(t *testing.T) {
	target, baseline := startFake(t), startFake(t)
	dir := t.TempDir()
	pool := filepath.Join(dir, "jwt.txt")
	if err := os.WriteFile(pool, []byte("tok-1\ntok-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonOut := filepath.Join(dir, "out.json")
	var stdout bytes.Buffer
	err := run(context.Background(), []string{
		"-addr", target, "-baseline", baseline, "-scenario", "jwt", "-pool", pool,
		"-workers", "4", "-conns", "2", "-duration", "150ms", "-warmup", "20ms", "-rounds", "2",
		"-pid", strconv.Itoa(os.Getpid()), "-json", jsonOut, "-label", "jwt-test",
	}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	for _, want := range []string{"round 1 target", "round 2 baseline", "RESULT jwt-test: throughput"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	data, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	var sum summary
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Target.PeakRSS <= 0 || sum.Target.DriverCPU <= 0 {
		t.Errorf("summary lacks the target's peak RSS or CPU per request: %s", data)
	}
	if sum.Baseline == nil || sum.ThroughputRatio <= 0 || sum.P99Ratio <= 0 {
		t.Errorf("summary lacks baseline ratios: %s", data)
	}
	if sum.Target.Requests == 0 || sum.Target.Mix["ok"] != sum.Target.Requests || sum.ExpectShare != 1 {
		t.Errorf("target mix %v of %d requests, want all ok", sum.Target.Mix, sum.Target.Requests)
	}
	if sum.Rounds != 2 || sum.Mode != "closed" || sum.Workers != 4 {
		t.Errorf("summary header %+v", sum)
	}
}

// TestRunFailsOnUnexpectedOutcome: a throughput of wrong answers must not
// pass as a measurement.
func TestRunFailsOnUnexpectedOutcome(t *testing.T) {
	addr := startFake(t)
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"-addr", addr, "-scenario", "missing", "-workers", "2",
		"-duration", "100ms", "-warmup", "0s", "-rounds", "1"}, &stdout, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"ok"`) {
		t.Fatalf("run expecting ok from a server answering 401: err = %v", err)
	}
	err = run(context.Background(), []string{"-addr", addr, "-scenario", "missing", "-workers", "2",
		"-duration", "100ms", "-warmup", "0s", "-rounds", "1", "-expect", "unauthenticated"}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("run expecting unauthenticated: %v", err)
	}
	err = run(context.Background(), []string{"-addr", addr, "-scenario", "rls", "-users", "5", "-rate", "200",
		"-duration", "100ms", "-warmup", "0s", "-rounds", "1", "-expect", "over_limit"}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("rls run expecting over_limit: %v", err)
	}
}

func TestRunRefusesRemoteAndBadFlags(t *testing.T) {
	tests := [][]string{
		{"-addr", "192.0.2.1:8888"},
		{"-baseline", "192.0.2.1:9999"},
		{"-workers", "0"},
		{"-rounds", "0"},
		{"-min-expected", "2"},
		{"-peer", "192.0.2.1:8081"},
		{"-goal", "fastest"},
		{"-decode", "partial"},
		{"extra"},
	}
	for _, args := range tests {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q): no error", args)
		}
	}
}

func TestFreePort(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"freeport"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:"+strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("the printed port %q is not usable: %v", out.String(), err)
	}
	lis.Close()
}

// TestServePprof: -pprof serves the driver's goroutine dump (the stacks of
// a run's calls) and stops serving when the run ends.
func TestServePprof(t *testing.T) {
	addr, stop, err := servePprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "TestServePprof") {
		stop()
		t.Fatalf("goroutine dump: status %d, err %v, body %.200q", resp.StatusCode, err, body)
	}
	stop()
	if resp, err := client.Get("http://" + addr + "/debug/pprof/"); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("pprof still served after stop: %s", resp.Status)
	}
	if _, _, err := servePprof("127.0.0.1:-1"); err == nil {
		t.Error("servePprof on a bad address: no error")
	}
}

// TestParseFlagsPprofLoopback: the driver's profile endpoint is loopback
// only, like the servers it drives.
func TestParseFlagsPprofLoopback(t *testing.T) {
	for _, tt := range []struct {
		give    string
		wantErr bool
	}{
		{"127.0.0.1:6061", false},
		{"localhost:6061", false},
		{"0.0.0.0:6061", true},
		{"10.0.0.1:6061", true},
	} {
		_, err := parseFlags([]string{"-pprof", tt.give}, io.Discard)
		if (err != nil) != tt.wantErr {
			t.Errorf("-pprof %s: err %v, want error %v", tt.give, err, tt.wantErr)
		}
	}
}

// TestSchedProbe: the probe runs for -for and reports its worst wake-up,
// measured from when each sleep began (so never under the tick), and
// rejects a report threshold that is not above the tick.
func TestSchedProbe(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"schedprobe", "-tick", "1ms", "-report", "1ms", "-for", "50ms"}, &out, io.Discard); err == nil {
		t.Fatal("-report equal to -tick accepted")
	}
	out.Reset()
	if err := run(context.Background(), []string{"schedprobe", "-tick", "10ms", "-report", "11ms", "-for", "100ms"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	i := strings.LastIndex(s, "worst wake-up ")
	if i < 0 {
		t.Fatalf("no summary line:\n%s", s)
	}
	var worst float64
	if _, err := fmt.Sscanf(s[i+len("worst wake-up "):], "%fms", &worst); err != nil || worst < 10 {
		t.Fatalf("worst wake-up %v ms (err %v), want at least the 10 ms tick:\n%s", worst, err, s)
	}
}
