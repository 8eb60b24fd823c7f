package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/internal/logcapture"
)

// endpoint serves whatever status, headers and body it is told to,
// counting requests; it can hold requests until released.
type endpoint struct {
	mu     sync.Mutex
	status int
	header http.Header
	body   []byte
	hold   chan struct{}
	hits   atomic.Int64
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.hits.Add(1)
	e.mu.Lock()
	status, header, body, hold := e.status, e.header.Clone(), e.body, e.hold
	e.mu.Unlock()
	if hold != nil {
		<-hold
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// set replaces the answer: status, body and header name/value pairs.
func (e *endpoint) set(status int, body []byte, kv ...string) {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	e.mu.Lock()
	e.status, e.body, e.header = status, body, h
	e.mu.Unlock()
}

// holdUntilCleanup makes requests wait until the test ends.
func (e *endpoint) holdUntilCleanup(t *testing.T) {
	hold := make(chan struct{})
	e.mu.Lock()
	e.hold = hold
	e.mu.Unlock()
	t.Cleanup(func() { close(hold) })
}

// oidcProvider is an OpenID provider over TLS: the configuration document
// at the well-known path of its issuer (its base URL) and a JWK Set at
// /keys (and /keys2, for moves).
type oidcProvider struct {
	srv   *httptest.Server
	doc   *endpoint
	keys  *endpoint
	keys2 *endpoint
}

func newOIDCProvider(t *testing.T, keys []byte) *oidcProvider {
	t.Helper()
	p := &oidcProvider{doc: &endpoint{}, keys: &endpoint{}, keys2: &endpoint{}}
	mux := http.NewServeMux()
	mux.Handle("/.well-known/openid-configuration", p.doc)
	mux.Handle("/keys", p.keys)
	mux.Handle("/keys2", p.keys2)
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	p.setDoc(nil)
	p.keys.set(http.StatusOK, keys, "Content-Type", "application/jwk-set+json")
	p.keys2.set(http.StatusNotFound, nil)
	return p
}

func (p *oidcProvider) issuer() string { return p.srv.URL }

// document is the provider's configuration document, changed by mutate.
func (p *oidcProvider) document(mutate func(map[string]any)) []byte {
	d := map[string]any{
		"issuer":                                p.issuer(),
		"jwks_uri":                              p.issuer() + "/keys",
		"authorization_endpoint":                p.issuer() + "/auth",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	}
	if mutate != nil {
		mutate(d)
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

func (p *oidcProvider) setDoc(mutate func(map[string]any)) {
	p.doc.set(http.StatusOK, p.document(mutate), "Content-Type", "application/json; charset=utf-8")
}

// discoveryFixture is a verifier for p's issuer by discovery alone.
func discoveryFixture(t *testing.T, p *oidcProvider, now func() time.Time, mutate ...func(*IssuerConfig)) (*JWTVerifier, *prometheus.Registry, *logcapture.Buffer) {
	t.Helper()
	is := IssuerConfig{Issuer: p.issuer(), Discovery: true, FetchTimeout: 2 * time.Second}
	for _, m := range mutate {
		m(&is)
	}
	reg := prometheus.NewRegistry()
	log, buf := logBuffer()
	v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{is}},
		JWTOptions{Options: Options{Now: now, Registerer: reg, Logger: log}, HTTPClient: p.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return v, reg, buf
}

// claimsFor are live claims for iss.
func claimsFor(iss string) map[string]any {
	c := liveClaims()
	c["iss"] = iss
	return c
}

func undecidedErr(err error) bool { return err != nil && !errors.Is(err, ErrInvalid) }

func TestDiscoveryHappyPath(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa), jwk("e", k.ec), jwk("ed", k.ed)))
	v, reg, _ := discoveryFixture(t, p, time.Now)
	if v.Ready() == nil {
		t.Fatal("Ready before any fetch = nil")
	}
	runInBackground(t, v)
	eventually(t, "ready", func() bool { return v.Ready() == nil })
	for _, tt := range []struct {
		alg, kid string
		key      any
	}{{"RS256", "a", k.rsa}, {"ES256", "e", k.ec}} {
		got, err := v.Verify(context.Background(), mint(t, tt.alg, tt.kid, tt.key, claimsFor(p.issuer())))
		if err != nil || got.Issuer != p.issuer() || got.Subject != "user-1" {
			t.Fatalf("%s: %+v, %v", tt.alg, got, err)
		}
	}
	// EdDSA is configured (the default list) and the key is in the set,
	// but the document does not list it.
	if _, err := v.Verify(context.Background(), mint(t, "EdDSA", "ed", k.ed, claimsFor(p.issuer()))); !errors.Is(err, ErrUnsupportedAlg) {
		t.Fatalf("EdDSA not listed by the document: %v", err)
	}
	// So is PS256 with an RSA key.
	if _, err := v.Verify(context.Background(), mint(t, "PS256", "a", k.rsa, claimsFor(p.issuer()))); !errors.Is(err, ErrUnsupportedAlg) {
		t.Fatalf("PS256 not listed by the document: %v", err)
	}
	if got := counterValue(reg, "ext_authz_oidc_discovery_fetches_total", p.issuer(), "ok"); got != 1 {
		t.Errorf("discovery ok = %v, want 1", got)
	}
	if got := counterValue(reg, "ext_authz_jwks_refreshes_total", p.issuer(), "ok"); got != 1 {
		t.Errorf("jwks ok = %v, want 1", got)
	}
}

func TestDiscoveryConfiguredAlgorithmsNarrowTheDocument(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa), jwk("e", k.ec)))
	// The document lists RS256 and ES256; only ES256 is configured.
	v, _, _ := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) { c.Algorithms = []string{"ES256"} })
	if _, err := v.Verify(context.Background(), mint(t, "ES256", "e", k.ec, claimsFor(p.issuer()))); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); !errors.Is(err, ErrUnsupportedAlg) {
		t.Fatalf("RS256 listed but not configured: %v", err)
	}
	// Without the list, the configured algorithms apply.
	p.setDoc(func(d map[string]any) { delete(d, "id_token_signing_alg_values_supported") })
	w, _, _ := discoveryFixture(t, p, time.Now)
	if _, err := w.Verify(context.Background(), mint(t, "PS256", "a", k.rsa, claimsFor(p.issuer()))); err != nil {
		t.Fatalf("no list, PS256 configured by default: %v", err)
	}
}

func TestDiscoveryRotation(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	clk := &clock{t: time.Now()}
	v, _, _ := discoveryFixture(t, p, clk.Now)
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); err != nil {
		t.Fatal(err)
	}
	// An unknown kid refetches the document and the set, once.
	p.keys.set(http.StatusOK, jwksJSON(jwk("a", k.rsa), jwk("b", k.ec)))
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(context.Background(), mint(t, "ES256", "b", k.ec, claimsFor(p.issuer()))); err != nil {
		t.Fatalf("rotated-in key b: %v", err)
	}
	if d, j := p.doc.hits.Load(), p.keys.hits.Load(); d != 2 || j != 2 {
		t.Fatalf("fetches: document %d, keys %d; want 2 and 2", d, j)
	}
	// The issuer moves its keys: the document's new jwks_uri is followed.
	p.keys2.set(http.StatusOK, jwksJSON(jwk("c", k.rsa2)))
	p.setDoc(func(d map[string]any) { d["jwks_uri"] = p.issuer() + "/keys2" })
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "c", k.rsa2, claimsFor(p.issuer()))); err != nil {
		t.Fatalf("key c at the moved jwks_uri: %v", err)
	}
	fresh := claimsFor(p.issuer())
	fresh["sub"] = "user-2" // not the cached token
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, fresh)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key a after the move (rotated out): %v", err)
	}
}

func TestDiscoveryBackgroundRefresh(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	// Only the background refresh can pick up key b.
	v, _, _ := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) {
		c.RefreshInterval = 30 * time.Millisecond
		c.MinRefreshInterval = time.Hour
	})
	runInBackground(t, v)
	eventually(t, "ready", func() bool { return v.Ready() == nil })
	p.keys.set(http.StatusOK, jwksJSON(jwk("b", k.ec)))
	tokB := mint(t, "ES256", "b", k.ec, claimsFor(p.issuer()))
	eventually(t, "rotated key b", func() bool {
		_, err := v.Verify(context.Background(), tokB)
		return err == nil
	})
	if p.doc.hits.Load() < 2 {
		t.Errorf("document fetched %d times, want it refreshed too", p.doc.hits.Load())
	}
}

func TestDiscoveryDownAtStart(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	p.doc.set(http.StatusServiceUnavailable, []byte("starting"))
	v, reg, logs := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) {
		c.MinRefreshInterval = 30 * time.Millisecond
		c.RefreshInterval = time.Hour
	})
	tok := mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))
	_, err := v.Verify(context.Background(), tok)
	if !undecidedErr(err) || !strings.Contains(err.Error(), "HTTP status 503") {
		t.Fatalf("Verify with the document down = %v, want could-not-decide naming the status", err)
	}
	if v.Ready() == nil {
		t.Fatal("Ready with no keys = nil")
	}
	if p.keys.hits.Load() != 0 {
		t.Fatal("keys fetched without a document")
	}
	runInBackground(t, v)
	p.setDoc(nil)
	eventually(t, "ready after the provider came up", func() bool { return v.Ready() == nil })
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if counterValue(reg, "ext_authz_oidc_discovery_fetches_total", p.issuer(), "error") < 1 {
		t.Error("failed document fetch not counted")
	}
	if !strings.Contains(logs.String(), "jwks fetch failed") {
		t.Errorf("failure not logged: %s", logs)
	}
}

func TestDiscoveryDownLaterKeepsKeysAndRotates(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	clk := &clock{t: time.Now()}
	v, reg, logs := discoveryFixture(t, p, clk.Now)
	tokA := mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))
	if _, err := v.Verify(context.Background(), tokA); err != nil {
		t.Fatal(err)
	}
	// The document endpoint fails; the key endpoint still serves, with a
	// new key: the last good jwks_uri is used.
	p.doc.set(http.StatusInternalServerError, []byte("oops"))
	p.keys.set(http.StatusOK, jwksJSON(jwk("a", k.rsa), jwk("b", k.ec)))
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(context.Background(), mint(t, "ES256", "b", k.ec, claimsFor(p.issuer()))); err != nil {
		t.Fatalf("key b with the document down: %v", err)
	}
	if !strings.Contains(logs.String(), "using the last good jwks_uri") {
		t.Errorf("fallback not logged: %s", logs)
	}
	if counterValue(reg, "ext_authz_oidc_discovery_fetches_total", p.issuer(), "error") != 1 {
		t.Error("failed document fetch not counted")
	}
	// Now everything is down: the last good keys still verify, and a
	// failed refetch for an unknown kid rejects it (keys are loaded).
	p.keys.set(http.StatusBadGateway, nil)
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "zz", k.rsa, claimsFor(p.issuer()))); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid with the provider down: %v", err)
	}
	if _, err := v.Verify(context.Background(), tokA); err != nil {
		t.Fatalf("last good key a: %v", err)
	}
	if v.Ready() != nil {
		t.Fatal("not ready although keys are loaded")
	}
}

// TestDiscoveryRefusesDocuments: each bad document is refused before any
// key is fetched from anywhere: the issuer stays without keys (503, not
// ready), and no request reaches the place a hostile document points to.
func TestDiscoveryRefusesDocuments(t *testing.T) {
	k := getKeys(t)
	elsewhere := newJWKSServerTLS(t, jwksJSON(jwk("a", k.rsa)))
	elsewhereHost := mustHost(t, elsewhere.URL)
	huge := bytes.Repeat([]byte(" "), maxDiscoveryBytes)
	tests := []struct {
		name   string
		mutate func(p *oidcProvider) // sets the document
		want   string
	}{
		{"issuer with a trailing slash", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["issuer"] = p.issuer() + "/" })
		}, "exactly"},
		{"issuer in upper case", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["issuer"] = strings.ToUpper(p.issuer()) })
		}, "document names issuer"},
		{"another issuer", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["issuer"] = "https://evil.example" })
		}, `document names issuer "https://evil.example"`},
		{"issuer duplicated, ours second", func(p *oidcProvider) {
			body := fmt.Sprintf(`{"issuer":"https://evil.example","jwks_uri":%q,"issuer":%q}`, p.issuer()+"/keys", p.issuer())
			p.doc.set(http.StatusOK, []byte(body), "Content-Type", "application/json")
		}, "member name twice"},
		{"issuer not a string", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["issuer"] = 42 })
		}, `"issuer" has the wrong type`},
		{"jwks_uri spelled in upper case", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["JWKS_URI"] = d["jwks_uri"]; delete(d, "jwks_uri") })
		}, "no jwks_uri"},
		{"no jwks_uri", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { delete(d, "jwks_uri") })
		}, "no jwks_uri"},
		{"jwks_uri on another host", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["jwks_uri"] = elsewhere.URL + "/jwks.json" })
		}, "is neither the issuer's host nor in allowed_hosts"},
		{"jwks_uri on another port of the same host", func(p *oidcProvider) {
			u, _ := url.Parse(p.issuer())
			d := p.document(func(d map[string]any) { d["jwks_uri"] = "https://" + u.Hostname() + ":1/keys" })
			p.doc.set(http.StatusOK, d, "Content-Type", "application/json")
		}, "is neither the issuer's host"},
		{"jwks_uri over http", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["jwks_uri"] = strings.Replace(p.issuer(), "https:", "http:", 1) + "/keys" })
		}, "https required"},
		{"jwks_uri with credentials", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) {
				d["jwks_uri"] = strings.Replace(p.issuer(), "https://", "https://u:p@", 1) + "/keys"
			})
		}, "carries credentials"},
		{"relative jwks_uri", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["jwks_uri"] = "/keys" })
		}, "not an absolute URL"},
		{"jwks_uri of another scheme", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["jwks_uri"] = "file:///etc/passwd" })
		}, "refused"},
		{"algorithms: only none", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["id_token_signing_alg_values_supported"] = []string{"none"} })
		}, "shares no algorithm"},
		{"algorithms: only HS256", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["id_token_signing_alg_values_supported"] = []string{"HS256"} })
		}, "shares no algorithm"},
		{"algorithms not a list", func(p *oidcProvider) {
			p.setDoc(func(d map[string]any) { d["id_token_signing_alg_values_supported"] = "RS256" })
		}, "wrong type"},
		{"HTML login page", func(p *oidcProvider) {
			p.doc.set(http.StatusOK, []byte("<html>sign in</html>"), "Content-Type", "text/html")
		}, `content type "text/html"`},
		{"no content type", func(p *oidcProvider) {
			p.doc.set(http.StatusOK, p.document(nil))
			p.doc.header.Set("Content-Type", "")
		}, "content type"},
		{"not JSON", func(p *oidcProvider) {
			p.doc.set(http.StatusOK, []byte(`{"issuer":`), "Content-Type", "application/json")
		}, "not one JSON object"},
		{"a JSON array", func(p *oidcProvider) {
			p.doc.set(http.StatusOK, []byte(`[{}]`), "Content-Type", "application/json")
		}, "not one JSON object"},
		{"invalid UTF-8", func(p *oidcProvider) {
			p.doc.set(http.StatusOK, []byte("{\"issuer\":\"\xff\"}"), "Content-Type", "application/json")
		}, "not one JSON object"},
		{"huge", func(p *oidcProvider) {
			p.doc.set(http.StatusOK, append(p.document(nil), huge...), "Content-Type", "application/json")
		}, "larger than"},
		{"404", func(p *oidcProvider) {
			p.doc.set(http.StatusNotFound, nil)
		}, "HTTP status 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
			tt.mutate(p)
			before := elsewhere.hits.Load()
			v, _, _ := discoveryFixture(t, p, time.Now)
			_, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer())))
			if !undecidedErr(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want could-not-decide containing %q", err, tt.want)
			}
			if v.Ready() == nil {
				t.Error("ready after a refused document")
			}
			if p.keys.hits.Load() != 0 || elsewhere.hits.Load() != before {
				t.Errorf("keys fetched after a refused document: provider %d, elsewhere %d", p.keys.hits.Load(), elsewhere.hits.Load()-before)
			}
		})
	}
	// The control: with the other host allowed, the same document works.
	t.Run("jwks_uri on an allowed host", func(t *testing.T) {
		p := newOIDCProvider(t, nil)
		p.setDoc(func(d map[string]any) { d["jwks_uri"] = elsewhere.URL + "/jwks.json" })
		v, _, _ := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) { c.AllowedHosts = []string{elsewhereHost} })
		if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); err != nil {
			t.Fatalf("allowed host: %v", err)
		}
	})
}

// TestDiscoveryRefusedLaterKeepsLastGoodKeys: a document that turns
// hostile after a good one is refused and changes nothing.
func TestDiscoveryRefusedLaterKeepsLastGoodKeys(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	evil := newJWKSServerTLS(t, jwksJSON(jwk("a", k.rsa), jwk("evil", k.rsa2)))
	clk := &clock{t: time.Now()}
	v, _, _ := discoveryFixture(t, p, clk.Now)
	tokA := mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))
	if _, err := v.Verify(context.Background(), tokA); err != nil {
		t.Fatal(err)
	}
	for _, mutate := range []func(map[string]any){
		func(d map[string]any) { d["jwks_uri"] = evil.URL + "/jwks.json" },
		func(d map[string]any) { d["issuer"] = "https://evil.example"; d["jwks_uri"] = evil.URL + "/jwks.json" },
	} {
		p.setDoc(mutate)
		clk.Advance(11 * time.Second)
		_, err := v.Verify(context.Background(), mint(t, "RS256", "evil", k.rsa2, claimsFor(p.issuer())))
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("token under the hostile document's key: %v", err)
		}
		if _, err := v.Verify(context.Background(), tokA); err != nil {
			t.Fatalf("last good key: %v", err)
		}
	}
	if evil.hits.Load() != 0 {
		t.Fatalf("the hostile jwks_uri was fetched %d times", evil.hits.Load())
	}
}

func TestDiscoverySlowAnswers(t *testing.T) {
	k := getKeys(t)
	for _, which := range []string{"document", "keys"} {
		t.Run(which, func(t *testing.T) {
			p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
			e := p.doc
			if which == "keys" {
				e = p.keys
			}
			e.holdUntilCleanup(t)
			v, reg, _ := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) {
				c.FetchTimeout = 200 * time.Millisecond
				c.MinRefreshInterval = time.Millisecond
			})
			start := time.Now()
			_, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer())))
			if !undecidedErr(err) || !strings.Contains(err.Error(), "deadline exceeded") {
				t.Fatalf("Verify = %v, want could-not-decide after the fetch timeout", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Verify took %v with a 200ms fetch_timeout", d)
			}
			if got := counterValue(reg, "ext_authz_jwks_refreshes_total", p.issuer(), "error"); got != 1 {
				t.Errorf("timed-out refresh counted %v times, want 1", got)
			}
			// A caller with a shorter deadline than the fetch's is
			// answered by its own.
			hits := e.hits.Load()
			start = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if _, err := v.Verify(ctx, mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); !undecidedErr(err) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second Verify = %v, want its own deadline", err)
			}
			if e.hits.Load() == hits {
				t.Fatal("the second Verify did not refetch")
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("second Verify took %v", d)
			}
		})
	}
}

// TestDiscoveryUnknownKidFlood: many distinct unknown kids at once cost one
// document and one key fetch (singleflight), and later ones none within
// min_refresh_interval.
func TestDiscoveryUnknownKidFlood(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	clk := &clock{t: time.Now()}
	v, _, _ := discoveryFixture(t, p, clk.Now)
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Second)
	hold := make(chan struct{})
	p.doc.mu.Lock()
	p.doc.hold = hold
	p.doc.mu.Unlock()
	const n = 200
	toks := make([]string, n)
	for i := range toks {
		toks[i] = mint(t, "RS256", fmt.Sprintf("kid-%d", i), k.rsa, claimsFor(p.issuer()))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, tok := range toks {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	eventually(t, "the refetch to start", func() bool { return p.doc.hits.Load() == 2 })
	time.Sleep(20 * time.Millisecond)
	p.doc.mu.Lock()
	p.doc.hold = nil
	p.doc.mu.Unlock()
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if d, j := p.doc.hits.Load(), p.keys.hits.Load(); d != 2 || j != 2 {
		t.Fatalf("fetches after the flood: document %d, keys %d; want 2 and 2", d, j)
	}
	for i := range 50 {
		_, err := v.Verify(context.Background(), mint(t, "RS256", fmt.Sprintf("more-%d", i), k.rsa, claimsFor(p.issuer())))
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if d, j := p.doc.hits.Load(), p.keys.hits.Load(); d != 2 || j != 2 {
		t.Fatalf("fetches within min_refresh_interval: document %d, keys %d; want 2 and 2", d, j)
	}
}

func TestDiscoveryFileSearchedFirst(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, nil)
	p.doc.set(http.StatusServiceUnavailable, nil)
	file := writeFile(t, "jwks.json", jwksJSON(jwk("local", k.ec)))
	v, _, _ := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) { c.JWKSFile = file })
	if err := v.Ready(); err != nil {
		t.Fatalf("Ready with a file = %v", err)
	}
	if _, err := v.Verify(context.Background(), mint(t, "ES256", "local", k.ec, claimsFor(p.issuer()))); err != nil {
		t.Fatal(err)
	}
	if p.doc.hits.Load() != 0 {
		t.Fatal("document fetched for a key the file holds")
	}
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "remote", k.rsa, claimsFor(p.issuer()))); !undecidedErr(err) {
		t.Fatalf("key not in the file, provider down: %v", err)
	}
}

func TestDiscoveryURL(t *testing.T) {
	// A trailing slash of the issuer is dropped before the well-known
	// path; the issuer comparison stays exact.
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	iss := p.issuer() + "/"
	p.setDoc(func(d map[string]any) { d["issuer"] = iss })
	reg := prometheus.NewRegistry()
	v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{Issuer: iss, Discovery: true}}},
		JWTOptions{Options: Options{Registerer: reg}, HTTPClient: p.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(iss))); err != nil {
		t.Fatalf("issuer with a trailing slash: %v", err)
	}
	if p.doc.hits.Load() != 1 {
		t.Fatalf("document fetched %d times at the well-known path, want 1", p.doc.hits.Load())
	}
}

func TestDiscoveryConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		give IssuerConfig
		want []string
	}{
		{"http issuer", IssuerConfig{Issuer: "http://idp.example", Discovery: true}, []string{"issuers[0].issuer: discovery needs an https issuer (allow_http permits http)"}},
		{"not a URL", IssuerConfig{Issuer: "idp", Discovery: true}, []string{"issuers[0].issuer: discovery needs the issuer to be an https URL"}},
		{"query", IssuerConfig{Issuer: "https://idp.example/?tenant=a", Discovery: true}, []string{"issuers[0].issuer: an issuer URL has no query"}},
		{"fragment", IssuerConfig{Issuer: "https://idp.example/#x", Discovery: true}, []string{"issuers[0].issuer: an issuer URL has no query, fragment"}},
		{"empty query", IssuerConfig{Issuer: "https://idp.example/?", Discovery: true}, []string{"issuers[0].issuer: an issuer URL has no query"}},
		{"user info", IssuerConfig{Issuer: "https://u@idp.example", Discovery: true}, []string{"issuers[0].issuer: an issuer URL has no query, fragment or user info"}},
		{"with jwks_url", IssuerConfig{Issuer: "https://idp.example", Discovery: true, JWKSURL: "https://idp.example/keys"},
			[]string{"issuers[0]: set only one of jwks_url or discovery (found jwks_url, discovery)"}},
		{"bad allowed host", IssuerConfig{Issuer: "https://idp.example", Discovery: true, AllowedHosts: []string{"ok.example", "https://x", "*.example", "a/b", ""}},
			[]string{`issuers[0].allowed_hosts[1]: want a host name or host:port, got "https://x"`, `allowed_hosts[2]`, `allowed_hosts[3]`, `allowed_hosts[4]`}},
		{"cache ages", IssuerConfig{Issuer: "https://idp.example", Discovery: true, MinCacheAge: 2 * time.Hour, MaxCacheAge: time.Hour},
			[]string{"issuers[0].min_cache_age: larger than max_cache_age (1h0m0s)"}},
		{"negative cache age", IssuerConfig{Issuer: "https://idp.example", Discovery: true, MinCacheAge: -1},
			[]string{"issuers[0].min_cache_age: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{tt.give}}, JWTOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(tt.name, "allowed") && strings.Contains(err.Error(), "ok.example") {
				t.Errorf("a valid host refused: %v", err)
			}
		})
	}
	// Valid: http with allow_http, an allowed host with a port, IPv6.
	for _, ok := range []IssuerConfig{
		{Issuer: "http://idp.example", Discovery: true, AllowHTTP: true},
		{Issuer: "https://idp.example/realms/x", Discovery: true, AllowedHosts: []string{"keys.example:8443", "[::1]:443", "10.0.0.1"}},
		{Issuer: "https://idp.example", Discovery: true, JWKSFile: writeFile(t, "j.json", jwksJSON(jwk("a", getKeys(t).rsa)))},
	} {
		if _, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{ok}}, JWTOptions{}); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// newJWKSServerTLS is newJWKSServer over TLS (the same test certificate
// as every httptest TLS server, so a provider's client trusts it).
func newJWKSServerTLS(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestDiscoveryRunLeavesNoGoroutines stops Run while its first document
// fetch hangs on an endpoint that never answers: Run returns at once and
// leaves nothing behind (as TestJWTVerifierRunLeavesNoGoroutines for
// jwks_url).
func TestDiscoveryRunLeavesNoGoroutines(t *testing.T) {
	b := newBlackHole(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	log, _ := logBuffer()
	iss := strings.TrimSuffix(b.URL, "/jwks.json")
	v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{
		Issuer: iss, Discovery: true, AllowHTTP: true, FetchTimeout: 30 * time.Second,
		RefreshInterval: time.Hour, MinRefreshInterval: time.Millisecond,
	}}}, JWTOptions{Options: Options{Logger: log}, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	b.waitAccepted(t)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5s after its context was cancelled")
	}
	tr.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}

// TestDiscoveryRedactsJWKSURI: a jwks_uri carrying a secret in its query
// is never logged or put in an error with it.
func TestDiscoveryRedactsJWKSURI(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	p.setDoc(func(d map[string]any) { d["jwks_uri"] = p.issuer() + "/keys2?access_token=sekrit-value" })
	clk := &clock{t: time.Now()}
	v, _, logs := discoveryFixture(t, p, clk.Now)
	_, err1 := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer())))
	p.keys2.set(http.StatusOK, jwksJSON(jwk("a", k.rsa)))
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); err == nil {
		t.Fatal("rate limit did not hold") // the test relies on the first error
	}
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); err != nil {
		t.Fatalf("after the key endpoint came up: %v", err)
	}
	p.doc.set(http.StatusInternalServerError, nil)
	clk.Advance(11 * time.Second)
	_, err2 := v.Verify(context.Background(), mint(t, "RS256", "zz", k.rsa, claimsFor(p.issuer())))
	all := fmt.Sprint(err1, err2) + logs.String()
	if !strings.Contains(all, "access_token=xxxxx") || !strings.Contains(logs.String(), "using the last good jwks_uri") {
		t.Fatalf("the test did not exercise the error and fallback paths: %s", all)
	}
	if strings.Contains(all, "sekrit") {
		t.Fatalf("secret in errors or logs: %s", all)
	}
}
