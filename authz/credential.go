package authz

import (
	"strings"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
	"github.com/ext-authz/ext-authz/tokens"
)

// CredentialSource says where a credential is carried. Exactly one field is
// set.
type CredentialSource struct {
	// Header names a request header that carries the bare credential.
	Header string `yaml:"header"`
	// Cookie names a cookie that carries the credential.
	Cookie string `yaml:"cookie"`
	// Authorization is the scheme of "Authorization: <scheme> <credential>"
	// (matched case-insensitively, as RFC 9110 says).
	Authorization string `yaml:"authorization"`
	// Peer takes the credential from the gateway's TLS peer: the source
	// principal and certificate of the CheckRequest (tokens.PeerCredential),
	// for the mtls kind. Nothing a client sends in a header reaches it.
	Peer bool `yaml:"peer"`
}

// Validate checks that exactly one place is named.
func (s *CredentialSource) Validate() error {
	n := 0
	for _, v := range []string{s.Header, s.Cookie, s.Authorization} {
		if v != "" {
			n++
		}
	}
	if s.Peer {
		n++
	}
	switch {
	case n != 1:
		return yamlfile.Errorf("", "set exactly one of header, cookie, authorization, peer")
	case s.Header != "" && !validHeaderName(s.Header):
		return yamlfile.Errorf("header", "%q is not a valid header name", s.Header)
	case s.Authorization != "" && strings.ContainsAny(s.Authorization, " \t,"):
		return yamlfile.Errorf("authorization", "%q is not a valid auth scheme", s.Authorization)
	case s.Cookie != "" && strings.ContainsAny(s.Cookie, " \t;=,"):
		return yamlfile.Errorf("cookie", "%q is not a valid cookie name", s.Cookie)
	}
	return nil
}

// String describes the source without any credential, for logs.
func (s *CredentialSource) String() string {
	switch {
	case s.Header != "":
		return "header " + s.Header
	case s.Cookie != "":
		return "cookie " + s.Cookie
	case s.Peer:
		return "peer"
	}
	return "authorization " + s.Authorization
}

// Extract returns the credential the request carries at this source, and
// whether one was present. A present but empty credential is reported as
// present so it is rejected as malformed rather than as missing.
func (s *CredentialSource) Extract(r *Request) (string, bool) { return s.extract(r, nil) }

// extract is Extract with the request's headerScan, when the caller has
// one, in place of another walk over the headers.
func (s *CredentialSource) extract(r *Request, scan *headerScan) (string, bool) {
	switch {
	case s.Peer:
		cred := tokens.PeerCredential(r.SourcePrincipal, r.SourceCertificate)
		return cred, cred != ""
	case s.Header != "":
		key := ASCIILower(s.Header)
		v, ok := r.Headers[key]
		if !ok {
			return "", false
		}
		if scan != nil && scan.otherSpelling(key) || scan == nil && otherSpelling(r.Headers, key) {
			// x_api_key next to x-api-key: a CGI-style upstream reads
			// one of the two as the credential, maybe not the one we
			// verified. Present but empty: refused as malformed.
			return "", true
		}
		return strings.TrimSpace(v), true
	case s.Cookie != "":
		return cookieValue(r.Headers["cookie"], s.Cookie)
	default:
		v, ok := r.Headers["authorization"]
		if !ok {
			return "", false
		}
		scheme, cred, _ := strings.Cut(strings.TrimSpace(v), " ")
		if !strings.EqualFold(scheme, s.Authorization) {
			return "", false
		}
		return strings.TrimSpace(cred), true
	}
}

// strip returns the header change that removes this credential from the
// request sent upstream: a header to remove, or (for a cookie among others)
// the cookie header to set instead.
func (s *CredentialSource) strip(r *Request) (set *Header, remove string) {
	switch {
	case s.Peer:
		return nil, "" // the TLS peer is not a header
	case s.Header != "":
		return nil, ASCIILower(s.Header)
	case s.Authorization != "":
		return nil, "authorization"
	}
	rest := withoutCookieSpellings(r.Headers["cookie"], s.Cookie)
	if rest == "" {
		return nil, "cookie"
	}
	return &Header{Name: "cookie", Value: rest}, ""
}

// otherSpelling reports whether headers hold, besides key itself, another
// spelling of it (upper case, '_' for '-').
func otherSpelling(headers map[string]string, key string) bool {
	for k := range headers {
		if k != key && !isHeaderKey(k) && headerKey(k) == key {
			return true
		}
	}
	return false
}

// cookieValue finds name in a Cookie header ("a=1; b=2"; Envoy joins several
// Cookie headers with "; "). Names are compared with the spaces around them
// trimmed, as Python's http.cookies reads "sid =x". A cookie of that name
// sent twice is reported as present but empty (refused as malformed):
// upstreams disagree on which one counts (Go, PHP and Express take the
// first, Python's http.cookies the last), so the one we verify need not be
// the one the upstream acts on.
func cookieValue(header, name string) (string, bool) {
	val, found := "", false
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) != name {
			continue
		}
		if found {
			return "", true
		}
		val, found = strings.Trim(strings.TrimSpace(v), `"`), true
	}
	return val, found
}

// validHeaderName reports whether s is an HTTP token (RFC 9110) that is not a
// pseudo-header.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
