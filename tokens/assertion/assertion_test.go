package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ext-authz/ext-authz/tokens"
)

// goJOSEVerify is the independent verifier: go-jose parses the published
// JWK Set and checks the assertion's signature and registered claims, as
// an upstream's JWT library would.
func goJOSEVerify(t *testing.T, jwks []byte, token, issuer, audience string, at time.Time) (map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("go-jose cannot read our JWKS: %v", err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(&set, &std, &all); err != nil {
		return nil, err
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{audience}, Time: at}, 0); err != nil {
		return nil, err
	}
	return all, nil
}

var principal = tokens.Principal{
	Subject: "alice", Issuer: "https://idp.example", Method: tokens.MethodJWT, AppID: "web",
	Scopes: []string{"read", "write"},
	Claims: map[string]any{"email": "alice@example.com", "groups": []any{"a", "b"}, "secret": "not copied"},
}

func newMinter(t *testing.T, alg string, now func() time.Time, opts MinterOptions) *Minter {
	t.Helper()
	ring, err := NewGeneratedRing(alg, RingOptions{RotationPeriod: time.Hour, Retain: 2 * time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	opts.Issuer, opts.Now = "https://ext-authz.example", now
	if opts.Lifetime == 0 {
		opts.Lifetime = time.Minute
	}
	m, err := NewMinter(ring, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMintVerifiesWithGoJOSE(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			now := time.Unix(1_900_000_000, 0)
			m := newMinter(t, alg, func() time.Time { return now }, MinterOptions{Claims: []string{"email", "groups", "missing"}})
			tok, err := m.Mint(&principal, "oidc", "orders", "d-1")
			if err != nil {
				t.Fatal(err)
			}
			claims, err := goJOSEVerify(t, m.Ring().JWKS(), tok, "https://ext-authz.example", "orders", now)
			if err != nil {
				t.Fatalf("independent verifier refused the assertion: %v", err)
			}
			want := map[string]any{
				"sub": "alice", "authenticator": "oidc", "scope": "read write", "idp": "https://idp.example",
				"amr_method": "jwt", "client_id": "web", "email": "alice@example.com", "aud": "orders",
			}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, claims[k], v)
				}
			}
			if g, ok := claims["groups"].([]any); !ok || len(g) != 2 {
				t.Errorf("groups = %v", claims["groups"])
			}
			for _, k := range []string{"secret", "missing"} {
				if _, ok := claims[k]; ok {
					t.Errorf("claim %s copied but not selected/present", k)
				}
			}
			if claims["exp"].(float64)-claims["iat"].(float64) != 60 || claims["nbf"] != claims["iat"] {
				t.Errorf("times: iat %v nbf %v exp %v", claims["iat"], claims["nbf"], claims["exp"])
			}
			if jti, _ := claims["jti"].(string); len(jti) < 20 || jti == "d-1" {
				t.Errorf("cached mode jti = %q, want a random id of its own", jti)
			}
		})
	}
}

func TestMintAttacks(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	clock := func() time.Time { return now }
	m := newMinter(t, ES256, clock, MinterOptions{})
	tok, err := m.Mint(&principal, "oidc", "orders", "")
	if err != nil {
		t.Fatal(err)
	}
	jwks := m.Ring().JWKS()
	// Another service's minter, with its own keys, even naming our kid.
	other := newMinter(t, ES256, clock, MinterOptions{})
	forged, _ := other.Mint(&principal, "oidc", "orders", "")
	parts := strings.Split(forged, ".")
	ourHeader := strings.Split(tok, ".")[0]
	tests := []struct {
		name  string
		give  string
		aud   string
		at    time.Time
		match string
	}{
		{"other key", forged, "orders", now, ""},
		{"other key under our kid", ourHeader + "." + parts[1] + "." + parts[2], "orders", now, ""},
		{"claims swapped", func() string {
			p := strings.Split(tok, ".")
			body, _ := base64.RawURLEncoding.DecodeString(p[1])
			body = []byte(strings.Replace(string(body), `"alice"`, `"admin"`, 1))
			return p[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + p[2]
		}(), "orders", now, ""},
		{"replayed to another audience", tok, "billing", now, "aud"},
		{"expired", tok, "orders", now.Add(61 * time.Second), "exp"},
		{"alg none", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + strings.Split(tok, ".")[1] + ".", "orders", now, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := goJOSEVerify(t, jwks, tt.give, "https://ext-authz.example", tt.aud, tt.at)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.match != "" && !strings.Contains(err.Error(), tt.match) {
				t.Errorf("refused for %v, want a %s error", err, tt.match)
			}
		})
	}
}

func TestMintCache(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	m := newMinter(t, EdDSA, func() time.Time { return now }, MinterOptions{Claims: []string{"email"}})
	a, _ := m.Mint(&principal, "oidc", "orders", "")
	b, _ := m.Mint(&principal, "oidc", "orders", "")
	if a != b {
		t.Error("the same identity and audience signed twice")
	}
	variants := []struct {
		name string
		p    tokens.Principal
		auth string
		aud  string
	}{
		{"audience", principal, "oidc", "billing"},
		{"authenticator", principal, "keys", "orders"},
		{"subject", with(func(p *tokens.Principal) { p.Subject = "bob" }), "oidc", "orders"},
		{"scopes", with(func(p *tokens.Principal) { p.Scopes = []string{"read"} }), "oidc", "orders"},
		{"scope boundary", with(func(p *tokens.Principal) { p.Scopes = []string{"read write"} }), "oidc", "orders"},
		{"selected claim", with(func(p *tokens.Principal) { p.Claims = map[string]any{"email": "eve@example.com"} }), "oidc", "orders"},
		{"expiry", with(func(p *tokens.Principal) { p.Expiry = now.Add(time.Hour) }), "oidc", "orders"},
	}
	for _, v := range variants {
		got, _ := m.Mint(&v.p, v.auth, v.aud, "")
		if got == a {
			t.Errorf("%s differs but the cached assertion was served", v.name)
		}
	}
	// An unselected claim is not part of the assertion, so it shares.
	same := with(func(p *tokens.Principal) { p.Claims = map[string]any{"email": "alice@example.com", "other": 1} })
	if got, _ := m.Mint(&same, "oidc", "orders", ""); got != a {
		t.Error("an unselected claim split the cache")
	}
	now = now.Add(29 * time.Second)
	if got, _ := m.Mint(&principal, "oidc", "orders", ""); got != a {
		t.Error("refreshed before half the lifetime")
	}
	now = now.Add(2 * time.Second)
	if got, _ := m.Mint(&principal, "oidc", "orders", ""); got == a {
		t.Error("served with less than half its lifetime left")
	}
}

func with(f func(p *tokens.Principal)) tokens.Principal {
	p := principal
	f(&p)
	return p
}

func TestMintPerDecisionAndExpiryCap(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	m := newMinter(t, ES256, func() time.Time { return now }, MinterOptions{PerDecision: true})
	short := with(func(p *tokens.Principal) { p.Expiry = now.Add(10 * time.Second) })
	tok, err := m.Mint(&short, "oidc", "orders", "decision-7")
	if err != nil {
		t.Fatal(err)
	}
	claims, err := goJOSEVerify(t, m.Ring().JWKS(), tok, "https://ext-authz.example", "orders", now)
	if err != nil {
		t.Fatal(err)
	}
	if claims["jti"] != "decision-7" {
		t.Errorf("jti = %v, want the decision id", claims["jti"])
	}
	if claims["exp"].(float64) != float64(now.Add(10*time.Second).Unix()) {
		t.Errorf("exp %v not capped at the credential's expiry", claims["exp"])
	}
	if m.Cached() != 0 {
		t.Error("per-decision mode cached")
	}
}

func TestReservedClaimsRefused(t *testing.T) {
	ring, _ := NewGeneratedRing(ES256, RingOptions{})
	for _, c := range []string{"sub", "aud", "iss", "exp", "jti", "scope", "authenticator"} {
		if _, err := NewMinter(ring, MinterOptions{Issuer: "x", Claims: []string{c}}); err == nil {
			t.Errorf("claim %s accepted", c)
		}
	}
	if _, err := NewMinter(ring, MinterOptions{}); err == nil {
		t.Error("no issuer accepted")
	}
}

// TestRotation follows a generated ring through two rotations: the next
// key is published a whole period before it signs, and a retired key
// stays published for Retain, so an assertion verifies with the JWKS a
// verifier fetched at any time from before its key signed until after it
// expired.
func TestRotation(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	clock := func() time.Time { return now }
	m := newMinter(t, ES256, clock, MinterOptions{})
	ring := m.Ring()
	k1 := ring.Signing()
	early := ring.JWKS() // what a verifier fetched at start
	if n := len(ring.Published()); n != 2 {
		t.Fatalf("published %d keys, want signing and next", n)
	}
	k2 := ring.Published()[1]
	now = now.Add(time.Hour) // rotation due
	tok, err := m.Mint(&principal, "oidc", "orders", "")
	if err != nil {
		t.Fatal(err)
	}
	if ring.Signing() != k2 {
		t.Fatal("the published next key did not become the signing key")
	}
	if _, err := goJOSEVerify(t, early, tok, "https://ext-authz.example", "orders", now); err != nil {
		t.Errorf("a JWKS fetched before the rotation refused an assertion of the new key: %v", err)
	}
	if !hasKid(ring.JWKS(), k1.ID) {
		t.Error("retired key dropped at once")
	}
	now = now.Add(2*time.Minute + time.Second)
	_ = ring.JWKS()
	now = now.Add(time.Hour)
	if hasKid(ring.JWKS(), k1.ID) {
		t.Error("retired key still published past Retain")
	}
	if ring.Signing() == k2 || !hasKid(ring.JWKS(), k2.ID) {
		t.Error("second rotation: k2 should be retired and still published")
	}
}

func hasKid(jwks []byte, kid string) bool {
	var set jose.JSONWebKeySet
	if json.Unmarshal(jwks, &set) != nil {
		return false
	}
	return len(set.Key(kid)) == 1
}

func TestConcurrentMintDuringRotation(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_900_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := newMinter(t, EdDSA, clock, MinterOptions{})
	// phase keeps the clock still between a mint and its verification:
	// a token minted just before the hour's jump and checked just after
	// it is expired, which says nothing about rotation.
	var phase sync.RWMutex
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if j == 25 && i == 0 {
					phase.Lock()
					mu.Lock()
					now = now.Add(time.Hour)
					mu.Unlock()
					phase.Unlock()
				}
				p := with(func(p *tokens.Principal) { p.Subject = string(rune('a' + j%5)) })
				phase.RLock()
				tok, err := m.Mint(&p, "oidc", "orders", "")
				if err == nil {
					_, err = goJOSEVerify(t, m.Ring().JWKS(), tok, "https://ext-authz.example", "orders", clock())
				}
				phase.RUnlock()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseKeyPEM(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	der := func(k any) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pubDER := func(k any) []byte {
		b, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sec1, _ := x509.MarshalECPrivateKey(ec)
	tests := []struct {
		name     string
		give     []byte
		wantAlg  string
		wantSign bool
		wantErr  string
	}{
		{"pkcs8 ec", pemOf(t, "PRIVATE KEY", der(ec)), ES256, true, ""},
		{"sec1 ec", pemOf(t, "EC PRIVATE KEY", sec1), ES256, true, ""},
		{"pkcs8 ed25519", pemOf(t, "PRIVATE KEY", der(ed)), EdDSA, true, ""},
		{"public ec", pemOf(t, "PUBLIC KEY", pubDER(&ec.PublicKey)), ES256, false, ""},
		{"public ed25519", pemOf(t, "PUBLIC KEY", pubDER(ed.Public())), EdDSA, false, ""},
		{"p384", pemOf(t, "PRIVATE KEY", der(ec384)), "", false, "P-256"},
		{"rsa", pemOf(t, "PRIVATE KEY", der(rs)), "", false, "only EC P-256"},
		{"certificate", pemOf(t, "CERTIFICATE", []byte{1}), "", false, "want PRIVATE KEY"},
		{"garbage block", pemOf(t, "PRIVATE KEY", []byte("nope")), "", false, "cannot parse"},
		{"no pem", []byte("hello"), "", false, "no PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyPEM(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg != tt.wantAlg || k.CanSign() != tt.wantSign {
				t.Errorf("alg %s sign %v", k.Alg, k.CanSign())
			}
			// The kid is the RFC 7638 thumbprint, as go-jose computes it.
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(marshalJWKS([]*Key{k}), &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("JWKS: %v", err)
			}
			tp, err := set.Keys[0].Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if base64.RawURLEncoding.EncodeToString(tp) != k.ID {
				t.Errorf("kid %s is not the RFC 7638 thumbprint", k.ID)
			}
		})
	}
}

func TestFileRing(t *testing.T) {
	signing, _ := GenerateKey(EdDSA)
	prev, _ := GenerateKey(ES256)
	pubOnly, _ := newKey(prev.pub)
	if _, err := NewFileRing(pubOnly, nil); err == nil {
		t.Error("a public key accepted as the signing key")
	}
	ring, err := NewFileRing(signing, []*Key{pubOnly, prev, signing})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ring.Published()); n != 2 {
		t.Errorf("published %d keys, want 2 (deduplicated by kid)", n)
	}
	if ring.Signing() != signing || !hasKid(ring.JWKS(), prev.ID) {
		t.Error("file ring keys")
	}
}

// TestCacheKeyListClaims: list claims are part of the key element by
// element, so no two lists (or a list and a scalar) share an assertion.
func TestCacheKeyListClaims(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	m := newMinter(t, ES256, func() time.Time { return now }, MinterOptions{Claims: []string{"groups"}})
	seen := map[string]string{}
	for name, v := range map[string]any{
		"a,b":        []any{"a", "b"},
		"ab":         []any{"ab"},
		"a b joined": []any{"a b"},
		"scalar":     "a",
		"mixed":      []any{"a", 1.0},
		"mixed str":  []any{"a", "1"},
		"nested":     []any{[]any{"a", "b"}},
		"empty":      []any{},
		"absent":     nil,
	} {
		p := with(func(p *tokens.Principal) {
			p.Claims = map[string]any{}
			if v != nil {
				p.Claims["groups"] = v
			}
		})
		tok, err := m.Mint(&p, "oidc", "orders", "")
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[tok]; dup {
			t.Errorf("%s and %s share an assertion", name, other)
		}
		seen[tok] = name
	}
}

// FuzzParseKeyPEM: any key file content gives a key or an error, never a
// panic; a key it accepts publishes a JWK go-jose reads with our kid as
// its RFC 7638 thumbprint, and when it can sign, its signature verifies.
func FuzzParseKeyPEM(f *testing.F) {
	for _, alg := range []string{ES256, EdDSA} {
		k, _ := GenerateKey(alg)
		der, _ := x509.MarshalPKCS8PrivateKey(k.signer)
		f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		f.Add(k.PublicPEM())
	}
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyPEM(data)
		if err != nil {
			if k != nil {
				t.Fatal("a key and an error")
			}
			return
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(marshalJWKS([]*Key{k}), &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("JWKS of an accepted key: %v", err)
		}
		tp, err := set.Keys[0].Thumbprint(crypto.SHA256)
		if err != nil || base64.RawURLEncoding.EncodeToString(tp) != k.ID {
			t.Fatalf("kid %s is not the thumbprint (%v)", k.ID, err)
		}
		if k.CanSign() {
			sig, err := k.sign([]byte("x"))
			if err != nil || !k.verify([]byte("x"), sig) {
				t.Fatalf("accepted key cannot sign and verify: %v", err)
			}
		}
	})
}

func TestMintTooLarge(t *testing.T) {
	m := newMinter(t, ES256, time.Now, MinterOptions{Claims: []string{"groups"}})
	groups := make([]any, 1000)
	for i := range groups {
		groups[i] = "group-with-a-long-name-" + strings.Repeat("x", 10)
	}
	p := with(func(p *tokens.Principal) { p.Claims = map[string]any{"groups": groups} })
	if _, err := m.Mint(&p, "oidc", "orders", ""); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if m.Cached() != 0 {
		t.Error("a refused assertion was cached")
	}
}

// TestMintMetrics: every Mint counts once, by how it was obtained, and
// two minters (two generations) share the series.
func TestMintMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Unix(1_900_000_000, 0)
	mk := func(opts MinterOptions) *Minter {
		ring, _ := NewGeneratedRing(ES256, RingOptions{Now: func() time.Time { return now }})
		opts.Issuer, opts.Now, opts.Registerer = "i", func() time.Time { return now }, reg
		m, err := NewMinter(ring, opts)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := mk(MinterOptions{}), mk(MinterOptions{Claims: []string{"groups"}})
	_, _ = a.Mint(&principal, "oidc", "x", "")
	_, _ = a.Mint(&principal, "oidc", "x", "")
	_, _ = a.Mint(&principal, "oidc", "x", "")
	big := with(func(p *tokens.Principal) { p.Claims = map[string]any{"groups": strings.Repeat("g", MaxTokenBytes)} })
	_, _ = b.Mint(&big, "oidc", "x", "")
	want := map[string]float64{"cached": 2, "signed": 1, "error": 1}
	for result, n := range want {
		if got := testutil.ToFloat64(counterOf(newMetrics(reg), result)); got != n {
			t.Errorf("%s = %v, want %v", result, got, n)
		}
	}
}

func counterOf(m *metrics, result string) prometheus.Counter {
	switch result {
	case "cached":
		return m.cached
	case "signed":
		return m.signed
	}
	return m.failed
}
