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
