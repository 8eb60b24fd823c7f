package generation

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
)

// rateLimitBackend is the seam for rate-limit stores: one entry of
// rateLimitBackends per value of rate_limit.backend, bringing what it
// needs from the rest of the config, how its store is keyed in the pool
// and how it is built.
//
// A built store must implement ratelimit.Store. Beyond that, it may have
// background work, discovered by type assertion: Run(ctx) error (the
// memory janitor, the Redis batcher) runs while the limiter over it is
// used, which is for the process's life (the rate_limit settings but its
// files are restart-only).
//
// Adding a backend: a package under ratelimit/ (see docs/ARCHITECTURE.md)
// and one entry here.
type rateLimitBackend struct {
	name string
	// validate checks what the backend needs beyond the rate_limit
	// section (paths from the file's root); nil: nothing.
	validate func(c *Config) error
	// open acquires what the store is built over (the shared Redis
	// client) into the lease, and returns the part of the pool key those
	// dependencies add ("" for none) and the store's constructor, which
	// starts no goroutine. nil dependencies: open may ignore env and lease.
	open func(e *Env, l *pool.Lease, c *Config) (key string, build func() ratelimit.Store, err error)
}

// rateLimitBackends are the stores rate_limit.backend names.
var rateLimitBackends = []rateLimitBackend{
	{
		name: ratelimit.BackendMemory,
		open: func(_ *Env, _ *pool.Lease, _ *Config) (string, func() ratelimit.Store, error) {
			return "", func() ratelimit.Store { return memory.New(memory.Options{}) }, nil
		},
	},
	{
		name: ratelimit.BackendRedis,
		validate: func(c *Config) error {
			if !c.Redis.Enabled() {
				return yamlfile.Errorf("rate_limit.backend", "redis needs the redis section")
			}
			return nil
		},
		open: func(e *Env, l *pool.Lease, c *Config) (string, func() ratelimit.Store, error) {
			cli, err := e.Redis(l, &c.Redis)
			if err != nil {
				return "", nil, yamlfile.Errorf("rate_limit.backend", "redis: %v", err)
			}
			b := c.RateLimit.Batch
			return redisKey(&c.Redis), func() ratelimit.Store {
				return rlredis.New(cli, rlredis.Options{MaxBatchOps: b.MaxOps, Workers: b.Workers, NoBatching: b.Disabled})
			}, nil
		},
	},
}

// rateLimitBackendNames lists the backends, for messages.
func rateLimitBackendNames() []string {
	out := make([]string, len(rateLimitBackends))
	for i, b := range rateLimitBackends {
		out[i] = b.name
	}
	return out
}

// rateLimitBackendOf is the entry for name, or nil.
func rateLimitBackendOf(name string) *rateLimitBackend {
	i := slices.IndexFunc(rateLimitBackends, func(b rateLimitBackend) bool { return b.name == name })
	if i < 0 {
		return nil
	}
	return &rateLimitBackends[i]
}

// validateRateLimitBackend checks rate_limit.backend names an entry, and
// what that entry needs.
func (c *Config) validateRateLimitBackend() error {
	b := rateLimitBackendOf(c.RateLimit.Backend)
	switch {
	case b == nil:
		return yamlfile.Errorf("rate_limit.backend", "%q is not one of %s", c.RateLimit.Backend, strings.Join(rateLimitBackendNames(), ", "))
	case b.validate == nil || !c.RateLimit.Enabled():
		return nil
	}
	return b.validate(c)
}

// RateLimiting is the limiter and its store (counters, batcher), shared by
// every generation through the pool. Its settings are restart-only, so it
// lives for the process; each generation brings its own rules, set on it
// when that generation is swapped in (Generation.ApplyLimits).
type RateLimiting struct {
	Config  ratelimit.Config
	Limiter *ratelimit.Limiter
	store   ratelimit.Store
}

// Run is the store's background work, when it has any (a pool.Runner).
func (rl *RateLimiting) Run(ctx context.Context) error {
	if r, ok := rl.store.(pool.Runner); ok {
		return r.Run(ctx)
	}
	return nil
}

// rateLimiting acquires the shared limiter into the lease, building it
// over rules when no generation holds one.
func (e *Env) rateLimiting(l *pool.Lease, cfg *Config, rules *envoyconfig.Rules) (*RateLimiting, error) {
	rc := cfg.RateLimit
	b := rateLimitBackendOf(rc.Backend)
	if b == nil { // validateRateLimitBackend ran: only a caller bypassing Compile gets here
		return nil, yamlfile.Errorf("rate_limit.backend", "%q is not a backend", rc.Backend)
	}
	depKey, build, err := b.open(e, l, cfg)
	if err != nil {
		return nil, err
	}
	settings := rc
	// The files, plans and quotas are each generation's (see
	// pipelineOptions), not part of the shared limiter.
	settings.Files, settings.Plans, settings.Quotas, settings.DefaultPlan, settings.PlanClaim = nil, nil, nil, "", ""
	js, _ := json.Marshal(settings) // plain data: never fails
	key := "rate_limit\x00" + string(js)
	if depKey != "" {
		key += "\x00" + depKey
	}
	v, _, err := l.Acquire(key, func() (any, error) {
		st := build()
		opts := rc.LimiterOptions()
		opts.Registerer = e.Registry
		return &RateLimiting{Config: rc, Limiter: ratelimit.New(st, rules, opts), store: st}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*RateLimiting), nil
}

// loadRateLimitRules loads the envoyproxy/ratelimit files and checks that
// every domain the policy's rules name is defined in them.
func loadRateLimitRules(cfg *Config) (*envoyconfig.Rules, error) {
	rules, err := envoyconfig.Load(cfg.RateLimit.Files)
	if err != nil {
		return nil, yamlfile.Errorf("rate_limit.files", "%v", err)
	}
	var errs []error
	for i, r := range cfg.Policy.Rules {
		if d := r.RateLimits.Domain; d != "" && !rules.HasDomain(d) {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("policy.rules", i)+".rate_limits.domain",
				"domain %q is not defined in rate_limit.files (defined: %v)", d, rules.Domains()))
		}
	}
	return rules, errors.Join(errs...)
}

// pipelineOptions adds the limiter, and the generation's plans from rc,
// to the pipeline options.
func (rl *RateLimiting) pipelineOptions(o authz.Options, rc *ratelimit.Config) (authz.Options, error) {
	if rl == nil {
		return o, nil
	}
	plans, err := rc.CompilePlans()
	if err != nil {
		return o, yamlfile.Wrap("rate_limit", err)
	}
	o.RateLimitPlans = plans
	o.Limiter = rl.Limiter
	o.RateLimitHeaders = rl.Config.HeaderOptions()
	o.RateLimitHeadersOnAllow = rl.Config.ResponseHeaders.OnAllow
	o.XFFNumTrustedHops = rl.Config.XFFNumTrustedHops
	return o, nil
}
