package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// SessionStore reads the session records the user database writes. The
// verifier owns caching and de-duplication; a store just reads.
type SessionStore interface {
	// SessionFields returns the fields of the record stored under key, or
	// an empty map when there is none. Any error means the store could not
	// answer (it is never a verdict on the credential).
	SessionFields(ctx context.Context, key string) (map[string]string, error)
}

// Session key encodings: how a session token becomes a store key.
const (
	// SessionKeySHA256 stores sessions under KeyPrefix + hex(SHA-256(token)),
	// so a dump of the store holds no usable token.
	SessionKeySHA256 = "sha256"
	// SessionKeyPlain stores sessions under KeyPrefix + token.
	SessionKeyPlain = "plain"
)

// Session record fields with a meaning; every other field becomes a claim.
const (
	SessionFieldUserID  = "uid"
	SessionFieldAppID   = "app"
	SessionFieldExpiry  = "exp"
	SessionFieldScope   = "scope"
	SessionFieldRevoked = "revoked"
	// SessionFieldIssuedAt (optional, integer seconds) is compared with
	// the subject's revocation epoch; it stays a claim too.
	SessionFieldIssuedAt = "iat"
)

// SessionConfig configures a SessionVerifier (authenticator kind
// udb_session).
type SessionConfig struct {
	// KeyPrefix starts every session key; default "udb:session:".
	KeyPrefix string `yaml:"key_prefix"`
	// KeyEncoding is sha256 (default) or plain.
	KeyEncoding string `yaml:"key_encoding"`
	// Issuer is reported as Principal.Issuer; default "udb".
	Issuer string `yaml:"issuer"`
	// Timeout bounds one store lookup; default 100ms. A lookup that takes
	// longer is a could-not-decide error.
	Timeout time.Duration `yaml:"timeout"`
	// CacheTTL is how long a found session is served from memory; default
	// 5s. It is also the longest a revocation (DEL) can go unnoticed.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// StaleIfError serves a session's last successful lookup for up to this
	// long past its cache_ttl, but only while the store fails (error or
	// timeout); default 0: off. Never past the session's own exp; a session
	// last seen missing, revoked or expired is never served stale. It
	// trades revocation latency (a DEL goes unnoticed for up to cache_ttl
	// + stale_if_error while Redis is down) for availability.
	StaleIfError time.Duration `yaml:"stale_if_error"`
	// NegativeCacheTTL is how long a missing or revoked session is
	// remembered; default 2s. Negative values turn negative caching off.
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// CacheSize bounds the cache entries; default 10000; negative: no cache.
	CacheSize int `yaml:"cache_size"`
	// MaxTokenBytes rejects longer tokens with ErrTooLarge; default 8 KiB.
	MaxTokenBytes int `yaml:"max_token_bytes"`
}

// Session token length bounds (after the size limit).
const minSessionTokenBytes = 16

// ApplyDefaults fills in unset fields.
func (c *SessionConfig) ApplyDefaults() {
	if c.KeyPrefix == "" {
		c.KeyPrefix = "udb:session:"
	}
	if c.KeyEncoding == "" {
		c.KeyEncoding = SessionKeySHA256
	}
	if c.Issuer == "" {
		c.Issuer = "udb"
	}
	if c.Timeout == 0 {
		c.Timeout = 100 * time.Millisecond
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 5 * time.Second
	}
	if c.NegativeCacheTTL == 0 {
		c.NegativeCacheTTL = 2 * time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = defaultCacheSize
	}
	c.MaxTokenBytes = maxBytesOr(c.MaxTokenBytes)
}

// Validate checks the config; paths are relative to the udb_session
// section.
func (c *SessionConfig) Validate() error {
	var errs []error
	switch c.KeyEncoding {
	case "", SessionKeySHA256, SessionKeyPlain:
	default:
		errs = append(errs, errorf("key_encoding", "must be %s or %s, not %q", SessionKeySHA256, SessionKeyPlain, c.KeyEncoding))
	}
	if c.Timeout < 0 {
		errs = append(errs, errorf("timeout", "must not be negative"))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, errorf("cache_ttl", "must not be negative"))
	}
	switch {
	case c.StaleIfError < 0:
		errs = append(errs, errorf("stale_if_error", "must not be negative"))
	case c.StaleIfError > 0 && c.CacheSize < 0:
		errs = append(errs, errorf("stale_if_error", "needs the cache (cache_size is negative)"))
	}
	errs = append(errs, checkMaxBytes(c.MaxTokenBytes))
	return errors.Join(errs...)
}

// SessionKey is the store key of a session token under this config (after
// defaults).
func (c *SessionConfig) SessionKey(token string) string {
	if c.KeyEncoding == SessionKeyPlain {
		return c.KeyPrefix + token
	}
	sum := sha256.Sum256(stringBytes(token))
	return c.KeyPrefix + hex.EncodeToString(sum[:])
}

// SessionVerifier verifies opaque UDB session tokens by looking them up in a
// SessionStore (Redis, written by the user database). Found and missing
// sessions are cached briefly; concurrent lookups of one token share one
// store call; each lookup is bounded by a timeout.
type SessionVerifier struct {
	cfg      SessionConfig
	store    SessionStore
	cache    *verifiedCache
	flights  singleflight.Group
	counters cacheCounters
	metrics  *metrics
	log      *slog.Logger
	now      func() time.Time
	revs     *revocation.List
}

// NewSessionVerifier validates cfg (after defaults) and returns a verifier
// reading from store.
func NewSessionVerifier(cfg SessionConfig, store SessionStore, opts Options) (*SessionVerifier, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("udb_session: no session store (is the redis section configured?)")
	}
	opts.applyDefaults()
	m := newMetrics(opts.Registerer)
	return &SessionVerifier{
		cfg:      cfg,
		store:    store,
		cache:    newVerifiedCache(cfg.CacheSize),
		counters: m.cacheCounters(MethodUDBSession),
		metrics:  m,
		log:      opts.Logger,
		now:      opts.Now,
		revs:     opts.Revocations,
	}, nil
}

// Verify looks the session token up; see Verifier in package authz for the
// error contract. A store failure or timeout is returned as a plain error
// (could not decide), never as a CredentialError, and is not cached.
func (v *SessionVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	switch {
	case credential == "":
		return Principal{}, ErrMissing
	case len(credential) > v.cfg.MaxTokenBytes:
		return Principal{}, ErrTooLarge
	case !validSessionToken(credential):
		return Principal{}, ErrMalformed
	}
	key := keyOf(credential)
	now := v.now()
	if e, ok := v.cache.get(&key, now); ok {
		v.counters.observe(true)
		if e.err == nil {
			if err := revoked(ctx, v.revs, now, &e.principal, revocation.KindSession, &e.rev, (*[32]byte)(&key)); err != nil {
				return Principal{}, err
			}
		}
		return e.principal, e.err
	}
	v.counters.observe(false)
	p, rev, err := v.load(ctx, credential, key)
	if err != nil {
		return Principal{}, err
	}
	if err := revoked(ctx, v.revs, v.now(), &p, revocation.KindSession, &rev, (*[32]byte)(&key)); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// load looks a credential up through the single flight for its key. It is
// apart from Verify so that the cache-hit path does not move key to the heap.
func (v *SessionVerifier) load(ctx context.Context, credential string, key cacheKey) (Principal, revIDs, error) {
	// The flight runs on a context detached from this caller, so one
	// caller giving up does not fail the others; each caller still waits
	// no longer than its own context and the timeout allow.
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	ch := v.flights.DoChan(string(key[:]), func() (any, error) {
		return v.lookup(credential, key)
	})
	var err error
	select {
	case r := <-ch:
		if r.Err == nil {
			e := r.Val.(cacheEntry)
			return e.principal, e.rev, e.err
		}
		err = r.Err
	case <-ctx.Done():
		err = fmt.Errorf("udb session lookup: %w", ctx.Err())
	}
	if e, ok := v.serveStale(parent, &key); ok {
		return e.principal, e.rev, nil
	}
	return Principal{}, revIDs{}, err
}

// serveStale returns the last good lookup of key when stale_if_error allows
// it. The store failed or timed out; a caller that gave up itself gets no
// stale answer (nobody is waiting for it).
func (v *SessionVerifier) serveStale(parent context.Context, key *cacheKey) (cacheEntry, bool) {
	if v.cfg.StaleIfError <= 0 || parent.Err() != nil {
		return cacheEntry{}, false
	}
	e, ok := v.cache.stale(key, v.now())
	if !ok || e.err != nil {
		return cacheEntry{}, false
	}
	v.metrics.session("stale")
	return e, true
}

// lookup reads one session from the store and caches the outcome.
func (v *SessionVerifier) lookup(credential string, key cacheKey) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.Timeout)
	defer cancel()
	fields, err := v.store.SessionFields(ctx, v.cfg.SessionKey(credential))
	if err != nil {
		v.metrics.session("error")
		// The error comes from the store and names the store, never the
		// token; the key is a hash unless key_encoding is plain, so it
		// is not included either way.
		return nil, fmt.Errorf("udb session lookup: %w", redactKey(err, v.cfg.SessionKey(credential)))
	}
	now := v.now()
	p, result, verr := v.sessionPrincipal(fields, now)
	v.metrics.session(result)
	var e cacheEntry
	switch {
	case verr == nil:
		e = cacheEntry{principal: p, rev: sessionRevIDs(fields), until: cacheUntil(now, p.Expiry, v.cfg.CacheTTL)}
		if v.cfg.StaleIfError > 0 {
			e.staleUntil = cacheUntil(now, p.Expiry, v.cfg.CacheTTL+v.cfg.StaleIfError)
		}
	case v.cfg.NegativeCacheTTL > 0 && (errors.Is(verr, ErrUnknownCredential) || errors.Is(verr, ErrRevoked) || errors.Is(verr, ErrExpired)):
		e = cacheEntry{err: verr, until: now.Add(v.cfg.NegativeCacheTTL)}
	default:
		e = cacheEntry{err: verr}
	}
	v.cache.put(&key, e, now)
	if errors.Is(verr, ErrMalformed) {
		v.log.Warn("udb session record is malformed", "session", Fingerprint(credential))
	}
	return e, nil
}

// sessionPrincipal turns a session record into a principal, or a rejection.
func (v *SessionVerifier) sessionPrincipal(fields map[string]string, now time.Time) (Principal, string, error) {
	if len(fields) == 0 {
		return Principal{}, "missing", ErrUnknownCredential
	}
	if r := fields[SessionFieldRevoked]; r != "" && r != "0" && r != "false" {
		return Principal{}, "revoked", ErrRevoked
	}
	p := Principal{
		Subject: fields[SessionFieldUserID],
		Issuer:  v.cfg.Issuer,
		Method:  MethodUDBSession,
		AppID:   fields[SessionFieldAppID],
		Scopes:  splitScopes(fields[SessionFieldScope]),
	}
	if p.Subject == "" {
		return Principal{}, "invalid", ErrMalformed
	}
	if s := fields[SessionFieldExpiry]; s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil || sec < 0 || sec > 1<<40 {
			return Principal{}, "invalid", ErrMalformed
		}
		p.Expiry = time.Unix(sec, 0)
		if !now.Before(p.Expiry) {
			return Principal{}, "expired", ErrExpired
		}
	}
	for k, val := range fields {
		switch k {
		case SessionFieldUserID, SessionFieldAppID, SessionFieldExpiry, SessionFieldScope, SessionFieldRevoked:
			continue
		}
		if p.Claims == nil {
			p.Claims = make(map[string]any, len(fields))
		}
		p.Claims[k] = val
	}
	return p, "found", nil
}

// sessionRevIDs are a session's sid and iat fields (an iat that is not an
// integer counts as none: any subject epoch then revokes the session).
func sessionRevIDs(fields map[string]string) revIDs {
	r := revIDs{sid: fields["sid"]}
	if s := fields[SessionFieldIssuedAt]; s != "" {
		if sec, err := strconv.ParseInt(s, 10, 64); err == nil && sec >= 0 && sec <= 1<<40 {
			r.iat, r.hasIat = sec, true
		}
	}
	return r
}

// validSessionToken accepts 16 or more characters of the base64, base64url
// and token68 alphabets (RFC 9110 token68 plus '.' and '~').
func validSessionToken(s string) bool {
	if len(s) < minSessionTokenBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isBase64URLChar(c) && c != '.' && c != '~' && c != '+' && c != '/' && c != '=' {
			return false
		}
	}
	return true
}

// redactKey removes the store key from an error message, in case a store
// includes it (the key is the token itself with key_encoding plain).
func redactKey(err error, key string) error {
	if !strings.Contains(err.Error(), key) {
		return err
	}
	return redactedError{msg: strings.ReplaceAll(err.Error(), key, "<session key>"), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }
