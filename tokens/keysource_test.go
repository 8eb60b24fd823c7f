package tokens

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestFreshnessOf(t *testing.T) {
	tests := []struct {
		name string
		give http.Header
		want freshness
	}{
		{"none", http.Header{}, freshness{}},
		{"unrelated", http.Header{"Cache-Control": {"public, must-revalidate"}}, freshness{}},
		{"max-age", http.Header{"Cache-Control": {"public, max-age=300"}}, freshness{5 * time.Minute, true}},
		{"case and spaces", http.Header{"Cache-Control": {" Public ,  MAX-AGE=60 "}}, freshness{time.Minute, true}},
		{"quoted", http.Header{"Cache-Control": {`max-age="60"`}}, freshness{time.Minute, true}},
		{"less age", http.Header{"Cache-Control": {"max-age=300"}, "Age": {"100"}}, freshness{200 * time.Second, true}},
		{"age beyond", http.Header{"Cache-Control": {"max-age=300"}, "Age": {"900"}}, freshness{0, true}},
		{"bad age ignored", http.Header{"Cache-Control": {"max-age=300"}, "Age": {"-5"}}, freshness{5 * time.Minute, true}},
		{"no-store", http.Header{"Cache-Control": {"max-age=300, no-store"}}, freshness{0, true}},
		{"no-cache", http.Header{"Cache-Control": {"no-cache"}}, freshness{0, true}},
		{"qualified no-cache is about fields", http.Header{"Cache-Control": {`no-cache="set-cookie", max-age=60`}}, freshness{time.Minute, true}},
		{"negative", http.Header{"Cache-Control": {"max-age=-1"}}, freshness{0, true}},
		{"fraction", http.Header{"Cache-Control": {"max-age=1.5"}}, freshness{0, true}},
		{"empty", http.Header{"Cache-Control": {"max-age="}}, freshness{0, true}},
		{"two that agree", http.Header{"Cache-Control": {"max-age=60", "max-age=60"}}, freshness{time.Minute, true}},
		{"two that disagree", http.Header{"Cache-Control": {"max-age=60, max-age=86400"}}, freshness{0, true}},
		{"huge saturates", http.Header{"Cache-Control": {"max-age=99999999999999999999999999"}}, freshness{maxFreshness, true}},
		{"s-maxage is for shared caches", http.Header{"Cache-Control": {"s-maxage=60"}}, freshness{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := freshnessOf(tt.give); got != tt.want {
				t.Errorf("freshnessOf(%v) = %+v, want %+v", tt.give, got, tt.want)
			}
		})
	}
}

func TestNextWait(t *testing.T) {
	r := &remoteKeySet{interval: 5 * time.Minute, minInterval: 10 * time.Second, minAge: time.Minute, maxAge: time.Hour}
	tests := []struct {
		name  string
		fresh freshness
		err   error
		want  time.Duration
	}{
		{"no max-age", freshness{}, nil, 5 * time.Minute},
		{"within bounds", freshness{20 * time.Minute, true}, nil, 20 * time.Minute},
		{"below min", freshness{0, true}, nil, time.Minute},
		{"above max", freshness{maxFreshness, true}, nil, time.Hour},
		{"after a failure", freshness{20 * time.Minute, true}, errors.New("down"), 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.fresh = tt.fresh
			if got := r.nextWait(tt.err); got != tt.want {
				t.Errorf("nextWait = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestJWKSCacheControlSetsRefresh: the key endpoint's max-age sets the
// background refresh period, clamped to [min_cache_age, max_cache_age].
func TestJWKSCacheControlSetsRefresh(t *testing.T) {
	k := getKeys(t)
	tests := []struct {
		name         string
		cacheControl string
		mutate       func(*IssuerConfig)
		wantMany     bool // refreshes keep coming, else only the first fetch in the window
	}{
		{"max-age 0 is raised to min_cache_age", "max-age=0", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge, c.MaxCacheAge = time.Hour, 20*time.Millisecond, time.Hour
		}, true},
		{"a day is cut to max_cache_age", "max-age=86400", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge, c.MaxCacheAge = time.Hour, time.Millisecond, 20*time.Millisecond
		}, true},
		{"max-age overrides a short refresh_interval", "max-age=3600", func(c *IssuerConfig) {
			c.RefreshInterval = 10 * time.Millisecond
		}, false},
		{"no max-age: refresh_interval", "", func(c *IssuerConfig) {
			c.RefreshInterval, c.MinCacheAge = 10*time.Millisecond, time.Hour
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &endpoint{}
			kv := []string{}
			if tt.cacheControl != "" {
				kv = []string{"Cache-Control", tt.cacheControl}
			}
			srv.set(http.StatusOK, jwksJSON(jwk("a", k.rsa)), kv...)
			hs := httptest.NewServer(srv)
			t.Cleanup(hs.Close)
			v, _, _ := remoteFixture(t, &jwksServer{Server: hs}, tt.mutate)
			runInBackground(t, v)
			if tt.wantMany {
				eventually(t, "5 refreshes", func() bool { return srv.hits.Load() >= 5 })
				return
			}
			eventually(t, "ready", func() bool { return v.Ready() == nil })
			time.Sleep(300 * time.Millisecond) // 30 refresh_intervals
			if got := srv.hits.Load(); got != 1 {
				t.Fatalf("fetches = %d, want 1 (max-age=3600 holds the refresh)", got)
			}
		})
	}
}

// TestJWKSRedirects: a jwks_url fetch follows redirects only to its own
// host or allowed_hosts, never from https to http without allow_http, and
// at most maxRedirects.
func TestJWKSRedirects(t *testing.T) {
	k := getKeys(t)
	keys := jwksJSON(jwk("a", k.rsa))
	other := newJWKSServerTLS(t, keys)
	plain := newJWKSServer(t, keys)
	var self *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(keys) })
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/jwks.json", http.StatusFound) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/jwks.json", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/jwks.json", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	self = httptest.NewTLSServer(mux)
	t.Cleanup(self.Close)

	tests := []struct {
		name    string
		path    string
		mutate  func(*IssuerConfig)
		wantErr string // "" for accepted
	}{
		{"same host", "/same", nil, ""},
		{"another host", "/away", nil, "redirect refused: host"},
		{"another host, allowed", "/away", func(c *IssuerConfig) { c.AllowedHosts = []string{mustHost(t, other.URL)} }, ""},
		{"https to http", "/down", func(c *IssuerConfig) { c.AllowedHosts = []string{mustHost(t, plain.URL)} }, "https required"},
		{"https to http, allowed", "/down", func(c *IssuerConfig) {
			c.AllowedHosts, c.AllowHTTP = []string{mustHost(t, plain.URL)}, true
		}, ""},
		{"loop", "/loop", nil, "stopped after 5 redirects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := IssuerConfig{Issuer: testIssuer, JWKSURL: self.URL + tt.path}
			if tt.mutate != nil {
				tt.mutate(&is)
			}
			v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{is}}, JWTOptions{HTTPClient: self.Client()})
			if err != nil {
				t.Fatal(err)
			}
			otherHits, plainHits := other.hits.Load(), plain.hits.Load()
			_, err = v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, liveClaims()))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Verify = %v", err)
			case tt.wantErr != "" && (!undecidedErr(err) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Verify = %v, want could-not-decide containing %q", err, tt.wantErr)
			case tt.wantErr != "" && (other.hits.Load() != otherHits || plain.hits.Load() != plainHits):
				t.Fatal("the refused redirect was followed")
			}
		})
	}
}

func TestJWKSRefusesHugeDocument(t *testing.T) {
	k := getKeys(t)
	good := jwksJSON(jwk("a", k.rsa))
	srv := newJWKSServer(t, append(bytes.Repeat([]byte(" "), maxJWKSBytes), good...))
	v, _, _ := remoteFixture(t, srv, func(c *IssuerConfig) { c.MinRefreshInterval = time.Millisecond })
	tok := mint(t, "RS256", "a", k.rsa, liveClaims())
	if _, err := v.Verify(context.Background(), tok); !undecidedErr(err) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("huge set: %v", err)
	}
	srv.set(http.StatusOK, good)
	time.Sleep(2 * time.Millisecond)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after a good answer: %v", err)
	}
}
