package rls_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	"github.com/ext-authz/ext-authz/ratelimit/ratelimittest"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

var update = flag.Bool("update", false, "rewrite golden files")

// paths are the two ways to register the server: the lean wire path the
// service uses (rls.Register behind extauthz.Codec) and the generated one
// (proto messages through grpc-go's codec), which every test compares.
var paths = []string{"lean", "proto"}

// serve runs s on the lean path (as internal/server does) on a real
// loopback socket and returns a generated client.
func serve(t testing.TB, s *rls.Server) pb.RateLimitServiceClient {
	t.Helper()
	return servePath(t, s, "lean")
}

// servePath runs s registered the given way (see paths).
func servePath(t testing.TB, s *rls.Server, path string) pb.RateLimitServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var gs *grpc.Server
	switch path {
	case "lean":
		gs = grpc.NewServer(grpc.ForceServerCodecV2(extauthz.Codec{}))
		rls.Register(gs, s)
	case "proto":
		gs = grpc.NewServer()
		pb.RegisterRateLimitServiceServer(gs, s)
	default:
		t.Fatalf("unknown path %q", path)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewRateLimitServiceClient(conn)
}

func limiter(t testing.TB, store ratelimit.Store, opts ratelimit.Options) *ratelimit.Limiter {
	clk := ratelimittest.NewClock(time.Unix(1_700_000_025, 0))
	opts.Now = clk.Now
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	return ratelimit.New(store, ratelimittest.Rules(t), opts)
}

// TestGolden sends each testdata/*.txt request (protojson) several times
// and compares every response with the part after the separator.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			reqText, _, _ := strings.Cut(string(data), "\n----\n")
			var req pb.RateLimitRequest
			if err := protojson.Unmarshal([]byte(reqText), &req); err != nil {
				t.Fatalf("request: %v", err)
			}
			headers := strings.Contains(f, "headers")
			for _, path := range paths {
				golden(t, f, data, reqText, &req, servePath(t, rls.New(limiter(t, memory.New(memory.Options{}), ratelimit.Options{}), rls.Options{ResponseHeaders: headers}), path), path)
			}
		})
	}
}

// golden checks one golden file against one server.
func golden(t *testing.T, f string, data []byte, reqText string, req *pb.RateLimitRequest, c pb.RateLimitServiceClient, path string) {
	t.Helper()
	var out bytes.Buffer
	out.WriteString(strings.TrimRight(reqText, "\n"))
	out.WriteString("\n----\n")
	for i := range 3 {
		resp, err := c.ShouldRateLimit(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: call %d: %v", path, i, err)
		}
		b, _ := protojson.Marshal(resp)
		// protojson's spacing is deliberately unstable; re-indent.
		var ind bytes.Buffer
		var compact bytes.Buffer
		_ = json.Compact(&compact, b)
		_ = json.Indent(&ind, compact.Bytes(), "", "  ")
		out.WriteString("# call " + string(rune('1'+i)) + "\n")
		out.Write(ind.Bytes())
		out.WriteString("\n")
	}
	if *update {
		if path == "proto" {
			return // written from the lean path's answers; must be equal
		}
		if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := out.String(); got != string(data) {
		t.Errorf("%s: response differs from %s (run with -update to see):\n%s", path, f, got)
	}
}

func TestInvalidRequests(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			testInvalidRequests(t, servePath(t, rls.New(limiter(t, memory.New(memory.Options{}), ratelimit.Options{}), rls.Options{}), path))
		})
	}
}

func testInvalidRequests(t *testing.T, c pb.RateLimitServiceClient) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{"no domain", `{"descriptors":[{"entries":[{"key":"user","value":"a"}]}]}`, "domain must not be empty"},
		{"no descriptors", `{"domain":"contract"}`, "descriptor list must not be empty"},
		{"negative hits", `{"domain":"contract","descriptors":[{"entries":[{"key":"user","value":"a"}],"isNegativeHits":true}]}`, "is_negative_hits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req pb.RateLimitRequest
			if err := protojson.Unmarshal([]byte(tt.give), &req); err != nil {
				t.Fatal(err)
			}
			_, err := c.ShouldRateLimit(context.Background(), &req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want InvalidArgument %q", err, tt.want)
			}
		})
	}
}

type failingStore struct{}

func (failingStore) Increment(context.Context, []ratelimit.Op) error { return errors.New("down") }

func TestStoreFailure(t *testing.T) {
	// "open" and "t429" are defined (without descriptors), so the limit
	// override each request carries applies there.
	rules, err := envoyconfig.Parse([]envoyconfig.File{
		{Name: "contract.yaml", Content: []byte(ratelimittest.Limits)},
		{Name: "open.yaml", Content: []byte("domain: open\ndescriptors: []\n")},
		{Name: "t429.yaml", Content: []byte("domain: t429\ndescriptors: []\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := ratelimit.New(failingStore{}, rules, ratelimit.Options{Timeout: time.Second, Domains: map[string]ratelimit.FailurePolicy{
		"open": {Mode: ratelimit.FailOpen}, "t429": {DenyStatus: 429}, "nowhere": {DenyStatus: 429},
	}})
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			testStoreFailure(t, servePath(t, rls.New(l, rls.Options{ResponseHeaders: true}), path))
		})
	}
}

func testStoreFailure(t *testing.T, c pb.RateLimitServiceClient) {
	call := func(domain string) (*pb.RateLimitResponse, error) {
		var req pb.RateLimitRequest
		_ = protojson.Unmarshal([]byte(`{"domain":"`+domain+`","descriptors":[{"entries":[{"key":"k","value":"v"}],"limit":{"requestsPerUnit":5,"unit":"MINUTE"}}]}`), &req)
		return c.ShouldRateLimit(context.Background(), &req)
	}
	if _, err := call("contract"); status.Code(err) != codes.Unavailable {
		t.Errorf("fail closed 503: err %v, want Unavailable", err)
	}
	if r, err := call("open"); err != nil || r.OverallCode != pb.RateLimitResponse_OK {
		t.Errorf("fail open: %v %v", r, err)
	}
	if r, err := call("t429"); err != nil || r.OverallCode != pb.RateLimitResponse_OVER_LIMIT || r.Statuses[0].Code != pb.RateLimitResponse_OVER_LIMIT {
		t.Errorf("fail closed 429: %v %v", r, err)
	}
	// An override in a domain no file defines creates no limit, as in
	// envoyproxy/ratelimit: OK with no limit and no headers, and the dead
	// store is not asked.
	r, err := call("nowhere")
	if err != nil || r.OverallCode != pb.RateLimitResponse_OK || r.Statuses[0].GetCurrentLimit() != nil || len(r.ResponseHeadersToAdd) != 0 {
		t.Errorf("override in an undefined domain: %v %v", r, err)
	}
}
