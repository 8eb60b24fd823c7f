package generation

import (
	"encoding/json"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/redisconf"
)

// Env is what compiling a generation may use from the process: the pool
// of components generations share, and observability. Its zero value
// (with a Pool) compiles without metrics or traces, as check-config does.
type Env struct {
	// Pool holds the components generations share; required.
	Pool *pool.Pool
	// Logger is the components' logger (nil: discard).
	Logger *slog.Logger
	// Registry, when set, gets the components' series.
	Registry prometheus.Registerer
	// TracerProvider, when set, gives every Redis call a span.
	TracerProvider trace.TracerProvider
	// Tracer, when set, gives the pipeline's steps spans.
	Tracer trace.Tracer
	// Explain builds pipelines that keep what Pipeline.Explain needs
	// (authz.Options.Explain): for check --explain, and for serving with
	// admin.explain on (POST /debug/explain).
	Explain bool
}

func (e *Env) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// redisKey is the pool key of the Redis client for c.
func redisKey(c *redisconf.Config) string {
	b, _ := json.Marshal(c)
	return "redis\x00" + string(b)
}

// Redis acquires the shared Redis client for c into the lease.
func (e *Env) Redis(l *pool.Lease, c *redisconf.Config) (redis.UniversalClient, error) {
	v, _, err := l.Acquire(redisKey(c), func() (any, error) {
		cli, err := c.NewClient()
		if err != nil {
			return nil, err
		}
		if e.Registry != nil {
			cli.AddHook(redisconf.NewMetricsHook(e.Registry))
		}
		if e.TracerProvider != nil {
			if err := redisotel.InstrumentTracing(cli, redisotel.WithTracerProvider(e.TracerProvider),
				redisotel.WithDBStatement(false)); err != nil { // statements hold keys: session ids
				_ = cli.Close()
				return nil, err
			}
		}
		return cli, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(redis.UniversalClient), nil
}
