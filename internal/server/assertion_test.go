package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ext-authz/ext-authz/authz/httpauthz"
	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens"
	"github.com/ext-authz/ext-authz/tokens/assertion"
)

const assertionSection = `upstream_assertion:
  issuer: https://ext-authz.ext-authz.svc.cluster.local
  audience: default-upstream
  audiences: {orders.example.com: orders}
  lifetime: 30s
  claims: [team]
`

// fetchJWKS gets the admin port's JWKS over real HTTP, as istiod does for
// a RequestAuthentication's jwksUri, and parses it with go-jose.
func fetchJWKS(t *testing.T, h *harness) (jose.JSONWebKeySet, http.Header) {
	t.Helper()
	resp, err := http.Get(h.admin + JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("JWKS: %d %s", resp.StatusCode, body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS does not parse: %v", err)
	}
	return set, resp.Header
}

// verifyAt is the upstream's check of an assertion against the fetched
// JWKS: go-jose, ES256/EdDSA only, issuer, audience and time.
func verifyAt(set jose.JSONWebKeySet, token, aud string, at time.Time) (map[string]any, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(&set, &std, &all); err != nil {
		return nil, err
	}
	return all, std.ValidateWithLeeway(jwt.Expected{Issuer: "https://ext-authz.ext-authz.svc.cluster.local", AnyAudience: jwt.Audience{aud}, Time: at}, 0)
}

// TestAssertionEndToEnd: the real service, Check over gRPC with the
// generated client, the JWKS over HTTP from the admin port, and an
// independent verifier (go-jose) in the upstream's place.
func TestAssertionEndToEnd(t *testing.T) {
	h := start(t, servicetest.BaseConfig(servicetest.KeysFile(t, t.TempDir()), "")+assertionSection)
	set, hdr := fetchJWKS(t, h)
	if hdr.Get("Content-Type") != "application/jwk-set+json" || !strings.Contains(hdr.Get("Cache-Control"), "max-age=") {
		t.Errorf("JWKS headers %v", hdr)
	}
	if len(set.Keys) != 2 {
		t.Errorf("JWKS has %d keys, want the signing and the next", len(set.Keys))
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			t.Errorf("JWKS key %s is not a valid public key", k.KeyID)
		}
	}
	forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	resp := h.check(t, "GET", "orders.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice},
		[2]string{"x-ext-authz-assertion", forged}, [2]string{"X_Ext_Authz_Assertion", forged})
	tok := upstreamHeaders(resp)["x-ext-authz-assertion"]
	if tok == "" || tok == forged {
		t.Fatalf("upstream assertion %q", tok)
	}
	if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "x_ext_authz_assertion") { // Envoy sends names in lower case
		t.Errorf("the client's other spelling is not removed: %v", resp.GetOkResponse().GetHeadersToRemove())
	}
	now := time.Now()
	claims, err := verifyAt(set, tok, "orders", now)
	if err != nil {
		t.Fatalf("the upstream refuses the assertion: %v", err)
	}
	if claims["sub"] != "alice" || claims["team"] != "payments" || claims["authenticator"] != "keys" {
		t.Errorf("claims %v", claims)
	}
	// Replayed to another upstream; presented after it expired.
	if _, err := verifyAt(set, tok, "default-upstream", now); err == nil {
		t.Error("another audience accepts it")
	}
	if _, err := verifyAt(set, tok, "orders", now.Add(31*time.Second)); err == nil {
		t.Error("accepted after its lifetime")
	}
	// Signed by a key the JWKS does not hold, under the JWKS's kid.
	other, _ := assertion.GenerateKey(assertion.ES256)
	ring, _ := assertion.NewFileRing(other, nil)
	m, _ := assertion.NewMinter(ring, assertion.MinterOptions{Issuer: "https://ext-authz.ext-authz.svc.cluster.local"})
	if p, _, ok := strings.Cut(tok, "."); ok {
		_, rest, _ := strings.Cut(mustMint(t, m), ".")
		if _, err := verifyAt(set, p+"."+rest, "orders", now); err == nil {
			t.Error("a signature by another key under our kid accepted")
		}
	}

	// Another host: its audience; an anonymous request: no assertion, and
	// the client's is removed.
	tok2 := upstreamHeaders(h.check(t, "GET", "shop.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice}))["x-ext-authz-assertion"]
	if _, err := verifyAt(set, tok2, "default-upstream", now); err != nil {
		t.Errorf("default audience: %v", err)
	}
	if m := get(t, h.admin+"/metrics"); !strings.Contains(m, `ext_authz_upstream_assertions_total{result="signed"} 2`) {
		t.Errorf("metrics lack the signed assertions:\n%s", m)
	}
	anon := h.check(t, "GET", "shop.example.com", "/healthz", [2]string{"x-ext-authz-assertion", forged})
	if _, ok := upstreamHeaders(anon)["x-ext-authz-assertion"]; ok || !slices.Contains(anon.GetOkResponse().GetHeadersToRemove(), "x-ext-authz-assertion") {
		t.Errorf("anonymous: set %v remove %v", upstreamHeaders(anon), anon.GetOkResponse().GetHeadersToRemove())
	}
}

func mustMint(t *testing.T, m *assertion.Minter) string {
	t.Helper()
	tok, err := m.Mint(&tokens.Principal{Subject: "admin"}, "keys", "orders", "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAssertionKeysSurviveReload: a reload that leaves the keys alone
// keeps the generated keys (an upstream's cached JWKS stays good); the
// JWKS is 404 without the section.
func TestAssertionKeysSurviveReload(t *testing.T) {
	keys := servicetest.KeysFile(t, t.TempDir())
	h := start(t, servicetest.BaseConfig(keys, "")+assertionSection)
	before, _ := fetchJWKS(t, h)
	servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, "")+strings.Replace(assertionSection, "default-upstream", "changed", 1))
	waitFor(t, func() bool {
		tok := upstreamHeaders(h.check(t, "GET", "shop.example.com", "/api/x", [2]string{"x-api-key", servicetest.KeyAlice}))["x-ext-authz-assertion"]
		_, err := verifyAt(before, tok, "changed", time.Now())
		return err == nil
	}, "the reloaded audience, signed with the same key")
	after, _ := fetchJWKS(t, h)
	if len(after.Keys) != len(before.Keys) || after.Keys[0].KeyID != before.Keys[0].KeyID {
		t.Error("a reload that kept the keys replaced them")
	}

	servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, ""))
	waitFor(t, func() bool {
		resp, err := http.Get(h.admin + JWKSPath)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 404
	}, "the JWKS to go with the section")
}

// TestAssertionKeyFiles: keys from files; rotating them is a file change
// the reload watcher picks up: the new signing key signs, the previous one
// stays published.
func TestAssertionKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) string {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		p := filepath.Join(dir, name)
		servicetest.WriteFile(t, p, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		return p
	}
	current, next := write("current.pem"), write("next.pem")
	section := func(signing, published string) string {
		return strings.Replace(assertionSection, "  claims: [team]\n",
			"  claims: [team]\n  keys:\n    signing_key_file: "+signing+"\n    published_key_files: ["+published+"]\n", 1)
	}
	keys := servicetest.KeysFile(t, dir)
	h := start(t, servicetest.BaseConfig(keys, "")+section(current, next))
	first, _ := fetchJWKS(t, h)
	if len(first.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want signing and next", len(first.Keys))
	}
	old := upstreamHeaders(h.check(t, "GET", "shop.example.com", "/api/x", [2]string{"x-api-key", servicetest.KeyAlice}))["x-ext-authz-assertion"]
	// Rotate: next signs, current stays published.
	servicetest.WriteFile(t, h.path, servicetest.BaseConfig(keys, "")+section(next, current))
	waitFor(t, func() bool {
		set, _ := fetchJWKS(t, h)
		return set.Keys[0].KeyID == first.Keys[1].KeyID
	}, "the next key to sign")
	set, _ := fetchJWKS(t, h)
	tok := upstreamHeaders(h.check(t, "GET", "shop.example.com", "/api/x", [2]string{"x-api-key", servicetest.KeyAlice}))["x-ext-authz-assertion"]
	for _, tk := range []string{old, tok} {
		if _, err := verifyAt(set, tk, "default-upstream", time.Now()); err != nil {
			t.Errorf("after rotation: %v", err)
		}
	}
	if tok == old {
		t.Error("the cached assertion of the old key survived a key change")
	}
	// A key file that becomes garbage is refused; the keys in use stay.
	servicetest.WriteFile(t, next, "not a key")
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), "config reload rejected") }, "the broken key file to be refused")
	if strings.Contains(h.logs.String(), "PRIVATE KEY") {
		t.Error("key material in the logs")
	}
	if _, err := verifyAt(set, upstreamHeaders(h.check(t, "GET", "shop.example.com", "/api/x", [2]string{"x-api-key", servicetest.KeyAlice}))["x-ext-authz-assertion"], "default-upstream", time.Now()); err != nil {
		t.Errorf("serving keys broken by a rejected file: %v", err)
	}
}

// TestAssertionHTTPTransport: the HTTP ext_authz answer carries the same
// assertion (an upstream header of the allow) and removes the client's
// other spellings.
func TestAssertionHTTPTransport(t *testing.T) {
	h := start(t, httpConfig(t, "")+assertionSection)
	set, _ := fetchJWKS(t, h)
	status, hdr, body := httpCheck(t, h, "GET", "orders.example.com", "/api/orders", [2]string{"x-api-key", servicetest.KeyAlice},
		[2]string{"X_Ext_Authz_Assertion", "forged"}, [2]string{"x-ext-authz-assertion", "forged"})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	tok := hdr.Get("x-ext-authz-assertion")
	if _, err := verifyAt(set, tok, "orders", time.Now()); err != nil {
		t.Errorf("HTTP transport assertion %q: %v", tok, err)
	}
	if rm := strings.ToLower(hdr.Get(httpauthz.HeadersToRemove)); !strings.Contains(rm, "x_ext_authz_assertion") {
		t.Errorf("the client's other spelling is not removed: %q", rm)
	}
}
