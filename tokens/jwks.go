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
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxJWKSBytes bounds a JWKS document; real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// verificationKey is one usable key from a JWKS.
type verificationKey struct {
	kid string
	alg string // the JWK's "alg", empty when it names none
	key any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (oct)
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
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
	D   string `json:"d"`
}

// parseJWKS parses a JWK Set (RFC 7517). Keys not meant for signatures, of an
// unsupported type, or malformed are skipped; a document with no usable key
// is an error, so garbage or an empty set never replaces good keys.
func parseJWKS(data []byte) (*keySnapshot, int, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, 0, fmt.Errorf("not a JWK Set: %w", err)
	}
	s := &keySnapshot{byKID: make(map[string]*verificationKey, len(doc.Keys))}
	skipped := 0
	for _, raw := range doc.Keys {
		var j jwkJSON
		if err := json.Unmarshal(raw, &j); err != nil {
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
	if j.Use != "" && j.Use != "sig" {
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

// remoteKeySet is a JWKS fetched from a URL. The current set is an immutable
// snapshot behind an atomic pointer; Run refreshes it on an interval; an
// unknown kid triggers an immediate refetch that concurrent callers share
// (singleflight) and that happens at most once per minInterval. A failed or
// unusable fetch keeps the last good set; before any fetch succeeds the set
// is empty and lookups report errNoKeys (could not decide), and every later
// lookup or tick tries again.
type remoteKeySet struct {
	issuer      string
	url         string
	logURL      string // url without any userinfo password, for logs and errors
	client      *http.Client
	interval    time.Duration
	minInterval time.Duration
	timeout     time.Duration
	metrics     *metrics
	log         *slog.Logger
	now         func() time.Time

	current atomic.Pointer[keySnapshot]
	flights singleflight.Group

	mu          sync.Mutex
	lastAttempt time.Time
}

// lookup returns the key for kid, refetching once if the kid is unknown.
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

func (r *remoteKeySet) fetch(ctx context.Context) error {
	err := r.fetchOnce(ctx)
	if err != nil && ctx.Err() != nil {
		return err // Run stopped: not a failure of the endpoint
	}
	r.metrics.jwksRefresh(r.issuer, err, r.now())
	if err != nil {
		r.log.Warn("jwks fetch failed; keeping the last good key set",
			"issuer", r.issuer, "url", r.logURL, "keys", r.current.Load().size(), "error", err)
	}
	return err
}

func (r *remoteKeySet) fetchOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		// Not wrapped: net/url's error repeats the whole URL, query
		// secrets included.
		return fmt.Errorf("jwks fetch %s: invalid request URL", r.logURL)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := r.client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, query and all (net/http hides
		// only a userinfo password): say it once, redacted.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("jwks fetch %s: %w", r.logURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks fetch %s: HTTP status %d", r.logURL, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("jwks fetch %s: %w", r.logURL, err)
	}
	if len(data) > maxJWKSBytes {
		return fmt.Errorf("jwks fetch %s: document larger than %d bytes", r.logURL, maxJWKSBytes)
	}
	snap, skipped, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("jwks fetch %s: %w", r.logURL, err)
	}
	if skipped > 0 {
		r.log.Info("jwks keys skipped (unsupported or malformed)", "issuer", r.issuer, "skipped", skipped)
	}
	r.current.Store(snap)
	return nil
}

// run fetches now if no keys are loaded, then every interval; after a
// failure it retries every minInterval until a fetch succeeds. It returns
// nil when ctx ends.
func (r *remoteKeySet) run(ctx context.Context) error {
	var err error
	if r.current.Load().size() == 0 {
		err = r.refreshOwned(ctx)
	}
	for {
		wait := r.interval
		if err != nil && r.minInterval < wait {
			wait = r.minInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		err = r.refreshOwned(ctx)
	}
}
