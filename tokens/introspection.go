package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/tokens/revocation"
	"golang.org/x/sync/singleflight"
)

// MethodIntrospection is the Principal.Method of a token accepted by an
// OAuth 2.0 introspection endpoint.
const MethodIntrospection = "oauth2-introspection"

// Reasons an introspected token is rejected, besides the shared ones.
var (
	// ErrInactive: the endpoint answered active=false (unknown, expired,
	// revoked, or not for this client: RFC 7662 §2.2 does not say which).
	ErrInactive = &CredentialError{Reason: "inactive"}
	// ErrWrongClient: the token was issued to a client the configuration
	// does not accept (allowed_client_ids).
	ErrWrongClient = &CredentialError{Reason: "wrong_client"}
)

// Client authentication methods at the introspection endpoint (RFC 7662
// §2.1 requires one; the names are RFC 8414's).
const (
	ClientAuthBasic         = "client_secret_basic"
	ClientAuthPrivateKeyJWT = "private_key_jwt"
)

// IntrospectionConfig configures an IntrospectionVerifier (authenticator
// kind introspection): opaque OAuth 2.0 access tokens checked by the
// authorization server's RFC 7662 endpoint.
type IntrospectionConfig struct {
	// Endpoint is the introspection endpoint URL; https unless AllowHTTP.
	// Redirects are not followed.
	Endpoint string `yaml:"endpoint"`
	// ClientID is this service's client at the authorization server.
	ClientID string `yaml:"client_id"`
	// ClientAuth is client_secret_basic (default) or private_key_jwt.
	ClientAuth string `yaml:"client_auth"`
	// ClientSecretFile holds the client secret (client_secret_basic);
	// surrounding whitespace is ignored.
	ClientSecretFile string `yaml:"client_secret_file"`
	// PrivateKeyFile is a PEM private key (PKCS #8, PKCS #1 or SEC 1)
	// that signs the RFC 7523 client assertion (private_key_jwt).
	PrivateKeyFile string `yaml:"private_key_file"`
	// KeyID is the assertion's kid header; optional.
	KeyID string `yaml:"key_id"`
	// Algorithm signs the assertion; default by key (RS256, ES256/384/512
	// by curve, EdDSA).
	Algorithm string `yaml:"algorithm"`
	// AssertionAudience is the assertion's aud; default the endpoint.
	AssertionAudience string `yaml:"assertion_audience"`
	// Issuer, when set, must equal the response's iss exactly (a response
	// without iss is accepted and reported with this issuer).
	Issuer string `yaml:"issuer"`
	// Audiences, when set, require the response's aud to contain one.
	Audiences []string `yaml:"audiences"`
	// AllowedClientIDs, when set, require the response's client_id to be
	// one of them: a token issued to another client is refused.
	AllowedClientIDs []string `yaml:"allowed_client_ids"`
	// Claims are further response members copied to the principal's
	// claims (for headers and rule requirements).
	Claims []string `yaml:"claims"`
	// Timeout bounds one call to the endpoint; default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// CacheTTL is the longest an active answer is served from memory;
	// default 1m; never past the token's exp. It is also the longest a
	// revocation at the server goes unnoticed.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// NegativeCacheTTL is how long a refused token is remembered; default
	// 5s; negative: off.
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// CacheSize bounds the cache entries; default 10000; negative: no cache.
	CacheSize int `yaml:"cache_size"`
	// MaxConcurrentCalls bounds the calls to the endpoint in flight at
	// once; default 64. A check that would need one more is answered
	// could-not-decide (503) at once: a flood of distinct tokens while the
	// endpoint is slow must not pile up goroutines and connections here,
	// nor load onto the authorization server.
	MaxConcurrentCalls int `yaml:"max_concurrent_calls"`
	// MaxTokenBytes rejects longer tokens with ErrTooLarge; default 8 KiB.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// AllowHTTP allows an http:// endpoint (tests, trusted networks).
	AllowHTTP bool `yaml:"allow_http"`
}

// ApplyDefaults fills in unset fields.
func (c *IntrospectionConfig) ApplyDefaults() {
	if c.ClientAuth == "" {
		c.ClientAuth = ClientAuthBasic
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = time.Minute
	}
	if c.NegativeCacheTTL == 0 {
		c.NegativeCacheTTL = 5 * time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = defaultCacheSize
	}
	if c.MaxConcurrentCalls == 0 {
		c.MaxConcurrentCalls = 64
	}
	c.MaxTokenBytes = maxBytesOr(c.MaxTokenBytes)
}

// Validate checks the config without reading files or the network; paths
// are relative to the introspection section.
func (c *IntrospectionConfig) Validate() error {
	var errs []error
	u, err := url.Parse(c.Endpoint)
	switch {
	case c.Endpoint == "":
		errs = append(errs, errorf("endpoint", "required"))
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		errs = append(errs, errorf("endpoint", "must be an absolute https URL"))
	case u.Scheme == "http" && !c.AllowHTTP:
		errs = append(errs, errorf("endpoint", "is http: set allow_http to allow it"))
	case u.User != nil:
		errs = append(errs, errorf("endpoint", "must not carry credentials (use client_auth)"))
	case u.Fragment != "":
		errs = append(errs, errorf("endpoint", "must not have a fragment"))
	}
	if c.ClientID == "" {
		errs = append(errs, errorf("client_id", "required (RFC 7662 §2.1: the endpoint authenticates its callers)"))
	}
	switch c.ClientAuth {
	case "", ClientAuthBasic:
		if c.ClientSecretFile == "" {
			errs = append(errs, errorf("client_secret_file", "required with client_auth %s", ClientAuthBasic))
		}
		if c.PrivateKeyFile != "" {
			errs = append(errs, errorf("private_key_file", "only with client_auth %s", ClientAuthPrivateKeyJWT))
		}
	case ClientAuthPrivateKeyJWT:
		if c.PrivateKeyFile == "" {
			errs = append(errs, errorf("private_key_file", "required with client_auth %s", ClientAuthPrivateKeyJWT))
		}
		if c.ClientSecretFile != "" {
			errs = append(errs, errorf("client_secret_file", "only with client_auth %s", ClientAuthBasic))
		}
		if c.Algorithm != "" && (!slices.Contains(asymmetricAlgs, c.Algorithm)) {
			errs = append(errs, errorf("algorithm", "%q is not an asymmetric JWS algorithm", c.Algorithm))
		}
	default:
		errs = append(errs, errorf("client_auth", "must be %s or %s, not %q", ClientAuthBasic, ClientAuthPrivateKeyJWT, c.ClientAuth))
	}
	if c.Timeout < 0 {
		errs = append(errs, errorf("timeout", "must not be negative"))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, errorf("cache_ttl", "must not be negative"))
	}
	if c.MaxConcurrentCalls < 0 {
		errs = append(errs, errorf("max_concurrent_calls", "must not be negative"))
	}
	for i, name := range c.Claims {
		if name == "" || slices.Contains(introspectionMembers, name) {
			errs = append(errs, errorf(fmt.Sprintf("claims[%d]", i), "%q is not a further claim (the standard members are mapped already)", name))
		}
	}
	errs = append(errs, checkMaxBytes(c.MaxTokenBytes))
	return errors.Join(errs...)
}

// Files are the files the verifier reads.
func (c *IntrospectionConfig) Files() []string {
	var out []string
	for _, f := range []string{c.ClientSecretFile, c.PrivateKeyFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// introspectionMembers are the response members mapped to Principal
// fields (RFC 7662 §2.2).
var introspectionMembers = []string{"active", "sub", "scope", "client_id", "exp", "iat", "nbf", "iss", "aud", "username", "token_type", "jti"}

// IntrospectionOptions are an IntrospectionVerifier's dependencies.
type IntrospectionOptions struct {
	Options
	// HTTPClient calls the endpoint; default a client of its own. Its
	// redirects are never followed (a redirect is a failure: the token
	// and the client's credentials must not go elsewhere).
	HTTPClient *http.Client
}

// IntrospectionVerifier checks opaque access tokens at an RFC 7662
// introspection endpoint. Answers are cached (active ones up to cache_ttl
// and never past their exp; refused ones for negative_cache_ttl) under a
// key of the endpoint, the client id and the token's hash, so two
// authenticators never share an answer; concurrent checks of one token
// share one call; each call is bounded by the timeout. An endpoint that
// fails, times out or answers anything but a well-formed RFC 7662 JSON
// document is a could-not-decide error (503), never a rejection.
type IntrospectionVerifier struct {
	cfg      IntrospectionConfig
	client   *http.Client
	secret   string
	signer   *JWTSigner
	keyBase  [sha256.Size]byte // hash of endpoint and client id
	cache    *verifiedCache
	flights  singleflight.Group
	inFlight chan struct{} // one slot per call in flight
	counters cacheCounters
	calls    *prometheus.CounterVec // result
	log      *slog.Logger
	now      func() time.Time
	logURL   string
	revs     *revocation.List
}

var errNoRedirect = errors.New("redirect refused")

// NewIntrospectionVerifier validates cfg (after defaults), reads its secret
// or key file and returns the verifier. It starts no goroutine.
func NewIntrospectionVerifier(cfg IntrospectionConfig, opts IntrospectionOptions) (*IntrospectionVerifier, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts.applyDefaults()
	base := opts.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	client := *base
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return errNoRedirect }
	m := newMetrics(opts.Registerer)
	v := &IntrospectionVerifier{
		cfg:      cfg,
		client:   &client,
		cache:    newVerifiedCache(cfg.CacheSize),
		inFlight: make(chan struct{}, cfg.MaxConcurrentCalls),
		log:      opts.Logger,
		now:      opts.Now,
		logURL:   redactURL(cfg.Endpoint),
		revs:     opts.Revocations,
		keyBase:  sha256.Sum256([]byte("introspection\x00" + cfg.Endpoint + "\x00" + cfg.ClientID)),
	}
	if m != nil {
		v.counters = m.cacheCounters(MethodIntrospection)
		v.calls = register(opts.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_introspection_requests_total",
			Help: "Calls to OAuth 2.0 introspection endpoints (cache misses only), by result (active, inactive, refused, error; busy: not made, max_concurrent_calls in flight).",
		}, []string{"result"}))
	}
	switch cfg.ClientAuth {
	case ClientAuthBasic:
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, errorf("client_secret_file", "%v", err)
		}
		v.secret = strings.TrimSpace(string(b))
		if v.secret == "" {
			return nil, errorf("client_secret_file", "%s is empty", cfg.ClientSecretFile)
		}
	case ClientAuthPrivateKeyJWT:
		s, err := NewJWTSigner(cfg.PrivateKeyFile, cfg.KeyID, cfg.Algorithm)
		if err != nil {
			return nil, errorf("private_key_file", "%v", err)
		}
		if _, ok := s.key.([]byte); ok {
			return nil, errorf("private_key_file", "needs an asymmetric key")
		}
		v.signer = s
	}
	return v, nil
}

// cacheKey is SHA-256(hash(endpoint, client id) || SHA-256(token)): the
// token's hash bound to this endpoint and client, computed without
// allocating.
func (v *IntrospectionVerifier) cacheKey(credential string) cacheKey {
	var buf [2 * sha256.Size]byte
	copy(buf[:sha256.Size], v.keyBase[:])
	t := sha256.Sum256(stringBytes(credential))
	copy(buf[sha256.Size:], t[:])
	return sha256.Sum256(buf[:])
}

// Verify checks the token; see Verifier in package authz for the error
// contract.
func (v *IntrospectionVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	switch {
	case credential == "":
		return Principal{}, ErrMissing
	case len(credential) > v.cfg.MaxTokenBytes:
		return Principal{}, ErrTooLarge
	case !visibleASCII(credential):
		return Principal{}, ErrMalformed
	}
	key := v.cacheKey(credential)
	if e, ok := v.cache.get(&key, v.now()); ok {
		v.counters.observe(true)
		return v.unlessRevoked(ctx, &e)
	}
	v.counters.observe(false)
	return v.load(ctx, credential, key)
}

// unlessRevoked returns an answer, cached or fresh, after asking the
// revocation list about an active one: the authorization server does not
// know of a subject epoch or a jti record, and a cached answer outlives
// its own revocations for up to cache_ttl.
func (v *IntrospectionVerifier) unlessRevoked(ctx context.Context, e *cacheEntry) (Principal, error) {
	if e.err != nil {
		return Principal{}, e.err
	}
	if err := revoked(ctx, v.revs, v.now(), &e.principal, revocation.KindJTI, &e.rev, nil); err != nil {
		return Principal{}, err
	}
	return e.principal, nil
}

// load introspects through the single flight for key. The flight runs
// detached from this caller (one caller giving up does not fail the
// others) and bounded by the timeout; each caller waits no longer than its
// own context allows.
func (v *IntrospectionVerifier) load(ctx context.Context, credential string, key cacheKey) (Principal, error) {
	ch := v.flights.DoChan(string(key[:]), func() (any, error) {
		return v.introspect(credential, key)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Principal{}, r.Err
		}
		e := r.Val.(cacheEntry)
		return v.unlessRevoked(ctx, &e)
	case <-ctx.Done():
		return Principal{}, fmt.Errorf("introspection %s: %w", v.logURL, ctx.Err())
	}
}

func (v *IntrospectionVerifier) count(result string) {
	if v.calls != nil {
		v.calls.WithLabelValues(result).Inc()
	}
}

// maxIntrospectionBytes bounds a response body.
const maxIntrospectionBytes = 64 << 10

// errBusy: max_concurrent_calls calls are in flight.
var errBusy = errors.New("too many calls in flight (max_concurrent_calls)")

// introspect makes one call and caches its outcome.
func (v *IntrospectionVerifier) introspect(credential string, key cacheKey) (any, error) {
	select {
	case v.inFlight <- struct{}{}:
		defer func() { <-v.inFlight }()
	default:
		v.count("busy")
		return nil, fmt.Errorf("introspection %s: %w", v.logURL, errBusy)
	}
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.Timeout)
	defer cancel()
	body, err := v.call(ctx, credential)
	if err != nil {
		v.count("error")
		return nil, fmt.Errorf("introspection %s: %w", v.logURL, err)
	}
	now := v.now()
	p, rev, verr := v.principal(body, now)
	var e cacheEntry
	switch {
	case verr == nil:
		v.count("active")
		e = cacheEntry{principal: p, rev: rev, until: cacheUntil(now, p.Expiry, v.cfg.CacheTTL)}
	case !errors.Is(verr, ErrInvalid):
		v.count("error")
		return nil, fmt.Errorf("introspection %s: %w", v.logURL, verr)
	default:
		if errors.Is(verr, ErrInactive) {
			v.count("inactive")
		} else {
			v.count("refused")
		}
		e = cacheEntry{err: verr}
		if v.cfg.NegativeCacheTTL > 0 {
			e.until = now.Add(v.cfg.NegativeCacheTTL)
		}
	}
	v.cache.put(&key, e, now)
	return e, nil
}

// call POSTs the token (RFC 7662 §2.1) and returns a 200 response's JSON
// body. Errors never hold the token, the secret or the assertion.
func (v *IntrospectionVerifier) call(ctx context.Context, credential string) ([]byte, error) {
	form := url.Values{"token": {credential}, "token_type_hint": {"access_token"}}
	if v.signer != nil {
		assertion, err := v.assertion()
		if err != nil {
			return nil, err
		}
		form.Set("client_id", v.cfg.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.Endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, errors.New("invalid endpoint URL")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if v.signer == nil {
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(v.cfg.ClientID), url.QueryEscape(v.secret))
	}
	resp, err := v.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL once, redacted, by the caller
		}
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	if err := checkJSONMediaType(resp.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxIntrospectionBytes {
		return nil, fmt.Errorf("response larger than %d bytes", maxIntrospectionBytes)
	}
	return data, nil
}

// assertion is a fresh RFC 7523 §3 client assertion: iss and sub the
// client id, aud the endpoint, a minute's lifetime, a random jti.
func (v *IntrospectionVerifier) assertion() (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	aud := v.cfg.AssertionAudience
	if aud == "" {
		aud = v.cfg.Endpoint
	}
	now := v.now()
	tok := jwt.NewWithClaims(v.signer.method, jwt.MapClaims{
		"iss": v.cfg.ClientID, "sub": v.cfg.ClientID, "aud": aud,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": hex.EncodeToString(jti[:]),
	})
	if v.signer.kid != "" {
		tok.Header["kid"] = v.signer.kid
	}
	s, err := tok.SignedString(v.signer.key)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	return s, nil
}

// errGarbage is a response that is not an RFC 7662 answer.
type errGarbage struct{ what string }

func (e errGarbage) Error() string { return "malformed response: " + e.what }

// introspectionResponse holds the members read from a response.
type introspectionResponse struct {
	active                              *bool
	sub, scope, clientID, iss, username string
	jti, sid                            string
	exp, nbf, iat                       time.Time
	hasExp, hasNbf, hasIat              bool
	aud                                 []string
	extra                               map[string]any
}

// principal reads a response body: a malformed one is an error (could not
// decide), an inactive or unacceptable token a CredentialError.
func (v *IntrospectionVerifier) principal(body []byte, now time.Time) (Principal, revIDs, error) {
	var r introspectionResponse
	err := walkJSON(body, func(name, raw []byte) error {
		var ok bool
		n := string(name)
		// The revocation ids (RFC 7662 2.2: jti and sid strings, iat a
		// NumericDate), also copied below when selected as claims.
		switch n {
		case "jti":
			if r.jti, ok = jsonString(raw); !ok {
				return errGarbage{"member jti has the wrong type"}
			}
		case "sid":
			if r.sid, ok = jsonString(raw); !ok {
				return errGarbage{"member sid has the wrong type"}
			}
		case "iat":
			if r.iat, ok = numericDate(raw, false); !ok {
				return errGarbage{"member iat has the wrong type"}
			}
			r.hasIat = true
		}
		switch n {
		case "active":
			b := string(raw) == "true"
			ok = b || string(raw) == "false"
			r.active = &b
		case "sub":
			r.sub, ok = jsonString(raw)
		case "scope":
			r.scope, ok = jsonString(raw)
		case "client_id":
			r.clientID, ok = jsonString(raw)
		case "iss":
			r.iss, ok = jsonString(raw)
		case "username":
			r.username, ok = jsonString(raw)
		case "exp":
			r.exp, ok = numericDate(raw, false)
			r.hasExp = true
		case "nbf":
			r.nbf, ok = numericDate(raw, false)
			r.hasNbf = true
		case "aud":
			var one string
			if one, ok = jsonString(raw); ok {
				r.aud = []string{one}
			} else if len(raw) > 0 && raw[0] == '[' {
				ok = json.Unmarshal(raw, &r.aud) == nil && !slices.Contains(r.aud, "")
			}
		default:
			if slices.Contains(v.cfg.Claims, n) {
				var val any
				ok = json.Unmarshal(raw, &val) == nil
				if r.extra == nil {
					r.extra = map[string]any{}
				}
				r.extra[n] = val
			} else {
				ok = true
			}
		}
		if !ok {
			return errGarbage{"member " + clip(string(name)) + " has the wrong type"}
		}
		return nil
	})
	var g errGarbage
	switch {
	case errors.As(err, &g):
		return Principal{}, revIDs{}, g
	case err != nil:
		return Principal{}, revIDs{}, errGarbage{"not a JSON object without duplicate members"}
	case r.active == nil:
		return Principal{}, revIDs{}, errGarbage{"no active member"}
	case !*r.active:
		return Principal{}, revIDs{}, ErrInactive
	}
	// An active answer is still checked against what we know: the server
	// may have a looser clock or a looser idea of whom it answers for.
	switch {
	case len(v.cfg.AllowedClientIDs) > 0 && !slices.Contains(v.cfg.AllowedClientIDs, r.clientID):
		return Principal{}, revIDs{}, ErrWrongClient
	case r.hasExp && !now.Before(r.exp):
		return Principal{}, revIDs{}, ErrExpired
	case r.hasNbf && now.Add(defaultLeeway).Before(r.nbf):
		return Principal{}, revIDs{}, ErrNotYetValid
	case v.cfg.Issuer != "" && r.iss != "" && r.iss != v.cfg.Issuer:
		return Principal{}, revIDs{}, ErrWrongIssuer
	case len(v.cfg.Audiences) > 0 && !slices.ContainsFunc(r.aud, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }):
		return Principal{}, revIDs{}, ErrWrongAudience
	}
	p := Principal{
		Subject: r.sub,
		Issuer:  r.iss,
		Method:  MethodIntrospection,
		AppID:   r.clientID,
		Scopes:  splitScopes(r.scope),
		Claims:  r.extra,
	}
	if r.hasExp {
		p.Expiry = r.exp
	}
	if p.Subject == "" {
		// A client-credentials token has no user: the client is the
		// caller.
		p.Subject = r.clientID
	}
	if p.Subject == "" {
		return Principal{}, revIDs{}, ErrMalformed
	}
	if p.Issuer == "" {
		p.Issuer = v.cfg.Issuer
	}
	if p.Issuer == "" {
		p.Issuer = v.logURL
	}
	if r.username != "" {
		if p.Claims == nil {
			p.Claims = map[string]any{}
		}
		p.Claims["username"] = r.username
	}
	return p, revIDs{id: r.jti, sid: r.sid, iat: r.iat.Unix(), hasIat: r.hasIat}, nil
}

// jsonString reads a JSON string value; null or any other type is not
// one (encoding/json would read null as "").
func jsonString(raw []byte) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// visibleASCII reports whether s holds only visible ASCII (RFC 6750's
// b64token and every opaque token format in use fit): a space, control
// character or non-ASCII byte never reaches the endpoint.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
