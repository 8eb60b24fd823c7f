package generation

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/redisconf"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// AuthenticatorConfig is one entry of `authenticators:`: a name, where the
// credential is carried, and exactly one kind of verifier (one field per
// entry of authKinds).
type AuthenticatorConfig struct {
	Name   string                 `yaml:"name"`
	Source authz.CredentialSource `yaml:"source"`
	// ChallengeScheme overrides the WWW-Authenticate scheme.
	ChallengeScheme string `yaml:"challenge_scheme"`
	// StripCredential removes the credential before the request goes
	// upstream.
	StripCredential bool `yaml:"strip_credential"`

	APIKey     *tokens.APIKeyConfig  `yaml:"api_key"`
	JWT        *tokens.JWTConfig     `yaml:"jwt"`
	UDBTicket  *tokens.TicketConfig  `yaml:"udb_ticket"`
	UDBSession *tokens.SessionConfig `yaml:"udb_session"`

	Introspection *tokens.IntrospectionConfig `yaml:"introspection"`
	MTLS          *tokens.MTLSConfig          `yaml:"mtls"`
}

// authKind is the seam for authenticator kinds: one entry of authKinds per
// kind, bringing its config section, how to validate it, the files it
// reads (watched for changes), and how to build its verifier.
//
// A built verifier must implement authz.Verifier. Beyond that, the service
// discovers what it can do by type assertion:
//
//   - Run(ctx) error: background work (JWKS refresh). It runs while any
//     configuration generation uses the verifier, and stops with the last.
//   - Ready() error: nil once it can verify. A reload waits (up to
//     reloadWait) for every new verifier to be ready before it swaps the
//     new generation in; /readyz and gRPC health report it.
//   - Close() error: resources freed when the last generation using the
//     verifier goes.
//
// Verifiers are shared between generations (internal/pool) under a key of
// kind, authenticator name, canonical section and the content of the files
// it reads, so one whose config and files did not change keeps its caches
// and background state across reloads.
//
// Adding a kind: a pointer field in AuthenticatorConfig and an entry here.
type authKind struct {
	name string
	// section is the entry's section of this kind (nil when unset), with
	// the kind's defaults applied to a copy.
	section func(a *AuthenticatorConfig) any
	// validate checks the section; paths are relative to it.
	validate func(sec any) error
	// files are the files the section makes the verifier read.
	files func(sec any) []string
	// keyNames name the keys the section's built verifier v accepts (API
	// key subjects, key ids), for the reload log: names only, never key
	// material. Names read from files are taken when the generation is
	// compiled (the files may change later); names read from the verifier
	// (keysFromVerifier) only when a reload rebuilt it, since the verifier
	// never changes: a key table of a million subjects is not copied into
	// every generation, nor parsed a second time.
	keyNames         func(sec any, v authz.Verifier) []string
	keysFromVerifier bool
	// redis: the verifier is built over the shared Redis client.
	redis bool
	// peer: the kind's credential is the TLS peer (source: {peer: true}),
	// and no other kind's is.
	peer bool
	// build makes the verifier. It starts no goroutine.
	build func(sec any, d buildDeps) (authz.Verifier, error)
}

// buildDeps are what a kind's build may use.
type buildDeps struct {
	// redis is the shared client; nil without a redis section.
	redis redis.UniversalClient
	opts  tokens.Options
}

// kindFuncs are a kind's functions over its section type C.
type kindFuncs[C any] struct {
	field    func(*AuthenticatorConfig) *C
	defaults func(*C) // nil: none
	validate func(*C) error
	files    func(*C) []string                 // nil: reads no file
	keyNames func(*C, authz.Verifier) []string // nil: no named keys
	// keysFromVerifier: keyNames reads only v (see authKind).
	keysFromVerifier bool
	redis            bool
	peer             bool
	build            func(C, buildDeps) (authz.Verifier, error)
}

// kindOf makes an authKind from typed functions.
func kindOf[C any](name string, f kindFuncs[C]) authKind {
	return authKind{
		name:             name,
		redis:            f.redis,
		peer:             f.peer,
		keysFromVerifier: f.keysFromVerifier,
		section: func(a *AuthenticatorConfig) any {
			p := f.field(a)
			if p == nil {
				return nil
			}
			c := *p
			if f.defaults != nil {
				f.defaults(&c)
			}
			return &c
		},
		validate: func(sec any) error { return f.validate(sec.(*C)) },
		files: func(sec any) []string {
			if f.files == nil {
				return nil
			}
			return f.files(sec.(*C))
		},
		keyNames: func(sec any, v authz.Verifier) []string {
			if f.keyNames == nil {
				return nil
			}
			return f.keyNames(sec.(*C), v)
		},
		build: func(sec any, d buildDeps) (authz.Verifier, error) { return f.build(*sec.(*C), d) },
	}
}

// authKinds are the authenticator kinds, by their yaml name.
var authKinds = []authKind{
	kindOf("api_key", kindFuncs[tokens.APIKeyConfig]{
		field:            func(a *AuthenticatorConfig) *tokens.APIKeyConfig { return a.APIKey },
		validate:         (*tokens.APIKeyConfig).Validate,
		files:            func(c *tokens.APIKeyConfig) []string { return []string{c.File} },
		keyNames:         apiKeyNames,
		keysFromVerifier: true,
		build: func(c tokens.APIKeyConfig, d buildDeps) (authz.Verifier, error) {
			return tokens.NewAPIKeyVerifierWithOptions(c, d.opts)
		},
	}),
	kindOf("jwt", kindFuncs[tokens.JWTConfig]{
		field:            func(a *AuthenticatorConfig) *tokens.JWTConfig { return a.JWT },
		defaults:         (*tokens.JWTConfig).ApplyDefaults,
		validate:         (*tokens.JWTConfig).Validate,
		files:            (*tokens.JWTConfig).Files,
		keyNames:         jwksFileKeyNames,
		keysFromVerifier: true,
		build: func(c tokens.JWTConfig, d buildDeps) (authz.Verifier, error) {
			return tokens.NewJWTVerifier(c, tokens.JWTOptions{Options: d.opts})
		},
	}),
	kindOf("udb_ticket", kindFuncs[tokens.TicketConfig]{
		field:    func(a *AuthenticatorConfig) *tokens.TicketConfig { return a.UDBTicket },
		defaults: (*tokens.TicketConfig).ApplyDefaults,
		validate: (*tokens.TicketConfig).Validate,
		files: func(c *tokens.TicketConfig) []string {
			var out []string
			for _, k := range c.Keys {
				out = append(out, k.File)
			}
			return out
		},
		keyNames: func(c *tokens.TicketConfig, _ authz.Verifier) []string {
			var out []string
			for _, k := range c.Keys {
				n := "kid " + k.ID
				if k.Retired {
					n += " (retired)"
				}
				out = append(out, n)
			}
			return out
		},
		build: func(c tokens.TicketConfig, d buildDeps) (authz.Verifier, error) {
			return tokens.NewTicketVerifier(c, d.opts)
		},
	}),
	kindOf("udb_session", kindFuncs[tokens.SessionConfig]{
		field:    func(a *AuthenticatorConfig) *tokens.SessionConfig { return a.UDBSession },
		defaults: (*tokens.SessionConfig).ApplyDefaults,
		validate: (*tokens.SessionConfig).Validate,
		redis:    true,
		build: func(c tokens.SessionConfig, d buildDeps) (authz.Verifier, error) {
			if d.redis == nil {
				return nil, errors.New("needs the redis section: no redis section configured")
			}
			return tokens.NewSessionVerifier(c, tokensredis.NewStore(d.redis), d.opts)
		},
	}),
	kindOf("introspection", kindFuncs[tokens.IntrospectionConfig]{
		field:    func(a *AuthenticatorConfig) *tokens.IntrospectionConfig { return a.Introspection },
		defaults: (*tokens.IntrospectionConfig).ApplyDefaults,
		validate: (*tokens.IntrospectionConfig).Validate,
		files:    (*tokens.IntrospectionConfig).Files,
		build: func(c tokens.IntrospectionConfig, d buildDeps) (authz.Verifier, error) {
			return tokens.NewIntrospectionVerifier(c, tokens.IntrospectionOptions{Options: d.opts})
		},
	}),
	kindOf("mtls", kindFuncs[tokens.MTLSConfig]{
		field:    func(a *AuthenticatorConfig) *tokens.MTLSConfig { return a.MTLS },
		defaults: (*tokens.MTLSConfig).ApplyDefaults,
		validate: (*tokens.MTLSConfig).Validate,
		peer:     true,
		build: func(c tokens.MTLSConfig, d buildDeps) (authz.Verifier, error) {
			return tokens.NewMTLSVerifier(c, d.opts)
		},
	}),
}

// apiKeyNames are the subjects of the verifier's keys (never the
// digests), for the reload log, read from the loaded table: a key file is
// parsed once, by the verifier (a second YAML decode of a million keys cost
// seconds and gigabytes).
func apiKeyNames(_ *tokens.APIKeyConfig, v authz.Verifier) []string {
	kv, ok := v.(*tokens.APIKeyVerifier)
	if !ok {
		return nil
	}
	out := kv.Subjects()
	for i, s := range out {
		out[i] = "subject " + s
	}
	return out
}

// jwksFileKeyNames are the key ids the verifier read from its issuers'
// JWKS files (remote key sets change without a reload and are logged by
// the verifier). They come from the built verifier, as apiKeyNames do: the
// file read when the log line is written may be a newer one than the
// generation was built from, and the old generation's names would then
// equal the new one's.
func jwksFileKeyNames(c *tokens.JWTConfig, v authz.Verifier) []string {
	jv, ok := v.(*tokens.JWTVerifier)
	if !ok {
		return nil
	}
	var out []string
	for _, is := range c.Issuers {
		for _, kid := range jv.FileKeyIDs(is.Issuer) {
			out = append(out, is.Issuer+" kid "+kid)
		}
	}
	return out
}

// kindNames lists the kinds' yaml names, for messages.
func kindNames() []string {
	out := make([]string, len(authKinds))
	for i, k := range authKinds {
		out[i] = k.name
	}
	return out
}

// kind returns the entry's one kind and its section (after defaults), or
// nil when it sets none or several.
func (a *AuthenticatorConfig) kind() (*authKind, any) {
	var found *authKind
	var sec any
	for i := range authKinds {
		if s := authKinds[i].section(a); s != nil {
			if found != nil {
				return nil, nil
			}
			found, sec = &authKinds[i], s
		}
	}
	return found, sec
}

// kindName is the entry's kind for logs ("" when invalid).
func (a *AuthenticatorConfig) kindName() string {
	if k, _ := a.kind(); k != nil {
		return k.name
	}
	return ""
}

func (a *AuthenticatorConfig) validate() error {
	var errs []error
	if a.Name == "" {
		errs = append(errs, yamlfile.Errorf("name", "required"))
	}
	errs = append(errs, yamlfile.Wrap("source", a.Source.Validate()))
	set := 0
	for i := range authKinds {
		if authKinds[i].section(a) != nil {
			set++
		}
	}
	if set != 1 {
		errs = append(errs, yamlfile.Errorf("", "set exactly one verifier kind (%s); found %d", joinNames(kindNames()), set))
	}
	if k, sec := a.kind(); k != nil {
		errs = append(errs, yamlfile.Wrap(k.name, k.validate(sec)))
		switch {
		case k.peer && !a.Source.Peer:
			errs = append(errs, yamlfile.Errorf("source", "the %s kind takes the TLS peer: set source: {peer: true}", k.name))
		case !k.peer && a.Source.Peer:
			errs = append(errs, yamlfile.Errorf("source.peer", "only the mtls kind takes the TLS peer"))
		}
	}
	return errors.Join(errs...)
}

func joinNames(names []string) string { return strings.Join(names, ", ") }

// files are the files the entry's verifier reads.
func (a *AuthenticatorConfig) files() []string {
	if k, sec := a.kind(); k != nil {
		return k.files(sec)
	}
	return nil
}

// keyNames name the keys the entry's verifier v accepts, for the reload
// log.
func (a *AuthenticatorConfig) keyNames(v authz.Verifier) []string {
	if k, sec := a.kind(); k != nil {
		return k.keyNames(sec, v)
	}
	return nil
}

// poolKey is the key under which the entry's verifier is shared between
// generations: kind, name (logs and metrics carry it), the canonical
// section, the digests of the files it reads, and for Redis-backed kinds
// the Redis client's key. Any change makes a new verifier.
func (a *AuthenticatorConfig) poolKey(k *authKind, sec any, digests filewatch.Digests, redisKey string) string {
	b, _ := json.Marshal(sec) // config sections are plain data: never fails
	key := "authenticator/" + k.name + "/" + a.Name + "\x00" + string(b)
	for _, f := range k.files(sec) {
		key += "\x00" + f + "=" + digests[f]
	}
	if k.redis {
		key += "\x00" + redisKey
	}
	return key
}

// authenticator acquires the entry's verifier, of kind k with section sec
// (see AuthenticatorConfig.kind), into the lease (building it when no
// generation holds one under the same key) and wraps it.
func (e *Env) authenticator(l *pool.Lease, ac *AuthenticatorConfig, k *authKind, sec any, redisCfg *redisconf.Config, digests filewatch.Digests) (*authz.Authenticator, string, error) {
	return e.authenticatorWith(l, ac, k, sec, redisCfg, digests, nil, "")
}

// authenticatorWith is authenticator with the revocation list its verifier
// consults (nil: none) and the list's pool key.
func (e *Env) authenticatorWith(l *pool.Lease, ac *AuthenticatorConfig, k *authKind, sec any, redisCfg *redisconf.Config, digests filewatch.Digests,
	revs *revocation.List, revKey string) (*authz.Authenticator, string, error) {
	d := buildDeps{opts: tokens.Options{Logger: e.logger().With("authenticator", ac.Name), Registerer: e.Registry, Revocations: revs}}
	if k.redis && redisCfg.Enabled() {
		cli, err := e.Redis(l, redisCfg)
		if err != nil {
			return nil, "", yamlfile.Wrap(k.name, err)
		}
		d.redis = cli
	}
	key := ac.poolKey(k, sec, digests, redisKey(redisCfg))
	if revKey != "" {
		key += "\x00" + revKey // a verifier over another list (or none) is another verifier
	}
	v, _, err := l.Acquire(key, func() (any, error) { return k.build(sec, d) })
	if err != nil {
		return nil, "", yamlfile.Wrap(k.name, err)
	}
	return &authz.Authenticator{
		Name:            ac.Name,
		Source:          ac.Source,
		Verifier:        v.(authz.Verifier),
		ChallengeScheme: ac.ChallengeScheme,
		StripCredential: ac.StripCredential,
	}, key, nil
}

// readier is a verifier that reports when it can verify.
type readier interface{ Ready() error }
