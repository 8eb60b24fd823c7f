// Package generation owns the config file and its compilation into a
// generation: the decoded file (Load, Parse: strict YAML, defaults, the
// process-wide sections validated), and Compile, which is the only
// validator of the authenticators, policy and rate_limit sections and
// turns them into a ready authz.Pipeline with its verifiers, Redis client
// and rate limiter.
//
// Place in the data flow:
//
//	file ──Load/Parse──▶ Config ──Compile(Env)──▶ Generation{Pipeline, Auths, RateLimit, Files}
//	                                    │ lease.Acquire(key, build) for each component
//	                                    ▼
//	                              internal/pool: shared between generations, reference-counted
//
// check-config (cmd/ext-authz), serve and reload (internal/server) all call
// Compile, so what check-config accepts is what runs. Components are held
// through a pool lease under keys of their kind, name, canonical config and
// the digests of the files they read, so a reload's unchanged components
// are the serving generation's instances, state and all.
//
// The extension points are tables: authKinds (authenticators.go) for
// authenticator kinds and rateLimitBackends (ratelimit.go) for rate-limit
// stores; adding either is one entry (docs/ARCHITECTURE.md). Settings a
// reload cannot apply are declared once, in restartOnly (config.go).
//
// Import rules: it may import the domain (authz, tokens, ratelimit and
// their backends) and internal packages, but no transport (gRPC, net/http,
// authz/extauthz, authz/httpauthz, ratelimit/rls), not internal/server and
// never cmd. It reads no environment: getenv is passed in.
package generation
