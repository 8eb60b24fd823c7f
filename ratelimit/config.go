package ratelimit

import (
	"errors"
	"time"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// Config is the `rate_limit:` section of the config file.
//
//	rate_limit:
//	  files: [/etc/ext-authz/ratelimit/]   # envoyproxy/ratelimit YAML files or directories
//	  backend: memory                      # or redis (uses the top-level redis: section)
//	  timeout: 30ms                        # per store call
//	  failure_mode: deny                   # or allow; what a store failure answers
//	  deny_status: 503                     # or 429, for failure_mode deny
//	  domains:                             # per-domain failure policy
//	    public: {failure_mode: allow}
//	  response_headers: {on_allow: false, draft: true, legacy: true}
//	  local_cache: {max_keys: 100000}
//	  batch: {max_ops: 256, workers: 4}
//	  xff_num_trusted_hops: 1
//	  service: {enabled: true, response_headers: false}
//	  algorithm: fixed_window              # or sliding_window, gcra; per domain in domains
//	  plans:                               # plan → descriptor name → rates
//	    free: {api: [10/second, 10000/day]}
//	    pro:  {api: [100/second, 1000000/day]}
//	  default_plan: free
//	  plan_claim: plan                     # the identity's claim naming the plan
//	  quotas:                              # a limit straight from a numeric claim
//	    api: {claim: api_per_day, unit: day, max: 10000000}
//
// The house default is to fail closed with 503 when the store is down: a
// rate limit is often the only defence of an expensive upstream, so letting
// everything through must be an explicit, per-domain choice.
type Config struct {
	// Files are envoyproxy/ratelimit config files, or directories whose
	// *.yaml and *.yml files are loaded. No files: no rate limiting.
	Files []string `yaml:"files"`
	// Backend is memory (default; one replica) or redis.
	Backend string `yaml:"backend"`
	// Timeout bounds each store call. Default 30ms.
	Timeout time.Duration `yaml:"timeout"`
	// KeyPrefix starts every counter key. Default "rl:".
	KeyPrefix string `yaml:"key_prefix"`
	// FailureMode is deny (default) or allow.
	FailureMode string `yaml:"failure_mode"`
	// DenyStatus is 503 (default) or 429.
	DenyStatus int `yaml:"deny_status"`
	// Domains overrides the failure policy per domain.
	Domains map[string]DomainConfig `yaml:"domains"`
	// ResponseHeaders says which rate-limit headers Check responses carry.
	ResponseHeaders HeadersConfig `yaml:"response_headers"`
	// LocalCache bounds the local over-limit cache.
	LocalCache LocalCacheConfig `yaml:"local_cache"`
	// Batch tunes how the Redis backend groups concurrent checks into
	// shared pipelines.
	Batch BatchConfig `yaml:"batch"`
	// XFFNumTrustedHops is how many proxies in front of the gateway append
	// to x-forwarded-for; the remote_address descriptor is the address that
	// many hops from the right, as Envoy's xff_num_trusted_hops.
	XFFNumTrustedHops int `yaml:"xff_num_trusted_hops"`
	// Service configures Envoy's RateLimitService (ShouldRateLimit).
	Service ServiceConfig `yaml:"service"`
	// Algorithm is the counting algorithm of domains that do not set
	// their own: fixed_window (default), sliding_window or gcra
	// (token_bucket).
	Algorithm string `yaml:"algorithm"`
	// Plans are the limits per plan (tier): plan → descriptor name →
	// rates ("10/second", "10000/day", "unlimited"). A rule's descriptor
	// with `plan: <descriptor name>` gets the caller's plan's rates.
	Plans map[string]map[string][]string `yaml:"plans"`
	// DefaultPlan is the plan of callers whose identity names none (or an
	// unknown one), and of anonymous callers. Required with plans.
	DefaultPlan string `yaml:"default_plan"`
	// PlanClaim is the claim of the verified identity that names the
	// caller's plan (a JWT claim, a session or ticket field, an API key
	// attribute); empty: everyone has the default plan.
	PlanClaim string `yaml:"plan_claim"`
	// Quotas take a descriptor name's limit from a numeric claim, bounded.
	Quotas map[string]QuotaConfig `yaml:"quotas"`
}

// DomainConfig is one domain's failure policy; empty fields inherit the
// section's.
type DomainConfig struct {
	FailureMode string `yaml:"failure_mode"`
	DenyStatus  int    `yaml:"deny_status"`
	// Algorithm overrides the section's algorithm for the domain.
	Algorithm string `yaml:"algorithm"`
}

// HeadersConfig chooses rate-limit response headers. 429 responses always
// carry Retry-After.
type HeadersConfig struct {
	// OnAllow adds the headers to allowed responses too. Default false.
	OnAllow bool `yaml:"on_allow"`
	// Draft: RateLimit-Policy and RateLimit. Default true.
	Draft *bool `yaml:"draft"`
	// Legacy: X-RateLimit-Limit/Remaining/Reset. Default true.
	Legacy *bool `yaml:"legacy"`
}

// LocalCacheConfig bounds the over-limit cache.
type LocalCacheConfig struct {
	// Disabled turns it off (every check asks the store).
	Disabled bool `yaml:"disabled"`
	// MaxKeys bounds it. Default 100000.
	MaxKeys int `yaml:"max_keys"`
}

// BatchConfig tunes the Redis batcher.
type BatchConfig struct {
	// Disabled sends each check's pipeline on its own.
	Disabled bool `yaml:"disabled"`
	// MaxOps caps the increments in one shared pipeline. Default 256.
	MaxOps int `yaml:"max_ops"`
	// Workers is how many shared pipelines may be in flight. Default 4.
	Workers int `yaml:"workers"`
}

// ServiceConfig configures the ShouldRateLimit endpoint.
type ServiceConfig struct {
	// Disabled stops serving envoy.service.ratelimit.v3 (it is served by
	// default when files are configured).
	Disabled bool `yaml:"disabled"`
	// ResponseHeaders adds RateLimit-Limit, -Remaining and -Reset to
	// responses, as envoyproxy/ratelimit's LIMIT_RESPONSE_HEADERS_ENABLED.
	ResponseHeaders bool `yaml:"response_headers"`
}

// Backends.
const (
	BackendMemory = "memory"
	BackendRedis  = "redis"
)

// Failure modes in config.
const (
	FailureModeDeny  = "deny"
	FailureModeAllow = "allow"
)

// Enabled reports whether any limits are configured.
func (c *Config) Enabled() bool { return len(c.Files) > 0 }

// ApplyDefaults fills in defaults.
func (c *Config) ApplyDefaults() {
	if c.Backend == "" {
		c.Backend = BackendMemory
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Millisecond
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "rl:"
	}
	if c.FailureMode == "" {
		c.FailureMode = FailureModeDeny
	}
	if c.DenyStatus == 0 {
		c.DenyStatus = 503
	}
	t := true
	if c.ResponseHeaders.Draft == nil {
		c.ResponseHeaders.Draft = &t
	}
	if c.ResponseHeaders.Legacy == nil {
		c.ResponseHeaders.Legacy = &t
	}
	if c.LocalCache.MaxKeys == 0 {
		c.LocalCache.MaxKeys = 100000
	}
	if c.Batch.MaxOps == 0 {
		c.Batch.MaxOps = 256
	}
	if c.Batch.Workers == 0 {
		c.Batch.Workers = 4
	}
}

// Validate checks the section (call ApplyDefaults first). Paths are
// relative to the section.
func (c *Config) Validate() error {
	var errs []error
	// Backend names are checked where the backends are built (the
	// rate-limit backend table of internal/generation), so adding one is
	// one entry there.
	for i, f := range c.Files {
		if f == "" {
			errs = append(errs, yamlfile.Errorf(yamlfile.Index("files", i), "empty path"))
		}
	}
	if c.Timeout < time.Millisecond || c.Timeout > 10*time.Second {
		errs = append(errs, yamlfile.Errorf("timeout", "%v: must be between 1ms and 10s (tens of milliseconds is typical)", c.Timeout))
	}
	errs = append(errs, validFailure("", c.FailureMode, c.DenyStatus))
	for name, d := range c.Domains {
		p := "domains." + name
		if name == "" {
			errs = append(errs, yamlfile.Errorf("domains", "empty domain name"))
		}
		errs = append(errs, validFailure(p+".", d.FailureMode, d.DenyStatus))
		if _, ok := ParseAlgorithm(d.Algorithm); !ok && d.Algorithm != "" {
			errs = append(errs, yamlfile.Errorf(p+".algorithm", "%q is not one of fixed_window, sliding_window, gcra, token_bucket", d.Algorithm))
		}
	}
	if _, ok := ParseAlgorithm(c.Algorithm); !ok && c.Algorithm != "" {
		errs = append(errs, yamlfile.Errorf("algorithm", "%q is not one of fixed_window, sliding_window, gcra, token_bucket", c.Algorithm))
	}
	if _, err := c.CompilePlans(); err != nil {
		errs = append(errs, err)
	}
	if (len(c.Plans) > 0 || len(c.Quotas) > 0) && len(c.Files) == 0 {
		errs = append(errs, yamlfile.Errorf("files", "required with plans and quotas: the files define the domains rules send descriptors to"))
	}
	if c.LocalCache.MaxKeys < 0 {
		errs = append(errs, yamlfile.Errorf("local_cache.max_keys", "must not be negative"))
	}
	if c.Batch.MaxOps < 1 || c.Batch.MaxOps > 100000 {
		errs = append(errs, yamlfile.Errorf("batch.max_ops", "%d: must be between 1 and 100000", c.Batch.MaxOps))
	}
	if c.Batch.Workers < 1 || c.Batch.Workers > 1024 {
		errs = append(errs, yamlfile.Errorf("batch.workers", "%d: must be between 1 and 1024", c.Batch.Workers))
	}
	if c.XFFNumTrustedHops < 0 || c.XFFNumTrustedHops > 64 {
		errs = append(errs, yamlfile.Errorf("xff_num_trusted_hops", "%d: must be between 0 and 64", c.XFFNumTrustedHops))
	}
	return errors.Join(errs...)
}

func validFailure(prefix, mode string, status int) error {
	var errs []error
	switch mode {
	case "", FailureModeAllow, FailureModeDeny:
	default:
		errs = append(errs, yamlfile.Errorf(prefix+"failure_mode", "%q is not one of deny, allow", mode))
	}
	switch status {
	case 0, 429, 503:
	default:
		errs = append(errs, yamlfile.Errorf(prefix+"deny_status", "%d is not one of 503, 429", status))
	}
	return errors.Join(errs...)
}

// LimiterOptions turns the section into Options (without Now and
// Registerer, which the caller sets).
func (c *Config) LimiterOptions() Options {
	pol := func(mode string, status int, def FailurePolicy) FailurePolicy {
		p := def
		switch mode {
		case FailureModeAllow:
			p.Mode = FailOpen
		case FailureModeDeny:
			p.Mode = FailClosed
		}
		if status != 0 {
			p.DenyStatus = status
		}
		return p
	}
	o := Options{
		KeyPrefix: c.KeyPrefix,
		Timeout:   c.Timeout,
		Failure:   pol(c.FailureMode, c.DenyStatus, FailurePolicy{DenyStatus: 503}),
	}
	if len(c.Domains) > 0 {
		o.Domains = make(map[string]FailurePolicy, len(c.Domains))
		for name, d := range c.Domains {
			o.Domains[name] = pol(d.FailureMode, d.DenyStatus, o.Failure)
		}
	}
	o.Algorithm, _ = ParseAlgorithm(c.Algorithm)
	for name, d := range c.Domains {
		if a, ok := ParseAlgorithm(d.Algorithm); ok {
			if o.Algorithms == nil {
				o.Algorithms = make(map[string]Algorithm, len(c.Domains))
			}
			o.Algorithms[name] = a
		}
	}
	o.LocalCacheSize = c.LocalCache.MaxKeys
	if c.LocalCache.Disabled {
		o.LocalCacheSize = -1
	}
	return o
}

// HeaderOptions returns the header families to render.
func (c *Config) HeaderOptions() HeaderOptions {
	return HeaderOptions{
		Draft:  c.ResponseHeaders.Draft == nil || *c.ResponseHeaders.Draft,
		Legacy: c.ResponseHeaders.Legacy == nil || *c.ResponseHeaders.Legacy,
	}
}
