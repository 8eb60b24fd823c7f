package generation

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
	"github.com/ext-authz/ext-authz/tokens/assertion"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// Generation is one configuration, compiled: the policy over its
// authenticators and rate-limit rules, ready to decide. A reload builds a
// whole new generation from the new file, waits until it is ready, swaps
// it in, then releases the old one. Components with state worth keeping
// (verifiers, the Redis client, the limiter) are held through a lease on
// the service's pool, so the two generations share the unchanged ones and
// a changed one stops when its last generation is released.
type Generation struct {
	// Config is the file it was compiled from, without what only
	// compiling needed (the YAML tree, the policy's rules).
	Config   *Config
	Pipeline *authz.Pipeline
	// Candidate is the policy_candidate beside Pipeline; nil without one.
	Candidate *Candidate
	// Auths are the authenticators in config order, with their pool keys.
	Auths []Auth
	// RateLimit is the shared limiter (nil without rate limits); limits
	// are the rules ApplyLimits sets on it at the swap.
	RateLimit *RateLimiting
	limits    *envoyconfig.Rules
	// Assertion signs the upstream assertion and holds its keys (the
	// admin port's JWKS); nil without upstream_assertion.
	Assertion *assertion.Minter
	lease     *pool.Lease
	// Files are the digests of the config file (of the bytes decoded) and
	// of every file it references, as read to build this generation; a
	// poll that finds other content reloads.
	Files filewatch.Digests
	// rules are the policy's rules by name, each as a digest of its
	// config, for the reload log's diff: the rules themselves are dropped
	// once compiled (Config.compiled).
	rules map[string]string

	// Revocations is the shared revocation list (nil when off).
	Revocations *revocation.List
}

// Auth is one authenticator of a generation.
type Auth struct {
	Config        *AuthenticatorConfig
	Authenticator *authz.Authenticator
	// Key is its pool key: the same key in two generations is the same
	// verifier, state and all.
	Key string
	// names are the keys it accepts as the generation was compiled, for
	// kinds whose names are read from files; nil for those read from the
	// verifier (see authKind.keyNames).
	names []string
}

// keys name the keys it accepts (see authKind.keyNames).
func (a *Auth) keys() []string {
	if k, _ := a.Config.kind(); k != nil && k.keysFromVerifier {
		return a.Config.keyNames(a.Authenticator.Verifier)
	}
	return a.names
}

// ErrFilesChanged means a referenced file changed while the generation was
// built, so it may have read a mix of old and new content.
var ErrFilesChanged = errors.New("referenced files changed while loading; will retry once they are stable")

// Compile turns a loaded config into a generation: it validates the
// authenticators, policy and rate_limit sections (it is their only
// validator), reads every referenced file, acquires or builds every
// authenticator, the limiter and the Redis client, and compiles the
// policy. check-config, serve and reload all call it, so what it accepts
// is what runs. It starts no goroutine; a failed compile releases
// everything it acquired.
func Compile(env *Env, cfg *Config) (_ *Generation, err error) {
	policy, err := cfg.validateGeneration()
	if err != nil {
		return nil, err
	}
	paths := cfg.referencedFiles()
	before := filewatch.DigestAll(paths)
	g := &Generation{Config: cfg, lease: env.Pool.NewLease()}
	defer func() {
		if err != nil {
			_ = g.lease.Release()
		}
	}()
	opts := authz.Options{Tracer: env.Tracer, Explain: env.Explain}
	if cfg.RateLimit.Enabled() {
		if g.limits, err = loadRateLimitRules(cfg); err != nil {
			return nil, err
		}
		if g.RateLimit, err = env.rateLimiting(g.lease, cfg, g.limits); err != nil {
			return nil, err
		}
		if opts, err = g.RateLimit.pipelineOptions(opts, &cfg.RateLimit); err != nil {
			return nil, err
		}
	}
	revKey := ""
	if g.Revocations, revKey, err = env.revocations(g.lease, cfg); err != nil {
		return nil, yamlfile.Wrap("revocation", err)
	}
	var errs []error
	list := make([]*authz.Authenticator, 0, len(cfg.Authenticators))
	for i := range cfg.Authenticators {
		ac := &cfg.Authenticators[i]
		k, sec := ac.kind() // validated: exactly one
		a, key, err := env.authenticatorWith(g.lease, ac, k, sec, &cfg.Redis, before, g.Revocations, revKey)
		if err != nil {
			errs = append(errs, yamlfile.Wrap(yamlfile.Index("authenticators", i), err))
			continue
		}
		auth := Auth{Config: ac, Authenticator: a, Key: key}
		if !k.keysFromVerifier {
			auth.names = k.keyNames(sec, a.Verifier)
		}
		g.Auths = append(g.Auths, auth)
		list = append(list, a)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if a := cfg.UpstreamAssertion; a != nil {
		if g.Assertion, err = env.assertion(g.lease, a, before); err != nil {
			return nil, yamlfile.Wrap("upstream_assertion", err)
		}
		opts.Assertion = a.assertionOptions(g.Assertion)
	}
	if g.Pipeline, err = policy.NewPipeline(list, opts); err != nil {
		return nil, yamlfile.Wrap("policy", err)
	}
	if g.Candidate, err = compileCandidate(cfg, g.Pipeline, opts); err != nil {
		return nil, err
	}
	if !maps.Equal(before, filewatch.DigestAll(paths)) {
		return nil, ErrFilesChanged
	}
	g.Files = before
	g.Files[cfg.path] = cfg.sum
	g.rules = ruleDigests(cfg.Policy.Rules)
	cfg.compiled()
	return g, nil
}

// Ready returns nil when every authenticator can verify.
func (g *Generation) Ready() error {
	var errs []error
	if g.Revocations != nil {
		errs = append(errs, g.Revocations.Ready())
	}
	for _, a := range g.Auths {
		if r, ok := a.Authenticator.Verifier.(readier); ok {
			if err := r.Ready(); err != nil {
				errs = append(errs, fmt.Errorf("authenticator %s: %w", a.Config.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Start runs the background work of the generation's components that are
// not running yet (those it shares with the serving generation are),
// under ctx.
func (g *Generation) Start(ctx context.Context) error { return g.lease.Start(ctx) }

// ApplyLimits sets the generation's rate-limit rules on the shared
// limiter; call it when the generation is swapped in.
func (g *Generation) ApplyLimits() {
	if g.RateLimit != nil {
		g.RateLimit.Limiter.SetMatcher(g.limits)
	}
}

// Release drops the generation's hold on its components: those no other
// generation holds stop and close.
func (g *Generation) Release() error { return g.lease.Release() }

// referencedFiles are the files and directories the config makes the
// service read, all watched: key files, JWKS files, rate-limit files and
// directories, which a reload re-reads; and the Redis TLS files, which
// only a restart re-reads (a change is logged as such).
func (c *Config) referencedFiles() []string {
	var out []string
	for i := range c.Authenticators {
		out = append(out, c.Authenticators[i].files()...)
	}
	out = append(out, c.RateLimit.Files...)
	out = append(out, c.UpstreamAssertion.files()...)
	if c.PolicyCandidate.File != "" {
		out = append(out, c.PolicyCandidate.File)
	}
	out = append(out, c.RestartOnlyFiles()...)
	slices.Sort(out)
	return slices.Compact(out)
}

// RestartOnlyFiles are referenced files read once, at start.
func (c *Config) RestartOnlyFiles() []string {
	var out []string
	for _, f := range []string{c.Redis.TLS.CAFile, c.Redis.TLS.CertFile, c.Redis.TLS.KeyFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}
