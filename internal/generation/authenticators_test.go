package generation

import (
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
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens"
)

// TestTokenAuthenticatorsFromConfig decodes authenticator entries as the
// config file holds them and builds them with the real dependencies: a JWKS
// endpoint for jwt (its Run and Ready are wired), a real redis-server for
// udb_session, and the dev key for udb_ticket.
func TestTokenAuthenticatorsFromConfig(t *testing.T) {
	jwks, err := os.ReadFile(servicetest.QuickstartKeys() + "jwks.json")
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
    keys: [{id: dev-1, file: ` + servicetest.QuickstartKeys() + `ticket-hs256.key}]
- name: session
  source: {cookie: udb_session}
  udb_session: {cache_ttl: 1s, negative_cache_ttl: 50ms}
`
	var acs []AuthenticatorConfig
	if _, err := yamlfile.Decode("test.yaml", []byte(doc), &acs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	p := pool.New(pool.Options{})
	env := &Env{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Pool: p}
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
	tok := servicetest.MintJWT(t, "jwt-es256.pem", "dev-es256-1", "quickstart", "erin")
	if p, err := built["jwt"].Verifier.Verify(context.Background(), tok); err != nil || p.Subject != "erin" {
		t.Fatalf("jwt: %+v, %v", p, err)
	}

	tk := servicetest.MintTicket(t, "frank")
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
	env := &Env{Logger: slog.New(slog.DiscardHandler), Pool: p}
	ac := &AuthenticatorConfig{Name: "s", Source: authz.CredentialSource{Header: "x-s"}, UDBSession: &tokens.SessionConfig{}}
	k, sec := ac.kind()
	_, _, err := env.authenticator(p.NewLease(), ac, k, sec, &redisconf.Config{}, nil)
	if err == nil || !strings.Contains(err.Error(), "udb_session: needs the redis section") {
		t.Fatalf("err = %v", err)
	}
}
