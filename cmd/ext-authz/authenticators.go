package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/redisconf"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens"
	tokensredis "github.com/ext-authz/ext-authz/tokens/redis"
)

// authenticatorConfig is one entry of `authenticators:`: a name, where the
// credential is carried, and exactly one kind of verifier.
type authenticatorConfig struct {
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
}

// kinds lists the verifier kinds an entry may set, by yaml name; exactly
// one must be non-nil.
func (a *authenticatorConfig) kinds() map[string]bool {
	return map[string]bool{
		"api_key":     a.APIKey != nil,
		"jwt":         a.JWT != nil,
		"udb_ticket":  a.UDBTicket != nil,
		"udb_session": a.UDBSession != nil,
	}
}

func (a *authenticatorConfig) kind() string {
	for k, set := range a.kinds() {
		if set {
			return k
		}
	}
	return ""
}

func (a *authenticatorConfig) validate() error {
	var errs []error
	if a.Name == "" {
		errs = append(errs, yamlfile.Errorf("name", "required"))
	}
	errs = append(errs, yamlfile.Wrap("source", a.Source.Validate()))
	var set []string
	for k, ok := range a.kinds() {
		if ok {
			set = append(set, k)
		}
	}
	if len(set) != 1 {
		errs = append(errs, yamlfile.Errorf("", "set exactly one verifier kind (api_key, jwt, udb_ticket, udb_session); found %d", len(set)))
	}
	switch {
	case a.APIKey != nil:
		errs = append(errs, yamlfile.Wrap("api_key", a.APIKey.Validate()))
	case a.JWT != nil:
		c := *a.JWT
		c.ApplyDefaults()
		errs = append(errs, yamlfile.Wrap("jwt", c.Validate()))
	case a.UDBTicket != nil:
		c := *a.UDBTicket
		c.ApplyDefaults()
		errs = append(errs, yamlfile.Wrap("udb_ticket", c.Validate()))
	case a.UDBSession != nil:
		c := *a.UDBSession
		c.ApplyDefaults()
		errs = append(errs, yamlfile.Wrap("udb_session", c.Validate()))
	}
	return errors.Join(errs...)
}

// builtAuthenticator is an authenticator and the background work it needs.
type builtAuthenticator struct {
	auth *authz.Authenticator
	// run does background work (key refresh) until ctx ends; nil if none.
	run func(ctx context.Context) error
	// ready returns nil once the authenticator can verify; nil if always.
	ready func() error
}

// buildEnv is what building authenticators may use: shared clients and
// observability.
type buildEnv struct {
	logger   *slog.Logger
	registry prometheus.Registerer
	redisCfg redisconf.Config
	// tracerProvider, when set, gives every Redis call a span.
	tracerProvider trace.TracerProvider

	redisOnce sync.Once
	redisCli  redis.UniversalClient
	redisErr  error
}

// redis returns the shared Redis client, building it on first use.
func (e *buildEnv) redis() (redis.UniversalClient, error) {
	e.redisOnce.Do(func() {
		if !e.redisCfg.Enabled() {
			e.redisErr = errors.New("no redis section configured")
			return
		}
		e.redisCli, e.redisErr = e.redisCfg.NewClient()
		if e.redisErr != nil {
			return
		}
		if e.registry != nil {
			e.redisCli.AddHook(redisconf.NewMetricsHook(e.registry))
		}
		if e.tracerProvider != nil {
			e.redisErr = redisotel.InstrumentTracing(e.redisCli, redisotel.WithTracerProvider(e.tracerProvider),
				redisotel.WithDBStatement(false)) // statements hold keys: session ids
		}
	})
	return e.redisCli, e.redisErr
}

// close closes what the env built.
func (e *buildEnv) close() error {
	if e.redisCli != nil {
		return e.redisCli.Close()
	}
	return nil
}

// authenticator builds one configured authenticator.
func (e *buildEnv) authenticator(ac *authenticatorConfig) (builtAuthenticator, error) {
	a := &authz.Authenticator{
		Name:            ac.Name,
		Source:          ac.Source,
		ChallengeScheme: ac.ChallengeScheme,
		StripCredential: ac.StripCredential,
	}
	var b builtAuthenticator
	switch {
	case ac.APIKey != nil:
		v, err := tokens.NewAPIKeyVerifier(*ac.APIKey)
		if err != nil {
			return b, yamlfile.Wrap("api_key", err)
		}
		a.Verifier = v
	case ac.JWT != nil:
		v, err := tokens.NewJWTVerifier(*ac.JWT, tokens.JWTOptions{Options: e.tokenOptions(ac)})
		if err != nil {
			return b, yamlfile.Wrap("jwt", err)
		}
		a.Verifier, b.run, b.ready = v, v.Run, v.Ready
	case ac.UDBTicket != nil:
		v, err := tokens.NewTicketVerifier(*ac.UDBTicket, e.tokenOptions(ac))
		if err != nil {
			return b, yamlfile.Wrap("udb_ticket", err)
		}
		a.Verifier = v
	case ac.UDBSession != nil:
		client, err := e.redis()
		if err != nil {
			return b, yamlfile.Errorf("udb_session", "needs the redis section: %v", err)
		}
		v, err := tokens.NewSessionVerifier(*ac.UDBSession, tokensredis.NewStore(client), e.tokenOptions(ac))
		if err != nil {
			return b, yamlfile.Wrap("udb_session", err)
		}
		a.Verifier = v
	default:
		return b, yamlfile.Errorf("", "no verifier kind set")
	}
	b.auth = a
	return b, nil
}

// tokenOptions are the dependencies of a tokens verifier.
func (e *buildEnv) tokenOptions(ac *authenticatorConfig) tokens.Options {
	return tokens.Options{Logger: e.logger.With("authenticator", ac.Name), Registerer: e.registry}
}
