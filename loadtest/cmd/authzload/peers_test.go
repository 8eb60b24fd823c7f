package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

func TestRotation(t *testing.T) {
	tests := []struct {
		give  []string
		round int
		want  []string
	}{
		{[]string{"t"}, 0, []string{"t"}},
		{[]string{"t"}, 3, []string{"t"}},
		{[]string{"t", "b"}, 0, []string{"t", "b"}},
		{[]string{"t", "b"}, 1, []string{"b", "t"}},
		{[]string{"t", "b"}, 2, []string{"t", "b"}},
		{[]string{"t", "b", "p"}, 0, []string{"t", "b", "p"}},
		{[]string{"t", "b", "p"}, 1, []string{"b", "p", "t"}},
		{[]string{"t", "b", "p"}, 2, []string{"p", "t", "b"}},
		{[]string{"t", "b", "p"}, 3, []string{"t", "b", "p"}},
	}
	for _, tt := range tests {
		if got := rotation(tt.give, tt.round); !slices.Equal(got, tt.want) {
			t.Errorf("rotation(%v, %d) = %v, want %v", tt.give, tt.round, got, tt.want)
		}
	}
	// Over len rounds every server goes first exactly once.
	firsts := map[string]int{}
	for r := range 3 {
		firsts[rotation([]string{"t", "b", "p"}, r)[0]]++
	}
	if len(firsts) != 3 {
		t.Errorf("first servers over three rounds: %v, want each once", firsts)
	}
}

func TestJudgeGoal(t *testing.T) {
	cmp := func(versus string, tput, p99, cpu float64) comparison {
		return comparison{of: "target", versus: versus, Throughput: tput, P99: p99, ServerCPU: cpu}
	}
	tests := []struct {
		name string
		goal string
		give []comparison
		want []string // results in check order
	}{
		{"jwt-cached met", "jwt-cached", []comparison{cmp("baseline", 1.02, 0.97, 0.90)}, []string{"PASS", "PASS", "PASS"}},
		{"jwt-cached bounds are inclusive", "jwt-cached", []comparison{cmp("baseline", 1, 1, 1)}, []string{"PASS", "PASS", "PASS"}},
		{"jwt-cached as measured before", "jwt-cached", []comparison{cmp("baseline", 0.766, 1.29, 1.39)}, []string{"FAIL", "FAIL", "FAIL"}},
		{"jwt-cached no CPU figure", "jwt-cached", []comparison{cmp("baseline", 1.1, 0.9, 0)}, []string{"PASS", "PASS", "MISSING"}},
		{"jwt-cached no baseline", "jwt-cached", nil, []string{"MISSING", "MISSING", "MISSING"}},
		{"jwt-redis met", "jwt-redis", []comparison{cmp("baseline", 0.85, 2, 2)}, []string{"PASS"}},
		{"jwt-redis missed", "jwt-redis", []comparison{cmp("baseline", 0.572, 1.4, 1.8)}, []string{"FAIL"}},
		{"rls met", "rls", []comparison{cmp("baseline", 0.5, 2, 2), cmp("peer", 2.1, 0.8, 0.4)}, []string{"PASS", "PASS"}},
		{"rls slower p99", "rls", []comparison{cmp("peer", 2.5, 1.2, 0.4)}, []string{"PASS", "FAIL"}},
		{"rls only 1.7x", "rls", []comparison{cmp("peer", 1.7, 0.9, 0.4)}, []string{"FAIL", "PASS"}},
		{"rls judged against the peer, not the baseline", "rls", []comparison{cmp("baseline", 3, 0.5, 0.5)}, []string{"MISSING", "MISSING"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &summary{Comparisons: tt.give}
			got := judgeGoal(goals[tt.goal], s.comparison)
			var results []string
			for _, g := range got {
				results = append(results, g.Result)
			}
			if !slices.Equal(results, tt.want) {
				t.Errorf("results %v, want %v (%+v)", results, tt.want, got)
			}
		})
	}
}

// tunedAuthz answers every Check and ShouldRateLimit after delay: OK, or
// 401 / OVER_LIMIT when deny is set.
type tunedAuthz struct {
	rlsv3.UnimplementedRateLimitServiceServer
	delay time.Duration
	deny  bool
}

func (f tunedAuthz) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	code := codes.OK
	if f.deny {
		code = codes.Unauthenticated
	}
	return &authv3.CheckResponse{Status: &status.Status{Code: int32(code)}}, nil
}

func (f tunedAuthz) ShouldRateLimit(ctx context.Context, _ *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	code := rlsv3.RateLimitResponse_OK
	if f.deny {
		code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	return &rlsv3.RateLimitResponse{OverallCode: code}, nil
}

func (f tunedAuthz) wait(ctx context.Context) error {
	if f.delay <= 0 {
		return nil
	}
	tm := time.NewTimer(f.delay)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func startTuned(t *testing.T, f tunedAuthz) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, f)
	rlsv3.RegisterRateLimitServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// rlsArgs drives the rls scenario briefly against target and baseline,
// with extra flags.
func rlsArgs(target, baseline string, extra ...string) []string {
	return append([]string{"-addr", target, "-baseline", baseline, "-scenario", "rls", "-users", "10",
		"-workers", "4", "-conns", "2", "-duration", "300ms", "-warmup", "20ms", "-rounds", "3"}, extra...)
}

// TestRunWithPeer drives three real gRPC servers over sockets in rotating
// rounds and checks every pair's ratios, the names in the machine-readable
// lines and the goal verdicts. The peer sleeps 100ms per request, so with
// 4 workers it answers at most 40 per second and ext-authz (no delay) is
// far more than twice as fast. Latency is not asserted: on a loaded
// machine under -race the no-delay server's p99 has reached 30ms; the
// verdicts are checked against the measured ratios instead (the bounds
// themselves are TestJudgeGoal's).
func TestRunWithPeer(t *testing.T) {
	target, baseline := startTuned(t, tunedAuthz{}), startTuned(t, tunedAuthz{})
	peer := startTuned(t, tunedAuthz{delay: 100 * time.Millisecond})
	jsonOut := filepath.Join(t.TempDir(), "out.json")
	var stdout bytes.Buffer
	err := run(context.Background(), rlsArgs(target, baseline, "-peer", peer, "-peer-name", "ratelimit",
		"-peer-pid", strconv.Itoa(os.Getpid()), "-pid", strconv.Itoa(os.Getpid()),
		"-goal", "rls", "-json", jsonOut, "-label", "rls-test"), &stdout, io.Discard)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"round 1 target", "round 1 baseline", "round 1 peer", "round 2 peer", "round 3 target",
		"RESULT rls-test: throughput", "% of no-op", "% of ratelimit", "RESULT rls-test ratelimit: throughput",
		"RATIO label=rls-test of=ext-authz vs=no-op ", "RATIO label=rls-test of=ext-authz vs=ratelimit ",
		"RATIO label=rls-test of=ratelimit vs=no-op ",
		"GOAL label=rls-test goal=rls check=throughput_vs_peer vs=ratelimit value=",
		"GOAL label=rls-test goal=rls check=p99_vs_peer vs=ratelimit value=",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Rotating rounds: round 2 starts with the baseline, round 3 with the peer.
	if !inOrder(out, "round 2 baseline", "round 2 peer", "round 2 target") ||
		!inOrder(out, "round 3 peer", "round 3 target", "round 3 baseline") {
		t.Errorf("rounds not rotated:\n%s", out)
	}
	data, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	var sum summary
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Peer == nil || sum.PeerName != "ratelimit" || len(sum.Comparisons) != 3 {
		t.Fatalf("summary lacks the peer or its comparisons: %s", data)
	}
	vsPeer := sum.Comparisons[1]
	if vsPeer.Of != "ext-authz" || vsPeer.Versus != "ratelimit" || vsPeer.Throughput < 2 || vsPeer.P99 <= 0 {
		t.Errorf("ext-authz vs a peer 100ms slower per request: %+v", vsPeer)
	}
	if peerVsBase := sum.Comparisons[2]; peerVsBase.Of != "ratelimit" || peerVsBase.Versus != "no-op" || peerVsBase.Throughput >= 1 {
		t.Errorf("a peer 100ms slower per request than the no-op: %+v", peerVsBase)
	}
	if len(sum.Goals) != 2 || sum.Goals[0].Result != goalPass || sum.Goals[0].Value != vsPeer.Throughput {
		t.Fatalf("goals %+v, want throughput_vs_peer PASS at %v", sum.Goals, vsPeer.Throughput)
	}
	want := goalPass
	if vsPeer.P99 > 1 {
		want = goalFail
	}
	if g := sum.Goals[1]; g.Result != want || g.Value != vsPeer.P99 {
		t.Errorf("p99 verdict %+v for a p99 ratio of %v, want %s", g, vsPeer.P99, want)
	}
}

// inOrder reports whether the substrings occur in s in this order.
func inOrder(s string, subs ...string) bool {
	at := 0
	for _, sub := range subs {
		i := strings.Index(s[at:], sub)
		if i < 0 {
			return false
		}
		at += i + len(sub)
	}
	return true
}

// TestRunJudge: -judge turns a missed or unmeasurable goal into
// errGoalMissed (exit status 3); without -judge the same run succeeds and
// only reports.
func TestRunJudge(t *testing.T) {
	// 50ms a request: at most 80 answers a second with 4 workers, far
	// below half of a server without delay even under -race on a busy machine.
	slow := startTuned(t, tunedAuthz{delay: 50 * time.Millisecond})
	fast, baseline := startTuned(t, tunedAuthz{}), startTuned(t, tunedAuthz{})
	// A round in which the machine stalls the slow server completely
	// makes its median 0 and the verdict MISSING rather than FAIL; both
	// are misses, so the checks accept either.
	missedThroughput := regexp.MustCompile(`GOAL label=rls goal=\S+ check=throughput_vs_(peer|baseline) vs=\S+ value=\S+ want=\S+ result=(FAIL|MISSING)\n`)
	tests := []struct {
		name     string
		give     []string
		wantErr  bool
		wantLine *regexp.Regexp
	}{
		{"slower than the peer, judged", rlsArgs(slow, baseline, "-peer", fast, "-goal", "rls", "-judge"), true, missedThroughput},
		{"slower than the peer, reported only", rlsArgs(slow, baseline, "-peer", fast, "-goal", "rls"), false, missedThroughput},
		{"no peer to judge against", rlsArgs(fast, baseline, "-goal", "rls", "-judge"), true,
			regexp.MustCompile(`check=throughput_vs_peer vs=none value=0.000 want=>=2.00 result=MISSING`)},
		{"slower than the no-op", rlsArgs(slow, baseline, "-goal", "jwt-redis", "-judge"), true, missedThroughput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := run(context.Background(), tt.give, &stdout, io.Discard)
			if tt.wantErr != (err != nil) || (err != nil && !errors.Is(err, errGoalMissed)) {
				t.Fatalf("run: %v, want errGoalMissed %v\n%s", err, tt.wantErr, stdout.String())
			}
			if !tt.wantLine.MatchString(stdout.String()) {
				t.Errorf("output lacks %v:\n%s", tt.wantLine, stdout.String())
			}
		})
	}
}

// TestRunFailsOnPeerDenying: a peer that denies what ext-authz allows is
// not doing the same work, so the measurement fails (not as a goal).
func TestRunFailsOnPeerDenying(t *testing.T) {
	target, baseline := startTuned(t, tunedAuthz{}), startTuned(t, tunedAuthz{})
	peer := startTuned(t, tunedAuthz{deny: true})
	err := run(context.Background(), rlsArgs(target, baseline, "-peer", peer, "-rounds", "1"), io.Discard, io.Discard)
	if err == nil || errors.Is(err, errGoalMissed) || !strings.Contains(err.Error(), "peer") {
		t.Fatalf("run against a denying peer: err = %v, want a measurement error naming the peer", err)
	}
	// The peer may be held to its own expected outcome.
	err = run(context.Background(), rlsArgs(target, baseline, "-peer", peer, "-rounds", "1", "-peer-expect", "over_limit"), io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("run with -peer-expect over_limit: %v", err)
	}
}
