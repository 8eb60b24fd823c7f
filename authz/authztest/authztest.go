// Package authztest has helpers for tests of the authz pipeline and its
// adapters: a deterministic decision-id source and a table-driven verifier.
package authztest

import (
	"context"
	"strconv"
	"sync/atomic"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/tokens"
)

// SequentialIDs returns a NewID func that yields "d-1", "d-2", ...
func SequentialIDs() func() string {
	var n atomic.Int64
	return func() string { return "d-" + strconv.FormatInt(n.Add(1), 10) }
}

// Credentials is a Verifier that knows a fixed set of credentials; any other
// credential is rejected as unknown, and the credential "unavailable" makes
// it fail to decide.
type Credentials map[string]tokens.Principal

var _ authz.Verifier = Credentials(nil)

// ErrUnavailable is what Credentials returns for the credential "unavailable".
var ErrUnavailable = unavailableError{}

type unavailableError struct{}

func (unavailableError) Error() string { return "backend unavailable" }

// Verify implements authz.Verifier.
func (c Credentials) Verify(ctx context.Context, credential string) (tokens.Principal, error) {
	if credential == "unavailable" {
		return tokens.Principal{}, ErrUnavailable
	}
	if err := ctx.Err(); err != nil {
		return tokens.Principal{}, err
	}
	p, ok := c[credential]
	if !ok {
		return tokens.Principal{}, tokens.ErrUnknownCredential
	}
	return p, nil
}

// GoldenPipeline is the pipeline the transports' golden files
// (authz/extauthz/testdata) were written against, with sequential decision
// ids: rules health (allow), admin (API key with scope admin) and api on
// *.example.com (API key or bearer); one API key, "k-alice", for alice with
// scope read and claim team=payments, forwarded as x-auth-team. Every
// transport runs the golden cases through it and must decide alike.
func GoldenPipeline() (*authz.Pipeline, error) {
	cfg := authz.Config{
		Realm:           "gateway",
		IdentityHeaders: authz.IdentityHeaders{Claims: map[string]string{"team": "x-auth-team"}},
		Rules: []authz.RuleConfig{
			{Name: "health", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/healthz"}}, Action: authz.ActionAllow},
			{Name: "admin", Match: authz.MatchConfig{Path: authz.PathMatch{Prefix: "/admin/"}}, Action: authz.ActionAuthenticate,
				Authenticators: []string{"keys"}, Require: authz.Requirements{Scopes: []string{"admin"}}},
			{Name: "api", Match: authz.MatchConfig{Hosts: []string{"*.example.com"}, Path: authz.PathMatch{Prefix: "/api/"}},
				Action: authz.ActionAuthenticate, Authenticators: []string{"keys", "bearer"}},
		},
	}
	keys := Credentials{
		"k-alice": {Subject: "alice", Issuer: "keys", Method: tokens.MethodAPIKey, Scopes: []string{"read"}, Claims: map[string]any{"team": "payments"}},
	}
	auths := []*authz.Authenticator{
		{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, ChallengeScheme: "ApiKey", StripCredential: true, Verifier: keys},
		{Name: "bearer", Source: authz.CredentialSource{Authorization: "Bearer"}, Verifier: Credentials{}},
	}
	return authz.NewPipeline(cfg, auths, authz.Options{NewID: SequentialIDs()})
}
