package authz

import (
	"context"

	"github.com/ext-authz/ext-authz/tokens"
)

// Verifier checks one credential string taken from a request.
//
// Verify returns the principal for a valid credential. For a credential it
// checked and rejected it returns an error matching tokens.ErrInvalid whose
// tokens.Reason is shown to the client. Any other error means it could not
// decide (a key source or session store was unavailable, or ctx ended): the
// pipeline then fails closed with 503, never 401.
//
// Verify must be safe for concurrent use and must not keep or log the
// credential.
type Verifier interface {
	Verify(ctx context.Context, credential string) (tokens.Principal, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, credential string) (tokens.Principal, error)

// Verify calls f.
func (f VerifierFunc) Verify(ctx context.Context, credential string) (tokens.Principal, error) {
	return f(ctx, credential)
}

// Authenticator is a named, configured way to authenticate: where the
// credential is carried and who verifies it.
type Authenticator struct {
	// Name is how rules refer to it.
	Name string
	// Source says where the credential is carried.
	Source CredentialSource
	// Verifier checks the credential.
	Verifier Verifier
	// ChallengeScheme is the auth-scheme of the WWW-Authenticate challenge
	// sent with a 401; default: the Authorization scheme, else "Bearer".
	ChallengeScheme string
	// StripCredential removes the credential from the request sent upstream.
	StripCredential bool
}

func (a *Authenticator) scheme() string {
	switch {
	case a.ChallengeScheme != "":
		return a.ChallengeScheme
	case a.Source.Authorization != "":
		return a.Source.Authorization
	}
	return "Bearer"
}
