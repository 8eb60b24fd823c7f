// Package tokens verifies credentials: UDB-style session tokens (signed
// tickets and Redis-backed sessions), JWTs from several issuers with JWKS key
// sources, static API keys, opaque OAuth 2.0 tokens by introspection, and
// TLS peers by their client certificate.
//
// Where it sits in the flow:
//
//	authz.Pipeline ─credential string─▶ tokens verifier ─▶ Principal | error
//
//	TicketVerifier   udbt1.<kid>.<payload>.<sig>, keys by id from files (ticket.go)
//	SessionVerifier  opaque token ─▶ SessionStore (tokens/redis: HGETALL) (session.go)
//	JWTVerifier      golang-jwt/v5 + per-issuer key sources (jwt.go):
//	                 JWKS file, JWKS URL, OIDC discovery (keysource.go,
//	                 jwks.go, discovery.go)
//	APIKeyVerifier   static keys (apikey.go)
//	IntrospectionVerifier  opaque OAuth 2.0 tokens ─▶ RFC 7662 endpoint
//	                 (introspection.go)
//	MTLSVerifier     the gateway's TLS peer (PeerCredential: source
//	                 principal and certificate) under SPIFFE/DNS rules
//	                 (mtls.go, spiffe.go)
//
// Every verifier implements authz.Verifier's method set:
// Verify(ctx, credential) (Principal, error). It returns a Principal for a
// good credential, an error matching ErrInvalid (a *CredentialError with a
// safe Reason) for a bad one, and any other error when it could not decide
// (JWKS never loaded, session store down or slow). Credentials never appear
// in errors, logs or metrics; use Fingerprint to correlate.
//
// Verified credentials are cached per verifier, keyed by the SHA-256 of the
// whole credential, for no longer than the credential's expiry (and, for
// sessions, the configured cache TTL, which bounds how long a revocation
// goes unnoticed). Constructors start no goroutines: JWTVerifier.Run keeps
// remote key sets fresh and JWTVerifier.Ready reports readiness.
//
// With Options.Revocations set, every verifier asks the shared
// revocation.List (package tokens/revocation) about every credential it
// accepts, cached or not, by the credential's ids (jti, sid, ticket id,
// the SHA-256 of a session token or API key) and its subject's epoch,
// never by the token's bytes; a revoked one is ErrRevoked, a list that
// cannot decide is a could-not-decide error.
//
// The token formats, the Redis session layout and the revocation key
// layout are specified in docs/tokens.md, for teams that issue tokens in
// other languages.
//
// Import rules: tokens imports neither authz nor any Envoy proto; go-redis
// is confined to tokens/redis.
package tokens
