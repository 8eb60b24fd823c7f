// Package cli is ext-authz's command line apart from the server: the exit
// status contract every command keeps (0 success, 1 failure, 2 usage, 3–6
// the class of a denial), flag parsing that prints help on stdout and
// turns mistakes into usage errors, and the commands that are clients or
// tools rather than the service:
//
//	check       one Check, built as the gateway's Envoy builds it
//	ratelimit   one ShouldRateLimit, as Envoy's ratelimit filter sends it
//	token mint  development and load-test tokens
//	token jwks  the JWK Set of a public key
//
// cmd/ext-authz dispatches to these and owns serve and check-config. The
// package may import tokens, authz/extauthz (to build a CheckRequest as
// Envoy does) and Envoy's service protos; nothing imports it but cmd.
package cli
