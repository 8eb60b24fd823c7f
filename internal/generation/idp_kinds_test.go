package generation

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/redisconf"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens"
)

// TestIdPAuthenticatorsFromConfig decodes introspection and mtls entries
// as the config file holds them and builds them: the introspection
// verifier calls a real RFC 7662 endpoint with the secret from its file,
// which is watched, so a rotated secret makes a new verifier (pool key);
// the mtls verifier reads the peer.
func TestIdPAuthenticatorsFromConfig(t *testing.T) {
	var mu sync.Mutex
	secretCalls := map[string]int{}
	calls := func(secret string) int {
		mu.Lock()
		defer mu.Unlock()
		return secretCalls[secret]
	}
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, _ := r.BasicAuth()
		mu.Lock()
		secretCalls[pass]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"active": pass == "s1" || pass == "s2", "sub": "alice"})
	}))
	defer as.Close()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `
- name: oauth
  source: {authorization: Bearer}
  introspection: {endpoint: "` + as.URL + `/i", allow_http: true, client_id: gw, client_secret_file: "` + secret + `"}
- name: peers
  source: {peer: true}
  mtls: {allow: [{trust_domain: example.org}]}
`
	var acs []AuthenticatorConfig
	if _, err := yamlfile.Decode("test.yaml", []byte(doc), &acs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	p := pool.New(pool.Options{})
	env := &Env{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Pool: p}
	lease := p.NewLease()
	defer func() { _ = lease.Release() }()
	keys := map[string]string{}
	for i := range acs {
		ac := &acs[i]
		if err := ac.validate(); err != nil {
			t.Fatal(err)
		}
		k, sec := ac.kind()
		a, key, err := env.authenticator(lease, ac, k, sec, &redisconf.Config{}, filewatch.DigestAll(ac.files()))
		if err != nil {
			t.Fatal(err)
		}
		keys[ac.Name] = key
		switch ac.Name {
		case "oauth":
			if got := ac.files(); len(got) != 1 || got[0] != secret {
				t.Fatalf("files = %v, want the secret file watched", got)
			}
			if pr, err := a.Verifier.Verify(context.Background(), "opaque-token-1"); err != nil || pr.Subject != "alice" || calls("s1") != 1 {
				t.Fatalf("introspection: %+v, %v, calls with the secret %d", pr, err, calls("s1"))
			}
		case "peers":
			if pr, err := a.Verifier.Verify(context.Background(), tokens.PeerCredential("spiffe://example.org/ns/a", "")); err != nil || pr.Method != tokens.MethodMTLS {
				t.Fatalf("mtls: %+v, %v", pr, err)
			}
			if _, err := a.Verifier.Verify(context.Background(), tokens.PeerCredential("spiffe://evil.example/ns/a", "")); !errors.Is(err, tokens.ErrForeignTrustDomain) {
				t.Fatalf("foreign: %v", err)
			}
		}
	}
	// The secret rotates: the same section reads another file content, so
	// the verifier is rebuilt rather than reused with the old secret.
	if err := os.WriteFile(secret, []byte("s2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, sec := acs[0].kind()
	_, key, err := env.authenticator(lease, &acs[0], k, sec, &redisconf.Config{}, filewatch.DigestAll(acs[0].files()))
	if err != nil {
		t.Fatal(err)
	}
	if key == keys["oauth"] {
		t.Fatal("a rotated secret file kept the verifier's pool key")
	}
}
