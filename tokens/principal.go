package tokens

import (
	"strings"
	"time"
)

// Principal is what a verifier learned about the caller from a valid
// credential. It holds no secret: the credential itself never leaves the
// verifier.
type Principal struct {
	// Subject identifies the caller: a JWT's sub, a UDB user id, an API key's
	// owner.
	Subject string
	// Issuer names who vouched for the subject: a JWT's iss, the UDB realm,
	// the API key file.
	Issuer string
	// Method is the kind of credential that was verified: one of the Method*
	// constants.
	Method string
	// AppID is the application the credential was issued to (UDB app id, a
	// JWT's azp or client_id claim), empty when unknown.
	AppID string
	// Scopes are the granted scopes (a JWT's scope or scp claim).
	Scopes []string
	// Claims are the other claims the credential carried, for mapping to
	// upstream headers and for per-rule requirements. Values are JSON-like:
	// string, float64, bool, []any, map[string]any.
	Claims map[string]any
	// Expiry is when the credential stops being valid; zero means no expiry
	// (API keys).
	Expiry time.Time
}

// Methods of verification, reported to the upstream and in metrics.
const (
	MethodJWT        = "jwt"
	MethodUDBTicket  = "udb-ticket"
	MethodUDBSession = "udb-session"
	MethodAPIKey     = "api-key"
)

// splitScopes splits a space-delimited scope string (RFC 6749 §3.3: scope
// tokens separated by SP, 0x20) into its scopes, skipping empty ones. Only
// SP separates: strings.Fields would also split at a tab, a line break or a
// Unicode space such as U+00A0, so a single granted scope
// "read\u00a0admin" would read as the two scopes "read" and "admin" and
// meet a rule requiring "admin". A scope holding other whitespace stays one
// scope (and authz refuses to forward it, since an upstream might split it).
func splitScopes(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, " ") {
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}
