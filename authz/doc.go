// Package authz is the decision pipeline: it takes a normalised Request and
// returns a Decision. It speaks plain Go types; Envoy's protos live in
// authz/extauthz.
//
//	authz/extauthz ─Request─▶ Pipeline.Decide
//	                             ├▶ normalise: CanonicalHost, CanonicalPath (400 when malformed or ambiguous)
//	                             ├▶ first matching rule (host, canonical path, method); the same rule
//	                             │   for the ";"-stripped path and method overrides, else 400
//	                             ├▶ allow: remove identity and method override headers in every spelling
//	                             ├▶ Authenticator: CredentialSource.Extract ─▶ Verifier (tokens)
//	                             ├▶ Requirements (scopes, claims)
//	                             └▶ identity headers: set what is known (403 invalid_identity when a
//	                                 value cannot be forwarded intact), remove every other spelling
//	               ◀─Decision─
//
// Rules match the request as the upstream will read it: the canonical path
// is the decoded, dot-resolved path (path.go), hosts fold ASCII only
// (host.go), and every header name an upstream may map to an identity
// header (x_auth_subject for x-auth-subject) is removed (identity.go).
// docs/request-normalisation.md is the reference; gateway_model_test.go
// proves it against a model of Envoy's normalisation at the gateway.
//
// A denial is a Decision with a Code and a Reason, never an error. A
// verifier that cannot decide makes the request Unavailable (503): the
// pipeline fails closed.
//
// Import rules: authz imports tokens (and ratelimit) for types only, and no
// Envoy proto.
package authz
