package assertion

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/tokens"
)

// Claim names the Minter writes besides the registered ones (RFC 7519
// 4.1: iss, sub, aud, exp, nbf, iat, jti).
const (
	ClaimAuthenticator = "authenticator" // the configured authenticator that accepted the credential
	ClaimScope         = "scope"         // granted scopes, space-separated (RFC 8693 4.2, RFC 9068)
	ClaimIdP           = "idp"           // the issuer of the verified credential
	ClaimMethod        = "amr_method"    // the kind of credential (jwt, api-key, ...)
	ClaimAppID         = "client_id"     // the application the credential was issued to (RFC 9068)
)

// Reserved reports whether a claim name is one the Minter sets itself, so
// a selected claim of the principal may not take it.
func Reserved(claim string) bool {
	switch claim {
	case "iss", "sub", "aud", "exp", "nbf", "iat", "jti",
		ClaimAuthenticator, ClaimScope, ClaimIdP, ClaimMethod, ClaimAppID:
		return true
	}
	return false
}

// MinterOptions configure a Minter; the zero value works but for Issuer.
type MinterOptions struct {
	// Issuer is the iss of every assertion (what the verifier's
	// RequestAuthentication names); required.
	Issuer string
	// Lifetime is exp - iat. Default 60s.
	Lifetime time.Duration
	// Claims are principal claims copied into the assertion under their
	// own names (absent ones are left out). Reserved names are refused.
	Claims []string
	// PerDecision signs one assertion per decision with the decision id as
	// jti, and caches nothing. Off (the default): assertions are cached
	// per identity and audience, each with a random jti of its own.
	PerDecision bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// CacheEntries bounds the cache (about; it is sharded). Default 8192.
	CacheEntries int
	// Registerer, when set, gets ext_authz_upstream_assertions_total.
	Registerer prometheus.Registerer
}

// Minter signs assertions with a KeyRing's signing key and caches them.
// Safe for concurrent use; it starts no goroutine.
type Minter struct {
	ring     *KeyRing
	opts     MinterOptions
	perShard int
	shards   [cacheShards]cacheShard
	metrics  *metrics
}

const cacheShards = 16

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]entry
}

type entry struct {
	token     string
	refreshAt time.Time // after this the entry is signed again
}

// NewMinter returns a Minter over ring.
func NewMinter(ring *KeyRing, opts MinterOptions) (*Minter, error) {
	if ring == nil {
		return nil, errors.New("assertion: no key ring")
	}
	if opts.Issuer == "" {
		return nil, errors.New("assertion: issuer is required")
	}
	for _, c := range opts.Claims {
		if Reserved(c) {
			return nil, fmt.Errorf("assertion: claim %q is set by the service itself", c)
		}
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = 60 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CacheEntries <= 0 {
		opts.CacheEntries = 8192
	}
	m := &Minter{ring: ring, opts: opts, perShard: max(1, opts.CacheEntries/cacheShards), metrics: newMetrics(opts.Registerer)}
	return m, nil
}

// Ring is the key ring the minter signs with.
func (m *Minter) Ring() *KeyRing { return m.ring }

// Mint returns the assertion for principal p, accepted by authenticator,
// for audience; decisionID is its jti when PerDecision is set. A cached
// assertion is returned while it has at least half its lifetime left.
// The principal's own expiry caps the assertion's.
func (m *Minter) Mint(p *tokens.Principal, authenticator, audience, decisionID string) (string, error) {
	tok, cached, err := m.mint(p, authenticator, audience, decisionID)
	if c := m.metrics; c != nil {
		switch {
		case err != nil:
			c.failed.Inc()
		case cached:
			c.cached.Inc()
		default:
			c.signed.Inc()
		}
	}
	return tok, err
}

func (m *Minter) mint(p *tokens.Principal, authenticator, audience, decisionID string) (tok string, cached bool, err error) {
	now := m.opts.Now()
	if m.opts.PerDecision {
		tok, err = m.sign(p, authenticator, audience, decisionID, now)
		return tok, false, err
	}
	var buf [256]byte
	kb := m.appendCacheKey(buf[:0], p, authenticator, audience)
	s := &m.shards[shardOf(kb)]
	s.mu.RLock()
	e, ok := s.m[string(kb)] // no allocation: the compiler looks the bytes up
	s.mu.RUnlock()
	if ok && now.Before(e.refreshAt) {
		return e.token, true, nil
	}
	key := string(kb)
	jti, err := randomID()
	if err != nil {
		return "", false, err
	}
	tok, err = m.sign(p, authenticator, audience, jti, now)
	if err != nil {
		return "", false, err
	}
	refresh := now.Add(m.opts.Lifetime / 2)
	if exp := m.expiry(p, now); exp.Before(now.Add(m.opts.Lifetime)) {
		refresh = now // capped by the credential's expiry: not worth keeping
	}
	s.mu.Lock()
	if s.m == nil || len(s.m) >= m.perShard {
		s.m = make(map[string]entry, min(m.perShard, 64))
	}
	s.m[key] = entry{token: tok, refreshAt: refresh}
	s.mu.Unlock()
	return tok, false, nil
}

// expiry is the assertion's exp for a principal at now.
func (m *Minter) expiry(p *tokens.Principal, now time.Time) time.Time {
	exp := now.Add(m.opts.Lifetime)
	if !p.Expiry.IsZero() && p.Expiry.Before(exp) {
		exp = p.Expiry
	}
	return exp
}

// appendCacheKey appends to b every input of the assertion but the times
// and jti, each length-prefixed, so two identities never share a key
// whatever bytes their fields hold.
func (m *Minter) appendCacheKey(b []byte, p *tokens.Principal, authenticator, audience string) []byte {
	add := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	add(audience)
	add(authenticator)
	add(p.Subject)
	add(p.Issuer)
	add(p.Method)
	add(p.AppID)
	b = binary.AppendUvarint(b, uint64(len(p.Scopes)))
	for _, s := range p.Scopes {
		add(s)
	}
	b = binary.AppendVarint(b, p.Expiry.Unix())
	for _, c := range m.opts.Claims {
		v, ok := p.Claims[c]
		if !ok {
			b = append(b, 'a') // absent
			continue
		}
		if str, isStr := v.(string); isStr {
			b = append(b, 's')
			add(str)
			continue
		}
		if list, isList := v.([]any); isList && allStrings(list) { // groups, roles: no JSON encoding
			b = append(b, 'l')
			b = binary.AppendUvarint(b, uint64(len(list)))
			for _, e := range list {
				add(e.(string))
			}
			continue
		}
		b = append(b, 'j')
		j, err := json.Marshal(v) // maps marshal with sorted keys: canonical
		if err != nil {
			add("\x00unencodable")
			continue
		}
		add(string(j))
	}
	return b
}

func allStrings(list []any) bool {
	for _, e := range list {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}

func shardOf(key []byte) int {
	var h uint32 = 2166136261 // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % cacheShards)
}

// sign builds and signs one assertion.
func (m *Minter) sign(p *tokens.Principal, authenticator, audience, jti string, now time.Time) (string, error) {
	key := m.ring.Signing()
	claims := make(map[string]any, 12+len(m.opts.Claims))
	for _, c := range m.opts.Claims {
		if v, ok := p.Claims[c]; ok {
			claims[c] = v
		}
	}
	iat := now.Unix()
	claims["iss"] = m.opts.Issuer
	claims["sub"] = p.Subject
	claims["aud"] = audience
	claims["iat"] = iat
	claims["nbf"] = iat
	claims["exp"] = m.expiry(p, now).Unix()
	if jti != "" {
		claims["jti"] = jti
	}
	claims[ClaimAuthenticator] = authenticator
	if len(p.Scopes) > 0 {
		claims[ClaimScope] = strings.Join(p.Scopes, " ")
	}
	for name, v := range map[string]string{ClaimIdP: p.Issuer, ClaimMethod: p.Method, ClaimAppID: p.AppID} {
		if v != "" {
			claims[name] = v
		}
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("assertion claims: %w", err)
	}
	header := `{"alg":"` + key.Alg + `","kid":"` + key.ID + `","typ":"JWT"}`
	input := make([]byte, 0, 512)
	input = base64.RawURLEncoding.AppendEncode(input, []byte(header))
	input = append(input, '.')
	input = base64.RawURLEncoding.AppendEncode(input, body)
	sig, err := key.sign(input)
	if err != nil {
		return "", err
	}
	input = append(input, '.')
	input = base64.RawURLEncoding.AppendEncode(input, sig)
	if len(input) > MaxTokenBytes {
		return "", fmt.Errorf("%w: %d bytes", ErrTooLarge, len(input))
	}
	return string(input), nil
}

// MaxTokenBytes bounds an assertion: selected claims such as a long
// groups list would otherwise make a header that proxies refuse (Envoy's
// default limit is 60 KiB for all headers) or that the upstream truncates.
const MaxTokenBytes = 8 << 10

// ErrTooLarge means the principal's selected claims make the assertion
// longer than MaxTokenBytes; the request is refused rather than sent with
// an assertion the upstream may not read whole.
var ErrTooLarge = errors.New("assertion too large")

// randomID is a 128-bit random jti.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("assertion jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Cached reports how many assertions the cache holds (tests, metrics).
func (m *Minter) Cached() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
