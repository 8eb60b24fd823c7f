package main

import (
	"context"
	"errors"
	"reflect"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/ratelimit/memory"
	rlredis "github.com/ext-authz/ext-authz/ratelimit/redis"
	"github.com/ext-authz/ext-authz/ratelimit/rls"
)

// rateLimiting is the process's one limiter: built at start-up, its rules
// swapped on reload, its store (and counters) kept for the life of the
// process.
type rateLimiting struct {
	cfg     ratelimit.Config
	limiter *ratelimit.Limiter
	// run is the store's background work: the memory janitor or the Redis
	// batcher.
	run func(ctx context.Context) error
}

// buildRateLimiting returns nil when no rate-limit files are configured.
func (s *service) buildRateLimiting(cfg *fileConfig) (*rateLimiting, error) {
	rc := cfg.RateLimit
	if !rc.Enabled() {
		return nil, nil
	}
	rules, err := loadRateLimitRules(cfg)
	if err != nil {
		return nil, err
	}
	rl := &rateLimiting{cfg: rc}
	var store ratelimit.Store
	switch rc.Backend {
	case ratelimit.BackendRedis:
		cli, err := s.env.redis()
		if err != nil {
			return nil, yamlfile.Errorf("rate_limit.backend", "redis: %v", err)
		}
		st := rlredis.New(cli, rlredis.Options{MaxBatchOps: rc.Batch.MaxOps, Workers: rc.Batch.Workers, NoBatching: rc.Batch.Disabled})
		store, rl.run = st, st.Run
	default:
		st := memory.New(memory.Options{})
		store, rl.run = st, st.Run
	}
	opts := rc.LimiterOptions()
	opts.Registerer = s.registry
	rl.limiter = ratelimit.New(store, rules, opts)
	return rl, nil
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

// prepareReload loads the new files; commit swaps them in once the rest of
// the reload succeeded. Other rate_limit settings need a restart.
func (rl *rateLimiting) prepareReload(cfg *fileConfig) (commit func(), warn bool, err error) {
	if rl == nil {
		return func() {}, cfg.RateLimit.Enabled(), nil
	}
	if !cfg.RateLimit.Enabled() {
		return func() {}, true, nil
	}
	rules, err := loadRateLimitRules(cfg)
	if err != nil {
		return nil, false, err
	}
	old, next := rl.cfg, cfg.RateLimit
	old.Files, next.Files = nil, nil
	return func() { rl.limiter.SetMatcher(rules) }, !reflect.DeepEqual(old, next), nil
}

// rlsServer is the ShouldRateLimit service, or nil when not served.
func (rl *rateLimiting) rlsServer() *rls.Server {
	if rl == nil || rl.cfg.Service.Disabled {
		return nil
	}
	return rls.New(rl.limiter, rls.Options{ResponseHeaders: rl.cfg.Service.ResponseHeaders})
}
