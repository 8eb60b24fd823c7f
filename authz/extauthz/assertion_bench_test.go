package extauthz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/benchcpu"
	"github.com/ext-authz/ext-authz/tokens"
	"github.com/ext-authz/ext-authz/tokens/assertion"
)

// assertionBenchPipeline is the golden pipeline's api rule (a cached API
// key verification, identity headers), with the signed assertion as
// asked: off, cached per identity and audience, or signed per decision.
func assertionBenchPipeline(b *testing.B, mode, alg string) *authz.Pipeline {
	b.Helper()
	cfg := authz.Config{
		IdentityHeaders: authz.IdentityHeaders{Claims: map[string]string{"team": "x-auth-team"}},
		Rules: []authz.RuleConfig{{Name: "api", Match: authz.MatchConfig{Hosts: []string{"*.example.com"}, Path: authz.PathMatch{Prefix: "/api/"}},
			Action: authz.ActionAuthenticate, Authenticators: []string{"keys", "bearer"}}},
	}
	keys := authztest.Credentials{
		"k-alice": {Subject: "alice", Issuer: "keys", Method: tokens.MethodAPIKey, Scopes: []string{"read"}, Claims: map[string]any{"team": "payments"}},
	}
	auths := []*authz.Authenticator{
		{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, StripCredential: true, Verifier: keys},
		{Name: "bearer", Source: authz.CredentialSource{Authorization: "Bearer"}, Verifier: authztest.Credentials{}},
	}
	opts := authz.Options{}
	if mode != "off" {
		ring, err := assertion.NewGeneratedRing(alg, assertion.RingOptions{})
		if err != nil {
			b.Fatal(err)
		}
		m, err := assertion.NewMinter(ring, assertion.MinterOptions{Issuer: "https://ext-authz.example", Claims: []string{"team"},
			PerDecision: mode == "per-decision"})
		if err != nil {
			b.Fatal(err)
		}
		opts.Assertion = &authz.AssertionOptions{Header: "x-ext-authz-assertion", Audience: "api", Asserter: m}
	}
	p, err := authz.NewPipeline(cfg, auths, opts)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkCheckAssertion is the cached authenticated Check (proto in,
// proto out) with the upstream assertion off, on (cached: the verdict of
// a cached verification pays no signature) and per decision (one
// signature per Check), for both algorithms. Compare in one run:
// assertion=cached against assertion=off is the cost of the feature.
func BenchmarkCheckAssertion(b *testing.B) {
	req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: "/api/orders?page=2",
		Headers: [][2]string{{"x-api-key", "k-alice"}, {"user-agent", "bench"}, {"accept", "*/*"}}, RequestID: "r"})
	for _, c := range []struct{ mode, alg string }{
		{"off", ""}, {"cached", assertion.ES256}, {"cached", assertion.EdDSA},
		{"per-decision", assertion.ES256}, {"per-decision", assertion.EdDSA},
	} {
		name := "assertion=" + c.mode
		if c.alg != "" {
			name += "/alg=" + c.alg
		}
		srv := extauthz.New(assertionBenchPipeline(b, c.mode, c.alg), extauthz.Options{})
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			benchcpu.Report(b)
			ctx := context.Background()
			for b.Loop() {
				resp, _ := srv.Check(ctx, req)
				if resp.GetStatus().GetCode() != 0 {
					b.Fatal("denied")
				}
				if c.mode != "off" && !strings.HasPrefix(resp.GetOkResponse().GetHeaders()[len(resp.GetOkResponse().GetHeaders())-1].GetHeader().GetValue(), "eyJ") {
					b.Fatal("no assertion")
				}
			}
		})
	}
}
