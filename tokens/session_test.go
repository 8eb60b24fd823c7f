package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// memStore is an in-memory SessionStore for the verifier's logic tests; the
// Redis path is tested against a real redis-server in tokens/redis.
type memStore struct {
	mu      sync.Mutex
	records map[string]map[string]string
	calls   atomic.Int64
	err     error
	delay   time.Duration
}

func (m *memStore) SessionFields(ctx context.Context, key string) (map[string]string, error) {
	m.calls.Add(1)
	if m.delay > 0 {
		select {
		case <-time.After(m.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	return maps.Clone(m.records[key]), nil
}

const sessionToken = "sess_0123456789abcdefABCDEF"

func newSessionFixture(t testing.TB, store SessionStore, mutate ...func(*SessionConfig)) (*SessionVerifier, *clock, *prometheus.Registry) {
	t.Helper()
	var cfg SessionConfig
	for _, m := range mutate {
		m(&cfg)
	}
	clk := newClock()
	reg := prometheus.NewRegistry()
	v, err := NewSessionVerifier(cfg, store, Options{Now: clk.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return v, clk, reg
}

func TestSessionKeyLayout(t *testing.T) {
	sum := sha256.Sum256([]byte(sessionToken))
	tests := []struct {
		name string
		give SessionConfig
		want string
	}{
		{"default sha256", SessionConfig{}, "udb:session:" + hex.EncodeToString(sum[:])},
		{"sha256 with prefix", SessionConfig{KeyPrefix: "app1:sess:", KeyEncoding: "sha256"}, "app1:sess:" + hex.EncodeToString(sum[:])},
		{"plain with prefix", SessionConfig{KeyPrefix: "s:", KeyEncoding: "plain"}, "s:" + sessionToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.ApplyDefaults()
			if got := tt.give.SessionKey(sessionToken); got != tt.want {
				t.Fatalf("key = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSessionVerify(t *testing.T) {
	var cfg SessionConfig
	cfg.ApplyDefaults()
	store := &memStore{records: map[string]map[string]string{
		cfg.SessionKey(sessionToken):           {"uid": "u-7", "app": "shop", "exp": "1800000000", "scope": "a b", "tier": "gold"},
		cfg.SessionKey("revoked_0123456789ab"): {"uid": "u-8", "revoked": "1"},
		cfg.SessionKey("expired_0123456789ab"): {"uid": "u-9", "exp": "1700000000"},
		cfg.SessionKey("nouser_0123456789abc"): {"app": "shop"},
		cfg.SessionKey("badexp_0123456789abc"): {"uid": "u", "exp": "tomorrow"},
	}}
	v, _, _ := newSessionFixture(t, store)
	got, err := v.Verify(context.Background(), sessionToken)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "u-7" || got.AppID != "shop" || got.Method != MethodUDBSession || got.Issuer != "udb" ||
		!slices.Equal(got.Scopes, []string{"a", "b"}) || got.Claims["tier"] != "gold" || got.Expiry.Unix() != 1800000000 {
		t.Errorf("principal = %+v", got)
	}
	rejects := []struct {
		name string
		give string
		want error
	}{
		{"missing", "", ErrMissing},
		{"too short", "abc", ErrMalformed},
		{"bad characters", "0123456789abcdef;x", ErrMalformed},
		{"too large", strings.Repeat("a", DefaultMaxTokenBytes+1), ErrTooLarge},
		{"unknown", "unknown_0123456789ab", ErrUnknownCredential},
		{"revoked tombstone", "revoked_0123456789ab", ErrRevoked},
		{"expired", "expired_0123456789ab", ErrExpired},
		{"record without uid", "nouser_0123456789abc", ErrMalformed},
		{"record with bad exp", "badexp_0123456789abc", ErrMalformed},
	}
	for _, tt := range rejects {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.give)
			if !errors.Is(err, tt.want) || Reason(err) != Reason(tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSessionCaching(t *testing.T) {
	var cfg SessionConfig
	cfg.ApplyDefaults()
	key := cfg.SessionKey(sessionToken)
	store := &memStore{records: map[string]map[string]string{key: {"uid": "u"}}}
	v, clk, reg := newSessionFixture(t, store, func(c *SessionConfig) { c.CacheTTL = 5 * time.Second; c.NegativeCacheTTL = 2 * time.Second })
	ctx := context.Background()
	for range 3 {
		if _, err := v.Verify(ctx, sessionToken); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("store calls = %d, want 1 (positive cache)", n)
	}
	// Revoke: still served until the cache TTL passes, then rejected.
	store.mu.Lock()
	delete(store.records, key)
	store.mu.Unlock()
	clk.Advance(4 * time.Second)
	if _, err := v.Verify(ctx, sessionToken); err != nil {
		t.Fatalf("within cache TTL: %v", err)
	}
	clk.Advance(time.Second)
	if _, err := v.Verify(ctx, sessionToken); !errors.Is(err, ErrUnknownCredential) {
		t.Fatalf("after cache TTL: %v", err)
	}
	// Negative cache: the miss is remembered for the negative TTL.
	for range 3 {
		v.Verify(ctx, sessionToken)
	}
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("store calls = %d, want 2 (negative cache)", n)
	}
	clk.Advance(2 * time.Second)
	v.Verify(ctx, sessionToken)
	if n := store.calls.Load(); n != 3 {
		t.Fatalf("store calls = %d, want 3 after the negative TTL", n)
	}
	if got := counterValue(reg, "ext_authz_session_lookups_total", "missing"); got != 2 {
		t.Errorf("missing lookups = %v, want 2", got)
	}
}

func TestSessionCacheNeverOutlivesExpiry(t *testing.T) {
	var cfg SessionConfig
	cfg.ApplyDefaults()
	store := &memStore{records: map[string]map[string]string{
		cfg.SessionKey(sessionToken): {"uid": "u", "exp": "1795000000"},
	}}
	v, clk, _ := newSessionFixture(t, store, func(c *SessionConfig) { c.CacheTTL = time.Hour })
	clk.t = time.Unix(1795000000-2, 0)
	if _, err := v.Verify(context.Background(), sessionToken); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(context.Background(), sessionToken); !errors.Is(err, ErrExpired) {
		t.Fatalf("at exp: %v", err)
	}
}

func TestSessionStoreErrorIsUndecidedAndNotCached(t *testing.T) {
	store := &memStore{err: errors.New("connection refused")}
	v, _, reg := newSessionFixture(t, store)
	for range 2 {
		_, err := v.Verify(context.Background(), sessionToken)
		if err == nil || errors.Is(err, ErrInvalid) {
			t.Fatalf("Verify = %v, want a could-not-decide error", err)
		}
	}
	if n := store.calls.Load(); n != 2 {
		t.Errorf("store calls = %d, want 2 (errors are not cached)", n)
	}
	if got := counterValue(reg, "ext_authz_session_lookups_total", "error"); got != 2 {
		t.Errorf("error lookups = %v", got)
	}
}

func TestSessionSingleflight(t *testing.T) {
	var cfg SessionConfig
	cfg.ApplyDefaults()
	store := &memStore{records: map[string]map[string]string{cfg.SessionKey(sessionToken): {"uid": "u"}}, delay: 30 * time.Millisecond}
	v, _, _ := newSessionFixture(t, store)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), sessionToken); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("store calls = %d, want 1", n)
	}
}

func TestSessionTimeout(t *testing.T) {
	store := &memStore{delay: time.Second}
	v, _, _ := newSessionFixture(t, store, func(c *SessionConfig) { c.Timeout = 40 * time.Millisecond })
	start := time.Now()
	_, err := v.Verify(context.Background(), sessionToken)
	if err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("took %v with a 40ms timeout", d)
	}
}

func TestSessionConfigErrors(t *testing.T) {
	cfg := SessionConfig{KeyEncoding: "md5", Timeout: -1, CacheTTL: -1, MaxTokenBytes: -2}
	err := cfg.Validate()
	for _, w := range []string{`key_encoding: must be sha256 or plain, not "md5"`, "timeout: must not be negative", "cache_ttl: must not be negative", "max_token_bytes: must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not contain %q", err, w)
		}
	}
	if _, err := NewSessionVerifier(SessionConfig{}, nil, Options{}); err == nil {
		t.Error("nil store accepted")
	}
}

// TestREADMESessionExample checks the key docs/tokens.md shows for its example
// session token.
func TestREADMESessionExample(t *testing.T) {
	var cfg SessionConfig
	cfg.ApplyDefaults()
	key := cfg.SessionKey("Zm9vYmFyLXNlc3Npb24tMDAwMQ")
	readme, err := os.ReadFile("../docs/tokens.md")
	if err != nil || !strings.Contains(string(readme), "HSET "+key+" uid") {
		t.Fatalf("docs/tokens.md does not show key %s: %v", key, err)
	}
}
