package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// JWTConfig configures a JWTVerifier (authenticator kind jwt).
type JWTConfig struct {
	// Issuers are the trusted issuers; a token is checked against the one
	// its iss claim names.
	Issuers []IssuerConfig `yaml:"issuers"`
	// MaxTokenBytes rejects longer tokens with ErrTooLarge; default 8 KiB.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// Cache bounds the verified-token cache.
	Cache CacheConfig `yaml:"cache"`
}

// IssuerConfig is one trusted issuer.
type IssuerConfig struct {
	// Issuer is the exact iss value.
	Issuer string `yaml:"issuer"`
	// Audiences, when set, require the token's aud to contain one of them.
	Audiences []string `yaml:"audiences"`
	// Algorithms allowed for this issuer; default the asymmetric ones
	// (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA).
	// "none" is never allowed; HS256/384/512 only if listed, and only ever
	// with symmetric ("oct") keys.
	Algorithms []string `yaml:"algorithms"`
	// Leeway tolerates clock skew on exp, nbf and iat; default 30s.
	Leeway time.Duration `yaml:"leeway"`
	// JWKSURL is fetched on start, every RefreshInterval (or as its
	// Cache-Control max-age says), and on an unknown kid (at most once per
	// MinRefreshInterval). An http:// URL is allowed as written.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSFile is a local JWK Set, read once when the verifier is built;
	// it is searched before the remote source.
	JWKSFile string `yaml:"jwks_file"`
	// Discovery finds the keys through OpenID Connect discovery: it
	// fetches <issuer>/.well-known/openid-configuration, requires its
	// issuer to equal Issuer exactly, and fetches its jwks_uri (on the
	// issuer's host unless AllowedHosts lists another), restricting the
	// algorithms to those it lists in
	// id_token_signing_alg_values_supported. Refreshed like JWKSURL, which
	// it excludes.
	Discovery bool `yaml:"discovery"`
	// AllowedHosts are further hosts ("host" or "host:port") a remote
	// source may be sent to by a redirect, or by the discovery document's
	// jwks_uri. By default only the jwks_url's host, or the issuer's host
	// for discovery.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowHTTP lets discovery use an http:// issuer and jwks_uri, and
	// redirects go from https to http. Only for tests and trusted networks.
	AllowHTTP bool `yaml:"allow_http"`
	// RefreshInterval between background fetches when the key endpoint
	// sends no Cache-Control max-age; default 5m.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// MinCacheAge and MaxCacheAge bound the key endpoint's Cache-Control
	// max-age when it sets the time to the next background fetch; default
	// 1m and 1h.
	MinCacheAge time.Duration `yaml:"min_cache_age"`
	MaxCacheAge time.Duration `yaml:"max_cache_age"`
	// MinRefreshInterval is the shortest time between fetches caused by
	// unknown kids or failures; default 10s.
	MinRefreshInterval time.Duration `yaml:"min_refresh_interval"`
	// FetchTimeout bounds one refresh (for discovery: the document and the
	// key set together); default 5s.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// StartWithoutKeys lets the server report ready before this issuer's
	// keys are loaded (its tokens are answered 503 until then).
	StartWithoutKeys bool `yaml:"start_without_keys"`
}

// asymmetricAlgs is the default allow-list.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

var knownAlgs = append([]string{"HS256", "HS384", "HS512"}, asymmetricAlgs...)

// ApplyDefaults fills in unset fields.
func (c *JWTConfig) ApplyDefaults() {
	c.MaxTokenBytes = maxBytesOr(c.MaxTokenBytes)
	c.Cache.applyDefaults()
	for i := range c.Issuers {
		is := &c.Issuers[i]
		if len(is.Algorithms) == 0 {
			is.Algorithms = slices.Clone(asymmetricAlgs)
		}
		if is.Leeway == 0 {
			is.Leeway = defaultLeeway
		}
		if is.RefreshInterval == 0 {
			is.RefreshInterval = 5 * time.Minute
		}
		if is.MinRefreshInterval == 0 {
			is.MinRefreshInterval = 10 * time.Second
		}
		if is.FetchTimeout == 0 {
			is.FetchTimeout = 5 * time.Second
		}
		if is.MinCacheAge == 0 {
			is.MinCacheAge = time.Minute
		}
		if is.MaxCacheAge == 0 {
			is.MaxCacheAge = time.Hour
		}
	}
}

// Validate checks the config without reading files or the network; paths
// are relative to the jwt section.
func (c *JWTConfig) Validate() error {
	var errs []error
	if len(c.Issuers) == 0 {
		errs = append(errs, errorf("issuers", "at least one issuer is required"))
	}
	seen := map[string]bool{}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		p := yamlfile.Index("issuers", i)
		switch {
		case is.Issuer == "":
			errs = append(errs, errorf(p+".issuer", "required"))
		case seen[is.Issuer]:
			errs = append(errs, errorf(p+".issuer", "duplicate issuer %q", is.Issuer))
		}
		seen[is.Issuer] = true
		for j, a := range is.Algorithms {
			ap := yamlfile.Index(p+".algorithms", j)
			switch {
			case strings.EqualFold(a, "none"):
				errs = append(errs, errorf(ap, `"none" is never allowed`))
			case !slices.Contains(knownAlgs, a):
				errs = append(errs, errorf(ap, "unknown algorithm %q (want one of %s)", a, strings.Join(knownAlgs, " ")))
			}
		}
		errs = append(errs, validateKeySources(is, p)...)
		for j, h := range is.AllowedHosts {
			if !validAllowedHost(h) {
				errs = append(errs, errorf(yamlfile.Index(p+".allowed_hosts", j), "want a host name or host:port, got %q", h))
			}
		}
		if is.MinCacheAge > is.MaxCacheAge {
			errs = append(errs, errorf(p+".min_cache_age", "larger than max_cache_age (%s)", is.MaxCacheAge))
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"leeway", is.Leeway}, {"refresh_interval", is.RefreshInterval}, {"min_refresh_interval", is.MinRefreshInterval}, {"fetch_timeout", is.FetchTimeout},
			{"min_cache_age", is.MinCacheAge}, {"max_cache_age", is.MaxCacheAge}} {
			if d.v < 0 {
				errs = append(errs, errorf(p+"."+d.name, "must not be negative"))
			}
		}
		if is.Leeway > maxLeeway {
			errs = append(errs, errorf(p+".leeway", leewayTooLong, is.Leeway, maxLeeway))
		}
	}
	errs = append(errs, checkMaxBytes(c.MaxTokenBytes), yamlfile.Wrap("cache", c.Cache.validate()))
	return errors.Join(errs...)
}

// JWTOptions are the optional dependencies of a JWTVerifier.
type JWTOptions struct {
	Options
	// HTTPClient fetches JWKS URLs; default a client without timeout of its
	// own (each fetch is bounded by fetch_timeout).
	HTTPClient *http.Client
}

// JWTVerifier verifies JWTs from several issuers, each with its own keys,
// audiences, algorithms and leeway. It checks the signature and iss, aud,
// exp, nbf and iat itself. Verified tokens are cached until they expire.
type JWTVerifier struct {
	issuers map[string]*issuer
	order   []*issuer
	parser  *jwt.Parser
	log     *slog.Logger
	front
}

type issuer struct {
	name             string
	audiences        []string
	algs             []string
	leeway           time.Duration
	sources          []keySource // in keySourceKinds order
	startWithoutKeys bool
}

// NewJWTVerifier validates cfg (after defaults) and reads the JWKS files. It
// does not fetch JWKS URLs and starts no goroutine: call Run to keep remote
// keys fresh (a lookup before Run fetches on demand).
func NewJWTVerifier(cfg JWTConfig, opts JWTOptions) (*JWTVerifier, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts.applyDefaults()
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	m := newMetrics(opts.Registerer)
	v := &JWTVerifier{
		issuers: make(map[string]*issuer, len(cfg.Issuers)),
		front: front{
			maxBytes: cfg.MaxTokenBytes,
			maxTTL:   cfg.Cache.MaxTTL,
			cache:    newVerifiedCache(cfg.Cache.Size),
			counters: m.cacheCounters(MethodJWT),
			now:      opts.Now,
			revs:     opts.Revocations,
			revKind:  revocation.KindJTI,
		},
		log: opts.Logger,
		// Claims are validated per issuer in check; the parser only
		// decodes and verifies the signature. checkJWS has already
		// refused non-canonical base64url; strict decoding is a second
		// line.
		parser: jwt.NewParser(jwt.WithoutClaimsValidation(), jwt.WithStrictDecoding()),
	}
	deps := keySourceDeps{client: opts.HTTPClient, metrics: m, log: opts.Logger, now: opts.Now}
	var errs []error
	for i, ic := range cfg.Issuers {
		is := &issuer{
			name:             ic.Issuer,
			audiences:        ic.Audiences,
			algs:             ic.Algorithms,
			leeway:           ic.Leeway,
			startWithoutKeys: ic.StartWithoutKeys,
		}
		srcs, err := buildKeySources(&ic, yamlfile.Index("issuers", i), deps)
		if err != nil {
			errs = append(errs, err)
		}
		is.sources = srcs
		v.issuers[is.name] = is
		v.order = append(v.order, is)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// Run keeps every remote key source fresh until ctx ends; it returns nil
// then.
func (v *JWTVerifier) Run(ctx context.Context) error {
	done := make(chan struct{})
	n := 0
	for _, is := range v.order {
		for _, src := range is.sources {
			r, ok := src.(interface{ Run(context.Context) error })
			if !ok {
				continue
			}
			n++
			go func() {
				defer func() { done <- struct{}{} }()
				_ = r.Run(ctx) // returns nil on ctx end; failures are logged and counted
			}()
		}
	}
	for range n {
		<-done
	}
	return nil
}

// Ready reports nil when every issuer has keys (or is configured to start
// without them), else an error naming the issuers still waiting.
func (v *JWTVerifier) Ready() error {
	var waiting []string
	for _, is := range v.order {
		if !is.startWithoutKeys && !is.ready() {
			waiting = append(waiting, is.name)
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("jwt: no keys loaded yet for issuer(s) %s", strings.Join(waiting, ", "))
	}
	return nil
}

// Verify checks a JWT and returns its principal; see Verifier in package
// authz for the error contract. The returned Principal's slices and map are
// shared with the cache and must not be modified.
func (v *JWTVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	p, key, now, hit, err := v.lookup(ctx, credential)
	if hit || err != nil {
		return p, err
	}
	var rev revIDs
	if p, rev, err = v.verify(ctx, credential, now); err != nil {
		return Principal{}, err
	}
	if err := v.remember(ctx, &key, &p, &rev, now); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// undecided wraps a could-not-decide error from a key source so it survives
// the JWT library's error wrapping and is told apart from a rejection.
type undecided struct{ err error }

func (u *undecided) Error() string { return u.err.Error() }
func (u *undecided) Unwrap() error { return u.err }

func (v *JWTVerifier) verify(ctx context.Context, tok string, now time.Time) (Principal, revIDs, error) {
	// The strict checks come first: they are cheap next to a signature
	// check, and the library must not see what they refuse.
	times, err := checkJWS(tok)
	if err != nil {
		return Principal{}, revIDs{}, err
	}
	claims := jwt.MapClaims{}
	var is *issuer
	_, err = v.parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		iss, _ := claims["iss"].(string)
		is = v.issuers[iss]
		if is == nil {
			return nil, ErrWrongIssuer
		}
		alg := t.Method.Alg()
		if !slices.Contains(is.algs, alg) {
			return nil, ErrUnsupportedAlg
		}
		kid, _ := t.Header["kid"].(string)
		k, err := is.key(ctx, kid)
		if err != nil {
			return nil, err
		}
		if !keyFits(k, alg) {
			return nil, ErrUnsupportedAlg
		}
		return k.key, nil
	})
	if err != nil {
		return Principal{}, revIDs{}, classify(err)
	}
	// Revocation is keyed on the claims (jti, sid, sub, iat), never on the
	// token's bytes: a re-encoded signature verifies to the same claims.
	rev := revIDs{id: stringClaim(claims, "jti"), sid: stringClaim(claims, "sid"), iat: times.iat.Unix(), hasIat: times.hasIat}
	p, err := is.check(claims, times, now)
	return p, rev, err
}

// classify maps a jwt parse error to a CredentialError, or passes a key
// source failure through as could-not-decide.
func classify(err error) error {
	var ce *CredentialError
	var u *undecided
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &u):
		return u.err
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrBadSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrUnsupportedAlg // an alg the library does not know
	}
	return ErrMalformed
}

// keyFits reports whether a key may verify alg: the key's own alg (when the
// JWK names one) must match, so must the issuer's discovered algorithms, HMAC needs a symmetric key (so a public key is
// never used as an HMAC secret), and curves must match.
func keyFits(k *verificationKey, alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	if k.algs != nil && !slices.Contains(k.algs, alg) {
		return false // not among the algorithms the discovery document lists
	}
	switch key := k.key.(type) {
	case []byte:
		return strings.HasPrefix(alg, "HS")
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// registered claims that Principal fields carry; the rest go to Claims.
var principalClaims = []string{"iss", "sub", "exp", "nbf", "iat", "scope", "scp"}

// check validates the time and audience claims for this issuer and builds
// the principal. The times come from checkJWS, never from the library's
// NumericDate conversion (see jose.go).
func (is *issuer) check(c jwt.MapClaims, t jwsTimes, now time.Time) (Principal, error) {
	if !t.hasExp {
		return Principal{}, ErrMalformed
	}
	if err := checkTimes(now, is.leeway, t.exp, t.nbf, t.iat); err != nil {
		return Principal{}, err
	}
	if len(is.audiences) > 0 {
		aud, err := c.GetAudience()
		if err != nil {
			return Principal{}, ErrMalformed
		}
		if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(is.audiences, a) }) {
			return Principal{}, ErrWrongAudience
		}
	}
	sub, _ := c["sub"].(string)
	if sub == "" {
		return Principal{}, ErrMalformed
	}
	scopes, ok := scopesOf(c)
	if !ok {
		return Principal{}, ErrMalformed
	}
	p := Principal{
		Subject: sub,
		Issuer:  is.name,
		Method:  MethodJWT,
		Scopes:  scopes,
		Expiry:  t.exp,
	}
	if s, ok := c["azp"].(string); ok {
		p.AppID = s
	} else if s, ok := c["client_id"].(string); ok {
		p.AppID = s
	}
	for _, k := range principalClaims {
		delete(c, k)
	}
	if len(c) > 0 {
		p.Claims = map[string]any(c)
	}
	return p, nil
}

// scopesOf reads scope (a space-separated string) or scp (a list of strings,
// or a space-separated string).
func scopesOf(c jwt.MapClaims) ([]string, bool) {
	if v, ok := c["scope"]; ok {
		s, ok := v.(string)
		return splitScopes(s), ok
	}
	switch v := c["scp"].(type) {
	case nil:
		return nil, true
	case string:
		return splitScopes(v), true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// redactURL hides a password in the URL's userinfo and the values of its
// query parameters (an access token or API key is sometimes passed there),
// keeping their names.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable url>"
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
