package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/filewatch"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/ratelimit/envoyconfig"
)

// generation is one configuration, compiled: the policy over its
// authenticators and rate-limit rules, ready to decide. A reload builds a
// whole new generation from the new file, waits until it is ready, swaps
// it in, then releases the old one. Components with state worth keeping
// (verifiers, the Redis client, the limiter) are held through a lease on
// the service's pool, so the two generations share the unchanged ones and
// a changed one stops when its last generation is released.
type generation struct {
	cfg      *fileConfig
	pipeline *authz.Pipeline
	// auths are the authenticators in config order, with their pool keys.
	auths []genAuth
	// rl is the shared limiter and limits the rules to set on it at the
	// swap; both nil without rate limits.
	rl     *rateLimiting
	limits *envoyconfig.Rules
	lease  *pool.Lease
	// files are the digests of the config file (of the bytes decoded) and
	// of every file it references, as read to build this generation; a
	// poll that finds other content reloads.
	files filewatch.Digests
	// rules are the policy's rules by name, each as a digest of its
	// config, for the reload log's diff: the rules themselves are dropped
	// once compiled (fileConfig.compiled).
	rules map[string]string
}

type genAuth struct {
	cfg  *authenticatorConfig
	auth *authz.Authenticator
	key  string
	// keys name the keys it accepts (see authKind.keyNames).
	keys []string
}

// errFilesChanged: a referenced file changed while the generation was
// built, so it may have read a mix of old and new content.
var errFilesChanged = errors.New("referenced files changed while loading; will retry once they are stable")

// compile turns a loaded config into a generation: it validates the
// authenticators, policy and rate_limit sections (it is their only
// validator), reads every referenced file, acquires or builds every
// authenticator, the limiter and the Redis client, and compiles the
// policy. check-config, serve and reload all call it, so what it accepts
// is what runs. It starts no goroutine; a failed compile releases
// everything it acquired.
func compile(env *buildEnv, cfg *fileConfig) (_ *generation, err error) {
	if err := cfg.validateGeneration(); err != nil {
		return nil, err
	}
	paths := cfg.referencedFiles()
	before := filewatch.DigestAll(paths)
	g := &generation{cfg: cfg, lease: env.pool.NewLease()}
	defer func() {
		if err != nil {
			_ = g.lease.Release()
		}
	}()
	opts := authz.Options{Tracer: env.tracer}
	if cfg.RateLimit.Enabled() {
		if g.limits, err = loadRateLimitRules(cfg); err != nil {
			return nil, err
		}
		if g.rl, err = env.rateLimiting(g.lease, cfg, g.limits); err != nil {
			return nil, err
		}
		opts = g.rl.pipelineOptions(opts)
	}
	var errs []error
	list := make([]*authz.Authenticator, 0, len(cfg.Authenticators))
	for i := range cfg.Authenticators {
		ac := &cfg.Authenticators[i]
		k, sec := ac.kind() // validated: exactly one
		a, key, err := env.authenticator(g.lease, ac, k, sec, &cfg.Redis, before)
		if err != nil {
			errs = append(errs, yamlfile.Wrap(yamlfile.Index("authenticators", i), err))
			continue
		}
		g.auths = append(g.auths, genAuth{cfg: ac, auth: a, key: key, keys: ac.keyNames()})
		list = append(list, a)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if g.pipeline, err = authz.NewPipeline(cfg.Policy, list, opts); err != nil {
		return nil, yamlfile.Wrap("policy", err)
	}
	if !maps.Equal(before, filewatch.DigestAll(paths)) {
		return nil, errFilesChanged
	}
	g.files = before
	g.files[cfg.path] = cfg.sum
	g.rules = ruleDigests(cfg.Policy.Rules)
	cfg.compiled()
	return g, nil
}

// ready returns nil when every authenticator can verify.
func (g *generation) ready() error {
	var errs []error
	for _, a := range g.auths {
		if r, ok := a.auth.Verifier.(readier); ok {
			if err := r.Ready(); err != nil {
				errs = append(errs, fmt.Errorf("authenticator %s: %w", a.cfg.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// release drops the generation's hold on its components.
func (g *generation) release() error { return g.lease.Release() }

// referencedFiles are the files and directories the config makes the
// service read, all watched: key files, JWKS files, rate-limit files and
// directories, which a reload re-reads; and the Redis TLS files, which
// only a restart re-reads (a change is logged as such).
func (c *fileConfig) referencedFiles() []string {
	var out []string
	for i := range c.Authenticators {
		out = append(out, c.Authenticators[i].files()...)
	}
	out = append(out, c.RateLimit.Files...)
	out = append(out, c.restartOnlyFiles()...)
	slices.Sort(out)
	return slices.Compact(out)
}

// restartOnlyFiles are referenced files read once, at start.
func (c *fileConfig) restartOnlyFiles() []string {
	var out []string
	for _, f := range []string{c.Redis.TLS.CAFile, c.Redis.TLS.CertFile, c.Redis.TLS.KeyFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}
