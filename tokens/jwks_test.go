package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/internal/logcapture"
)

// jwksServer serves whatever body and status it is told to, counting
// requests; it can hold requests until released.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	body   []byte
	hits   atomic.Int64
	hold   chan struct{} // when non-nil, requests wait for it to close
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body, hold := s.status, s.body, s.hold
		s.mu.Unlock()
		if hold != nil {
			<-hold
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// remoteFixture is a verifier for testIssuer whose keys come only from
// srv. The clock is real: the key set's rate limit and Run use it.
func remoteFixture(t testing.TB, srv *jwksServer, mutate ...func(*IssuerConfig)) (*JWTVerifier, *prometheus.Registry, *logcapture.Buffer) {
	return remoteFixtureAt(t, srv, time.Now, mutate...)
}

func remoteFixtureAt(t testing.TB, srv *jwksServer, now func() time.Time, mutate ...func(*IssuerConfig)) (*JWTVerifier, *prometheus.Registry, *logcapture.Buffer) {
	t.Helper()
	is := IssuerConfig{Issuer: testIssuer, JWKSURL: srv.URL + "/jwks.json", FetchTimeout: 2 * time.Second}
	for _, m := range mutate {
		m(&is)
	}
	reg := prometheus.NewRegistry()
	log, buf := logBuffer()
	v, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{is}},
		JWTOptions{Options: Options{Now: now, Registerer: reg, Logger: log}})
	if err != nil {
		t.Fatal(err)
	}
	return v, reg, buf
}

// liveClaims are valid now (the remote tests use the real clock).
func liveClaims() map[string]any {
	now := time.Now()
	return map[string]any{"iss": testIssuer, "sub": "user-1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
}

func runInBackground(t *testing.T, v *JWTVerifier) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJWKSBackgroundRefresh(t *testing.T) {
	start := time.Now()
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwk("a", k.rsa)))
	// A long min_refresh_interval rules out unknown-kid refetches, so only
	// the background refresh can pick up the new key.
	v, reg, _ := remoteFixture(t, srv, func(c *IssuerConfig) {
		c.RefreshInterval = 50 * time.Millisecond
		c.MinRefreshInterval = time.Hour
	})
	if err := v.Ready(); err == nil {
		t.Fatal("Ready before any fetch = nil")
	}
	runInBackground(t, v)
	eventually(t, "ready", func() bool { return v.Ready() == nil })
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, liveClaims())); err != nil {
		t.Fatalf("key a: %v", err)
	}
	srv.set(http.StatusOK, jwksJSON(jwk("b", k.ec)))
	tokB := mint(t, "ES256", "b", k.ec, liveClaims())
	eventually(t, "rotated key b", func() bool {
		_, err := v.Verify(context.Background(), tokB)
		return err == nil
	})
	if got := counterValue(reg, "ext_authz_jwks_refreshes_total", testIssuer, "ok"); got < 2 {
		t.Errorf("ok refreshes = %v, want >= 2", got)
	}
	if got := counterValue(reg, "ext_authz_jwks_last_success_timestamp_seconds", testIssuer); got < float64(start.Unix()) {
		t.Errorf("last success timestamp = %v, want >= %d", got, start.Unix())
	}
	// Failures do not move it: it is what the JWKS-stale alert reads.
	srv.set(http.StatusInternalServerError, nil)
	last := counterValue(reg, "ext_authz_jwks_last_success_timestamp_seconds", testIssuer)
	before := counterValue(reg, "ext_authz_jwks_refreshes_total", testIssuer, "error")
	eventually(t, "a failed refresh", func() bool {
		return counterValue(reg, "ext_authz_jwks_refreshes_total", testIssuer, "error") > before
	})
	time.Sleep(1100 * time.Millisecond) // the gauge has one-second resolution
	eventually(t, "another failed refresh", func() bool {
		return counterValue(reg, "ext_authz_jwks_refreshes_total", testIssuer, "error") > before+1
	})
	if got := counterValue(reg, "ext_authz_jwks_last_success_timestamp_seconds", testIssuer); got != last {
		t.Errorf("last success timestamp moved on failure: %v → %v", last, got)
	}
}

func TestJWKSUnknownKidBurstFetchesOnce(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwk("a", k.rsa)))
	clk := &clock{t: time.Now()}
	v, _, _ := remoteFixtureAt(t, srv, clk.Now)
	// Load the first set (a lookup before Run fetches on demand).
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, liveClaims())); err != nil {
		t.Fatal(err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("initial fetches = %d, want 1", got)
	}
	// The issuer rotates in key b; a burst of tokens signed with it
	// arrives, after the refetch rate limit has passed, while the refetch
	// is held open.
	clk.Advance(11 * time.Second)
	hold := make(chan struct{})
	srv.mu.Lock()
	srv.body, srv.hold = jwksJSON(jwk("a", k.rsa), jwk("b", k.ec)), hold
	srv.mu.Unlock()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		c := liveClaims()
		c["sub"] = "user-" + string(rune('a'+i%26)) + strings.Repeat("x", i) // distinct tokens
		tok := mint(t, "ES256", "b", k.ec, c)
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	eventually(t, "the refetch to start", func() bool { return srv.hits.Load() == 2 })
	time.Sleep(20 * time.Millisecond) // let the rest of the burst join the flight
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("token with rotated kid: %v", err)
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (one initial, one for the burst)", got)
	}
	// A genuinely unknown kid right after is rejected without another
	// fetch: refetches are rate-limited.
	for range 10 {
		_, err := v.Verify(context.Background(), mint(t, "RS256", "zzz", k.rsa, liveClaims()))
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches after rate-limited unknown kids = %d, want 2", got)
	}
}

func TestJWKSEndpointDownKeepsLastGoodKeys(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwk("a", k.rsa)))
	v, reg, logs := remoteFixture(t, srv, func(c *IssuerConfig) {
		c.RefreshInterval = 20 * time.Millisecond
		c.MinRefreshInterval = 20 * time.Millisecond
	})
	runInBackground(t, v)
	eventually(t, "ready", func() bool { return v.Ready() == nil })

	for _, bad := range []struct {
		name   string
		status int
		body   []byte
	}{
		{"500", http.StatusInternalServerError, []byte("oops")},
		{"garbage", http.StatusOK, []byte("<html>not json</html>")},
		{"empty set", http.StatusOK, []byte(`{"keys":[]}`)},
		{"only unusable keys", http.StatusOK, []byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"},{"kty":"EC","kid":"x","crv":"P-256","x":"AA","y":"AA"}]}`)},
	} {
		t.Run(bad.name, func(t *testing.T) {
			before := counterValue(reg, "ext_authz_jwks_refreshes_total", testIssuer, "error")
			srv.set(bad.status, bad.body)
			eventually(t, "two failed refreshes", func() bool {
				return counterValue(reg, "ext_authz_jwks_refreshes_total", testIssuer, "error") >= before+2
			})
			if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, liveClaims())); err != nil {
				t.Fatalf("last good key: %v", err)
			}
			if err := v.Ready(); err != nil {
				t.Fatalf("Ready = %v", err)
			}
		})
	}
	srv.Close()
	time.Sleep(50 * time.Millisecond)
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, liveClaims())); err != nil {
		t.Fatalf("endpoint gone, last good key: %v", err)
	}
	if !strings.Contains(logs.String(), "keeping the last good key set") {
		t.Errorf("failure not logged: %s", logs)
	}
}

func TestJWKSFailedFirstFetchIsNotSticky(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusServiceUnavailable, nil)
	v, _, _ := remoteFixture(t, srv, func(c *IssuerConfig) { c.MinRefreshInterval = 30 * time.Millisecond; c.RefreshInterval = time.Hour })
	tok := mint(t, "RS256", "a", k.rsa, liveClaims())

	// Without keys a token cannot be decided: an error, but not a
	// rejection (the pipeline answers 503, not 401).
	_, err := v.Verify(context.Background(), tok)
	if err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("Verify with no keys = %v, want a could-not-decide error", err)
	}
	if !errors.Is(err, errNoKeys) && !strings.Contains(err.Error(), "503") {
		t.Errorf("error does not say why: %v", err)
	}
	if v.Ready() == nil {
		t.Fatal("Ready with no keys = nil")
	}
	runInBackground(t, v)
	srv.set(http.StatusOK, jwksJSON(jwk("a", k.rsa)))
	// Run retries every min_refresh_interval after a failure, although the
	// refresh interval is an hour.
	eventually(t, "ready after recovery", func() bool { return v.Ready() == nil })
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestJWKSLookupWithoutRunRecovers(t *testing.T) {
	// Without Run, an empty set is fetched on demand, rate-limited: the
	// failed first attempt does not stick.
	k := getKeys(t)
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusBadGateway, nil)
	v, _, _ := remoteFixture(t, srv, func(c *IssuerConfig) { c.MinRefreshInterval = 20 * time.Millisecond })
	tok := mint(t, "RS256", "a", k.rsa, liveClaims())
	if _, err := v.Verify(context.Background(), tok); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("first: %v", err)
	}
	srv.set(http.StatusOK, jwksJSON(jwk("a", k.rsa)))
	time.Sleep(25 * time.Millisecond)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the endpoint recovered: %v", err)
	}
}

func TestJWKSStartWithoutKeys(t *testing.T) {
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusNotFound, nil)
	v, _, _ := remoteFixture(t, srv, func(c *IssuerConfig) { c.StartWithoutKeys = true })
	if err := v.Ready(); err != nil {
		t.Fatalf("Ready with start_without_keys = %v", err)
	}
	w, _, _ := remoteFixture(t, srv)
	if err := w.Ready(); err == nil || !strings.Contains(err.Error(), testIssuer) {
		t.Fatalf("Ready = %v, want an error naming the issuer", err)
	}
}

func TestJWKSSlowFetchBoundedByCallerContext(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwk("a", k.rsa)))
	hold := make(chan struct{})
	srv.mu.Lock()
	srv.hold = hold
	srv.mu.Unlock()
	defer close(hold)
	v, _, _ := remoteFixture(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, mint(t, "RS256", "a", k.rsa, liveClaims()))
	if err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify = %v, want a could-not-decide deadline error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Verify took %v with a 50ms context", d)
	}
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	k := getKeys(t)
	enc := jwk("enc", k.rsa)
	enc["use"] = "enc"
	dup := jwk("a", k.ec)
	snap, skipped, err := parseJWKS(jwksJSON(jwk("a", k.rsa), enc, dup, map[string]any{"kty": "weird"}, jwk("h", []byte("short"))))
	if err != nil {
		t.Fatal(err)
	}
	if snap.size() != 1 || skipped != 4 || snap.find("a") == nil || snap.find("enc") != nil {
		t.Fatalf("size %d skipped %d", snap.size(), skipped)
	}
}

// TestParseJWKSReadsMembersExactly: a JWK Set is read as go-jose and the
// RFCs read it, member names case-sensitive and each at most once, so a
// "USE" or "KID" that encoding/json would fold onto use or kid (the last
// one winning) cannot turn an encryption key into a signature key or
// rename a key; and key_ops (RFC 7517 §4.3) restricts a key as use does.
func TestParseJWKSReadsMembersExactly(t *testing.T) {
	k := getKeys(t)
	// key is a JWK's JSON text with extra member text appended inside it.
	key := func(kid string, extra string, set func(map[string]any)) string {
		m := jwk(kid, k.rsa)
		if set != nil {
			set(m)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(string(b), "}") + extra + "}"
	}
	good := key("good", "", nil)
	enc := func(m map[string]any) { m["use"] = "enc" }
	rs256 := func(m map[string]any) { m["alg"] = "RS256" }
	tests := []struct {
		name     string
		give     string
		wantErr  string
		wantKids []string // usable keys
		wantAlg  string   // of key "a", when set
	}{
		{"use folded", `{"keys":[` + good + `,` + key("a", `,"USE":"sig"`, enc) + `]}`, "", []string{"good"}, ""},
		{"Use folded", `{"keys":[` + good + `,` + key("a", `,"Use":"sig"`, enc) + `]}`, "", []string{"good"}, ""},
		{"kid folded", `{"keys":[` + key("a", `,"KID":"b"`, nil) + `]}`, "", []string{"a"}, ""},
		{"alg folded", `{"keys":[` + key("a", `,"ALG":"HS256"`, rs256) + `]}`, "", []string{"a"}, "RS256"},
		{"kty folded", `{"keys":[` + good + `,` + key("a", `,"KTY":"oct","K":"`+b64([]byte(strings.Repeat("k", 64)))+`"`, func(m map[string]any) { delete(m, "kty") }) + `]}`, "", []string{"good"}, ""},
		{"kid twice", `{"keys":[` + good + `,` + key("a", `,"kid":"b"`, nil) + `]}`, "member name twice", nil, ""},
		{"use twice", `{"keys":[` + key("a", `,"use":"enc"`, nil) + `]}`, "member name twice", nil, ""},
		{"keys twice", `{"keys":[` + key("a", "", nil) + `],"keys":[` + good + `]}`, "member name twice", nil, ""},
		{"nested twice", `{"keys":[` + good + `,` + key("a", `,"ext":{"x":1,"x":2}`, nil) + `]}`, "member name twice", nil, ""},
		{"Keys only", `{"Keys":[` + good + `]}`, "no usable signature key", nil, ""},
		{"KEYS folded", `{"keys":[` + good + `],"KEYS":[` + key("a", "", nil) + `]}`, "", []string{"good"}, ""},
		{"key_ops verify", `{"keys":[` + key("a", `,"key_ops":["verify"]`, nil) + `]}`, "", []string{"a"}, ""},
		{"key_ops sign and verify", `{"keys":[` + key("a", `,"key_ops":["sign","verify"]`, nil) + `]}`, "", []string{"a"}, ""},
		{"key_ops encrypt", `{"keys":[` + good + `,` + key("a", `,"key_ops":["encrypt"]`, nil) + `]}`, "", []string{"good"}, ""},
		{"key_ops empty", `{"keys":[` + good + `,` + key("a", `,"key_ops":[]`, nil) + `]}`, "", []string{"good"}, ""},
		{"key_ops not a list", `{"keys":[` + good + `,` + key("a", `,"key_ops":"verify"`, nil) + `]}`, "", []string{"good"}, ""},
		{"kid not a string", `{"keys":[` + good + `,` + strings.Replace(key("a", "", nil), `"kid":"a"`, `"kid":7`, 1) + `]}`, "", []string{"good"}, ""},
		{"keys not a list", `{"keys":{}}`, "not a JWK Set", nil, ""},
		{"not an object", `[]`, "not a JWK Set", nil, ""},
		{"trailing data", `{"keys":[` + good + `]} {}`, "not a JWK Set", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, _, err := parseJWKS([]byte(tt.give))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseJWKS = %v, want an error containing %q", err, tt.wantErr)
				}
				var ce *CredentialError
				if errors.As(err, &ce) {
					t.Fatalf("parseJWKS = %v wraps a CredentialError: a bad key set would reject tokens (401), not fail to decide (503)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range snap.all {
				kids = append(kids, k.kid)
			}
			if !slices.Equal(kids, tt.wantKids) {
				t.Fatalf("usable keys %q, want %q", kids, tt.wantKids)
			}
			if tt.wantAlg != "" && snap.find("a").alg != tt.wantAlg {
				t.Fatalf("alg %q, want %q", snap.find("a").alg, tt.wantAlg)
			}
		})
	}
}

// TestRemoteJWKSRefusesSymmetricKeys: an HMAC secret published at a URL
// signs for anyone who reads it, so a remote key set's "oct" keys are
// skipped even when HS256 is allowed; the same secret in a jwks_file
// verifies.
func TestRemoteJWKSRefusesSymmetricKeys(t *testing.T) {
	k := getKeys(t)
	secret := []byte(strings.Repeat("s", 64))
	set := jwksJSON(jwk("h", secret), jwk("a", k.rsa))
	srv := newJWKSServer(t, set)
	v, _, logs := remoteFixture(t, srv, func(c *IssuerConfig) { c.Algorithms = []string{"HS256", "RS256"} })
	runInBackground(t, v)
	eventually(t, "ready", func() bool { return v.Ready() == nil })
	if _, err := v.Verify(context.Background(), mint(t, "RS256", "a", k.rsa, liveClaims())); err != nil {
		t.Fatalf("the asymmetric key of the same set: %v", err)
	}
	forged := mint(t, "HS256", "h", secret, liveClaims())
	if _, err := v.Verify(context.Background(), forged); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token signed with a secret the URL publishes: err = %v, want rejected", err)
	}
	if !strings.Contains(logs.String(), "symmetric keys from a URL") {
		t.Errorf("the skipped secret is not logged: %s", logs.String())
	}

	file := writeFile(t, "jwks.json", set)
	fv, err := NewJWTVerifier(JWTConfig{Issuers: []IssuerConfig{{Issuer: testIssuer, JWKSFile: file, Algorithms: []string{"HS256"}}}}, JWTOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fv.Verify(context.Background(), forged); err != nil {
		t.Fatalf("the same secret from a jwks_file: %v", err)
	}
}
