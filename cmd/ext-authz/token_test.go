package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/redisconf"
	"github.com/ext-authz/ext-authz/internal/redistest"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens"
)

const quickstartKeys = "../../examples/quickstart/keys/"

func mintCmd(t *testing.T, args ...string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), append([]string{"token", "mint"}, args...), &out, &errOut, func(string) string { return "" }); err != nil {
		t.Fatalf("token mint %v: %v (%s)", args, err, errOut.String())
	}
	return strings.Fields(out.String())
}

func quickstartTicketVerifier(t *testing.T) *tokens.TicketVerifier {
	v, err := tokens.NewTicketVerifier(tokens.TicketConfig{Keys: []tokens.TicketKeyConfig{
		{ID: "dev-1", File: quickstartKeys + "ticket-hs256.key"},
		{ID: "dev-ed-1", Algorithm: "EdDSA", File: quickstartKeys + "ticket-ed25519.pub.pem"},
	}}, tokens.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenMintTickets(t *testing.T) {
	v := quickstartTicketVerifier(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"HS256", []string{"--key-file", quickstartKeys + "ticket-hs256.key", "--kid", "dev-1"}},
		{"EdDSA", []string{"--key-file", quickstartKeys + "ticket-ed25519.pem", "--kid", "dev-ed-1", "--alg", "EdDSA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks := mintCmd(t, append([]string{"--kind", "udb-ticket", "--count", "5", "--user-prefix", "load-", "--app", "shop", "--scope", "a b", "--ttl", "10m"}, tc.args...)...)
			if len(toks) != 5 {
				t.Fatalf("minted %d tokens, want 5", len(toks))
			}
			seen := map[string]bool{}
			for _, tok := range toks {
				p, err := v.Verify(context.Background(), tok)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(p.Subject, "load-") || p.AppID != "shop" || len(p.Scopes) != 2 || time.Until(p.Expiry) > 10*time.Minute {
					t.Errorf("principal = %+v", p)
				}
				seen[p.Subject] = true
			}
			if len(seen) != 5 {
				t.Errorf("distinct users = %d, want 5", len(seen))
			}
		})
	}
}

func TestTokenMintJWT(t *testing.T) {
	v, err := tokens.NewJWTVerifier(tokens.JWTConfig{Issuers: []tokens.IssuerConfig{{
		Issuer: "https://issuer.quickstart.example", Audiences: []string{"quickstart"}, JWKSFile: quickstartKeys + "jwks.json",
	}}}, tokens.JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []struct{ file, kid string }{{"jwt-rs256.pem", "dev-rs256-1"}, {"jwt-es256.pem", "dev-es256-1"}} {
		toks := mintCmd(t, "--kind", "jwt", "--key-file", quickstartKeys+key.file, "--kid", key.kid,
			"--issuer", "https://issuer.quickstart.example", "--audience", "quickstart", "--subject", "alice", "--scope", "read")
		p, err := v.Verify(context.Background(), toks[0])
		if err != nil {
			t.Fatalf("%s: %v", key.file, err)
		}
		if p.Subject != "alice" || p.Method != tokens.MethodJWT || len(p.Scopes) != 1 {
			t.Errorf("principal = %+v", p)
		}
	}
}

func TestTokenMintUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"no subcommand", []string{"token"}, "token needs mint or jwks"},
		{"unknown subcommand", []string{"token", "burn"}, `unknown subcommand "burn"`},
		{"jwks without key", []string{"token", "jwks"}, "--key-file is required"},
		{"jwks with alg of another key", []string{"token", "jwks", "--key-file", quickstartKeys + "jwt-es256.pem", "--alg", "RS256"}, "holds an EC P-256 key"},
		{"no kind", []string{"token", "mint", "--key-file", "x"}, "--kind must be udb-ticket or jwt"},
		{"no key file", []string{"token", "mint", "--kind", "jwt"}, "--key-file is required"},
		{"subject with count", []string{"token", "mint", "--kind", "jwt", "--key-file", "x", "--subject", "a", "--count", "2"}, "--subject names one user"},
		{"ticket without kid", []string{"token", "mint", "--kind", "udb-ticket", "--key-file", "x"}, "--kid is required"},
		{"jwt without issuer", []string{"token", "mint", "--kind", "jwt", "--key-file", "x"}, "--issuer is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.give, &out, &errOut, func(string) string { return "" })
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
	// A key of the wrong kind is a plain error naming the file.
	err := run(context.Background(), []string{"token", "mint", "--kind", "udb-ticket", "--kid", "k", "--key-file", quickstartKeys + "jwt-rs256.pem"}, &bytes.Buffer{}, &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "jwt-rs256.pem") {
		t.Fatalf("wrong key kind: %v", err)
	}
}

// TestTokenAuthenticatorsFromConfig decodes authenticator entries as the
// config file holds them and builds them with the real dependencies: a JWKS
// endpoint for jwt (its Run and Ready are wired), a real redis-server for
// udb_session, and the dev key for udb_ticket.
func TestTokenAuthenticatorsFromConfig(t *testing.T) {
	jwks, err := os.ReadFile(quickstartKeys + "jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(jwks) }))
	defer srv.Close()
	rs := redistest.Start(t)

	doc := `
- name: jwt
  source: {authorization: Bearer}
  jwt:
    issuers:
      - issuer: https://issuer.quickstart.example
        audiences: [quickstart]
        jwks_url: ` + srv.URL + `
- name: ticket
  source: {header: x-udb-token}
  udb_ticket:
    keys: [{id: dev-1, file: ` + quickstartKeys + `ticket-hs256.key}]
- name: session
  source: {cookie: udb_session}
  udb_session: {cache_ttl: 1s, negative_cache_ttl: 50ms}
`
	var acs []authenticatorConfig
	if _, err := yamlfile.Decode("test.yaml", []byte(doc), &acs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	p := pool.New(pool.Options{})
	env := &buildEnv{logger: slog.New(slog.DiscardHandler), registry: prometheus.NewRegistry(), pool: p}
	lease := p.NewLease()
	defer func() { _ = lease.Release() }()
	redisCfg := redisconf.Config{Addrs: []string{rs.Addr}}
	built := map[string]*authz.Authenticator{}
	for i := range acs {
		if err := acs[i].validate(); err != nil {
			t.Fatal(err)
		}
		k, sec := acs[i].kind()
		a, _, err := env.authenticator(lease, &acs[i], k, sec, &redisCfg, filewatch.DigestAll(acs[i].files()))
		if err != nil {
			t.Fatal(err)
		}
		built[acs[i].Name] = a
	}

	// The seam's optional capabilities are found by type assertion.
	jwtReady, okReady := built["jwt"].Verifier.(readier)
	jwtRun, okRun := built["jwt"].Verifier.(pool.Runner)
	if !okReady || !okRun {
		t.Fatal("jwt verifier has no Run/Ready")
	}
	if _, ok := built["session"].Verifier.(pool.Runner); ok {
		t.Error("session verifier has a Run: the seam's capabilities changed")
	}
	if jwtReady.Ready() == nil {
		t.Fatal("jwt ready before its keys were fetched")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- jwtRun.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for jwtReady.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("jwt never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	tok := mintCmd(t, "--kind", "jwt", "--key-file", quickstartKeys+"jwt-es256.pem", "--kid", "dev-es256-1",
		"--issuer", "https://issuer.quickstart.example", "--audience", "quickstart", "--subject", "erin")[0]
	if p, err := built["jwt"].Verifier.Verify(context.Background(), tok); err != nil || p.Subject != "erin" {
		t.Fatalf("jwt: %+v, %v", p, err)
	}

	tk := mintCmd(t, "--kind", "udb-ticket", "--key-file", quickstartKeys+"ticket-hs256.key", "--kid", "dev-1", "--subject", "frank")[0]
	if p, err := built["ticket"].Verifier.Verify(context.Background(), tk); err != nil || p.Subject != "frank" {
		t.Fatalf("ticket: %+v, %v", p, err)
	}

	sess := built["session"].Verifier
	const token = "Zm9vYmFyLXNlc3Npb24tMDAwMQ"
	if _, err := sess.Verify(context.Background(), token); !errors.Is(err, tokens.ErrUnknownCredential) {
		t.Fatalf("unknown session: %v", err)
	}
	if _, err := rs.Do("HSET", "udb:session:7d90016049de674c6e1674d479c59602c6833aed3bddda1c9a8b9e9db5b23be6", "uid", "gina"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past negative_cache_ttl
	if p, err := sess.Verify(context.Background(), token); err != nil || p.Subject != "gina" {
		t.Fatalf("session: %+v, %v", p, err)
	}
}

func TestSessionAuthenticatorNeedsRedis(t *testing.T) {
	p := pool.New(pool.Options{})
	env := &buildEnv{logger: slog.New(slog.DiscardHandler), pool: p}
	ac := &authenticatorConfig{Name: "s", Source: authz.CredentialSource{Header: "x-s"}, UDBSession: &tokens.SessionConfig{}}
	k, sec := ac.kind()
	_, _, err := env.authenticator(p.NewLease(), ac, k, sec, &redisconf.Config{}, nil)
	if err == nil || !strings.Contains(err.Error(), "udb_session: needs the redis section") {
		t.Fatalf("err = %v", err)
	}
}
