package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/sync/singleflight"
)

// maxJWKSBytes bounds a JWKS document; real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// verificationKey is one usable key from a JWKS.
type verificationKey struct {
	kid string
	alg string // the JWK's "alg", empty when it names none
	key any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (oct)
	// algs, when not nil, are the only algorithms the key may verify: the
	// issuer's discovery document listed them.
	algs []string
}

// keySnapshot is an immutable key set; it is replaced whole, never changed.
type keySnapshot struct {
	byKID map[string]*verificationKey
	all   []*verificationKey
}

func (s *keySnapshot) size() int {
	if s == nil {
		return 0
	}
	return len(s.all)
}

// find returns the key for kid. A token without kid matches only a set with
// exactly one key, so a key is never guessed among several.
func (s *keySnapshot) find(kid string) *verificationKey {
	if s == nil {
		return nil
	}
	if kid == "" {
		if len(s.all) == 1 {
			return s.all[0]
		}
		return nil
	}
	return s.byKID[kid]
}

type jwkJSON struct {
	Kty    string
	Kid    string
	Use    string
	Alg    string
	N      string
	E      string
	Crv    string
	X      string
	Y      string
	K      string
	KeyOps []string
	hasOps bool
}

// member sets the field of the member named name, exactly (RFC 7517 member
// names are case-sensitive: encoding/json would also take "USE" for use,
// the last of the two winning, and read another key than go-jose and the
// issuer do). Unknown members are ignored; a known one of the wrong type
// is an error.
func (j *jwkJSON) member(name, raw []byte) error {
	var dst any
	switch string(name) {
	case "kty":
		dst = &j.Kty
	case "kid":
		dst = &j.Kid
	case "use":
		dst = &j.Use
	case "alg":
		dst = &j.Alg
	case "n":
		dst = &j.N
	case "e":
		dst = &j.E
	case "crv":
		dst = &j.Crv
	case "x":
		dst = &j.X
	case "y":
		dst = &j.Y
	case "k":
		dst = &j.K
	case "key_ops":
		dst, j.hasOps = &j.KeyOps, true
	default:
		return nil
	}
	if string(raw) == "null" {
		return errors.New("null member")
	}
	return json.Unmarshal(raw, dst)
}

// parseJWKS parses a JWK Set (RFC 7517). The document must be one JSON
// object in UTF-8 with no member name twice at any depth (go-jose refuses
// such a set too), its member names matched exactly. Keys not meant for
// signatures (use other than "sig", key_ops without "verify"), of an
// unsupported type, or malformed are skipped; a document with no usable key
// is an error, so garbage or an empty set never replaces good keys.
func parseJWKS(data []byte) (*keySnapshot, int, error) { return parseKeySet(data, true) }

// parseRemoteJWKS reads a JWK Set fetched over the network: symmetric
// ("oct") keys in it are skipped. A key set served at a URL is public, and
// an HMAC secret anyone can read lets anyone sign tokens; HS* issuers keep
// their secret in a jwks_file (go-oidc never takes HS keys from a remote
// set either).
func parseRemoteJWKS(data []byte) (*keySnapshot, int, error) { return parseKeySet(data, false) }

// parseKeySet reads a JWK Set; symmetric keys only when allowSymmetric.
func parseKeySet(data []byte, allowSymmetric bool) (*keySnapshot, int, error) {
	var keys []json.RawMessage
	err := walkJSON(data, func(name, raw []byte) error {
		if string(name) != "keys" {
			return nil
		}
		if string(raw) == "null" || json.Unmarshal(raw, &keys) != nil {
			return errors.New(`"keys" is not a list`)
		}
		return nil
	})
	// The errors never wrap walkJSON's own: those are CredentialErrors, and
	// a bad key set means the keys could not be loaded (503), never that a
	// token is bad. The member function's error is a plain one.
	var ce *CredentialError
	switch {
	case errors.Is(err, ErrDuplicateMember):
		return nil, 0, errors.New("not a JWK Set: a member name twice")
	case errors.As(err, &ce):
		return nil, 0, errors.New("not a JWK Set: not one JSON object in UTF-8")
	case err != nil:
		return nil, 0, fmt.Errorf("not a JWK Set: %w", err)
	}
	s := &keySnapshot{byKID: make(map[string]*verificationKey, len(keys))}
	skipped := 0
	for _, raw := range keys {
		var j jwkJSON
		if err := walkJSON(raw, j.member); err != nil || (!allowSymmetric && j.Kty == "oct") {
			skipped++
			continue
		}
		k, err := j.verificationKey()
		if err != nil || (j.Kid != "" && s.byKID[j.Kid] != nil) {
			skipped++
			continue
		}
		if j.Kid != "" {
			s.byKID[j.Kid] = k
		}
		s.all = append(s.all, k)
	}
	if len(s.all) == 0 {
		return nil, skipped, fmt.Errorf("JWK Set has no usable signature key (%d skipped)", skipped)
	}
	return s, skipped, nil
}

func (j *jwkJSON) verificationKey() (*verificationKey, error) {
	if (j.Use != "" && j.Use != "sig") || (j.hasOps && !slices.Contains(j.KeyOps, "verify")) {
		return nil, errors.New("not a signature key")
	}
	k := &verificationKey{kid: j.Kid, alg: j.Alg}
	switch j.Kty {
	case "RSA":
		n, err1 := b64uint(j.N)
		e, err2 := b64uint(j.E)
		if err1 != nil || err2 != nil || n.BitLen() < 2048 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, errors.New("bad RSA key")
		}
		k.key = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("unsupported curve")
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := base64.RawURLEncoding.DecodeString(j.X)
		y, err2 := base64.RawURLEncoding.DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC key")
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, errors.New("EC point not on curve")
		}
		k.key = pub
	case "OKP":
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad OKP key")
		}
		k.key = ed25519.PublicKey(x)
	case "oct":
		secret, err := base64.RawURLEncoding.DecodeString(j.K)
		if err != nil || len(secret) < minHMACKeyBytes {
			return nil, errors.New("bad oct key")
		}
		k.key = secret
	default:
		return nil, errors.New("unsupported key type")
	}
	return k, nil
}

func b64uint(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}

// errNoKeys means a key source has never loaded any key: the verifier cannot
// decide (503), it does not reject the token (401).
var errNoKeys = errors.New("no JWKS keys loaded yet")

// errRateLimited means an unknown-kid refetch was skipped because the last
// fetch was too recent.
var errRateLimited = errors.New("jwks refetch rate-limited")

// freshness is how long a fetched key set may be used before the next
// background refresh, as its response's Cache-Control said; set is false
// when the response said nothing usable.
type freshness struct {
	age time.Duration
	set bool
}

// remoteKeySet is a key set fetched over the network (kinds jwks_url and
// discovery; fetchKeys is what differs). The current set is an immutable
// snapshot behind an atomic pointer; Run refreshes it on an interval (or as
// the key endpoint's Cache-Control max-age says, within [minAge, maxAge]);
// an unknown kid triggers an immediate refetch that concurrent callers share
// (singleflight) and that happens at most once per minInterval. A failed or
// unusable fetch keeps the last good set; before any fetch succeeds the set
// is empty and lookups report errNoKeys (could not decide), and every later
// lookup or tick tries again.
type remoteKeySet struct {
	issuer      string
	logURL      string // what is fetched first, redacted, for logs
	interval    time.Duration
	minInterval time.Duration
	timeout     time.Duration
	minAge      time.Duration
	maxAge      time.Duration
	metrics     *metrics
	log         *slog.Logger
	now         func() time.Time
	// fetchKeys fetches a new set; ctx carries the fetch timeout. It is
	// never called concurrently with itself (all calls go through
	// flights under one key).
	fetchKeys func(ctx context.Context) (*keySnapshot, freshness, error)

	current atomic.Pointer[keySnapshot]
	flights singleflight.Group

	mu          sync.Mutex
	lastAttempt time.Time
	fresh       freshness // of the last good fetch
}

var _ keySource = (*remoteKeySet)(nil)

func newRemoteKeySet(ic *IssuerConfig, d keySourceDeps, logURL string) *remoteKeySet {
	return &remoteKeySet{
		issuer:      ic.Issuer,
		logURL:      logURL,
		interval:    ic.RefreshInterval,
		minInterval: ic.MinRefreshInterval,
		timeout:     ic.FetchTimeout,
		minAge:      ic.MinCacheAge,
		maxAge:      ic.MaxCacheAge,
		metrics:     d.metrics,
		log:         d.log,
		now:         d.now,
	}
}

// Ready reports nil once a key set has been loaded.
func (r *remoteKeySet) Ready() error {
	if r.current.Load().size() == 0 {
		return errNoKeys
	}
	return nil
}

// Key returns the key for kid, refetching once if the kid is unknown.
func (r *remoteKeySet) Key(ctx context.Context, kid string) (*verificationKey, error) {
	return r.lookup(ctx, kid)
}

// lookup is Key (named so for goroutine dumps: operators' runbooks and the
// resilience tests count the requests waiting here).
func (r *remoteKeySet) lookup(ctx context.Context, kid string) (*verificationKey, error) {
	if k := r.current.Load().find(kid); k != nil {
		return k, nil
	}
	err := r.refresh(ctx)
	if k := r.current.Load().find(kid); k != nil {
		return k, nil
	}
	if r.current.Load().size() == 0 {
		if err == nil || errors.Is(err, errRateLimited) {
			err = errNoKeys
		}
		return nil, fmt.Errorf("issuer %s: %w", r.issuer, err)
	}
	if err != nil && !errors.Is(err, errRateLimited) && ctx.Err() != nil {
		// The caller gave up while the refetch ran: undecided, not unknown.
		return nil, fmt.Errorf("issuer %s: %w", r.issuer, ctx.Err())
	}
	if errors.Is(err, context.Canceled) {
		// The refetch this call joined was Run's, stopped by a reload or
		// shutdown: undecided, not unknown.
		return nil, fmt.Errorf("issuer %s: %w", r.issuer, err)
	}
	return nil, ErrUnknownKey
}

// refresh fetches the set unless another fetch is in flight (then it waits
// for that one) or a fetch was attempted within minInterval. It waits no
// longer than ctx allows; the fetch itself is detached from ctx, so other
// callers can share it, and bounded by the fetch timeout.
func (r *remoteKeySet) refresh(ctx context.Context) error {
	ch := r.flights.DoChan("fetch", func() (any, error) {
		if !r.startAttempt(false) {
			return nil, errRateLimited
		}
		return nil, r.fetch(context.Background())
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refreshOwned is Run's fetch. It runs in the calling goroutine and ends
// when ctx does, so run leaves no fetch behind when it returns: a JWKS
// fetch that outlived Run would hold a goroutine and a connection for up
// to fetch_timeout after a reload or shutdown. When a lookup's fetch is
// already in flight it waits for that one (bounded by fetch_timeout).
func (r *remoteKeySet) refreshOwned(ctx context.Context) error {
	_, err, _ := r.flights.Do("fetch", func() (any, error) {
		r.startAttempt(true)
		return nil, r.fetch(ctx)
	})
	return err
}

func (r *remoteKeySet) startAttempt(force bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !force && !r.lastAttempt.IsZero() && now.Sub(r.lastAttempt) < r.minInterval {
		return false
	}
	r.lastAttempt = now
	return true
}

// fetch runs one fetch bounded by the fetch timeout, stores a good set,
// and counts and logs the outcome.
func (r *remoteKeySet) fetch(ctx context.Context) error {
	snap, fresh, err := r.fetchOnce(ctx)
	if err != nil && ctx.Err() != nil {
		return err // Run stopped: not a failure of the endpoint
	}
	if err == nil {
		r.current.Store(snap)
		r.mu.Lock()
		r.fresh = fresh
		r.mu.Unlock()
	}
	r.metrics.jwksRefresh(r.issuer, err, r.now())
	if err != nil {
		r.log.Warn("jwks fetch failed; keeping the last good key set",
			"issuer", r.issuer, "url", r.logURL, "keys", r.current.Load().size(), "error", err)
	}
	return err
}

// fetchOnce is one fetchKeys bounded by the fetch timeout (named so for
// goroutine dumps: a goroutine here is running a fetch).
func (r *remoteKeySet) fetchOnce(ctx context.Context) (*keySnapshot, freshness, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.fetchKeys(ctx)
}

// nextWait is how long Run waits after a fetch that ended with err: after a
// failure min_refresh_interval (when shorter than refresh_interval); after
// a success the key endpoint's max-age clamped to [min_cache_age,
// max_cache_age], or refresh_interval when it sent none.
func (r *remoteKeySet) nextWait(err error) time.Duration {
	if err != nil {
		return min(r.interval, r.minInterval)
	}
	r.mu.Lock()
	f := r.fresh
	r.mu.Unlock()
	if !f.set {
		return r.interval
	}
	return min(max(f.age, r.minAge), r.maxAge)
}

// Run fetches now if no keys are loaded, then as nextWait says. It returns
// nil when ctx ends.
func (r *remoteKeySet) Run(ctx context.Context) error {
	var err error
	if r.current.Load().size() == 0 {
		err = r.refreshOwned(ctx)
	}
	for {
		t := time.NewTimer(r.nextWait(err))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		err = r.refreshOwned(ctx)
	}
}

// getJWKS fetches and parses the JWK Set at rawURL.
func (r *remoteKeySet) getJWKS(ctx context.Context, client *http.Client, rawURL, logURL string) (*keySnapshot, freshness, error) {
	data, h, err := httpGet(ctx, client, "jwks", rawURL, logURL, "application/json, application/jwk-set+json", maxJWKSBytes)
	if err != nil {
		return nil, freshness{}, err
	}
	snap, skipped, err := parseRemoteJWKS(data)
	if err != nil {
		return nil, freshness{}, fmt.Errorf("jwks fetch %s: %w", logURL, err)
	}
	if skipped > 0 {
		r.log.Info("jwks keys skipped (unsupported, malformed, or symmetric keys from a URL)", "issuer", r.issuer, "skipped", skipped)
	}
	return snap, freshnessOf(h), nil
}

// httpGet fetches rawURL and returns a 200 response's body, at most limit
// bytes. Errors name the URL only as logURL (redacted), never as net/url
// prints it.
func httpGet(ctx context.Context, client *http.Client, what, rawURL, logURL, accept string, limit int) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		// Not wrapped: net/url's error repeats the whole URL, query
		// secrets included.
		return nil, nil, fmt.Errorf("%s fetch %s: invalid request URL", what, logURL)
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, query and all (net/http hides
		// only a userinfo password): say it once, redacted.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, nil, fmt.Errorf("%s fetch %s: %w", what, logURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s fetch %s: HTTP status %d", what, logURL, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s fetch %s: %w", what, logURL, err)
	}
	if len(data) > limit {
		return nil, nil, fmt.Errorf("%s fetch %s: document larger than %d bytes", what, logURL, limit)
	}
	return data, resp.Header, nil
}

// maxFreshness caps a max-age before arithmetic (RFC 9111 §1.2.2: 2^31
// seconds stands for "infinity").
const maxFreshness = (1<<31 - 1) * time.Second

// freshnessOf reads the freshness lifetime a response grants a private
// cache (RFC 9111 §4.2): Cache-Control max-age less the Age header. An
// unqualified no-store or no-cache, an invalid max-age, or two max-age
// directives that disagree make the response stale at once (age 0, set);
// s-maxage is for shared caches and Expires is not read. Without
// Cache-Control the result is unset and the configured refresh_interval
// applies.
func freshnessOf(h http.Header) freshness {
	var (
		age   time.Duration
		found bool
		stale bool
	)
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, value, hasValue := strings.Cut(strings.TrimSpace(d), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			value = strings.TrimSpace(value)
			switch {
			case (name == "no-store" || name == "no-cache") && !hasValue:
				stale = true
			case name == "max-age":
				v, ok := deltaSeconds(strings.Trim(value, `"`))
				switch {
				case !ok:
					stale = true
				case found && v != age:
					stale = true
				default:
					age, found = v, true
				}
			}
		}
	}
	if stale {
		return freshness{set: true}
	}
	if !found {
		return freshness{}
	}
	if a, ok := deltaSeconds(strings.TrimSpace(h.Get("Age"))); ok {
		age = max(age-a, 0)
	}
	return freshness{age: age, set: true}
}

// deltaSeconds parses RFC 9111 delta-seconds (digits only), capped at
// maxFreshness.
func deltaSeconds(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	const capSeconds = int64(maxFreshness / time.Second)
	var n int64
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int64(c-'0'), capSeconds)
	}
	return time.Duration(n) * time.Second, true
}

// hostPolicy says where a remote key source may be sent: by a redirect, and
// for discovery by the document's jwks_uri. A host is allowed when it is a
// home host (the configured URL's, or the issuer's for discovery: same
// hostname and port) or listed in allowed_hosts; http only with allow_http
// (a jwks_url written as http:// is that choice).
type hostPolicy struct {
	home      []string // normalised host:port
	allowed   []string // allowed_hosts entries, normalised
	allowHTTP bool
	what      string // whose host home is, for messages
}

// maxRedirects bounds the redirects one fetch follows.
const maxRedirects = 5

func newHostPolicy(ic *IssuerConfig, what string, home ...*url.URL) *hostPolicy {
	p := &hostPolicy{allowHTTP: ic.AllowHTTP, what: what}
	for _, u := range home {
		p.home = append(p.home, hostPort(u))
	}
	for _, h := range ic.AllowedHosts {
		p.allowed = append(p.allowed, normaliseAllowedHost(h))
	}
	return p
}

// hostPort is u's hostname as dialHost gives it and its port (the
// scheme's default when none is written).
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return net.JoinHostPort(dialHost(u.Hostname()), port)
}

// dialHost is the name net/http dials for hostname h, lowercased: a
// non-ASCII name converted by IDNA's lookup profile, as net/http's
// canonicalAddr does. Hosts are compared in this form only: Unicode case
// mapping is not what is dialed ("İ" lowercases to "i", while IDNA maps
// it to "i̇", so strings.ToLower would let "İdp.example.com" pass as
// idp.example.com and the fetch go to xn--idp-8dc.example.com). A name
// IDNA refuses is returned behind a NUL byte, so it equals no name IDNA
// accepts.
func dialHost(h string) string {
	for i := range len(h) {
		if h[i] >= utf8.RuneSelf {
			a, err := idna.Lookup.ToASCII(h)
			if err != nil {
				return "\x00" + h
			}
			h = a
			break
		}
	}
	return strings.ToLower(h)
}

// normaliseAllowedHost puts an allowed_hosts entry, "host" (any port) or
// "host:port", in dialHost's form.
func normaliseAllowedHost(h string) string {
	if host, port, err := net.SplitHostPort(h); err == nil {
		return net.JoinHostPort(dialHost(host), port)
	}
	return dialHost(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
}

// check reports why u may not be fetched, or nil.
func (p *hostPolicy) check(u *url.URL) error {
	switch {
	case u.Scheme == "http" && !p.allowHTTP:
		return fmt.Errorf("http URL for host %q refused (https required; allow_http permits http)", u.Host)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("scheme %q refused (https required)", u.Scheme)
	case u.Host == "":
		return errors.New("URL has no host")
	case u.User != nil:
		return fmt.Errorf("URL for host %q carries credentials", u.Host)
	}
	hp := hostPort(u)
	if slices.Contains(p.home, hp) {
		return nil
	}
	for _, a := range p.allowed {
		if a == hp || a == dialHost(u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("host %q is neither the %s host nor in allowed_hosts", u.Host, p.what)
}

// client is base with redirects limited to maxRedirects, each checked.
func (p *hostPolicy) client(base *http.Client) *http.Client {
	c := *base
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if err := p.check(req.URL); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		return nil
	}
	return &c
}

// validateJWKSURL checks jwks_url; paths are relative to the issuer entry.
func validateJWKSURL(ic *IssuerConfig) []error {
	u, err := url.Parse(ic.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return []error{errorf("jwks_url", "must be an http or https URL")}
	}
	return nil
}

func buildJWKSURL(ic *IssuerConfig, d keySourceDeps) (keySource, error) {
	u, err := url.Parse(ic.JWKSURL)
	if err != nil {
		return nil, errors.New("must be an http or https URL")
	}
	pol := newHostPolicy(ic, "jwks_url", u)
	pol.allowHTTP = pol.allowHTTP || u.Scheme == "http"
	client := pol.client(d.client)
	logURL := redactURL(ic.JWKSURL)
	r := newRemoteKeySet(ic, d, logURL)
	r.fetchKeys = func(ctx context.Context) (*keySnapshot, freshness, error) {
		return r.getJWKS(ctx, client, ic.JWKSURL, logURL)
	}
	return r, nil
}

// validAllowedHost reports whether h is a host name or IP literal,
// optionally with a port, and nothing else (no scheme, path, user info or
// wildcard).
func validAllowedHost(h string) bool {
	if h == "" || strings.ContainsAny(h, "*/@?#") {
		return false
	}
	u, err := url.Parse("https://" + h)
	return err == nil && u.Host == h && u.Hostname() != ""
}
