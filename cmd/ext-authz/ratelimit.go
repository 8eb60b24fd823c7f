package main

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// rateLimiting is the limiter and its store (counters, batcher), shared by
// every generation through the pool. Its settings are restart-only, so it
// lives for the process; each generation brings its own rules, set on it
// when that generation is swapped in.
type rateLimiting struct {
	cfg     ratelimit.Config
	limiter *ratelimit.Limiter
	// run is the store's background work: the memory janitor or the Redis
	// batcher.
	run func(ctx context.Context) error
}

// Run is the store's background work (a pool.Runner).
func (rl *rateLimiting) Run(ctx context.Context) error { return rl.run(ctx) }

// rateLimiting acquires the shared limiter into the lease, building it
// over rules when no generation holds one.
func (e *buildEnv) rateLimiting(l *pool.Lease, cfg *fileConfig, rules *envoyconfig.Rules) (*rateLimiting, error) {
	rc := cfg.RateLimit
	settings := rc
	settings.Files = nil
	b, _ := json.Marshal(settings)
	key := "rate_limit\x00" + string(b)
	var build func() (any, error)
	switch rc.Backend {
	case ratelimit.BackendRedis:
		cli, err := e.redis(l, &cfg.Redis)
		if err != nil {
			return nil, yamlfile.Errorf("rate_limit.backend", "redis: %v", err)
		}
		key += "\x00" + redisKey(&cfg.Redis)
		build = func() (any, error) {
			st := rlredis.New(cli, rlredis.Options{MaxBatchOps: rc.Batch.MaxOps, Workers: rc.Batch.Workers, NoBatching: rc.Batch.Disabled})
			return e.newRateLimiting(rc, st, st.Run, rules), nil
		}
	default:
		build = func() (any, error) {
			st := memory.New(memory.Options{})
			return e.newRateLimiting(rc, st, st.Run, rules), nil
		}
	}
	v, _, err := l.Acquire(key, build)
	if err != nil {
		return nil, err
	}
	return v.(*rateLimiting), nil
}

func (e *buildEnv) newRateLimiting(rc ratelimit.Config, st ratelimit.Store, run func(context.Context) error, rules *envoyconfig.Rules) *rateLimiting {
	opts := rc.LimiterOptions()
	opts.Registerer = e.registry
	return &rateLimiting{cfg: rc, limiter: ratelimit.New(st, rules, opts), run: run}
}

// loadRateLimitRules loads the envoyproxy/ratelimit files and checks that
// every domain the policy's rules name is defined in them.
func loadRateLimitRules(cfg *fileConfig) (*envoyconfig.Rules, error) {
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

// pipelineOptions adds the limiter to the pipeline options.
func (rl *rateLimiting) pipelineOptions(o authz.Options) authz.Options {
	if rl == nil {
		return o
	}
	o.Limiter = rl.limiter
	o.RateLimitHeaders = rl.cfg.HeaderOptions()
	o.RateLimitHeadersOnAllow = rl.cfg.ResponseHeaders.OnAllow
	o.XFFNumTrustedHops = rl.cfg.XFFNumTrustedHops
	return o
}

// rlsServer is the ShouldRateLimit service, or nil when not served.
func (rl *rateLimiting) rlsServer() *rls.Server {
	if rl == nil || rl.cfg.Service.Disabled {
		return nil
	}
	return rls.New(rl.limiter, rls.Options{ResponseHeaders: rl.cfg.Service.ResponseHeaders})
}
