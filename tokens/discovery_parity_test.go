package tokens

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The JWKS path's tests (jwks_test.go, keysource_test.go) that discovery
// did not have: the same rules hold when the key set is discovered.

// TestDiscoveryCacheControlSetsRefresh is TestJWKSCacheControlSetsRefresh
// for discovery: the max-age of the key endpoint the document names (not
// the document's own) sets the background refresh period, clamped to
// [min_cache_age, max_cache_age].
func TestDiscoveryCacheControlSetsRefresh(t *testing.T) {
	k := getKeys(t)
	tests := []struct {
		name     string
		keysCC   string // the key endpoint's Cache-Control
		docCC    string // the document's Cache-Control
		mutate   func(*IssuerConfig)
		wantMany bool // refreshes keep coming, else only the first fetch in the window
	}{
		{"max-age 0 is raised to min_cache_age", "max-age=0", "", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge, c.MaxCacheAge = time.Hour, 20*time.Millisecond, time.Hour
		}, true},
		{"a day is cut to max_cache_age", "max-age=86400", "", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge, c.MaxCacheAge = time.Hour, time.Millisecond, 20*time.Millisecond
		}, true},
		{"max-age overrides a short refresh_interval", "max-age=3600", "", func(c *IssuerConfig) {
			c.RefreshInterval = 10 * time.Millisecond
		}, false},
		{"no max-age: refresh_interval", "", "", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge = 10*time.Millisecond, time.Hour
		}, true},
		{"the document's max-age does not count", "", "max-age=3600", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge = 10*time.Millisecond, time.Hour
		}, true},
		{"no-store on the keys: min_cache_age", "no-store, max-age=3600", "max-age=3600", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge, c.MaxCacheAge = time.Hour, 20*time.Millisecond, time.Hour
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newOIDCProvider(t, nil)
			kv := []string{"Content-Type", "application/jwk-set+json"}
			if tt.keysCC != "" {
				kv = append(kv, "Cache-Control", tt.keysCC)
			}
			p.keys.set(http.StatusOK, jwksJSON(jwk("a", k.rsa)), kv...)
			if tt.docCC != "" {
				p.doc.set(http.StatusOK, p.document(nil), "Content-Type", "application/json", "Cache-Control", tt.docCC)
			}
			v, _, _ := discoveryFixture(t, p, time.Now, tt.mutate)
			runInBackground(t, v)
			if tt.wantMany {
				eventually(t, "5 refreshes", func() bool { return p.keys.hits.Load() >= 5 })
				return
			}
			eventually(t, "ready", func() bool { return v.Ready() == nil })
			time.Sleep(300 * time.Millisecond) // 30 refresh_intervals
			if got := p.keys.hits.Load(); got != 1 {
				t.Fatalf("key fetches = %d, want 1 (max-age=3600 holds the refresh)", got)
			}
			if got := p.doc.hits.Load(); got != 1 {
				t.Fatalf("document fetches = %d, want 1", got)
			}
		})
	}
}

// TestDiscoveryStartWithoutKeys is TestJWKSStartWithoutKeys for discovery:
// ready at once with start_without_keys (its tokens 503 until keys load),
// else not ready, naming the issuer.
func TestDiscoveryStartWithoutKeys(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, nil)
	p.doc.set(http.StatusNotFound, nil)
	v, _, _ := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) { c.StartWithoutKeys = true })
	if err := v.Ready(); err != nil {
		t.Fatalf("Ready with start_without_keys = %v", err)
	}
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))); !undecidedErr(err) {
		t.Fatalf("a token before any keys: %v, want could-not-decide", err)
	}
	w, _, _ := discoveryFixture(t, p, time.Now)
	if err := w.Ready(); err == nil || !strings.Contains(err.Error(), p.issuer()) {
		t.Fatalf("Ready = %v, want an error naming the issuer", err)
	}
}

// TestDiscoveryLookupWithoutRunRecovers is TestJWKSLookupWithoutRunRecovers
// for discovery: without Run, a failed first discovery does not stick.
func TestDiscoveryLookupWithoutRunRecovers(t *testing.T) {
	k := getKeys(t)
	p := newOIDCProvider(t, jwksJSON(jwk("a", k.rsa)))
	p.doc.set(http.StatusBadGateway, nil)
	v, _, _ := discoveryFixture(t, p, time.Now, func(c *IssuerConfig) { c.MinRefreshInterval = 20 * time.Millisecond })
	tok := mint(t, "RS256", "a", k.rsa, claimsFor(p.issuer()))
	if _, err := v.Verify(context.Background(), tok); !undecidedErr(err) {
		t.Fatalf("first: %v", err)
	}
	p.setDoc(nil)
	time.Sleep(25 * time.Millisecond)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the provider recovered: %v", err)
	}
}

// TestDiscoveryRedirects is TestJWKSRedirects for discovery: the document
// and the jwks_uri fetch follow redirects only to the issuer's host or
// allowed_hosts, at most maxRedirects; a refused redirect is never
// followed and leaves the issuer undecided.
func TestDiscoveryRedirects(t *testing.T) {
	k := getKeys(t)
	keys := jwksJSON(jwk("a", k.rsa))
	other := newJWKSServerTLS(t, keys)
	var self *httptest.Server
	mux := http.NewServeMux()
	doc := func(issuer, jwksURI string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": self.URL + issuer, "jwks_uri": self.URL + jwksURI})
		}
	}
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(keys) })
	mux.HandleFunc("/same/.well-known/openid-configuration", doc("/same", "/keys-same"))
	mux.HandleFunc("/keys-same", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/keys", http.StatusFound) })
	mux.HandleFunc("/away/.well-known/openid-configuration", doc("/away", "/keys-away"))
	mux.HandleFunc("/keys-away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/jwks.json", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/moved/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/.well-known/openid-configuration", http.StatusFound)
	})
	mux.HandleFunc("/loop/.well-known/openid-configuration", doc("/loop", "/keys-loop"))
	mux.HandleFunc("/keys-loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/keys-loop", http.StatusFound) })
	self = httptest.NewTLSServer(mux)
	t.Cleanup(self.Close)

	tests := []struct {
		name    string
		issuer  string
		mutate  func(*IssuerConfig)
		wantErr string // "" for accepted
	}{
		{"jwks_uri redirected on the issuer's host", "/same", nil, ""},
		{"jwks_uri redirected to another host", "/away", nil, "redirect refused: host"},
		{"jwks_uri redirected to another host, allowed", "/away", func(c *IssuerConfig) { c.AllowedHosts = []string{mustHost(t, other.URL)} }, ""},
		{"document redirected to another host", "/moved", nil, "redirect refused: host"},
		{"jwks_uri redirect loop", "/loop", nil, "stopped after 5 redirects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := IssuerConfig{Issuer: self.URL + tt.issuer, Discovery: true}
			if tt.mutate != nil {
				tt.mutate(&is)
			}
			v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{is}}, JWTOptions{HTTPClient: self.Client()})
			if err != nil {
				t.Fatal(err)
			}
			otherHits := other.hits.Load()
			_, err = v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, claimsFor(is.Issuer)))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Verify = %v", err)
			case tt.wantErr != "" && (!undecidedErr(err) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Verify = %v, want could-not-decide containing %q", err, tt.wantErr)
			case tt.wantErr != "" && other.hits.Load() != otherHits:
				t.Fatal("the refused redirect was followed")
			}
		})
	}
}
