package generation

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens/assertion"
)

// AssertionConfig is the upstream_assertion section: a signed identity
// assertion (JWT) on every allowed, authenticated request, and its keys,
// published as a JWKS on the admin port (docs/upstream-assertion.md).
// The section is reloadable; generated keys survive a reload that leaves
// keys and lifetime unchanged.
type AssertionConfig struct {
	// Header carries the assertion. Default x-ext-authz-assertion.
	Header string `yaml:"header"`
	// Issuer is the assertions' iss; required.
	Issuer string `yaml:"issuer"`
	// Audience is the aud of requests whose rule (assertion_audience) and
	// host (audiences) name none; required.
	Audience string `yaml:"audience"`
	// Audiences maps a host, as rules match it, to its upstream's audience.
	Audiences map[string]string `yaml:"audiences"`
	// Lifetime is exp - iat; 1s to 1h. Default 60s.
	Lifetime time.Duration `yaml:"lifetime"`
	// Claims are principal claims copied into the assertion.
	Claims []string `yaml:"claims"`
	// PerDecision signs one assertion per decision, its jti the decision
	// id; default off: cached per identity and audience, random jti.
	PerDecision bool `yaml:"per_decision"`
	// Keys say where the signing keys come from.
	Keys AssertionKeysConfig `yaml:"keys"`
}

// AssertionKeysConfig is upstream_assertion.keys: key files, or keys
// generated in memory (the default).
type AssertionKeysConfig struct {
	// SigningKeyFile is a PEM private key (EC P-256: ES256; Ed25519:
	// EdDSA) that signs. Unset: keys are generated in memory.
	SigningKeyFile string `yaml:"signing_key_file"`
	// PublishedKeyFiles are more PEM keys (public or private) published
	// beside it: the next key before it signs, the previous one until its
	// last assertion expired.
	PublishedKeyFiles []string `yaml:"published_key_files"`
	// Algorithm of generated keys: ES256 (default) or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// RotationPeriod of generated keys; at least 1m and 10 lifetimes.
	// Default 24h.
	RotationPeriod time.Duration `yaml:"rotation_period"`
}

// DefaultAssertionHeader is upstream_assertion.header by default.
const DefaultAssertionHeader = "x-ext-authz-assertion"

func (c *AssertionConfig) applyDefaults() {
	setDefault(&c.Header, DefaultAssertionHeader)
	setDefault(&c.Lifetime, 60*time.Second)
	if c.Keys.SigningKeyFile == "" {
		setDefault(&c.Keys.Algorithm, assertion.ES256)
		setDefault(&c.Keys.RotationPeriod, 24*time.Hour)
	}
}

// validate checks the section (paths relative to it) against the
// authenticators, whose credential header it must not be, and the
// policy's identity headers.
func (c *AssertionConfig) validate(auths []AuthenticatorConfig, identity authz.IdentityHeaders) error {
	errs := []error{authz.ValidateAssertion(authz.AssertionOptions{Header: c.Header, Audience: c.Audience, HostAudiences: c.Audiences}, identity)}
	if c.Issuer == "" {
		errs = append(errs, yamlfile.Errorf("issuer", "required: the iss upstreams expect (their RequestAuthentication's issuer)"))
	}
	if c.Lifetime < time.Second || c.Lifetime > time.Hour {
		errs = append(errs, yamlfile.Errorf("lifetime", "%s: an assertion lives from 1s to 1h", c.Lifetime))
	}
	for i, a := range auths {
		if a.Source.Header != "" && authz.ASCIILower(a.Source.Header) == authz.ASCIILower(c.Header) {
			errs = append(errs, yamlfile.Errorf("header", "%q is the credential source of authenticators[%d]", c.Header, i))
		}
	}
	for i, cl := range c.Claims {
		switch {
		case cl == "":
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("claims", i), "empty claim name"))
		case assertion.Reserved(cl):
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("claims", i), "%q is set by the service itself", cl))
		case slices.Index(c.Claims, cl) < i:
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("claims", i), "%q is listed twice", cl))
		}
	}
	k := &c.Keys
	if k.SigningKeyFile == "" {
		if len(k.PublishedKeyFiles) > 0 {
			errs = append(errs, yamlfile.Errorf("keys.published_key_files", "needs keys.signing_key_file (generated keys publish themselves)"))
		}
		if k.Algorithm != assertion.ES256 && k.Algorithm != assertion.EdDSA {
			errs = append(errs, yamlfile.Errorf("keys.algorithm", "%q is not ES256 or EdDSA", k.Algorithm))
		}
		if k.RotationPeriod < time.Minute || k.RotationPeriod < 10*c.Lifetime {
			errs = append(errs, yamlfile.Errorf("keys.rotation_period", "%s: at least 1m and 10 lifetimes (%s), and longer than verifiers cache the JWKS", k.RotationPeriod, 10*c.Lifetime))
		}
	} else if k.Algorithm != "" || k.RotationPeriod != 0 {
		errs = append(errs, yamlfile.Errorf("keys", "algorithm and rotation_period are for generated keys: a key file's type is its algorithm, and you rotate files"))
	}
	return errors.Join(errs...)
}

// files are the key files the section reads.
func (c *AssertionConfig) files() []string {
	if c == nil || c.Keys.SigningKeyFile == "" {
		return nil
	}
	return append([]string{c.Keys.SigningKeyFile}, c.Keys.PublishedKeyFiles...)
}

// retain is how long a retired generated key stays published: its last
// assertion's lifetime and a minute of verifier clock skew.
func (c *AssertionConfig) retain() time.Duration { return c.Lifetime + time.Minute }

// assertion acquires the section's key ring and minter into the lease:
// pooled, so a reload that keeps the keys (and the lifetime their
// retirement depends on) keeps generated keys, and one that keeps the
// whole section keeps the minter's cache.
func (e *Env) assertion(l *pool.Lease, c *AssertionConfig, digests filewatch.Digests) (*assertion.Minter, error) {
	keysJSON, _ := json.Marshal(struct {
		K AssertionKeysConfig
		L time.Duration
	}{c.Keys, c.Lifetime})
	ringKey := "assertion-keys\x00" + string(keysJSON)
	for _, f := range c.files() {
		ringKey += "\x00" + f + "=" + digests[f]
	}
	v, _, err := l.Acquire(ringKey, func() (any, error) { return c.keyRing() })
	if err != nil {
		return nil, yamlfile.Wrap("keys", err)
	}
	ring := v.(*assertion.KeyRing)
	all, _ := json.Marshal(c)
	v, _, err = l.Acquire("assertion\x00"+string(all)+"\x00"+ringKey, func() (any, error) {
		return assertion.NewMinter(ring, assertion.MinterOptions{Issuer: c.Issuer, Lifetime: c.Lifetime, Claims: c.Claims,
			PerDecision: c.PerDecision, Registerer: e.Registry})
	})
	if err != nil {
		return nil, err
	}
	return v.(*assertion.Minter), nil
}

// keyRing builds the ring: from the key files, or generated.
func (c *AssertionConfig) keyRing() (*assertion.KeyRing, error) {
	k := &c.Keys
	if k.SigningKeyFile == "" {
		return assertion.NewGeneratedRing(k.Algorithm, assertion.RingOptions{RotationPeriod: k.RotationPeriod, Retain: c.retain()})
	}
	signing, err := readAssertionKey("signing_key_file", k.SigningKeyFile)
	if err != nil {
		return nil, err
	}
	if !signing.CanSign() {
		return nil, yamlfile.Errorf("signing_key_file", "%s holds a public key: the signing key must be private", k.SigningKeyFile)
	}
	var published []*assertion.Key
	for i, f := range k.PublishedKeyFiles {
		pk, err := readAssertionKey(yamlfile.Index("published_key_files", i), f)
		if err != nil {
			return nil, err
		}
		published = append(published, pk)
	}
	return assertion.NewFileRing(signing, published)
}

// readAssertionKey reads one key file; errors name the file, never its
// content.
func readAssertionKey(path, file string) (*assertion.Key, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, yamlfile.Errorf(path, "%v", err)
	}
	key, err := assertion.ParseKeyPEM(data)
	if err != nil {
		return nil, yamlfile.Errorf(path, "%s: %v", file, err)
	}
	return key, nil
}

// assertionOptions are the pipeline's options for the section.
func (c *AssertionConfig) assertionOptions(m *assertion.Minter) *authz.AssertionOptions {
	return &authz.AssertionOptions{Header: c.Header, Audience: c.Audience, HostAudiences: c.Audiences, Asserter: m}
}

var _ authz.Asserter = (*assertion.Minter)(nil)
