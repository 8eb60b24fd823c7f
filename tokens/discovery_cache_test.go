package tokens

import (
	"net/http"
	"testing"
	"time"
)

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
