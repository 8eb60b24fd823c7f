package tokens

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// TicketPrefix starts every signed UDB ticket; it names the format version.
// See docs/tokens.md for the format.
const TicketPrefix = "udbt1"

// TicketConfig configures a TicketVerifier (authenticator kind udb_ticket).
type TicketConfig struct {
	// Issuer is reported as Principal.Issuer; default "udb".
	Issuer string `yaml:"issuer"`
	// Keys are the signing keys by key id. Several may be active at once so
	// keys rotate without downtime; a retired key id is rejected with
	// ErrRetiredKey.
	Keys []TicketKeyConfig `yaml:"keys"`
	// Leeway tolerates clock skew on exp, nbf and iat; default 30s.
	Leeway time.Duration `yaml:"leeway"`
	// MaxTokenBytes rejects longer tickets with ErrTooLarge; default 8 KiB.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// Cache bounds the verified-ticket cache.
	Cache CacheConfig `yaml:"cache"`
}

// TicketKeyConfig is one ticket key.
type TicketKeyConfig struct {
	// ID is the key id carried in tickets: 1-64 of [A-Za-z0-9_-].
	ID string `yaml:"id"`
	// Algorithm is HS256 (default) or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// File is the path of the key: for HS256 the base64 secret, for EdDSA a
	// PEM public (or private) key. Not needed for a retired key.
	File string `yaml:"file"`
	// Retired keys are no longer accepted.
	Retired bool `yaml:"retired"`
}

const defaultLeeway = 30 * time.Second

// maxLeeway bounds the leeway on exp: a credential record is kept only
// revocation.ExpiryGrace past the credential's exp, so a longer leeway
// would accept a revoked credential again once its record is gone.
const maxLeeway = revocation.ExpiryGrace

const leewayTooLong = "%s is longer than %s (revocation records are kept only that long past exp)"

// ApplyDefaults fills in unset fields.
func (c *TicketConfig) ApplyDefaults() {
	if c.Issuer == "" {
		c.Issuer = "udb"
	}
	if c.Leeway == 0 {
		c.Leeway = defaultLeeway
	}
	c.MaxTokenBytes = maxBytesOr(c.MaxTokenBytes)
	for i := range c.Keys {
		if c.Keys[i].Algorithm == "" {
			c.Keys[i].Algorithm = TicketHS256
		}
	}
	c.Cache.applyDefaults()
}

// Validate checks the config without reading key files; paths are relative
// to the udb_ticket section.
func (c *TicketConfig) Validate() error {
	var errs []error
	if len(c.Keys) == 0 {
		errs = append(errs, errorf("keys", "at least one key is required"))
	}
	seen := map[string]bool{}
	active := 0
	for i, k := range c.Keys {
		p := yamlfile.Index("keys", i)
		switch {
		case !validKeyID(k.ID):
			errs = append(errs, errorf(p+".id", "must be 1-64 characters of A-Z a-z 0-9 _ -"))
		case seen[k.ID]:
			errs = append(errs, errorf(p+".id", "duplicate key id %q", k.ID))
		}
		seen[k.ID] = true
		switch k.Algorithm {
		case "", TicketHS256, TicketEdDSA:
		default:
			errs = append(errs, errorf(p+".algorithm", "must be %s or %s, not %q", TicketHS256, TicketEdDSA, k.Algorithm))
		}
		if !k.Retired {
			active++
			if k.File == "" {
				errs = append(errs, errorf(p+".file", "required for an active key"))
			}
		}
	}
	if len(c.Keys) > 0 && active == 0 {
		errs = append(errs, errorf("keys", "every key is retired: at least one must be active"))
	}
	switch {
	case c.Leeway < 0:
		errs = append(errs, errorf("leeway", "must not be negative"))
	case c.Leeway > maxLeeway:
		errs = append(errs, errorf("leeway", leewayTooLong, c.Leeway, maxLeeway))
	}
	errs = append(errs, checkMaxBytes(c.MaxTokenBytes), yamlfile.Wrap("cache", c.Cache.validate()))
	return errors.Join(errs...)
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isBase64URLChar(id[i]) {
			return false
		}
	}
	return true
}

func isBase64URLChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Options are the optional dependencies of the verifiers; the zero value
// works.
type Options struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives operational messages (never a credential); nil
	// discards them.
	Logger *slog.Logger
	// Registerer receives the metrics of metrics.go; nil means no metrics.
	Registerer prometheus.Registerer
	// Revocations, when set, is asked about every credential a verifier
	// accepts, cached or not (see package revocation); nil: revocation is
	// off.
	Revocations *revocation.List
}

func (o *Options) applyDefaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// TicketVerifier verifies signed UDB tickets locally, without a store.
type TicketVerifier struct {
	issuer string
	leeway time.Duration
	keys   map[string]*ticketKey
	front
}

type ticketKey struct {
	alg     string
	retired bool
	public  ed25519.PublicKey
	macs    sync.Pool // of hash.Hash keyed with the secret
}

// NewTicketVerifier validates cfg (after defaults) and reads its key files.
// Errors carry field paths relative to the udb_ticket section.
func NewTicketVerifier(cfg TicketConfig, opts Options) (*TicketVerifier, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts.applyDefaults()
	v := &TicketVerifier{
		issuer: cfg.Issuer,
		leeway: cfg.Leeway,
		keys:   make(map[string]*ticketKey, len(cfg.Keys)),
		front: front{
			maxBytes: cfg.MaxTokenBytes,
			maxTTL:   cfg.Cache.MaxTTL,
			cache:    newVerifiedCache(cfg.Cache.Size),
			counters: newMetrics(opts.Registerer).cacheCounters(MethodUDBTicket),
			now:      opts.Now,
			revs:     opts.Revocations,
			revKind:  revocation.KindTicket,
		},
	}
	var errs []error
	for i, kc := range cfg.Keys {
		k := &ticketKey{alg: kc.Algorithm, retired: kc.Retired}
		v.keys[kc.ID] = k
		if kc.Retired {
			continue // its material is never used
		}
		m, err := readTicketKey(kc.File, kc.Algorithm)
		if err != nil {
			errs = append(errs, errorf(yamlfile.Index("keys", i)+".file", "%v", err))
			continue
		}
		k.public = m.public
		if kc.Algorithm == TicketHS256 {
			secret := m.secret
			k.macs.New = func() any { return hmac.New(sha256.New, secret) }
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// Verify checks a ticket and returns its principal; see Verifier in package
// authz for the error contract. The returned Principal's slices and map are
// shared with the cache and must not be modified.
func (v *TicketVerifier) Verify(ctx context.Context, credential string) (Principal, error) {
	p, key, now, hit, err := v.lookup(ctx, credential)
	if hit || err != nil {
		return p, err
	}
	var rev revIDs
	if p, rev, err = v.verify(credential, now); err != nil {
		return Principal{}, err
	}
	if err := v.remember(ctx, &key, &p, &rev, now); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func (v *TicketVerifier) verify(tok string, now time.Time) (Principal, revIDs, error) {
	kid, payload, sig, signed, err := splitTicket(tok)
	if err != nil {
		return Principal{}, revIDs{}, err
	}
	k := v.keys[kid]
	switch {
	case k == nil:
		return Principal{}, revIDs{}, ErrUnknownKey
	case k.retired:
		return Principal{}, revIDs{}, ErrRetiredKey
	}
	if err := k.check(signed, sig); err != nil {
		return Principal{}, revIDs{}, err
	}
	c, err := decodeTicketPayload(payload)
	if err != nil {
		return Principal{}, revIDs{}, err
	}
	if err := checkTimes(now, v.leeway, c.exp, c.nbf, c.iat); err != nil {
		return Principal{}, revIDs{}, err
	}
	var rev revIDs
	if v.revs != nil {
		rev = revIDs{id: TicketID(stringClaim(c.extra, "jti"), payload), sid: stringClaim(c.extra, "sid"), iat: c.iat.Unix(), hasIat: true}
	}
	return Principal{
		Subject: c.uid,
		Issuer:  v.issuer,
		Method:  MethodUDBTicket,
		AppID:   c.app,
		Scopes:  c.scopes,
		Claims:  c.extra,
		Expiry:  c.exp,
	}, rev, nil
}

// splitTicket splits "udbt1.<kid>.<payload>.<sig>" and decodes the
// signature. signed is the signing input: everything before the last dot.
func splitTicket(tok string) (kid, payload string, sig []byte, signed string, err error) {
	prefix, rest, ok := strings.Cut(tok, ".")
	if !ok || prefix != TicketPrefix {
		return "", "", nil, "", ErrMalformed
	}
	kid, rest, ok = strings.Cut(rest, ".")
	if !ok || !validKeyID(kid) {
		return "", "", nil, "", ErrMalformed
	}
	payload, sigText, ok := strings.Cut(rest, ".")
	if !ok || payload == "" || strings.IndexByte(sigText, '.') >= 0 {
		return "", "", nil, "", ErrMalformed
	}
	if !canonicalBase64URL(payload) {
		return "", "", nil, "", ErrNonCanonicalEncoding
	}
	if sig, err = decodeSegment(sigText); err != nil {
		return "", "", nil, "", err
	}
	return kid, payload, sig, tok[:len(tok)-len(sigText)-1], nil
}

// check verifies sig over signed in constant time (HMAC) or with Ed25519.
func (k *ticketKey) check(signed string, sig []byte) error {
	switch k.alg {
	case TicketHS256:
		if len(sig) != sha256.Size {
			return ErrBadSignature
		}
		h := k.macs.Get().(hash.Hash)
		h.Reset()
		h.Write(stringBytes(signed))
		var buf [sha256.Size]byte
		ok := hmac.Equal(h.Sum(buf[:0]), sig)
		k.macs.Put(h)
		if !ok {
			return ErrBadSignature
		}
		return nil
	case TicketEdDSA:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.public, stringBytes(signed), sig) {
			return ErrBadSignature
		}
		return nil
	}
	return ErrUnsupportedAlg
}

// ticketClaims is a decoded ticket payload.
type ticketClaims struct {
	uid, app      string
	iat, exp, nbf time.Time
	scopes        []string
	extra         map[string]any
}

// decodeTicketPayload decodes the base64url JSON payload. uid, iat and exp
// are required; app, nbf and scope are optional; other members become
// Principal.Claims. The strict checks of jose.go apply: canonical base64url,
// no duplicate member names, and times that are NumericDates in range,
// written as JSON integers.
func decodeTicketPayload(payload string) (ticketClaims, error) {
	raw, err := decodeSegment(payload)
	if err != nil {
		return ticketClaims{}, err
	}
	times, err := checkClaims(raw, true)
	if err != nil {
		return ticketClaims{}, err
	}
	if !times.hasIat || !times.hasExp {
		return ticketClaims{}, ErrMalformed
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return ticketClaims{}, ErrMalformed
	}
	c := ticketClaims{iat: times.iat, exp: times.exp, nbf: times.nbf}
	var ok bool
	if c.uid, ok = m["uid"].(string); !ok || c.uid == "" {
		return ticketClaims{}, ErrMalformed
	}
	if v, present := m["app"]; present {
		if c.app, ok = v.(string); !ok {
			return ticketClaims{}, ErrMalformed
		}
	}
	if v, present := m["scope"]; present {
		s, ok := v.(string)
		if !ok {
			return ticketClaims{}, ErrMalformed
		}
		c.scopes = splitScopes(s)
	}
	for _, k := range []string{"uid", "app", "iat", "exp", "nbf", "scope"} {
		delete(m, k)
	}
	if len(m) > 0 {
		c.extra = m
	}
	return c, nil
}

// checkTimes applies the registered time claims with leeway. exp is
// required; zero nbf and iat are not checked.
func checkTimes(now time.Time, leeway time.Duration, exp, nbf, iat time.Time) error {
	switch {
	case !now.Before(exp.Add(leeway)):
		return ErrExpired
	case !nbf.IsZero() && now.Add(leeway).Before(nbf):
		return ErrNotYetValid
	case !iat.IsZero() && now.Add(leeway).Before(iat):
		return ErrIssuedInFuture
	}
	return nil
}

// TicketClaims are the contents of a ticket to mint.
type TicketClaims struct {
	UserID   string
	AppID    string
	IssuedAt time.Time
	Expiry   time.Time
	Scopes   []string
	// Extra are further members of the payload (e.g. "sid"); they must not
	// reuse the names above.
	Extra map[string]any
}

// TicketSigner mints tickets, for development, tests and load tests. The
// user database is the real issuer in production.
type TicketSigner struct {
	kid    string
	alg    string
	secret []byte
	priv   ed25519.PrivateKey
}

// NewTicketSigner reads a signing key: for HS256 the base64 secret file the
// verifier uses, for EdDSA a PEM PKCS #8 private key.
func NewTicketSigner(kid, alg, keyFile string) (*TicketSigner, error) {
	if !validKeyID(kid) {
		return nil, errors.New("key id must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	m, err := readTicketKey(keyFile, alg)
	if err != nil {
		return nil, err
	}
	if alg == TicketEdDSA && m.signer == nil {
		return nil, fmt.Errorf("%s: an EdDSA signer needs a private key", keyFile)
	}
	return &TicketSigner{kid: kid, alg: alg, secret: m.secret, priv: m.signer}, nil
}

// Sign returns the ticket for c.
func (s *TicketSigner) Sign(c TicketClaims) (string, error) {
	if c.UserID == "" {
		return "", errors.New("ticket needs a user id")
	}
	if !c.Expiry.After(c.IssuedAt) {
		return "", errors.New("ticket expiry must be after its issue time")
	}
	m := make(map[string]any, len(c.Extra)+5)
	for k, v := range c.Extra {
		m[k] = v
	}
	m["uid"] = c.UserID
	if c.AppID != "" {
		m["app"] = c.AppID
	}
	m["iat"] = c.IssuedAt.Unix()
	m["exp"] = c.Expiry.Unix()
	if len(c.Scopes) > 0 {
		m["scope"] = strings.Join(c.Scopes, " ")
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	signed := TicketPrefix + "." + s.kid + "." + base64.RawURLEncoding.EncodeToString(raw)
	var sig []byte
	switch s.alg {
	case TicketHS256:
		h := hmac.New(sha256.New, s.secret)
		h.Write([]byte(signed))
		sig = h.Sum(nil)
	case TicketEdDSA:
		sig = ed25519.Sign(s.priv, []byte(signed))
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
