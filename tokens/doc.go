// Package tokens verifies credentials: UDB-style session tokens (signed
// tickets and Redis-backed sessions), JWTs from several issuers with JWKS key
// sources, and static API keys.
//
// Where it sits in the flow:
//
//	authz.Pipeline ─credential string─▶ tokens verifier ─▶ Principal | error
//
// A verifier returns a Principal for a good credential, an error matching
// ErrInvalid (a *CredentialError with a safe Reason) for a bad one, and any
// other error when it could not decide. Credentials never appear in errors,
// logs or metrics; use Fingerprint to correlate.
//
// Import rules: tokens imports neither authz nor any Envoy proto.
package tokens
