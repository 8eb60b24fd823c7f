package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/servicetest"
)

// benchCandidatePolicy is the policy of BenchmarkCandidatePolicy; %s is
// the api rule's extra requirement.
func benchCandidatePolicy(require string) string {
	return `policy:
  realm: bench
  identity_headers:
    claims: {team: x-auth-team}
  rules:
    - name: health
      match: {path: {exact: /healthz}}
      action: allow
    - name: internal
      match: {path: {prefix: /internal/}}
      action: deny
    - name: admin
      match: {path: {prefix: /admin/}}
      action: authenticate
      authenticators: [keys]
      require: {scopes: [admin]}
    - name: api
      match: {hosts: ["*.example.com"], path: {prefix: /api/}}
      action: authenticate
      authenticators: [keys, jwt]
` + require + `      rate_limits:
        domain: bench
        descriptors:
          - actions:
              - generic_key: {descriptor_key: route, descriptor_value: api}
              - identity: {field: subject, descriptor_key: user}
`
}

// BenchmarkCandidatePolicy is the whole Check handler (proto in, proto
// out) over a compiled generation (API keys, quickstart JWTs, in-memory
// rate limits) with no candidate policy, and with one on 100 % of
// requests that agrees (the same policy) or disagrees on every request
// (the api rule needs a scope nobody has; its log lines are bounded). The
// ratio of cpu-ns/op to candidate=off is the candidate's cost.
func BenchmarkCandidatePolicy(b *testing.B) {
	dir := b.TempDir()
	keys := servicetest.KeysFile(b, dir)
	limits := filepath.Join(dir, "limits.yaml")
	servicetest.WriteFile(b, limits, "domain: bench\ndescriptors:\n  - key: route\n    value: api\n    descriptors:\n      - key: user\n        rate_limit: {unit: second, requests_per_unit: 1000000000}\n")
	agree := filepath.Join(dir, "agree.yaml")
	servicetest.WriteFile(b, agree, benchCandidatePolicy(""))
	disagree := filepath.Join(dir, "disagree.yaml")
	servicetest.WriteFile(b, disagree, benchCandidatePolicy("      require: {scopes: [nobody]}\n"))
	base := `authenticators:
  - name: keys
    source: {header: x-api-key}
    strip_credential: true
    api_key: {file: "` + keys + `"}
  - name: jwt
    source: {authorization: Bearer}
    strip_credential: true
    jwt:
      issuers:
        - issuer: https://issuer.quickstart.example
          audiences: [quickstart]
          jwks_file: ` + servicetest.QuickstartKeys() + `jwks.json
rate_limit:
  files: ["` + limits + `"]
  backend: memory
` + benchCandidatePolicy("")
	jwt := servicetest.MintJWT(b, "jwt-rs256.pem", "dev-rs256-1", "quickstart", "erin")
	headers := [][2]string{{"user-agent", "Mozilla/5.0 (bench)"}, {"accept", "application/json"},
		{"x-forwarded-for", "203.0.113.7"}, {"x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"}}
	for _, cred := range []struct {
		name   string
		header [2]string
	}{
		{"api-key", [2]string{"x-api-key", servicetest.KeyAlice}},
		{"jwt", [2]string{"authorization", "Bearer " + jwt}},
	} {
		req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "shop.example.com", Path: "/api/orders/42",
			Headers: append([][2]string{cred.header}, headers...), RequestID: "r"})
		for _, c := range []struct {
			name, section string
		}{
			{"off", ""},
			{"100/agree", "policy_candidate: {file: " + agree + "}\n"},
			{"100/disagree", "policy_candidate: {file: " + disagree + "}\n"},
		} {
			b.Run("credential="+cred.name+"/candidate="+c.name, func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "config.yaml")
				if err := os.WriteFile(path, []byte(base+c.section), 0o600); err != nil {
					b.Fatal(err)
				}
				cfg, err := generation.Load(path, func(string) string { return "" })
				if err != nil {
					b.Fatal(err)
				}
				g, err := generation.Compile(&generation.Env{Pool: pool.New(pool.Options{})}, cfg)
				if err != nil {
					b.Fatal(cfg.Annotate(err))
				}
				defer func() { _ = g.Release() }()
				g.ApplyLimits()
				d := newCandidateDecider(authz.NewLive(g.Pipeline), g.Candidate, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
				srv := extauthz.New(d, extauthz.Options{})
				ctx := context.Background()
				b.ReportAllocs()
				benchcpu.Report(b)
				for b.Loop() {
					resp, _ := srv.Check(ctx, req)
					if resp.GetStatus().GetCode() != 0 {
						b.Fatalf("denied: %v", resp.GetStatus())
					}
				}
			})
		}
	}
}
