package extauthz_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// TestLeanThroughInterceptors: the lean Check behind a chain of
// interceptors, as the service runs it, over a real socket with the
// generated client and many calls in flight. Every answer equals
// Server.Check's for the same request (the decision id aside: calls are
// numbered in the order they arrive), every interceptor sees Check's
// method name, the Server and the decoded call, and the decision each
// call observed is the one it was answered with.
func TestLeanThroughInterceptors(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.golden")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	var reqs []*authv3.CheckRequest
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		reqText, _, _ := strings.Cut(string(raw), separator)
		req := &authv3.CheckRequest{}
		if err := protojson.Unmarshal([]byte(stripComments(reqText)), req); err != nil {
			t.Fatalf("%s: request: %v", file, err)
		}
		reqs = append(reqs, req)
	}
	// What Server.Check answers, called directly.
	ref := extauthz.New(testPipeline(t), extauthz.Options{})
	want := make([]*authv3.CheckResponse, len(reqs))
	for i, req := range reqs {
		resp, err := ref.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = withoutDecisionID(resp)
	}

	var (
		observedMu sync.Mutex
		observed   = map[string]authz.Code{} // decision id → code
		calls      atomic.Int64
		wrong      atomic.Value
	)
	var srvCheck *extauthz.Server
	interceptor := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if info.FullMethod != authv3.Authorization_Check_FullMethodName || info.Server != srvCheck {
				wrong.Store(name + ": info " + info.FullMethod)
			}
			if req == nil {
				wrong.Store(name + ": no request")
			}
			if name == "outer" {
				calls.Add(1)
			}
			return handler(ctx, req)
		}
	}
	srvCheck = extauthz.New(testPipeline(t), extauthz.Options{
		Observe: func(_ context.Context, _ *authz.Request, d *authz.Decision, _ time.Duration) {
			observedMu.Lock()
			observed[d.ID] = d.Code
			observedMu.Unlock()
		},
	})
	srv := grpc.NewServer(grpc.ForceServerCodecV2(extauthz.Codec{}),
		grpc.ChainUnaryInterceptor(interceptor("outer"), interceptor("middle"), interceptor("inner")))
	extauthz.Register(srv, srvCheck)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(); srv.Stop(); <-done }()
	client := authv3.NewAuthorizationClient(conn)

	const workers, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for r := range rounds {
				i := (w + r) % len(reqs)
				got, err := client.Check(ctx, reqs[i])
				if err != nil {
					errs <- err.Error()
					return
				}
				id := decisionID(got)
				observedMu.Lock()
				code, seen := observed[id]
				observedMu.Unlock()
				if !seen || (code == authz.OK) != (got.GetStatus().GetCode() == 0) {
					errs <- "answer " + id + " is not the decision observed for it"
					return
				}
				if g := withoutDecisionID(got); !proto.Equal(g, want[i]) {
					errs <- files[i] + ": lean answer differs:\n" + protojson.Format(g) + "\nwant:\n" + protojson.Format(want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if w := wrong.Load(); w != nil {
		t.Fatal(w)
	}
	if n := calls.Load(); n != workers*rounds {
		t.Fatalf("interceptors saw %d calls, want %d", n, workers*rounds)
	}
}

func decisionID(resp *authv3.CheckResponse) string {
	return resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue()
}

// withoutDecisionID is resp with an empty decision id, in its metadata and
// in a denial's body (which does not carry it: only the request id).
func withoutDecisionID(resp *authv3.CheckResponse) *authv3.CheckResponse {
	out := proto.Clone(resp).(*authv3.CheckResponse)
	if f := out.GetDynamicMetadata().GetFields()["decision_id"]; f != nil {
		f.Kind = nil
	}
	return out
}
