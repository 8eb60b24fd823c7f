package authz

import (
	"github.com/ext-authz/ext-authz/tokens"
)

// Request is one HTTP request as the gateway saw it, normalised from
// whatever wire format carried it (see authz/extauthz for Envoy's).
type Request struct {
	// Method is the HTTP method, upper case.
	Method string
	// Host is the :authority; Decide replaces it with its canonical form
	// (CanonicalHost: without port, ASCII lower case).
	Host string
	// Path is the request path without the query string; Decide replaces
	// it with its canonical form (CanonicalPath).
	Path string
	// Query is the raw query string without '?', empty when there is none.
	Query string
	// Scheme is "http" or "https" as the gateway saw it.
	Scheme string
	// Headers holds the request headers with lower-case names; repeated
	// headers are comma-joined, as Envoy sends them.
	Headers map[string]string
	// ContextExtensions are the per-route values the gateway attaches.
	ContextExtensions map[string]string
	// PeerAddress is the IP of the direct peer of the gateway (not the
	// client behind proxies: see ClientAddress).
	PeerAddress string
	// RequestID is the x-request-id the gateway assigned.
	RequestID string
	// SourcePrincipal is the identity of the gateway's TLS peer as Envoy
	// reports it (AttributeContext.source.principal: the first URI SAN,
	// else DNS SAN, else the subject of the client certificate); empty
	// without a verified client certificate.
	SourcePrincipal string
	// SourceCertificate is the client certificate, URL-encoded PEM, when
	// the gateway sends it (include_peer_certificate); else empty.
	SourceCertificate string
	// PlainHeaderNames promises that PlainHeaderName holds for every name
	// in Headers; Decide then does not walk Headers for variant spellings
	// and override headers (there are none). A decoder sets it only after
	// checking each name it put in Headers; false (the zero value) is
	// always correct.
	PlainHeaderNames bool
}

// Header returns the value of the header with the given lower-case name.
func (r *Request) Header(name string) string { return r.Headers[name] }

// Identity is who the request was authenticated as, and by which of the
// configured authenticators.
type Identity struct {
	tokens.Principal
	// Authenticator is the configured name of the authenticator that accepted
	// the credential.
	Authenticator string
	// Plan is the caller's rate-limit plan (tier), resolved from the
	// principal by the rate-limit plans configuration; empty when no plans
	// are configured.
	Plan string
}

// Code classifies a decision. Each code maps to exactly one HTTP status and
// gRPC code in authz/extauthz.
type Code int

// Decision codes.
const (
	OK              Code = iota // allowed
	Unauthenticated             // no valid credential: 401
	Forbidden                   // authenticated, or anonymous, but not allowed: 403
	RateLimited                 // over a rate limit: 429
	Unavailable                 // a dependency could not decide and the rule fails closed: 503
	BadRequest                  // the request itself is malformed: 400
)

var codeNames = [...]string{"ok", "unauthenticated", "forbidden", "rate_limited", "unavailable", "bad_request"}

func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "unknown"
}

// Header is one header name (lower case) and value.
type Header struct {
	Name, Value string
}

// Decision is the outcome of one request. A denial is a Decision, not an
// error.
type Decision struct {
	// Code is OK for an allowed request and says why otherwise.
	Code Code
	// Reason is a short machine-readable word: safe to show the client, to
	// log and to use as a metric label.
	Reason string
	// Rule is the name of the policy rule that matched, empty when none did.
	Rule string
	// ID identifies this decision in logs and access logs.
	ID string
	// Identity is set when a credential was verified.
	Identity *Identity
	// Challenges are the WWW-Authenticate challenges for a 401.
	Challenges []string
	// UpstreamHeaders are set on the request sent upstream, replacing any
	// value the client sent.
	UpstreamHeaders []Header
	// RemoveHeaders are removed from the request sent upstream.
	RemoveHeaders []string
	// ResponseHeaders go to the client: on the denial, or added to the
	// upstream's response when allowed (rate-limit headers).
	ResponseHeaders []Header
	// RateLimitPolicy is the effective rate limit, when one applied: the
	// RateLimit-Policy item of the limit that denied, or of the one
	// closest to exhausted (`"pro/api/second";q=100;w=1`).
	RateLimitPolicy string
	// Shadow are the would-be decisions of the shadow rules reached
	// before the rule that decided (see shadow.go): for metrics and logs,
	// never enforced.
	Shadow []ShadowDecision
}

// Allowed reports whether the request may proceed.
func (d *Decision) Allowed() bool { return d.Code == OK }

// Subject returns the authenticated subject, or "" for an anonymous request.
func (d *Decision) Subject() string {
	if d.Identity == nil {
		return ""
	}
	return d.Identity.Subject
}

// NormaliseHost returns the host part of an :authority value as rules
// match it (see CanonicalHost), or "" when the pipeline would refuse it.
func NormaliseHost(authority string) string {
	h, err := CanonicalHost(authority)
	if err != nil {
		return ""
	}
	return h
}
