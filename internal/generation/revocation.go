package generation

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// RevocationConfig is the `revocation:` section: the revocation records
// every verifier consults (see docs/tokens.md, "Revocation").
type RevocationConfig struct {
	// Enabled turns revocation on; it needs the redis section.
	Enabled bool `yaml:"enabled"`
	// KeyPrefix names the Redis keys ({<key_prefix>}:credentials, ...);
	// default "udb:revocation".
	KeyPrefix string `yaml:"key_prefix"`
	// MaxStaleness is how long the in-memory records are trusted after
	// the last read of the log; past it every Check asks Redis (one
	// round trip; 503 when Redis cannot answer). Default 5s.
	MaxStaleness time.Duration `yaml:"max_staleness"`
	// MaxRecords bounds the records held in memory; past it every Check
	// asks Redis until a reload fits. Default 1000000.
	MaxRecords int `yaml:"max_records"`
	// Retention is how long a subject epoch matters: at least the longest
	// lifetime of any credential. Default 720h.
	Retention time.Duration `yaml:"retention"`
	// LookupTimeout bounds one direct lookup; default 100ms.
	LookupTimeout time.Duration `yaml:"lookup_timeout"`
}

func (c *RevocationConfig) applyDefaults() {
	if !c.Enabled {
		return
	}
	setDefault(&c.KeyPrefix, tokensredis.DefaultRevocationPrefix)
	setDefault(&c.MaxStaleness, revocation.DefaultMaxStaleness)
	setDefault(&c.MaxRecords, revocation.DefaultMaxRecords)
	setDefault(&c.Retention, revocation.DefaultRetention)
	setDefault(&c.LookupTimeout, revocation.DefaultLookupTimeout)
}

// validate checks the section (after defaults); paths are relative to it.
func (c *RevocationConfig) validate(redisEnabled bool) error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if !redisEnabled {
		errs = append(errs, yamlfile.Errorf("enabled", "needs the redis section: no redis section configured"))
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		errs = append(errs, yamlfile.Errorf("key_prefix", "must not contain { or } (the keys put it in a hash tag)"))
	}
	if c.MaxStaleness < 200*time.Millisecond {
		errs = append(errs, yamlfile.Errorf("max_staleness", "%s is too short: at least 200ms (the log is read in blocks of up to a quarter of it)", c.MaxStaleness))
	}
	if c.MaxRecords < 0 {
		errs = append(errs, yamlfile.Errorf("max_records", "must not be negative"))
	}
	if c.Retention < time.Hour {
		errs = append(errs, yamlfile.Errorf("retention", "%s is too short: at least 1h, and no shorter than the longest credential lifetime", c.Retention))
	}
	if c.LookupTimeout < 0 {
		errs = append(errs, yamlfile.Errorf("lookup_timeout", "must not be negative"))
	}
	return errors.Join(errs...)
}

// revocationKey is the pool key of the List for c over the Redis client
// of redisKey; "" when revocation is off. Verifiers built over a List
// carry it in their own key, so turning revocation on or changing it
// rebuilds them.
func revocationKey(c *RevocationConfig, redisKey string) string {
	if !c.Enabled {
		return ""
	}
	b, _ := json.Marshal(c) // plain data: never fails
	return "revocation\x00" + string(b) + "\x00" + redisKey
}

// revocations acquires the shared revocation List for cfg into the lease
// (nil when revocation is off). Its Run follows the log while any
// generation holds it.
func (e *Env) revocations(l *pool.Lease, cfg *Config) (*revocation.List, string, error) {
	c := &cfg.Revocation
	if !c.Enabled {
		return nil, "", nil
	}
	cli, err := e.Redis(l, &cfg.Redis)
	if err != nil {
		return nil, "", yamlfile.Wrap("redis", err)
	}
	key := revocationKey(c, redisKey(&cfg.Redis))
	v, _, err := l.Acquire(key, func() (any, error) {
		store := tokensredis.NewRevocationStore(cli, tokensredis.RevocationOptions{Prefix: c.KeyPrefix, Retention: c.Retention})
		return revocation.New(store, revocation.Options{
			MaxStaleness:  c.MaxStaleness,
			MaxRecords:    c.MaxRecords,
			Retention:     c.Retention,
			LookupTimeout: c.LookupTimeout,
			Logger:        e.logger().With("component", "revocation"),
			Registerer:    e.Registry,
		}), nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(*revocation.List), key, nil
}

// Degraded lists what works in a degraded mode (the service is still
// ready): the revocation list asking Redis per Check.
func (g *Generation) Degraded() []string {
	if g.Revocations == nil {
		return nil
	}
	if d := g.Revocations.Degraded(); d != "" {
		return []string{d}
	}
	return nil
}
