package main

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
)

// BenchmarkCheckWithTokens measures the whole Check handler (proto in, proto
// out, no network) with the real tokens verifiers: a cached JWT (RS256,
// ES256), a cached UDB ticket and a cached UDB session (real Redis behind
// it), plus the uncached RS256 JWT for contrast, against a baseline whose
// verifier does nothing (the cost of the pipeline and the proto adapter).
func BenchmarkCheckWithTokens(b *testing.B) {
	srv := redistest.Start(b)
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{srv.Addr}, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })

	jwtCfg := tokens.JWTConfig{Issuers: []tokens.IssuerConfig{{
		Issuer: "https://issuer.quickstart.example", Audiences: []string{"quickstart"}, JWKSFile: servicetest.QuickstartKeys() + "jwks.json",
	}}}
	jwtV, err := tokens.NewJWTVerifier(jwtCfg, tokens.JWTOptions{})
	if err != nil {
		b.Fatal(err)
	}
	jwtCfg.Cache.Size = -1
	jwtUncached, err := tokens.NewJWTVerifier(jwtCfg, tokens.JWTOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ticketV, err := tokens.NewTicketVerifier(tokens.TicketConfig{Keys: []tokens.TicketKeyConfig{{ID: "dev-1", File: servicetest.QuickstartKeys() + "ticket-hs256.key"}}}, tokens.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sessCfg := tokens.SessionConfig{Timeout: time.Second}
	sessV, err := tokens.NewSessionVerifier(sessCfg, tokensredis.NewStore(client), tokens.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const session = "sess_benchmark_0123456789abcdef"
	sessCfg.ApplyDefaults()
	if err := client.HSet(context.Background(), sessCfg.SessionKey(session), "uid", "dave", "scope", "read").Err(); err != nil {
		b.Fatal(err)
	}

	auths := []*authz.Authenticator{
		{Name: "jwt", Source: authz.CredentialSource{Authorization: "Bearer"}, Verifier: jwtV, StripCredential: true},
		{Name: "jwt-uncached", Source: authz.CredentialSource{Header: "x-jwt-uncached"}, Verifier: jwtUncached},
		{Name: "ticket", Source: authz.CredentialSource{Header: "x-udb-token"}, Verifier: ticketV, StripCredential: true},
		{Name: "session", Source: authz.CredentialSource{Cookie: "udb_session"}, Verifier: sessV},
		// The baseline: a verifier that does no work, so the difference
		// to it is the cost of the tokens verifier inside Check.
		{Name: "fixed", Source: authz.CredentialSource{Header: "x-fixed"}, Verifier: authz.VerifierFunc(
			func(context.Context, string) (tokens.Principal, error) {
				return tokens.Principal{Subject: "alice", Issuer: "fixed", Method: tokens.MethodAPIKey, Scopes: []string{"read"}}, nil
			})},
	}
	rule := func(name, prefix, auth string) authz.RuleConfig {
		return authz.RuleConfig{Name: name, Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: prefix}}, Action: authz.ActionAuthenticate, Authenticators: []string{auth}}
	}
	p, err := authz.NewPipeline(authz.Config{Realm: "bench", Rules: []authz.RuleConfig{
		rule("jwt", "/jwt/", "jwt"), rule("jwt-uncached", "/uncached/", "jwt-uncached"),
		rule("ticket", "/ticket/", "ticket"), rule("session", "/session/", "session"), rule("fixed", "/fixed/", "fixed"),
	}}, auths, authz.Options{})
	if err != nil {
		b.Fatal(err)
	}
	h := extauthz.New(p, extauthz.Options{})

	mint := func(args ...string) string {
		var out strings.Builder
		if err := cli.Token(context.Background(), append([]string{"mint", "--subject", "alice", "--scope", "read"}, args...), &out); err != nil {
			b.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	rs := mint("--kind", "jwt", "--key-file", servicetest.QuickstartKeys()+"jwt-rs256.pem", "--kid", "dev-rs256-1", "--issuer", "https://issuer.quickstart.example", "--audience", "quickstart")
	es := mint("--kind", "jwt", "--key-file", servicetest.QuickstartKeys()+"jwt-es256.pem", "--kid", "dev-es256-1", "--issuer", "https://issuer.quickstart.example", "--audience", "quickstart")
	tk := mint("--kind", "udb-ticket", "--key-file", servicetest.QuickstartKeys()+"ticket-hs256.key", "--kid", "dev-1")

	common := [][2]string{{"user-agent", "bench"}, {"accept", "*/*"}}
	cases := []struct {
		name   string
		path   string
		header [2]string
	}{
		{"auth=baseline-no-op-verifier", "/fixed/orders", [2]string{"x-fixed", "anything"}},
		{"auth=jwt/alg=RS256/cache=hit", "/jwt/orders", [2]string{"authorization", "Bearer " + rs}},
		{"auth=jwt/alg=ES256/cache=hit", "/jwt/orders", [2]string{"authorization", "Bearer " + es}},
		{"auth=udb-ticket/alg=HS256/cache=hit", "/ticket/orders", [2]string{"x-udb-token", tk}},
		{"auth=udb-session/cache=hit", "/session/orders", [2]string{"cookie", "theme=dark; udb_session=" + session}},
		{"auth=jwt/alg=RS256/cache=miss", "/uncached/orders", [2]string{"x-jwt-uncached", rs}},
	}
	for _, c := range cases {
		req := extauthz.BuildCheckRequest(extauthz.HTTPRequest{Method: "GET", Host: "api.example.com", Path: c.path,
			Headers: append([][2]string{c.header}, common...), RequestID: "r"})
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			if resp, _ := h.Check(ctx, req); resp.GetStatus().GetCode() != 0 {
				b.Fatalf("denied: %v", resp.GetDeniedResponse().GetBody())
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := h.Check(ctx, req)
				if resp.GetStatus().GetCode() != 0 {
					b.Fatalf("denied: %v", resp.GetStatus())
				}
			}
		})
	}
}
