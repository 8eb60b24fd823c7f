package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// authServer is an OAuth 2.0 authorization server's RFC 7662 endpoint over
// TLS. It authenticates its callers as RFC 6749 §2.3.1 (Basic with
// form-encoded parts) or RFC 7523 (a client assertion it verifies with the
// registered public key, refusing a replayed jti), reads the form's token
// and answers from its table: the token's members when it holds the token
// and the calling client may introspect it, else {"active":false}.
type authServer struct {
	srv *httptest.Server

	mu      sync.Mutex
	secrets map[string]string                // client id -> secret
	keys    map[string]*ecdsa.PublicKey      // client id -> assertion key
	tokens  map[string]map[string]any        // token -> members
	owners  map[string]map[string]bool       // token -> clients that may introspect it (nil: any)
	jtis    map[string]bool                  // seen assertion ids
	answer  func(w http.ResponseWriter) bool // overrides the answer when it returns true
	delay   time.Duration
	hold    chan struct{}

	hits     atomic.Int64
	perToken sync.Map // token -> *atomic.Int64
	authFail atomic.Int64
}

func newAuthServer(t *testing.T) *authServer {
	t.Helper()
	a := &authServer{
		secrets: map[string]string{}, keys: map[string]*ecdsa.PublicKey{},
		tokens: map[string]map[string]any{}, owners: map[string]map[string]bool{}, jtis: map[string]bool{},
	}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authServer) endpoint() string { return a.srv.URL + "/introspect" }

func (a *authServer) addToken(tok string, members map[string]any, owners ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[tok] = members
	if len(owners) > 0 {
		a.owners[tok] = map[string]bool{}
		for _, o := range owners {
			a.owners[tok][o] = true
		}
	}
}

func (a *authServer) set(f func(a *authServer)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *authServer) tokenHits(tok string) int64 {
	if c, ok := a.perToken.Load(tok); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

func (a *authServer) serve(w http.ResponseWriter, r *http.Request) {
	a.hits.Add(1)
	a.mu.Lock()
	delay, hold, answer := a.delay, a.hold, a.answer
	a.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/introspect" ||
		r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	tok := r.PostForm.Get("token")
	c, _ := a.perToken.LoadOrStore(tok, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	client, ok := a.authenticate(r)
	if !ok {
		a.authFail.Add(1)
		w.Header().Set("WWW-Authenticate", "Basic")
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if answer != nil && answer(w) {
		return
	}
	a.mu.Lock()
	members, found := a.tokens[tok]
	owners := a.owners[tok]
	a.mu.Unlock()
	out := map[string]any{"active": false}
	if found && (owners == nil || owners[client]) {
		out = map[string]any{"active": true}
		for k, v := range members {
			out[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// authenticate returns the calling client.
func (a *authServer) authenticate(r *http.Request) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if user, pass, ok := r.BasicAuth(); ok {
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		want, known := a.secrets[id]
		return id, err1 == nil && err2 == nil && known && secret == want
	}
	if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return "", false
	}
	id := r.PostForm.Get("client_id")
	key, known := a.keys[id]
	if !known {
		return "", false
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("client_assertion"), claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(a.endpoint()), jwt.WithIssuer(id), jwt.WithSubject(id),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	jti, _ := claims["jti"].(string)
	if err != nil || jti == "" || a.jtis[jti] {
		return "", false
	}
	a.jtis[jti] = true
	return id, true
}

// introspectionFixture is a verifier for a's endpoint as client "gw" with
// secret "s3cret" (Basic), changed by mutate.
func introspectionFixture(t *testing.T, a *authServer, now func() time.Time, mutate ...func(*IntrospectionConfig)) (*IntrospectionVerifier, *prometheus.Registry) {
	t.Helper()
	a.set(func(a *authServer) { a.secrets["gw"] = "s3cret" })
	cfg := IntrospectionConfig{Endpoint: a.endpoint(), ClientID: "gw",
		ClientSecretFile: writeFile(t, "secret", []byte("s3cret\n"))}
	for _, m := range mutate {
		m(&cfg)
	}
	reg := prometheus.NewRegistry()
	log, _ := logBuffer()
	v, err := NewIntrospectionVerifier(cfg, IntrospectionOptions{Options: Options{Now: now, Registerer: reg, Logger: log}, HTTPClient: a.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return v, reg
}

// mustUndecided asserts err is a could-not-decide error (503), not a rejection.
func mustUndecided(t *testing.T, err error) {
	t.Helper()
	if err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want a could-not-decide error (never a rejection)", err)
	}
}

const opaque = "2YotnFZFEjr1zCsicMWpAA" // RFC 6749's example access token

func TestIntrospectionHappyPath(t *testing.T) {
	a := newAuthServer(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	a.addToken(opaque, map[string]any{"sub": "alice", "scope": "read  write", "client_id": "app-1", "exp": exp.Unix(),
		"iss": "https://as.example", "aud": []string{"api", "other"}, "username": "al", "tenant": "t1", "groups": []string{"g"}, "secret_stuff": "x"})
	v, reg := introspectionFixture(t, a, time.Now, func(c *IntrospectionConfig) {
		c.Issuer, c.Audiences, c.AllowedClientIDs, c.Claims = "https://as.example", []string{"api"}, []string{"app-1"}, []string{"tenant", "groups"}
	})
	p, err := v.Verify(context.Background(), opaque)
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{Subject: "alice", Issuer: "https://as.example", Method: MethodIntrospection, AppID: "app-1",
		Scopes: []string{"read", "write"}, Expiry: exp,
		Claims: map[string]any{"tenant": "t1", "groups": []any{"g"}, "username": "al"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("principal\n got  %#v\n want %#v", p, want)
	}
	for range 5 {
		if _, err := v.Verify(context.Background(), opaque); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.hits.Load(); got != 1 {
		t.Errorf("endpoint called %d times, want 1 (cached)", got)
	}
	if got := testutil.ToFloat64(v.calls.WithLabelValues("active")); got != 1 {
		t.Errorf("active calls metric = %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "ext_authz_token_cache_requests_total"); n != 2 {
		t.Errorf("cache series = %d, want hit and miss", n)
	}
}

// TestIntrospectionClientCredentialsToken: a token without sub is the
// client's own; one with neither sub nor client_id is refused.
func TestIntrospectionClientCredentialsToken(t *testing.T) {
	a := newAuthServer(t)
	a.addToken("tok-client-only-123", map[string]any{"client_id": "batch"})
	a.addToken("tok-nobody-1234567", map[string]any{"scope": "x"})
	v, _ := introspectionFixture(t, a, time.Now)
	p, err := v.Verify(context.Background(), "tok-client-only-123")
	if err != nil || p.Subject != "batch" || p.AppID != "batch" || p.Issuer != v.logURL {
		t.Fatalf("client token: %+v, %v", p, err)
	}
	if _, err := v.Verify(context.Background(), "tok-nobody-1234567"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no subject: %v", err)
	}
}

// TestIntrospectionBasicEncodesCredentials: RFC 6749 §2.3.1 form-encodes
// the client id and secret before Basic; a secret with ':' '+' '%' and a
// space must arrive intact.
func TestIntrospectionBasicEncodesCredentials(t *testing.T) {
	a := newAuthServer(t)
	a.addToken(opaque, map[string]any{"sub": "alice"})
	const id, secret = "gw:1 +", "p:a ss+w%rd/="
	a.set(func(a *authServer) { a.secrets[id] = secret })
	log, _ := logBuffer()
	v, err := NewIntrospectionVerifier(IntrospectionConfig{Endpoint: a.endpoint(), ClientID: id,
		ClientSecretFile: writeFile(t, "s", []byte(secret))}, IntrospectionOptions{Options: Options{Logger: log}, HTTPClient: a.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), opaque); err != nil {
		t.Fatal(err)
	}
	// A wrong secret is the endpoint refusing us: 503, never 401.
	a.set(func(a *authServer) { a.secrets[id] = "rotated" })
	_, err = v.Verify(context.Background(), "another-token-123")
	mustUndecided(t, err)
	if a.authFail.Load() != 1 {
		t.Errorf("auth failures = %d", a.authFail.Load())
	}
}

func ecKeyFile(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestIntrospectionPrivateKeyJWT: the RFC 7523 assertion verifies with the
// registered key, names the client and the endpoint, and is never reused.
func TestIntrospectionPrivateKeyJWT(t *testing.T) {
	k := getKeys(t)
	a := newAuthServer(t)
	a.set(func(a *authServer) { a.keys["gw"] = &k.ec.PublicKey })
	for i := range 3 {
		a.addToken(fmt.Sprintf("token-number-%d", i), map[string]any{"sub": "alice"})
	}
	log, _ := logBuffer()
	v, err := NewIntrospectionVerifier(IntrospectionConfig{Endpoint: a.endpoint(), ClientID: "gw", ClientAuth: ClientAuthPrivateKeyJWT,
		PrivateKeyFile: ecKeyFile(t, k.ec), KeyID: "k1"}, IntrospectionOptions{Options: Options{Logger: log}, HTTPClient: a.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := v.Verify(context.Background(), fmt.Sprintf("token-number-%d", i)); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	if a.authFail.Load() != 0 || len(a.jtis) != 3 {
		t.Fatalf("auth failures %d, assertions %d", a.authFail.Load(), len(a.jtis))
	}
	// Another key: the server refuses the assertion, we answer 503.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a.set(func(a *authServer) { a.keys["gw"] = &other.PublicKey })
	_, err = v.Verify(context.Background(), "token-never-seen-1")
	mustUndecided(t, err)
}

// TestIntrospectionRejections: inactive tokens and active answers we must
// not accept (the attack cases among them) are 401 with their reason, and
// remembered for negative_cache_ttl only.
func TestIntrospectionRejections(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		members map[string]any // nil: unknown to the server (inactive)
		owners  []string
		want    error
	}{
		{"unknown token", nil, nil, ErrInactive},
		{"token of another client (server says inactive to us)", map[string]any{"sub": "a"}, []string{"someone-else"}, ErrInactive},
		{"issued to a client we do not accept", map[string]any{"sub": "a", "client_id": "evil-app"}, nil, ErrWrongClient},
		{"no client_id while clients are restricted", map[string]any{"sub": "a"}, nil, ErrWrongClient},
		{"another issuer", map[string]any{"sub": "a", "client_id": "app-1", "iss": "https://evil.example"}, nil, ErrWrongIssuer},
		{"another audience", map[string]any{"sub": "a", "client_id": "app-1", "aud": "billing"}, nil, ErrWrongAudience},
		{"no audience", map[string]any{"sub": "a", "client_id": "app-1"}, nil, ErrWrongAudience},
		{"active but expired", map[string]any{"sub": "a", "client_id": "app-1", "aud": "api", "exp": now.Add(-time.Minute).Unix()}, nil, ErrExpired},
		{"active but not yet valid", map[string]any{"sub": "a", "client_id": "app-1", "aud": "api", "nbf": now.Add(time.Hour).Unix()}, nil, ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthServer(t)
			c := newClock()
			c.t = now
			if tt.members != nil {
				a.addToken(opaque, tt.members, tt.owners...)
			}
			v, _ := introspectionFixture(t, a, c.Now, func(c *IntrospectionConfig) {
				c.Issuer, c.Audiences, c.AllowedClientIDs = "https://as.example", []string{"api"}, []string{"app-1"}
				c.NegativeCacheTTL = 5 * time.Second
			})
			if _, err := v.Verify(context.Background(), opaque); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if _, err := v.Verify(context.Background(), opaque); !errors.Is(err, tt.want) || a.hits.Load() != 1 {
				t.Fatalf("second: %v after %d calls, want a cached rejection", err, a.hits.Load())
			}
			c.Advance(6 * time.Second)
			_, _ = v.Verify(context.Background(), opaque)
			if a.hits.Load() != 2 {
				t.Fatalf("calls = %d after negative_cache_ttl, want 2", a.hits.Load())
			}
		})
	}
}

// TestIntrospectionCacheHonoursExp: an active answer is served until the
// token's exp and never past it, and no longer than cache_ttl.
func TestIntrospectionCacheHonoursExp(t *testing.T) {
	c := newClock()
	a := newAuthServer(t)
	a.addToken("short-lived-token", map[string]any{"sub": "a", "exp": t0.Add(10 * time.Second).Unix()})
	a.addToken("long-lived-token1", map[string]any{"sub": "b", "exp": t0.Add(24 * time.Hour).Unix()})
	v, _ := introspectionFixture(t, a, c.Now, func(cfg *IntrospectionConfig) { cfg.CacheTTL = time.Minute })
	for _, tok := range []string{"short-lived-token", "long-lived-token1"} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(9 * time.Second)
	for _, tok := range []string{"short-lived-token", "long-lived-token1"} {
		if _, err := v.Verify(context.Background(), tok); err != nil || a.tokenHits(tok) != 1 {
			t.Fatalf("%s at 9s: %v, %d calls", tok, err, a.tokenHits(tok))
		}
	}
	c.Advance(time.Second) // exp of the short one
	if _, err := v.Verify(context.Background(), "short-lived-token"); !errors.Is(err, ErrExpired) || a.tokenHits("short-lived-token") != 2 {
		t.Fatalf("short at exp: %v, %d calls (want asked again, and refused)", err, a.tokenHits("short-lived-token"))
	}
	c.Advance(51 * time.Second) // past cache_ttl
	if _, err := v.Verify(context.Background(), "long-lived-token1"); err != nil || a.tokenHits("long-lived-token1") != 2 {
		t.Fatalf("long past cache_ttl: %v, %d calls", err, a.tokenHits("long-lived-token1"))
	}
}

// TestIntrospectionEndpointDown: down at start the verifier answers 503 and
// recovers with the endpoint; down later, cached answers keep being served
// and new tokens get 503, never 401, and no failure is cached.
func TestIntrospectionEndpointDown(t *testing.T) {
	a := newAuthServer(t)
	a.addToken("first-token-12345", map[string]any{"sub": "a"})
	a.addToken("second-token-1234", map[string]any{"sub": "b"})
	down := func(w http.ResponseWriter) bool {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return true
	}
	a.set(func(a *authServer) { a.answer = down })
	v, _ := introspectionFixture(t, a, time.Now)
	_, err := v.Verify(context.Background(), "first-token-12345")
	mustUndecided(t, err)
	if !strings.Contains(err.Error(), "HTTP status 503") {
		t.Errorf("error %q does not say what failed", err)
	}
	a.set(func(a *authServer) { a.answer = nil })
	if _, err := v.Verify(context.Background(), "first-token-12345"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	a.set(func(a *authServer) { a.answer = down })
	if _, err := v.Verify(context.Background(), "first-token-12345"); err != nil {
		t.Fatalf("cached token while down: %v", err)
	}
	_, err = v.Verify(context.Background(), "second-token-1234")
	mustUndecided(t, err)
	// A closed endpoint (connection refused) is the same.
	a.srv.Close()
	_, err = v.Verify(context.Background(), "second-token-1234")
	mustUndecided(t, err)
}

// TestIntrospectionGarbage: anything but a well-formed RFC 7662 answer is
// could-not-decide (503), not cached, and never a rejection.
func TestIntrospectionGarbage(t *testing.T) {
	big := `{"active":true,"sub":"a","pad":"` + strings.Repeat("x", maxIntrospectionBytes) + `"}`
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
	}{
		{"500", 500, "application/json", `{"active":true,"sub":"a"}`},
		{"401 from the endpoint", 401, "application/json", `{"active":false}`},
		{"redirect", 302, "", ""},
		{"HTML", 200, "text/html", `<html>{"active":true}</html>`},
		{"no content type", 200, "-", `{"active":true,"sub":"a"}`},
		{"not JSON", 200, "application/json", `active=true`},
		{"truncated", 200, "application/json", `{"active":true,"sub":"a"`},
		{"array", 200, "application/json", `[{"active":true,"sub":"a"}]`},
		{"empty object", 200, "application/json", `{}`},
		{"active as a string", 200, "application/json", `{"active":"true","sub":"a"}`},
		{"active as a number", 200, "application/json", `{"active":1,"sub":"a"}`},
		{"active null", 200, "application/json", `{"active":null}`},
		{"duplicate active", 200, "application/json", `{"active":false,"active":true,"sub":"a"}`},
		{"duplicate sub", 200, "application/json", `{"active":true,"sub":"a","sub":"admin"}`},
		{"exp as a string", 200, "application/json", `{"active":true,"sub":"a","exp":"9999999999"}`},
		{"negative exp", 200, "application/json", `{"active":true,"sub":"a","exp":-1}`},
		{"sub as a number", 200, "application/json", `{"active":true,"sub":7}`},
		{"scope as a list", 200, "application/json", `{"active":true,"sub":"a","scope":["admin"]}`},
		{"aud as an object", 200, "application/json", `{"active":true,"sub":"a","aud":{"x":1}}`},
		{"aud list with a number", 200, "application/json", `{"active":true,"sub":"a","aud":["api",1]}`},
		{"sub null", 200, "application/json", `{"active":true,"sub":null}`},
		{"client_id null", 200, "application/json", `{"active":true,"sub":"a","client_id":null}`},
		{"invalid UTF-8", 200, "application/json", "{\"active\":true,\"sub\":\"a\xff\"}"},
		{"trailing data", 200, "application/json", `{"active":false}{"active":true,"sub":"a"}`},
		{"too large", 200, "application/json", big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthServer(t)
			a.set(func(a *authServer) {
				a.answer = func(w http.ResponseWriter) bool {
					if tt.status == 302 {
						w.Header().Set("Location", "https://evil.example/introspect")
					}
					if tt.ctype != "-" {
						w.Header().Set("Content-Type", tt.ctype)
					}
					w.WriteHeader(tt.status)
					_, _ = w.Write([]byte(tt.body))
					return true
				}
			})
			v, _ := introspectionFixture(t, a, time.Now)
			for range 2 {
				_, err := v.Verify(context.Background(), opaque)
				mustUndecided(t, err)
				if strings.Contains(err.Error(), opaque) {
					t.Fatalf("error holds the token: %v", err)
				}
			}
			if a.hits.Load() != 2 {
				t.Fatalf("calls = %d, want 2 (a failure is not cached)", a.hits.Load())
			}
		})
	}
}

// TestIntrospectionSlowAnswers: a slow endpoint is bounded by the timeout
// and by the caller's context, and it is an undecided error.
func TestIntrospectionSlowAnswers(t *testing.T) {
	a := newAuthServer(t)
	a.addToken(opaque, map[string]any{"sub": "a"})
	a.addToken("answered-in-time-1", map[string]any{"sub": "b"})
	a.set(func(a *authServer) { a.delay = 500 * time.Millisecond })
	v, _ := introspectionFixture(t, a, time.Now, func(c *IntrospectionConfig) { c.Timeout = 50 * time.Millisecond })
	start := time.Now()
	_, err := v.Verify(context.Background(), opaque)
	mustUndecided(t, err)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 400*time.Millisecond {
		t.Fatalf("timeout: %v after %v", err, time.Since(start))
	}
	v2, _ := introspectionFixture(t, a, time.Now, func(c *IntrospectionConfig) { c.Timeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = v2.Verify(ctx, opaque)
	mustUndecided(t, err)
	if time.Since(start) > 250*time.Millisecond {
		t.Fatalf("caller's deadline not honoured: %v", time.Since(start))
	}
	// The answer arrives within the timeout: accepted. (Another token:
	// opaque's flight, which the caller above left, is still running.)
	a.set(func(a *authServer) { a.delay = 10 * time.Millisecond })
	if _, err := v2.Verify(context.Background(), "answered-in-time-1"); err != nil {
		t.Fatal(err)
	}
}

// TestIntrospectionFlood: many concurrent checks of one token make one call
// (singleflight); a flood of distinct tokens keeps the cache within its
// bound.
func TestIntrospectionFlood(t *testing.T) {
	a := newAuthServer(t)
	a.addToken(opaque, map[string]any{"sub": "a"})
	hold := make(chan struct{})
	a.set(func(a *authServer) { a.hold = hold })
	v, _ := introspectionFixture(t, a, time.Now, func(c *IntrospectionConfig) { c.CacheSize = 64 })
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), opaque)
			errs <- err
		})
	}
	eventually(t, "the flight to start", func() bool { return a.hits.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // let the rest join it
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := a.tokenHits(opaque); got != 1 {
		t.Fatalf("one token, 200 callers: %d calls, want 1", got)
	}
	a.set(func(a *authServer) { a.hold = nil })
	var ok atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := range 125 {
				tok := fmt.Sprintf("flood-%d-%d-xxxxxxxx", w, i)
				if _, err := v.Verify(context.Background(), tok); errors.Is(err, ErrInactive) {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1000 {
		t.Fatalf("%d of 1000 distinct tokens refused as inactive", ok.Load())
	}
	if n := v.cache.len(); n > 64+cacheShards {
		t.Fatalf("cache holds %d entries, bound 64", n)
	}
}

// TestIntrospectionAuthenticatorsDoNotShare: two authenticators (other
// clients of one endpoint) never serve each other's answers, even for the
// same token.
func TestIntrospectionAuthenticatorsDoNotShare(t *testing.T) {
	a := newAuthServer(t)
	a.addToken(opaque, map[string]any{"sub": "alice"}, "gw")
	a.set(func(a *authServer) { a.secrets["other"] = "other-secret" })
	va, _ := introspectionFixture(t, a, time.Now)
	vb, _ := introspectionFixture(t, a, time.Now, func(c *IntrospectionConfig) {
		c.ClientID, c.ClientSecretFile = "other", writeFile(t, "s2", []byte("other-secret"))
	})
	if _, err := va.Verify(context.Background(), opaque); err != nil {
		t.Fatal(err)
	}
	if _, err := vb.Verify(context.Background(), opaque); !errors.Is(err, ErrInactive) {
		t.Fatalf("client other: %v, want inactive (its own answer)", err)
	}
	if va.cacheKey(opaque) == vb.cacheKey(opaque) {
		t.Fatal("two clients share a cache key")
	}
	vc, _ := introspectionFixture(t, a, time.Now, func(c *IntrospectionConfig) { c.Endpoint += "?realm=x" })
	if va.cacheKey(opaque) == vc.cacheKey(opaque) {
		t.Fatal("two endpoints share a cache key")
	}
}

// TestIntrospectionTokenNeverLeaks: a token is neither logged nor in an
// error, whatever happens; one that is not visible ASCII never reaches the
// endpoint.
func TestIntrospectionTokenNeverLeaks(t *testing.T) {
	a := newAuthServer(t)
	a.set(func(a *authServer) { a.secrets["gw"] = "s3cret" })
	log, buf := logBuffer()
	v, err := NewIntrospectionVerifier(IntrospectionConfig{Endpoint: a.endpoint(), ClientID: "gw",
		ClientSecretFile: writeFile(t, "s", []byte("s3cret")), Timeout: 50 * time.Millisecond},
		IntrospectionOptions{Options: Options{Logger: log}, HTTPClient: a.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	const tok = "very-secret-token-value"
	var errs []error
	_, e := v.Verify(context.Background(), tok)
	errs = append(errs, e)
	a.set(func(a *authServer) { a.delay = 300 * time.Millisecond })
	_, e = v.Verify(context.Background(), tok+"2")
	errs = append(errs, e)
	a.srv.Close()
	_, e = v.Verify(context.Background(), tok+"3")
	errs = append(errs, e)
	for _, e := range errs {
		if e == nil || strings.Contains(e.Error(), tok) || strings.Contains(e.Error(), "s3cret") {
			t.Fatalf("error %v", e)
		}
	}
	if strings.Contains(buf.String(), tok) || strings.Contains(buf.String(), "s3cret") {
		t.Fatalf("log holds a secret: %s", buf.String())
	}
	hits := a.hits.Load()
	for _, bad := range []string{"tok en", "tok\nen", "tok\x00", "tökenvalue", "tok\ten"} {
		if _, err := v.Verify(context.Background(), bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := v.Verify(context.Background(), strings.Repeat("a", DefaultMaxTokenBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if a.hits.Load() != hits {
		t.Error("a refused token reached the endpoint")
	}
}

func TestIntrospectionConfigErrors(t *testing.T) {
	secret := "s.txt"
	tests := []struct {
		name string
		give IntrospectionConfig
		want string
	}{
		{"no endpoint", IntrospectionConfig{ClientID: "c", ClientSecretFile: secret}, "endpoint: required"},
		{"relative endpoint", IntrospectionConfig{Endpoint: "/introspect", ClientID: "c", ClientSecretFile: secret}, "endpoint: must be an absolute https URL"},
		{"http endpoint", IntrospectionConfig{Endpoint: "http://as/introspect", ClientID: "c", ClientSecretFile: secret}, "allow_http"},
		{"credentials in the URL", IntrospectionConfig{Endpoint: "https://u:p@as/introspect", ClientID: "c", ClientSecretFile: secret}, "must not carry credentials"},
		{"no client", IntrospectionConfig{Endpoint: "https://as/i", ClientSecretFile: secret}, "client_id: required"},
		{"basic without secret", IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c"}, "client_secret_file: required"},
		{"jwt without key", IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c", ClientAuth: ClientAuthPrivateKeyJWT}, "private_key_file: required"},
		{"jwt with a secret too", IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c", ClientAuth: ClientAuthPrivateKeyJWT, PrivateKeyFile: "k", ClientSecretFile: secret}, "client_secret_file: only with"},
		{"HMAC assertion", IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c", ClientAuth: ClientAuthPrivateKeyJWT, PrivateKeyFile: "k", Algorithm: "HS256"}, "algorithm"},
		{"unknown auth", IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c", ClientAuth: "client_secret_post"}, "client_auth: must be"},
		{"standard member as a claim", IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c", ClientSecretFile: secret, Claims: []string{"sub"}}, "claims[0]"},
		{"negative timeout", IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c", ClientSecretFile: secret, Timeout: -1}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.give
			c.ApplyDefaults()
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := NewIntrospectionVerifier(IntrospectionConfig{Endpoint: "https://as/i", ClientID: "c",
		ClientSecretFile: writeFile(t, "empty", []byte(" \n"))}, IntrospectionOptions{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty secret file: %v", err)
	}
}

// FuzzIntrospectionResponse: any response body gives an answer without a
// panic; an accepted one said active=true and names a subject.
func FuzzIntrospectionResponse(f *testing.F) {
	for _, s := range []string{`{"active":true,"sub":"a","scope":"r w","exp":1e10,"aud":["x"],"tenant":{"a":[1]}}`,
		`{"active":false}`, `{"active":true,"client_id":"c","aud":"api","nbf":1}`, `{"active":"true"}`, `[]`, `{"active":true,"sub":"a","sub":"b"}`} {
		f.Add([]byte(s))
	}
	v := &IntrospectionVerifier{cfg: IntrospectionConfig{Claims: []string{"tenant"}, Audiences: []string{"api", "x"}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, _, err := v.principal(body, t0)
		if err != nil {
			return
		}
		if p.Subject == "" || p.Method != MethodIntrospection || !strings.Contains(string(body), "true") {
			t.Fatalf("accepted %q as %+v", body, p)
		}
	})
}

// TestIntrospectionBoundsCallsInFlight: while the endpoint hangs, a flood
// of distinct tokens makes at most max_concurrent_calls calls; the rest are
// answered could-not-decide at once, and nothing is left running once the
// endpoint answers.
func TestIntrospectionBoundsCallsInFlight(t *testing.T) {
	a := newAuthServer(t)
	hold := make(chan struct{})
	a.set(func(a *authServer) { a.hold = hold })
	v, reg := introspectionFixture(t, a, time.Now, func(c *IntrospectionConfig) { c.MaxConcurrentCalls = 4; c.Timeout = 5 * time.Second })
	var wg sync.WaitGroup
	var busy atomic.Int64
	for i := range 4 {
		wg.Go(func() { _, _ = v.Verify(context.Background(), fmt.Sprintf("held-token-%d-xxxxxx", i)) })
	}
	eventually(t, "4 calls held", func() bool { return a.hits.Load() == 4 })
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := v.Verify(ctx, fmt.Sprintf("flood-token-%d-xxxxxx", i))
			if err != nil && !errors.Is(err, ErrInvalid) && errors.Is(err, errBusy) {
				busy.Add(1)
			}
		})
	}
	eventually(t, "the flood answered busy", func() bool { return busy.Load() == 200 })
	if got := a.hits.Load(); got != 4 {
		t.Fatalf("endpoint calls = %d, want 4 (max_concurrent_calls)", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "ext_authz_introspection_requests_total"); n == 0 {
		t.Error("busy answers not counted")
	}
	close(hold)
	wg.Wait()
	a.set(func(a *authServer) { a.hold = nil })
	if _, err := v.Verify(context.Background(), "flood-token-0-xxxxxx"); !errors.Is(err, ErrInactive) {
		t.Fatalf("after the endpoint answered: %v (a busy answer must not be cached)", err)
	}
}
