package main

import (
	"context"
	"io"
	"time"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/pool"
)

// localDecider is check --config: the config is loaded and compiled as
// serve compiles it (generation.Compile, with the matchers Explain needs),
// its authenticators are started until ready or the timeout (a JWKS is
// fetched as the server would), and the request is explained. Nothing
// outlives the call.
func localDecider(getenv func(string) string) cli.LocalDecider {
	return func(ctx context.Context, path string, r *authz.Request, timeout time.Duration) (authz.Explanation, error) {
		cfg, err := generation.Load(path, getenv)
		if err != nil {
			return authz.Explanation{}, err
		}
		tel, err := newTelemetry(cfg, io.Discard)
		if err != nil {
			return authz.Explanation{}, cfg.Annotate(err)
		}
		defer func() { _ = tel.Shutdown(context.Background()) }()
		g, err := generation.Compile(&generation.Env{Pool: pool.New(pool.Options{}), Logger: tel.Logger, Registry: tel.Registry, Explain: true}, cfg)
		if err != nil {
			return authz.Explanation{}, cfg.Annotate(err)
		}
		defer func() { _ = g.Release() }() // stops what Start started
		if err := g.Start(ctx); err != nil {
			return authz.Explanation{}, err
		}
		// Not ready by the deadline: explained anyway, the authenticator
		// that cannot verify shows as unavailable.
		ready, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		for g.Ready() != nil && ready.Err() == nil {
			select {
			case <-ready.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		g.ApplyLimits()
		ectx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return g.Pipeline.Explain(ectx, r), nil
	}
}
