// Package authz is the decision pipeline: it takes a normalised Request and
// returns a Decision. It speaks plain Go types; Envoy's protos live in
// authz/extauthz.
//
//	authz/extauthz ─Request─▶ Pipeline.Decide
//	                             ├▶ normalise (method, host, canonical path)
//	                             ├▶ first matching rule (host, path, method)
//	                             ├▶ Authenticator: CredentialSource.Extract ─▶ Verifier (tokens)
//	                             ├▶ Requirements (scopes, claims)
//	                             └▶ identity headers: set what is known, remove every other identity header
//	               ◀─Decision─
//
// A denial is a Decision with a Code and a Reason, never an error. A
// verifier that cannot decide makes the request Unavailable (503): the
// pipeline fails closed.
//
// Import rules: authz imports tokens (and ratelimit) for types only, and no
// Envoy proto.
package authz
