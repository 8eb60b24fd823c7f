package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/authz/extauthz"
)

var update = flag.Bool("update", false, "rewrite the expected responses in testdata/*.golden")

const separator = "\n----------\n"

// testPipeline is authztest.GoldenPipeline, the pipeline the golden files
// were written against.
func testPipeline(t testing.TB) *authz.Pipeline {
	t.Helper()
	p, err := authztest.GoldenPipeline()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGolden runs every testdata/*.golden: a CheckRequest in protojson, a
// separator line, and the CheckResponse expected from the test pipeline.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.golden")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".golden"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			reqText, wantText, ok := strings.Cut(string(raw), separator)
			if !ok {
				t.Fatalf("%s: no %q separator", file, strings.TrimSpace(separator))
			}
			req := &authv3.CheckRequest{}
			if err := protojson.Unmarshal([]byte(stripComments(reqText)), req); err != nil {
				t.Fatalf("%s: request: %v", file, err)
			}
			srv := extauthz.New(testPipeline(t), extauthz.Options{})
			got, err := srv.Check(context.Background(), req)
			if err != nil {
				t.Fatalf("Check returned a gRPC error: %v", err)
			}
			if *update {
				if err := os.WriteFile(file, []byte(reqText+separator+canonicalJSON(t, got)), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := &authv3.CheckResponse{}
			if err := protojson.Unmarshal([]byte(wantText), want); err != nil {
				t.Fatalf("%s: expected response: %v", file, err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s: response differs (run go test -update to accept)\ngot:\n%s\nwant:\n%s", file, canonicalJSON(t, got), wantText)
			}
		})
	}
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// canonicalJSON renders m with stable formatting (protojson randomises
// whitespace on purpose).
func canonicalJSON(t testing.TB, m proto.Message) string {
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n"
}

// TestGoldenLean runs every golden request through a real gRPC server
// with Check registered on the lean wire path (Register and the Codec),
// over a loopback socket with the generated client: the answers are the
// golden ones, as Server.Check gives them.
func TestGoldenLean(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.golden")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".golden"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			reqText, wantText, _ := strings.Cut(string(raw), separator)
			req := &authv3.CheckRequest{}
			if err := protojson.Unmarshal([]byte(stripComments(reqText)), req); err != nil {
				t.Fatalf("%s: request: %v", file, err)
			}
			want := &authv3.CheckResponse{}
			if err := protojson.Unmarshal([]byte(wantText), want); err != nil {
				t.Fatalf("%s: expected response: %v", file, err)
			}
			srv := grpc.NewServer(grpc.ForceServerCodecV2(extauthz.Codec{}))
			extauthz.Register(srv, extauthz.New(testPipeline(t), extauthz.Options{}))
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
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s: lean answer differs\ngot:\n%s\nwant:\n%s", file, canonicalJSON(t, got), wantText)
			}
		})
	}
}
