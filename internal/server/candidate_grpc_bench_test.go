package server

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/internal/telemetry"
)

// BenchmarkCandidatePolicyGRPC is BenchmarkCandidatePolicy through the
// whole service: Checks from a gRPC client over a loopback socket to a
// server built by New (admission, metrics, decision log), 16 in flight.
// The client runs in the same process, so cpu-ns/op counts its CPU too:
// the candidate's share of the server's own CPU is larger than the ratio
// here, and smaller than BenchmarkCandidatePolicy's.
func BenchmarkCandidatePolicyGRPC(b *testing.B) {
	dir := b.TempDir()
	keys := servicetest.KeysFile(b, dir)
	limits := filepath.Join(dir, "limits.yaml")
	servicetest.WriteFile(b, limits, "domain: bench\ndescriptors:\n  - key: route\n    value: api\n    descriptors:\n      - key: user\n        rate_limit: {unit: second, requests_per_unit: 1000000000}\n")
	agree := filepath.Join(dir, "agree.yaml")
	servicetest.WriteFile(b, agree, benchCandidatePolicy(""))
	disagree := filepath.Join(dir, "disagree.yaml")
	servicetest.WriteFile(b, disagree, benchCandidatePolicy("      require: {scopes: [nobody]}\n"))
	base := `server: {grpc_address: "127.0.0.1:0", drain_delay: 1ms, reload_interval: -1s}
admin: {address: "127.0.0.1:0"}
telemetry: {log: {level: warn}}
authenticators:
  - name: keys
    source: {header: x-api-key}
    strip_credential: true
    api_key: {file: "` + keys + `"}
  - name: jwt
    source: {authorization: Bearer}
    jwt:
      issuers: [{issuer: "https://issuer.quickstart.example", audiences: [quickstart], jwks_file: "` + servicetest.QuickstartKeys() + `jwks.json"}]
rate_limit:
  files: ["` + limits + `"]
  backend: memory
` + benchCandidatePolicy("")
	req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/api/orders/42",
		Headers: [][2]string{{"x-api-key", servicetest.KeyAlice}, {"user-agent", "Mozilla/5.0 (bench)"}, {"accept", "application/json"},
			{"x-forwarded-for", "203.0.113.7"}, {"x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"}}, RequestID: "r"})
	for _, c := range []struct{ name, section string }{
		{"off", ""},
		{"100/agree", "policy_candidate: {file: " + agree + "}\n"},
		{"100/disagree", "policy_candidate: {file: " + disagree + "}\n"},
	} {
		b.Run("candidate="+c.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(base+c.section), 0o600); err != nil {
				b.Fatal(err)
			}
			cfg, err := generation.Load(path, func(string) string { return "" })
			if err != nil {
				b.Fatal(err)
			}
			tel, err := telemetry.New(cfg.Telemetry, io.Discard, telemetry.Options{})
			if err != nil {
				b.Fatal(err)
			}
			svc, err := New(path, cfg, tel, Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := svc.Listen(); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Serve(ctx) }()
			defer func() {
				cancel()
				<-done
				_ = svc.Close()
			}()
			conn, err := grpc.NewClient(svc.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			client := authv3.NewAuthorizationClient(conn)
			if resp, err := client.Check(ctx, req); err != nil || resp.GetStatus().GetCode() != 0 {
				b.Fatalf("warm-up: %v %v", resp.GetStatus(), err)
			}
			b.ReportAllocs()
			benchcpu.Report(b)
			b.SetParallelism(8) // 16 in flight on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Check(ctx, req)
					if err != nil || resp.GetStatus().GetCode() != 0 {
						b.Errorf("Check: %v %v", resp.GetStatus(), err)
						return
					}
				}
			})
		})
	}
}
