package tokens

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSessionStaleIfError: with stale_if_error, a session's last good lookup
// answers while the store fails, for at most cache_ttl + stale_if_error
// after that lookup and never past the session's exp; a session whose last
// lookup was a rejection is never served stale, and neither is a caller
// that gave up.
func TestSessionStaleIfError(t *testing.T) {
	const (
		cacheTTL = 5 * time.Second
		stale    = 10 * time.Second
	)
	down := errors.New("connection refused")
	tests := []struct {
		name string
		// record is the session at the first (successful) lookup at t0.
		record map[string]string
		// staleOff runs without stale_if_error; noNegative turns negative
		// caching off.
		staleOff, noNegative bool
		// between runs at t0+6s with the store still up (nil: nothing).
		between func(m *memStore, key string)
		// at is when the store fails and the second lookup happens.
		at time.Duration
		// fail is how the store fails: an error, or a stall past the
		// timeout.
		stall    bool
		canceled bool
		want     error // nil: the principal is served
		// wantStale is the stale-served counter afterwards.
		wantStale float64
	}{
		{name: "within the stale window", record: map[string]string{"uid": "u"}, at: 6 * time.Second, wantStale: 1},
		{name: "fresh entry wins over stale", record: map[string]string{"uid": "u"}, at: 4 * time.Second},
		{name: "last moment of the window", record: map[string]string{"uid": "u"}, at: cacheTTL + stale - time.Millisecond, wantStale: 1},
		{name: "past the window", record: map[string]string{"uid": "u"}, at: cacheTTL + stale, want: down},
		{name: "store stalls past the timeout", record: map[string]string{"uid": "u"}, stall: true, at: 6 * time.Second, wantStale: 1},
		{name: "off by default", record: map[string]string{"uid": "u"}, staleOff: true, at: 6 * time.Second, want: down},
		{name: "never past the session's exp", record: map[string]string{"uid": "u", "exp": unix(t0.Add(7 * time.Second))}, at: 7 * time.Second, want: down},
		{name: "before exp", record: map[string]string{"uid": "u", "exp": unix(t0.Add(7 * time.Second))}, at: 6 * time.Second, wantStale: 1},
		{name: "caller gave up", record: map[string]string{"uid": "u"}, canceled: true, at: 6 * time.Second, want: context.Canceled},
		{name: "never accepted", record: nil, at: 6 * time.Second, want: down},
		{
			name: "revoked since (negatively cached, then expired)", record: map[string]string{"uid": "u"},
			between: func(m *memStore, key string) { m.records[key] = map[string]string{"uid": "u", "revoked": "1"} },
			at:      9 * time.Second, want: down,
		},
		{
			name: "deleted since, negative caching off", record: map[string]string{"uid": "u"}, noNegative: true,
			between: func(m *memStore, key string) { delete(m.records, key) },
			at:      7 * time.Second, want: down,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg SessionConfig
			cfg.ApplyDefaults()
			key := cfg.SessionKey(sessionToken)
			store := &memStore{records: map[string]map[string]string{}}
			if tt.record != nil {
				store.records[key] = tt.record
			}
			v, clk, reg := newSessionFixture(t, store, func(c *SessionConfig) {
				c.CacheTTL, c.Timeout = cacheTTL, 40*time.Millisecond
				if !tt.staleOff {
					c.StaleIfError = stale
				}
				if tt.noNegative {
					c.NegativeCacheTTL = -1
				}
			})
			ctx := context.Background()
			_, _ = v.Verify(ctx, sessionToken) // t0: the store answers
			if tt.between != nil {
				clk.Advance(6 * time.Second)
				store.mu.Lock()
				tt.between(store, key)
				store.mu.Unlock()
				if _, err := v.Verify(ctx, sessionToken); !errors.Is(err, ErrInvalid) {
					t.Fatalf("lookup after the change = %v, want a rejection", err)
				}
				clk.Advance(tt.at - 6*time.Second)
			} else {
				clk.Advance(tt.at)
			}
			store.mu.Lock()
			if tt.stall {
				store.delay = time.Second
			} else {
				store.err = down
			}
			store.mu.Unlock()
			if tt.canceled {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			p, err := v.Verify(ctx, sessionToken)
			switch {
			case tt.want == nil && (err != nil || p.Subject != "u"):
				t.Fatalf("Verify = %+v, %v; want the stale principal", p, err)
			case errors.Is(tt.want, down) && (err == nil || errors.Is(err, ErrInvalid)):
				t.Fatalf("Verify = %+v, %v; want a could-not-decide error", p, err)
			case errors.Is(tt.want, context.Canceled) && !errors.Is(err, context.Canceled):
				t.Fatalf("Verify = %+v, %v; want context.Canceled", p, err)
			}
			if got := counterValue(reg, "ext_authz_session_lookups_total", "stale"); got != tt.wantStale {
				t.Errorf("stale answers = %v, want %v", got, tt.wantStale)
			}
		})
	}
}

// TestSessionStaleRecovers: once the store answers again the entry is
// refreshed and the window starts over from the new lookup.
func TestSessionStaleRecovers(t *testing.T) {
	var cfg SessionConfig
	cfg.ApplyDefaults()
	store := &memStore{records: map[string]map[string]string{cfg.SessionKey(sessionToken): {"uid": "u"}}}
	v, clk, _ := newSessionFixture(t, store, func(c *SessionConfig) { c.CacheTTL, c.StaleIfError = time.Second, 2*time.Second })
	ctx := context.Background()
	if _, err := v.Verify(ctx, sessionToken); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(ctx, sessionToken); err != nil { // store up: refreshed at t0+2s
		t.Fatal(err)
	}
	store.mu.Lock()
	store.err = errors.New("down")
	store.mu.Unlock()
	clk.Advance(2500 * time.Millisecond) // t0+4.5s: stale from the t0+2s lookup
	if _, err := v.Verify(ctx, sessionToken); err != nil {
		t.Fatalf("stale after refresh: %v", err)
	}
	clk.Advance(600 * time.Millisecond) // t0+5.1s: past 2s+1s+2s
	if _, err := v.Verify(ctx, sessionToken); err == nil {
		t.Fatal("served past cache_ttl + stale_if_error")
	}
}

func TestSessionStaleIfErrorConfig(t *testing.T) {
	tests := []struct {
		give SessionConfig
		want string
	}{
		{SessionConfig{StaleIfError: -time.Second}, "stale_if_error: must not be negative"},
		{SessionConfig{StaleIfError: time.Minute, CacheSize: -1}, "stale_if_error: needs the cache"},
		{SessionConfig{StaleIfError: time.Minute}, ""},
	}
	for _, tt := range tests {
		err := tt.give.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt.give, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.give, err, tt.want)
		}
	}
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
